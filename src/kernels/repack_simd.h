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
// this). Asking for the lines kPackedPrefetchBytes ahead (repack.h: distance and level per type)
// overlaps them. One call per block.
template <DType kType>
inline void prefetch_block(const uint8_t* b, size_t bytes) {
  constexpr int kLocality = packed_prefetch_locality(kType);
  for (size_t o = 0; o < bytes; o += 64) __builtin_prefetch(b + kPackedPrefetchBytes + o, 0, kLocality);
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
  return {
      _mm256_and_si256(a, m6), _mm256_or_si256(_mm256_and_si256(c, m4), _mm256_and_si256(_mm256_srli_epi16(a, 2), m30)),
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
// (The sum first, then one shift and negation: int32 arithmetic wraps as a ring, so this is the
// per-term form's value bit for bit.)
inline __m256i q6_k_offset(const uint8_t* sc, const int16_t* bsums) {
  __m256i r = _mm256_setzero_si256();
  for (int k = 0; k < 8; ++k) {
    const __m256i s16 = _mm256_cvtepi8_epi16(load16(sc + 16 * k));
    int32_t pair;
    std::memcpy(&pair, bsums + 2 * k, 4);
    r = _mm256_add_epi32(r, _mm256_madd_epi16(s16, _mm256_set1_epi32(pair)));
  }
  return _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(r, 5));
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

// ---- the kernels, written once over an instruction-set policy Dot ----
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
  constexpr size_t kBytes = kPackedBytes<BlockQ8_0>;
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t* b = grp + i * kBytes;
    prefetch_block<DType::Q8_0>(b, kBytes);
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
  constexpr size_t kBytes = kPackedBytes<BlockQ5_0>;
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t* b = grp + i * kBytes;
    prefetch_block<DType::Q5_0>(b, kBytes);
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

// ---- Q8_K-activation kernels (Q4_K, Q6_K) over the same policy ----
// Sub-block sums go through partial sums that Dot folds into int32 with the sub-block scale:
// Dot::part(p, u, s) adds the 4-product sums of u x s (AVX2: int16 pairs from maddubs, which
// kPartial16 says; VNNI: int32 from vpdpbusd), Dot::part_at(p, u, a) the same with s the 4
// activation bytes at a in every lane, Dot::scale(p, s) = int32 lanes of p times the
// scale s, which a Dot object builds in its form: q4_k_scale(sc, k) from byte k of each lane of
// sc (unsigned), q6_k_pairs(p) + q6_k_scale(pairs, b) from entry b of a [8 rows][2] s8 table.
// All integer sums are exact, and the block scales apply in one float order for every policy,
// so every policy gives the same results bit for bit. Dot::kHighNibble16: partial sums are int32
// and room enough for 16x the high nibbles, so a Q4_K high nibble is used in place (q & 0xF0,
// one instruction instead of shift + mask) and its exact multiple-of-16 sum shifted back once
// per sub-block.

template <class Dot, int M>
void gemm_q4_k(int64_t in, const uint8_t* grp, const uint8_t* xa, size_t xs, float* y, int64_t ld, int valid) {
  constexpr size_t kBytes = kPackedBytes<BlockQ4_K>;
  const int64_t nb = in / kQKK;
  const Dot dot;
  const __m256i m4 = _mm256_set1_epi8(0x0F), mf0 = _mm256_set1_epi8(static_cast<char>(0xF0));
  __m256 acc[M];
  for (int m = 0; m < M; ++m) acc[m] = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t* b = grp + i * kBytes;
    prefetch_block<DType::Q4_K>(b, kBytes);
    const Q4KScales s = q4_k_scales(b + 32);
    const uint8_t* qs = b + 128;
    const BlockQ8_K* a[M];
    __m256i isum[M];
    for (int m = 0; m < M; ++m) {
      a[m] = reinterpret_cast<const BlockQ8_K*>(xa + m * xs) + i;
      isum[m] = _mm256_setzero_si256();
    }
    for (int j = 0; j < 4; ++j) {  // low nibbles: sub-block 2j, high nibbles: sub-block 2j + 1
      __m256i plo[M], phi[M];
      for (int m = 0; m < M; ++m) plo[m] = phi[m] = _mm256_setzero_si256();
      // 8 steps of 4 elements: int16 partial sums of up to 8 * 2 * 15 * 128 still fit.
      for (int g = 0; g < 8; ++g) {
        const __m256i q = load32(qs + (j * 8 + g) * 32);
        const __m256i lo = _mm256_and_si256(q, m4);
        const __m256i hi =
            Dot::kHighNibble16 ? _mm256_and_si256(q, mf0) : _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        for (int m = 0; m < M; ++m) {
          plo[m] = Dot::part_at(plo[m], lo, a[m]->qs + 64 * j + 4 * g);
          phi[m] = Dot::part_at(phi[m], hi, a[m]->qs + 64 * j + 32 + 4 * g);
        }
      }
      if constexpr (Dot::kHighNibble16)
        for (int m = 0; m < M; ++m) phi[m] = _mm256_srai_epi32(phi[m], 4);  // 16 * 8 * 4 * 15 * 128 fits
      // Scales 2j and 2j + 1 of every row: bytes 0, 1 (j even) or 2, 3 of each lane.
      const __m256i sc = j < 2 ? s.sc_lo : s.sc_hi;
      const __m256i s_lo = dot.q4_k_scale(sc, 2 * (j % 2)), s_hi = dot.q4_k_scale(sc, 2 * (j % 2) + 1);
      for (int m = 0; m < M; ++m)
        isum[m] = _mm256_add_epi32(isum[m], _mm256_add_epi32(Dot::scale(plo[m], s_lo), Dot::scale(phi[m], s_hi)));
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

template <class Dot, int M>
void gemm_q6_k(int64_t in, const uint8_t* grp, const uint8_t* xa, size_t xs, float* y, int64_t ld, int valid) {
  constexpr size_t kBytes = kPackedBytes<BlockQ6_K>;
  const int64_t nb = in / kQKK;
  const Dot dot;
  __m256 acc[M];
  for (int m = 0; m < M; ++m) acc[m] = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t* b = grp + i * kBytes;
    prefetch_block<DType::Q6_K>(b, kBytes);
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
      const __m256i p_lo = dot.q6_k_pairs(sc + 16 * (2 * c)), p_hi = dot.q6_k_pairs(sc + 16 * (2 * c + 1));
      for (int hh = 0; hh < 2; ++hh) {  // elements 64c + 16 hh .. + 16 (and + 32): sub-blocks 4c + hh, 4c + 2 + hh
        const __m256i s_lo = dot.q6_k_scale(p_lo, hh), s_hi = dot.q6_k_scale(p_hi, hh);
        __m256i slo[M], shi[M];
        for (int m = 0; m < M; ++m) slo[m] = shi[m] = _mm256_setzero_si256();
        for (int h = 2 * hh; h < 2 * hh + 2; ++h) {
          const __m256i H = load32(qh + (c * 4 + h) * 32);
          const __m256i L0 = load32(ql + (c * 8 + 2 * h) * 32), L1 = load32(ql + (c * 8 + 2 * h + 1) * 32);
          __m256i lo0, hi0, lo1, hi1;
          q6_k_levels(L0, L1, H, lo0, hi0, lo1, hi1);
          for (int m = 0; m < M; ++m) {
            const int8_t* aq = a[m]->qs + 64 * c + 8 * h;
            slo[m] = Dot::part_at(Dot::part_at(slo[m], lo0, aq), lo1, aq + 4);
            shi[m] = Dot::part_at(Dot::part_at(shi[m], hi0, aq + 32), hi1, aq + 36);
            // int16 partials hold one step (2 * 2 * 63 * 128 fits, twice that does not): fold them
            // at once, which also keeps them out of the 16 registers AVX2 has.
            if constexpr (Dot::kPartial16) {
              isum[m] = _mm256_add_epi32(isum[m], _mm256_add_epi32(Dot::scale(slo[m], s_lo), Dot::scale(shi[m], s_hi)));
              slo[m] = shi[m] = _mm256_setzero_si256();
            }
          }
        }
        if constexpr (!Dot::kPartial16)
          for (int m = 0; m < M; ++m)
            isum[m] = _mm256_add_epi32(isum[m], _mm256_add_epi32(Dot::scale(slo[m], s_lo), Dot::scale(shi[m], s_hi)));
      }
    }
    const __m256 d = fp16x8(b);
    for (int m = 0; m < M; ++m)
      acc[m] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(a[m]->d)), _mm256_cvtepi32_ps(isum[m]), acc[m]);
  }
  store_rows<M>(acc, y, ld, valid);
}

