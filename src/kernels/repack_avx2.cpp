// AVX2 kernels for the 8-row packed layouts of repack.h (compiled with -mavx2 -mfma -mf16c).
// One 256-bit weight load holds 4 weights of each of 8 rows; 4 activation bytes are broadcast to
// every lane, so maddubs + madd leave one partial int32 sum per weight row and the 8 rows'
// block scales apply with one float multiply-add. Integer sums stay exact; only the float
// summation order differs from the reference (per block, rows in lanes).
// M (1..4) activation rows share each weight register: 1 for decode, 4 in prefill tiles.
#include <immintrin.h>

#include <cstring>

#include "kernels/repack.h"
#include "kernels/repack_simd.h"
#include "kernels/vec_dot.h"
#include "tensor/quants.h"

namespace owl::kernels {

namespace {

// pshufb control copying byte k of every 32-bit lane, zero-extended, into both of its int16 halves.
inline __m256i pick_byte(int k) {
  alignas(32) int8_t c[32];
  for (int i = 0; i < 32; ++i) c[i] = (i % 2 == 0) ? static_cast<int8_t>(4 * ((i % 16) / 4) + k) : static_cast<int8_t>(-128);
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(c));
}
// pshufb control picking, for lane r (row r), byte 2r + b of a 16-byte [8 rows][2] table (broadcast
// to both halves) into the high byte of both int16 halves (then >> 8: sign-extended).
inline __m256i pick_hi(int b) {
  alignas(32) int8_t c[32];
  for (int i = 0; i < 32; ++i) {
    const int r = (i / 4) % 4, lane_half = i / 16;
    const int row = r + 4 * lane_half;
    c[i] = (i % 2 == 1) ? static_cast<int8_t>(2 * row + b) : static_cast<int8_t>(-128);
  }
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(c));
}

// ---- Q4_K x Q8_K ----
template <int M>
void gemm_q4_k(int64_t in, const uint8_t* grp, const uint8_t* xa, size_t xs, float* y, int64_t ld, int valid) {
  const int64_t nb = in / kQKK;
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  const __m256i pick[4] = {pick_byte(0), pick_byte(1), pick_byte(2), pick_byte(3)};
  __m256 acc[M];
  for (int m = 0; m < M; ++m) acc[m] = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t* b = grp + i * 1152;
    prefetch_block(b, 1152);
    const Q4KScales s = q4_k_scales(b + 32);
    const uint8_t* qs = b + 128;
    const BlockQ8_K* a[M];
    for (int m = 0; m < M; ++m) a[m] = reinterpret_cast<const BlockQ8_K*>(xa + m * xs) + i;
    __m256i isum[M];
    for (int m = 0; m < M; ++m) isum[m] = _mm256_setzero_si256();
    for (int j = 0; j < 4; ++j) {
      __m256i plo[M], phi[M];
      for (int m = 0; m < M; ++m) plo[m] = phi[m] = _mm256_setzero_si256();
      // 8 steps of 4 elements: sums of up to 8 * 2 * 15 * 128 fit int16.
      for (int g = 0; g < 8; ++g) {
        const __m256i q = load32(qs + (j * 8 + g) * 32);
        const __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        for (int m = 0; m < M; ++m) {
          plo[m] = _mm256_add_epi16(plo[m], _mm256_maddubs_epi16(lo, bcast4(a[m]->qs + 64 * j + 4 * g)));
          phi[m] = _mm256_add_epi16(phi[m], _mm256_maddubs_epi16(hi, bcast4(a[m]->qs + 64 * j + 32 + 4 * g)));
        }
      }
      // Scales 2j and 2j + 1 of every row: bytes 0, 1 (j even) or 2, 3 of each lane.
      const __m256i sc = j < 2 ? s.sc_lo : s.sc_hi;
      const __m256i s_lo = _mm256_shuffle_epi8(sc, pick[2 * (j % 2)]), s_hi = _mm256_shuffle_epi8(sc, pick[2 * (j % 2) + 1]);
      for (int m = 0; m < M; ++m)
        isum[m] = _mm256_add_epi32(isum[m], _mm256_add_epi32(_mm256_madd_epi16(plo[m], s_lo), _mm256_madd_epi16(phi[m], s_hi)));
    }
    const __m256 d = fp16x8(b), dmin = fp16x8(b + 16);
    for (int m = 0; m < M; ++m) {
      const __m256i ms = q4_k_mins(s, a[m]->bsums);
      const __m256 da = _mm256_set1_ps(a[m]->d);
      acc[m] = _mm256_fmadd_ps(_mm256_mul_ps(d, da), _mm256_cvtepi32_ps(isum[m]), acc[m]);
      acc[m] = _mm256_fnmadd_ps(_mm256_mul_ps(dmin, da), _mm256_cvtepi32_ps(ms), acc[m]);
    }
  }
  store_rows<M>(acc, y, ld, valid);
}

