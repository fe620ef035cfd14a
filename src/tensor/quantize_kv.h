// The KV cache's quantiser: rows of keys/values (or DeepSeek's MLA latent) into Q8_0 or Q4_0
// blocks, the same bytes every reader of those formats understands (d * q, d an fp16 scale).
// Unlike quantize_row, which uses ggml's closed-form scale so that weight files match other
// engines byte for byte, a cached row is owl's alone: each block's scale is the one of a few
// candidates with the least squared error after a least-squares refit, and the integers are
// rounded against the fp16 scale actually stored. That costs a few hundred operations per 32
// values, once per token and layer, and lowers the cache's error (docs/BENCHMARKS.md,
// "Quantised KV cache").
#pragma once
#include <cstdint>

#include "tensor/dtype.h"

namespace owl {

// Quantises n floats (a multiple of 32) into n / 32 blocks of t (Q8_0 or Q4_0) at dst.
// Throws owl::Error for any other type or a bad n.
void quantize_kv_row(DType t, const float* src, void* dst, int64_t n);

// The squared error sum_i (x_i - value_i)^2 of n floats against their quantised row (t as above):
// what quantize_kv_row minimises block by block (tests compare it with quantize_row's).
double kv_row_squared_error(DType t, const float* x, const void* row, int64_t n);

}  // namespace owl
