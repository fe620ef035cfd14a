// Quantisers: float rows -> GGUF blocks. The legacy formats use ggml's closed-form scale (so
// their output matches other engines bit for bit); the K-quants and IQ4 search a few scales
// per sub-block and keep the least-squares best, then quantise the sub-block scales.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "base/error.h"
#include "tensor/fp16.h"
#include "tensor/quantize_lowbit.h"
#include "tensor/quants.h"

namespace owl {

namespace {

inline int nearest(float x) { return static_cast<int>(std::nearbyint(x)); }

// Largest-magnitude value with its sign, and its magnitude.
inline float signed_absmax(const float* x, int n, float& amax) {
  float mx = 0;
  amax = 0;
  for (int i = 0; i < n; ++i)
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      mx = x[i];
    }
  return mx;
}

// half_away: round halves away from zero (weights, as llama-quantize) instead of to even.
void quant_q8_0(const float* x, BlockQ8_0* y, int64_t nb, bool half_away) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    float amax;
    signed_absmax(x, kQK, amax);
    const float d = amax / 127, id = d ? 1 / d : 0;
    y[i].d = f32_to_f16(d);
    for (int j = 0; j < kQK; ++j)
      y[i].qs[j] = static_cast<int8_t>(half_away ? static_cast<int>(std::round(x[j] * id)) : nearest(x[j] * id));
  }
}

void quant_q4_0(const float* x, BlockQ4_0* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    float amax;
    const float mx = signed_absmax(x, kQK, amax);
    const float d = mx / -8, id = d ? 1 / d : 0;
    y[i].d = f32_to_f16(d);
    for (int j = 0; j < kQK / 2; ++j) {
      const int a = std::min(15, static_cast<int>(x[j] * id + 8.5f));
      const int b = std::min(15, static_cast<int>(x[j + kQK / 2] * id + 8.5f));
      y[i].qs[j] = static_cast<uint8_t>(a | b << 4);
    }
  }
}

void quant_q4_1(const float* x, BlockQ4_1* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    const float mn = *std::min_element(x, x + kQK), mx = *std::max_element(x, x + kQK);
    const float d = (mx - mn) / 15, id = d ? 1 / d : 0;
    y[i].d = f32_to_f16(d);
    y[i].m = f32_to_f16(mn);
    for (int j = 0; j < kQK / 2; ++j) {
      const int a = std::min(15, static_cast<int>((x[j] - mn) * id + 0.5f));
      const int b = std::min(15, static_cast<int>((x[j + kQK / 2] - mn) * id + 0.5f));
      y[i].qs[j] = static_cast<uint8_t>(a | b << 4);
    }
  }
}

template <class Block>
void set_q5(Block& b, const int* q) {
  uint32_t qh = 0;
  for (int j = 0; j < kQK / 2; ++j) {
    b.qs[j] = static_cast<uint8_t>((q[j] & 0xF) | (q[j + 16] & 0xF) << 4);
    qh |= static_cast<uint32_t>(q[j] >> 4) << j | static_cast<uint32_t>(q[j + 16] >> 4) << (j + 16);
  }
  std::memcpy(b.qh, &qh, 4);
}

void quant_q5_0(const float* x, BlockQ5_0* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    float amax;
    const float mx = signed_absmax(x, kQK, amax);
    const float d = mx / -16, id = d ? 1 / d : 0;
    y[i].d = f32_to_f16(d);
    int q[kQK];
    for (int j = 0; j < kQK; ++j) q[j] = std::min(31, static_cast<int>(x[j] * id + 16.5f));
    set_q5(y[i], q);
  }
}

void quant_q5_1(const float* x, BlockQ5_1* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    const float mn = *std::min_element(x, x + kQK), mx = *std::max_element(x, x + kQK);
    const float d = (mx - mn) / 31, id = d ? 1 / d : 0;
    y[i].d = f32_to_f16(d);
    y[i].m = f32_to_f16(mn);
    int q[kQK];
    for (int j = 0; j < kQK; ++j) q[j] = std::min(31, static_cast<int>((x[j] - mn) * id + 0.5f));
    set_q5(y[i], q);
  }
}

