// One-row (decode) dot kernels of the seven codebook types (IQ1_S .. IQ3_S) on AVX-512 VBMI
// (compiled with AVX-512 F/BW/VL/VNNI/VBMI; chosen only after the CPUID check,
// cpu_has_avx512_vbmi). The AVX2 kernels (codebook_avx2.h) decode each group of 8 weights with
// scalar index arithmetic and one 8-byte load per grid row and per sign pattern: bound by that
// decoding, not by memory. Here every 64 weights (two sub-blocks) take one 512-bit step, signs are
// applied as a 64-bit mask and scales as words. IQ2_XXS, IQ2_XS, IQ3_XXS and IQ3_S are decoded
// wholly in vector registers: the grid rows come from a 2- or 3-bit-per-element code table held in 8 (256
// rows) or 16 (512 rows) registers (two-source word permutes), the 7-bit sign patterns' parity
// from a 128-byte table in 2 registers (byte permute), and each 64 weights become magnitudes with
// a multishift and a byte permute. IQ2_S, IQ1_S and IQ1_M (1024 and 2048 rows) keep one scalar
// load per row.
//
// Bit-identical to the AVX2 per-row kernels and the prefill tiles: the same maddubs pairs and
// the same integer lanes (lane j holds elements 4j..4j+3 of each 32-weight sub-block, times its
// scale, summed over the block; here even and odd sub-blocks sit in the low and high 256 bits and
// are added at the end of the block, which is exact), then the same float steps.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

// GCC 12's AVX-512 intrinsics pass _mm512_undefined_*() as unused merge sources, which
// -Wmaybe-uninitialized reports once inlined (GCC bug 105593): no value is read uninitialised.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "kernels/codebook_avx2.h"
#include "kernels/vec_dot.h"
#include "tensor/iq_grids.h"

