// AVX2/FMA/F16C row kernels and attention (compiled with -mavx2 -mfma -mf16c).
#include "kernels/ops_avx2.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "kernels/attention_simd.h"
#include "kernels/gemm_f32_simd.h"
#include "tensor/fp16.h"
#include "tensor/quants.h"

namespace owl::kernels::avx2 {

namespace {

inline __m256 silu8(__m256 x) {
  const __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), x));
  return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

inline float silu1(float x) { return x / (1.0f + std::exp(-x)); }

}  // namespace

void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 v0 = _mm256_loadu_ps(x + i), v1 = _mm256_loadu_ps(x + i + 8);
    a0 = _mm256_fmadd_ps(v0, v0, a0);
    a1 = _mm256_fmadd_ps(v1, v1, a1);
  }
  double ss = hsum8(_mm256_add_ps(a0, a1));
  for (; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float s = 1.0f / std::sqrt(static_cast<float>(ss / static_cast<double>(n)) + eps);
  const __m256 vs = _mm256_set1_ps(s);
  i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), vs);
    if (w) v = _mm256_mul_ps(v, _mm256_loadu_ps(w + i));
    _mm256_storeu_ps(y + i, v);
  }
  for (; i < n; ++i) y[i] = x[i] * s * (w ? w[i] : 1.0f);
}

void softmax(float* x, int64_t n) {
  if (n <= 0) return;
  __m256 vm = _mm256_set1_ps(-INFINITY);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(x + i));
  float mx = hmax8(vm);
  for (; i < n; ++i) mx = std::max(mx, x[i]);
  const __m256 m8 = _mm256_set1_ps(mx);
  __m256 acc = _mm256_setzero_ps();
  i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), m8));
    _mm256_storeu_ps(x + i, e);
    acc = _mm256_add_ps(acc, e);
  }
  double sum = hsum8(acc);
  for (; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const float inv = static_cast<float>(1.0 / sum);
  const __m256 vi = _mm256_set1_ps(inv);
  i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), vi));
  for (; i < n; ++i) x[i] *= inv;
}

void silu(float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, silu8(_mm256_loadu_ps(x + i)));
  for (; i < n; ++i) x[i] = silu1(x[i]);
}

void swiglu(const float* gate, const float* up, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_mul_ps(silu8(_mm256_loadu_ps(gate + i)), _mm256_loadu_ps(up + i)));
  for (; i < n; ++i) y[i] = silu1(gate[i]) * up[i];
}

void add(const float* a, const float* b, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
  for (; i < n; ++i) y[i] = a[i] + b[i];
}

void scale_add(float* y, const float* x, float s, int64_t n) {
  const __m256 vs = _mm256_set1_ps(s);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(vs, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += s * x[i];
}

void quantize_f16(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; ++i) dst[i] = f32_to_f16(src[i]);
}

void dequantize_f16(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  for (; i < n; ++i) dst[i] = f16_to_f32(src[i]);
}

namespace {

// 8 floats in 16 registers, for DecodeAttention (attention_simd.h).
struct Vec8 {
  using Reg = __m256;
  static constexpr int64_t kWidth = 8;
  static constexpr int kTileQ = 2;  // 2 queries x 4 keys = 8 accumulators, + 4 keys + 1 query
  // Q8_0/Q4_0 scores stay exact f32 products here (no integer dot; see attention_simd.h).
  using KeyDot = void;
  static Reg zero() { return _mm256_setzero_ps(); }
  static Reg load(const float* p, int64_t e) { return _mm256_loadu_ps(p + e); }
  static Reg load(const uint16_t* p, int64_t e) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + e)));
  }
  // The integers of Q8_0/Q4_0 elements [e, e + 8), unscaled (the kernel applies the scales).
  static Reg load_q(const BlockQ8_0* p, int64_t e) {
    const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p[e / kQK].qs + e % kQK));
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
  }
  // Q4_0 element i < 16 is the low nibble of byte i, element 16 + i its high nibble (the nibbles
  // as stored: the kernel subtracts 8 through the scales, kBlockOffset).
  static Reg load_q(const BlockQ4_0* p, int64_t e) {
    const int64_t i = e % kQK;
    __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p[e / kQK].qs + (i & 15)));
    if (i >= 16) q = _mm_srli_epi16(q, 4);
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_and_si128(q, _mm_set1_epi8(0x0F))));
  }
  static Reg set1(float x) { return _mm256_set1_ps(x); }
  static Reg mul(Reg a, Reg b) { return _mm256_mul_ps(a, b); }
  static Reg fmadd(Reg a, Reg b, Reg c) { return _mm256_fmadd_ps(a, b, c); }
  static void store(float* p, Reg a) { _mm256_storeu_ps(p, a); }
  static __m128 sum4(Reg a0, Reg a1, Reg a2, Reg a3) { return hsum8x4(a0, a1, a2, a3); }
  // Keeps loaded keys in registers: GCC otherwise folds their loads into every query's FMA,
  // loading each key once per query and making the loop load-bound.
  static void keep(Reg& a, Reg& b, Reg& c, Reg& d) { __asm__("" : "+x"(a), "+x"(b), "+x"(c), "+x"(d)); }
};

}  // namespace

void attention_rows_block(const float* q, int64_t n_head, int64_t group, int64_t g, int64_t r0, int64_t r1,
                          const int64_t* begins, const int64_t* ends, int64_t dk, int64_t dv, const KVSpan& k,
                          const KVSpan& v, float scale, float* out) {
  RowsAttention<Vec8>::block(q, n_head, group, g, r0, r1, begins, ends, dk, dv, k, v, scale, out);
}

void attention_decode_part(const float* q, int64_t group, int64_t h0, int64_t h1, int64_t dk, int64_t dv,
                           const KVSpan& k, const KVSpan& v, int64_t t_begin, int64_t t_end, float scale, float* acc,
                           float* mx, float* l) {
  DecodeAttention<Vec8>::run(q, group, h0, h1, dk, dv, k, v, t_begin, t_end, scale, acc, mx, l);
}

void gemm_f32_rows(const GemmF32& g, int64_t i0, int64_t i1) { GemmF32Tiles<Vec8>::rows<6>(g, i0, i1); }

}  // namespace owl::kernels::avx2
