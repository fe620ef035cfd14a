// One query token's attention over a range of cached tokens (the decode kernel), written once
// for a vector type V and instantiated by ops_avx2.cpp (8 floats, 16 registers) and
// ops_avx512vnni.cpp (16 floats, 32 registers). Like repack_simd.h, everything here has internal
// linkage: each file compiles its own copy with its own instruction-set flags.
//
// Decode reads every cached K/V row once per step, so the kernel is built around the rows:
//  * a chunk of tokens is walked once for ALL the KV heads of the task (the rows are contiguous
//    within a page, so the walk streams), the next chunk's slice of each head prefetched while
//    the current one is computed;
//  * each key or value vector, converted from F16 in registers (no buffer round trip), feeds a
//    register tile of V::kTileQ query heads of its group;
//  * Q8_0/Q4_0 rows are read in place too: their integers are converted in registers, and the
//    block scales are converted once per chunk into a table, so a key vector is scaled by one
//    multiply with a broadcast from memory, and a value's scale is folded into the probability
//    (p * d once per token and block) rather than multiplied into every value vector;
//  * where V::KeyDot is a type (AVX-512 VNNI: attention_int8_keys.h), Q8_0/Q4_0 scores are
//    integer dot products of the keys with the query quantised to int8 once per part;
//  * when K and V are the same rows (MLA's latent: V is the first dv values of the K row), they
//    are read once.
// The caller splits the context into parts (attention() in ops.cpp) and merges the parts'
// (max, sum, unnormalised output) in a fixed order.
#pragma once
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "kernels/kernels.h"
#include "tensor/fp16.h"
#include "tensor/quants.h"

namespace owl::kernels {
namespace {

inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline float hmax8(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
// The 4 horizontal sums of a0..a3 (8 lanes each).
inline __m128 hsum8x4(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
  const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
  return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

// e^x for 8 lanes: range reduction by ln 2 (split in two constants for exactness), a degree-6
// polynomial on [-ln2/2, ln2/2] (Cephes' expf coefficients), then scaling by 2^k through the
// exponent bits. About 1 ulp; inputs below -87.3 give ~1e-38 instead of 0, above 88.37 saturate.
inline __m256 exp8(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.37f));
  const __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

// dst[0..n) from n elements of Q8_0 or Q4_0 blocks (n a multiple of 32); equal to
// dequantize_row's values (each is one product of the block scale and an integer).
inline void dequantize_kv_blocks(DType t, const uint8_t* src, float* dst, int64_t n) {
  if (t == DType::Q8_0) {
    const auto* b = reinterpret_cast<const BlockQ8_0*>(src);
    for (int64_t i = 0; i < n / kQK; ++i, dst += kQK) {
      const __m256 d = _mm256_set1_ps(f16_to_f32(b[i].d));
      for (int j = 0; j < kQK; j += 8) {
        const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b[i].qs + j));
        _mm256_storeu_ps(dst + j, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q))));
      }
    }
    return;
  }
  const auto* b = reinterpret_cast<const BlockQ4_0*>(src);
  const __m256i eight = _mm256_set1_epi32(8);
  for (int64_t i = 0; i < n / kQK; ++i, dst += kQK) {
    const __m256 d = _mm256_set1_ps(f16_to_f32(b[i].d));
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b[i].qs));
    const __m128i lo = _mm_and_si128(q, _mm_set1_epi8(0x0F));                     // elements 0..15
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(q, 4), _mm_set1_epi8(0x0F));  // elements 16..31
    const __m128i half[2] = {lo, hi};
    for (int h = 0; h < 2; ++h)
      for (int j = 0; j < 2; ++j) {
        const __m128i bytes = j == 0 ? half[h] : _mm_srli_si128(half[h], 8);
        const __m256i v = _mm256_sub_epi32(_mm256_cvtepu8_epi32(bytes), eight);
        _mm256_storeu_ps(dst + h * 16 + j * 8, _mm256_mul_ps(d, _mm256_cvtepi32_ps(v)));
      }
  }
}

// Element x of a row (tails of head dims that are not a multiple of the vector width; the
// block types' head dims are multiples of 32, so their vector loads cover them).
inline float load1(const float* p, int64_t x) { return p[x]; }
inline float load1(const uint16_t* p, int64_t x) { return f16_to_f32(p[x]); }

template <class T>
constexpr bool kIsBlock = std::is_same_v<T, BlockQ8_0> || std::is_same_v<T, BlockQ4_0>;
// What V::load_q's integers stand for: d * (n - kBlockOffset) (Q4_0 stores its nibbles + 8).
template <class T>
constexpr int kBlockOffset = std::is_same_v<T, BlockQ4_0> ? 8 : 0;

// The decode kernel over vectors V (V::Reg of V::kWidth floats; V::kTileQ query heads per
// register tile; V::load(row, e) converts elements [e, e + kWidth) of an F32/F16 row to floats,
// V::load_q(blocks, e) the integers of a Q8_0/Q4_0 row, unscaled). Row pointers are `const
// float*` (an F32 cache, or a dequantised buffer), `const uint16_t*` (F16), `const BlockQ8_0*`
// or `const BlockQ4_0*`, all read in place and converted as loaded.
template <class V>
struct DecodeAttention {
  using Reg = typename V::Reg;
  static constexpr int64_t kW = V::kWidth;
  static constexpr int kTileQ = V::kTileQ;
  // Tokens per chunk: the running max is updated once per chunk, and one chunk of one head's
  // keys and values (32 x 128 F16 = 8 KB each) stays in L1 while the group's heads use it.
  static constexpr int64_t kChunk = 32;

