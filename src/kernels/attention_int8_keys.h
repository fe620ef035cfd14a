// Decode attention's scores over Q8_0/Q4_0 keys in the integer domain, on AVX-512 VNNI (only
// ops_avx512vnni.cpp includes this; DecodeAttention takes it through Vec16::KeyDot).
//
// Converting each key integer to float for only 2 FMAs (Qwen3's 2 query heads per KV head) made
// the float path compute-bound. Instead, as other engines do for quantised caches, each query
// head is quantised once per part of the context (a few per call) to int8 in 32-value blocks (one float scale per
// block), and a key block meets it in one vpdpbusd (u8 x s8, 4 products per int32 lane, exact):
//  * Q8_0 keys k are signed: k XOR 0x80 = k + 128 is the unsigned operand, and each lane's
//    accumulator starts at -128 * (its 4 query integers' sum), so the lane ends at exactly
//    sum k * q;
//  * Q4_0 keys are the stored nibbles n (0..15, unsigned already) and the lane starts at
//    -8 * (its query sum): exactly sum (n - 8) * q.
// A 512-bit vector holds two blocks of one key (lanes 0-7 block 2z, lanes 8-15 block 2z + 1);
// its 16 exact integer sums are converted once and multiplied by d_key * d_query of their block
// in one FMA into the (query, key) accumulator, whose 16 lanes are summed at the end. So per 64
// key integers and query head: vpdpbusd, vcvtdq2ps, one multiply for the scales, one FMA, where
// the float path spent 4 conversions (vpmovsxbd + vcvtdq2ps each), 4 scale multiplies and 4
// FMAs per head-pair.
//
// The query quantisation (quantize_query) is the rule the tests' scalar reference repeats:
// amax = max |x| over the block, d = amax / 127, q = round-to-nearest-even(x * (127 / amax))
// (0 for an all-zero block). Its error is what the int8 query costs in accuracy (the tests and
// docs/BENCHMARKS.md state the measured bound against exact f32 attention).
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/attention_simd.h"
#include "tensor/quants.h"