void quant_q8_k(const float* x, BlockQ8_K* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQKK) {
    float amax;
    const float mx = signed_absmax(x, kQKK, amax);
    if (amax == 0) {
      std::memset(&y[i], 0, sizeof(BlockQ8_K));
      continue;
    }
    // The largest value maps to -127 (the sign is folded into iscale), as ggml does: never -128,
    // so SIMD kernels may flip signs with psignb (IQ4_XS) without overflow.
    const float iscale = -127.0f / mx;
    for (int j = 0; j < kQKK; ++j) y[i].qs[j] = static_cast<int8_t>(std::min(127, nearest(iscale * x[j])));
    for (int k = 0; k < kQKK / 16; ++k) {
      int s = 0;
      for (int j = 0; j < 16; ++j) s += y[i].qs[16 * k + j];
      y[i].bsums[k] = static_cast<int16_t>(s);
    }
    y[i].d = 1 / iscale;
  }
}

// Fits x[i] ~ scale * q[i] - min with q in [0, nmax] and min >= 0, trying a few rounding grids
// and solving least squares for (scale, min) on each; keeps the lowest squared error.
void fit_scale_min(const float* x, int n, int nmax, float& scale, float& min) {
  float lo = std::min(0.0f, *std::min_element(x, x + n)), hi = *std::max_element(x, x + n);
  scale = 0;
  min = -lo;
  if (hi <= lo) return;
  float best = INFINITY;
  for (int k = -4; k <= 8; ++k) {
    const float iscale = (nmax + 0.25f * k) / (hi - lo);
    double sq = 0, sx = 0, sqq = 0, sqx = 0;
    int q[256];
    for (int i = 0; i < n; ++i) {
      q[i] = std::clamp(nearest(iscale * (x[i] - lo)), 0, nmax);
      sq += q[i];
      sx += x[i];
      sqq += static_cast<double>(q[i]) * q[i];
      sqx += static_cast<double>(q[i]) * x[i];
    }
    const double det = n * sqq - sq * sq;
    double s = 0, off = 0;
    if (det > 0) {
      s = (n * sqx - sq * sx) / det;
      off = (sx - s * sq) / n;
    }
    if (off > 0 || det <= 0) {  // the offset must be <= 0 (a subtracted, non-negative min)
      off = 0;
      s = sqq > 0 ? sqx / sqq : 0;
    }
    if (s < 0) continue;
    double err = 0;
    for (int i = 0; i < n; ++i) {
      const double e = x[i] - (s * q[i] + off);
      err += e * e;
    }
    if (err < best) {
      best = static_cast<float>(err);
      scale = static_cast<float>(s);
      min = static_cast<float>(-off);
    }
  }
}

// Fits x[i] ~ scale * q[i] with q in [-nneg, npos]; a few grids, least squares, best kept.
float fit_scale_sym(const float* x, int n, int nneg, int npos) {
  float amax;
  const float mx = signed_absmax(x, n, amax);
  if (amax == 0) return 0;
  float best = INFINITY, scale = 0;
  for (int k = -4; k <= 8; ++k) {
    const float iscale = -(nneg + 0.25f * k) / mx;
    double sqq = 0, sqx = 0;
    int q[64];
    for (int i = 0; i < n; ++i) {
      q[i] = std::clamp(nearest(iscale * x[i]), -nneg, npos);
      sqq += static_cast<double>(q[i]) * q[i];
      sqx += static_cast<double>(q[i]) * x[i];
    }
    if (sqq == 0) continue;
    const double s = sqx / sqq;
    double err = 0;
    for (int i = 0; i < n; ++i) {
      const double e = x[i] - s * q[i];
      err += e * e;
    }
    if (err < best) {
      best = static_cast<float>(err);
      scale = static_cast<float>(s);
    }
  }
  return scale;
}

