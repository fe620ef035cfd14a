// Prefill kernels on 512-bit registers for the packed layouts of repack.h (compiled with AVX-512
// F/BW/VL/VNNI; chosen only after a CPUID check). The layout stays the 8-row groups: one zmm
// register holds the same 4 elements of two neighbouring groups (16 weight rows), the lower half
// from group g and the upper half from group g + 1, so each activation broadcast and each
// vpdpbusd serves 16 weight rows where the 256-bit kernels serve 8. Up to 8 activation rows share
// every weight register (the 32 zmm registers hold their sums). Sub-blocks are summed one at a
// time so that one partial sum per activation row is live. The activations come in the wide
// layout of repack.h (kWideM rows interleaved): every broadcast is one pointer plus a constant.
// Integer sums are exact and every row's block scales apply in the same float operations and
// order as in the 256-bit kernels (repack_simd.h), so the results equal theirs bit for bit.
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 reports the deliberately undefined pass-through operand inside its own 512-bit
// intrinsics (_mm512_undefined_*) as maybe uninitialised once they are inlined (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstring>

#include "kernels/repack.h"
#include "kernels/repack_simd.h"
#include "kernels/vec_dot.h"

namespace owl::kernels {

namespace {

// 32 bytes of group g (at p) in the lower half, those of group g + 1 (gb bytes on) in the upper.
inline __m512i load_pair(const uint8_t* p, size_t gb) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(load32(p)), load32(p + gb), 1);
}
// 16 bytes of each group, one per 128-bit half of a 256-bit register.
inline __m256i load_pair16(const uint8_t* p, size_t gb) {
  return _mm256_inserti128_si256(_mm256_castsi128_si256(load16(p)), load16(p + gb), 1);
}
// The 8 fp16 factors of each group as 16 floats (rows 0-7, then 8-15).
inline __m512 fp16x16(const uint8_t* p, size_t gb) { return _mm512_cvtph_ps(load_pair16(p, gb)); }
// 4 activation bytes in every 32-bit lane.
inline __m512i bcast4z(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}
// Byte k of every 32-bit lane, zero-extended.
inline __m512i lane_byte(__m512i v, int k) {
  return k == 3 ? _mm512_srli_epi32(v, 24) : _mm512_and_si512(_mm512_srli_epi32(v, 8 * k), _mm512_set1_epi32(0xFF));
}

// The wide activation layout (repack.h), one interleaved block: row m's 4 bytes of step g, its
// scale, and its Q8_0 sum term or Q8_K block sums.
constexpr size_t kXq = kWideM * 4;  // bytes per step of 4 elements
inline const int8_t* xq(const uint8_t* xb, int g, int m) {
  return reinterpret_cast<const int8_t*>(xb + g * kXq + 4 * m);
}
inline __m512 xd(const uint8_t* xb, int steps, int m) {
  float d;
  std::memcpy(&d, xb + steps * kXq + 4 * m, 4);
  return _mm512_set1_ps(d);
}
inline __m512i xsum(const uint8_t* xb, int m) {  // Q8_0: -128 * the quant sum of row m
  int32_t s;
  std::memcpy(&s, xb + 8 * kXq + kWideM * 4 + 4 * m, 4);
  return _mm512_set1_epi32(s);
}
// Row m (< 4) of step g in every lane, from the 16 bytes of rows 0-3 broadcast to each 128-bit
// lane (rows4) by a lane shuffle (Shuffle), else (or m >= 4) broadcast from memory. On Zen 5 a
// broadcast from memory is a load, and loads (2 per cycle) bound the Q8_0 kernel before its
// vpdpbusd do: taking half of the rows from one load and shuffles, which run on other pipes than
// vpdpbusd there, measured 1.15-1.25x. On Intel cores (Sapphire Rapids) a 512-bit vpshufd takes
// port 5, one of vpdpbusd's two ports, and the broadcasts are 1.08-1.16x faster (min CPU time of
// 10 runs of BM_MatmulShape/8/1/512/1/1, three alternations: 11.2-11.7 ms -> 9.7-10.8 ms). The
// other kernels spend those ports on unpacking their levels, and shuffles made them slower.
inline __m512i rows4(const uint8_t* xb, int g) { return _mm512_broadcast_i32x4(load16(xb + g * kXq)); }
template <int K>
inline __m512i lane_of(__m512i v) {
  return _mm512_shuffle_epi32(v, static_cast<_MM_PERM_ENUM>(K * 0x55));
}
template <bool Shuffle>
inline __m512i xbcast(const uint8_t* xb, __m512i r03, int g, int m) {
  if constexpr (!Shuffle) return bcast4z(xq(xb, g, m));
  switch (m) {
    case 0:
      return lane_of<0>(r03);
    case 1:
      return lane_of<1>(r03);
    case 2:
      return lane_of<2>(r03);
    case 3:
      return lane_of<3>(r03);
    default:
      return bcast4z(xq(xb, g, m));
  }
}
inline const int16_t* xbsums(const uint8_t* xb, int m) {  // Q8_K
  return reinterpret_cast<const int16_t*>(xb + 64 * kXq + kWideM * 4 + 32 * m);
}

