// AVX2/FMA/F16C dot products (compiled with -mavx2 -mfma -mf16c; called only after the CPUID
// check in cpu.cpp). Integer formats: weights are unpacked once per block into bytes, then
// multiplied against every activation row of the group with maddubs (u8 x s8 -> s16 pairs)
// and madd (s16 pairs -> s32), the way ggml's AVX2 path works; sums stay exact integers until
// the per-block scale is applied in float.
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "kernels/codebook_avx2.h"
#include "kernels/vec_dot.h"
#include "tensor/fp16.h"
#include "tensor/iq_grids.h"
#include "tensor/quants.h"

namespace owl::kernels {

namespace {

using namespace avx2_shared;  // as, row_of, f16, hsum, load32 and the codebook decoders (codebook_avx2.h)

inline float hsum128(__m128 s) {
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// 16 bytes of nibble pairs -> 32 bytes: low nibbles (elements 0..15) then high nibbles (16..31).
inline __m256i unpack_nibbles(const uint8_t* qs) {
  const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4), t), _mm256_set1_epi8(0x0F));
}

// The 32 bits at p -> 32 bytes, 0xFF where the bit is set (byte i <- bit i).
inline __m256i bits_to_bytes(const uint8_t* p) {
  uint32_t bits;
  std::memcpy(&bits, p, 4);
  const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
  __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)), shuf);
  const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ULL));
  return _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
}

// Signed x signed bytes -> 8 int32 sums of 4 products: |w| (unsigned) times a with w's sign.
inline __m256i dot_s8(__m256i abs_w, __m256i w, __m256i a) {
  const __m256i p16 = _mm256_maddubs_epi16(abs_w, _mm256_sign_epi8(a, w));
  return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}
// Unsigned weight bytes x signed activation bytes -> 8 int32 sums.
inline __m256i dot_u8(__m256i w, __m256i a) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(w, a), _mm256_set1_epi16(1));
}

// ---- weights x Q8_0 ----
// Decoders give a block's 32 weights as signed bytes.
struct DecQ4_0 {
  using B = BlockQ4_0;
  static __m256i get(const B& b) { return _mm256_sub_epi8(unpack_nibbles(b.qs), _mm256_set1_epi8(8)); }
};
struct DecQ5_0 {
  using B = BlockQ5_0;
  static __m256i get(const B& b) {  // a clear 5th bit means value - 16: set the top nibble (0xF0)
    const __m256i hi = _mm256_andnot_si256(bits_to_bytes(b.qh), _mm256_set1_epi8(static_cast<char>(0xF0)));
    return _mm256_or_si256(unpack_nibbles(b.qs), hi);
  }
};
struct DecQ8_0 {
  using B = BlockQ8_0;
  static __m256i get(const B& b) { return load32(b.qs); }
};
struct DecIQ4_NL {
  using B = BlockIQ4_NL;
  static __m256i get(const B& b) {
    const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kIQ4NL));
    return _mm256_shuffle_epi8(_mm256_set_m128i(t, t), unpack_nibbles(b.qs));
  }
};

template <class Dec, int NR>
void dot_sym_q8_0(int64_t n, const void* vw, const void* x, size_t xs, float* y, int64_t ys) {
  const auto* w = as<typename Dec::B>(vw);
  const int64_t nb = n / kQK;
  const BlockQ8_0* a[NR];
  const float* da[NR];  // the rows' block scales as float32, stored after their blocks
  __m256 acc[NR];
  for (int r = 0; r < NR; ++r) {
    a[r] = row_of<BlockQ8_0>(x, xs, r);
    da[r] = reinterpret_cast<const float*>(reinterpret_cast<const uint8_t*>(a[r]) + q8_0_act_scales_offset(n));
    acc[r] = _mm256_setzero_ps();
  }
  for (int64_t i = 0; i < nb; ++i) {
    const __m256i q = Dec::get(w[i]);
    const __m256i aq = _mm256_sign_epi8(q, q);
    const __m256 dw = _mm256_set1_ps(f16(w[i].d));
    for (int r = 0; r < NR; ++r) {
      const __m256i s = dot_s8(aq, q, load32(a[r][i].qs));
      acc[r] = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_broadcast_ss(da[r] + i)), _mm256_cvtepi32_ps(s), acc[r]);
    }
  }
  for (int r = 0; r < NR; ++r) y[r * ys] = hsum(acc[r]);
}

