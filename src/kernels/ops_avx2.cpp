// AVX2/FMA/F16C row kernels and attention (compiled with -mavx2 -mfma -mf16c).
#include "kernels/ops_avx2.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "kernels/attention_simd.h"
#include "tensor/fp16.h"
#include "tensor/quants.h"

namespace owl::kernels::avx2 {

namespace {

inline __m256 silu8(__m256 x) {
  const __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), x));
  return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

inline float silu1(float x) { return x / (1.0f + std::exp(-x)); }

}  // namespace

void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 v0 = _mm256_loadu_ps(x + i), v1 = _mm256_loadu_ps(x + i + 8);
    a0 = _mm256_fmadd_ps(v0, v0, a0);
    a1 = _mm256_fmadd_ps(v1, v1, a1);
  }
  double ss = hsum8(_mm256_add_ps(a0, a1));
  for (; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float s = 1.0f / std::sqrt(static_cast<float>(ss / static_cast<double>(n)) + eps);
  const __m256 vs = _mm256_set1_ps(s);
  i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), vs);
    if (w) v = _mm256_mul_ps(v, _mm256_loadu_ps(w + i));
    _mm256_storeu_ps(y + i, v);
  }
  for (; i < n; ++i) y[i] = x[i] * s * (w ? w[i] : 1.0f);
}

void softmax(float* x, int64_t n) {
  if (n <= 0) return;
  __m256 vm = _mm256_set1_ps(-INFINITY);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(x + i));
  float mx = hmax8(vm);
  for (; i < n; ++i) mx = std::max(mx, x[i]);
  const __m256 m8 = _mm256_set1_ps(mx);
  __m256 acc = _mm256_setzero_ps();
  i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), m8));
    _mm256_storeu_ps(x + i, e);
    acc = _mm256_add_ps(acc, e);
  }
  double sum = hsum8(acc);
  for (; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const float inv = static_cast<float>(1.0 / sum);
  const __m256 vi = _mm256_set1_ps(inv);
  i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), vi));
  for (; i < n; ++i) x[i] *= inv;
}

void silu(float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, silu8(_mm256_loadu_ps(x + i)));
  for (; i < n; ++i) x[i] = silu1(x[i]);
}

void swiglu(const float* gate, const float* up, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_mul_ps(silu8(_mm256_loadu_ps(gate + i)), _mm256_loadu_ps(up + i)));
  for (; i < n; ++i) y[i] = silu1(gate[i]) * up[i];
}

void add(const float* a, const float* b, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
  for (; i < n; ++i) y[i] = a[i] + b[i];
}

void scale_add(float* y, const float* x, float s, int64_t n) {
  const __m256 vs = _mm256_set1_ps(s);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(vs, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += s * x[i];
}

void quantize_f16(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; ++i) dst[i] = f32_to_f16(src[i]);
}

void dequantize_f16(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  for (; i < n; ++i) dst[i] = f16_to_f32(src[i]);
}

namespace {

// Element types of cached rows the kernels read: float, uint16_t (F16) and QuantBlocks (Q8_0 or
// Q4_0, the span's type says which). Rows of F32/F16 are read in place; quantised rows are
// dequantised a chunk at a time into a small buffer, once per chunk and KV head, and shared by
// the group's query heads (Loaded<T> is the element type the arithmetic then sees).
struct QuantBlocks {};
template <class T>
struct Loaded {
  using type = T;
};
template <>
struct Loaded<QuantBlocks> {
  using type = float;
};
template <class T>
using LoadedT = typename Loaded<T>::type;

// rows[j] = element `offset` of row t0 + j, for j < len (n elements each).
template <class T>
void fetch_rows(const KVSpan& s, int64_t t0, int64_t len, int64_t offset, int64_t n, float* buf,
                const LoadedT<T>** rows) {
  for (int64_t j = 0; j < len; ++j) {
    if constexpr (std::is_same_v<T, QuantBlocks>) {
      dequantize_kv_blocks(s.type, kv_row(s, t0 + j, offset), buf + j * n, n);
      rows[j] = buf + j * n;
    } else {
      rows[j] = reinterpret_cast<const T*>(kv_row(s, t0 + j, offset));
    }
  }
}

inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }

