// Quantisers of the codebook formats (IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S), with
// each element's squared error weighted by its column's importance (formats/imatrix.h).
//
// Each group of 8 (IQ3: 4) elements must be one grid entry times the sub-block scale, with stored
// signs (IQ2/IQ3) or a ±1/8 shift (IQ1). For a trial scale every element is rounded to its nearest
// grid level; when that tuple of levels is a grid entry it is taken, otherwise the entries nearest
// to the tuple (a table built once per grid) are tried and the lowest weighted error kept. Each
// sub-block tries a range of scales and keeps the least-squares best; the block scale d is then
// set from the largest sub-block scale, the sub-block scales are rounded to their stored bits, and
// the entries are chosen once more against those final scales.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <mutex>
#include <vector>

#include "base/error.h"
#include "tensor/fp16.h"
#include "tensor/iq_grids.h"
#include "tensor/quantize_lowbit.h"
#include "tensor/quants.h"

namespace owl {

namespace {

// One grid and the lookup from rounded level tuples to entries.
struct Codebook {
  int group = 8;                     // elements per entry
  std::vector<int8_t> values;        // entry e's element j at [e * group + j]
  std::vector<int> levels;           // the distinct values, ascending
  std::vector<int32_t> map;          // per tuple key: entry >= 0, or -1 - offset of its neighbour list
  std::vector<uint16_t> neighbours;  // lists: count, then that many entries