// Writes M rows of the first `valid` (1..16) results, ld floats apart.
template <int M>
inline void store_wide_rows(const __m512 acc[M], float* y, int64_t ld, int valid) {
  const auto mask = static_cast<__mmask16>((1u << valid) - 1);
  for (int m = 0; m < M; ++m) _mm512_mask_storeu_ps(y + m * ld, mask, acc[m]);
}

// Q8_0 x Q8_0: the weights as unsigned bytes w + 128 (one xor), and the 128 * activation sum
// that adds taken off again (the sums come with the activations). Shuffle: see xbcast.
template <int M, bool Shuffle>
void wide_q8_0(int64_t in, const uint8_t* grp, size_t gb, const uint8_t* xw, float* y, int64_t ld, int valid) {
  const int64_t nb = in / kQK;
  const size_t xbytes = wide_act_block_bytes(DType::Q8_0);
  const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
  __m512 acc[M];
  for (int m = 0; m < M; ++m) acc[m] = _mm512_setzero_ps();
  constexpr size_t kBytes = kPackedBytes<BlockQ8_0>;
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t* b = grp + i * kBytes;
    const uint8_t* xb = xw + i * xbytes;
    __m512i isum[M];
    for (int m = 0; m < M; ++m) isum[m] = xsum(xb, m);
    for (int g = 0; g < 8; ++g) {
      const __m512i w = _mm512_xor_si512(load_pair(b + 16 + 32 * g, gb), bias);
      const __m512i r03 = Shuffle ? rows4(xb, g) : __m512i{};
      for (int m = 0; m < M; ++m) isum[m] = _mm512_dpbusd_epi32(isum[m], w, xbcast<Shuffle>(xb, r03, g, m));
    }
    const __m512 d = fp16x16(b, gb);
    for (int m = 0; m < M; ++m)
      acc[m] = _mm512_fmadd_ps(_mm512_mul_ps(d, xd(xb, 8, m)), _mm512_cvtepi32_ps(isum[m]), acc[m]);
  }
  store_wide_rows<M>(acc, y, ld, valid);
}

// Q5_0 x Q8_0: unsigned 5-bit levels (as q5_0_levels) times the activations, minus 16 * the
// activation sums.
template <int M>
void wide_q5_0(int64_t in, const uint8_t* grp, size_t gb, const uint8_t* xw, float* y, int64_t ld, int valid) {
  const int64_t nb = in / kQK;
  const size_t xbytes = wide_act_block_bytes(DType::Q8_0);
  const __m512i m4 = _mm512_set1_epi8(0x0F), m10 = _mm512_set1_epi8(0x10);
  __m512 acc[M];
  for (int m = 0; m < M; ++m) acc[m] = _mm512_setzero_ps();
  constexpr size_t kBytes = kPackedBytes<BlockQ5_0>;
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t* b = grp + i * kBytes;
    const uint8_t* xb = xw + i * xbytes;
    const __m512i hb = load_pair(b + 16, gb);
    __m512i isum[M];  // -16 * the sums: the layout's -128 * sum shifted right by 3, exactly
    for (int m = 0; m < M; ++m) isum[m] = _mm512_srai_epi32(xsum(xb, m), 3);
    for (int g = 0; g < 4; ++g) {
      const __m512i q = load_pair(b + 48 + 32 * g, gb);
      const __m512i lo = _mm512_or_si512(_mm512_and_si512(q, m4), _mm512_and_si512(_mm512_slli_epi16(hb, 4 - g), m10));
      const __m512i hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(q, 4), m4),
                                         _mm512_and_si512(_mm512_srli_epi16(hb, g), m10));
      for (int m = 0; m < M; ++m)
        isum[m] =
            _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(isum[m], lo, bcast4z(xq(xb, g, m))), hi, bcast4z(xq(xb, 4 + g, m)));
    }
    const __m512 d = fp16x16(b, gb);
    for (int m = 0; m < M; ++m)
      acc[m] = _mm512_fmadd_ps(_mm512_mul_ps(d, xd(xb, 8, m)), _mm512_cvtepi32_ps(isum[m]), acc[m]);
  }
  store_wide_rows<M>(acc, y, ld, valid);
}

