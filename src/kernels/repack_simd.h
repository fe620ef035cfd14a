// Helpers shared by the packed-layout kernels (repack_avx2.cpp, repack_avx512vnni.cpp). Each
// kernel file is compiled with its own instruction-set flags, so everything here has internal
// linkage: every file gets its own copy, and no AVX-512 encoding can leak into the AVX2 build.
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/repack.h"
#include "kernels/vec_dot.h"
#include "tensor/quants.h"

namespace owl::kernels {
namespace {

inline __m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
inline __m128i load16(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }
// 4 activation bytes in every 32-bit lane (one per weight row).
inline __m256i bcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}
inline __m256 fp16x8(const uint8_t* p) { return _mm256_cvtph_ps(load16(p)); }

// Decode streams weights from DRAM once; the hardware prefetcher alone leaves the core waiting
// for every line, so compute and memory time add up (Q4_K GEMV: 7.1 GB/s on one core, 9.6 with
// this). Asking for the lines kPrefetchBytes ahead overlaps them. One call per block.
constexpr int kPrefetchBytes = 4096;
inline void prefetch_block(const uint8_t* b, size_t bytes) {
  for (size_t o = 0; o < bytes; o += 64) _mm_prefetch(reinterpret_cast<const char*>(b + kPrefetchBytes + o), _MM_HINT_T0);
}

// Writes M rows of 8 results (the first `valid` of each) ld floats apart.
template <int M>
inline void store_rows(const __m256 acc[M], float* y, int64_t ld, int valid) {
  for (int m = 0; m < M; ++m) {
    if (valid == kPackRows) {
      _mm256_storeu_ps(y + m * ld, acc[m]);
    } else {
      alignas(32) float t[8];
      _mm256_store_ps(t, acc[m]);
      std::memcpy(y + m * ld, t, static_cast<size_t>(valid) * sizeof(float));
    }
  }
}

// The 6-bit scales and mins of a packed Q4_K block for 8 rows (lane r = row r, byte k of the
// lane = sub-block k or 4 + k), decoded from the [3][8 rows][4] bytes at p.
struct Q4KScales {
  __m256i sc_lo, sc_hi, mn_lo, mn_hi;  // scales 0-3, 4-7; mins 0-3, 4-7
};
inline Q4KScales q4_k_scales(const uint8_t* p) {
  const __m256i m6 = _mm256_set1_epi8(0x3F), m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
  const __m256i a = load32(p), b = load32(p + 32), c = load32(p + 64);
  // bits 6-7 of bytes 0-3 (4-7) are bits 4-5 of scales (mins) 4-7; bytes 8-11 hold their low 4 bits.
  return {_mm256_and_si256(a, m6), _mm256_or_si256(_mm256_and_si256(c, m4), _mm256_and_si256(_mm256_srli_epi16(a, 2), m30)),
          _mm256_and_si256(b, m6),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(c, 4), m4), _mm256_and_si256(_mm256_srli_epi16(b, 2), m30))};
}

// Q4_K mins term of one block for 8 rows: sum over sub-blocks s of min[r][s] * (activation sum
// of sub-block s); bsums: Q8_K's 16 sums of 16 elements.
inline __m256i q4_k_mins(const Q4KScales& s, const int16_t* bsums) {
  // Sub-block sums 0..7, reordered to int16 pairs (0,2) (4,6) (1,3) (5,7), one per 32-bit element.
  const __m128i bs = _mm_hadd_epi16(load16(bsums), load16(bsums + 8));
  const __m128i order = _mm_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15);
  const __m256i pairs = _mm256_broadcastsi128_si256(_mm_shuffle_epi8(bs, order));
  const __m256i low = _mm256_set1_epi16(0x00FF);
  // Each lane's min bytes (m0 m1 m2 m3) as int16 pairs (m0, m2) and (m1, m3).
  __m256i r = _mm256_madd_epi16(_mm256_and_si256(s.mn_lo, low), _mm256_shuffle_epi32(pairs, 0x00));
  r = _mm256_add_epi32(r, _mm256_madd_epi16(_mm256_srli_epi16(s.mn_lo, 8), _mm256_shuffle_epi32(pairs, 0xAA)));
  r = _mm256_add_epi32(r, _mm256_madd_epi16(_mm256_and_si256(s.mn_hi, low), _mm256_shuffle_epi32(pairs, 0x55)));
  return _mm256_add_epi32(r, _mm256_madd_epi16(_mm256_srli_epi16(s.mn_hi, 8), _mm256_shuffle_epi32(pairs, 0xFF)));
}

