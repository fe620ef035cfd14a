// gemm_f32: the scalar reference and the split of C's rows over the pool.
#include <algorithm>
#include <cmath>

#include "base/thread_pool.h"
#include "kernels/gemm_f32.h"
#include "kernels/kernels.h"

namespace owl::kernels {

namespace {

// Rows of C per pool task: a multiple of both ISAs' tile heights (6 and 12), so only the last
// task has narrower tiles. (An element's value never depends on the tiling: it is one chain.)
constexpr int64_t kRowsPerTask = 48;

void gemm_f32_reference(const GemmF32& g, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; ++i)
    for (int64_t j = 0; j < g.n; ++j) {
      float s = 0.0f;
      for (int64_t r = 0; r < g.k; ++r) s = std::fma(g.a[i * g.lda + r], g.b[r * g.ldb + j], s);
      g.c[i * g.ldc + j] = s;
    }
}

}  // namespace

void gemm_f32(const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc, int64_t m, int64_t k,
              int64_t n) {
  if (m <= 0 || n <= 0) return;
  const GemmF32 g{A, lda, B, ldb, C, ldc, k, n};
  const Isa isa = default_isa();
  auto rows = [&](int64_t i0, int64_t i1) {
    if (isa == Isa::Avx512Vnni) return avx512vnni::gemm_f32_rows(g, i0, i1);
    if (isa == Isa::Avx2) return avx2::gemm_f32_rows(g, i0, i1);
    gemm_f32_reference(g, i0, i1);
  };
  const int64_t n_tasks = (m + kRowsPerTask - 1) / kRowsPerTask;
  default_pool().parallel_for(
      n_tasks, [&](int64_t t0, int64_t t1, int) { rows(t0 * kRowsPerTask, std::min(m, t1 * kRowsPerTask)); });
}

}  // namespace owl::kernels