// Q4_1 / Q5_1: unsigned levels plus an offset m, which multiplies the activation block's sum.
template <class B, int NR>
void dot_asym_q8_0(int64_t n, const void* vw, const void* x, size_t xs, float* y, int64_t ys) {
  const auto* w = as<B>(vw);
  const int64_t nb = n / kQK;
  const BlockQ8_0* a[NR];
  const float* das[NR];
  __m256 acc[NR];
  for (int r = 0; r < NR; ++r) {
    a[r] = row_of<BlockQ8_0>(x, xs, r);
    das[r] = reinterpret_cast<const float*>(reinterpret_cast<const uint8_t*>(a[r]) + q8_0_act_scales_offset(n));
    acc[r] = _mm256_setzero_ps();
  }
  const __m256i ones = _mm256_set1_epi8(1);
  for (int64_t i = 0; i < nb; ++i) {
    __m256i q = unpack_nibbles(w[i].qs);
    if constexpr (sizeof(B) == sizeof(BlockQ5_1))
      q = _mm256_or_si256(q, _mm256_and_si256(bits_to_bytes(w[i].qh), _mm256_set1_epi8(0x10)));
    const float dw = f16(w[i].d), mw = f16(w[i].m);
    for (int r = 0; r < NR; ++r) {
      const __m256i av = load32(a[r][i].qs);
      const float da = das[r][i];
      acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dw * da), _mm256_cvtepi32_ps(dot_u8(q, av)), acc[r]);
      acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(mw * da), _mm256_cvtepi32_ps(dot_s8(ones, ones, av)), acc[r]);
    }
  }
  for (int r = 0; r < NR; ++r) y[r * ys] = hsum(acc[r]);
}

// ---- K-quants x Q8_K ----
// The 8 6-bit scales (bytes 0..7) and mins (bytes 8..15) of a Q4_K/Q5_K block, unpacked.
inline void k4_unpack(const uint8_t* p, uint32_t u[4]) {
  std::memcpy(u, p, 12);
  const uint32_t m6 = 0x3f3f3f3f, m4 = 0x0f0f0f0f, m2 = 0x03030303;
  u[3] = ((u[2] >> 4) & m4) | (((u[1] >> 6) & m2) << 4);  // mins 4..7
  const uint32_t mins03 = u[1] & m6;
  u[1] = (u[2] & m4) | (((u[0] >> 6) & m2) << 4);  // scales 4..7
  u[2] = mins03;
  u[0] &= m6;  // scales 0..3
}

// Sum over the 8 sub-blocks of min_j * (bsums[2j] + bsums[2j+1]), as 4 int32 lanes.
inline __m128i k4_min_dot(const uint8_t* mins, const BlockQ8_K& a) {
  const __m128i b0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a.bsums));
  const __m128i b1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a.bsums + 8));
  const __m128i pair = _mm_hadd_epi16(b0, b1);  // 8 sums of 32 quants
  uint64_t m8;
  std::memcpy(&m8, mins, 8);
  return _mm_madd_epi16(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<int64_t>(m8))), pair);
}

// Shuffle control that copies int16 element k to every element of each 128-bit lane.
inline __m256i scale_pick(int k) { return _mm256_set1_epi16(static_cast<int16_t>((2 * k + 1) << 8 | (2 * k))); }