// Runs kernel Gemm<Dot, M> for m = 1..4 activation rows (the PackedFn signature).
template <class Dot, template <class, int> class Gemm>
void by_m(int64_t in, const uint8_t* grp, const uint8_t* xa, size_t xs, int m, float* y, int64_t ld, int valid) {
  switch (m) {
    case 1:
      return Gemm<Dot, 1>::f(in, grp, xa, xs, y, ld, valid);
    case 2:
      return Gemm<Dot, 2>::f(in, grp, xa, xs, y, ld, valid);
    case 3:
      return Gemm<Dot, 3>::f(in, grp, xa, xs, y, ld, valid);
    default:
      return Gemm<Dot, 4>::f(in, grp, xa, xs, y, ld, valid);
  }
}

#define OWL_PACKED_GEMM(name, fn)                                                                           \
  template <class Dot, int M>                                                                               \
  struct name {                                                                                             \
    static void f(int64_t in, const uint8_t* g, const uint8_t* x, size_t xs, float* y, int64_t ld, int v) { \
      fn<Dot, M>(in, g, x, xs, y, ld, v);                                                                   \
    }                                                                                                       \
  };
OWL_PACKED_GEMM(GemmQ4_K, gemm_q4_k)
OWL_PACKED_GEMM(GemmQ6_K, gemm_q6_k)
OWL_PACKED_GEMM(GemmQ8_0, gemm_q8_0)
OWL_PACKED_GEMM(GemmQ5_0, gemm_q5_0)
#undef OWL_PACKED_GEMM

// The packed kernels of one instruction-set policy, by weight type (null where none).
template <class Dot>
PackedFn packed_kernels(DType t) {
  switch (t) {
    case DType::Q4_K:
      return by_m<Dot, GemmQ4_K>;
    case DType::Q6_K:
      return by_m<Dot, GemmQ6_K>;
    case DType::Q8_0:
      return by_m<Dot, GemmQ8_0>;
    case DType::Q5_0:
      return by_m<Dot, GemmQ5_0>;
    default:
      return nullptr;
  }
}

}  // namespace
}  // namespace owl::kernels