// Packs 8 6-bit scales and mins the way k4_scale_min unpacks them.
void pack_k4_scales(const int* ls, const int* lm, uint8_t* p) {
  for (int j = 0; j < 4; ++j) {
    p[j] = static_cast<uint8_t>(ls[j] | (ls[j + 4] >> 4) << 6);
    p[j + 4] = static_cast<uint8_t>(lm[j] | (lm[j + 4] >> 4) << 6);
    p[j + 8] = static_cast<uint8_t>((ls[j + 4] & 0xF) | (lm[j + 4] & 0xF) << 4);
  }
}

// Shared by Q4_K (nmax 15) and Q5_K (nmax 31): fills d, dmin, scales and the quants L[256].
template <class Block>
void quant_k_asym(const float* x, Block& y, int nmax, int* L) {
  float sc[8], mn[8], max_sc = 0, max_mn = 0;
  for (int j = 0; j < 8; ++j) {
    fit_scale_min(x + 32 * j, 32, nmax, sc[j], mn[j]);
    max_sc = std::max(max_sc, sc[j]);
    max_mn = std::max(max_mn, mn[j]);
  }
  const float d = max_sc / 63, dmin = max_mn / 63;
  y.d = f32_to_f16(d);
  y.dmin = f32_to_f16(dmin);
  const float dq = f16_to_f32(y.d), dminq = f16_to_f32(y.dmin);
  int ls[8], lm[8];
  for (int j = 0; j < 8; ++j) {
    ls[j] = dq > 0 ? std::clamp(nearest(sc[j] / dq), 0, 63) : 0;
    lm[j] = dminq > 0 ? std::clamp(nearest(mn[j] / dminq), 0, 63) : 0;
  }
  pack_k4_scales(ls, lm, y.scales);
  for (int j = 0; j < 8; ++j) {
    const float dl = dq * ls[j], ml = dminq * lm[j];
    for (int i = 0; i < 32; ++i) L[32 * j + i] = dl > 0 ? std::clamp(nearest((x[32 * j + i] + ml) / dl), 0, nmax) : 0;
  }
}

void quant_q4_k(const float* x, BlockQ4_K* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQKK) {
    int L[kQKK];
    quant_k_asym(x, y[i], 15, L);
    for (int c = 0; c < 4; ++c)  // 64 elements per 32 bytes: low nibbles, then high nibbles
      for (int l = 0; l < 32; ++l) y[i].qs[32 * c + l] = static_cast<uint8_t>(L[64 * c + l] | L[64 * c + 32 + l] << 4);
  }
}

void quant_q5_k(const float* x, BlockQ5_K* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQKK) {
    int L[kQKK];
    quant_k_asym(x, y[i], 31, L);
    std::memset(y[i].qh, 0, sizeof y[i].qh);
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l) {
        const int a = L[64 * c + l], b = L[64 * c + 32 + l];
        y[i].qs[32 * c + l] = static_cast<uint8_t>((a & 0xF) | (b & 0xF) << 4);
        y[i].qh[l] |= static_cast<uint8_t>((a >> 4) << (2 * c) | (b >> 4) << (2 * c + 1));
      }
  }
}

void quant_q6_k(const float* x, BlockQ6_K* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQKK) {
    float sc[16], max_sc = 0, amax = 0;
    for (int j = 0; j < 16; ++j) {
      sc[j] = fit_scale_sym(x + 16 * j, 16, 32, 31);
      if (std::fabs(sc[j]) > amax) {
        amax = std::fabs(sc[j]);
        max_sc = sc[j];
      }
    }
    int L[kQKK];
    if (amax == 0) {
      std::memset(&y[i], 0, sizeof(BlockQ6_K));
      std::fill(L, L + kQKK, 32);
    } else {
      const float iscale = -128.0f / max_sc;
      y[i].d = f32_to_f16(1 / iscale);
      const float d = f16_to_f32(y[i].d);
      for (int j = 0; j < 16; ++j) {
        y[i].scales[j] = static_cast<int8_t>(std::min(127, nearest(iscale * sc[j])));
        const float dl = d * y[i].scales[j];
        for (int k = 0; k < 16; ++k)
          L[16 * j + k] = dl != 0 ? std::clamp(nearest(x[16 * j + k] / dl), -32, 31) + 32 : 32;
      }
    }
    for (int n = 0; n < 2; ++n) {
      const int* q = L + 128 * n;
      uint8_t* ql = y[i].ql + 64 * n;
      uint8_t* qh = y[i].qh + 32 * n;
      for (int l = 0; l < 32; ++l) {
        ql[l] = static_cast<uint8_t>((q[l] & 0xF) | (q[l + 64] & 0xF) << 4);
        ql[l + 32] = static_cast<uint8_t>((q[l + 32] & 0xF) | (q[l + 96] & 0xF) << 4);
        qh[l] = static_cast<uint8_t>(q[l] >> 4 | (q[l + 32] >> 4) << 2 | (q[l + 64] >> 4) << 4 | (q[l + 96] >> 4) << 6);
      }
    }
  }
}