template <bool kFive, int NR>
void dot_q45_k(int64_t n, const void* vw, const void* x, size_t xs, float* y, int64_t ys) {
  using B = std::conditional_t<kFive, BlockQ5_K, BlockQ4_K>;
  const auto* w = as<B>(vw);
  const BlockQ8_K* a[NR];
  __m256 acc[NR];
  __m128 accm[NR];
  for (int r = 0; r < NR; ++r) {
    a[r] = row_of<BlockQ8_K>(x, xs, r);
    acc[r] = _mm256_setzero_ps();
    accm[r] = _mm_setzero_ps();
  }
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  for (int64_t i = 0; i < n / kQKK; ++i) {
    uint32_t u[4];
    k4_unpack(w[i].scales, u);
    const uint8_t* sc = reinterpret_cast<const uint8_t*>(u);
    const float dw = f16(w[i].d), dmw = f16(w[i].dmin);
    __m256i sumi[NR];
    for (int r = 0; r < NR; ++r) {
      sumi[r] = _mm256_setzero_si256();
      accm[r] = _mm_fmadd_ps(_mm_set1_ps(dmw * a[r][i].d), _mm_cvtepi32_ps(k4_min_dot(sc + 8, a[r][i])), accm[r]);
    }
    // The 8 scales as int16 in both lanes; scale_pick(k) broadcasts number k with one shuffle.
    const __m256i sc16 =
        _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(sc))));
    __m256i qh;
    if constexpr (kFive) qh = load32(w[i].qh);
    for (int j = 0; j < 4; ++j) {
      const __m256i q = load32(w[i].qs + 32 * j);
      __m256i lo = _mm256_and_si256(q, m4);
      __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
      if constexpr (kFive) {
        const __m256i one = _mm256_set1_epi8(1);
        const __m256i b_lo = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * j), one);
        const __m256i b_hi = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * j + 1), one);
        lo = _mm256_or_si256(lo, _mm256_slli_epi16(b_lo, 4));
        hi = _mm256_or_si256(hi, _mm256_slli_epi16(b_hi, 4));
      }
      const __m256i s_lo = _mm256_shuffle_epi8(sc16, scale_pick(2 * j));
      const __m256i s_hi = _mm256_shuffle_epi8(sc16, scale_pick(2 * j + 1));
      for (int r = 0; r < NR; ++r) {
        const __m256i p_lo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, load32(a[r][i].qs + 64 * j)), s_lo);
        const __m256i p_hi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, load32(a[r][i].qs + 64 * j + 32)), s_hi);
        sumi[r] = _mm256_add_epi32(sumi[r], _mm256_add_epi32(p_lo, p_hi));
      }
    }
    for (int r = 0; r < NR; ++r)
      acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dw * a[r][i].d), _mm256_cvtepi32_ps(sumi[r]), acc[r]);
  }
  for (int r = 0; r < NR; ++r) y[r * ys] = hsum(acc[r]) - hsum128(accm[r]);
}

// Shuffle control for dot_q2_k / dot_q3_k / dot_q6_k: int16 element k of each lane's 8 scales in
// the low lane, element k + 1 in the high lane (a 32-byte run of quants spans two sub-blocks of 16).
inline __m256i scale_pair_pick(int k) {
  return _mm256_set_m128i(_mm_set1_epi16(static_cast<int16_t>((2 * k + 3) << 8 | (2 * k + 2))),
                          _mm_set1_epi16(static_cast<int16_t>((2 * k + 1) << 8 | (2 * k))));
}