namespace owl::kernels {

namespace {

using avx2_shared::f16;
using avx2_shared::hsum;
using avx2_shared::row_of;

// Byte tables loaded as 64-byte registers.
struct alignas(64) Bytes64 {
  uint8_t b[64];
};

// The IQ2_XXS grid rows hold only the bytes 8, 25 and 43: each row as 8 two-bit codes (element j
// in bits 2j, 2j+1: 0 -> 8, 1 -> 25, 2 -> 43), 256 uint16 in 8 registers of 32.
constexpr uint8_t kIQ2XXSLevels[3] = {8, 25, 43};
struct alignas(64) IQ2XXSCodes {
  uint16_t c[256];
};
IQ2XXSCodes make_iq2xxs_codes() {
  IQ2XXSCodes t{};
  for (int e = 0; e < 256; ++e)
    for (int j = 0; j < 8; ++j) {
      const auto v = static_cast<uint8_t>(kIQ2XXSGrid[e] >> (8 * j));
      const int code = v == kIQ2XXSLevels[0] ? 0 : v == kIQ2XXSLevels[1] ? 1 : 2;
      t.c[e] |= static_cast<uint16_t>(code << (2 * j));
    }
  return t;
}
const IQ2XXSCodes& iq2xxs_codes() {
  static const IQ2XXSCodes t = make_iq2xxs_codes();
  return t;
}

// The 128 seven-bit sign patterns with their parity bit (iq_signs8), for a two-register byte
// permute that reads the low 7 bits of each index byte.
struct alignas(64) Signs128 {
  uint8_t b[128];
};
constexpr Signs128 make_signs() {
  Signs128 s{};
  for (uint32_t i = 0; i < 128; ++i) s.b[i] = iq_signs8(i);
  return s;
}
constexpr Signs128 kSigns = make_signs();

// Byte permute / multishift controls. A block's 64 qs bytes: sub-block ib in bytes 8ib..8ib+7,
// 4 grid indices then the 32-bit aux word (4 x 7 sign bits, 4-bit scale in bits 28..31).
struct Controls {
  Bytes64 idx;         // word w <- index byte of sub-block w / 4, group w % 4 (odd bytes masked to 0)
  Bytes64 aux_fields;  // per qword: bytes 0..3 <- the 7-bit sign patterns, byte 4 <- the scale (bits 60..63)
  Bytes64 pairs2[4];   // zmm m: the 8 codes of sub-blocks 2m, 2m+1, one per qword (as words 4q..4q+3)
  Bytes64 shifts;      // per qword: byte j <- bits 2j.. (element j's code in the low 2 bits)
  Bytes64 mag;         // byte i -> level of code i & 3
  Bytes64 scale[4];    // zmm m: words 0..15 <- scale byte of sub-block 2m, 16..31 <- of 2m + 1
};
constexpr Controls make_controls() {
  Controls c{};
  for (int e = 0; e < 64; ++e) {
    const int w = e / 2;
    c.idx.b[e] = static_cast<uint8_t>(e % 2 ? 0 : 8 * (w / 4) + w % 4);
    const int f = e % 8;
    c.aux_fields.b[e] = static_cast<uint8_t>(f < 4 ? 32 + 7 * f : 60);
    c.shifts.b[e] = static_cast<uint8_t>(2 * (e % 8));
    c.mag.b[e] = (e & 3) < 3 ? kIQ2XXSLevels[e & 3] : 0;
    for (int m = 0; m < 4; ++m) {
      // word index (8m + qword) in both bytes' positions: byte e is byte (e % 2) of word e / 2.
      const int q = e / 8, word = 8 * m + q;
      c.pairs2[m].b[e] = static_cast<uint8_t>(2 * word + e % 2);
      c.scale[m].b[e] = static_cast<uint8_t>(8 * (2 * m + e / 32) + 4);
    }
  }
  return c;
}
constexpr Controls kCtl = make_controls();

inline __m512i load64(const void* p) { return _mm512_load_si512(p); }

template <int NR>
void dot_iq2_xxs(int64_t n, const void* vw, const void* x, size_t xs, float* y, int64_t ys) {
  const auto* w = static_cast<const BlockIQ2_XXS*>(vw);
  const int64_t nb = n / kQKK;
  const BlockQ8_K* a[NR];
  __m256 acc[NR];
  for (int r = 0; r < NR; ++r) {
    a[r] = row_of<BlockQ8_K>(x, xs, r);
    acc[r] = _mm256_setzero_ps();
  }
  const IQ2XXSCodes& tab = iq2xxs_codes();
  __m512i codes_tab[8];
  for (int t = 0; t < 8; ++t) codes_tab[t] = load64(tab.c + 32 * t);
  const __m512i sg0 = load64(kSigns.b), sg1 = load64(kSigns.b + 64);
  const __m512i c_idx = load64(kCtl.idx.b), c_aux = load64(kCtl.aux_fields.b), c_shifts = load64(kCtl.shifts.b);
  const __m512i c_mag = load64(kCtl.mag.b);
  const __m512i bit6 = _mm512_set1_epi16(0x40), bit7 = _mm512_set1_epi16(0x80);
  constexpr __mmask64 kEven = 0x5555555555555555ULL;
  for (int64_t i = 0; i < nb; ++i) {
    const __m512i q = _mm512_loadu_si512(w[i].qs);
    // The 32 grid indices as words, their rows' codes from the 256-entry table (64 entries per
    // two-register permute, chosen by index bits 6 and 7).
    const __m512i idx = _mm512_maskz_permutexvar_epi8(kEven, c_idx, q);
    const __m512i r0 = _mm512_permutex2var_epi16(codes_tab[0], idx, codes_tab[1]);
    const __m512i r1 = _mm512_permutex2var_epi16(codes_tab[2], idx, codes_tab[3]);
    const __m512i r2 = _mm512_permutex2var_epi16(codes_tab[4], idx, codes_tab[5]);
    const __m512i r3 = _mm512_permutex2var_epi16(codes_tab[6], idx, codes_tab[7]);
    const __mmask32 k6 = _mm512_test_epi16_mask(idx, bit6), k7 = _mm512_test_epi16_mask(idx, bit7);
    const __m512i codes =
        _mm512_mask_blend_epi16(k7, _mm512_mask_blend_epi16(k6, r0, r1), _mm512_mask_blend_epi16(k6, r2, r3));
    // Sign patterns (7 bits -> 8 with parity) and scales 2s + 1 as bytes at 8ib + 0..3 and 8ib + 4.
    const __m512i fields = _mm512_multishift_epi64_epi8(c_aux, q);
    const __m512i signs = _mm512_permutex2var_epi8(sg0, fields, sg1);
    const __m512i nib = _mm512_and_si512(fields, _mm512_set1_epi8(0x0F));
    const __m512i ls = _mm512_or_si512(_mm512_add_epi8(nib, nib), _mm512_set1_epi8(1));
    // Sub-block ib's 32 sign bits are the low dword of qword ib: compacted and stored, each
    // pair of sub-blocks is read back as one 64-bit mask (cheaper than spreading bytes).
    alignas(32) uint64_t neg_bits[4];
    _mm256_store_si256(reinterpret_cast<__m256i*>(neg_bits), _mm512_cvtepi64_epi32(signs));
    __m512i sumi[NR];
    for (int r = 0; r < NR; ++r) sumi[r] = _mm512_setzero_si512();
    for (int m = 0; m < 4; ++m) {
      const __m512i cq = _mm512_permutexvar_epi8(load64(kCtl.pairs2[m].b), codes);
      const __m512i mag = _mm512_permutexvar_epi8(_mm512_multishift_epi64_epi8(c_shifts, cq), c_mag);
      const __mmask64 neg = _load_mask64(reinterpret_cast<__mmask64*>(neg_bits + m));
      const __m512i sc = _mm512_maskz_permutexvar_epi8(kEven, load64(kCtl.scale[m].b), ls);
      for (int r = 0; r < NR; ++r) {
        const __m512i av = _mm512_loadu_si512(a[r][i].qs + 64 * m);
        const __m512i as = _mm512_mask_sub_epi8(av, neg, _mm512_setzero_si512(), av);
        sumi[r] = _mm512_dpwssd_epi32(sumi[r], _mm512_maddubs_epi16(mag, as), sc);
      }
    }
    const float d = f16(w[i].d) * 0.125f;
    for (int r = 0; r < NR; ++r) {
      const __m256i s8 = _mm256_add_epi32(_mm512_castsi512_si256(sumi[r]), _mm512_extracti64x4_epi64(sumi[r], 1));
      acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(a[r][i].d * d), _mm256_cvtepi32_ps(s8), acc[r]);
    }
  }
  for (int r = 0; r < NR; ++r) y[r * ys] = hsum(acc[r]);
}

// IQ3_XXS: the same scheme on grid rows of 4 bytes from 8 levels (4, 12, ..., 52, 62): each row
// as 4 three-bit codes in a uint16, 64 rows per block in two lookups; its 8 aux words sit
// together after the indices, so one multishift gives each pair of sub-blocks' 64 sign bits as
// one qword.
constexpr uint8_t kIQ3XXSLevels[8] = {4, 12, 20, 28, 36, 44, 52, 62};
struct alignas(64) IQ3XXSCodes {
  uint16_t c[256];
};
IQ3XXSCodes make_iq3xxs_codes() {
  IQ3XXSCodes t{};
  for (int e = 0; e < 256; ++e)
    for (int j = 0; j < 4; ++j) {
      const auto v = static_cast<uint8_t>(kIQ3XXSGrid[e] >> (8 * j));
      int code = 7;
      for (int l = 0; l < 8; ++l)
        if (v == kIQ3XXSLevels[l]) code = l;
      t.c[e] |= static_cast<uint16_t>(code << (3 * j));
    }
  return t;
}
const IQ3XXSCodes& iq3xxs_codes() {
  static const IQ3XXSCodes t = make_iq3xxs_codes();
  return t;
}
struct IQ3XXSControls {
  Bytes64 aux_fields;  // per qword (aux words 2j, 2j + 1): bytes 0..7 <- their eight 7-bit sign patterns
  Bytes64 aux_scales;  // per qword: byte 0 <- bits 28.. (scale of 2j), byte 1 <- bits 60.. (of 2j + 1)
  Bytes64 rows[2];     // zmm m: dword d <- code word 16 (m % 2) + d, twice
  Bytes64 shifts;      // per dword: byte j <- bits 3j.. (element j's code in the low 3 bits)
  Bytes64 mag;         // byte i -> level of code i & 7
  Bytes64 scale[4];    // zmm m: words 0..15 <- scale byte of sub-block 2m, 16..31 <- of 2m + 1
};
constexpr IQ3XXSControls make_iq3xxs_controls() {
  IQ3XXSControls c{};
  for (int e = 0; e < 64; ++e) {
    const int f = e % 8;
    c.aux_fields.b[e] = static_cast<uint8_t>(f < 4 ? 7 * f : 32 + 7 * (f - 4));
    c.aux_scales.b[e] = static_cast<uint8_t>(f == 0 ? 28 : 60);
    for (int h = 0; h < 2; ++h) c.rows[h].b[e] = static_cast<uint8_t>(2 * (16 * h + e / 4) + e % 2);
    c.shifts.b[e] = static_cast<uint8_t>(32 * (f / 4) + 3 * (f % 4));
    c.mag.b[e] = kIQ3XXSLevels[e & 7];
    for (int m = 0; m < 4; ++m) c.scale[m].b[e] = static_cast<uint8_t>(e % 2 ? 0 : 8 * m + e / 32);
  }
  return c;
}
constexpr IQ3XXSControls kCtl3 = make_iq3xxs_controls();

// Entries idx (words, 0..255) of a 256-entry uint16 table held in 8 registers of 32.
inline __m512i lookup256(const __m512i* tab, __m512i idx) {
  const __m512i r0 = _mm512_permutex2var_epi16(tab[0], idx, tab[1]);
  const __m512i r1 = _mm512_permutex2var_epi16(tab[2], idx, tab[3]);
  const __m512i r2 = _mm512_permutex2var_epi16(tab[4], idx, tab[5]);
  const __m512i r3 = _mm512_permutex2var_epi16(tab[6], idx, tab[7]);
  const __mmask32 k6 = _mm512_test_epi16_mask(idx, _mm512_set1_epi16(0x40));
  const __mmask32 k7 = _mm512_test_epi16_mask(idx, _mm512_set1_epi16(0x80));
  return _mm512_mask_blend_epi16(k7, _mm512_mask_blend_epi16(k6, r0, r1), _mm512_mask_blend_epi16(k6, r2, r3));
}

template <int NR>
void dot_iq3_xxs(int64_t n, const void* vw, const void* x, size_t xs, float* y, int64_t ys) {
  const auto* w = static_cast<const BlockIQ3_XXS*>(vw);
  const int64_t nb = n / kQKK;
  const BlockQ8_K* a[NR];
  __m256 acc[NR];
  for (int r = 0; r < NR; ++r) {
    a[r] = row_of<BlockQ8_K>(x, xs, r);
    acc[r] = _mm256_setzero_ps();
  }
  const IQ3XXSCodes& tab = iq3xxs_codes();
  __m512i codes_tab[8];
  for (int t = 0; t < 8; ++t) codes_tab[t] = load64(tab.c + 32 * t);
  const __m512i sg0 = load64(kSigns.b), sg1 = load64(kSigns.b + 64);
  const __m512i c_fields = load64(kCtl3.aux_fields.b), c_scales = load64(kCtl3.aux_scales.b);
  const __m512i c_shifts = load64(kCtl3.shifts.b), c_mag = load64(kCtl3.mag.b);
  constexpr __mmask64 kEven = 0x5555555555555555ULL;
  for (int64_t i = 0; i < nb; ++i) {
    const BlockIQ3_XXS& b = w[i];
    const __m512i codes[2] = {
        lookup256(codes_tab, _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs)))),
        lookup256(codes_tab, _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32))))};
    const __m512i aux = _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + kQKK / 4)));
    alignas(32) uint64_t neg_bits[4];
    _mm256_store_si256(
        reinterpret_cast<__m256i*>(neg_bits),
        _mm512_castsi512_si256(_mm512_permutex2var_epi8(sg0, _mm512_multishift_epi64_epi8(c_fields, aux), sg1)));
    const __m512i nib = _mm512_and_si512(_mm512_multishift_epi64_epi8(c_scales, aux), _mm512_set1_epi8(0x0F));
    const __m512i ls = _mm512_or_si512(_mm512_add_epi8(nib, nib), _mm512_set1_epi8(1));
    __m512i sumi[NR];
    for (int r = 0; r < NR; ++r) sumi[r] = _mm512_setzero_si512();
    for (int m = 0; m < 4; ++m) {
      const __m512i cd = _mm512_permutexvar_epi8(load64(kCtl3.rows[m % 2].b), codes[m / 2]);
      const __m512i mag = _mm512_permutexvar_epi8(_mm512_multishift_epi64_epi8(c_shifts, cd), c_mag);
      const __mmask64 neg = _load_mask64(reinterpret_cast<__mmask64*>(neg_bits + m));
      const __m512i sc = _mm512_maskz_permutexvar_epi8(kEven, load64(kCtl3.scale[m].b), ls);
      for (int r = 0; r < NR; ++r) {
        const __m512i av = _mm512_loadu_si512(a[r][i].qs + 64 * m);
        const __m512i as = _mm512_mask_sub_epi8(av, neg, _mm512_setzero_si512(), av);
        sumi[r] = _mm512_dpwssd_epi32(sumi[r], _mm512_maddubs_epi16(mag, as), sc);
      }
    }
    const float d = f16(b.d) * 0.25f;
    for (int r = 0; r < NR; ++r) {
      const __m256i s8 = _mm256_add_epi32(_mm512_castsi512_si256(sumi[r]), _mm512_extracti64x4_epi64(sumi[r], 1));
      acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(a[r][i].d * d), _mm256_cvtepi32_ps(s8), acc[r]);
    }
  }
  for (int r = 0; r < NR; ++r) y[r * ys] = hsum(acc[r]);
}

