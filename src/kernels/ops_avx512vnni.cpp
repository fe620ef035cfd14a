// The decode attention kernel (attention_simd.h) on 16-float AVX-512 vectors: twice the lanes of
// the AVX2 build and 32 registers, so a register tile holds 4 query heads x 4 keys. MLA's 16
// heads share each latent row, which makes its decode attention compute-bound. (Prefill's
// attention_rows has its own AVX-512 block, with the queries across the lanes:
// attention_rows_avx512vnni.cpp.)
#include <immintrin.h>

#include "kernels/attention_simd.h"
#include "kernels/gemm_f32_simd.h"

// GCC 12's AVX-512 intrinsics (_mm512_castps512_ps256, _mm512_cvtph_ps, ...) pass
// _mm512_undefined_ps() as the unused merge source, which -Wmaybe-uninitialized reports once
// they are inlined (GCC bug 105593): no value is read uninitialised.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "kernels/attention_int8_keys.h"
#include "kernels/ops_avx2.h"
#include "tensor/quants.h"

namespace owl::kernels::avx512vnni {

namespace {

struct Vec16 {
  using Reg = __m512;
  static constexpr int64_t kWidth = 16;
  static constexpr int kTileQ = 4;  // 4 queries x 4 keys = 16 accumulators, + 4 keys + 1 query
  // Q8_0/Q4_0 scores by vpdpbusd against an int8 query (attention_int8_keys.h).
  using KeyDot = Int8KeyDot;
  static Reg zero() { return _mm512_setzero_ps(); }
  static Reg load(const float* p, int64_t e) { return _mm512_loadu_ps(p + e); }
  static Reg load(const uint16_t* p, int64_t e) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + e)));
  }
  // The integers of Q8_0/Q4_0 elements [e, e + 16), unscaled (the kernel applies the scales).
  static Reg load_q(const BlockQ8_0* p, int64_t e) {
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p[e / kQK].qs + e % kQK));
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q));
  }
  // Q4_0 elements 0..15 are the low nibbles of the 16 bytes, 16..31 the high ones (the nibbles
  // as stored: the kernel subtracts 8 through the scales, kBlockOffset).
  static Reg load_q(const BlockQ4_0* p, int64_t e) {
    __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p[e / kQK].qs));
    if (e % kQK >= 16) q = _mm_srli_epi16(q, 4);
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(q, _mm_set1_epi8(0x0F))));
  }
  static Reg set1(float x) { return _mm512_set1_ps(x); }
  static Reg mul(Reg a, Reg b) { return _mm512_mul_ps(a, b); }
  static Reg fmadd(Reg a, Reg b, Reg c) { return _mm512_fmadd_ps(a, b, c); }
  static void store(float* p, Reg a) { _mm512_storeu_ps(p, a); }
  static __m256 half_sum(Reg a) {
    const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1));
    return _mm256_add_ps(_mm512_castps512_ps256(a), hi);
  }
  static __m128 sum4(Reg a0, Reg a1, Reg a2, Reg a3) {
    return hsum8x4(half_sum(a0), half_sum(a1), half_sum(a2), half_sum(a3));
  }
  // Keeps loaded keys in registers (see Vec8::keep in ops_avx2.cpp).
  static void keep(Reg& a, Reg& b, Reg& c, Reg& d) { __asm__("" : "+v"(a), "+v"(b), "+v"(c), "+v"(d)); }
};

}  // namespace

void attention_decode_part(const float* q, int64_t group, int64_t h0, int64_t h1, int64_t dk, int64_t dv,
                           const KVSpan& k, const KVSpan& v, int64_t t_begin, int64_t t_end, float scale, float* acc,
                           float* mx, float* l) {
  DecodeAttention<Vec16>::run(q, group, h0, h1, dk, dv, k, v, t_begin, t_end, scale, acc, mx, l);
}

void gemm_f32_rows(const GemmF32& g, int64_t i0, int64_t i1) { GemmF32Tiles<Vec16>::rows<12>(g, i0, i1); }

}  // namespace owl::kernels::avx512vnni