// Q2_K: per 16 elements d * sc * q - dmin * mn with 2-bit q. The min term is dmin * sum_k mn_k *
// bsums_k per activation row; the quants multiply as unsigned bytes, 32 at a time (two sub-blocks).
template <int NR>
void dot_q2_k(int64_t n, const void* vw, const void* x, size_t xs, float* y, int64_t ys) {
  const auto* w = as<BlockQ2_K>(vw);
  const BlockQ8_K* a[NR];
  __m256 acc[NR], accm[NR];
  for (int r = 0; r < NR; ++r) {
    a[r] = row_of<BlockQ8_K>(x, xs, r);
    acc[r] = _mm256_setzero_ps();
    accm[r] = _mm256_setzero_ps();
  }
  const __m256i m2 = _mm256_set1_epi8(3);
  const __m128i m4 = _mm_set1_epi8(0x0F);
  for (int64_t i = 0; i < n / kQKK; ++i) {
    const float dw = f16(w[i].d), dmw = f16(w[i].dmin);
    const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w[i].scales));
    const __m256i sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(packed, m4));
    const __m256i mn16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), m4));
    __m256i sumi[NR];
    for (int r = 0; r < NR; ++r) {
      sumi[r] = _mm256_setzero_si256();
      const __m256i mins = _mm256_madd_epi16(mn16, load32(a[r][i].bsums));
      accm[r] = _mm256_fmadd_ps(_mm256_set1_ps(dmw * a[r][i].d), _mm256_cvtepi32_ps(mins), accm[r]);
    }
    const __m256i scl[2] = {_mm256_permute2x128_si256(sc16, sc16, 0x00), _mm256_permute2x128_si256(sc16, sc16, 0x11)};
    for (int c = 0; c < 2; ++c) {
      const __m256i q = load32(w[i].qs + 32 * c);
      for (int run = 0; run < 4; ++run) {
        const __m256i lv = _mm256_and_si256(_mm256_srli_epi16(q, 2 * run), m2);
        const __m256i scv = _mm256_shuffle_epi8(scl[c], scale_pair_pick(2 * run));
        for (int r = 0; r < NR; ++r) {
          const __m256i p = _mm256_maddubs_epi16(lv, load32(a[r][i].qs + 128 * c + 32 * run));
          sumi[r] = _mm256_add_epi32(sumi[r], _mm256_madd_epi16(p, scv));
        }
      }
    }
    for (int r = 0; r < NR; ++r)
      acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dw * a[r][i].d), _mm256_cvtepi32_ps(sumi[r]), acc[r]);
  }
  for (int r = 0; r < NR; ++r) y[r * ys] = hsum(acc[r]) - hsum(accm[r]);
}

// Q3_K's 16 6-bit scales minus 32 as int8, as quants.cpp's q3_k_scales unpacks them: low nibbles
// of bytes 0-7 (scales 0-7) and their high nibbles (8-15); the top 2 bits of scale j are bits
// 2 (j / 4) of byte 8 + j % 4, which one variable shift per 32-bit lane brings down.
inline __m128i q3_k_scales(const uint8_t* p) {
  const __m128i m4 = _mm_set1_epi8(0x0F);
  const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  const __m128i lows = _mm_unpacklo_epi64(_mm_and_si128(v, m4), _mm_and_si128(_mm_srli_epi16(v, 4), m4));
  uint32_t h;
  std::memcpy(&h, p + 8, 4);
  const __m128i t = _mm_srlv_epi32(_mm_set1_epi32(static_cast<int>(h)), _mm_set_epi32(6, 4, 2, 0));
  const __m128i highs = _mm_slli_epi16(_mm_and_si128(t, _mm_set1_epi8(3)), 4);
  return _mm_sub_epi8(_mm_or_si128(lows, highs), _mm_set1_epi8(32));
}