// IQ1_S: 2048 grid rows are too many for registers, so each row is one 8-byte load as in the
// AVX2 kernel (a vector index build with gathers measured slower: 1881 against 1491 us for the
// AVX2 kernel, and storing vector-built indices for scalar loads no faster). The gain is in the
// rest, two sub-blocks per 512-bit step: each element's level 8 * grid + delta (delta +-1 per
// sub-block) from a 6-entry byte table indexed by grid + 1 (+ 3 when delta is -1); the level is
// its own sign (as in the AVX2 kernel), applied to the activations as a mask.
struct IQ1SControls {
  Bytes64 level;     // per 128-bit lane: t -> 8 (t - 1) + 1 for t < 3, 8 (t - 4) - 1 for t < 6
  Bytes64 base[4];   // zmm m: byte e <- low byte of word 2m + e / 32 (the sub-block's table offset)
  Bytes64 scale[4];  // zmm m: word w <- low byte of word 2m + w / 16 (its scale), odd bytes masked to 0
};
constexpr IQ1SControls make_iq1s_controls() {
  IQ1SControls c{};
  for (int e = 0; e < 64; ++e) {
    const int t = e % 16;
    c.level.b[e] = static_cast<uint8_t>(t < 3 ? 8 * (t - 1) + 1 : t < 6 ? 8 * (t - 4) - 1 : 0);
    for (int m = 0; m < 4; ++m) {
      c.base[m].b[e] = static_cast<uint8_t>(2 * (2 * m + e / 32));
      c.scale[m].b[e] = static_cast<uint8_t>(e % 2 ? 0 : 2 * (2 * m + e / 32));
    }
  }
  return c;
}
constexpr IQ1SControls kCtl1 = make_iq1s_controls();