// Nearest IQ4_NL level index for v (in units of the block scale).
inline int iq4_index(float v) {
  int best = 0;
  for (int k = 1; k < 16; ++k)
    if (std::fabs(v - kIQ4NL[k]) < std::fabs(v - kIQ4NL[best])) best = k;
  return best;
}

// Best scale for x ~ d * kIQ4NL[q]: tries grids anchored on the largest value at either end
// of the table, refits d by least squares on each; fills q.
float fit_iq4(const float* x, int n, uint8_t* q) {
  float amax;
  const float mx = signed_absmax(x, n, amax);
  if (amax == 0) {
    std::fill(q, q + n, static_cast<uint8_t>(8));  // level 1 * d 0 = 0
    return 0;
  }
  float best = INFINITY, scale = 0;
  uint8_t tmp[32];
  for (int k = -6; k <= 6; ++k) {
    const float id = (-127.0f + 4.0f * k) / mx;
    double sll = 0, slx = 0;
    for (int i = 0; i < n; ++i) {
      tmp[i] = static_cast<uint8_t>(iq4_index(id * x[i]));
      sll += static_cast<double>(kIQ4NL[tmp[i]]) * kIQ4NL[tmp[i]];
      slx += static_cast<double>(kIQ4NL[tmp[i]]) * x[i];
    }
    const double d = slx / sll;
    double err = 0;
    for (int i = 0; i < n; ++i) {
      const double e = x[i] - d * kIQ4NL[tmp[i]];
      err += e * e;
    }
    if (err < best) {
      best = static_cast<float>(err);
      scale = static_cast<float>(d);
      std::copy(tmp, tmp + n, q);
    }
  }
  return scale;
}

void quant_iq4_nl(const float* x, BlockIQ4_NL* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    uint8_t q[kQK];
    const float d = fit_iq4(x, kQK, q);
    y[i].d = f32_to_f16(d);
    const float dq = f16_to_f32(y[i].d);
    if (dq != 0)
      for (int j = 0; j < kQK; ++j) q[j] = static_cast<uint8_t>(iq4_index(x[j] / dq));
    for (int j = 0; j < kQK / 2; ++j) y[i].qs[j] = static_cast<uint8_t>(q[j] | q[j + 16] << 4);
  }
}

void quant_iq4_xs(const float* x, BlockIQ4_XS* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQKK) {
    float sc[8], max_sc = 0, amax = 0;
    uint8_t q[kQKK];
    for (int j = 0; j < 8; ++j) {
      sc[j] = fit_iq4(x + 32 * j, 32, q + 32 * j);
      if (std::fabs(sc[j]) > amax) {
        amax = std::fabs(sc[j]);
        max_sc = sc[j];
      }
    }
    const float d = amax == 0 ? 0 : max_sc / -32;
    y[i].d = f32_to_f16(d);
    const float dq = f16_to_f32(y[i].d);
    y[i].scales_h = 0;
    std::memset(y[i].scales_l, 0, sizeof y[i].scales_l);
    for (int j = 0; j < 8; ++j) {
      const int l = dq != 0 ? std::clamp(nearest(sc[j] / dq), -32, 31) : 0;
      const int ls = l + 32;
      y[i].scales_l[j / 2] |= static_cast<uint8_t>((ls & 0xF) << (4 * (j % 2)));
      y[i].scales_h |= static_cast<uint16_t>((ls >> 4) << (2 * j));
      const float dl = dq * l;
      for (int k = 0; k < 32; ++k)
        if (dl != 0) q[32 * j + k] = static_cast<uint8_t>(iq4_index(x[32 * j + k] / dl));
      for (int k = 0; k < 16; ++k) y[i].qs[16 * j + k] = static_cast<uint8_t>(q[32 * j + k] | q[32 * j + k + 16] << 4);
    }
  }
}