// Q3_K: per 16 elements d * sc * q with q = 2 low bits - 4 * !hbit in [-4, 3]. The kernel
// multiplies the unsigned q + 4 (the high bit as bit 2) and takes 4 * sum_k sc_k * bsums_k off.
template <int NR>
void dot_q3_k(int64_t n, const void* vw, const void* x, size_t xs, float* y, int64_t ys) {
  const auto* w = as<BlockQ3_K>(vw);
  const BlockQ8_K* a[NR];
  __m256 acc[NR];
  for (int r = 0; r < NR; ++r) {
    a[r] = row_of<BlockQ8_K>(x, xs, r);
    acc[r] = _mm256_setzero_ps();
  }
  const __m256i m2 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
  for (int64_t i = 0; i < n / kQKK; ++i) {
    const float dw = f16(w[i].d);
    const __m256i sc16 = _mm256_cvtepi8_epi16(q3_k_scales(w[i].scales));
    __m256i sumi[NR];
    for (int r = 0; r < NR; ++r) {
      const __m256i off = _mm256_madd_epi16(sc16, load32(a[r][i].bsums));
      sumi[r] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(off, 2));
    }
    const __m256i scl[2] = {_mm256_permute2x128_si256(sc16, sc16, 0x00), _mm256_permute2x128_si256(sc16, sc16, 0x11)};
    const __m256i hmask = load32(w[i].hmask);
    for (int c = 0; c < 2; ++c) {
      const __m256i q = load32(w[i].qs + 32 * c);
      for (int run = 0; run < 4; ++run) {
        const __m256i hbit = _mm256_and_si256(_mm256_srli_epi16(hmask, 4 * c + run), one);
        const __m256i lv =
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 2 * run), m2), _mm256_slli_epi16(hbit, 2));
        const __m256i scv = _mm256_shuffle_epi8(scl[c], scale_pair_pick(2 * run));
        for (int r = 0; r < NR; ++r) {
          const __m256i p = _mm256_maddubs_epi16(lv, load32(a[r][i].qs + 128 * c + 32 * run));
          sumi[r] = _mm256_add_epi32(sumi[r], _mm256_madd_epi16(p, scv));
        }
      }
    }
    for (int r = 0; r < NR; ++r)
      acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dw * a[r][i].d), _mm256_cvtepi32_ps(sumi[r]), acc[r]);
  }
  for (int r = 0; r < NR; ++r) y[r * ys] = hsum(acc[r]);
}

template <int NR>
void dot_q6_k(int64_t n, const void* vw, const void* x, size_t xs, float* y, int64_t ys) {
  const auto* w = as<BlockQ6_K>(vw);
  const BlockQ8_K* a[NR];
  __m256 acc[NR];
  for (int r = 0; r < NR; ++r) {
    a[r] = row_of<BlockQ8_K>(x, xs, r);
    acc[r] = _mm256_setzero_ps();
  }
  const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x03);
  for (int64_t i = 0; i < n / kQKK; ++i) {
    const float dw = f16(w[i].d);
    // The -32 offset of every level, applied once per block: -32 * sum_j sc_j * bsums_j.
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[i].scales)));
    __m256i sumi[NR];
    for (int r = 0; r < NR; ++r) {
      const __m256i off = _mm256_madd_epi16(sc16, load32(a[r][i].bsums));
      sumi[r] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(off, 5));
    }
    // Scales 0..7 (c = 0) or 8..15 (c = 1) as int16 in both lanes, for one-shuffle picks.
    const __m256i scl[2] = {_mm256_permute2x128_si256(sc16, sc16, 0x00), _mm256_permute2x128_si256(sc16, sc16, 0x11)};
    for (int c = 0; c < 2; ++c) {
      const __m256i ql0 = load32(w[i].ql + 64 * c), ql1 = load32(w[i].ql + 64 * c + 32);
      const __m256i qh = load32(w[i].qh + 32 * c);
      for (int run = 0; run < 4; ++run) {
        const __m256i src = run % 2 ? ql1 : ql0;
        const __m256i lo = run < 2 ? _mm256_and_si256(src, m4) : _mm256_and_si256(_mm256_srli_epi16(src, 4), m4);
        const __m256i hi = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * run), m2), 4);
        const __m256i q = _mm256_or_si256(lo, hi);
        // Low lane: scale 2 run (elements 0..15 of the run), high lane: scale 2 run + 1.
        const int k = 2 * run;
        const __m256i pick = _mm256_set_m128i(_mm_set1_epi16(static_cast<int16_t>((2 * k + 3) << 8 | (2 * k + 2))),
                                              _mm_set1_epi16(static_cast<int16_t>((2 * k + 1) << 8 | (2 * k))));
        const __m256i scv = _mm256_shuffle_epi8(scl[c], pick);
        for (int r = 0; r < NR; ++r) {
          const __m256i p = _mm256_maddubs_epi16(q, load32(a[r][i].qs + 128 * c + 32 * run));
          sumi[r] = _mm256_add_epi32(sumi[r], _mm256_madd_epi16(p, scv));
        }
      }
    }
    for (int r = 0; r < NR; ++r)
      acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dw * a[r][i].d), _mm256_cvtepi32_ps(sumi[r]), acc[r]);
  }
  for (int r = 0; r < NR; ++r) y[r * ys] = hsum(acc[r]);
}

