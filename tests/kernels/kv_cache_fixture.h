// A paged KV cache filled with N(0,1) values for the attention tests (decode and prefill).
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernels/kernels.h"
#include "tensor/fp16.h"
#include "tensor/quants.h"

namespace owl::test {

inline std::vector<float> randn(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = nd(rng);
  return x;
}

// A paged cache of `row` values per token, stored as type t (one allocation per page, as the
// KV cache's pages are). Tokens [0, valid) hold N(0,1) values; tokens [valid, n_tokens) are
// poisoned with NaN (F32/F16 values, Q8_0/Q4_0 block scales), so reading past the range shows.
struct Cache {
  std::vector<std::vector<uint8_t>> pages;
  std::vector<const void*> ptrs;
  kernels::KVSpan span;
};

inline Cache make_cache(DType t, int64_t valid, int64_t n_tokens, int64_t page_tokens, int64_t row, uint32_t seed) {
  Cache c;
  const auto v = randn(n_tokens * row, seed);
  const uint16_t nan16 = f32_to_f16(std::numeric_limits<float>::quiet_NaN());
  const bool blocks = t == DType::Q8_0 || t == DType::Q4_0;
  for (int64_t p = 0; p * page_tokens < n_tokens; ++p) {
    c.pages.emplace_back(kernels::kv_bytes(t, page_tokens * row));
    for (int64_t j = 0; j < page_tokens && p * page_tokens + j < n_tokens; ++j) {
      const int64_t tok = p * page_tokens + j;
      uint8_t* dst = c.pages.back().data() + kernels::kv_bytes(t, j * row);
      const float* src = v.data() + tok * row;
      if (tok >= valid && blocks) {
        const size_t block = kernels::kv_bytes(t, kQK);
        for (int64_t b = 0; b < row / kQK; ++b) std::memcpy(dst + static_cast<size_t>(b) * block, &nan16, 2);
        continue;
      }
      std::vector<float> x(src, src + row);
      if (tok >= valid) std::fill(x.begin(), x.end(), std::numeric_limits<float>::quiet_NaN());
      if (t == DType::F32) {
        std::memcpy(dst, x.data(), x.size() * 4);
      } else if (t == DType::F16) {
        for (int64_t i = 0; i < row; ++i) {
          const uint16_t h = f32_to_f16(x[static_cast<size_t>(i)]);
          std::memcpy(dst + i * 2, &h, 2);
        }
      } else {
        quantize_row(t, x.data(), dst, row);
      }
    }
  }
  for (auto& p : c.pages) c.ptrs.push_back(p.data());
  c.span = {t, page_tokens, c.ptrs.data(), row};
  return c;
}

}  // namespace owl::test
