// AVX2/FMA/F16C row kernels and attention (compiled with -mavx2 -mfma -mf16c).
#include "kernels/ops_avx2.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "tensor/fp16.h"

namespace owl::kernels::avx2 {

namespace {

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline float hmax(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
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
  double ss = hsum(_mm256_add_ps(a0, a1));
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
  float mx = hmax(vm);
  for (; i < n; ++i) mx = std::max(mx, x[i]);
  const __m256 m8 = _mm256_set1_ps(mx);
  __m256 acc = _mm256_setzero_ps();
  i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), m8));
    _mm256_storeu_ps(x + i, e);
    acc = _mm256_add_ps(acc, e);
  }
  double sum = hsum(acc);
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

void dequantize_f16(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  for (; i < n; ++i) dst[i] = f16_to_f32(src[i]);
}

namespace {

inline const void* kv_row(const KVSpan& s, int64_t t) {
  const size_t esz = s.type == DType::F16 ? 2 : 4;
  const uint8_t* page = static_cast<const uint8_t*>(s.pages[t / s.page_tokens]);
  return page + static_cast<size_t>((t % s.page_tokens) * s.row_stride) * esz;
}

inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline float load1(const float* p) { return *p; }
inline float load1(const uint16_t* p) { return f16_to_f32(*p); }

template <class T>
float dot(const float* q, const T* k, int64_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load8(k + i), a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), load8(k + i + 8), a1);
  }
  for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load8(k + i), a0);
  float s = hsum(_mm256_add_ps(a0, a1));
  for (; i < n; ++i) s += q[i] * load1(k + i);
  return s;
}

// acc[0..n) = acc * corr + sum_j p[j] * v[j][0..n): accumulators stay in registers across the
// chunk's tokens (32 floats at a time), so acc is loaded and stored once per chunk.
template <class T>
void accumulate_v(float* acc, float corr, const float* p, const T* const* v, int64_t len, int64_t n) {
  const __m256 c = _mm256_set1_ps(corr);
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256 a0 = _mm256_mul_ps(c, _mm256_loadu_ps(acc + i)), a1 = _mm256_mul_ps(c, _mm256_loadu_ps(acc + i + 8));
    __m256 a2 = _mm256_mul_ps(c, _mm256_loadu_ps(acc + i + 16)), a3 = _mm256_mul_ps(c, _mm256_loadu_ps(acc + i + 24));
    for (int64_t j = 0; j < len; ++j) {
      const __m256 pj = _mm256_set1_ps(p[j]);
      const T* vr = v[j] + i;
      a0 = _mm256_fmadd_ps(pj, load8(vr), a0);
      a1 = _mm256_fmadd_ps(pj, load8(vr + 8), a1);
      a2 = _mm256_fmadd_ps(pj, load8(vr + 16), a2);
      a3 = _mm256_fmadd_ps(pj, load8(vr + 24), a3);
    }
    _mm256_storeu_ps(acc + i, a0);
    _mm256_storeu_ps(acc + i + 8, a1);
    _mm256_storeu_ps(acc + i + 16, a2);
    _mm256_storeu_ps(acc + i + 24, a3);
  }
  for (; i + 8 <= n; i += 8) {
    __m256 a0 = _mm256_mul_ps(c, _mm256_loadu_ps(acc + i));
    for (int64_t j = 0; j < len; ++j) a0 = _mm256_fmadd_ps(_mm256_set1_ps(p[j]), load8(v[j] + i), a0);
    _mm256_storeu_ps(acc + i, a0);
  }
  for (; i < n; ++i) {
    float a = acc[i] * corr;
    for (int64_t j = 0; j < len; ++j) a += p[j] * load1(v[j] + i);
    acc[i] = a;
  }
}

constexpr int64_t kChunk = 64;  // tokens scored before the running max is updated