template <int NR>
void dot_iq4_xs(int64_t n, const void* vw, const void* x, size_t xs, float* y, int64_t ys) {
  const auto* w = as<BlockIQ4_XS>(vw);
  const BlockQ8_K* a[NR];
  __m256 acc[NR];
  for (int r = 0; r < NR; ++r) {
    a[r] = row_of<BlockQ8_K>(x, xs, r);
    acc[r] = _mm256_setzero_ps();
  }
  const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kIQ4NL));
  const __m256i table = _mm256_set_m128i(t, t);
  for (int64_t i = 0; i < n / kQKK; ++i) {
    __m256i sumi[NR];
    for (int r = 0; r < NR; ++r) sumi[r] = _mm256_setzero_si256();
    for (int ib = 0; ib < 8; ++ib) {
      const int ls = ((w[i].scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((w[i].scales_h >> (2 * ib)) & 3) << 4);
      const __m256i q = _mm256_shuffle_epi8(table, unpack_nibbles(w[i].qs + 16 * ib));
      const __m256i aq = _mm256_sign_epi8(q, q);
      const __m256i scv = _mm256_set1_epi16(static_cast<int16_t>(ls - 32));
      for (int r = 0; r < NR; ++r) {
        const __m256i p = _mm256_maddubs_epi16(aq, _mm256_sign_epi8(load32(a[r][i].qs + 32 * ib), q));
        sumi[r] = _mm256_add_epi32(sumi[r], _mm256_madd_epi16(p, scv));
      }
    }
    const float dw = f16(w[i].d);
    for (int r = 0; r < NR; ++r)
      acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dw * a[r][i].d), _mm256_cvtepi32_ps(sumi[r]), acc[r]);
  }
  for (int r = 0; r < NR; ++r) y[r * ys] = hsum(acc[r]);
}

// ---- float weights x float activations ----
struct LoadF32 {
  using T = float;
  static __m256 get(const float* p) { return _mm256_loadu_ps(p); }
  static float one(float v) { return v; }
};
struct LoadF16 {
  using T = uint16_t;
  static __m256 get(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static float one(uint16_t v) { return f16(v); }
};
struct LoadBF16 {
  using T = uint16_t;
  static __m256 get(const uint16_t* p) {
    const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
  }
  static float one(uint16_t v) { return bf16_to_f32(v); }
};

template <class L, int NR>
void dot_float(int64_t n, const void* vw, const void* x, size_t xs, float* y, int64_t ys) {
  const auto* w = static_cast<const typename L::T*>(vw);
  const float* a[NR];
  // Two accumulators per row hide the FMA latency for small NR.
  __m256 acc0[NR], acc1[NR];
  for (int r = 0; r < NR; ++r) {
    a[r] = row_of<float>(x, xs, r);
    acc0[r] = acc1[r] = _mm256_setzero_ps();
  }
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 w0 = L::get(w + i), w1 = L::get(w + i + 8);
    for (int r = 0; r < NR; ++r) {
      acc0[r] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(a[r] + i), acc0[r]);
      acc1[r] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(a[r] + i + 8), acc1[r]);
    }
  }
  for (; i + 8 <= n; i += 8) {
    const __m256 w0 = L::get(w + i);
    for (int r = 0; r < NR; ++r) acc0[r] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(a[r] + i), acc0[r]);
  }
  for (int r = 0; r < NR; ++r) {
    float s = hsum(_mm256_add_ps(acc0[r], acc1[r]));
    for (int64_t k = i; k < n; ++k) s += L::one(w[k]) * a[r][k];
    y[r * ys] = s;
  }
}

