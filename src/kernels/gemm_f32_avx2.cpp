// gemm_f32's AVX2 tiles: 6 rows x 16 columns of C in 12 accumulators; per r, 2 loads of B's row
// and 6 broadcasts of A feed 12 fused multiply-adds. Columns past a multiple of 16 (and of 8)
// and rows past a multiple of 6 take narrower tiles of the same arithmetic.
#include <immintrin.h>

#include <cmath>

#include "kernels/gemm_f32.h"

namespace owl::kernels::avx2 {

namespace {

template <int MR, int NV>
void tile(const GemmF32& g, int64_t i, int64_t j) {
  __m256 acc[MR][NV];
  for (int x = 0; x < MR; ++x)
    for (int v = 0; v < NV; ++v) acc[x][v] = _mm256_setzero_ps();
  const float* a = g.a + i * g.lda;
  const float* b = g.b + j;
  for (int64_t r = 0; r < g.k; ++r, b += g.ldb) {
    __m256 bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = _mm256_loadu_ps(b + v * 8);
    for (int x = 0; x < MR; ++x) {
      const __m256 av = _mm256_broadcast_ss(a + x * g.lda + r);
      for (int v = 0; v < NV; ++v) acc[x][v] = _mm256_fmadd_ps(av, bv[v], acc[x][v]);
    }
  }
  for (int x = 0; x < MR; ++x)
    for (int v = 0; v < NV; ++v) _mm256_storeu_ps(g.c + (i + x) * g.ldc + j + v * 8, acc[x][v]);
}

template <int MR>
void row_tiles(const GemmF32& g, int64_t i) {
  int64_t j = 0;
  for (; j + 16 <= g.n; j += 16) tile<MR, 2>(g, i, j);
  for (; j + 8 <= g.n; j += 8) tile<MR, 1>(g, i, j);
  for (; j < g.n; ++j)
    for (int x = 0; x < MR; ++x) {
      float s = 0.0f;
      for (int64_t r = 0; r < g.k; ++r) s = std::fma(g.a[(i + x) * g.lda + r], g.b[r * g.ldb + j], s);
      g.c[(i + x) * g.ldc + j] = s;
    }
}

}  // namespace

void gemm_f32_rows(const GemmF32& g, int64_t i0, int64_t i1) {
  int64_t i = i0;
  for (; i + 6 <= i1; i += 6) row_tiles<6>(g, i);
  for (; i < i1; ++i) row_tiles<1>(g, i);
}

}  // namespace owl::kernels::avx2