template <class Block>
Block* out(void* p) {
  return static_cast<Block*>(p);
}

}  // namespace

bool can_quantize(DType t) {
  switch (t) {
    case DType::F32:
    case DType::F16:
    case DType::BF16:
    case DType::Q4_0:
    case DType::Q4_1:
    case DType::Q5_0:
    case DType::Q5_1:
    case DType::Q8_0:
    case DType::Q2_K:
    case DType::Q3_K:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K:
    case DType::Q8_K:
    case DType::IQ4_NL:
    case DType::IQ4_XS:
      return true;
    default:
      return is_codebook_type(t);
  }
}

bool needs_importance(DType t) {
  switch (t) {
    case DType::IQ1_S:
    case DType::IQ1_M:
    case DType::IQ2_XXS:
    case DType::IQ2_XS:
    case DType::IQ2_S:
      return true;
    default:
      return false;
  }
}

namespace {

// weights: rows of a stored weight (Q8_0 rounds halves away from zero, see quants.h).
void quantize(DType t, const float* src, void* dst, int64_t n, bool weights, const float* importance) {
  if (!can_quantize(t))
    throw Error(
        std::string("quantization to ") + dtype_name(t) +
        " is not supported; choose one of F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K Q8_K IQ4_NL "
        "IQ4_XS IQ1_S IQ1_M IQ2_XXS IQ2_XS IQ2_S IQ3_XXS IQ3_S");
  row_bytes(t, n);  // throws when n is not a multiple of the block size
  const int64_t nb = n / info(t).block_size;
  switch (t) {
    case DType::F32:
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) out<uint16_t>(dst)[i] = f32_to_f16(src[i]);
      return;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) out<uint16_t>(dst)[i] = f32_to_bf16(src[i]);
      return;
    case DType::Q4_0:
      return quant_q4_0(src, out<BlockQ4_0>(dst), nb);
    case DType::Q4_1:
      return quant_q4_1(src, out<BlockQ4_1>(dst), nb);
    case DType::Q5_0:
      return quant_q5_0(src, out<BlockQ5_0>(dst), nb);
    case DType::Q5_1:
      return quant_q5_1(src, out<BlockQ5_1>(dst), nb);
    case DType::Q8_0:
      return quant_q8_0(src, out<BlockQ8_0>(dst), nb, /*half_away=*/weights);
    case DType::Q2_K:
      return quantize_q2_k_row(src, dst, n, importance);
    case DType::Q3_K:
      return quantize_q3_k_row(src, dst, n, importance);
    case DType::Q4_K:
      return quant_q4_k(src, out<BlockQ4_K>(dst), nb);
    case DType::Q5_K:
      return quant_q5_k(src, out<BlockQ5_K>(dst), nb);
    case DType::Q6_K:
      return quant_q6_k(src, out<BlockQ6_K>(dst), nb);
    case DType::Q8_K:
      return quant_q8_k(src, out<BlockQ8_K>(dst), nb);
    case DType::IQ4_NL:
      return quant_iq4_nl(src, out<BlockIQ4_NL>(dst), nb);
    case DType::IQ4_XS:
      return quant_iq4_xs(src, out<BlockIQ4_XS>(dst), nb);
    default:
      return quantize_codebook_row(t, src, dst, n, importance);  // can_quantize: a codebook type
  }
}

}  // namespace

void quantize_row(DType t, const float* src, void* dst, int64_t n) { quantize(t, src, dst, n, false, nullptr); }
void quantize_weight_row(DType t, const float* src, void* dst, int64_t n, const float* importance) {
  quantize(t, src, dst, n, true, importance);
}

}  // namespace owl