// Scores of 4 keys at once: s[k] = q . key[k] (n elements); one horizontal reduction for all 4.
template <class T>
void dot4(const float* q, const T* const* key, int64_t n, float* s) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 qv = _mm256_loadu_ps(q + i);
    a0 = _mm256_fmadd_ps(qv, load8(key[0] + i), a0);
    a1 = _mm256_fmadd_ps(qv, load8(key[1] + i), a1);
    a2 = _mm256_fmadd_ps(qv, load8(key[2] + i), a2);
    a3 = _mm256_fmadd_ps(qv, load8(key[3] + i), a3);
  }
  const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
  _mm_storeu_ps(s, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
  for (; i < n; ++i)
    for (int k = 0; k < 4; ++k) s[k] += q[i] * load1(key[k] + i);
}

template <class TK, class TV>
void attention_group(const float* q, int64_t h0, int64_t h1, int64_t g, int64_t dk, int64_t dv, const KVSpan& k,
                     const KVSpan& v, int64_t kv_begin, int64_t kv_end, float scale, float* out) {
  const int64_t nh = h1 - h0;
  thread_local std::vector<float> scratch;
  scratch.resize(static_cast<size_t>(nh * (dv + 2)));
  float* acc = scratch.data();
  float* m = acc + nh * dv;
  float* l = m + nh;
  std::fill(acc, acc + nh * dv, 0.0f);
  std::fill(m, m + nh, -INFINITY);
  std::fill(l, l + nh, 0.0f);
  alignas(32) float s[kChunk];
  const TK* kr[kChunk];
  const TV* vr[kChunk];
  for (int64_t t0 = kv_begin; t0 < kv_end; t0 += kChunk) {
    const int64_t len = std::min(kChunk, kv_end - t0);
    for (int64_t j = 0; j < len; ++j) {  // row addresses once per chunk, shared by the group's heads
      kr[j] = static_cast<const TK*>(kv_row(k, t0 + j)) + g * dk;
      vr[j] = static_cast<const TV*>(kv_row(v, t0 + j)) + g * dv;
    }
    for (int64_t h = 0; h < nh; ++h) {
      const float* qh = q + (h0 + h) * dk;
      int64_t j = 0;
      for (; j + 4 <= len; j += 4) dot4(qh, kr + j, dk, s + j);
      for (; j < len; ++j) s[j] = dot(qh, kr[j], dk);
      float cm = -INFINITY;
      for (j = 0; j < len; ++j) {
        s[j] *= scale;
        cm = std::max(cm, s[j]);
      }
      float corr = 1.0f;
      if (cm > m[h]) {
        corr = std::exp(m[h] - cm);  // 0 on the first chunk
        m[h] = cm;
      }
      const __m256 mm = _mm256_set1_ps(m[h]);
      for (j = 0; j + 8 <= len; j += 8) _mm256_store_ps(s + j, exp8(_mm256_sub_ps(_mm256_load_ps(s + j), mm)));
      for (; j < len; ++j) s[j] = std::exp(s[j] - m[h]);
      float lsum = 0;
      for (j = 0; j < len; ++j) lsum += s[j];
      accumulate_v(acc + h * dv, corr, s, vr, len, dv);
      l[h] = l[h] * corr + lsum;
    }
  }
  for (int64_t h = 0; h < nh; ++h) {
    const float inv = l[h] > 0 ? 1.0f / l[h] : 0.0f;
    for (int64_t i = 0; i < dv; ++i) out[(h0 + h) * dv + i] = acc[h * dv + i] * inv;
  }
}

}  // namespace

void attention_heads(const float* q, int64_t h0, int64_t h1, int64_t g, int64_t dk, int64_t dv, const KVSpan& k,
                     const KVSpan& v, int64_t kv_begin, int64_t kv_end, float scale, float* out) {
  const bool k16 = k.type == DType::F16, v16 = v.type == DType::F16;
  if (k16 && v16) return attention_group<uint16_t, uint16_t>(q, h0, h1, g, dk, dv, k, v, kv_begin, kv_end, scale, out);
  if (k16) return attention_group<uint16_t, float>(q, h0, h1, g, dk, dv, k, v, kv_begin, kv_end, scale, out);
  if (v16) return attention_group<float, uint16_t>(q, h0, h1, g, dk, dv, k, v, kv_begin, kv_end, scale, out);
  attention_group<float, float>(q, h0, h1, g, dk, dv, k, v, kv_begin, kv_end, scale, out);
}

}  // namespace owl::kernels::avx2
