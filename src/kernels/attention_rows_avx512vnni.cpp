// Prefill attention (attention_rows) on AVX-512: a block of query vectors (rows x the heads of
// one KV group) over chunks of keys, with the block's queries across the 16 lanes of a
// register instead of along the head dimension.
//
// The AVX2 kernel (RowsAttention in attention_simd.h) puts a head's dims in the lanes: every
// score is a horizontal sum, the softmax runs query by query, and its 2-query x 4-key tiles
// load 6 vectors per 8 multiply-adds. Here the block's queries are transposed once (qt[e][i]),
// so that
//  * a score tile is 2 vectors of 16 queries x 8 keys: per head dim e, 2 loads of qt and one
//    broadcast of k[j][e] per key feed 16 multiply-adds, and each accumulator ends as the
//    finished scores of one key for 16 queries (no horizontal sums);
//  * the online softmax runs on those vectors: running max, rescaling and sums of 16 queries
//    at once, the causal/window mask a per-lane compare of the key's position against each
//    lane's range;
//  * the outputs are kept transposed too (ot[e][i]): a tile of 2 x 16 queries x 8 dims takes,
//    per key, 2 loads of the probabilities and 8 broadcasts of v[j][e] for 16 multiply-adds.
// The block's result is transposed back and normalised once at the end.
//
// A row's result depends only on its own key range and the chunk grid (chunks start at the
// block's first key, which is 0 for a causal prompt), not on which rows share its block: every
// lane is computed by the same operations in the same order, the other lanes' keys masked out.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/attention_simd.h"

// GCC 12's AVX-512 intrinsics pass _mm512_undefined_ps() as the unused merge source, which
// -Wmaybe-uninitialized reports once they are inlined (GCC bug 105593; see ops_avx512vnni.cpp).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "kernels/ops_avx2.h"

