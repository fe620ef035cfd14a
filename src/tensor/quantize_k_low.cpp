// Q2_K and Q3_K quantisers with importance weights: per 16 elements a weighted least-squares fit
// of scale (and, for Q2_K, min) over a range of trial roundings, then the 4- or 6-bit sub-block
// scales against the block's fp16 scales, and the quants once more against those final scales.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "tensor/fp16.h"
#include "tensor/quantize_lowbit.h"
#include "tensor/quants.h"

namespace owl {

namespace {

inline int nearest(float x) { return static_cast<int>(std::nearbyint(x)); }

// Element e of a block sits at qs[32 * (e / 128) + e % 32], bits 2 * ((e % 128) / 32).
inline void put2(uint8_t* qs, int e, int q) {
  qs[32 * (e / 128) + e % 32] = static_cast<uint8_t>(qs[32 * (e / 128) + e % 32] | (q & 3) << (2 * ((e % 128) / 32)));
}

// Weighted fit x ~ a * q - b with q in [0, nmax], a >= 0, b >= 0 (16 elements).
void fit_scale_min_weighted(const float* x, const float* w, int nmax, float& a_out, float& b_out) {
  const float lo = std::min(0.0f, *std::min_element(x, x + 16)), hi = *std::max_element(x, x + 16);
  a_out = 0;
  b_out = -lo;
  if (hi <= lo) return;
  double best = INFINITY;
  for (int k = -6; k <= 12; ++k) {
    const float iscale = (static_cast<float>(nmax) + 0.1f * static_cast<float>(k)) / (hi - lo);
    double sw = 0, sq = 0, sx = 0, sqq = 0, sqx = 0;
    int q[16];
    for (int i = 0; i < 16; ++i) {
      q[i] = std::clamp(nearest(iscale * (x[i] - lo)), 0, nmax);
      sw += w[i];
      sq += w[i] * q[i];
      sx += w[i] * x[i];
      sqq += static_cast<double>(w[i]) * q[i] * q[i];
      sqx += static_cast<double>(w[i]) * q[i] * x[i];
    }
    const double det = sw * sqq - sq * sq;
    double a = 0, m = 0;
    if (det > 0) {
      a = (sw * sqx - sq * sx) / det;
      m = (sx - a * sq) / sw;
    }
    if (m > 0 || det <= 0) {  // the offset is a subtracted non-negative min
      m = 0;
      a = sqq > 0 ? sqx / sqq : 0;
    }
    if (a < 0) continue;
    double err = 0;
    for (int i = 0; i < 16; ++i) {
      const double e = x[i] - (a * q[i] + m);
      err += w[i] * e * e;
    }
    if (err < best) {
      best = err;
      a_out = static_cast<float>(a);
      b_out = static_cast<float>(-m);
    }
  }
}

// Weighted fit x ~ s * q with q in [-nneg, npos] (16 elements); the largest magnitude maps to -nneg.
float fit_scale_sym_weighted(const float* x, const float* w, int nneg, int npos) {
  float amax = 0, mx = 0;
  for (int i = 0; i < 16; ++i)
    if (std::fabs(x[i]) > amax) amax = std::fabs(x[i]), mx = x[i];
  if (amax == 0) return 0;
  double best = INFINITY;
  float scale = 0;
  for (int k = -6; k <= 12; ++k) {
    const float iscale = -(static_cast<float>(nneg) + 0.1f * static_cast<float>(k)) / mx;
    double sqq = 0, sqx = 0;
    int q[16];
    for (int i = 0; i < 16; ++i) {
      q[i] = std::clamp(nearest(iscale * x[i]), -nneg, npos);
      sqq += static_cast<double>(w[i]) * q[i] * q[i];
      sqx += static_cast<double>(w[i]) * q[i] * x[i];
    }
    if (sqq == 0) continue;
    const double s = sqx / sqq, err = -sqx * sqx / sqq;  // the weighted error less the constant sum w x^2
    if (err < best) {
      best = err;
      scale = static_cast<float>(s);
    }
  }
  return scale;
}

// Per-element weights: the importance times the element's own size (as the codebook quantisers).
void element_weights(const float* x, const float* importance, float* w) {
  double sumx2 = 0;
  for (int i = 0; i < kQKK; ++i) sumx2 += static_cast<double>(x[i]) * x[i];
  const auto sigma2 = static_cast<float>(2 * sumx2 / kQKK);
  for (int i = 0; i < kQKK; ++i) w[i] = (importance ? importance[i] : 1.0f) * std::sqrt(sigma2 + x[i] * x[i]);
}

}  // namespace

void quantize_q2_k_row(const float* x, void* dst, int64_t n, const float* importance) {
  auto* y = static_cast<BlockQ2_K*>(dst);
  for (int64_t ib = 0; ib < n / kQKK; ++ib, x += kQKK) {
    float w[kQKK], a[16], b[16], max_a = 0, max_b = 0;
    element_weights(x, importance ? importance + ib * kQKK : nullptr, w);
    for (int j = 0; j < 16; ++j) {
      fit_scale_min_weighted(x + 16 * j, w + 16 * j, 3, a[j], b[j]);
      max_a = std::max(max_a, a[j]);
      max_b = std::max(max_b, b[j]);
    }
    BlockQ2_K blk{};
    blk.d = f32_to_f16(max_a / 15);
    blk.dmin = f32_to_f16(max_b / 15);
    const float d = f16_to_f32(blk.d), dmin = f16_to_f32(blk.dmin);
    for (int j = 0; j < 16; ++j) {
      const int sc = d > 0 ? std::clamp(nearest(a[j] / d), 0, 15) : 0;
      const int mn = dmin > 0 ? std::clamp(nearest(b[j] / dmin), 0, 15) : 0;
      blk.scales[j] = static_cast<uint8_t>(sc | mn << 4);
      const float dl = d * static_cast<float>(sc), ml = dmin * static_cast<float>(mn);
      for (int i = 0; i < 16; ++i) {
        const int e = 16 * j + i;
        put2(blk.qs, e, dl > 0 ? std::clamp(nearest((x[e] + ml) / dl), 0, 3) : 0);
      }
    }
    std::memcpy(&y[ib], &blk, sizeof blk);
  }
}

void quantize_q3_k_row(const float* x, void* dst, int64_t n, const float* importance) {
  auto* y = static_cast<BlockQ3_K*>(dst);
  for (int64_t ib = 0; ib < n / kQKK; ++ib, x += kQKK) {
    float w[kQKK], s[16], amax = 0, max_s = 0;
    element_weights(x, importance ? importance + ib * kQKK : nullptr, w);
    for (int j = 0; j < 16; ++j) {
      s[j] = fit_scale_sym_weighted(x + 16 * j, w + 16 * j, 4, 3);
      if (std::fabs(s[j]) > amax) amax = std::fabs(s[j]), max_s = s[j];
    }
    BlockQ3_K blk{};
    if (amax > 0) {
      const float iscale = -32.0f / max_s;
      blk.d = f32_to_f16(1 / iscale);
      const float d = f16_to_f32(blk.d);
      for (int j = 0; j < 16; ++j) {
        const int sc = std::clamp(nearest(iscale * s[j]), -32, 31);
        const int u = sc + 32;  // stored unsigned, 6 bits
        blk.scales[j % 8] = static_cast<uint8_t>(blk.scales[j % 8] | (u & 0xF) << (4 * (j / 8)));
        blk.scales[8 + j % 4] = static_cast<uint8_t>(blk.scales[8 + j % 4] | (u >> 4) << (2 * (j / 4)));
        const float dl = d * static_cast<float>(sc);
        for (int i = 0; i < 16; ++i) {
          const int e = 16 * j + i;
          const int q = (dl != 0 ? std::clamp(nearest(x[e] / dl), -4, 3) : 0) + 4;  // 0..7
          put2(blk.qs, e, q & 3);
          if (q >> 2) blk.hmask[e % 32] = static_cast<uint8_t>(blk.hmask[e % 32] | 1 << (e / 32));
        }
      }
    } else {
      for (int j = 0; j < 16; ++j) {  // all zero: scale 0 (stored 32) everywhere
        blk.scales[8 + j % 4] = static_cast<uint8_t>(blk.scales[8 + j % 4] | 2 << (2 * (j / 4)));
      }
    }
    std::memcpy(&y[ib], &blk, sizeof blk);
  }
}

}  // namespace owl
