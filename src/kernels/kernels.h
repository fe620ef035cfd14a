// The arithmetic every model uses. Each kernel has a scalar reference; fast
// paths (AVX2/FMA/F16C) are chosen once at start-up from CPUID.
// Layout conventions: activations are row-major float32 [n_rows][n]; a weight
// W is a TensorView with ne = {in, out} (ggml order), i.e. `out` stored rows.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace owl::kernels {

// dst[0..n) = the n elements of one stored row of type t (n a multiple of the block size).
void dequantize_row(DType t, const void* src, float* dst, int64_t n);

// Y[r][o] = sum_i W[o][i] * X[r][i] for r < n_rows, o < out. X has W.ne[0] columns.
// Split over the default thread pool by output rows.
void matmul(const TensorView& W, const float* X, int64_t n_rows, float* Y);

// The 2-D matrix number i2 of a 3-D stack (e.g. expert i2 of ffn_*_exps).
TensorView matrix_slice(const TensorView& W, int64_t i2);

}  // namespace owl::kernels