namespace owl::kernels::avx512vnni {

namespace {

constexpr int64_t kLanes = 16;
// Keys per chunk: their F32 K and V rows (32 KB at head dim 128) stay in L1.
constexpr int64_t kKeyChunk = 32;
constexpr int kTileKeys = 8;  // keys per score tile (kKeyChunk is a multiple)
constexpr int kTileDims = 8;  // output dims per value tile

// e^x for 16 lanes: exp8 of attention_simd.h (same reduction and polynomial) on 512 bits.
inline __m512 exp16(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.37f));
  const __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(k, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(k), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
}

// s[j][x * 16 ..] = scale * (qt[.][x * 16 ..] . kr[j]) for NV query vectors x and the 8 keys
// j0 .. j0 + 7; np: floats per qt / s row (the block's lanes).
template <int NV>
void score_tile(const float* qt, int64_t np, const float* const* kr, int64_t dk, float scale, float* s) {
  __m512 a[NV][kTileKeys];
  for (int x = 0; x < NV; ++x)
    for (int j = 0; j < kTileKeys; ++j) a[x][j] = _mm512_setzero_ps();
  for (int64_t e = 0; e < dk; ++e) {
    __m512 q[NV];
    for (int x = 0; x < NV; ++x) q[x] = _mm512_load_ps(qt + e * np + x * kLanes);
    for (int j = 0; j < kTileKeys; ++j) {
      const __m512 kv = _mm512_set1_ps(kr[j][e]);
      for (int x = 0; x < NV; ++x) a[x][j] = _mm512_fmadd_ps(q[x], kv, a[x][j]);
    }
  }
  const __m512 vs = _mm512_set1_ps(scale);
  for (int j = 0; j < kTileKeys; ++j)
    for (int x = 0; x < NV; ++x) _mm512_store_ps(s + j * np + x * kLanes, _mm512_mul_ps(a[x][j], vs));
}

// ot[e0 + d][x * 16 ..] = corr[x] * ot[..] + sum_{j in [ja, jb)} p[j][x] * vr[j][e0 + d] for NV
// query vectors and the ND dims e0 .. e0 + ND - 1.
template <int NV, int ND>
void value_tile(float* ot, int64_t np, const float* p, const float* corr, const float* const* vr, int64_t ja,
                int64_t jb, int64_t e0) {
  __m512 a[NV][ND];
  for (int x = 0; x < NV; ++x) {
    const __m512 c = _mm512_load_ps(corr + x * kLanes);
    for (int d = 0; d < ND; ++d) a[x][d] = _mm512_mul_ps(c, _mm512_load_ps(ot + (e0 + d) * np + x * kLanes));
  }
  for (int64_t j = ja; j < jb; ++j) {
    __m512 pj[NV];
    for (int x = 0; x < NV; ++x) pj[x] = _mm512_load_ps(p + j * np + x * kLanes);
    const float* v = vr[j] + e0;
    for (int d = 0; d < ND; ++d) {
      const __m512 vv = _mm512_set1_ps(v[d]);
      for (int x = 0; x < NV; ++x) a[x][d] = _mm512_fmadd_ps(pj[x], vv, a[x][d]);
    }
  }
  for (int x = 0; x < NV; ++x)
    for (int d = 0; d < ND; ++d) _mm512_store_ps(ot + (e0 + d) * np + x * kLanes, a[x][d]);
}

// The starts of the rows t0 .. t0 + len - 1 (head slice `offset`): kv_row's arithmetic (a
// division, a call) once per page instead of once per row.
void chunk_starts(const KVSpan& s, int64_t t0, int64_t len, int64_t offset, const uint8_t** src) {
  const auto row_bytes = static_cast<int64_t>(kv_bytes(s.type, s.row_stride));
  for (int64_t j = 0; j < len;) {
    const uint8_t* p = kv_row(s, t0 + j, offset);
    const int64_t run = std::min(len - j, s.page_tokens - (t0 + j) % s.page_tokens);
    for (int64_t x = 0; x < run; ++x, ++j) src[j] = p + x * row_bytes;
  }
}

// F32 rows (n elements from src[j]) of a chunk: pointers to src when the cache is F32, else
// into buf (converted from F16 or dequantised).
void chunk_rows(DType type, const uint8_t* const* src, int64_t len, int64_t n, float* buf, const float** rows) {
  for (int64_t j = 0; j < len; ++j) {
    float* dst = buf + j * n;
    rows[j] = dst;
    if (type == DType::F32) {
      rows[j] = reinterpret_cast<const float*>(src[j]);
    } else if (type == DType::F16) {
      const auto* h = reinterpret_cast<const uint16_t*>(src[j]);
      int64_t i = 0;
      for (; i + kLanes <= n; i += kLanes)
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(h + i))));
      for (; i < n; ++i) dst[i] = f16_to_f32(h[i]);
    } else {
      dequantize_kv_blocks(type, src[j], dst, n);
    }
  }
}

// Asks for a chunk's rows (bytes from each src[j]) while the previous one is computed (one
// head's slice of each row is a few hundred bytes strided by the whole cache row, which the
// hardware prefetchers miss).
void prefetch_rows(const uint8_t* const* src, int64_t len, int64_t bytes) {
  for (int64_t j = 0; j < len; ++j)
    for (int64_t b = 0; b < bytes; b += 64) _mm_prefetch(reinterpret_cast<const char*>(src[j]) + b, _MM_HINT_T1);
}

