// gemm_f32's AVX-512 tiles: 12 rows x 32 columns of C in 24 accumulators; per r, 2 loads of B's
// row and 12 broadcasts of A feed 24 fused multiply-adds. Columns past a multiple of 32 (and of
// 16) and rows past a multiple of 12 take narrower tiles of the same arithmetic.
#include <immintrin.h>

#include <cmath>

#include "kernels/gemm_f32.h"

// GCC 12's AVX-512 intrinsics pass _mm512_undefined_ps() as the unused merge source, which
// -Wmaybe-uninitialized reports once they are inlined (GCC bug 105593; see ops_avx512vnni.cpp).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace owl::kernels::avx512vnni {

namespace {

template <int MR, int NV>
void tile(const GemmF32& g, int64_t i, int64_t j) {
  __m512 acc[MR][NV];
  for (int x = 0; x < MR; ++x)
    for (int v = 0; v < NV; ++v) acc[x][v] = _mm512_setzero_ps();
  const float* a = g.a + i * g.lda;
  const float* b = g.b + j;
  for (int64_t r = 0; r < g.k; ++r, b += g.ldb) {
    __m512 bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = _mm512_loadu_ps(b + v * 16);
    for (int x = 0; x < MR; ++x) {
      const __m512 av = _mm512_set1_ps(a[x * g.lda + r]);
      for (int v = 0; v < NV; ++v) acc[x][v] = _mm512_fmadd_ps(av, bv[v], acc[x][v]);
    }
  }
  for (int x = 0; x < MR; ++x)
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(g.c + (i + x) * g.ldc + j + v * 16, acc[x][v]);
}

template <int MR>
void row_tiles(const GemmF32& g, int64_t i) {
  int64_t j = 0;
  for (; j + 32 <= g.n; j += 32) tile<MR, 2>(g, i, j);
  for (; j + 16 <= g.n; j += 16) tile<MR, 1>(g, i, j);
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
  for (; i + 12 <= i1; i += 12) row_tiles<12>(g, i);
  for (; i < i1; ++i) row_tiles<1>(g, i);
}

}  // namespace owl::kernels::avx512vnni