  int n_entries() const { return static_cast<int>(values.size()) / group; }
};

template <class Entry>
Codebook make_codebook(const Entry* grid, int n, int group, bool signed_bytes) {
  Codebook cb;
  cb.group = group;
  cb.values.resize(static_cast<size_t>(n) * group);
  for (int e = 0; e < n; ++e)
    for (int j = 0; j < group; ++j)
      cb.values[static_cast<size_t>(e * group + j)] =
          static_cast<int8_t>(signed_bytes ? grid_byte_signed(static_cast<uint64_t>(grid[e]), j)
                                           : grid_byte(static_cast<uint64_t>(grid[e]), j));
  cb.levels.assign(cb.values.begin(), cb.values.end());
  std::sort(cb.levels.begin(), cb.levels.end());
  cb.levels.erase(std::unique(cb.levels.begin(), cb.levels.end()), cb.levels.end());
  const int nl = static_cast<int>(cb.levels.size());
  auto level_index = [&](int v) {
    return static_cast<int>(std::lower_bound(cb.levels.begin(), cb.levels.end(), v) - cb.levels.begin());
  };
  int n_keys = 1;
  for (int j = 0; j < group; ++j) n_keys *= nl;
  // Entries as level-index tuples, then the key of each.
  std::vector<int> entry_levels(static_cast<size_t>(n) * group);
  cb.map.assign(static_cast<size_t>(n_keys), -1);
  std::vector<bool> on_grid(static_cast<size_t>(n_keys), false);
  for (int e = 0; e < n; ++e) {
    int key = 0;
    for (int j = group - 1; j >= 0; --j) {
      const int li = level_index(cb.values[static_cast<size_t>(e * group + j)]);
      entry_levels[static_cast<size_t>(e * group + j)] = li;
      key = key * nl + li;
    }
    cb.map[static_cast<size_t>(key)] = e;
    on_grid[static_cast<size_t>(key)] = true;
  }
  // Off-grid tuples: the entries within one squared level step of the nearest (at most 32).
  std::vector<int> tuple(static_cast<size_t>(group));
  std::vector<std::pair<int, int>> dist(static_cast<size_t>(n));
  for (int key = 0; key < n_keys; ++key) {
    if (on_grid[static_cast<size_t>(key)]) continue;
    for (int j = 0, k = key; j < group; ++j, k /= nl) tuple[static_cast<size_t>(j)] = k % nl;
    for (int e = 0; e < n; ++e) {
      int d2 = 0;
      for (int j = 0; j < group; ++j) {
        const int diff = entry_levels[static_cast<size_t>(e * group + j)] - tuple[static_cast<size_t>(j)];
        d2 += diff * diff;
      }
      dist[static_cast<size_t>(e)] = {d2, e};
    }
    int nearest_d2 = dist[0].first;
    for (const auto& d : dist) nearest_d2 = std::min(nearest_d2, d.first);
    const auto end = std::partition(dist.begin(), dist.end(), [&](const auto& d) { return d.first <= nearest_d2 + 1; });
    std::sort(dist.begin(), end);
    const auto count = static_cast<size_t>(std::min<std::ptrdiff_t>(end - dist.begin(), 32));
    cb.map[static_cast<size_t>(key)] = -1 - static_cast<int32_t>(cb.neighbours.size());
    cb.neighbours.push_back(static_cast<uint16_t>(count));
    for (size_t i = 0; i < count; ++i) cb.neighbours.push_back(static_cast<uint16_t>(dist[i].second));
  }
  return cb;
}

const Codebook& codebook(DType t) {
  static std::once_flag once[7];
  static Codebook books[7];
  switch (t) {
    case DType::IQ2_XXS:
      std::call_once(once[0], [] { books[0] = make_codebook(kIQ2XXSGrid, 1 << kIQ2XXSGridBits, 8, false); });
      return books[0];
    case DType::IQ2_XS:
      std::call_once(once[1], [] { books[1] = make_codebook(kIQ2XSGrid, 1 << kIQ2XSGridBits, 8, false); });
      return books[1];
    case DType::IQ2_S:
      std::call_once(once[2], [] { books[2] = make_codebook(kIQ2SGrid, 1 << kIQ2SGridBits, 8, false); });
      return books[2];
    case DType::IQ3_XXS:
      std::call_once(once[3], [] { books[3] = make_codebook(kIQ3XXSGrid, 1 << kIQ3XXSGridBits, 4, false); });
      return books[3];
    case DType::IQ3_S:
      std::call_once(once[4], [] { books[4] = make_codebook(kIQ3SGrid, 1 << kIQ3SGridBits, 4, false); });
      return books[4];
    default:  // IQ1_S, IQ1_M share one grid
      std::call_once(once[5], [] { books[5] = make_codebook(kIQ1SGrid, 1 << kIQ1SGridBits, 8, true); });
      return books[5];
  }
}

// How a type stores its scales and signs.
struct Format {
  int scale_group;                                 // elements per stored sub-block scale: 32 or 16
  int scale_bits;                                  // 4 (ls = 2s + 1 up to 31) or 3 (up to 15)
  float mult;                                      // element = d * mult * ls * value
  enum class Signs { Parity, Full, Shift } signs;  // 7 bits + even parity, 8 bits, or IQ1's ±1/8 shift
  bool shift_per_group = false;                    // IQ1_M: one shift per 8 elements, IQ1_S: per 32
};

Format format_of(DType t) {
  using S = Format::Signs;
  switch (t) {
    case DType::IQ2_XXS:
      return {32, 4, 0.125f, S::Parity};
    case DType::IQ2_XS:
      return {16, 4, 0.125f, S::Parity};
    case DType::IQ2_S:
      return {16, 4, 0.125f, S::Full};
    case DType::IQ3_XXS:
      return {32, 4, 0.25f, S::Parity};
    case DType::IQ3_S:
      return {32, 4, 1.0f, S::Full};
    case DType::IQ1_S:
      return {32, 3, 1.0f, S::Shift};
    default:
      return {16, 3, 1.0f, S::Shift, true};
  }
}

constexpr float kIQ1Shift = 0.125f;
// Trial scales per sub-block: amax / top grid value times 0.6 .. 1.4 in this many steps (each then
// refitted by least squares); more steps gain little.
constexpr int kScaleSteps = 6;

// The choices for one 256-element block, before packing.
struct Choice {
  float d = 0;
  int scale[16] = {};       // stored s per scale group (ls = 2s + 1)
  int index[64] = {};       // entry per group of cb.group elements
  uint8_t signs[32] = {};   // per 8 elements, bit j: element j negative (IQ2/IQ3)
  bool neg_shift[32] = {};  // per 8 elements (IQ1)
};

// Best entry for the cb.group values a (to approximate by S * (entry + shift)) under weights w.
int best_entry(const Codebook& cb, const float* a, const float* w, float S, float shift, double* err_out) {
  const int nl = static_cast<int>(cb.levels.size());
  int key = 0;
  const float inv = S > 0 ? 1 / S : 0;
  for (int j = cb.group - 1; j >= 0; --j) {
    const float t = a[j] * inv - shift;
    int li = 0;
    float bd = std::fabs(t - static_cast<float>(cb.levels[0]));
    for (int l = 1; l < nl; ++l) {
      const float dd = std::fabs(t - static_cast<float>(cb.levels[static_cast<size_t>(l)]));
      if (dd < bd) bd = dd, li = l;
    }
    key = key * nl + li;
  }
  auto error = [&](int e) {
    double s = 0;
    const int8_t* v = cb.values.data() + static_cast<size_t>(e) * cb.group;
    for (int j = 0; j < cb.group; ++j) {
      const double diff = a[j] - S * (v[j] + shift);
      s += w[j] * diff * diff;
    }
    return s;
  };
  const int32_t m = cb.map[static_cast<size_t>(key)];
  if (m >= 0) {
    if (err_out) *err_out = error(m);
    return m;
  }
  const uint16_t* list = cb.neighbours.data() + (-1 - m);
  int best = list[1];
  double best_err = INFINITY;
  for (int i = 1; i <= list[0]; ++i) {
    const double e = error(list[i]);
    if (e < best_err) best_err = e, best = list[i];
  }
  if (err_out) *err_out = best_err;
  return best;
}

// Chooses entries (and IQ1 shifts) for the n elements at a with scale S; returns the weighted
// least-squares scale for those choices in *refit and the error at that refit scale.
double assign(const Codebook& cb, const Format& f, const float* a, const float* w, int n, float S, int* idx,
              bool* neg_shift, float* refit) {
  double num = 0, den = 0, waa = 0;
  const int ng = n / cb.group;
  bool shared_neg = false;
  if (f.signs == Format::Signs::Shift && !f.shift_per_group) {  // IQ1_S: one shift for the sub-block
    double e_pos = 0, e_neg = 0, e;
    for (int g = 0; g < ng; ++g) {
      best_entry(cb, a + g * cb.group, w + g * cb.group, S, kIQ1Shift, &e);
      e_pos += e;
      best_entry(cb, a + g * cb.group, w + g * cb.group, S, -kIQ1Shift, &e);
      e_neg += e;
    }
    shared_neg = e_neg < e_pos;
  }
  for (int g = 0; g < ng; ++g) {
    const float* ag = a + g * cb.group;
    const float* wg = w + g * cb.group;
    float shift = 0;
    if (f.signs == Format::Signs::Shift) {
      bool neg = shared_neg;
      if (f.shift_per_group) {
        double ep, en;
        best_entry(cb, ag, wg, S, kIQ1Shift, &ep);
        best_entry(cb, ag, wg, S, -kIQ1Shift, &en);
        neg = en < ep;
      }
      neg_shift[g] = neg;
      shift = neg ? -kIQ1Shift : kIQ1Shift;
    }
    idx[g] = best_entry(cb, ag, wg, S, shift, nullptr);
    const int8_t* v = cb.values.data() + static_cast<size_t>(idx[g]) * cb.group;
    for (int j = 0; j < cb.group; ++j) {
      const double q = v[j] + shift;
      num += wg[j] * ag[j] * q;
      den += wg[j] * q * q;
      waa += wg[j] * ag[j] * ag[j];
    }
  }
  *refit = den > 0 && num > 0 ? static_cast<float>(num / den) : 0;
  return den > 0 && num > 0 ? waa - num * num / den : waa;
}

// Quantises one block of 256 values x with weights w into c.
void choose_block(DType t, const float* x, const float* w, Choice& c) {
  const Codebook& cb = codebook(t);
  const Format f = format_of(t);
  const bool shift_format = f.signs == Format::Signs::Shift;
  // Signs first (IQ2/IQ3): the grid holds magnitudes. With 7 stored bits the count of negatives in
  // a group of 8 must be even; when it is odd, the element that costs least is given the wrong sign.
  float a[kQKK];
  std::memcpy(a, x, sizeof a);
  if (!shift_format) {
    for (int g = 0; g < kQKK / 8; ++g) {
      uint8_t s = 0;
      for (int j = 0; j < 8; ++j)
        if (x[8 * g + j] < 0) s |= static_cast<uint8_t>(1 << j);
      if (f.signs == Format::Signs::Parity && (__builtin_popcount(s) & 1)) {
        int jmin = 0;
        for (int j = 1; j < 8; ++j)
          if (w[8 * g + j] * x[8 * g + j] * x[8 * g + j] < w[8 * g + jmin] * x[8 * g + jmin] * x[8 * g + jmin])
            jmin = j;
        s ^= static_cast<uint8_t>(1 << jmin);
      }
      c.signs[g] = s;
      for (int j = 0; j < 8; ++j) a[8 * g + j] = (s >> j) & 1 ? -x[8 * g + j] : x[8 * g + j];
    }
  }
  const int n_sub = kQKK / f.scale_group, per_sub = f.scale_group / cb.group;
  const float top = static_cast<float>(cb.levels.back()) + (shift_format ? kIQ1Shift : 0);
  float S[16];
  float best_S_max = 0;
  for (int k = 0; k < n_sub; ++k) {
    const float* ak = a + k * f.scale_group;
    const float* wk = w + k * f.scale_group;
    float amax = 0;
    for (int i = 0; i < f.scale_group; ++i) amax = std::max(amax, std::fabs(ak[i]));
    S[k] = 0;
    if (amax == 0) continue;
    double best = INFINITY;
    int idx[16];
    bool neg[16];
    for (int step = 0; step <= kScaleSteps; ++step) {
      const float trial = amax / top * (0.6f + 0.8f * static_cast<float>(step) / kScaleSteps);
      float refit;
      double e = assign(cb, f, ak, wk, f.scale_group, trial, idx, neg, &refit);
      if (refit > 0) e = assign(cb, f, ak, wk, f.scale_group, refit, idx, neg, &refit);
      if (e < best && refit > 0) best = e, S[k] = refit;
    }
    best_S_max = std::max(best_S_max, S[k]);
  }
  const int smax = (1 << f.scale_bits) - 1, ls_max = 2 * smax + 1;
  c.d = f16_to_f32(f32_to_f16(best_S_max / (f.mult * static_cast<float>(ls_max))));
  for (int k = 0; k < n_sub; ++k) {
    const int s = c.d > 0 ? static_cast<int>(std::lround((S[k] / (c.d * f.mult) - 1) / 2)) : 0;
    c.scale[k] = std::clamp(s, 0, smax);
    const float Sq = c.d * f.mult * static_cast<float>(2 * c.scale[k] + 1);
    float unused;
    assign(cb, f, a + k * f.scale_group, w + k * f.scale_group, f.scale_group, Sq, c.index + k * per_sub,
           c.neg_shift + k * f.scale_group / 8, &unused);
  }
}

uint16_t pack_fp16(float d) { return f32_to_f16(d); }

void pack(DType t, const Choice& c, void* dst) {
  switch (t) {
    case DType::IQ2_XXS: {
      BlockIQ2_XXS b{};
      b.d = pack_fp16(c.d);
      for (int ib = 0; ib < 8; ++ib) {
        uint32_t idx = 0, aux = static_cast<uint32_t>(c.scale[ib]) << 28;
        for (int l = 0; l < 4; ++l) {
          idx |= static_cast<uint32_t>(c.index[4 * ib + l]) << (8 * l);
          aux |= static_cast<uint32_t>(c.signs[4 * ib + l] & 127) << (7 * l);
        }
        std::memcpy(&b.qs[4 * ib], &idx, 4);
        std::memcpy(&b.qs[4 * ib + 2], &aux, 4);
      }
      std::memcpy(dst, &b, sizeof b);
      return;
    }
    case DType::IQ2_XS: {
      BlockIQ2_XS b{};
      b.d = pack_fp16(c.d);
      for (int ib = 0; ib < 8; ++ib) {
        b.scales[ib] = static_cast<uint8_t>(c.scale[2 * ib] | c.scale[2 * ib + 1] << 4);
        for (int l = 0; l < 4; ++l)
          b.qs[4 * ib + l] = static_cast<uint16_t>(c.index[4 * ib + l] | (c.signs[4 * ib + l] & 127) << 9);
      }
      std::memcpy(dst, &b, sizeof b);
      return;
    }
    case DType::IQ2_S: {
      BlockIQ2_S b{};
      b.d = pack_fp16(c.d);
      for (int ib = 0; ib < 8; ++ib) {
        b.scales[ib] = static_cast<uint8_t>(c.scale[2 * ib] | c.scale[2 * ib + 1] << 4);
        for (int l = 0; l < 4; ++l) {
          const int i = c.index[4 * ib + l];
          b.qs[4 * ib + l] = static_cast<uint8_t>(i & 0xFF);
          b.qh[ib] = static_cast<uint8_t>(b.qh[ib] | (i >> 8) << (2 * l));
          b.qs[kQKK / 8 + 4 * ib + l] = c.signs[4 * ib + l];
        }
      }
      std::memcpy(dst, &b, sizeof b);
      return;
    }
    case DType::IQ3_XXS: {
      BlockIQ3_XXS b{};
      b.d = pack_fp16(c.d);
      for (int ib = 0; ib < 8; ++ib) {
        uint32_t aux = static_cast<uint32_t>(c.scale[ib]) << 28;
        for (int l = 0; l < 4; ++l) aux |= static_cast<uint32_t>(c.signs[4 * ib + l] & 127) << (7 * l);
        for (int g = 0; g < 8; ++g) b.qs[8 * ib + g] = static_cast<uint8_t>(c.index[8 * ib + g]);
        std::memcpy(&b.qs[kQKK / 4 + 4 * ib], &aux, 4);
      }
      std::memcpy(dst, &b, sizeof b);
      return;
    }
    case DType::IQ3_S: {
      BlockIQ3_S b{};
      b.d = pack_fp16(c.d);
      for (int ib = 0; ib < 8; ++ib) {
        b.scales[ib / 2] = static_cast<uint8_t>(b.scales[ib / 2] | c.scale[ib] << (4 * (ib % 2)));
        for (int g = 0; g < 8; ++g) {
          const int i = c.index[8 * ib + g];
          b.qs[8 * ib + g] = static_cast<uint8_t>(i & 0xFF);
          b.qh[ib] = static_cast<uint8_t>(b.qh[ib] | (i >> 8) << g);
        }
        for (int l = 0; l < 4; ++l) b.signs[4 * ib + l] = c.signs[4 * ib + l];
      }
      std::memcpy(dst, &b, sizeof b);
      return;
    }
    case DType::IQ1_S: {
      BlockIQ1_S b{};
      b.d = pack_fp16(c.d);
      for (int ib = 0; ib < 8; ++ib) {
        uint32_t h = static_cast<uint32_t>(c.scale[ib]) << 12 | (c.neg_shift[4 * ib] ? 0x8000u : 0u);
        for (int l = 0; l < 4; ++l) {
          const int i = c.index[4 * ib + l];
          b.qs[4 * ib + l] = static_cast<uint8_t>(i & 0xFF);
          h |= static_cast<uint32_t>(i >> 8) << (3 * l);
        }
        b.qh[ib] = static_cast<uint16_t>(h);
      }
      std::memcpy(dst, &b, sizeof b);
      return;
    }
    default: {  // IQ1_M
      BlockIQ1_M b{};
      uint16_t sc[4] = {};
      for (int ib = 0; ib < 8; ++ib) {
        const int shift = 6 * (ib % 2);
        sc[ib / 2] = static_cast<uint16_t>(sc[ib / 2] | c.scale[2 * ib] << shift | c.scale[2 * ib + 1] << (shift + 3));
        for (int l = 0; l < 4; ++l) {
          const int i = c.index[4 * ib + l];
          b.qs[4 * ib + l] = static_cast<uint8_t>(i & 0xFF);
          const int nibble = (i >> 8) | (c.neg_shift[4 * ib + l] ? 8 : 0);
          b.qh[2 * ib + l / 2] = static_cast<uint8_t>(b.qh[2 * ib + l / 2] | nibble << (4 * (l % 2)));
        }
      }
      const uint16_t d16 = pack_fp16(c.d);
      for (int k = 0; k < 4; ++k) sc[k] = static_cast<uint16_t>(sc[k] | ((d16 >> (4 * k)) & 0xF) << 12);
      std::memcpy(b.scales, sc, sizeof sc);
      std::memcpy(dst, &b, sizeof b);
      return;
    }
  }
}

}  // namespace

void quantize_codebook_row(DType t, const float* x, void* dst, int64_t n, const float* importance) {
  auto* out = static_cast<uint8_t*>(dst);
  const size_t block_bytes = row_bytes(t, kQKK);
  float w[kQKK];
  for (int64_t ib = 0; ib < n / kQKK; ++ib, x += kQKK, out += block_bytes) {
    double sumx2 = 0;
    for (int i = 0; i < kQKK; ++i) sumx2 += static_cast<double>(x[i]) * x[i];
    const float sigma2 = static_cast<float>(2 * sumx2 / kQKK);
    for (int i = 0; i < kQKK; ++i) {
      const float imp = importance ? importance[ib * kQKK + i] : 1.0f;
      w[i] = imp * std::sqrt(sigma2 + x[i] * x[i]);
    }
    Choice c;
    choose_block(t, x, w, c);
    pack(t, c, out);
  }
}

}  // namespace owl
