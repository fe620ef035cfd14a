// Helpers shared by the packed-layout kernels (repack_avx2.cpp, repack_avx512vnni.cpp). Each
// kernel file is compiled with its own instruction-set flags, so everything here has internal
// linkage: every file gets its own copy, and no AVX-512 encoding can leak into the AVX2 build.
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/repack.h"

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

// Q4_K mins term of one block for 8 rows: sum over sub-blocks s of min[r][s] * (activation sum
// of sub-block s); mn: the packed mins ([4 pairs][8 rows][2]), bsums: Q8_K's 16 sums of 16.
inline __m256i q4_k_mins(const uint8_t* mn, const int16_t* bsums) {
  const __m128i bs = _mm_hadd_epi16(load16(bsums), load16(bsums + 8));
  const __m256i bsb = _mm256_broadcastsi128_si256(bs);
  __m256i ms = _mm256_madd_epi16(_mm256_cvtepu8_epi16(load16(mn)), _mm256_shuffle_epi32(bsb, 0x00));
  ms = _mm256_add_epi32(ms, _mm256_madd_epi16(_mm256_cvtepu8_epi16(load16(mn + 16)), _mm256_shuffle_epi32(bsb, 0x55)));
  ms = _mm256_add_epi32(ms, _mm256_madd_epi16(_mm256_cvtepu8_epi16(load16(mn + 32)), _mm256_shuffle_epi32(bsb, 0xAA)));
  return _mm256_add_epi32(ms, _mm256_madd_epi16(_mm256_cvtepu8_epi16(load16(mn + 48)), _mm256_shuffle_epi32(bsb, 0xFF)));
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