// Q6_K's -32 offset of every level for 8 rows: -32 * sum over sub-blocks of scale * activation sum.
inline __m256i q6_k_offset(const uint8_t* sc, const int16_t* bsums) {
  __m256i r = _mm256_setzero_si256();
  for (int k = 0; k < 8; ++k) {
    const __m256i s16 = _mm256_cvtepi8_epi16(load16(sc + 16 * k));
    int32_t pair;
    std::memcpy(&pair, bsums + 2 * k, 4);
    r = _mm256_sub_epi32(r, _mm256_slli_epi32(_mm256_madd_epi16(s16, _mm256_set1_epi32(pair)), 5));
  }
  return r;
}

// Levels (0..63) of 4 elements of 8 rows x 4 for a packed Q6_K step h of chunk c: from the
// two ql registers and the qh register (see repack.h) come lo0, lo1 (elements 64c + 8h + 0..3,
// + 4..7) and hi0, hi1 (the same + 32).
inline void q6_k_levels(__m256i L0, __m256i L1, __m256i H, __m256i& lo0, __m256i& hi0, __m256i& lo1, __m256i& hi1) {
  const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
  lo0 = _mm256_or_si256(_mm256_and_si256(L0, m4), _mm256_and_si256(_mm256_slli_epi16(H, 4), m30));
  hi0 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(L0, 4), m4), _mm256_and_si256(_mm256_slli_epi16(H, 2), m30));
  lo1 = _mm256_or_si256(_mm256_and_si256(L1, m4), _mm256_and_si256(H, m30));
  hi1 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(L1, 4), m4), _mm256_and_si256(_mm256_srli_epi16(H, 2), m30));
}

// Levels (0..31) of a packed Q5_0 block's group g for 8 rows: lo = elements 4g .. 4g + 3 of each
// row, hi = elements 16 + 4g ..; q: the group's 32 bytes of nibbles, hb: the rows' high-bit words.
inline void q5_0_levels(__m256i q, __m256i hb, int g, __m256i& lo, __m256i& hi) {
  const __m256i m4 = _mm256_set1_epi8(0x0F), m10 = _mm256_set1_epi8(0x10);
  lo = _mm256_or_si256(_mm256_and_si256(q, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 4 - g), m10));
  hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), _mm256_and_si256(_mm256_srli_epi16(hb, g), m10));
}

// ---- Q8_0-activation kernels shared by both instruction sets ----
// Dot::acc(acc, u, s): acc + per 32-bit lane the sum of 4 products of unsigned bytes u and
// signed bytes s (AVX2: maddubs + madd; VNNI: vpdpbusd). Integer sums are exact either way.

// M activation rows in the Q8_0 layout of vec_dot.h: blocks, float32 scales, int32 sums.
template <int M>
struct Q8_0Rows {
  const BlockQ8_0* a[M];
  const float* d[M];
  const int32_t* sums[M];
  Q8_0Rows(const uint8_t* xa, size_t xs, int64_t in) {
    for (int m = 0; m < M; ++m) {
      a[m] = reinterpret_cast<const BlockQ8_0*>(xa + m * xs);
      d[m] = reinterpret_cast<const float*>(xa + m * xs + q8_0_act_scales_offset(in));
      sums[m] = reinterpret_cast<const int32_t*>(xa + m * xs + q8_0_act_sums_offset(in));
    }
  }
};