template <int NR>
void dot_iq1_s(int64_t n, const void* vw, const void* x, size_t xs, float* y, int64_t ys) {
  const auto* w = static_cast<const BlockIQ1_S*>(vw);
  const int64_t nb = n / kQKK;
  const BlockQ8_K* a[NR];
  __m256 acc[NR];
  for (int r = 0; r < NR; ++r) {
    a[r] = row_of<BlockQ8_K>(x, xs, r);
    acc[r] = _mm256_setzero_ps();
  }
  const __m512i level = load64(kCtl1.level.b);
  constexpr __mmask64 kEven = 0x5555555555555555ULL;
  for (int64_t i = 0; i < nb; ++i) {
    const BlockIQ1_S& b = w[i];
    // Per sub-block, as the low byte of word ib: the level table's offset (1, or 4 when delta
    // is -1) and the scale 2s + 1.
    const __m128i qw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qh));
    const __m512i offs = _mm512_castsi128_si512(
        _mm_add_epi16(_mm_set1_epi16(1), _mm_mullo_epi16(_mm_srli_epi16(qw, 15), _mm_set1_epi16(3))));
    const __m512i ls = _mm512_castsi128_si512(
        _mm_or_si128(_mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(qw, 12), _mm_set1_epi16(7)), 1), _mm_set1_epi16(1)));
    __m512i sumi[NR];
    for (int r = 0; r < NR; ++r) sumi[r] = _mm512_setzero_si512();
    for (int m = 0; m < 4; ++m) {
      auto row = [&](int k) {
        const int ib = 2 * m + k / 4, kk = k % 4;
        return static_cast<long long>(kIQ1SGrid[grid_index<kIQ1SGridBits, 3>(b.qs[4 * ib + kk], b.qh[ib] >> (3 * kk))]);
      };
      const __m512i g = _mm512_set_epi64(row(7), row(6), row(5), row(4), row(3), row(2), row(1), row(0));
      const __m512i t = _mm512_add_epi8(g, _mm512_permutexvar_epi8(load64(kCtl1.base[m].b), offs));
      const __m512i lv = _mm512_shuffle_epi8(level, t);
      const __m512i mag = _mm512_abs_epi8(lv);
      const __mmask64 neg = _mm512_movepi8_mask(lv);
      const __m512i sc = _mm512_maskz_permutexvar_epi8(kEven, load64(kCtl1.scale[m].b), ls);
      for (int r = 0; r < NR; ++r) {
        const __m512i av = _mm512_loadu_si512(a[r][i].qs + 64 * m);
        const __m512i as = _mm512_mask_sub_epi8(av, neg, _mm512_setzero_si512(), av);
        sumi[r] = _mm512_dpwssd_epi32(sumi[r], _mm512_maddubs_epi16(mag, as), sc);
      }
    }
    const float d = f16(b.d) * 0.125f;
    for (int r = 0; r < NR; ++r) {
      const __m256i s8 = _mm256_add_epi32(_mm512_castsi512_si256(sumi[r]), _mm512_extracti64x4_epi64(sumi[r], 1));
      acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(a[r][i].d * d), _mm256_cvtepi32_ps(s8), acc[r]);
    }
  }
  for (int r = 0; r < NR; ++r) y[r * ys] = hsum(acc[r]);
}