  // s[i][j..j+4) = q[i] . key[j..j+4) for NQ queries (n elements each).
  template <int NQ, class T>
  static void qk(const float* const* q, const T* const* key, int64_t n, float* const* s, int64_t j) {
    Reg a[NQ][4];
    for (int i = 0; i < NQ; ++i)
      for (int c = 0; c < 4; ++c) a[i][c] = V::zero();
    const T *k0 = key[j], *k1 = key[j + 1], *k2 = key[j + 2], *k3 = key[j + 3];
    int64_t e = 0;
    for (; e + kW <= n; e += kW) {
      Reg v0 = V::load(k0, e), v1 = V::load(k1, e), v2 = V::load(k2, e), v3 = V::load(k3, e);
      V::keep(v0, v1, v2, v3);
      for (int i = 0; i < NQ; ++i) {
        const Reg qv = V::load(q[i], e);
        a[i][0] = V::fmadd(qv, v0, a[i][0]);
        a[i][1] = V::fmadd(qv, v1, a[i][1]);
        a[i][2] = V::fmadd(qv, v2, a[i][2]);
        a[i][3] = V::fmadd(qv, v3, a[i][3]);
      }
    }
    for (int i = 0; i < NQ; ++i) {
      alignas(16) float t[4];
      _mm_store_ps(t, V::sum4(a[i][0], a[i][1], a[i][2], a[i][3]));
      for (int64_t x = e; x < n; ++x) {
        t[0] += q[i][x] * load1(k0, x);
        t[1] += q[i][x] * load1(k1, x);
        t[2] += q[i][x] * load1(k2, x);
        t[3] += q[i][x] * load1(k3, x);
      }
      for (int c = 0; c < 4; ++c) s[i][j + c] = t[c];
    }
  }

  // o[i][e..e + NV*kW) = corr[i] * o[i][..] + sum_{c < len} p[i][c] * vr[c][..] for NQ queries.
  template <int NQ, int NV, class T>
  static void pv(float* const* o, const float* const* p, const float* corr, const T* const* vr, int64_t len,
                 int64_t e) {
    Reg a[NQ][NV];
    for (int i = 0; i < NQ; ++i) {
      const Reg ci = V::set1(corr[i]);
      for (int x = 0; x < NV; ++x) a[i][x] = V::mul(ci, V::load(o[i], e + kW * x));
    }
    for (int64_t c = 0; c < len; ++c) {
      Reg vv[NV];
      for (int x = 0; x < NV; ++x) vv[x] = V::load(vr[c], e + kW * x);
      for (int i = 0; i < NQ; ++i) {
        const Reg pi = V::set1(p[i][c]);
        for (int x = 0; x < NV; ++x) a[i][x] = V::fmadd(pi, vv[x], a[i][x]);
      }
    }
    for (int i = 0; i < NQ; ++i)
      for (int x = 0; x < NV; ++x) V::store(o[i] + e + kW * x, a[i][x]);
  }

  // qk over Q8_0/Q4_0 keys (n a multiple of 32): ksc[c * nb + b] is key c's block b scale d,
  // multiplied into the converted integers once per vector (a broadcast from memory, so the
  // shuffle port stays free for the conversions), before the NQ queries' FMAs. Q4_0's offset
  // rides in the same FMA: n * d + kmn (kmn = -8d, exact) rounds once, to d * (n - 8)'s float.
  template <int NQ, class T>
  static void qk_blocks(const float* const* q, const T* const* key, const float* ksc, const float* kmn, int64_t nb,
                        int64_t n, float* const* s, int64_t j) {
    Reg a[NQ][4];
    for (int i = 0; i < NQ; ++i)
      for (int c = 0; c < 4; ++c) a[i][c] = V::zero();
    const T *k0 = key[j], *k1 = key[j + 1], *k2 = key[j + 2], *k3 = key[j + 3];
    const float *d0 = ksc + j * nb, *d1 = d0 + nb, *d2 = d1 + nb, *d3 = d2 + nb;
    const float *m0 = kmn + j * nb, *m1 = m0 + nb, *m2 = m1 + nb, *m3 = m2 + nb;
    for (int64_t e = 0; e < n; e += kW) {
      const int64_t b = e / kQK;
      Reg v0, v1, v2, v3;
      if constexpr (kBlockOffset<T> != 0) {
        v0 = V::fmadd(V::load_q(k0, e), V::set1(d0[b]), V::set1(m0[b]));
        v1 = V::fmadd(V::load_q(k1, e), V::set1(d1[b]), V::set1(m1[b]));
        v2 = V::fmadd(V::load_q(k2, e), V::set1(d2[b]), V::set1(m2[b]));
        v3 = V::fmadd(V::load_q(k3, e), V::set1(d3[b]), V::set1(m3[b]));
      } else {
        v0 = V::mul(V::load_q(k0, e), V::set1(d0[b]));
        v1 = V::mul(V::load_q(k1, e), V::set1(d1[b]));
        v2 = V::mul(V::load_q(k2, e), V::set1(d2[b]));
        v3 = V::mul(V::load_q(k3, e), V::set1(d3[b]));
      }
      V::keep(v0, v1, v2, v3);
      for (int i = 0; i < NQ; ++i) {
        const Reg qv = V::load(q[i], e);
        a[i][0] = V::fmadd(qv, v0, a[i][0]);
        a[i][1] = V::fmadd(qv, v1, a[i][1]);
        a[i][2] = V::fmadd(qv, v2, a[i][2]);
        a[i][3] = V::fmadd(qv, v3, a[i][3]);
      }
    }
    for (int i = 0; i < NQ; ++i) {
      alignas(16) float t[4];
      _mm_store_ps(t, V::sum4(a[i][0], a[i][1], a[i][2], a[i][3]));
      for (int c = 0; c < 4; ++c) s[i][j + c] = t[c];
    }
  }

