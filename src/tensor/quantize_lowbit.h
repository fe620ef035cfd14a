// The importance-weighted quantisers of the low-bit types (tensor-layer internal; the entry point
// is quantize_weight_row in quants.h). importance: one weight per element of the row, or null.
#pragma once
#include <cstdint>

#include "tensor/dtype.h"

namespace owl {

// IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S (quantize_codebook.cpp).
void quantize_codebook_row(DType t, const float* x, void* dst, int64_t n, const float* importance);
// Q2_K and Q3_K (quantize_k_low.cpp).
void quantize_q2_k_row(const float* x, void* dst, int64_t n, const float* importance);
void quantize_q3_k_row(const float* x, void* dst, int64_t n, const float* importance);

}  // namespace owl
