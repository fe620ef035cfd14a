// gemm_f32's register tiles (gemm_f32.h), written once for a vector type V and instantiated by
// ops_avx2.cpp (8 floats: 6 rows x 16 columns, 12 accumulators) and ops_avx512vnni.cpp (16
// floats: 12 rows x 32 columns, 24 accumulators). Per r, 2 loads of B's row and MR broadcasts of
// A feed 2 MR fused multiply-adds; columns past a multiple of 2 vectors (and of 1) and rows past
// a multiple of MR take narrower tiles of the same arithmetic: one FMA chain per element in r
// order, the same bits as gemm_f32.cpp's scalar reference. Internal linkage, like
// attention_simd.h: each file compiles its own copy with its own instruction-set flags.
#pragma once
#include <cmath>
#include <cstdint>

#include "kernels/gemm_f32.h"

namespace owl::kernels {
namespace {

template <class V>
struct GemmF32Tiles {
  static constexpr int64_t kW = V::kWidth;

  template <int MR, int NV>
  static void tile(const GemmF32& g, int64_t i, int64_t j) {
    typename V::Reg acc[MR][NV];
    for (int x = 0; x < MR; ++x)
      for (int v = 0; v < NV; ++v) acc[x][v] = V::zero();
    const float* a = g.a + i * g.lda;
    const float* b = g.b + j;
    for (int64_t r = 0; r < g.k; ++r, b += g.ldb) {
      typename V::Reg bv[NV];
      for (int v = 0; v < NV; ++v) bv[v] = V::load(b, v * kW);
      for (int x = 0; x < MR; ++x) {
        const typename V::Reg av = V::set1(a[x * g.lda + r]);
        for (int v = 0; v < NV; ++v) acc[x][v] = V::fmadd(av, bv[v], acc[x][v]);
      }
    }
    for (int x = 0; x < MR; ++x)
      for (int v = 0; v < NV; ++v) V::store(g.c + (i + x) * g.ldc + j + v * kW, acc[x][v]);
  }

  template <int MR>
  static void row_tiles(const GemmF32& g, int64_t i) {
    int64_t j = 0;
    for (; j + 2 * kW <= g.n; j += 2 * kW) tile<MR, 2>(g, i, j);
    for (; j + kW <= g.n; j += kW) tile<MR, 1>(g, i, j);
    for (; j < g.n; ++j)
      for (int x = 0; x < MR; ++x) {
        float s = 0.0f;
        for (int64_t r = 0; r < g.k; ++r) s = std::fma(g.a[(i + x) * g.lda + r], g.b[r * g.ldb + j], s);
        g.c[(i + x) * g.ldc + j] = s;
      }
  }

  // Rows [i0, i1) of C, MR rows at a time (MR + 1 vector registers of B and A beside the
  // 2 MR accumulators must fit the register file).
  template <int MR>
  static void rows(const GemmF32& g, int64_t i0, int64_t i1) {
    int64_t i = i0;
    for (; i + MR <= i1; i += MR) row_tiles<MR>(g, i);
    for (; i < i1; ++i) row_tiles<1>(g, i);
  }
};

}  // namespace
}  // namespace owl::kernels