// The 6-bit scales and mins of a packed Q4_K block for 16 rows (see q4_k_scales).
struct WideQ4KScales {
  __m512i sc_lo, sc_hi, mn_lo, mn_hi;
};
inline WideQ4KScales wide_q4_k_scales(const uint8_t* p, size_t gb) {
  const __m512i m6 = _mm512_set1_epi8(0x3F), m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
  const __m512i a = load_pair(p, gb), b = load_pair(p + 32, gb), c = load_pair(p + 64, gb);
  return {
      _mm512_and_si512(a, m6), _mm512_or_si512(_mm512_and_si512(c, m4), _mm512_and_si512(_mm512_srli_epi16(a, 2), m30)),
      _mm512_and_si512(b, m6),
      _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(c, 4), m4), _mm512_and_si512(_mm512_srli_epi16(b, 2), m30))};
}

// Each lane's min bytes (m0 m1 m2 m3 | m4 m5 m6 m7) as int16 pairs (m0, m2), (m1, m3), (m4, m6),
// (m5, m7): what the mins term multiplies by the activation sums; the same for every activation row.
struct WideQ4KMins {
  __m512i m02, m13, m46, m57;
};
inline WideQ4KMins wide_q4_k_min_pairs(const WideQ4KScales& s) {
  const __m512i low = _mm512_set1_epi16(0x00FF);
  return {_mm512_and_si512(s.mn_lo, low), _mm512_srli_epi16(s.mn_lo, 8), _mm512_and_si512(s.mn_hi, low),
          _mm512_srli_epi16(s.mn_hi, 8)};
}
// Q4_K mins term of one block for 16 rows and one activation row (see q4_k_mins).
inline __m512i wide_q4_k_mins(const WideQ4KMins& mn, const int16_t* bsums) {
  const __m128i bs = _mm_hadd_epi16(load16(bsums), load16(bsums + 8));
  const __m128i order = _mm_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15);
  const __m512i pairs = _mm512_broadcast_i32x4(_mm_shuffle_epi8(bs, order));
  __m512i r = _mm512_madd_epi16(mn.m02, _mm512_shuffle_epi32(pairs, static_cast<_MM_PERM_ENUM>(0x00)));
  r = _mm512_add_epi32(r, _mm512_madd_epi16(mn.m13, _mm512_shuffle_epi32(pairs, static_cast<_MM_PERM_ENUM>(0xAA))));
  r = _mm512_add_epi32(r, _mm512_madd_epi16(mn.m46, _mm512_shuffle_epi32(pairs, static_cast<_MM_PERM_ENUM>(0x55))));
  return _mm512_add_epi32(r, _mm512_madd_epi16(mn.m57, _mm512_shuffle_epi32(pairs, static_cast<_MM_PERM_ENUM>(0xFF))));
}