// 8 floats in 16 registers, for DecodeAttention (attention_simd.h).
struct Vec8 {
  using Reg = __m256;
  static constexpr int64_t kWidth = 8;
  static constexpr int kTileQ = 2;  // 2 queries x 4 keys = 8 accumulators, + 4 keys + 1 query
  static Reg zero() { return _mm256_setzero_ps(); }
  static Reg load(const float* p, int64_t e) { return _mm256_loadu_ps(p + e); }
  static Reg load(const uint16_t* p, int64_t e) { return load8(p + e); }
  static Reg load(const BlockQ8_0* p, int64_t e) {
    const BlockQ8_0& b = p[e / kQK];
    const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b.qs + e % kQK));
    return _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(b.d)), _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)));
  }
  // Q4_0 element i < 16 is the low nibble of byte i, element 16 + i its high nibble (minus 8).
  static Reg load(const BlockQ4_0* p, int64_t e) {
    const BlockQ4_0& b = p[e / kQK];
    const int64_t i = e % kQK;
    __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b.qs + (i & 15)));
    if (i >= 16) q = _mm_srli_epi16(q, 4);
    const __m256i v = _mm256_cvtepu8_epi32(_mm_and_si128(q, _mm_set1_epi8(0x0F)));
    return _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(b.d)),
                         _mm256_cvtepi32_ps(_mm256_sub_epi32(v, _mm256_set1_epi32(8))));
  }
  static Reg set1(float x) { return _mm256_set1_ps(x); }
  static Reg mul(Reg a, Reg b) { return _mm256_mul_ps(a, b); }
  static Reg fmadd(Reg a, Reg b, Reg c) { return _mm256_fmadd_ps(a, b, c); }
  static void store(float* p, Reg a) { _mm256_storeu_ps(p, a); }
  static __m128 sum4(Reg a0, Reg a1, Reg a2, Reg a3) { return hsum8x4(a0, a1, a2, a3); }
  // Keeps loaded keys in registers: GCC otherwise folds their loads into every query's FMA,
  // loading each key once per query and making the loop load-bound.
  static void keep(Reg& a, Reg& b, Reg& c, Reg& d) { __asm__("" : "+x"(a), "+x"(b), "+x"(c), "+x"(d)); }
};

// ---- many query rows of one sequence (prefill) ----
// A block of query vectors (rows x the heads of one KV group) meets a chunk of keys at a time:
// the chunk's K/V rows are converted to F32 once per block (when the cache is F16), scored in
// register tiles of 2 queries x 4 keys, and accumulated into the block's outputs in tiles of
// 2 queries x 32 values, so every loaded key or value feeds several queries.

// Keys per chunk: their F32 K and V (32 KB at head dim 128) stay in L1 (64 keys were slower).
constexpr int64_t kKeyChunk = 32;

