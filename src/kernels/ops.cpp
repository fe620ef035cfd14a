// Scalar reference implementations of the row kernels.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "base/error.h"
#include "kernels/kernels.h"

namespace owl::kernels {

float fp16_to_fp32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      int e = -1;
      do {
        ++e;
        man <<= 1;
      } while (!(man & 0x400));
      bits = sign | static_cast<uint32_t>(127 - 15 - e) << 23 | (man & 0x3ff) << 13;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | man << 13;
  } else {
    bits = sign | (exp + 127 - 15) << 23 | man << 13;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t fp32_to_fp16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000;
  uint32_t absx = x & 0x7fffffff;
  if (absx >= 0x7f800000) return static_cast<uint16_t>(sign | 0x7c00 | (absx > 0x7f800000 ? 0x200 : 0));
  if (absx >= 0x477ff000) return static_cast<uint16_t>(sign | 0x7c00);  // overflow -> inf
  if (absx < 0x38800000) {  // subnormal or zero in f16
    // Subnormal f16: value in units of 2^-24, rounded to nearest even by nearbyint.
    float scaled = std::ldexp(f < 0 ? -f : f, 24);
    uint32_t q = static_cast<uint32_t>(std::nearbyint(scaled));
    return static_cast<uint16_t>(sign | q);
  }
  uint32_t e = (absx >> 23) - 127 + 15, m = absx & 0x7fffff;
  uint32_t h = e << 10 | m >> 13;
  uint32_t rem = m & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) ++h;  // round to nearest even (carries into exp)
  return static_cast<uint16_t>(sign | h);
}

void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  float s = 1.0f / std::sqrt(static_cast<float>(ss / static_cast<double>(n)) + eps);
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * s * (w ? w[i] : 1.0f);
}

void layer_norm(const float* x, const float* w, const float* b, float* y, int64_t n, float eps) {
  double mean = 0, var = 0;
  for (int64_t i = 0; i < n; ++i) mean += x[i];
  mean /= static_cast<double>(n);
  for (int64_t i = 0; i < n; ++i) var += (x[i] - mean) * (x[i] - mean);
  var /= static_cast<double>(n);
  float s = 1.0f / std::sqrt(static_cast<float>(var) + eps);
  for (int64_t i = 0; i < n; ++i)
    y[i] = static_cast<float>(x[i] - mean) * s * (w ? w[i] : 1.0f) + (b ? b[i] : 0.0f);
}

void softmax(float* x, int64_t n) {
  float mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, x[i]);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void silu(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] / (1.0f + std::exp(-x[i]));
}

void gelu(float* x, int64_t n) {
  const float k = 0.7978845608028654f;  // sqrt(2/pi)
  for (int64_t i = 0; i < n; ++i) {
    float v = x[i];
    x[i] = 0.5f * v * (1.0f + std::tanh(k * (v + 0.044715f * v * v * v)));
  }
}

void swiglu(const float* gate, const float* up, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void add(const float* a, const float* b, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}

void scale_add(float* y, const float* x, float s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += s * x[i];
}

void rope(float* x, int64_t n_heads, int64_t head_dim, int64_t n_rot, int64_t pos, const float* inv_freq,
          RopePairing pairing, float mscale) {
  const int64_t half = n_rot / 2;
  for (int64_t i = 0; i < half; ++i) {
    float theta = static_cast<float>(pos) * inv_freq[i];
    float c = std::cos(theta) * mscale, s = std::sin(theta) * mscale;
    for (int64_t h = 0; h < n_heads; ++h) {
      float* hx = x + h * head_dim;
      int64_t a = pairing == RopePairing::Norm ? 2 * i : i;
      int64_t b = pairing == RopePairing::Norm ? 2 * i + 1 : i + half;
      float x0 = hx[a], x1 = hx[b];
      hx[a] = x0 * c - x1 * s;
      hx[b] = x0 * s + x1 * c;
    }
  }
}

namespace {
inline const void* kv_row(const KVSpan& s, int64_t t) {
  size_t esz = s.type == DType::F16 ? 2 : 4;
  const uint8_t* page = static_cast<const uint8_t*>(s.pages[t / s.page_tokens]);
  return page + static_cast<size_t>((t % s.page_tokens) * s.row_stride) * esz;
}
inline float kv_at(const KVSpan& s, const void* row, int64_t i) {
  return s.type == DType::F16 ? fp16_to_fp32(static_cast<const uint16_t*>(row)[i]) : static_cast<const float*>(row)[i];
}
}  // namespace

void attention(const float* q, int64_t n_head, int64_t n_head_kv, int64_t dk, int64_t dv, const KVSpan& k,
               const KVSpan& v, int64_t kv_begin, int64_t kv_end, float scale, float* out) {
  if ((k.type != DType::F32 && k.type != DType::F16) || (v.type != DType::F32 && v.type != DType::F16))
    throw Error("attention: KV cache type must be F32 or F16");
  const int64_t group = n_head / n_head_kv;
  std::vector<float> acc(static_cast<size_t>(dv));
  for (int64_t h = 0; h < n_head; ++h) {
    const int64_t g = h / group;
    const float* qh = q + h * dk;
    float m = -INFINITY, l = 0;
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (int64_t t = kv_begin; t < kv_end; ++t) {
      const void* kr = kv_row(k, t);
      float s = 0;
      for (int64_t i = 0; i < dk; ++i) s += qh[i] * kv_at(k, kr, g * dk + i);
      s *= scale;
      float m_new = std::max(m, s);
      float corr = std::exp(m - m_new), p = std::exp(s - m_new);
      l = l * corr + p;
      const void* vr = kv_row(v, t);
      for (int64_t i = 0; i < dv; ++i) acc[i] = acc[i] * corr + p * kv_at(v, vr, g * dv + i);
      m = m_new;
    }
    float inv = l > 0 ? 1.0f / l : 0.0f;
    for (int64_t i = 0; i < dv; ++i) out[h * dv + i] = acc[i] * inv;
  }
}

void top_k(const float* x, int64_t n, int64_t k, int32_t* idx) {
  std::vector<int32_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  k = std::min(k, n);
  std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
    return x[a] > x[b] || (x[a] == x[b] && a < b);
  });
  std::copy(order.begin(), order.begin() + k, idx);
}

}  // namespace owl::kernels
