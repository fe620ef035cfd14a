// Internal to the AVX2 kernel files (include only from *_avx2.cpp, compiled with -mavx2 -mfma
// -mf16c): the helpers they share and the codebook types' (IQ1_S .. IQ3_S) sub-block decoders
// and dot kernel, used by the per-row dot products (vec_dot_avx2.cpp) and by the prefill tiles
// that decode each weight row once for many activation rows (codebook_tile_avx2.cpp), so both
// compute every row's sums with the same integer and float steps (bit-identical results).
#pragma once
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "tensor/iq_grids.h"
#include "tensor/quants.h"

namespace owl::kernels::avx2_shared {

template <class B>
const B* as(const void* p) {
  return static_cast<const B*>(p);
}
template <class B>
const B* row_of(const void* x, size_t stride, int r) {
  return reinterpret_cast<const B*>(static_cast<const uint8_t*>(x) + r * stride);
}

inline float f16(uint16_t h) { return _cvtsh_ss(h); }

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline __m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// ---- codebook types (IQ1_S .. IQ3_S) x Q8_K ----
// Each 32-element sub-block is decoded to magnitudes (unsigned bytes, gathered from the grid
// rows), signs (+1 / -1 bytes for sign_epi8, applied to the activations) and its two per-16
// scales as int16 (low lane: elements 0..15, high lane: 16..31); then, per activation row,
// maddubs + madd with the scales give exact int32 sums, as the reference's integer levels do
// (tensor/quants.cpp iq_decode). Q8_K activations lie in [-127, 127], so negating them is exact.
// Every grid index comes from grid_index (tensor/iq_grids.h), whose bit widths match the grids'
// sizes, and sign patterns are masked to 7 bits: no block a file holds reads outside a table.

// The 128 7-bit IQ2/IQ3 sign patterns (iq_signs8: bit j set, element j negative) as 8 bytes of
// +1 / -1 each, ready for sign_epi8.
struct SignTable {
  uint64_t v[128];
  constexpr SignTable() : v() {
    for (uint32_t s = 0; s < 128; ++s) {
      const uint32_t bits = iq_signs8(s);
      for (int j = 0; j < 8; ++j) v[s] |= uint64_t{(bits >> j) & 1 ? 0xFFu : 0x01u} << (8 * j);
    }
  }
};
inline constexpr SignTable kSigns8;

inline uint32_t u32_at(const void* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// 32 sign bits -> 32 bytes of +1 (bit clear) or -1 (bit set); byte i <- bit i.
inline __m256i signs_from_bits(uint32_t bits) {
  const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
  const __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)), shuf);
  const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ULL));
  return _mm256_or_si256(_mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit), _mm256_set1_epi8(1));
}
// Four 7-bit patterns -> 32 sign bytes (pattern l covers elements 8l..8l+7).
inline __m256i signs_7x4(uint32_t p0, uint32_t p1, uint32_t p2, uint32_t p3) {
  return _mm256_set_epi64x(static_cast<int64_t>(kSigns8.v[p3 & 127]), static_cast<int64_t>(kSigns8.v[p2 & 127]),
                           static_cast<int64_t>(kSigns8.v[p1 & 127]), static_cast<int64_t>(kSigns8.v[p0 & 127]));
}
inline __m256i signs_7x4(uint32_t aux) { return signs_7x4(aux, aux >> 7, aux >> 14, aux >> 21); }
// Two int16 scales: s0 in the low lane, s1 in the high lane.
inline __m256i scales2(int s0, int s1) {
  return _mm256_set_m128i(_mm_set1_epi16(static_cast<int16_t>(s1)), _mm_set1_epi16(static_cast<int16_t>(s0)));
}
inline __m256i grid8x4(const uint64_t* g, uint32_t i0, uint32_t i1, uint32_t i2, uint32_t i3) {
  return _mm256_set_epi64x(static_cast<int64_t>(g[i3]), static_cast<int64_t>(g[i2]), static_cast<int64_t>(g[i1]),
                           static_cast<int64_t>(g[i0]));
}

struct Sub32 {
  __m256i mag, sgn, scales;
};

