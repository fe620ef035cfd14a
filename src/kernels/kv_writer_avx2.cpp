// The quantised KV cache's per-token work on 8-float vectors, bit for bit the scalar references:
// the Hadamard rotation (model/kv_rotation.h) and the writer's quantiser (tensor/quantize_kv.cpp).
//
// The rotation does the reference's butterflies (a + b, a - b, then one multiply by
// 1/sqrt(block)), strides 1, 2 and 4 inside a vector by permutes, wider ones between vectors.
//
// The quantiser runs the same scale search, byte for byte. Why the bytes cannot differ: every candidate's sums are
// exact in double whatever their order. sum q^2 adds at most 32 squares of integers <= 127 (< 2^24, exact even in
// float). sum x q adds products of a float and an integer <= 127 in magnitude (31 significant bits, exact in double); a
// nonzero q needs |x| > d / 2, and every candidate's d is at least amax / (32 * 127) (q has x's sign, so d = sum x q /
// sum q^2 >= amax |q_max| / (32 q_max^2)), so the terms span at most 2^13 of the largest and their sum stays within the
// 53 bits of a double. sum x^2 is not exact, so it is added in the reference's order.
// Rounding uses vroundps (nearest, ties to even), which equals the reference's add-and-subtract
// of 1.5 * 2^23 on the grid's range and rounds beyond it to the same clamped end.
#include <immintrin.h>

#include <cmath>

#include "kernels/ops_avx2.h"
#include "tensor/fp16.h"
#include "tensor/quants.h"

