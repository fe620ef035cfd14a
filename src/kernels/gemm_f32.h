// Internal to the kernels: the register tiles of gemm_f32 (kernels.h). Each computes
// C[i][j] = sum_r A[i][r] * B[r][j] for its rows [i0, i1) and every column, one fused
// multiply-add chain per element in r order starting from 0, so all of them (and the scalar
// reference in gemm_f32.cpp) give the same bits.
#pragma once
#include <cstdint>

namespace owl::kernels {

struct GemmF32 {
  const float* a;
  int64_t lda;
  const float* b;
  int64_t ldb;
  float* c;
  int64_t ldc, k, n;
};

namespace avx2 {
// 8-lane vectors: tiles of 6 rows x 16 columns (gemm_f32_simd.h in ops_avx2.cpp).
void gemm_f32_rows(const GemmF32& g, int64_t i0, int64_t i1);
}  // namespace avx2

namespace avx512vnni {
// 16-lane vectors: tiles of 12 rows x 32 columns (gemm_f32_simd.h in ops_avx512vnni.cpp; AVX-512 CPUs only).
void gemm_f32_rows(const GemmF32& g, int64_t i0, int64_t i1);
}  // namespace avx512vnni

}  // namespace owl::kernels