// IQ1_M: as IQ1_S, with a delta sign per group of 8 (bit 3 of the group's qh nibble) and two
// 3-bit scales per sub-block (one per 16 elements).
struct IQ1MControls {
  Bytes64 qh[4];  // zmm m: qword q <- the qh byte holding the nibble of sub-block 2m + q / 4, group q % 4
  Bytes64 bit;    // qword q: the delta bit of that nibble (0x08 in a low nibble, 0x80 in a high one)
};
constexpr IQ1MControls make_iq1m_controls() {
  IQ1MControls c{};
  for (int e = 0; e < 64; ++e) {
    const int q = e / 8;
    for (int m = 0; m < 4; ++m) c.qh[m].b[e] = static_cast<uint8_t>(2 * (2 * m + q / 4) + (q % 4) / 2);
    c.bit.b[e] = q % 2 ? 0x80 : 0x08;
  }
  return c;
}
constexpr IQ1MControls kCtlM = make_iq1m_controls();

template <int NR>
void dot_iq1_m(int64_t n, const void* vw, const void* x, size_t xs, float* y, int64_t ys) {
  const auto* w = static_cast<const BlockIQ1_M*>(vw);
  const int64_t nb = n / kQKK;
  const BlockQ8_K* a[NR];
  __m256 acc[NR];
  for (int r = 0; r < NR; ++r) {
    a[r] = row_of<BlockQ8_K>(x, xs, r);
    acc[r] = _mm256_setzero_ps();
  }
  const __m512i level = load64(kCtl1.level.b), c_bit = load64(kCtlM.bit.b);
  const __m512i one = _mm512_set1_epi8(1), four = _mm512_set1_epi8(4);
  // words 8j..8j+7: scale j of the zmm's four (16 elements each) at bits 3j..3j+2 of its uint16.
  const __m512i sc_shift = _mm512_set_epi64(0x0009000900090009, 0x0009000900090009, 0x0006000600060006,
                                            0x0006000600060006, 0x0003000300030003, 0x0003000300030003, 0, 0);
  for (int64_t i = 0; i < nb; ++i) {
    const BlockIQ1_M& b = w[i];
    const __m512i qh = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qh)));
    __m512i sumi[NR];
    for (int r = 0; r < NR; ++r) sumi[r] = _mm512_setzero_si512();
    for (int m = 0; m < 4; ++m) {
      auto row = [&](int k) {
        const int ib = 2 * m + k / 4, kk = k % 4;
        const uint32_t h = b.qh[2 * ib] | uint32_t{b.qh[2 * ib + 1]} << 8;
        return static_cast<long long>(kIQ1SGrid[grid_index<kIQ1SGridBits, 3>(b.qs[4 * ib + kk], h >> (4 * kk))]);
      };
      const __m512i g = _mm512_set_epi64(row(7), row(6), row(5), row(4), row(3), row(2), row(1), row(0));
      const __mmask64 dneg = _mm512_test_epi8_mask(_mm512_permutexvar_epi8(load64(kCtlM.qh[m].b), qh), c_bit);
      const __m512i lv = _mm512_shuffle_epi8(level, _mm512_add_epi8(g, _mm512_mask_blend_epi8(dneg, one, four)));
      const __m512i mag = _mm512_abs_epi8(lv);
      const __mmask64 neg = _mm512_movepi8_mask(lv);
      uint16_t scw;
      std::memcpy(&scw, b.scales + 2 * m, 2);
      const __m512i s3 = _mm512_and_si512(_mm512_srlv_epi16(_mm512_set1_epi16(static_cast<int16_t>(scw)), sc_shift),
                                          _mm512_set1_epi16(7));
      const __m512i sc = _mm512_or_si512(_mm512_add_epi16(s3, s3), _mm512_set1_epi16(1));
      for (int r = 0; r < NR; ++r) {
        const __m512i av = _mm512_loadu_si512(a[r][i].qs + 64 * m);
        const __m512i as = _mm512_mask_sub_epi8(av, neg, _mm512_setzero_si512(), av);
        sumi[r] = _mm512_dpwssd_epi32(sumi[r], _mm512_maddubs_epi16(mag, as), sc);
      }
    }
    const float d = avx2_shared::DecIQ1_M::d(b) * 0.125f;
    for (int r = 0; r < NR; ++r) {
      const __m256i s8 = _mm256_add_epi32(_mm512_castsi512_si256(sumi[r]), _mm512_extracti64x4_epi64(sumi[r], 1));
      acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(a[r][i].d * d), _mm256_cvtepi32_ps(s8), acc[r]);
    }
  }
  for (int r = 0; r < NR; ++r) y[r * ys] = hsum(acc[r]);
}