namespace owl::kernels::avx2 {

namespace {

struct Block {
  __m256 x[4];    // the block's 32 values
  __m256d xd[8];  // the same as doubles, four at a time
};

// x * inv rounded to the nearest integer (ties to even) and clamped to [lo, hi]; NaN stays NaN,
// as with std::clamp in the reference.
inline __m256 snap(__m256 x, __m256 inv, __m256 lo, __m256 hi) {
  const __m256 r = _mm256_round_ps(_mm256_mul_ps(x, inv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  return _mm256_min_ps(hi, _mm256_max_ps(lo, r));
}

inline double hsum(__m256d v) {
  const __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
  return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

struct Sums {
  double sxq, sqq;
};

// sum x q and sum q^2 for q = snap(x * inv), both exact (see the top of the file).
inline Sums sums(const Block& b, float inv_s, __m256 lo, __m256 hi) {
  const __m256 inv = _mm256_set1_ps(inv_s);
  __m256 qq = _mm256_setzero_ps();
  __m256d xq0 = _mm256_setzero_pd(), xq1 = _mm256_setzero_pd();
  for (int j = 0; j < 4; ++j) {
    const __m256 q = snap(b.x[j], inv, lo, hi);
    qq = _mm256_fmadd_ps(q, q, qq);
    xq0 = _mm256_fmadd_pd(b.xd[2 * j], _mm256_cvtps_pd(_mm256_castps256_ps128(q)), xq0);
    xq1 = _mm256_fmadd_pd(b.xd[2 * j + 1], _mm256_cvtps_pd(_mm256_extractf128_ps(q, 1)), xq1);
  }
  return {hsum(_mm256_add_pd(xq0, xq1)), static_cast<double>(hsum(qq))};
}

// tensor/quantize_kv.cpp's best_scale, step for step.
float best_scale(const float* x, const Block& b, float glo, float ghi) {
  double sxx = 0;
  float m = 0, amax = 0;
  for (int i = 0; i < kQK; ++i) {
    sxx += static_cast<double>(x[i]) * x[i];
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      m = x[i];
    }
  }
  if (amax == 0) return 0;
  const __m256 lo = _mm256_set1_ps(glo), hi = _mm256_set1_ps(ghi);
  float best_d = 0;
  double best_err = INFINITY;
  auto take = [&](Sums s) {
    if (s.sqq == 0) return false;
    const double err = sxx - s.sxq * s.sxq / s.sqq;
    if (!(err < best_err)) return false;
    best_err = err;
    best_d = static_cast<float>(s.sxq / s.sqq);
    return true;
  };
  // The 18 candidates do not depend on each other: their sums first, then the reference's
  // comparisons in its order.
  constexpr int kSteps = 8;
  Sums cand[2 * (kSteps + 1)];
  for (int s = 0; s <= kSteps; ++s) {
    const float shrink = 1.0f - 0.25f * static_cast<float>(s) / kSteps;
    cand[2 * s] = sums(b, glo * shrink / m, lo, hi);
    cand[2 * s + 1] = sums(b, ghi * shrink / m, lo, hi);
  }
  for (const Sums& s : cand) take(s);
  for (int r = 0; r < 2; ++r)
    if (!take(sums(b, 1 / best_d, lo, hi))) break;
  return best_d;
}

}  // namespace

void hadamard_blocks(float* x, int64_t n, int64_t block) {
  const __m256 norm = _mm256_set1_ps(1.0f / std::sqrt(static_cast<float>(block)));
  // Lanes whose butterfly takes the difference (the upper element of each pair) per stride.
  constexpr int kUpper1 = 0xAA, kUpper2 = 0xCC, kUpper4 = 0xF0;
  for (int64_t base = 0; base < n; base += block) {
    float* v = x + base;
    for (int64_t i = 0; i < block; i += 8) {
      __m256 r = _mm256_loadu_ps(v + i);
      // Stride 1: lane pairs (0,1), (2,3) ...; the swapped vector s holds each lane's partner,
      // the lower lane keeps a + b (= s + r), the upper gets a - b (= s - r, s being a there).
      __m256 s = _mm256_permute_ps(r, 0xB1);
      r = _mm256_blend_ps(_mm256_add_ps(r, s), _mm256_sub_ps(s, r), kUpper1);
      s = _mm256_permute_ps(r, 0x4E);  // stride 2
      r = _mm256_blend_ps(_mm256_add_ps(r, s), _mm256_sub_ps(s, r), kUpper2);
      s = _mm256_permute2f128_ps(r, r, 1);  // stride 4
      r = _mm256_blend_ps(_mm256_add_ps(r, s), _mm256_sub_ps(s, r), kUpper4);
      _mm256_storeu_ps(v + i, r);
    }
    for (int64_t h = 8; h < block; h *= 2)
      for (int64_t i = 0; i < block; i += 2 * h)
        for (int64_t j = i; j < i + h; j += 8) {
          const __m256 a = _mm256_loadu_ps(v + j), b = _mm256_loadu_ps(v + j + h);
          _mm256_storeu_ps(v + j, _mm256_add_ps(a, b));
          _mm256_storeu_ps(v + j + h, _mm256_sub_ps(a, b));
        }
    for (int64_t i = 0; i < block; i += 8) _mm256_storeu_ps(v + i, _mm256_mul_ps(_mm256_loadu_ps(v + i), norm));
  }
}

void quantize_kv_row(DType t, const float* src, void* dst, int64_t n) {
  const bool q8 = t == DType::Q8_0;
  const float glo = q8 ? -127.0f : -8.0f, ghi = q8 ? 127.0f : 7.0f;
  const __m256 lo = _mm256_set1_ps(glo), hi = _mm256_set1_ps(ghi);
  for (int64_t bi = 0; bi < n / kQK; ++bi) {
    const float* x = src + bi * kQK;
    Block b;
    for (int j = 0; j < 4; ++j) {
      b.x[j] = _mm256_loadu_ps(x + 8 * j);
      b.xd[2 * j] = _mm256_cvtps_pd(_mm_loadu_ps(x + 8 * j));
      b.xd[2 * j + 1] = _mm256_cvtps_pd(_mm_loadu_ps(x + 8 * j + 4));
    }
    const uint16_t d16 = f32_to_f16(best_scale(x, b, glo, ghi));
    const float d = f16_to_f32(d16);
    const __m256 inv = _mm256_set1_ps(d != 0 ? 1 / d : 0);
    __m256i q[4];
    for (int j = 0; j < 4; ++j) q[j] = _mm256_cvttps_epi32(snap(b.x[j], inv, lo, hi));
    // int32 -> int16 -> int8 with packs, which interleave 128-bit lanes; the permute restores order.
    const __m256i w01 = _mm256_packs_epi32(q[0], q[1]), w23 = _mm256_packs_epi32(q[2], q[3]);
    const __m256i bytes =
        _mm256_permutevar8x32_epi32(_mm256_packs_epi16(w01, w23), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    if (q8) {
      auto* y = static_cast<BlockQ8_0*>(dst) + bi;
      y->d = d16;
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(y->qs), bytes);
    } else {
      // Element i in the low nibble of byte i, element i + 16 in its high nibble, both + 8.
      auto* y = static_cast<BlockQ4_0*>(dst) + bi;
      y->d = d16;
      const __m256i u = _mm256_add_epi8(bytes, _mm256_set1_epi8(8));
      const __m128i lo_half = _mm256_castsi256_si128(u), hi_half = _mm256_extracti128_si256(u, 1);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(y->qs), _mm_or_si128(lo_half, _mm_slli_epi16(hi_half, 4)));
    }
  }
}

}  // namespace owl::kernels::avx2