  // pv over Q8_0/Q4_0 values: pd[i][b * kChunk + c] = p[i][c] * (token c's block b scale), so
  // each converted vector of integers feeds the queries' FMAs directly; Q4_0's offset enters
  // once per block as pd[i][nb * kChunk + b] = -8 * sum_c pd[i][b * kChunk + c]. e is a
  // multiple of NV * kW, which either is a multiple of 32 or lies within one block: vector x
  // is in block e / 32 + x * kW / 32.
  template <int NQ, int NV, class T>
  static void pv_blocks(float* const* o, const float* const* pd, int64_t nb, const float* corr, const T* const* vr,
                        int64_t len, int64_t e) {
    Reg a[NQ][NV];
    for (int i = 0; i < NQ; ++i) {
      const Reg ci = V::set1(corr[i]);
      for (int x = 0; x < NV; ++x) {
        if constexpr (kBlockOffset<T> != 0) {
          const Reg off = V::set1(pd[i][nb * kChunk + e / kQK + x * kW / kQK]);
          a[i][x] = V::fmadd(ci, V::load(o[i], e + kW * x), off);
        } else {
          a[i][x] = V::mul(ci, V::load(o[i], e + kW * x));
        }
      }
    }
    const float* pb[NQ][NV];
    for (int i = 0; i < NQ; ++i)
      for (int x = 0; x < NV; ++x) pb[i][x] = pd[i] + (e / kQK + x * kW / kQK) * kChunk;
    for (int64_t c = 0; c < len; ++c) {
      Reg vv[NV];
      for (int x = 0; x < NV; ++x) vv[x] = V::load_q(vr[c], e + kW * x);
      for (int i = 0; i < NQ; ++i)
        for (int x = 0; x < NV; ++x) a[i][x] = V::fmadd(V::set1(pb[i][x][c]), vv[x], a[i][x]);
    }
    for (int i = 0; i < NQ; ++i)
      for (int x = 0; x < NV; ++x) V::store(o[i] + e + kW * x, a[i][x]);
  }

  // The block scales of rows[0..len) as floats: out[j * jstride + b * bstride], nb blocks a row.
  template <class T>
  static void block_scales(const T* const* rows, int64_t len, int64_t nb, int64_t jstride, int64_t bstride,
                           float* out) {
    for (int64_t j = 0; j < len; ++j)
      for (int64_t b = 0; b < nb; ++b) out[j * jstride + b * bstride] = _cvtsh_ss(rows[j][b].d);
  }

  // Calls f.template operator()<nt>() for a tile of nt (1..kTileQ) queries.
  template <class F>
  static void with_tile(int64_t nt, F&& f) {
    if constexpr (kTileQ >= 4)
      if (nt == 4) return f.template operator()<4>();
    if constexpr (kTileQ >= 3)
      if (nt == 3) return f.template operator()<3>();
    if (nt == 2) return f.template operator()<2>();
    f.template operator()<1>();
  }

  // The rows (element `offset` on) of a chunk's tokens, whose row starts are base[0..len): in
  // place when R is the cache's element type, else (R = float over a Q8_0/Q4_0 cache: K and V
  // of different types) dequantised into buf, n elements per row.
  // (off: the byte offset of element `offset` in a row, kv_bytes(s.type, offset).)
  template <class R>
  static void rows_of(const KVSpan& s, const uint8_t* const* base, int64_t len, size_t off, int64_t n, float* buf,
                      const R** rows) {
    for (int64_t j = 0; j < len; ++j) {
      if constexpr (!std::is_same_v<R, float>) {
        rows[j] = reinterpret_cast<const R*>(base[j] + off);
      } else if (s.type == DType::F32) {
        rows[j] = reinterpret_cast<const float*>(base[j] + off);
      } else {
        dequantize_kv_blocks(s.type, base[j] + off, buf + j * n, n);
        rows[j] = buf + j * n;
      }
    }
  }

  // out[j] = the start of token t + j's row, j < n: one kv_row call (a division and a call) per
  // page of the cache, whose rows are contiguous, not one per token (~3% of a Q4_0 call's samples).
  static void row_starts(const KVSpan& s, int64_t t, int64_t n, const uint8_t** out) {
    const size_t row = kv_bytes(s.type, s.row_stride);
    for (int64_t j = 0; j < n;) {
      const uint8_t* p = kv_row(s, t + j);
      const int64_t m = std::min(n - j, s.page_tokens - (t + j) % s.page_tokens);
      for (int64_t x = 0; x < m; ++x, p += row) out[j + x] = p;
      j += m;
    }
  }