OWL_NR_KERNEL(KQ4_0, dot_sym_q8_0<DecQ4_0, NR>)
OWL_NR_KERNEL(KQ5_0, dot_sym_q8_0<DecQ5_0, NR>)
OWL_NR_KERNEL(KQ8_0, dot_sym_q8_0<DecQ8_0, NR>)
OWL_NR_KERNEL(KIQ4_NL, dot_sym_q8_0<DecIQ4_NL, NR>)
OWL_NR_KERNEL(KQ4_1, dot_asym_q8_0<BlockQ4_1, NR>)
OWL_NR_KERNEL(KQ5_1, dot_asym_q8_0<BlockQ5_1, NR>)
OWL_NR_KERNEL(KQ2_K, dot_q2_k<NR>)
OWL_NR_KERNEL(KQ3_K, dot_q3_k<NR>)
OWL_NR_KERNEL(KQ4_K, dot_q45_k<false, NR>)
OWL_NR_KERNEL(KQ5_K, dot_q45_k<true, NR>)
OWL_NR_KERNEL(KQ6_K, dot_q6_k<NR>)
OWL_NR_KERNEL(KIQ4_XS, dot_iq4_xs<NR>)
OWL_NR_KERNEL(KIQ2_XXS, dot_codebook<DecIQ2_XXS, NR>)
OWL_NR_KERNEL(KIQ2_XS, dot_codebook<DecIQ2_XS, NR>)
OWL_NR_KERNEL(KIQ2_S, dot_codebook<DecIQ2_S, NR>)
OWL_NR_KERNEL(KIQ3_XXS, dot_codebook<DecIQ3_XXS, NR>)
OWL_NR_KERNEL(KIQ3_S, dot_codebook<DecIQ3_S, NR>)
OWL_NR_KERNEL(KIQ1_S, dot_codebook<DecIQ1_S, NR>)
OWL_NR_KERNEL(KIQ1_M, dot_codebook<DecIQ1_M, NR>)
OWL_NR_KERNEL(KF32, dot_float<LoadF32, NR>)
OWL_NR_KERNEL(KF16, dot_float<LoadF16, NR>)
OWL_NR_KERNEL(KBF16, dot_float<LoadBF16, NR>)
#undef OWL_NR_KERNEL

}  // namespace

// Activation quantisers, bit-identical to quantize_row(Q8_0 / Q8_K): same scale formula, same
// round-half-even of x * (1 / d).
namespace {
inline float absmax8(const float* x, int n) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 m = _mm256_setzero_ps();
  for (int i = 0; i < n; i += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)));
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  h = _mm_max_ss(h, _mm_movehdup_ps(h));
  return _mm_cvtss_f32(h);
}

inline __m256i round_to_i8x32(const float* x, __m256 scale) {
  const int r = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  const __m256i a = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x), scale), r));
  const __m256i b = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 8), scale), r));
  const __m256i c = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 16), scale), r));
  const __m256i d = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 24), scale), r));
  // packs interleave 128-bit lanes; the permute restores element order.
  const __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
  const __m256i v = _mm256_packs_epi16(ab, cd);
  return _mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}
}  // namespace