struct DecIQ2_XXS {
  using B = BlockIQ2_XXS;
  static constexpr float kMult = 0.125f;
  static float d(const B& b) { return f16(b.d); }
  static Sub32 get(const B& b, int ib) {
    const uint32_t idx = u32_at(b.qs + 4 * ib), aux = u32_at(b.qs + 4 * ib + 2);
    const int s = static_cast<int>(2 * (aux >> 28) + 1);
    auto g = [&](int k) { return grid_index<kIQ2XXSGridBits, 0>(idx >> (8 * k), 0); };
    return {grid8x4(kIQ2XXSGrid, g(0), g(1), g(2), g(3)), signs_7x4(aux), _mm256_set1_epi16(static_cast<int16_t>(s))};
  }
};

struct DecIQ2_XS {
  using B = BlockIQ2_XS;
  static constexpr float kMult = 0.125f;
  static float d(const B& b) { return f16(b.d); }
  static Sub32 get(const B& b, int ib) {
    const uint16_t* q = b.qs + 4 * ib;
    auto g = [&](int k) { return grid_index<kIQ2XSGridBits, 1>(q[k], q[k] >> 8); };
    return {grid8x4(kIQ2XSGrid, g(0), g(1), g(2), g(3)), signs_7x4(q[0] >> 9, q[1] >> 9, q[2] >> 9, q[3] >> 9),
            scales2(2 * (b.scales[ib] & 0xF) + 1, 2 * (b.scales[ib] >> 4) + 1)};
  }
};

struct DecIQ2_S {
  using B = BlockIQ2_S;
  static constexpr float kMult = 0.125f;
  static float d(const B& b) { return f16(b.d); }
  static Sub32 get(const B& b, int ib) {
    const uint8_t* q = b.qs + 4 * ib;
    const uint32_t h = b.qh[ib];
    auto g = [&](int k) { return grid_index<kIQ2SGridBits, 2>(q[k], h >> (2 * k)); };
    return {grid8x4(kIQ2SGrid, g(0), g(1), g(2), g(3)), signs_from_bits(u32_at(b.qs + kQKK / 8 + 4 * ib)),
            scales2(2 * (b.scales[ib] & 0xF) + 1, 2 * (b.scales[ib] >> 4) + 1)};
  }
};

struct DecIQ3_XXS {
  using B = BlockIQ3_XXS;
  static constexpr float kMult = 0.25f;
  static float d(const B& b) { return f16(b.d); }
  static Sub32 get(const B& b, int ib) {
    const uint8_t* q = b.qs + 8 * ib;
    const uint32_t aux = u32_at(b.qs + kQKK / 4 + 4 * ib);
    auto e = [&](int k) { return static_cast<int>(kIQ3XXSGrid[grid_index<kIQ3XXSGridBits, 0>(q[k], 0)]); };
    const __m256i mag = _mm256_set_epi32(e(7), e(6), e(5), e(4), e(3), e(2), e(1), e(0));
    return {mag, signs_7x4(aux), _mm256_set1_epi16(static_cast<int16_t>(2 * (aux >> 28) + 1))};
  }
};

struct DecIQ3_S {
  using B = BlockIQ3_S;
  static constexpr float kMult = 1.0f;
  static float d(const B& b) { return f16(b.d); }
  static Sub32 get(const B& b, int ib) {
    const uint8_t* q = b.qs + 8 * ib;
    const uint32_t h = b.qh[ib];
    auto e = [&](int k) { return static_cast<int>(kIQ3SGrid[grid_index<kIQ3SGridBits, 1>(q[k], h >> k)]); };
    const __m256i mag = _mm256_set_epi32(e(7), e(6), e(5), e(4), e(3), e(2), e(1), e(0));
    const int s = 2 * ((b.scales[ib / 2] >> (4 * (ib % 2))) & 0xF) + 1;
    return {mag, signs_from_bits(u32_at(b.signs + 4 * ib)), _mm256_set1_epi16(static_cast<int16_t>(s))};
  }
};

// IQ1: levels 8 * grid + delta (grid bytes -1/0/+1, delta +-1 per group of 8), never zero; the
// level is its own sign vector.
inline Sub32 iq1_levels(__m256i grid, __m256i delta, __m256i scales) {
  const __m256i lv = _mm256_add_epi8(_mm256_sign_epi8(_mm256_set1_epi8(8), grid), delta);
  return {_mm256_abs_epi8(lv), lv, scales};
}

