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
// owl::quantize_kv_row (tensor/quantize_kv.h) for t Q8_0 or Q4_0 and n a multiple of 32, the
// same bytes, and model/kv_rotation.h's hadamard_blocks for blocks of at least 8, the same
// floats (kv_writer_avx2.cpp).
void quantize_kv_row(DType t, const float* src, void* dst, int64_t n);
void hadamard_blocks(float* x, int64_t n, int64_t block);
// One query token, heads [h0, h1) (head h reads KV head h / group) over tokens [t_begin, t_end):
// acc[h - h0][dv] = sum_t e^(s_t - mx) v_t (not normalised), mx[h - h0] the max of the scaled
// scores s_t, l[h - h0] = sum_t e^(s_t - mx). attention() merges such parts of the context.
void attention_decode_part(const float* q, int64_t group, int64_t h0, int64_t h1, int64_t dk, int64_t dv,
                           const KVSpan& k, const KVSpan& v, int64_t t_begin, int64_t t_end, float scale, float* acc,
                           float* mx, float* l);
// attention_rows for query rows [r0, r1) and the `group` heads reading kv head g; the rows'
// key ranges are [begins[r], ends[r]) (both non-decreasing in r).
void attention_rows_block(const float* q, int64_t n_head, int64_t group, int64_t g, int64_t r0, int64_t r1,
                          const int64_t* begins, const int64_t* ends, int64_t dk, int64_t dv, const KVSpan& k,
                          const KVSpan& v, float scale, float* out);

}  // namespace owl::kernels::avx2

namespace owl::kernels::avx512vnni {

// attention_decode_part on 16-float vectors (ops_avx512vnni.cpp; AVX-512 CPUs only).
void attention_decode_part(const float* q, int64_t group, int64_t h0, int64_t h1, int64_t dk, int64_t dv,
                           const KVSpan& k, const KVSpan& v, int64_t t_begin, int64_t t_end, float scale, float* acc,
                           float* mx, float* l);
// avx2::attention_rows_block with the block's queries across the lanes of 16-float vectors
// (attention_rows_avx512vnni.cpp; AVX-512 CPUs only). Rounds differently from the AVX2 block.
void attention_rows_block(const float* q, int64_t n_head, int64_t group, int64_t g, int64_t r0, int64_t r1,
                          const int64_t* begins, const int64_t* ends, int64_t dk, int64_t dv, const KVSpan& k,
                          const KVSpan& v, float scale, float* out);

}  // namespace owl::kernels::avx512vnni
