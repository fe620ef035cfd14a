// Internal to the kernels: AVX2/FMA/F16C versions of the row kernels in kernels.h (same
// contracts), called only when default_isa() is not Isa::Scalar.
#pragma once
#include <cstdint>

#include "kernels/kernels.h"

namespace owl::kernels::avx2 {

void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps);
void softmax(float* x, int64_t n);
void silu(float* x, int64_t n);
void swiglu(const float* gate, const float* up, float* y, int64_t n);
void add(const float* a, const float* b, float* y, int64_t n);
void scale_add(float* y, const float* x, float s, int64_t n);
void dequantize_f16(const uint16_t* src, float* dst, int64_t n);
void quantize_f16(const float* src, uint16_t* dst, int64_t n);  // round to nearest even, like f32_to_f16
// One head group: heads [h0, h1) all reading kv head g.
void attention_heads(const float* q, int64_t h0, int64_t h1, int64_t g, int64_t dk, int64_t dv, const KVSpan& k,
                     const KVSpan& v, int64_t kv_begin, int64_t kv_end, float scale, float* out);
// attention_rows for query rows [r0, r1) and the `group` heads reading kv head g; the rows'
// key ranges are [begins[r], ends[r]) (both non-decreasing in r).
void attention_rows_block(const float* q, int64_t n_head, int64_t group, int64_t g, int64_t r0, int64_t r1,
                          const int64_t* begins, const int64_t* ends, int64_t dk, int64_t dv, const KVSpan& k,
                          const KVSpan& v, float scale, float* out);

}  // namespace owl::kernels::avx2