void quantize_q8_0_avx2(const float* x, void* vy, int64_t n) {
  auto* y = static_cast<BlockQ8_0*>(vy);
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    const float amax = absmax8(x, kQK);
    const float d = amax / 127, id = d ? 1 / d : 0;
    y[i].d = f32_to_f16(d);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[i].qs), round_to_i8x32(x, _mm256_set1_ps(id)));
  }
}

void quantize_q8_k_avx2(const float* x, void* vy, int64_t n) {
  auto* y = static_cast<BlockQ8_K*>(vy);
  for (int64_t i = 0; i < n / kQKK; ++i, x += kQKK) {
    // The signed value of largest magnitude (first one on ties, as the scalar loop).
    float amax = 0, mx = 0;
    const float am = absmax8(x, kQKK);
    for (int j = 0; j < kQKK; ++j)
      if (std::fabs(x[j]) == am) {
        amax = am;
        mx = x[j];
        break;
      }
    if (amax == 0) {
      std::memset(&y[i], 0, sizeof(BlockQ8_K));
      continue;
    }
    const float iscale = -127.0f / mx;
    const __m256 s = _mm256_set1_ps(iscale);
    for (int j = 0; j < kQKK; j += 32) {
      const __m256i q = round_to_i8x32(x + j, s);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[i].qs + j), q);
      // bsums of the two groups of 16: widen to int16, add pairs down to one sum per 16.
      const __m256i w = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), q), _mm256_set1_epi16(1));
      // w: 8 int32 sums of 4; lanes 0-3 = group A (bytes 0..15), lanes 4-7 = group B.
      const __m128i lo = _mm256_castsi256_si128(w), hi = _mm256_extracti128_si256(w, 1);
      const __m128i t = _mm_hadd_epi32(lo, hi);  // a01 a23 b01 b23
      const __m128i u = _mm_hadd_epi32(t, t);    // A B A B
      y[i].bsums[j / 16] = static_cast<int16_t>(_mm_cvtsi128_si32(u));
      y[i].bsums[j / 16 + 1] = static_cast<int16_t>(_mm_extract_epi32(u, 1));
    }
    y[i].d = 1 / iscale;
  }
}

DotFn dot_fn_avx2(DType t) {
  switch (t) {
    case DType::F32:
      return by_nr<KF32>;
    case DType::F16:
      return by_nr<KF16>;
    case DType::BF16:
      return by_nr<KBF16>;
    case DType::Q4_0:
      return by_nr<KQ4_0>;
    case DType::Q4_1:
      return by_nr<KQ4_1>;
    case DType::Q5_0:
      return by_nr<KQ5_0>;
    case DType::Q5_1:
      return by_nr<KQ5_1>;
    case DType::Q8_0:
      return by_nr<KQ8_0>;
    case DType::IQ4_NL:
      return by_nr<KIQ4_NL>;
    case DType::Q2_K:
      return by_nr<KQ2_K>;
    case DType::Q3_K:
      return by_nr<KQ3_K>;
    case DType::Q4_K:
      return by_nr<KQ4_K>;
    case DType::Q5_K:
      return by_nr<KQ5_K>;
    case DType::Q6_K:
      return by_nr<KQ6_K>;
    case DType::IQ4_XS:
      return by_nr<KIQ4_XS>;
    case DType::IQ2_XXS:
      return by_nr<KIQ2_XXS>;
    case DType::IQ2_XS:
      return by_nr<KIQ2_XS>;
    case DType::IQ2_S:
      return by_nr<KIQ2_S>;
    case DType::IQ3_XXS:
      return by_nr<KIQ3_XXS>;
    case DType::IQ3_S:
      return by_nr<KIQ3_S>;
    case DType::IQ1_S:
      return by_nr<KIQ1_S>;
    case DType::IQ1_M:
      return by_nr<KIQ1_M>;
    default:
      return nullptr;
  }
}

}  // namespace owl::kernels