// Q8_0 x Q8_0: |w| times the activation with w's sign (u8 x s8 products need unsigned weights).
template <class Dot, int M>
void gemm_q8_0(int64_t in, const uint8_t* grp, const uint8_t* xa, size_t xs, float* y, int64_t ld, int valid) {
  const int64_t nb = in / kQK;
  const Q8_0Rows<M> x(xa, xs, in);
  __m256 acc[M];
  for (int m = 0; m < M; ++m) acc[m] = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t* b = grp + i * 272;
    prefetch_block(b, 272);
    __m256i isum[M];
    for (int m = 0; m < M; ++m) isum[m] = _mm256_setzero_si256();
    for (int g = 0; g < 8; ++g) {
      const __m256i w = load32(b + 16 + 32 * g);
      const __m256i aw = _mm256_sign_epi8(w, w);
      for (int m = 0; m < M; ++m) isum[m] = Dot::acc(isum[m], aw, _mm256_sign_epi8(bcast4(x.a[m][i].qs + 4 * g), w));
    }
    const __m256 d = fp16x8(b);
    for (int m = 0; m < M; ++m)
      acc[m] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_broadcast_ss(x.d[m] + i)), _mm256_cvtepi32_ps(isum[m]), acc[m]);
  }
  store_rows<M>(acc, y, ld, valid);
}

// Q5_0 x Q8_0: unsigned 5-bit levels times the activations, minus 16 * the activation sums.
template <class Dot, int M>
void gemm_q5_0(int64_t in, const uint8_t* grp, const uint8_t* xa, size_t xs, float* y, int64_t ld, int valid) {
  const int64_t nb = in / kQK;
  const Q8_0Rows<M> x(xa, xs, in);
  __m256 acc[M];
  for (int m = 0; m < M; ++m) acc[m] = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t* b = grp + i * 176;
    prefetch_block(b, 176);
    const __m256i hb = load32(b + 16);
    __m256i isum[M];
    for (int m = 0; m < M; ++m) isum[m] = _mm256_set1_epi32(-16 * x.sums[m][i]);
    for (int g = 0; g < 4; ++g) {
      __m256i lo, hi;
      q5_0_levels(load32(b + 48 + 32 * g), hb, g, lo, hi);
      for (int m = 0; m < M; ++m)
        isum[m] = Dot::acc(Dot::acc(isum[m], lo, bcast4(x.a[m][i].qs + 4 * g)), hi, bcast4(x.a[m][i].qs + 16 + 4 * g));
    }
    const __m256 d = fp16x8(b);
    for (int m = 0; m < M; ++m)
      acc[m] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_broadcast_ss(x.d[m] + i)), _mm256_cvtepi32_ps(isum[m]), acc[m]);
  }
  store_rows<M>(acc, y, ld, valid);
}

// Runs kernel K<M> for m = 1..4 activation rows (the PackedFn signature).
template <template <int> class K>
void by_m(int64_t in, const uint8_t* grp, const uint8_t* xa, size_t xs, int m, float* y, int64_t ld, int valid) {
  switch (m) {
    case 1: return K<1>::f(in, grp, xa, xs, y, ld, valid);
    case 2: return K<2>::f(in, grp, xa, xs, y, ld, valid);
    case 3: return K<3>::f(in, grp, xa, xs, y, ld, valid);
    default: return K<4>::f(in, grp, xa, xs, y, ld, valid);
  }
}

// by_m forms of the Dot-generic kernels: by_m<Q8_0Kernel<Dot>::K>, by_m<Q5_0Kernel<Dot>::K>.
template <class Dot>
struct Q8_0Kernel {
  template <int M>
  struct K {
    static void f(int64_t in, const uint8_t* g, const uint8_t* x, size_t xs, float* y, int64_t ld, int v) {
      gemm_q8_0<Dot, M>(in, g, x, xs, y, ld, v);
    }
  };
};
template <class Dot>
struct Q5_0Kernel {
  template <int M>
  struct K {
    static void f(int64_t in, const uint8_t* g, const uint8_t* x, size_t xs, float* y, int64_t ld, int v) {
      gemm_q5_0<Dot, M>(in, g, x, xs, y, ld, v);
    }
  };
};

}  // namespace
}  // namespace owl::kernels

// Wraps kernel template fn<M> as a class template for by_m.
#define OWL_PACKED_M_KERNEL(name, fn)                                                                         \
  template <int M>                                                                                            \
  struct name {                                                                                               \
    static void f(int64_t in, const uint8_t* g, const uint8_t* x, size_t xs, float* y, int64_t ld, int v) { \
      fn<M>(in, g, x, xs, y, ld, v);                                                                          \
    }                                                                                                         \
  };
