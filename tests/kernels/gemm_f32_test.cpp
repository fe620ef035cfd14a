// gemm_f32 (MLA's decompression of cached latents): every ISA gives the bits of one fused
// multiply-add chain per element in r order, for odd shapes, leading dimensions wider than the
// rows (the heads' columns of a K/V row) and any thread count; and the product is the product.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "base/thread_pool.h"
#include "kernels/kernels.h"
#include "kv_cache_fixture.h"
#include "matmul_test_util.h"

namespace owl {
namespace {

struct Shape {
  int64_t m, k, n, lda, ldb, ldc;
};

// MLA V2/V3's head (kv_lora 512 -> nope or v 128, into a row of 3 heads of 192), odd sizes past
// every tile edge (12 x 32, 6 x 16, single columns and rows), a single element, k = 0.
const Shape kShapes[] = {{40, 512, 128, 576, 128, 3 * 192},
                         {13, 7, 5, 7, 5, 5},
                         {25, 33, 70, 40, 71, 80},
                         {49, 16, 48, 16, 48, 48},
                         {1, 1, 1, 1, 1, 1},
                         {12, 64, 32, 64, 32, 32},
                         {7, 0, 9, 1, 9, 9}};

// C as the contract defines it: each element one std::fma chain over r from 0.
std::vector<float> by_definition(const Shape& s, const std::vector<float>& a, const std::vector<float>& b,
                                 const std::vector<float>& c0) {
  std::vector<float> c = c0;
  for (int64_t i = 0; i < s.m; ++i)
    for (int64_t j = 0; j < s.n; ++j) {
      float acc = 0.0f;
      for (int64_t r = 0; r < s.k; ++r) acc = std::fma(a[i * s.lda + r], b[r * s.ldb + j], acc);
      c[i * s.ldc + j] = acc;
    }
  return c;
}

struct Inputs {
  std::vector<float> a, b, c0;
};
Inputs inputs(const Shape& s) {
  // C's other columns (between n and ldc) hold a marker that must stay.
  return {test::randn(std::max<int64_t>(1, s.m * s.lda), 41), test::randn(std::max<int64_t>(1, s.k * s.ldb), 42),
          std::vector<float>(static_cast<size_t>(s.m * s.ldc), 1234.5f)};
}

std::vector<float> run(const Shape& s, const Inputs& in) {
  std::vector<float> c = in.c0;
  kernels::gemm_f32(in.a.data(), s.lda, in.b.data(), s.ldb, c.data(), s.ldc, s.m, s.k, s.n);
  return c;
}

std::string name(const Shape& s) {
  return std::to_string(s.m) + "x" + std::to_string(s.k) + "x" + std::to_string(s.n) + " ld " + std::to_string(s.lda) +
         "/" + std::to_string(s.ldb) + "/" + std::to_string(s.ldc);
}

TEST(GemmF32, EveryIsaGivesTheBitsOfTheDefinition) {
  for (const Shape& s : kShapes) {
    const Inputs in = inputs(s);
    const auto want = by_definition(s, in.a, in.b, in.c0);
    for (kernels::Isa isa : kernels::available_isas()) {
      test::WithIsa scope(isa);
      const auto got = run(s, in);
      ASSERT_EQ(0, std::memcmp(got.data(), want.data(), want.size() * sizeof(float)))
          << name(s) << " " << kernels::isa_name(isa);
    }
  }
}

TEST(GemmF32, SameBitsForAnyThreadCount) {
  const int restore = default_pool().size();
  const Shape s{200, 96, 80, 100, 80, 90};  // rows over several of the pool's tasks
  const Inputs in = inputs(s);
  set_default_threads(1);
  const auto one = run(s, in);
  for (int threads : {2, 3, 5}) {
    set_default_threads(threads);
    const auto many = run(s, in);
    ASSERT_EQ(0, std::memcmp(one.data(), many.data(), one.size() * sizeof(float))) << threads << " threads";
  }
  set_default_threads(restore);
}

TEST(GemmF32, IsTheMatrixProduct) {
  const Shape s{30, 512, 128, 512, 128, 128};
  const Inputs in = inputs(s);
  const auto c = run(s, in);
  for (int64_t i = 0; i < s.m; ++i)
    for (int64_t j = 0; j < s.n; ++j) {
      double want = 0;
      for (int64_t r = 0; r < s.k; ++r)
        want += static_cast<double>(in.a[i * s.lda + r]) * static_cast<double>(in.b[r * s.ldb + j]);
      // Sums of 512 products of N(0,1) values (magnitude ~23): float rounding well under 1e-3.
      ASSERT_NEAR(c[i * s.ldc + j], want, 1e-3) << i << " " << j;
    }
}

}  // namespace
}  // namespace owl
