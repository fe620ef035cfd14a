// The quantised KV cache's per-token work on 8-float vectors, bit for bit the scalar references:
// the Hadamard rotation (model/kv_rotation.h) and the writer's quantiser (tensor/quantize_kv.cpp).
//
// The rotation does the reference's butterflies (a + b, a - b, then one multiply by
// 1/sqrt(block)), strides 1, 2 and 4 inside a vector by permutes, wider ones between vectors.
//
// The quantiser runs the reference's scale search for eight blocks at once, one block per lane
// (the blocks transposed in): every step of the search, the choice of the best candidate
// included, is then a branch-free vector operation, and eight blocks' dependency chains run
// side by side. Why the bytes cannot differ from the reference's: every candidate's sums are
// exact in double whatever their order. sum q^2 adds at most 32 squares of integers <= 127
// (< 2^24, exact even in float). sum x q adds products of a float and an integer <= 127 in
// magnitude (31 significant bits, exact in double); a nonzero q needs |x| > d / 2, and every
// candidate's d is at least amax / (32 * 127) (q has x's sign, so d = sum x q / sum q^2 >=
// amax |q_max| / (32 q_max^2)), so the terms span at most 2^13 of the largest and their sum
// stays within the 53 bits of a double. sum x^2 is not exact, so each lane adds it in the
// reference's order. Every other step is the same IEEE operation on the same operands; rounding
// uses vroundps (nearest, ties to even), which equals the reference's add-and-subtract of
// 1.5 * 2^23 on the grid's range and rounds beyond it to the same clamped end.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/ops_avx2.h"
#include "tensor/fp16.h"
#include "tensor/quants.h"

namespace owl::kernels::avx2 {

namespace {

constexpr int kLanes = 8;  // blocks searched together, one per lane

// x * inv rounded to the nearest integer (ties to even) and clamped to [lo, hi]; NaN stays NaN,
// as with std::clamp in the reference.
inline __m256 snap(__m256 x, __m256 inv, __m256 lo, __m256 hi) {
  const __m256 r = _mm256_round_ps(_mm256_mul_ps(x, inv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  return _mm256_min_ps(hi, _mm256_max_ps(lo, r));
}

// Rows r[0..8) of an 8 x 8 matrix become its columns.
inline void transpose8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

inline __m256d lower_pd(__m256 v) { return _mm256_cvtps_pd(_mm256_castps256_ps128(v)); }
inline __m256d upper_pd(__m256 v) { return _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)); }

// Eight blocks, element i of each in x[i] (lane = block), and the same as doubles (lanes 0-3,
// lanes 4-7).
struct Group {
  __m256 x[kQK];
  __m256d lo[kQK], hi[kQK];
};

// One candidate's sums per lane: sum x q (two halves of four lanes) and sum q^2.
struct Sums {
  __m256d sxq_lo, sxq_hi;
  __m256 sqq;
};

// The sums of K candidates (inverse scales inv[k]) in one pass over the group, their chains
// interleaved; each sum is exact, so its order does not matter.
template <int K>
void sums(const Group& g, const __m256* inv, __m256 lo, __m256 hi, Sums* out) {
  Sums s[K];
  for (int k = 0; k < K; ++k) s[k] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_ps()};
  for (int i = 0; i < kQK; ++i)
    for (int k = 0; k < K; ++k) {
      const __m256 q = snap(g.x[i], inv[k], lo, hi);
      s[k].sqq = _mm256_fmadd_ps(q, q, s[k].sqq);
      s[k].sxq_lo = _mm256_fmadd_pd(g.lo[i], lower_pd(q), s[k].sxq_lo);
      s[k].sxq_hi = _mm256_fmadd_pd(g.hi[i], upper_pd(q), s[k].sxq_hi);
    }
  for (int k = 0; k < K; ++k) out[k] = s[k];
}

// The search's state per lane: the least error so far and its scale (in double; the reference
// keeps the scale as a float, which is this rounded, and so is every use below).
struct Best {
  __m256d err_lo = _mm256_set1_pd(INFINITY), err_hi = _mm256_set1_pd(INFINITY);
  __m256d d_lo = _mm256_setzero_pd(), d_hi = _mm256_setzero_pd();

  __m256 d() const { return _mm256_set_m128(_mm256_cvtpd_ps(d_hi), _mm256_cvtpd_ps(d_lo)); }