  // Every cache line of bytes [off, off + bytes) of the rows starting at base[0..len) (a Q8_0
  // head slice of 136 bytes is not line-aligned: it can touch 4 lines). With after_previous, a
  // line that the slice shares with the previous head's (its first, when off is not
  // line-aligned) is left out: that head's prefetch asked for it a head earlier. Q8_0's 8
  // slices of a row then take 17 requests, not 24, and Q4_0's 72-byte slices 9, not 16:
  // each request for a line already in flight still takes a load slot in the burst.
  static void prefetch_rows(const uint8_t* const* base, int64_t len, size_t off, size_t bytes, bool after_previous) {
    for (int64_t j = 0; j < len; ++j) {
      const auto at = reinterpret_cast<uintptr_t>(base[j] + off);
      const auto first = after_previous ? (at + 63) & ~uintptr_t{63} : at & ~uintptr_t{63};
      const auto end = reinterpret_cast<uintptr_t>(base[j] + off + bytes);
      for (uintptr_t line = first; line < end; line += 64)
        _mm_prefetch(reinterpret_cast<const char*>(line), _MM_HINT_T0);
    }
  }

  // Heads [h0, h1) (head h reads KV head h / group) over tokens [t_begin, t_end): acc[h - h0]
  // gets sum_t e^(s_t - mx) v_t (dv floats, not normalised), mx the running max of the scaled
  // scores s_t, l the sum of e^(s_t - mx). KR/VR: the row pointer types (see rows_of).
  template <class KR, class VR>
  static void part(const float* q, int64_t group, int64_t h0, int64_t h1, int64_t dk, int64_t dv, const KVSpan& k,
                   const KVSpan& v, int64_t t_begin, int64_t t_end, float scale, float* acc, float* mx, float* l) {
    const int64_t nh = h1 - h0, g0 = h0 / group, g1 = (h1 - 1) / group + 1;
    // MLA caches one row per token: the values are the first dv entries of the key row.
    constexpr bool same_types = std::is_same_v<KR, VR>;
    const bool shared = same_types && k.pages == v.pages && k.type == v.type && k.row_stride == v.row_stride &&
                        g0 == 0 && g1 == 1 && dv <= dk;
    // Few heads per KV row (GQA) leave decode bound by the cache reads, and asking for the next
    // chunk early pays (Qwen3-0.6B shape at 16k, F16: -15% time; Q8_0: -30%); MLA's 16 heads
    // per latent row make it compute-bound, and the prefetches cost it ~5%.
    const bool prefetch = nh <= 4 * (g1 - g0);
    const bool quant_k = std::is_same_v<KR, float> && k.type != DType::F32;
    const bool quant_v = std::is_same_v<VR, float> && v.type != DType::F32 && !shared;
    // Block rows read in place: their scales as floats, K's per token ([kChunk + 3][nbk], the
    // padding keys of a last 4-key tile included; then Q4_0's -8d, the same shape), V's per
    // block ([nbv][kChunk]) and multiplied into each head's probabilities ([nh][nbv][kChunk],
    // then Q4_0's per-block offset terms: [nbv] more per head).
    constexpr bool blocks = kIsBlock<KR> && kIsBlock<VR>;
    constexpr int offset = blocks ? kBlockOffset<KR> : 0;
    // Scores in the integer domain where the ISA has them (V::KeyDot: AVX-512 VNNI, the query
    // quantised to int8, attention_int8_keys.h); else exact f32 products of converted keys.
    constexpr bool int_keys = blocks && !std::is_void_v<typename V::KeyDot>;
    const int64_t nbk = blocks ? dk / kQK : 0, nbv = blocks ? dv / kQK : 0;
    // K's scale table: [kChunk + 3][nbk], or for the integer dot [nbk rounded up to even][kChunk
    // + 3] (block-major, as V's; the padding block's row 0).
    const int64_t kstride = int_keys ? (nbk + 1) & ~int64_t{1} : nbk;
    const int64_t pd_stride = nbv * (kChunk + 1);
    thread_local std::vector<float> scratch;
    scratch.resize(static_cast<size_t>(nh * (kChunk + 1) + (quant_k ? kChunk * dk : 0) + (quant_v ? kChunk * dv : 0) +
                                       2 * (kChunk + 3) * kstride + nbv * kChunk + nh * pd_stride));
    float* sc = scratch.data();      // [nh][kChunk] scores, then probabilities
    float* corr = sc + nh * kChunk;  // per head: the rescaling of its earlier sums in this chunk
    float* kbuf = corr + nh;
    float* vbuf = kbuf + (quant_k ? kChunk * dk : 0);
    float* ksc = vbuf + (quant_v ? kChunk * dv : 0);
    float* kmn = ksc + (kChunk + 3) * kstride;
    float* vsc = kmn + (kChunk + 3) * kstride;
    float* pds = vsc + nbv * kChunk;
    const size_t k_row_bytes = kv_bytes(k.type, dk), v_row_bytes = kv_bytes(v.type, dv);
    std::fill(acc, acc + nh * dv, 0.0f);
    std::fill(mx, mx + nh, -INFINITY);
    std::fill(l, l + nh, 0.0f);
    const uint8_t* kb[kChunk];
    const uint8_t* vb[kChunk];
    const uint8_t* nkb[kChunk];  // the next chunk's rows
    const uint8_t* nvb[kChunk];
    const KR* kr[kChunk + 3];
    const VR* vr[kChunk];
    thread_local std::vector<const float*> qp;
    thread_local std::vector<float*> sp, op;
    thread_local std::vector<const float*> pdp;
    qp.resize(static_cast<size_t>(nh));
    sp.resize(static_cast<size_t>(nh));
    op.resize(static_cast<size_t>(nh));
    pdp.resize(static_cast<size_t>(nh));
    for (int64_t i = 0; i < nh; ++i) {
      qp[i] = q + (h0 + i) * dk;
      sp[i] = sc + i * kChunk;
      op[i] = acc + i * dv;
      pdp[i] = pds + i * pd_stride;
    }
    // The integer dot's queries, quantised once for the whole part (kqz 64-byte steps a head).
    const int64_t kqz = (nbk + 1) / 2;
    thread_local std::vector<int8_t> qq;
    thread_local std::vector<float> qd;
    thread_local std::vector<int32_t> qinit;
    if constexpr (int_keys) {
      qq.resize(static_cast<size_t>(nh * kqz * 64));
      qd.resize(static_cast<size_t>(nh * kqz * 16));
      qinit.resize(static_cast<size_t>(nh * kqz * 16));
      for (int64_t i = 0; i < nh; ++i)
        V::KeyDot::template quantize_query<KR>(qp[i], nbk, qq.data() + i * kqz * 64, qd.data() + i * kqz * 16,
                                               qinit.data() + i * kqz * 16);
      for (int64_t x = 0; x < (kChunk + 3) * kstride; ++x) ksc[x] = 0.0f;  // the padding blocks' scales
    }
    for (int64_t t0 = t_begin; t0 < t_end; t0 += kChunk) {
      const int64_t len = std::min(kChunk, t_end - t0);
      const int64_t next = t0 + len, next_len = std::min(kChunk, t_end - next);
      // Row starts once per chunk: the heads' slices are offsets from them.
      row_starts(k, t0, len, kb);
      row_starts(v, t0, len, vb);
      if (prefetch) {
        row_starts(k, next, next_len, nkb);
        row_starts(v, next, next_len, nvb);
      }
      for (int64_t g = g0; g < g1; ++g) {
        const size_t koff = kv_bytes(k.type, g * dk), voff = kv_bytes(v.type, g * dv);
        // The next chunk's slice of this head, a chunk ahead of its use: spreads the requests
        // over the chunk and crosses page boundaries, which the hardware prefetcher does not.
        if (next_len > 0 && prefetch) {
          prefetch_rows(nkb, next_len, koff, k_row_bytes, g > g0);
          if (!shared) prefetch_rows(nvb, next_len, voff, v_row_bytes, g > g0);
        }
        rows_of<KR>(k, kb, len, koff, dk, kbuf, kr);
        if constexpr (same_types) {
          if (shared) {
            std::copy_n(kr, len, vr);
          } else {
            rows_of<VR>(v, vb, len, voff, dv, vbuf, vr);
          }
        } else {
          rows_of<VR>(v, vb, len, voff, dv, vbuf, vr);
        }
        const int64_t padded = (len + 3) & ~int64_t{3};
        for (int64_t j = len; j < padded; ++j) kr[j] = kr[0];  // a full last 4-key tile
        const int64_t ia = std::max(h0, g * group) - h0, ib = std::min(h1, (g + 1) * group) - h0;
        // Scores: each quad of keys stays in registers/L1 while the group's query tiles meet it.
        if constexpr (int_keys) {
          V::KeyDot::scales(kr, padded, nbk, kChunk + 3, ksc);
          V::KeyDot::scales(vr, len, nbv, kChunk, vsc);
          for (int64_t j = 0; j < len; j += 4)
            for (int64_t i = ia; i < ib; i += kTileQ)
              with_tile(std::min<int64_t>(kTileQ, ib - i), [&]<int NQ>() {
                V::KeyDot::template qk<NQ>(qq.data() + i * kqz * 64, qd.data() + i * kqz * 16,
                                           qinit.data() + i * kqz * 16, kqz, kr, ksc, kChunk + 3, nbk, sp.data() + i,
                                           j);
              });
        } else if constexpr (blocks) {
          block_scales(kr, padded, nbk, nbk, 1, ksc);
          if constexpr (offset != 0)
            for (int64_t x = 0; x < padded * nbk; ++x) kmn[x] = -offset * ksc[x];
          block_scales(vr, len, nbv, 1, kChunk, vsc);
          for (int64_t j = 0; j < len; j += 4)
            for (int64_t i = ia; i < ib; i += kTileQ)
              with_tile(std::min<int64_t>(kTileQ, ib - i),
                        [&]<int NQ>() { qk_blocks<NQ>(qp.data() + i, kr, ksc, kmn, nbk, dk, sp.data() + i, j); });
        } else {
          for (int64_t j = 0; j < len; j += 4)
            for (int64_t i = ia; i < ib; i += kTileQ)
              with_tile(std::min<int64_t>(kTileQ, ib - i),
                        [&]<int NQ>() { qk<NQ>(qp.data() + i, kr, dk, sp.data() + i, j); });
        }
        // Online softmax, one update per chunk and head.
        for (int64_t i = ia; i < ib; ++i) {
          float* s = sp[i];
          const __m256 vscale = _mm256_set1_ps(scale);
          __m256 vmax = _mm256_set1_ps(-INFINITY);
          int64_t j = 0;
          for (; j + 8 <= len; j += 8) {
            const __m256 x = _mm256_mul_ps(_mm256_loadu_ps(s + j), vscale);
            _mm256_storeu_ps(s + j, x);
            vmax = _mm256_max_ps(vmax, x);
          }
          float cm = hmax8(vmax);
          for (int64_t x = j; x < len; ++x) {
            s[x] *= scale;
            cm = std::max(cm, s[x]);
          }
          corr[i] = 1.0f;
          if (cm > mx[i]) {
            corr[i] = std::exp(mx[i] - cm);  // 0 on the first chunk
            mx[i] = cm;
          }
          const __m256 mm = _mm256_set1_ps(mx[i]);
          __m256 sum8 = _mm256_setzero_ps();
          for (j = 0; j + 8 <= len; j += 8) {
            const __m256 p = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), mm));
            _mm256_storeu_ps(s + j, p);
            sum8 = _mm256_add_ps(sum8, p);
          }
          float sum = hsum8(sum8);
          for (; j < len; ++j) {
            s[j] = std::exp(s[j] - mx[i]);
            sum += s[j];
          }
          l[i] = l[i] * corr[i] + sum;
        }
        // Values: each slice of the chunk's values stays in L1 while the group's tiles use it.
        const float* const* pp = sp.data();
        if constexpr (blocks) {
          for (int64_t i = ia; i < ib; ++i) {
            float* pd = pds + i * pd_stride;
            for (int64_t b = 0; b < nbv; ++b) {
              float sum = 0;
              for (int64_t c = 0; c < len; ++c) {
                pd[b * kChunk + c] = pp[i][c] * vsc[b * kChunk + c];
                if constexpr (offset != 0) sum += pd[b * kChunk + c];
              }
              if constexpr (offset != 0) pd[nbv * kChunk + b] = -offset * sum;  // read by pv_blocks for Q4_0 only
            }
          }
          int64_t e = 0;
          for (; e + 4 * kW <= dv; e += 4 * kW)
            for (int64_t i = ia; i < ib; i += kTileQ)
              with_tile(std::min<int64_t>(kTileQ, ib - i),
                        [&]<int NQ>() { pv_blocks<NQ, 4>(op.data() + i, pdp.data() + i, nbv, corr + i, vr, len, e); });
          for (; e < dv; e += kW)  // dv is a multiple of 32, so of kW
            for (int64_t i = ia; i < ib; i += kTileQ)
              with_tile(std::min<int64_t>(kTileQ, ib - i),
                        [&]<int NQ>() { pv_blocks<NQ, 1>(op.data() + i, pdp.data() + i, nbv, corr + i, vr, len, e); });
        } else {
          int64_t e = 0;
          for (; e + 4 * kW <= dv; e += 4 * kW)
            for (int64_t i = ia; i < ib; i += kTileQ)
              with_tile(std::min<int64_t>(kTileQ, ib - i),
                        [&]<int NQ>() { pv<NQ, 4>(op.data() + i, pp + i, corr + i, vr, len, e); });
          for (; e + kW <= dv; e += kW)
            for (int64_t i = ia; i < ib; i += kTileQ)
              with_tile(std::min<int64_t>(kTileQ, ib - i),
                        [&]<int NQ>() { pv<NQ, 1>(op.data() + i, pp + i, corr + i, vr, len, e); });
          for (; e < dv; ++e)
            for (int64_t i = ia; i < ib; ++i) {
              float a = corr[i] * op[i][e];
              for (int64_t c = 0; c < len; ++c) a += pp[i][c] * load1(vr[c], e);
              op[i][e] = a;
            }
        }
      }
    }
  }

  // part() with the row pointer types of k's and v's cache types: each read in place when K
  // and V have one type (as the engine's caches do); a mix goes through float buffers.
  static void run(const float* q, int64_t group, int64_t h0, int64_t h1, int64_t dk, int64_t dv, const KVSpan& k,
                  const KVSpan& v, int64_t t_begin, int64_t t_end, float scale, float* acc, float* mx, float* l) {
    auto go = [&]<class KR, class VR>() {
      part<KR, VR>(q, group, h0, h1, dk, dv, k, v, t_begin, t_end, scale, acc, mx, l);
    };
    if (k.type == v.type) {
      switch (k.type) {
        case DType::F16:
          return go.template operator()<uint16_t, uint16_t>();
        case DType::Q8_0:
          return go.template operator()<BlockQ8_0, BlockQ8_0>();
        case DType::Q4_0:
          return go.template operator()<BlockQ4_0, BlockQ4_0>();
        default:
          return go.template operator()<float, float>();
      }
    }
    if (k.type == DType::F16) return go.template operator()<uint16_t, float>();
    if (v.type == DType::F16) return go.template operator()<float, uint16_t>();
    go.template operator()<float, float>();
  }
};