// ---- Q6_K x Q8_K ----
template <int M>
void gemm_q6_k(int64_t in, const uint8_t* grp, const uint8_t* xa, size_t xs, float* y, int64_t ld, int valid) {
  const int64_t nb = in / kQKK;
  const __m256i pick0 = pick_hi(0), pick1 = pick_hi(1);
  __m256 acc[M];
  for (int m = 0; m < M; ++m) acc[m] = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t* b = grp + i * 1680;
    prefetch_block(b, 1680);
    const uint8_t* sc = b + 16;
    const uint8_t* ql = b + 144;
    const uint8_t* qh = b + 1168;
    const BlockQ8_K* a[M];
    __m256i isum[M];
    for (int m = 0; m < M; ++m) {
      a[m] = reinterpret_cast<const BlockQ8_K*>(xa + m * xs) + i;
      isum[m] = q6_k_offset(sc, a[m]->bsums);  // the -32 offset of every level
    }
    for (int c = 0; c < 4; ++c) {
      const __m256i sb_lo = _mm256_broadcastsi128_si256(load16(sc + 16 * (2 * c)));
      const __m256i sb_hi = _mm256_broadcastsi128_si256(load16(sc + 16 * (2 * c + 1)));
      for (int hh = 0; hh < 2; ++hh) {  // elements 64c + 16 hh .. + 16 (and + 32): sub-blocks 4c + hh, 4c + 2 + hh
        const __m256i s_lo = _mm256_srai_epi16(_mm256_shuffle_epi8(sb_lo, hh ? pick1 : pick0), 8);
        const __m256i s_hi = _mm256_srai_epi16(_mm256_shuffle_epi8(sb_hi, hh ? pick1 : pick0), 8);
        // 2 x 2 steps of 4 elements: sums up to 4 * 2 * 63 * 128 overflow int16, so madd every 2 steps.
        for (int h = 2 * hh; h < 2 * hh + 2; ++h) {
          const __m256i H = load32(qh + (c * 4 + h) * 32);
          const __m256i L0 = load32(ql + (c * 8 + 2 * h) * 32), L1 = load32(ql + (c * 8 + 2 * h + 1) * 32);
          __m256i lo0, hi0, lo1, hi1;
          q6_k_levels(L0, L1, H, lo0, hi0, lo1, hi1);
          for (int m = 0; m < M; ++m) {
            const int8_t* aq = a[m]->qs + 64 * c + 8 * h;
            const __m256i pl = _mm256_add_epi16(_mm256_maddubs_epi16(lo0, bcast4(aq)), _mm256_maddubs_epi16(lo1, bcast4(aq + 4)));
            const __m256i ph =
                _mm256_add_epi16(_mm256_maddubs_epi16(hi0, bcast4(aq + 32)), _mm256_maddubs_epi16(hi1, bcast4(aq + 36)));
            isum[m] = _mm256_add_epi32(isum[m], _mm256_add_epi32(_mm256_madd_epi16(pl, s_lo), _mm256_madd_epi16(ph, s_hi)));
          }
        }
      }
    }
    const __m256 d = fp16x8(b);
    for (int m = 0; m < M; ++m)
      acc[m] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(a[m]->d)), _mm256_cvtepi32_ps(isum[m]), acc[m]);
  }
  store_rows<M>(acc, y, ld, valid);
}

// AVX2 products of unsigned and signed bytes: pairs into int16 (no overflow: one side is at
// most 128 in magnitude, the other 127), then pairs of those into int32.
struct Avx2Dot {
  static __m256i acc(__m256i acc, __m256i u, __m256i s) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
  }
};

OWL_PACKED_M_KERNEL(PQ4_K, gemm_q4_k)
OWL_PACKED_M_KERNEL(PQ6_K, gemm_q6_k)

}  // namespace

PackedFn packed_kernel_avx2(DType t) {
  switch (t) {
    case DType::Q4_K: return by_m<PQ4_K>;
    case DType::Q6_K: return by_m<PQ6_K>;
    case DType::Q8_0: return by_m<Q8_0Kernel<Avx2Dot>::K>;
    case DType::Q5_0: return by_m<Q5_0Kernel<Avx2Dot>::K>;
    default: return nullptr;
  }
}

}  // namespace owl::kernels