// s[i][j..j+4) = q[i] . key[j + c] for 4 keys and NQ queries (n elements each); one horizontal
// reduction gives each query's 4 scores.
template <int NQ>
inline void qk_tile(const float* const* q, const float* const* key, int64_t n, float* const* s, int64_t j) {
  __m256 a[NQ][4];
  for (int i = 0; i < NQ; ++i)
    for (int c = 0; c < 4; ++c) a[i][c] = _mm256_setzero_ps();
  const float *k0 = key[j], *k1 = key[j + 1], *k2 = key[j + 2], *k3 = key[j + 3];
  int64_t e = 0;
  for (; e + 8 <= n; e += 8) {
    __m256 v0 = _mm256_loadu_ps(k0 + e), v1 = _mm256_loadu_ps(k1 + e);
    __m256 v2 = _mm256_loadu_ps(k2 + e), v3 = _mm256_loadu_ps(k3 + e);
    // Keeps the keys in registers: GCC otherwise folds their loads into every query's FMA,
    // loading each key NQ times and making the loop load-bound.
    __asm__("" : "+x"(v0), "+x"(v1), "+x"(v2), "+x"(v3));
    for (int i = 0; i < NQ; ++i) {
      const __m256 qv = _mm256_loadu_ps(q[i] + e);
      a[i][0] = _mm256_fmadd_ps(qv, v0, a[i][0]);
      a[i][1] = _mm256_fmadd_ps(qv, v1, a[i][1]);
      a[i][2] = _mm256_fmadd_ps(qv, v2, a[i][2]);
      a[i][3] = _mm256_fmadd_ps(qv, v3, a[i][3]);
    }
  }
  for (int i = 0; i < NQ; ++i) {
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a[i][0], a[i][1]), _mm256_hadd_ps(a[i][2], a[i][3]));
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    if (e < n) {
      alignas(16) float t[4];
      _mm_store_ps(t, r);
      for (int64_t x = e; x < n; ++x) {
        t[0] += q[i][x] * k0[x];
        t[1] += q[i][x] * k1[x];
        t[2] += q[i][x] * k2[x];
        t[3] += q[i][x] * k3[x];
      }
      r = _mm_load_ps(t);
    }
    _mm_storeu_ps(s[i] + j, r);
  }
}

// o[i][e..e+8*NV) = corr[i] * o[i][..] + sum_{c in [c0, c1)} p[i][c] * vr[c][..] for NQ queries.
template <int NQ, int NV>
inline void pv_tile(float* const* o, const float* const* p, const float* corr, const float* const* vr, int64_t c0,
                    int64_t c1, int64_t e) {
  __m256 a[NQ][NV];
  for (int i = 0; i < NQ; ++i) {
    const __m256 ci = _mm256_set1_ps(corr[i]);
    for (int x = 0; x < NV; ++x) a[i][x] = _mm256_mul_ps(ci, _mm256_loadu_ps(o[i] + e + 8 * x));
  }
  for (int64_t c = c0; c < c1; ++c) {
    __m256 vv[NV];
    for (int x = 0; x < NV; ++x) vv[x] = _mm256_loadu_ps(vr[c] + e + 8 * x);
    for (int i = 0; i < NQ; ++i) {
      const __m256 pi = _mm256_set1_ps(p[i][c]);
      for (int x = 0; x < NV; ++x) a[i][x] = _mm256_fmadd_ps(pi, vv[x], a[i][x]);
    }
  }
  for (int i = 0; i < NQ; ++i)
    for (int x = 0; x < NV; ++x) _mm256_storeu_ps(o[i] + e + 8 * x, a[i][x]);
}

template <int NQ>
void pv_rows(float* const* o, const float* const* p, const float* corr, const float* const* vr, int64_t c0, int64_t c1,
             int64_t n) {
  int64_t e = 0;
  for (; e + 32 <= n; e += 32) pv_tile<NQ, 4>(o, p, corr, vr, c0, c1, e);
  for (; e + 8 <= n; e += 8) pv_tile<NQ, 1>(o, p, corr, vr, c0, c1, e);
  for (; e < n; ++e)
    for (int i = 0; i < NQ; ++i) {
      float a = corr[i] * o[i][e];
      for (int64_t c = c0; c < c1; ++c) a += p[i][c] * vr[c][e];
      o[i][e] = a;
    }
}

// F32 rows of a chunk: pointers into the cache when it is F32, else into buf (converted).
template <class T>
void chunk_rows(const KVSpan& s, int64_t t0, int64_t len, int64_t offset, int64_t n, float* buf, const float** rows) {
  if constexpr (std::is_same_v<T, uint16_t>) {
    for (int64_t j = 0; j < len; ++j) {
      dequantize_f16(reinterpret_cast<const uint16_t*>(kv_row(s, t0 + j, offset)), buf + j * n, n);
      rows[j] = buf + j * n;
    }
  } else {
    fetch_rows<T>(s, t0, len, offset, n, buf, rows);
  }
}