struct DecIQ1_S {
  using B = BlockIQ1_S;
  static constexpr float kMult = 0.125f;
  static float d(const B& b) { return f16(b.d); }
  static Sub32 get(const B& b, int ib) {
    const uint8_t* q = b.qs + 4 * ib;
    const uint32_t h = b.qh[ib];
    auto g = [&](int k) { return grid_index<kIQ1SGridBits, 3>(q[k], h >> (3 * k)); };
    const __m256i grid = grid8x4(kIQ1SGrid, g(0), g(1), g(2), g(3));
    const __m256i delta = _mm256_set1_epi8(h & 0x8000 ? -1 : 1);
    return iq1_levels(grid, delta, _mm256_set1_epi16(static_cast<int16_t>(2 * ((h >> 12) & 7) + 1)));
  }
};

struct DecIQ1_M {
  using B = BlockIQ1_M;
  static constexpr float kMult = 0.125f;
  static float d(const B& b) {
    uint16_t sc[4];
    std::memcpy(sc, b.scales, sizeof sc);
    return f16(
        static_cast<uint16_t>((sc[0] >> 12) | ((sc[1] >> 8) & 0x00F0) | ((sc[2] >> 4) & 0x0F00) | (sc[3] & 0xF000)));
  }
  static Sub32 get(const B& b, int ib) {
    const uint8_t* q = b.qs + 4 * ib;
    const uint32_t h = b.qh[2 * ib] | uint32_t{b.qh[2 * ib + 1]} << 8;  // 4 nibbles, group l in bits 4l..4l+3
    auto g = [&](int k) { return grid_index<kIQ1SGridBits, 3>(q[k], h >> (4 * k)); };
    const __m256i grid = grid8x4(kIQ1SGrid, g(0), g(1), g(2), g(3));
    auto dl = [&](int l) -> int64_t { return (h >> (4 * l + 3)) & 1 ? -1 : 0x0101010101010101; };
    const __m256i delta = _mm256_set_epi64x(dl(3), dl(2), dl(1), dl(0));
    uint16_t sc;
    std::memcpy(&sc, b.scales + 2 * (ib / 2), 2);
    const int shift = 6 * (ib % 2);
    return iq1_levels(grid, delta, scales2(2 * ((sc >> shift) & 7) + 1, 2 * ((sc >> (shift + 3)) & 7) + 1));
  }
};

// The dot products of one weight row with NR activation rows (Q8_K), the row given as its
// sub-blocks sub(i, ib) -> Sub32 and block factors dw(i) = d * kMult: straight from the stored
// blocks (dot_codebook) or from a row decoded once for many activation rows (the prefill tiles).
template <int NR, class Sub, class Dw>
inline void dot_subs(int64_t nb, Sub sub, Dw dw, const void* x, size_t xs, float* y, int64_t ys) {
  const BlockQ8_K* a[NR];
  __m256 acc[NR];
  for (int r = 0; r < NR; ++r) {
    a[r] = row_of<BlockQ8_K>(x, xs, r);
    acc[r] = _mm256_setzero_ps();
  }
  for (int64_t i = 0; i < nb; ++i) {
    __m256i sumi[NR];
    for (int r = 0; r < NR; ++r) sumi[r] = _mm256_setzero_si256();
    for (int ib = 0; ib < kQKK / 32; ++ib) {
      const Sub32 s = sub(i, ib);
      for (int r = 0; r < NR; ++r) {
        const __m256i p = _mm256_maddubs_epi16(s.mag, _mm256_sign_epi8(load32(a[r][i].qs + 32 * ib), s.sgn));
        sumi[r] = _mm256_add_epi32(sumi[r], _mm256_madd_epi16(p, s.scales));
      }
    }
    const float d = dw(i);
    for (int r = 0; r < NR; ++r)
      acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(a[r][i].d * d), _mm256_cvtepi32_ps(sumi[r]), acc[r]);
  }
  for (int r = 0; r < NR; ++r) y[r * ys] = hsum(acc[r]);
}

template <class D, int NR>
void dot_codebook(int64_t n, const void* vw, const void* x, size_t xs, float* y, int64_t ys) {
  const auto* w = as<typename D::B>(vw);
  dot_subs<NR>(
      n / kQKK, [w](int64_t i, int ib) { return D::get(w[i], ib); }, [w](int64_t i) { return D::d(w[i]) * D::kMult; },
      x, xs, y, ys);
}

}  // namespace owl::kernels::avx2_shared
