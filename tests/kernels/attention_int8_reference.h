// The scalar reference of attention() for one query token where the fast kernel scores Q8_0/
// Q4_0 keys in the integer domain (AVX-512 VNNI, src/kernels/attention_int8_keys.h), written
// from the rule, not from the kernel: each query head quantised to int8 per 32-value block
// (amax = max |x|, d = amax / 127, q = round-to-nearest-even(x * (127 / amax))), each key block's
// dot product summed exactly in integers (Q4_0's nibbles minus 8), then score = sum over blocks of
// (d_key * d_query) * isum; softmax and the values (dequantised, f32) as the exact reference.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/kernels.h"
#include "tensor/fp16.h"
#include "tensor/quants.h"

namespace owl::test {

// Whether attention() under `isa` takes the integer key dot for a K/V cache of these types.
inline bool int8_query(kernels::Isa isa, DType k, DType v) {
  return isa == kernels::Isa::Avx512Vnni && k == v && (k == DType::Q8_0 || k == DType::Q4_0);
}

// How far the int8 query may move attention's outputs from exact f32 attention over the same
// cache, absolute (outputs are convex combinations of N(0,1) values): about twice the worst
// measured over the decode tests' N(0,1) queries and caches (0.0040 over the GQA cases, dk
// 32-128; 0.0053 over MLA's 576-value rows; Q8_0 and Q4_0 alike, as the query's rounding
// dominates).
constexpr double kInt8QueryBound = 1e-2;

inline void attention_int8_query_reference(const float* q, int64_t n_head, int64_t n_head_kv, int64_t dk, int64_t dv,
                                           const kernels::KVSpan& k, const kernels::KVSpan& v, int64_t begin,
                                           int64_t end, float scale, float* out) {
  const int64_t group = n_head / n_head_kv, nb = dk / kQK;
  std::vector<int32_t> qi(static_cast<size_t>(dk));
  std::vector<float> dq(static_cast<size_t>(nb)), vr(static_cast<size_t>(dv)), acc(static_cast<size_t>(dv));
  for (int64_t h = 0; h < n_head; ++h) {
    const int64_t g = h / group;
    const float* x = q + h * dk;
    for (int64_t b = 0; b < nb; ++b) {
      float amax = 0;
      for (int64_t i = 0; i < kQK; ++i) amax = std::max(amax, std::fabs(x[b * kQK + i]));
      const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
      dq[static_cast<size_t>(b)] = amax / 127.0f;
      for (int64_t i = 0; i < kQK; ++i)
        qi[static_cast<size_t>(b * kQK + i)] = static_cast<int32_t>(std::nearbyint(x[b * kQK + i] * id));
    }
    float m = -INFINITY, l = 0;
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (int64_t t = begin; t < end; ++t) {
      const uint8_t* row = kernels::kv_row(k, t, g * dk);
      float s = 0;
      for (int64_t b = 0; b < nb; ++b) {
        const int32_t* qb = qi.data() + b * kQK;
        int32_t isum = 0;
        float d = 0;
        if (k.type == DType::Q8_0) {
          const auto& blk = reinterpret_cast<const BlockQ8_0*>(row)[b];
          d = f16_to_f32(blk.d);
          for (int i = 0; i < kQK; ++i) isum += qb[i] * blk.qs[i];
        } else {
          const auto& blk = reinterpret_cast<const BlockQ4_0*>(row)[b];
          d = f16_to_f32(blk.d);
          for (int i = 0; i < kQK / 2; ++i)
            isum += qb[i] * ((blk.qs[i] & 15) - 8) + qb[i + kQK / 2] * ((blk.qs[i] >> 4) - 8);
        }
        s += d * dq[static_cast<size_t>(b)] * static_cast<float>(isum);
      }
      s *= scale;
      const float m_new = std::max(m, s);
      const float corr = std::exp(m - m_new), p = std::exp(s - m_new);
      l = l * corr + p;
      dequantize_row_ref(v.type, kernels::kv_row(v, t, g * dv), vr.data(), dv);
      for (int64_t i = 0; i < dv; ++i)
        acc[static_cast<size_t>(i)] = acc[static_cast<size_t>(i)] * corr + p * vr[static_cast<size_t>(i)];
      m = m_new;
    }
    const float inv = l > 0 ? 1.0f / l : 0.0f;
    for (int64_t i = 0; i < dv; ++i) out[h * dv + i] = acc[static_cast<size_t>(i)] * inv;
  }
}

}  // namespace owl::test