template <int M>
void wide_q4_k(int64_t in, const uint8_t* grp, size_t gb, const uint8_t* xw, float* y, int64_t ld, int valid) {
  constexpr size_t kBytes = kPackedBytes<BlockQ4_K>;
  const int64_t nb = in / kQKK;
  const size_t xbytes = wide_act_block_bytes(DType::Q8_K);
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  __m512 acc[M];
  for (int m = 0; m < M; ++m) acc[m] = _mm512_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t* b = grp + i * kBytes;
    const WideQ4KScales s = wide_q4_k_scales(b + 32, gb);
    const uint8_t* qs = b + 128;
    const uint8_t* xb = xw + i * xbytes;
    __m512i isum[M];
    for (int m = 0; m < M; ++m) isum[m] = _mm512_setzero_si512();
    for (int j = 0; j < 4; ++j) {
      const __m512i sc = j < 2 ? s.sc_lo : s.sc_hi;
      for (int half = 0; half < 2; ++half) {  // low nibbles: sub-block 2j, high nibbles: 2j + 1
        // The sub-block's scale (6 bits, zero-extended in each 32-bit lane) multiplies the sums of
        // 4 steps at a time with one vpdpwssd: 16 products of a level (<= 15) and an activation
        // (|x| <= 128) stay within +-30720, so each 32-bit sum is its own sign-extended low 16
        // bits and the pair product adds exactly p * scale (+ 0 * the upper half). That is the
        // same integer as vpmulld + vpaddd over 8 steps, in 1 uop where those take 3 (vpmulld is
        // 2 uops on Intel cores).
        const __m512i scale = lane_byte(sc, 2 * (j % 2) + half);
        for (int g4 = 0; g4 < 8; g4 += 4) {
          __m512i p[M];
          for (int m = 0; m < M; ++m) p[m] = _mm512_setzero_si512();
#pragma GCC unroll 4
          for (int g = g4; g < g4 + 4; ++g) {
            const __m512i q = load_pair(qs + (j * 8 + g) * 32, gb);
            const __m512i v = half ? _mm512_and_si512(_mm512_srli_epi16(q, 4), m4) : _mm512_and_si512(q, m4);
            for (int m = 0; m < M; ++m) p[m] = _mm512_dpbusd_epi32(p[m], v, bcast4z(xq(xb, 16 * j + 8 * half + g, m)));
          }
          for (int m = 0; m < M; ++m) isum[m] = _mm512_dpwssd_epi32(isum[m], p[m], scale);
        }
      }
    }
    const WideQ4KMins mn = wide_q4_k_min_pairs(s);
    const __m512 d = fp16x16(b, gb), dmin = fp16x16(b + 16, gb);
    for (int m = 0; m < M; ++m) {
      const __m512i ms = wide_q4_k_mins(mn, xbsums(xb, m));
      const __m512 da = xd(xb, 64, m);
      acc[m] = _mm512_fmadd_ps(_mm512_mul_ps(d, da), _mm512_cvtepi32_ps(isum[m]), acc[m]);
      acc[m] = _mm512_fnmadd_ps(_mm512_mul_ps(dmin, da), _mm512_cvtepi32_ps(ms), acc[m]);
    }
  }
  store_wide_rows<M>(acc, y, ld, valid);
}

// Lane r of rows 0-7 | 8-15: scale 2k | scale 2k + 1 << 16 of that row (signed), from the
// [8 rows][2] s8 tables of both groups; q6_k_scale_of takes one half, sign-extended.
inline __m512i wide_q6_k_pairs(const uint8_t* p, size_t gb) { return _mm512_cvtepi8_epi16(load_pair16(p, gb)); }
inline __m512i wide_q6_k_scale_of(__m512i pairs, int b) {
  return b ? _mm512_srai_epi32(pairs, 16) : _mm512_srai_epi32(_mm512_slli_epi32(pairs, 16), 16);
}

// The chunk loop stays rolled (pragma): GCC -O3 unrolls it fully and then spills the 8 rows'
// sums, which made the kernel 4x slower.
template <int M>
void wide_q6_k(int64_t in, const uint8_t* grp, size_t gb, const uint8_t* xw, float* y, int64_t ld, int valid) {
  constexpr size_t kBytes = kPackedBytes<BlockQ6_K>;
  const int64_t nb = in / kQKK;
  const size_t xbytes = wide_act_block_bytes(DType::Q8_K);
  const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
  __m512 acc[M];
  for (int m = 0; m < M; ++m) acc[m] = _mm512_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t* b = grp + i * kBytes;
    const uint8_t* sc = b + 16;
    const uint8_t* ql = b + 144;
    const uint8_t* qh = b + 1168;
    const uint8_t* xb = xw + i * xbytes;
    __m512i isum[M];
    for (int m = 0; m < M; ++m) isum[m] = _mm512_setzero_si512();
    // The -32 offset of every level: -32 * sum over sub-blocks of scale * activation sum.
    for (int k = 0; k < 8; ++k) {
      const __m512i s16 = wide_q6_k_pairs(sc + 16 * k, gb);
      for (int m = 0; m < M; ++m) {
        int32_t pair;
        std::memcpy(&pair, xbsums(xb, m) + 2 * k, 4);
        isum[m] = _mm512_add_epi32(isum[m], _mm512_madd_epi16(s16, _mm512_set1_epi32(pair)));
      }
    }
    for (int m = 0; m < M; ++m) isum[m] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(isum[m], 5));