  // The reference's consider(): a candidate replaces the best where its error is smaller
  // (sum q^2 = 0 gives 0 / 0, a NaN error, which never is).
  void take(const Sums& s, __m256d sxx_lo, __m256d sxx_hi) {
    half(s.sxq_lo, lower_pd(s.sqq), sxx_lo, err_lo, d_lo);
    half(s.sxq_hi, upper_pd(s.sqq), sxx_hi, err_hi, d_hi);
  }
  static void half(__m256d sxq, __m256d sqq, __m256d sxx, __m256d& best_err, __m256d& best_d) {
    const __m256d err = _mm256_sub_pd(sxx, _mm256_div_pd(_mm256_mul_pd(sxq, sxq), sqq));
    const __m256d better = _mm256_cmp_pd(err, best_err, _CMP_LT_OQ);
    best_err = _mm256_blendv_pd(best_err, err, better);
    best_d = _mm256_blendv_pd(best_d, _mm256_div_pd(sxq, sqq), better);
  }
};

// tensor/quantize_kv.cpp's best_scale for the group's eight blocks.
__m256 best_scales(const Group& g, float glo, float ghi) {
  __m256d sxx_lo = _mm256_setzero_pd(), sxx_hi = _mm256_setzero_pd();
  __m256 amax = _mm256_setzero_ps();
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int i = 0; i < kQK; ++i) {
    sxx_lo = _mm256_fmadd_pd(g.lo[i], g.lo[i], sxx_lo);  // x^2 is exact: fused or not, the same
    sxx_hi = _mm256_fmadd_pd(g.hi[i], g.hi[i], sxx_hi);
    amax = _mm256_max_ps(_mm256_andnot_ps(sign, g.x[i]), amax);  // a NaN is skipped, as by the reference's >
  }
  // m: the first value of the largest magnitude, as the reference's strict > finds it.
  __m256 m = _mm256_setzero_ps();
  for (int i = kQK - 1; i >= 0; --i)
    m = _mm256_blendv_ps(m, g.x[i], _mm256_cmp_ps(_mm256_andnot_ps(sign, g.x[i]), amax, _CMP_EQ_OQ));
  const __m256 lo = _mm256_set1_ps(glo), hi = _mm256_set1_ps(ghi);
  Best best;
  constexpr int kSteps = 8;
  for (int s = 0; s <= kSteps; ++s) {
    const float shrink = 1.0f - 0.25f * static_cast<float>(s) / kSteps;
    const __m256 inv[2] = {_mm256_div_ps(_mm256_set1_ps(glo * shrink), m),
                           _mm256_div_ps(_mm256_set1_ps(ghi * shrink), m)};
    Sums c[2];
    sums<2>(g, inv, lo, hi, c);
    best.take(c[0], sxx_lo, sxx_hi);
    best.take(c[1], sxx_lo, sxx_hi);
  }
  // Two rounds of snap and refit. The reference stops after a round that does not improve; a
  // second round then would refit the same scale, give the same error and change nothing.
  for (int r = 0; r < 2; ++r) {
    const __m256 inv = _mm256_div_ps(_mm256_set1_ps(1.0f), best.d());
    Sums c;
    sums<1>(g, &inv, lo, hi, &c);
    best.take(c, sxx_lo, sxx_hi);
  }
  // A block of zeros has scale 0 (its candidates were all 0 / 0 and lost anyway).
  return _mm256_and_ps(best.d(), _mm256_cmp_ps(amax, _mm256_setzero_ps(), _CMP_GT_OQ));
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
  const size_t block_bytes = q8 ? sizeof(BlockQ8_0) : sizeof(BlockQ4_0);
  const int64_t nb = n / kQK;
  for (int64_t b0 = 0; b0 < nb; b0 += kLanes) {
    const int64_t lanes = std::min<int64_t>(kLanes, nb - b0);
    const float* x = src + b0 * kQK;
    alignas(32) float pad[kLanes * kQK];
    if (lanes < kLanes) {  // the last blocks, and blocks of zeros in the lanes past them
      std::memset(pad, 0, sizeof(pad));
      std::memcpy(pad, x, static_cast<size_t>(lanes * kQK) * sizeof(float));
      x = pad;
    }
    Group g;
    for (int c = 0; c < kQK; c += 8) {
      __m256 r[8];
      for (int k = 0; k < 8; ++k) r[k] = _mm256_loadu_ps(x + k * kQK + c);
      transpose8(r);
      for (int k = 0; k < 8; ++k) {
        g.x[c + k] = r[k];
        g.lo[c + k] = lower_pd(r[k]);
        g.hi[c + k] = upper_pd(r[k]);
      }
    }
    // Each block's integers against its fp16 scale (round to nearest even, as f32_to_f16).
    const __m128i d16 = _mm256_cvtps_ph(best_scales(g, glo, ghi), _MM_FROUND_TO_NEAREST_INT);
    const __m256 d = _mm256_cvtph_ps(d16);
    const __m256 inv =
        _mm256_and_ps(_mm256_div_ps(_mm256_set1_ps(1.0f), d), _mm256_cmp_ps(d, _mm256_setzero_ps(), _CMP_NEQ_UQ));
    alignas(32) float invs[kLanes];
    alignas(16) uint16_t ds[kLanes];
    _mm256_store_ps(invs, inv);
    _mm_store_si128(reinterpret_cast<__m128i*>(ds), d16);
    for (int64_t k = 0; k < lanes; ++k) {
      const float* xb = x + k * kQK;
      const __m256 vinv = _mm256_set1_ps(invs[k]);
      __m256i q[4];
      for (int j = 0; j < 4; ++j) q[j] = _mm256_cvttps_epi32(snap(_mm256_loadu_ps(xb + 8 * j), vinv, lo, hi));
      // int32 -> int16 -> int8 with packs, which interleave 128-bit lanes; the permute restores order.
      const __m256i w01 = _mm256_packs_epi32(q[0], q[1]), w23 = _mm256_packs_epi32(q[2], q[3]);
      const __m256i bytes =
          _mm256_permutevar8x32_epi32(_mm256_packs_epi16(w01, w23), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
      uint8_t* out = static_cast<uint8_t*>(dst) + (b0 + k) * block_bytes;
      if (q8) {
        auto* y = reinterpret_cast<BlockQ8_0*>(out);
        y->d = ds[k];
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(y->qs), bytes);
      } else {
        // Element i in the low nibble of byte i, element i + 16 in its high nibble, both + 8.
        auto* y = reinterpret_cast<BlockQ4_0*>(out);
        y->d = ds[k];
        const __m256i u = _mm256_add_epi8(bytes, _mm256_set1_epi8(8));
        const __m128i lo_half = _mm256_castsi256_si128(u), hi_half = _mm256_extracti128_si256(u, 1);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(y->qs), _mm_or_si128(lo_half, _mm_slli_epi16(hi_half, 4)));
      }
    }
  }
}

}  // namespace owl::kernels::avx2