// ---- many query rows of one sequence (prefill): attention_rows ----
// A block of query vectors (rows x the heads of one KV group) meets a chunk of keys at a time:
// the chunk's K/V rows are converted to F32 once per block, scored in register tiles of 2
// queries x 4 keys and accumulated into the block's outputs in tiles of 2 queries x 4 vectors
// of values (DecodeAttention's tiles over float rows), so every loaded key or value feeds
// several queries. Only ops_avx2.cpp instantiates it (a 16-wide build of it measured no
// faster); AVX-512 CPUs run attention_rows_avx512vnni.cpp, which puts queries in the lanes.
template <class V>
struct RowsAttention {
  using D = DecodeAttention<V>;
  static constexpr int64_t kW = V::kWidth;
  // Keys per chunk: their F32 K and V (32 KB at head dim 128) stay in L1 (64 keys were slower).
  static constexpr int64_t kKeyChunk = 32;

  // F32 rows of a chunk: pointers into the cache when it is F32, else into buf (converted).
  static void chunk_rows(const KVSpan& s, int64_t t0, int64_t len, int64_t offset, int64_t n, float* buf,
                         const float** rows) {
    for (int64_t j = 0; j < len; ++j) {
      const uint8_t* src = kv_row(s, t0 + j, offset);
      float* dst = buf + j * n;
      rows[j] = dst;
      if (s.type == DType::F32) {
        rows[j] = reinterpret_cast<const float*>(src);
      } else if (s.type == DType::F16) {
        const auto* h = reinterpret_cast<const uint16_t*>(src);
        int64_t i = 0;
        for (; i + 8 <= n; i += 8)
          _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i))));
        for (; i < n; ++i) dst[i] = f16_to_f32(h[i]);
      } else {
        dequantize_kv_blocks(s.type, src, dst, n);
      }
    }
  }

  // Asks for the next chunk's K or V rows while this chunk is computed (the rows of one head are
  // a few hundred bytes strided by the whole cache row, which the hardware prefetchers miss).
  static void prefetch_chunk(const KVSpan& s, int64_t t0, int64_t len, int64_t offset, int64_t n) {
    const auto bytes = static_cast<int64_t>(kv_bytes(s.type, n));
    for (int64_t j = 0; j < len; ++j) {
      const char* src = reinterpret_cast<const char*>(kv_row(s, t0 + j, offset));
      for (int64_t b = 0; b < bytes; b += 64) _mm_prefetch(src + b, _MM_HINT_T1);
    }
  }

  // o[i][0..n) = corr[i] * o[i][..] + sum_{c < len} p[i][c] * vr[c][..] for NQ queries.
  template <int NQ>
  static void pv_rows(float* const* o, const float* const* p, const float* corr, const float* const* vr, int64_t len,
                      int64_t n) {
    int64_t e = 0;
    for (; e + 4 * kW <= n; e += 4 * kW) D::template pv<NQ, 4>(o, p, corr, vr, len, e);
    for (; e + kW <= n; e += kW) D::template pv<NQ, 1>(o, p, corr, vr, len, e);
    for (; e < n; ++e)
      for (int i = 0; i < NQ; ++i) {
        float a = corr[i] * o[i][e];
        for (int64_t c = 0; c < len; ++c) a += p[i][c] * vr[c][e];
        o[i][e] = a;
      }
  }

  // Query rows [r0, r1) (row r's keys: [begins[r], ends[r]), both non-decreasing) x the heads
  // of KV group g: out gets their normalised outputs.
  static void block(const float* q, int64_t n_head, int64_t group, int64_t g, int64_t r0, int64_t r1,
                    const int64_t* begins, const int64_t* ends, int64_t dk, int64_t dv, const KVSpan& k,
                    const KVSpan& v, float scale, float* out) {
    const int64_t nq = (r1 - r0) * group;  // query vectors: query i is row r0 + i / group, head g*group + i % group
    thread_local std::vector<float> scratch;
    thread_local std::vector<const float*> ptrs;
    scratch.resize(static_cast<size_t>(nq * (dv + kKeyChunk + 2) + kKeyChunk * (dk + dv)));
    ptrs.resize(static_cast<size_t>(nq + 2 * kKeyChunk));
    float* acc = scratch.data();      // [nq][dv]
    float* sc = acc + nq * dv;        // [nq][kKeyChunk] scores, then probabilities
    float* mx = sc + nq * kKeyChunk;  // running max per query
    float* l = mx + nq;               // running sum per query
    float* kbuf = l + nq;             // [kKeyChunk][dk] converted keys
    float* vbuf = kbuf + kKeyChunk * dk;
    const float** qp = ptrs.data();
    const float** kr = qp + nq;
    const float** vr = kr + kKeyChunk;
    std::fill(acc, acc + nq * dv, 0.0f);
    std::fill(mx, mx + nq, -INFINITY);
    std::fill(l, l + nq, 0.0f);
    for (int64_t i = 0; i < nq; ++i) qp[i] = q + ((r0 + i / group) * n_head + g * group + i % group) * dk;
    float cr[2];  // the tile's queries' rescaling of their earlier sums
    const int64_t t_begin = begins[r0], t_end = ends[r1 - 1];
    for (int64_t t0 = t_begin; t0 < t_end; t0 += kKeyChunk) {
      const int64_t len = std::min(kKeyChunk, t_end - t0);
      // Rows whose range meets the chunk: ends and begins are non-decreasing, so a contiguous run.
      int64_t ra = r0, rb = r1;
      while (ra < r1 && ends[ra] <= t0) ++ra;
      while (rb > ra && begins[rb - 1] >= t0 + len) --rb;
      if (ra >= rb) continue;
      chunk_rows(k, t0, len, g * dk, dk, kbuf, kr);
      chunk_rows(v, t0, len, g * dv, dv, vbuf, vr);
      const int64_t next_len = std::min(kKeyChunk, t_end - t0 - len);
      if (next_len > 0) {
        prefetch_chunk(k, t0 + len, next_len, g * dk, dk);
        prefetch_chunk(v, t0 + len, next_len, g * dv, dv);
      }
      for (int64_t j = len; j < kKeyChunk; ++j) kr[j] = kr[0];  // padding keys for the last 4-key tile
      for (int64_t i0 = (ra - r0) * group; i0 < (rb - r0) * group; i0 += 2) {
        const int64_t nt = std::min<int64_t>(2, (rb - r0) * group - i0);
        // This tile's keys: the union of its queries' ranges within the chunk.
        int64_t lo[2], hi[2];
        for (int64_t i = 0; i < nt; ++i) {
          const int64_t r = r0 + (i0 + i) / group;
          lo[i] = std::max(begins[r], t0) - t0;
          hi[i] = std::min(ends[r], t0 + len) - t0;
        }
        const int64_t tlo = std::min(lo[0], lo[nt - 1]), thi = std::max(hi[0], hi[nt - 1]);
        float* srow[2] = {sc + i0 * kKeyChunk, sc + (i0 + nt - 1) * kKeyChunk};
        for (int64_t j = tlo & ~int64_t{3}; j < thi; j += 4) {
          if (nt == 2) {
            D::template qk<2>(qp + i0, kr, dk, srow, j);
          } else {
            D::template qk<1>(qp + i0, kr, dk, srow, j);
          }
        }
        // Online softmax per query over its own keys [lo, hi); the tile's other keys (and the
        // 8-key blocks' edges) get probability 0 through a lane mask.
        const int64_t j0 = tlo & ~int64_t{7};
        const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        const __m256 vscale = _mm256_set1_ps(scale), neg_inf = _mm256_set1_ps(-INFINITY);
        for (int64_t i = 0; i < nt; ++i) {
          float* s = srow[i];
          float& m = mx[i0 + i];
          const __m256i vlo = _mm256_set1_epi32(static_cast<int>(lo[i]) - 1),
                        vhi = _mm256_set1_epi32(static_cast<int>(hi[i]));
          __m256 vmax = neg_inf;
          for (int64_t j = j0; j < thi; j += 8) {
            const __m256i idx = _mm256_add_epi32(lane, _mm256_set1_epi32(static_cast<int>(j)));
            const __m256 in =
                _mm256_castsi256_ps(_mm256_and_si256(_mm256_cmpgt_epi32(idx, vlo), _mm256_cmpgt_epi32(vhi, idx)));
            const __m256 x = _mm256_blendv_ps(neg_inf, _mm256_mul_ps(_mm256_loadu_ps(s + j), vscale), in);
            _mm256_storeu_ps(s + j, x);
            vmax = _mm256_max_ps(vmax, x);
          }
          const float cm = hmax8(vmax);
          cr[i] = 1.0f;
          if (cm > m) {
            cr[i] = std::exp(m - cm);  // 0 on the query's first keys
            m = cm;
          }
          const __m256 mm = _mm256_set1_ps(m);
          __m256 sum8 = _mm256_setzero_ps();
          for (int64_t j = j0; j < thi; j += 8) {
            const __m256 x = _mm256_loadu_ps(s + j);
            // exp8 turns -inf into ~1e-38, not 0: masked lanes are cleared explicitly.
            const __m256 p = _mm256_and_ps(exp8(_mm256_sub_ps(x, mm)), _mm256_cmp_ps(x, neg_inf, _CMP_NEQ_OQ));
            _mm256_storeu_ps(s + j, p);
            sum8 = _mm256_add_ps(sum8, p);
          }
          l[i0 + i] = l[i0 + i] * cr[i] + hsum8(sum8);
        }
        float* orow[2] = {acc + i0 * dv, acc + (i0 + nt - 1) * dv};
        const float* prow[2] = {srow[0] + tlo, srow[1] + tlo};
        if (nt == 2) {
          pv_rows<2>(orow, prow, cr, vr + tlo, thi - tlo, dv);
        } else {
          pv_rows<1>(orow, prow, cr, vr + tlo, thi - tlo, dv);
        }
      }
    }
    for (int64_t i = 0; i < nq; ++i) {
      const float inv = l[i] > 0 ? 1.0f / l[i] : 0.0f;
      float* o = out + ((r0 + i / group) * n_head + g * group + i % group) * dv;
      for (int64_t e = 0; e < dv; ++e) o[e] = acc[i * dv + e] * inv;
    }
  }
};

}  // namespace
}  // namespace owl::kernels