// IQ2_S: a grid of 1024 rows, loaded one row at a time as in IQ1_S; its sign bits are stored
// (one per element), so each pair of sub-blocks' 64 bits is one mask load. Scales: 4-bit, per 16
// elements (4 word groups; IQ3_S: per 32, 2 groups).
template <int NR, class Block, class Rows, class Scales, class Signs>
void dot_rows(int64_t n, const void* vw, const void* x, size_t xs, float* y, int64_t ys, float mult, Rows rows,
              Scales scales, Signs signs) {
  const auto* w = static_cast<const Block*>(vw);
  const int64_t nb = n / kQKK;
  const BlockQ8_K* a[NR];
  __m256 acc[NR];
  for (int r = 0; r < NR; ++r) {
    a[r] = row_of<BlockQ8_K>(x, xs, r);
    acc[r] = _mm256_setzero_ps();
  }
  for (int64_t i = 0; i < nb; ++i) {
    const Block& b = w[i];
    __m512i sumi[NR];
    for (int r = 0; r < NR; ++r) sumi[r] = _mm512_setzero_si512();
    for (int m = 0; m < 4; ++m) {
      const __m512i mag = rows(b, m);
      const __mmask64 neg = signs(b, m);
      const __m512i sc = scales(b, m);
      for (int r = 0; r < NR; ++r) {
        const __m512i av = _mm512_loadu_si512(a[r][i].qs + 64 * m);
        const __m512i as = _mm512_mask_sub_epi8(av, neg, _mm512_setzero_si512(), av);
        sumi[r] = _mm512_dpwssd_epi32(sumi[r], _mm512_maddubs_epi16(mag, as), sc);
      }
    }
    const float d = f16(b.d) * mult;
    for (int r = 0; r < NR; ++r) {
      const __m256i s8 = _mm256_add_epi32(_mm512_castsi512_si256(sumi[r]), _mm512_extracti64x4_epi64(sumi[r], 1));
      acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(a[r][i].d * d), _mm256_cvtepi32_ps(s8), acc[r]);
    }
  }
  for (int r = 0; r < NR; ++r) y[r * ys] = hsum(acc[r]);
}