// 16 x 16 floats: rows r[0..16) become columns.
inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
    r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
    r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
  }
  // r[4a + b] now holds, in 128-bit lane L, rows 4L.. of the 4 x 4 block (a, b) mixed: elements
  // (row 4a + c, column 4L + b) for c = 0..3. Gather the 128-bit lanes across the 4 groups a.
  for (int b = 0; b < 4; ++b) {
    const __m512 x0 = _mm512_shuffle_f32x4(r[b], r[4 + b], 0x88), x1 = _mm512_shuffle_f32x4(r[b], r[4 + b], 0xDD);
    const __m512 x2 = _mm512_shuffle_f32x4(r[8 + b], r[12 + b], 0x88),
                 x3 = _mm512_shuffle_f32x4(r[8 + b], r[12 + b], 0xDD);
    t[b] = _mm512_shuffle_f32x4(x0, x2, 0x88);
    t[8 + b] = _mm512_shuffle_f32x4(x0, x2, 0xDD);
    t[4 + b] = _mm512_shuffle_f32x4(x1, x3, 0x88);
    t[12 + b] = _mm512_shuffle_f32x4(x1, x3, 0xDD);
  }
  for (int i = 0; i < 16; ++i) r[i] = t[i];
}

}  // namespace

void attention_rows_block(const float* q, int64_t n_head, int64_t group, int64_t g, int64_t r0, int64_t r1,
                          const int64_t* begins, const int64_t* ends, int64_t dk, int64_t dv, const KVSpan& k,
                          const KVSpan& v, float scale, float* out) {
  // Query i (lane i % 16 of vector i / 16) is row r0 + i / group, head g * group + i % group.
  const int64_t nq = (r1 - r0) * group, nvec = (nq + kLanes - 1) / kLanes, np = nvec * kLanes;
  thread_local std::vector<float> scratch;
  thread_local std::vector<const float*> ptrs;
  scratch.resize(static_cast<size_t>(np * (dk + dv + kKeyChunk + 5) + kKeyChunk * (dk + dv) + kLanes));
  ptrs.resize(static_cast<size_t>(2 * kKeyChunk));
  // 64-byte aligned: every [..][np] row starts a cache line, and np is a multiple of 16.
  const auto base = reinterpret_cast<uintptr_t>(scratch.data());
  float* qt = reinterpret_cast<float*>((base + 63) & ~uintptr_t{63});  // [dk][np] the queries, transposed
  float* ot = qt + dk * np;                                            // [dv][np] unnormalised outputs, transposed
  float* sc = ot + dv * np;                                            // [kKeyChunk][np] scores, then probabilities
  float* mx = sc + kKeyChunk * np;                                     // running max per lane
  float* l = mx + np;                                                  // running sum per lane
  float* corr = l + np;                                                // this chunk's rescaling of the earlier sums
  auto* lo = reinterpret_cast<int32_t*>(corr + np);                    // the lane's first key
  auto* hi = lo + np;                                                  // ... and its end
  float* kbuf = reinterpret_cast<float*>(hi + np);                     // [kKeyChunk][dk] converted keys
  float* vbuf = kbuf + kKeyChunk * dk;
  const float** kr = ptrs.data();
  const float** vr = kr + kKeyChunk;
  const uint8_t* ksrc[kKeyChunk];
  const uint8_t* vsrc[kKeyChunk];
  auto query = [&](int64_t i) { return q + ((r0 + i / group) * n_head + g * group + i % group) * dk; };
  auto output = [&](int64_t i) { return out + ((r0 + i / group) * n_head + g * group + i % group) * dv; };
  // qt: 16 x 16 blocks of the queries transposed in registers, the dims past a multiple of 16
  // one by one; padding lanes get zeros.
  const int64_t dk16 = dk & ~(kLanes - 1), dv16 = dv & ~(kLanes - 1);
  for (int64_t x = 0; x < nvec; ++x) {
    for (int64_t e0 = 0; e0 < dk16; e0 += kLanes) {
      __m512 r[16];
      for (int64_t i = 0; i < kLanes; ++i)
        r[i] = x * kLanes + i < nq ? _mm512_loadu_ps(query(x * kLanes + i) + e0) : _mm512_setzero_ps();
      transpose16(r);
      for (int64_t d = 0; d < kLanes; ++d) _mm512_store_ps(qt + (e0 + d) * np + x * kLanes, r[d]);
    }
  }
  for (int64_t i = 0; i < np; ++i) {
    const bool real = i < nq;
    for (int64_t e = dk16; e < dk; ++e) qt[e * np + i] = real ? query(i)[e] : 0.0f;
    mx[i] = -INFINITY;
    l[i] = 0.0f;
    lo[i] = real ? static_cast<int32_t>(begins[r0 + i / group]) : 0;  // padding lanes: an empty range
    hi[i] = real ? static_cast<int32_t>(ends[r0 + i / group]) : 0;
  }
  std::fill(ot, ot + dv * np, 0.0f);
  const __m512 neg_inf = _mm512_set1_ps(-INFINITY), one = _mm512_set1_ps(1.0f);
  const int64_t t_begin = begins[r0], t_end = ends[r1 - 1];
  // Values that are the first dv elements of the keys (MLA's absorbed form: the latent rows are
  // both) are read and converted once, with the keys.
  const bool v_in_k = v.pages == k.pages && v.type == k.type && v.row_stride == k.row_stride &&
                      v.page_tokens == k.page_tokens && g * dv == g * dk && dv <= dk;
  for (int64_t t0 = t_begin; t0 < t_end; t0 += kKeyChunk) {
    const int64_t len = std::min(kKeyChunk, t_end - t0);
    // Rows whose range meets the chunk: ends and begins are non-decreasing, so a contiguous run,
    // and the keys any of them needs are [ja, jb) of the chunk.
    int64_t ra = r0, rb = r1;
    while (ra < r1 && ends[ra] <= t0) ++ra;
    while (rb > ra && begins[rb - 1] >= t0 + len) --rb;
    if (ra >= rb) continue;
    const int64_t ja = std::max(begins[ra], t0) - t0, jb = std::min(ends[rb - 1], t0 + len) - t0;
    chunk_starts(k, t0, len, g * dk, ksrc);
    chunk_rows(k.type, ksrc, len, dk, kbuf, kr);
    if (v_in_k) {
      std::copy_n(kr, len, vr);
    } else {
      chunk_starts(v, t0, len, g * dv, vsrc);
      chunk_rows(v.type, vsrc, len, dv, vbuf, vr);
    }
    const int64_t next_len = std::min(kKeyChunk, t_end - t0 - len);
    if (next_len > 0) {
      chunk_starts(k, t0 + len, next_len, g * dk, ksrc);
      prefetch_rows(ksrc, next_len, static_cast<int64_t>(kv_bytes(k.type, dk)));
      if (!v_in_k) {
        chunk_starts(v, t0 + len, next_len, g * dv, vsrc);
        prefetch_rows(vsrc, next_len, static_cast<int64_t>(kv_bytes(v.type, dv)));
      }
    }
    for (int64_t j = len; j < kKeyChunk; ++j) kr[j] = kr[0];  // padding keys of the last tile
    const int64_t ka = ja & ~int64_t{kTileKeys - 1};
    for (int64_t j = ka; j < jb; j += kTileKeys) {
      int64_t x = 0;
      for (; x + 2 <= nvec; x += 2) score_tile<2>(qt + x * kLanes, np, kr + j, dk, scale, sc + j * np + x * kLanes);
      if (x < nvec) score_tile<1>(qt + x * kLanes, np, kr + j, dk, scale, sc + j * np + x * kLanes);
    }
    // Online softmax, 16 queries at a time, over their own keys of [ja, jb). A chunk inside
    // every row's range (most of a causal prompt's) needs no mask: its padding lanes (zero
    // queries) get probabilities too, in sums that are never read.
    const bool full = begins[r1 - 1] <= t0 && ends[r0] >= t0 + len;
    for (int64_t x = 0; x < nvec; ++x) {
      const __m512i vlo = _mm512_load_si512(lo + x * kLanes), vhi = _mm512_load_si512(hi + x * kLanes);
      auto in_range = [&](__m512i t) { return _mm512_cmple_epi32_mask(vlo, t) & _mm512_cmplt_epi32_mask(t, vhi); };
      __m512 cm = neg_inf;
      for (int64_t j = ja; j < jb; ++j) {
        const __m512i t = _mm512_set1_epi32(static_cast<int32_t>(t0 + j));
        const __mmask16 in = full ? __mmask16{0xFFFF} : in_range(t);
        cm = _mm512_mask_max_ps(cm, in, cm, _mm512_load_ps(sc + j * np + x * kLanes));
      }
      const __m512 m_old = _mm512_load_ps(mx + x * kLanes);
      const __m512 m = _mm512_max_ps(m_old, cm);
      // Lanes whose max grew rescale their sums by e^(old - new) (0 on their first keys, whose
      // old max is -inf); the others, including lanes with no key here, keep them.
      const __mmask16 grew = _mm512_cmp_ps_mask(m, m_old, _CMP_GT_OQ);
      const __m512 c = _mm512_mask_blend_ps(
          grew, one,
          _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(m_old, neg_inf, _CMP_NEQ_OQ), exp16(_mm512_sub_ps(m_old, m))));
      _mm512_store_ps(mx + x * kLanes, m);
      _mm512_store_ps(corr + x * kLanes, c);
      __m512 sum = _mm512_setzero_ps();
      for (int64_t j = ja; j < jb; ++j) {
        const __m512i t = _mm512_set1_epi32(static_cast<int32_t>(t0 + j));
        const __mmask16 in = full ? __mmask16{0xFFFF} : in_range(t);
        float* sj = sc + j * np + x * kLanes;
        const __m512 p = _mm512_maskz_mov_ps(in, exp16(_mm512_sub_ps(_mm512_load_ps(sj), m)));
        _mm512_store_ps(sj, p);
        sum = _mm512_add_ps(sum, p);
      }
      _mm512_store_ps(l + x * kLanes, _mm512_fmadd_ps(_mm512_load_ps(l + x * kLanes), c, sum));
    }
    // Values: tiles of 2 x 16 queries x 8 dims over the keys [ja, jb).
    for (int64_t x = 0; x < nvec; x += 2) {
      const bool pair = x + 2 <= nvec;
      int64_t e = 0;
      for (; e + kTileDims <= dv; e += kTileDims) {
        if (pair) {
          value_tile<2, kTileDims>(ot + x * kLanes, np, sc + x * kLanes, corr + x * kLanes, vr, ja, jb, e);
        } else {
          value_tile<1, kTileDims>(ot + x * kLanes, np, sc + x * kLanes, corr + x * kLanes, vr, ja, jb, e);
        }
      }
      for (; e < dv; ++e) {
        if (pair) {
          value_tile<2, 1>(ot + x * kLanes, np, sc + x * kLanes, corr + x * kLanes, vr, ja, jb, e);
        } else {
          value_tile<1, 1>(ot + x * kLanes, np, sc + x * kLanes, corr + x * kLanes, vr, ja, jb, e);
        }
      }
    }
  }
  // Normalised outputs: ot's 16 x 16 blocks transposed back in registers, the dims past a
  // multiple of 16 one by one.
  for (int64_t i = 0; i < np; ++i) l[i] = l[i] > 0 ? 1.0f / l[i] : 0.0f;
  for (int64_t x = 0; x < nvec; ++x) {
    for (int64_t e0 = 0; e0 < dv16; e0 += kLanes) {
      __m512 r[16];
      for (int64_t d = 0; d < kLanes; ++d) r[d] = _mm512_load_ps(ot + (e0 + d) * np + x * kLanes);
      transpose16(r);
      for (int64_t i = 0; i < kLanes && x * kLanes + i < nq; ++i)
        _mm512_storeu_ps(output(x * kLanes + i) + e0, _mm512_mul_ps(r[i], _mm512_set1_ps(l[x * kLanes + i])));
    }
  }
  for (int64_t i = 0; i < nq; ++i)
    for (int64_t e = dv16; e < dv; ++e) output(i)[e] = ot[e * np + i] * l[i];
}

}  // namespace owl::kernels::avx512vnni
