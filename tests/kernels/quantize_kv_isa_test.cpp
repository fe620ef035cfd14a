// The quantised KV cache's writer on each fast ISA: kernels::quantize_kv_row stores exactly the
// bytes of the reference (owl::quantize_kv_row), on cache-like rows and on the blocks where
// vector arithmetic could differ (wide dynamic range, ties, lone values, zeros, denormals), and
// kernels::hadamard_blocks gives exactly the scalar rotation's floats.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "base/error.h"
#include "kernels/kernels.h"
#include "tensor/quantize_kv.h"
#include "tensor/quants.h"
#include "matmul_test_util.h"

namespace owl {
namespace {

using kernels::Isa;

class QuantizeKvIsa : public testing::TestWithParam<Isa> {};
INSTANTIATE_TEST_SUITE_P(Isa, QuantizeKvIsa, testing::ValuesIn(test::fast_isas()), test::isa_test_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(QuantizeKvIsa);

// Rows of 32-value blocks, each block drawn from one of several shapes.
std::vector<float> awkward_row(std::mt19937& rng, int64_t n) {
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::uniform_int_distribution<int> shape(0, 7), exp2(-30, 30), grid(-127, 127);
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t b = 0; b < n; b += 32) {
    float* v = x.data() + b;
    const int s = shape(rng);
    const float scale = std::ldexp(1.0f, exp2(rng));
    for (int i = 0; i < 32; ++i) {
      switch (s) {
        case 0:  // Gaussian with a few large channels, like roped keys
          v[i] = g(rng) * scale * (i % 7 == 0 ? 6.0f : 1.0f);
          break;
        case 1:  // magnitudes over 2^-20 .. 2^20 of each other
          v[i] = g(rng) * std::ldexp(scale, exp2(rng) * 2 / 3);
          break;
        case 2:  // halves of integers: ties when the scale maps them onto the grid's half steps
          v[i] = (static_cast<float>(grid(rng)) + 0.5f) * scale;
          break;
        case 3:  // one nonzero value
          v[i] = i == 13 ? -scale : 0.0f;
          break;
        case 4:  // zeros
          v[i] = 0.0f;
          break;
        case 5:  // denormals and tiny values
          v[i] = g(rng) * 1e-41f;
          break;
        case 6:  // huge values (scales beyond fp16)
          v[i] = g(rng) * 1e30f;
          break;
        default:  // integers already on the grid
          v[i] = static_cast<float>(grid(rng)) * scale;
      }
    }
  }
  return x;
}

TEST_P(QuantizeKvIsa, SameBytesAsReference) {
  std::mt19937 rng(5);
  for (DType t : {DType::Q8_0, DType::Q4_0}) {
    SCOPED_TRACE(dtype_name(t));
    for (int64_t n : {32, 64, 1024, 32 * 200}) {
      for (int r = 0; r < 8; ++r) {
        const std::vector<float> x = awkward_row(rng, n);
        std::vector<uint8_t> want(row_bytes(t, n)), got(row_bytes(t, n), 0xA5);
        quantize_kv_row(t, x.data(), want.data(), n);
        test::WithIsa scope(GetParam());
        kernels::quantize_kv_row(t, x.data(), got.data(), n);
        for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(got[i], want[i]) << "n " << n << " byte " << i;
      }
    }
  }
}

TEST_P(QuantizeKvIsa, HadamardSameFloatsAsReference) {
  std::mt19937 rng(9);
  std::normal_distribution<float> g(0.0f, 3.0f);
  for (int64_t block : {4, 8, 16, 32, 64, 128, 256, 512}) {
    std::vector<float> x(static_cast<size_t>(4 * block));
    for (auto& v : x) v = g(rng);
    std::vector<float> want = x, got = x;
    {
      test::WithIsa scope(Isa::Scalar);
      kernels::hadamard_blocks(want.data(), 4 * block, block);
    }
    test::WithIsa scope(GetParam());
    kernels::hadamard_blocks(got.data(), 4 * block, block);
    for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(got[i], want[i]) << "block " << block << " at " << i;
  }
}

TEST_P(QuantizeKvIsa, BadTypeOrLengthIsAnError) {
  test::WithIsa scope(GetParam());
  std::vector<float> x(64, 1.0f);
  std::vector<uint8_t> row(256);
  EXPECT_THROW(kernels::quantize_kv_row(DType::Q8_0, x.data(), row.data(), 48), Error);
  EXPECT_THROW(kernels::quantize_kv_row(DType::F16, x.data(), row.data(), 64), Error);
}

}  // namespace
}  // namespace owl
