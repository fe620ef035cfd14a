// The Hadamard rotation of keys/values for quantised KV caches (model/kv_rotation.h): it is
// orthonormal and its own inverse (so attention over rotated rows equals attention over the
// originals), it applies only to quantised caches and suitable head dims, and it lowers the
// quantisation error of a head with a large channel.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "model/kv_rotation.h"
#include "tensor/quantize_kv.h"
#include "tensor/quants.h"

namespace owl {
namespace {

TEST(KvRotation, BlockSizeFollowsTheCacheTypeAndHeadDim) {
  EXPECT_EQ(kv_rotation_block(DType::F16, 128), 0);
  EXPECT_EQ(kv_rotation_block(DType::F32, 128), 0);
  EXPECT_EQ(kv_rotation_block(DType::Q8_0, 128), 128);
  EXPECT_EQ(kv_rotation_block(DType::Q4_0, 64), 64);
  EXPECT_EQ(kv_rotation_block(DType::Q4_0, 96), 32);   // 3 x 32
  EXPECT_EQ(kv_rotation_block(DType::Q8_0, 576), 64);  // 9 x 64
  EXPECT_EQ(kv_rotation_block(DType::Q8_0, 48), 0);    // not a multiple of 32
}

TEST(KvRotation, HadamardIsOrthonormalAndItsOwnInverse) {
  // Known answer: the first basis vector of size 4 goes to the constant 1/2 vector.
  std::vector<float> e = {1, 0, 0, 0, 0, 0, 0, 2};
  hadamard_blocks(e.data(), 8, 4);
  const std::vector<float> want = {0.5f, 0.5f, 0.5f, 0.5f, 1, -1, -1, 1};
  for (size_t i = 0; i < e.size(); ++i) EXPECT_FLOAT_EQ(e[i], want[i]) << i;
  // Dot products survive (q·k of attention scores), and twice is the identity.
  std::mt19937 rng(3);
  std::normal_distribution<float> g;
  std::vector<float> a(256), b(256);
  for (auto& v : a) v = g(rng);
  for (auto& v : b) v = g(rng);
  const std::vector<float> a0 = a;
  double dot0 = 0, dot1 = 0;
  for (size_t i = 0; i < a.size(); ++i) dot0 += static_cast<double>(a[i]) * b[i];
  hadamard_blocks(a.data(), 256, 128);
  hadamard_blocks(b.data(), 256, 128);
  for (size_t i = 0; i < a.size(); ++i) dot1 += static_cast<double>(a[i]) * b[i];
  EXPECT_NEAR(dot1, dot0, 1e-4 * std::fabs(dot0) + 1e-4);
  hadamard_blocks(a.data(), 256, 128);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], a0[i], 1e-5f) << i;
}

TEST(KvRotation, LowersTheQuantisationErrorOfAHeadWithALargeChannel) {
  // A 128-value head whose channel 5 is 20x the others (as trained models' keys have): quantised
  // as is, its block's scale is set by that channel; rotated, the channel is spread over all 128.
  std::mt19937 rng(5);
  std::normal_distribution<float> g;
  for (DType t : {DType::Q8_0, DType::Q4_0}) {
    SCOPED_TRACE(dtype_name(t));
    double plain = 0, rotated = 0;
    std::vector<uint8_t> row(row_bytes(t, 128));
    std::vector<float> y(128);
    for (int r = 0; r < 50; ++r) {
      std::vector<float> x(128);
      for (auto& v : x) v = g(rng);
      x[5] *= 20;
      quantize_kv_row(t, x.data(), row.data(), 128);
      plain += kv_row_squared_error(t, x.data(), row.data(), 128);
      // Rotate, quantise, rotate the dequantised row back, and measure in the original basis.
      std::vector<float> xr = x;
      hadamard_blocks(xr.data(), 128, 128);
      quantize_kv_row(t, xr.data(), row.data(), 128);
      dequantize_row_ref(t, row.data(), y.data(), 128);
      hadamard_blocks(y.data(), 128, 128);
      for (int i = 0; i < 128; ++i) rotated += std::pow(static_cast<double>(x[i]) - y[i], 2);
    }
    std::printf("[kv-rotation] %s squared error plain %.4g, rotated %.4g (%.2fx)\n", dtype_name(t), plain, rotated,
                rotated / plain);
    EXPECT_LT(rotated, 0.6 * plain);
  }
}

}  // namespace
}  // namespace owl