// Asks for the next chunk's K or V rows while this chunk is computed (the rows of one head are
// a few hundred bytes strided by the whole cache row, which the hardware prefetchers miss).
template <class T>
void prefetch_chunk(const KVSpan& s, int64_t t0, int64_t len, int64_t offset, int64_t n) {
  for (int64_t j = 0; j < len; ++j) {
    const char* src = reinterpret_cast<const char*>(kv_row(s, t0 + j, offset));
    const auto bytes = static_cast<int64_t>(kv_bytes(s.type, n));
    for (int64_t b = 0; b < bytes; b += 64) _mm_prefetch(src + b, _MM_HINT_T1);
  }
}

template <class TK, class TV>
void rows_block(const float* q, int64_t n_head, int64_t group, int64_t g, int64_t r0, int64_t r1, const int64_t* begins,
                const int64_t* ends, int64_t dk, int64_t dv, const KVSpan& k, const KVSpan& v, float scale,
                float* out) {
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
    chunk_rows<TK>(k, t0, len, g * dk, dk, kbuf, kr);
    chunk_rows<TV>(v, t0, len, g * dv, dv, vbuf, vr);
    const int64_t next_len = std::min(kKeyChunk, t_end - t0 - len);
    if (next_len > 0) {
      prefetch_chunk<TK>(k, t0 + len, next_len, g * dk, dk);
      prefetch_chunk<TV>(v, t0 + len, next_len, g * dv, dv);
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
          qk_tile<2>(qp + i0, kr, dk, srow, j);
        } else {
          qk_tile<1>(qp + i0, kr, dk, srow, j);
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
      const float* prow[2] = {srow[0], srow[1]};
      if (nt == 2) {
        pv_rows<2>(orow, prow, cr, vr, tlo, thi, dv);
      } else {
        pv_rows<1>(orow, prow, cr, vr, tlo, thi, dv);
      }
    }
  }
  for (int64_t i = 0; i < nq; ++i) {
    const float inv = l[i] > 0 ? 1.0f / l[i] : 0.0f;
    float* o = out + ((r0 + i / group) * n_head + g * group + i % group) * dv;
    for (int64_t e = 0; e < dv; ++e) o[e] = acc[i * dv + e] * inv;
  }
}

// Calls f.template operator()<TK, TV>() with the element types of k's and v's rows.
template <class F>
void with_row_types(const KVSpan& k, const KVSpan& v, F&& f) {
  auto with_v = [&]<class TK>() {
    if (v.type == DType::F16) return f.template operator()<TK, uint16_t>();
    if (v.type == DType::F32) return f.template operator()<TK, float>();
    f.template operator()<TK, QuantBlocks>();
  };
  if (k.type == DType::F16) return with_v.template operator()<uint16_t>();
  if (k.type == DType::F32) return with_v.template operator()<float>();
  with_v.template operator()<QuantBlocks>();
}

}  // namespace

void attention_rows_block(const float* q, int64_t n_head, int64_t group, int64_t g, int64_t r0, int64_t r1,
                          const int64_t* begins, const int64_t* ends, int64_t dk, int64_t dv, const KVSpan& k,
                          const KVSpan& v, float scale, float* out) {
  with_row_types(k, v, [&]<class TK, class TV>() {
    rows_block<TK, TV>(q, n_head, group, g, r0, r1, begins, ends, dk, dv, k, v, scale, out);
  });
}

void attention_decode_part(const float* q, int64_t group, int64_t h0, int64_t h1, int64_t dk, int64_t dv,
                           const KVSpan& k, const KVSpan& v, int64_t t_begin, int64_t t_end, float scale, float* acc,
                           float* mx, float* l) {
  DecodeAttention<Vec8>::run(q, group, h0, h1, dk, dv, k, v, t_begin, t_end, scale, acc, mx, l);
}

}  // namespace owl::kernels::avx2
