// AVX-512 VNNI kernels for the 8-row packed layouts of repack.h (compiled with -mavx512vl
// -mavx512vnni on top of AVX2; called only after a CPUID check). Same 256-bit registers and
// layout as repack_avx2.cpp, but vpdpbusd multiplies 4 unsigned weight bytes by 4 signed
// activation bytes and adds them into an int32 lane in one instruction, where AVX2 needs
// maddubs + add (and int16 partial sums that must be flushed before they overflow). Sub-block
// sums are exact int32 and the block scales apply in the same float order as the AVX2 kernels,
// so both give bit-identical results.
#include <immintrin.h>

#include "kernels/repack.h"
#include "kernels/repack_simd.h"
#include "kernels/vec_dot.h"
#include "tensor/quants.h"

namespace owl::kernels {

namespace {

inline __m256i dot4(__m256i acc, __m256i u8_weights, __m256i s8_acts) {
  return _mm256_dpbusd_epi32(acc, u8_weights, s8_acts);
}

// ---- Q4_K x Q8_K ----
template <int M>
void gemm_q4_k(int64_t in, const uint8_t* grp, const uint8_t* xa, size_t xs, float* y, int64_t ld, int valid) {
  const int64_t nb = in / kQKK;
  const __m256i m4 = _mm256_set1_epi8(0x0F), byte0 = _mm256_set1_epi32(0xFF);
  __m256 acc[M];
  for (int m = 0; m < M; ++m) acc[m] = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t* b = grp + i * 1152;
    prefetch_block(b, 1152);
    const Q4KScales s = q4_k_scales(b + 32);
    const uint8_t* qs = b + 128;
    const BlockQ8_K* a[M];
    __m256i isum[M];
    for (int m = 0; m < M; ++m) {
      a[m] = reinterpret_cast<const BlockQ8_K*>(xa + m * xs) + i;
      isum[m] = _mm256_setzero_si256();
    }
    for (int j = 0; j < 4; ++j) {  // low nibbles: sub-block 2j, high nibbles: sub-block 2j + 1
      __m256i slo[M], shi[M];
      for (int m = 0; m < M; ++m) slo[m] = shi[m] = _mm256_setzero_si256();
      for (int g = 0; g < 8; ++g) {
        const __m256i q = load32(qs + (j * 8 + g) * 32);
        const __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        for (int m = 0; m < M; ++m) {
          slo[m] = dot4(slo[m], lo, bcast4(a[m]->qs + 64 * j + 4 * g));
          shi[m] = dot4(shi[m], hi, bcast4(a[m]->qs + 64 * j + 32 + 4 * g));
        }
      }
      // Scales 2j and 2j + 1 of every row: bytes 0, 1 (j even) or 2, 3 of each lane.
      const __m256i sc = j < 2 ? s.sc_lo : s.sc_hi;
      const __m256i s_lo = j % 2 == 0 ? _mm256_and_si256(sc, byte0) : _mm256_and_si256(_mm256_srli_epi32(sc, 16), byte0);
      const __m256i s_hi = j % 2 == 0 ? _mm256_and_si256(_mm256_srli_epi32(sc, 8), byte0) : _mm256_srli_epi32(sc, 24);
      for (int m = 0; m < M; ++m)
        isum[m] = _mm256_add_epi32(isum[m], _mm256_add_epi32(_mm256_mullo_epi32(slo[m], s_lo), _mm256_mullo_epi32(shi[m], s_hi)));
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
      // Lane r of pair k: scale 2k | scale 2k + 1 << 16 of row r (signed).
      const __m256i p_lo = _mm256_cvtepi8_epi16(load16(sc + 16 * (2 * c)));
      const __m256i p_hi = _mm256_cvtepi8_epi16(load16(sc + 16 * (2 * c + 1)));
      for (int hh = 0; hh < 2; ++hh) {  // elements 64c + 16 hh .. + 16 (and + 32): sub-blocks 4c + hh, 4c + 2 + hh
        const __m256i s_lo = hh ? _mm256_srai_epi32(p_lo, 16) : _mm256_srai_epi32(_mm256_slli_epi32(p_lo, 16), 16);
        const __m256i s_hi = hh ? _mm256_srai_epi32(p_hi, 16) : _mm256_srai_epi32(_mm256_slli_epi32(p_hi, 16), 16);
        __m256i slo[M], shi[M];
        for (int m = 0; m < M; ++m) slo[m] = shi[m] = _mm256_setzero_si256();
        for (int h = 2 * hh; h < 2 * hh + 2; ++h) {
          const __m256i H = load32(qh + (c * 4 + h) * 32);
          const __m256i L0 = load32(ql + (c * 8 + 2 * h) * 32), L1 = load32(ql + (c * 8 + 2 * h + 1) * 32);
          __m256i lo0, hi0, lo1, hi1;
          q6_k_levels(L0, L1, H, lo0, hi0, lo1, hi1);
          for (int m = 0; m < M; ++m) {
            const int8_t* aq = a[m]->qs + 64 * c + 8 * h;
            slo[m] = dot4(dot4(slo[m], lo0, bcast4(aq)), lo1, bcast4(aq + 4));
            shi[m] = dot4(dot4(shi[m], hi0, bcast4(aq + 32)), hi1, bcast4(aq + 36));
          }
        }
        for (int m = 0; m < M; ++m)
          isum[m] = _mm256_add_epi32(isum[m], _mm256_add_epi32(_mm256_mullo_epi32(slo[m], s_lo), _mm256_mullo_epi32(shi[m], s_hi)));
      }
    }
    const __m256 d = fp16x8(b);
    for (int m = 0; m < M; ++m)
      acc[m] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(a[m]->d)), _mm256_cvtepi32_ps(isum[m]), acc[m]);
  }
  store_rows<M>(acc, y, ld, valid);
}

struct VnniDot {
  static __m256i acc(__m256i acc, __m256i u, __m256i s) { return _mm256_dpbusd_epi32(acc, u, s); }
};

OWL_PACKED_M_KERNEL(PQ4_K, gemm_q4_k)
OWL_PACKED_M_KERNEL(PQ6_K, gemm_q6_k)

}  // namespace

PackedFn packed_kernel_avx512vnni(DType t) {
  switch (t) {
    case DType::Q4_K: return by_m<PQ4_K>;
    case DType::Q6_K: return by_m<PQ6_K>;
    case DType::Q8_0: return by_m<Q8_0Kernel<VnniDot>::K>;
    case DType::Q5_0: return by_m<Q5_0Kernel<VnniDot>::K>;
    default: return nullptr;
  }
}

}  // namespace owl::kernels