// 4-bit scales 2s + 1 from a uint16 v: word group j (of 32 / groups words) takes bits 4j..4j+3.
inline __m512i scales_from_nibbles(uint32_t v, __m512i shifts) {
  const __m512i s4 =
      _mm512_and_si512(_mm512_srlv_epi16(_mm512_set1_epi16(static_cast<int16_t>(v)), shifts), _mm512_set1_epi16(0xF));
  return _mm512_or_si512(_mm512_add_epi16(s4, s4), _mm512_set1_epi16(1));
}
inline __mmask64 mask_at(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

template <int NR>
void dot_iq2_s(int64_t n, const void* vw, const void* x, size_t xs, float* y, int64_t ys) {
  const __m512i shifts = _mm512_set_epi64(0x000C000C000C000C, 0x000C000C000C000C, 0x0008000800080008,
                                          0x0008000800080008, 0x0004000400040004, 0x0004000400040004, 0, 0);
  dot_rows<NR, BlockIQ2_S>(
      n, vw, x, xs, y, ys, 0.125f,
      [](const BlockIQ2_S& b, int m) {
        auto row = [&](int k) {
          const int ib = 2 * m + k / 4, kk = k % 4;
          return static_cast<long long>(
              kIQ2SGrid[grid_index<kIQ2SGridBits, 2>(b.qs[4 * ib + kk], b.qh[ib] >> (2 * kk))]);
        };
        return _mm512_set_epi64(row(7), row(6), row(5), row(4), row(3), row(2), row(1), row(0));
      },
      [shifts](const BlockIQ2_S& b, int m) {
        return scales_from_nibbles(b.scales[2 * m] | uint32_t{b.scales[2 * m + 1]} << 8, shifts);
      },
      [](const BlockIQ2_S& b, int m) { return mask_at(b.qs + kQKK / 8 + 8 * m); });
}

// IQ2_XS: 512 grid rows of the IQ2_XXS levels, as 2-bit codes in 16 registers; each uint16
// of the block holds a 9-bit index (its 9th bit picks between two 256-entry lookups as a mask)
// and a 7-bit sign pattern, whose parity byte comes from the 128-byte table.
struct alignas(64) IQ2XSCodes {
  uint16_t c[512];
};
IQ2XSCodes make_iq2xs_codes() {
  IQ2XSCodes t{};
  for (int e = 0; e < 512; ++e)
    for (int j = 0; j < 8; ++j) {
      const auto v = static_cast<uint8_t>(kIQ2XSGrid[e] >> (8 * j));
      const int code = v == kIQ2XXSLevels[0] ? 0 : v == kIQ2XXSLevels[1] ? 1 : 2;
      t.c[e] |= static_cast<uint16_t>(code << (2 * j));
    }
  return t;
}
const IQ2XSCodes& iq2xs_codes() {
  static const IQ2XSCodes t = make_iq2xs_codes();
  return t;
}

template <int NR>
void dot_iq2_xs(int64_t n, const void* vw, const void* x, size_t xs, float* y, int64_t ys) {
  const auto* w = static_cast<const BlockIQ2_XS*>(vw);
  const int64_t nb = n / kQKK;
  const BlockQ8_K* a[NR];
  __m256 acc[NR];
  for (int r = 0; r < NR; ++r) {
    a[r] = row_of<BlockQ8_K>(x, xs, r);
    acc[r] = _mm256_setzero_ps();
  }
  const IQ2XSCodes& tab = iq2xs_codes();
  __m512i codes_tab[16];
  for (int t = 0; t < 16; ++t) codes_tab[t] = load64(tab.c + 32 * t);
  const __m512i sg0 = load64(kSigns.b), sg1 = load64(kSigns.b + 64);
  const __m512i c_shifts = load64(kCtl.shifts.b), c_mag = load64(kCtl.mag.b);
  const __m512i sc_shifts = _mm512_set_epi64(0x000C000C000C000C, 0x000C000C000C000C, 0x0008000800080008,
                                             0x0008000800080008, 0x0004000400040004, 0x0004000400040004, 0, 0);
  const __m512i bit8 = _mm512_set1_epi16(0x100);
  for (int64_t i = 0; i < nb; ++i) {
    const BlockIQ2_XS& b = w[i];
    // Word w: sub-block w / 4, group w % 4 (the permutes read its low 6 bits, lookup256 bits 6, 7).
    const __m512i q = _mm512_loadu_si512(b.qs);
    const __m512i codes =
        _mm512_mask_blend_epi16(_mm512_test_epi16_mask(q, bit8), lookup256(codes_tab, q), lookup256(codes_tab + 8, q));
    // Sign patterns with parity, one byte per word: qword m is the 64-bit mask of zmm m.
    alignas(32) uint64_t neg_bits[4];
    _mm256_store_si256(reinterpret_cast<__m256i*>(neg_bits),
                       _mm512_cvtepi16_epi8(_mm512_permutex2var_epi8(sg0, _mm512_srli_epi16(q, 9), sg1)));
    __m512i sumi[NR];
    for (int r = 0; r < NR; ++r) sumi[r] = _mm512_setzero_si512();
    for (int m = 0; m < 4; ++m) {
      const __m512i cq = _mm512_permutexvar_epi8(load64(kCtl.pairs2[m].b), codes);
      const __m512i mag = _mm512_permutexvar_epi8(_mm512_multishift_epi64_epi8(c_shifts, cq), c_mag);
      const __mmask64 neg = _load_mask64(reinterpret_cast<__mmask64*>(neg_bits + m));
      const __m512i sc = scales_from_nibbles(b.scales[2 * m] | uint32_t{b.scales[2 * m + 1]} << 8, sc_shifts);
      for (int r = 0; r < NR; ++r) {
        const __m512i av = _mm512_loadu_si512(a[r][i].qs + 64 * m);
        const __m512i as = _mm512_mask_sub_epi8(av, neg, _mm512_setzero_si512(), av);
        sumi[r] = _mm512_dpwssd_epi32(sumi[r], _mm512_maddubs_epi16(mag, as), sc);
      }
    }
    const float d = f16(b.d) * 0.125f;
    for (int r = 0; r < NR; ++r) {
      const __m256i s8 = _mm256_add_epi32(_mm512_castsi512_si256(sumi[r]), _mm512_extracti64x4_epi64(sumi[r], 1));
      acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(a[r][i].d * d), _mm256_cvtepi32_ps(s8), acc[r]);
    }
  }
  for (int r = 0; r < NR; ++r) y[r * ys] = hsum(acc[r]);
}