#pragma GCC unroll 1
    for (int c = 0; c < 4; ++c) {
      for (int hh = 0; hh < 2; ++hh) {  // elements 64c + 16 hh .. + 16 (and + 32): sub-blocks 4c + hh, 4c + 2 + hh
        for (int part = 0; part < 2; ++part) {  // 0: the elements 64c + ..., 1: those 32 on
          const __m512i scale = wide_q6_k_scale_of(wide_q6_k_pairs(sc + 16 * (2 * c + part), gb), hh);
          __m512i p[M];
          for (int m = 0; m < M; ++m) p[m] = _mm512_setzero_si512();
          for (int h = 2 * hh; h < 2 * hh + 2; ++h) {
            const __m512i H = load_pair(qh + (c * 4 + h) * 32, gb);
            const __m512i L0 = load_pair(ql + (c * 8 + 2 * h) * 32, gb),
                          L1 = load_pair(ql + (c * 8 + 2 * h + 1) * 32, gb);
            // Levels as q6_k_levels: part 0 gives lo0, lo1; part 1 gives hi0, hi1.
            const __m512i v0 =
                part ? _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(L0, 4), m4),
                                       _mm512_and_si512(_mm512_slli_epi16(H, 2), m30))
                     : _mm512_or_si512(_mm512_and_si512(L0, m4), _mm512_and_si512(_mm512_slli_epi16(H, 4), m30));
            const __m512i v1 = part ? _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(L1, 4), m4),
                                                      _mm512_and_si512(_mm512_srli_epi16(H, 2), m30))
                                    : _mm512_or_si512(_mm512_and_si512(L1, m4), _mm512_and_si512(H, m30));
            const int g = 16 * c + 8 * part + 2 * h;  // elements 64c + 32 part + 8h ..
            for (int m = 0; m < M; ++m)
              p[m] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(p[m], v0, bcast4z(xq(xb, g, m))), v1,
                                         bcast4z(xq(xb, g + 1, m)));
          }
          for (int m = 0; m < M; ++m) isum[m] = _mm512_add_epi32(isum[m], _mm512_mullo_epi32(p[m], scale));
        }
      }
    }
    const __m512 d = fp16x16(b, gb);
    for (int m = 0; m < M; ++m)
      acc[m] = _mm512_fmadd_ps(_mm512_mul_ps(d, xd(xb, 64, m)), _mm512_cvtepi32_ps(isum[m]), acc[m]);
  }
  store_wide_rows<M>(acc, y, ld, valid);
}

// Runs Kernel<M> for m = 1..kWideM activation rows (the WidePackedFn signature).
template <template <int> class Kernel>
void wide_by_m(int64_t in, const uint8_t* grp, size_t gb, const uint8_t* xw, int m, float* y, int64_t ld, int valid) {
  switch (m) {
    case 1:
      return Kernel<1>::f(in, grp, gb, xw, y, ld, valid);
    case 2:
      return Kernel<2>::f(in, grp, gb, xw, y, ld, valid);
    case 3:
      return Kernel<3>::f(in, grp, gb, xw, y, ld, valid);
    case 4:
      return Kernel<4>::f(in, grp, gb, xw, y, ld, valid);
    case 5:
      return Kernel<5>::f(in, grp, gb, xw, y, ld, valid);
    case 6:
      return Kernel<6>::f(in, grp, gb, xw, y, ld, valid);
    case 7:
      return Kernel<7>::f(in, grp, gb, xw, y, ld, valid);
    default:
      return Kernel<8>::f(in, grp, gb, xw, y, ld, valid);
  }
}
static_assert(kWideM == 8, "wide_by_m covers 1..8 rows");

#define OWL_WIDE_GEMM(name, fn)                                                                             \
  template <int M>                                                                                          \
  struct name {                                                                                             \
    static void f(int64_t in, const uint8_t* g, size_t gb, const uint8_t* x, float* y, int64_t ld, int v) { \
      fn(in, g, gb, x, y, ld, v);                                                                           \
    }                                                                                                       \
  };
OWL_WIDE_GEMM(WideQ4_K, wide_q4_k<M>)
OWL_WIDE_GEMM(WideQ6_K, wide_q6_k<M>)
OWL_WIDE_GEMM(WideQ8_0Shuffle, (wide_q8_0<M, true>))
OWL_WIDE_GEMM(WideQ8_0, (wide_q8_0<M, false>))
OWL_WIDE_GEMM(WideQ5_0, wide_q5_0<M>)
#undef OWL_WIDE_GEMM

}  // namespace

WidePackedFn wide_packed_kernel_avx512vnni(DType t) { return wide_packed_kernel_avx512vnni(t, !cpu_is_intel()); }

WidePackedFn wide_packed_kernel_avx512vnni(DType t, bool shuffle) {
  switch (t) {
    case DType::Q4_K:
      return wide_by_m<WideQ4_K>;
    case DType::Q6_K:
      return wide_by_m<WideQ6_K>;
    case DType::Q8_0:
      return shuffle ? wide_by_m<WideQ8_0Shuffle> : wide_by_m<WideQ8_0>;
    case DType::Q5_0:
      return wide_by_m<WideQ5_0>;
    default:
      return nullptr;
  }
}

}  // namespace owl::kernels