namespace owl::kernels {
namespace {

struct Int8KeyDot {
  static __m256 half_sum(__m512 a) {
    return _mm256_add_ps(_mm512_castps512_ps256(a), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
  }

  // Bytes of one head's quantised query per 512-bit step (two 32-value blocks).
  static constexpr int64_t kStep = 2 * kQK;

  // The int32 lane starts: -offset * (sum of the lane's 4 query integers), see above.
  template <class T>
  static constexpr int32_t kLaneOffset = std::is_same_v<T, BlockQ4_0> ? 8 : 128;

  // Quantises one head's query x (nb blocks of 32) for keys of block type T: qs gets nz = (nb +
  // 1) / 2 steps of 64 int8 (an odd last block padded with zeros), dq the scales as the lanes
  // see them (16 floats per step: 8 copies of block 2z's, then 8 of block 2z + 1's; 0 for
  // padding), init the lanes' starting sums (16 int32 per step).
  template <class T>
  static void quantize_query(const float* x, int64_t nb, int8_t* qs, float* dq, int32_t* init) {
    const int64_t nz = (nb + 1) / 2;
    std::memset(qs, 0, static_cast<size_t>(nz * kStep));
    for (int64_t i = 0; i < nz * 16; ++i) {
      dq[i] = 0.0f;
      init[i] = 0;
    }
    for (int64_t b = 0; b < nb; ++b) {
      const __m512 v0 = _mm512_loadu_ps(x + b * kQK), v1 = _mm512_loadu_ps(x + b * kQK + 16);
      const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
      const float d = amax / 127.0f, id = amax != 0.0f ? 127.0f / amax : 0.0f;
      // vcvtps2dq rounds to nearest even (the default MXCSR mode), as std::nearbyint does.
      const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, _mm512_set1_ps(id)));
      const __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, _mm512_set1_ps(id)));
      int8_t* dst = qs + b * kQK;
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm512_cvtsepi32_epi8(q0));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 16), _mm512_cvtsepi32_epi8(q1));
      float* dl = dq + (b / 2) * 16 + (b % 2) * 8;
      int32_t* il = init + (b / 2) * 16 + (b % 2) * 8;
      for (int l = 0; l < 8; ++l) {
        dl[l] = d;
        il[l] = -kLaneOffset<T> * (dst[4 * l] + dst[4 * l + 1] + dst[4 * l + 2] + dst[4 * l + 3]);
      }
    }
  }

  // Key integers of blocks 2z and 2z + 1 (only 2z when two is false: the upper half is then
  // zero, against zero query bytes) as vpdpbusd's unsigned operand, element order as stored.
  static __m512i keys(const BlockQ8_0* p, int64_t z, bool two) {
    const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p[2 * z].qs));
    const __m512i k = two ? _mm512_inserti64x4(_mm512_castsi256_si512(lo),
                                               _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p[2 * z + 1].qs)), 1)
                          : _mm512_zextsi256_si512(lo);
    return _mm512_xor_si512(k, _mm512_set1_epi8(static_cast<char>(0x80)));
  }
  // Q4_0: each block's 16 bytes twice in a 256-bit half, the second copy shifted by 4, then
  // masked: low nibbles are elements 0-15, high nibbles 16-31 (the stored order).
  static __m512i keys(const BlockQ4_0* p, int64_t z, bool two) {
    const __m256i lo = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p[2 * z].qs)));
    __m512i k = _mm512_zextsi256_si512(lo);
    if (two)
      k = _mm512_inserti64x4(
          k, _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p[2 * z + 1].qs))), 1);
    k = _mm512_mask_srli_epi16(k, 0xFF00FF00u, k, 4);  // the words of 128-bit lanes 1 and 3
    return _mm512_and_si512(k, _mm512_set1_epi8(0x0F));
  }

  // out[b * stride + c] = rows[c][b].d as a float, c < n, b < nb: the block scales of a chunk's
  // rows, 8 rows per gather (their pointers are the addresses). One scalar vpinsrw + vcvtph2ps
  // + store per scale cost ~20% of a Q8_0 call's samples (Qwen3-0.6B shape at 16k).
  template <class T>
  static void scales(const T* const* rows, int64_t n, int64_t nb, int64_t stride, float* out) {
    static_assert(sizeof(T*) == 8);
    for (int64_t c = 0; c < n; c += 8) {
      const auto m = static_cast<__mmask8>(n - c >= 8 ? 0xFF : (1u << (n - c)) - 1);
      const __m512i ptr = _mm512_maskz_loadu_epi64(m, rows + c);
      for (int64_t b = 0; b < nb; ++b) {
        // 4 bytes at each block: its f16 scale, then 2 bytes of its integers (dropped).
        const __m512i at = _mm512_add_epi64(ptr, _mm512_set1_epi64(b * static_cast<int64_t>(sizeof(T))));
        const __m256i w = _mm512_mask_i64gather_epi32(_mm256_setzero_si256(), m, at, nullptr, 1);
        _mm256_mask_storeu_ps(out + b * stride + c, m, _mm256_cvtph_ps(_mm256_cvtepi32_epi16(w)));
      }
    }
  }

  // s[i][j..j+4) = q[i] . key[j..j+4) for NQ query heads: qs/dq/init hold the heads' quantised
  // queries (quantize_query, qstride steps apart), ksc[b * kstride + c] key c's block b scale
  // (scales(); the rows of padding blocks up to an even count hold 0), nb blocks per key.
  template <int NQ, class T>
  static void qk(const int8_t* qs, const float* dq, const int32_t* init, int64_t qstride, const T* const* key,
                 const float* ksc, int64_t kstride, int64_t nb, float* const* s, int64_t j) {
    __m512 a[NQ][4];
    for (int i = 0; i < NQ; ++i)
      for (int c = 0; c < 4; ++c) a[i][c] = _mm512_setzero_ps();
    const T *k0 = key[j], *k1 = key[j + 1], *k2 = key[j + 2], *k3 = key[j + 3];
    const float* d0 = ksc + j;
    const int64_t nz = (nb + 1) / 2;
    for (int64_t z = 0; z < nz; ++z) {
      const bool two = 2 * z + 1 < nb;
      const __m512i kv[4] = {keys(k0, z, two), keys(k1, z, two), keys(k2, z, two), keys(k3, z, two)};
      __m512 kd[4];
      for (int c = 0; c < 4; ++c) {
        const float* d = d0 + c + 2 * z * kstride;
        kd[c] = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_set1_ps(d[0])),
                                                    _mm256_castps_pd(_mm256_set1_ps(d[kstride])), 1));
      }
      for (int i = 0; i < NQ; ++i) {
        const int64_t at = i * qstride + z;
        const __m512i qv = _mm512_loadu_si512(qs + at * kStep);
        const __m512 qd = _mm512_loadu_ps(dq + at * 16);
        const __m512i q0 = _mm512_loadu_si512(init + at * 16);
        for (int c = 0; c < 4; ++c) {
          const __m512 isum = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(q0, kv[c], qv));
          a[i][c] = _mm512_fmadd_ps(isum, _mm512_mul_ps(kd[c], qd), a[i][c]);
        }
      }
    }
    for (int i = 0; i < NQ; ++i) {
      alignas(16) float t[4];
      _mm_store_ps(t, hsum8x4(half_sum(a[i][0]), half_sum(a[i][1]), half_sum(a[i][2]), half_sum(a[i][3])));
      for (int c = 0; c < 4; ++c) s[i][j + c] = t[c];
    }
  }
};

}  // namespace
}  // namespace owl::kernels