// IQ3_S: 512 grid rows of 4 bytes from the levels 1, 3, ..., 15, held as 4 three-bit codes in
// 16 registers; an index's 9th bit (qh) selects between two 256-entry lookups as a mask, as
// stored. Signs are stored bits (mask loads), scales 4-bit per 32.
struct alignas(64) IQ3SCodes {
  uint16_t c[512];
};
IQ3SCodes make_iq3s_codes() {
  IQ3SCodes t{};
  for (int e = 0; e < 512; ++e)
    for (int j = 0; j < 4; ++j) {
      const auto v = static_cast<uint8_t>(kIQ3SGrid[e] >> (8 * j));
      t.c[e] |= static_cast<uint16_t>(((v >> 1) & 7) << (3 * j));  // v = 2 code + 1
    }
  return t;
}
const IQ3SCodes& iq3s_codes() {
  static const IQ3SCodes t = make_iq3s_codes();
  return t;
}
struct IQ3SControls {
  Bytes64 mag;  // byte i -> level 2 (i & 7) + 1
};
constexpr IQ3SControls make_iq3s_controls() {
  IQ3SControls c{};
  for (int e = 0; e < 64; ++e) c.mag.b[e] = static_cast<uint8_t>(2 * (e & 7) + 1);
  return c;
}
constexpr IQ3SControls kCtl3S = make_iq3s_controls();

template <int NR>
void dot_iq3_s(int64_t n, const void* vw, const void* x, size_t xs, float* y, int64_t ys) {
  const auto* w = static_cast<const BlockIQ3_S*>(vw);
  const int64_t nb = n / kQKK;
  const BlockQ8_K* a[NR];
  __m256 acc[NR];
  for (int r = 0; r < NR; ++r) {
    a[r] = row_of<BlockQ8_K>(x, xs, r);
    acc[r] = _mm256_setzero_ps();
  }
  const IQ3SCodes& tab = iq3s_codes();
  __m512i codes_tab[16];
  for (int t = 0; t < 16; ++t) codes_tab[t] = load64(tab.c + 32 * t);
  const __m512i c_shifts = load64(kCtl3.shifts.b), c_mag = load64(kCtl3S.mag.b);
  const __m512i sc_shifts =
      _mm512_set_epi64(0x0004000400040004, 0x0004000400040004, 0x0004000400040004, 0x0004000400040004, 0, 0, 0, 0);
  for (int64_t i = 0; i < nb; ++i) {
    const BlockIQ3_S& b = w[i];
    // Word w of half h: index 32h + w (sub-block 4h + w / 8, group w % 8); its 9th bit is bit w
    // of qh bytes 4h..4h+3.
    auto codes_of = [&](int h) {
      const __m512i idx = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * h)));
      uint32_t hb;
      std::memcpy(&hb, b.qh + 4 * h, 4);
      return _mm512_mask_blend_epi16(hb, lookup256(codes_tab, idx), lookup256(codes_tab + 8, idx));
    };
    const __m512i codes[2] = {codes_of(0), codes_of(1)};
    __m512i sumi[NR];
    for (int r = 0; r < NR; ++r) sumi[r] = _mm512_setzero_si512();
    for (int m = 0; m < 4; ++m) {
      const __m512i cd = _mm512_permutexvar_epi8(load64(kCtl3.rows[m % 2].b), codes[m / 2]);
      const __m512i mag = _mm512_permutexvar_epi8(_mm512_multishift_epi64_epi8(c_shifts, cd), c_mag);
      const __mmask64 neg = mask_at(b.signs + 8 * m);
      const __m512i sc = scales_from_nibbles(b.scales[m], sc_shifts);
      for (int r = 0; r < NR; ++r) {
        const __m512i av = _mm512_loadu_si512(a[r][i].qs + 64 * m);
        const __m512i as = _mm512_mask_sub_epi8(av, neg, _mm512_setzero_si512(), av);
        sumi[r] = _mm512_dpwssd_epi32(sumi[r], _mm512_maddubs_epi16(mag, as), sc);
      }
    }
    const float d = f16(b.d);
    for (int r = 0; r < NR; ++r) {
      const __m256i s8 = _mm256_add_epi32(_mm512_castsi512_si256(sumi[r]), _mm512_extracti64x4_epi64(sumi[r], 1));
      acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(a[r][i].d * d), _mm256_cvtepi32_ps(s8), acc[r]);
    }
  }
  for (int r = 0; r < NR; ++r) y[r * ys] = hsum(acc[r]);
}

OWL_NR_KERNEL(KIQ2_XXS, dot_iq2_xxs<NR>)
OWL_NR_KERNEL(KIQ1_S, dot_iq1_s<NR>)
OWL_NR_KERNEL(KIQ3_XXS, dot_iq3_xxs<NR>)
OWL_NR_KERNEL(KIQ1_M, dot_iq1_m<NR>)
OWL_NR_KERNEL(KIQ2_S, dot_iq2_s<NR>)
OWL_NR_KERNEL(KIQ3_S, dot_iq3_s<NR>)
OWL_NR_KERNEL(KIQ2_XS, dot_iq2_xs<NR>)

}  // namespace

DotFn dot_fn_avx512vbmi(DType t) {
  switch (t) {
    case DType::IQ2_XXS:
      return by_nr<KIQ2_XXS>;
    case DType::IQ1_S:
      return by_nr<KIQ1_S>;
    case DType::IQ3_XXS:
      return by_nr<KIQ3_XXS>;
    case DType::IQ1_M:
      return by_nr<KIQ1_M>;
    case DType::IQ2_S:
      return by_nr<KIQ2_S>;
    case DType::IQ2_XS:
      return by_nr<KIQ2_XS>;
    case DType::IQ3_S:
      return by_nr<KIQ3_S>;
    default:
      return nullptr;
  }
}

}  // namespace owl::kernels
