// The codebook formats IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS and IQ3_S: known answers for
// hand-built blocks (the bit positions of indices, signs, scales and deltas), and hostile blocks:
// every stored index, even all bits set, stays inside its grid (the largest index reads the last
// entry) and random bytes dequantise to finite values within the format's range.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/kernels.h"
#include "tensor/fp16.h"
#include "tensor/iq_grids.h"
#include "tensor/quants.h"

namespace owl {
namespace {

constexpr uint16_t kHalf = 0x3800;  // fp16 0.5
constexpr uint16_t kOne = 0x3C00;   // fp16 1.0

template <class B>
std::vector<float> deq(DType t, const B& b) {
  std::vector<float> y(kQKK), fast(kQKK);
  dequantize_row_ref(t, &b, y.data(), kQKK);
  kernels::dequantize_row(t, &b, fast.data(), kQKK);
  EXPECT_EQ(0, std::memcmp(y.data(), fast.data(), y.size() * 4)) << dtype_name(t);
  return y;
}

int byte_of(uint64_t e, int j) { return static_cast<int>((e >> (8 * j)) & 0xFF); }
int sbyte_of(uint64_t e, int j) { return static_cast<int8_t>((e >> (8 * j)) & 0xFF); }
float sgn(uint32_t bits, int j) { return (bits >> j) & 1 ? -1.0f : 1.0f; }

// IQ1_M keeps its fp16 scale in the top nibbles of its 4 scale words.
void set_iq1m_d(BlockIQ1_M& b, uint16_t d) {
  for (int k = 0; k < 4; ++k)
    b.scales[2 * k + 1] = static_cast<uint8_t>((b.scales[2 * k + 1] & 0x0F) | (((d >> (4 * k)) & 0xF) << 4));
}

TEST(IQKat, IQ2_XXS) {
  BlockIQ2_XXS b{};
  b.d = kOne;
  // Sub-block 1: index bytes 5, 0, 200, 255; group 0 signs 0b11, group 2 signs 0b1 (odd: element 7
  // negative too), scale 3 (ls 7).
  const uint32_t idx = 5u | 200u << 16 | 255u << 24, aux = 3u | 1u << 14 | 3u << 28;
  std::memcpy(&b.qs[4], &idx, 4);
  std::memcpy(&b.qs[6], &aux, 4);
  auto y = deq(DType::IQ2_XXS, b);
  EXPECT_FLOAT_EQ(y[0], 1.0f);  // index 0 = all 8s, ls 1: 8 / 8
  for (int j = 0; j < 8; ++j) {
    EXPECT_FLOAT_EQ(y[32 + j], 7.0f / 8 * byte_of(kIQ2XXSGrid[5], j) * (j < 2 ? -1 : 1)) << j;
    EXPECT_FLOAT_EQ(y[48 + j], 7.0f / 8 * byte_of(kIQ2XXSGrid[200], j) * (j == 0 || j == 7 ? -1 : 1)) << j;
    EXPECT_FLOAT_EQ(y[56 + j], 7.0f / 8 * byte_of(kIQ2XXSGrid[255], j)) << j;
  }
}

TEST(IQKat, IQ2_XS) {
  BlockIQ2_XS b{};
  b.d = kOne;
  b.qs[4 * 2 + 3] = static_cast<uint16_t>(511 | 64 << 9);  // signs 0b1000000: elements 6 and 7 negative
  b.scales[2] = 0x52;                                      // ls 5 for elements 64-79, 11 for 80-95
  auto y = deq(DType::IQ2_XS, b);
  for (int j = 0; j < 8; ++j) {
    EXPECT_FLOAT_EQ(y[64 + j], 5.0f / 8 * byte_of(kIQ2XSGrid[0], j)) << j;
    EXPECT_FLOAT_EQ(y[88 + j], 11.0f / 8 * byte_of(kIQ2XSGrid[511], j) * (j >= 6 ? -1 : 1)) << j;
  }
}

TEST(IQKat, IQ2_S) {
  BlockIQ2_S b{};
  b.d = kOne;
  b.qs[4 + 2] = 0x34;
  b.qh[1] = 3 << 4;         // group 2 of sub-block 1: index high bits 3 -> 0x334
  b.qs[32 + 4 + 2] = 0xA5;  // its sign byte
  b.scales[1] = 0x30;       // ls 1 for elements 32-47, 7 for 48-63
  auto y = deq(DType::IQ2_S, b);
  for (int j = 0; j < 8; ++j) EXPECT_FLOAT_EQ(y[48 + j], 7.0f / 8 * byte_of(kIQ2SGrid[0x334], j) * sgn(0xA5, j)) << j;
  EXPECT_FLOAT_EQ(y[32], 1.0f / 8 * byte_of(kIQ2SGrid[0], 0));
}

TEST(IQKat, IQ3_XXS) {
  BlockIQ3_XXS b{};
  b.d = kHalf;
  b.qs[24 + 2] = 17;
  b.qs[24 + 3] = 255;
  const uint32_t aux = 5u << 7 | 6u << 28;  // sub-block 3: group 1 signs 0b101, scale 6 (ls 13)
  std::memcpy(&b.qs[64 + 12], &aux, 4);
  auto y = deq(DType::IQ3_XXS, b);
  for (int j = 0; j < 4; ++j) {
    EXPECT_FLOAT_EQ(y[104 + j], 0.5f * 13 / 4 * byte_of(kIQ3XXSGrid[17], j) * sgn(5, j)) << j;
    EXPECT_FLOAT_EQ(y[108 + j], 0.5f * 13 / 4 * byte_of(kIQ3XXSGrid[255], j)) << j;
  }
}

TEST(IQKat, IQ3_S) {
  BlockIQ3_S b{};
  b.d = kOne;
  b.qs[40 + 2] = 0x80;
  b.qs[40 + 3] = 0x01;
  b.qh[5] = 1 << 2;  // 9th bit of the first index of group 1 of sub-block 5 -> 0x180
  b.signs[20 + 1] = 0x0F;
  b.scales[2] = 4 << 4;  // sub-block 5: ls 9
  auto y = deq(DType::IQ3_S, b);
  for (int j = 0; j < 4; ++j) {
    EXPECT_FLOAT_EQ(y[168 + j], -9.0f * byte_of(kIQ3SGrid[0x180], j)) << j;
    EXPECT_FLOAT_EQ(y[172 + j], 9.0f * byte_of(kIQ3SGrid[1], j)) << j;
  }
  EXPECT_FLOAT_EQ(y[0], 1.0f * byte_of(kIQ3SGrid[0], 0));
}

TEST(IQKat, IQ1_S) {
  BlockIQ1_S b{};
  b.d = kHalf;
  b.qs[24 + 2] = 0x9A;
  b.qh[6] = static_cast<uint16_t>(5 << 6 | 4 << 12 | 0x8000);  // group 2 high bits 5, ls 9, delta -1/8
  auto y = deq(DType::IQ1_S, b);
  for (int j = 0; j < 8; ++j) {
    EXPECT_FLOAT_EQ(y[208 + j], 0.5f * 9 * (sbyte_of(kIQ1SGrid[5 << 8 | 0x9A], j) - 0.125f)) << j;
    EXPECT_FLOAT_EQ(y[192 + j], 0.5f * 9 * (sbyte_of(kIQ1SGrid[0], j) - 0.125f)) << j;
  }
  EXPECT_FLOAT_EQ(y[0], 0.5f * (sbyte_of(kIQ1SGrid[0], 0) + 0.125f));
}

TEST(IQKat, IQ1_M) {
  BlockIQ1_M b{};
  // Sub-block 3 (scale word 1, bits 6-11): ls 5 for elements 96-111, 13 for 112-127.
  const uint16_t w1 = 2 << 6 | 6 << 9;
  std::memcpy(&b.scales[2], &w1, 2);
  set_iq1m_d(b, 0x4000);  // d = 2
  b.qs[12 + 3] = 0x11;
  b.qh[7] = 0xE0;  // group 3: index high bits 6, delta -1/8
  auto y = deq(DType::IQ1_M, b);
  for (int j = 0; j < 8; ++j) {
    EXPECT_FLOAT_EQ(y[120 + j], 2.0f * 13 * (sbyte_of(kIQ1SGrid[6 << 8 | 0x11], j) - 0.125f)) << j;
    EXPECT_FLOAT_EQ(y[96 + j], 2.0f * 5 * (sbyte_of(kIQ1SGrid[0], j) + 0.125f)) << j;
  }
}

// All bits set: every index is the largest its bits can hold and must read the grid's last entry
// (all signs negative, the largest scale).
TEST(IQHostile, AllBitsSetReadTheLastGridEntry) {
  auto check = [](DType t, const std::vector<float>& y, auto expected) {
    for (int i = 0; i < kQKK; ++i) ASSERT_FLOAT_EQ(y[i], expected(i)) << dtype_name(t) << " element " << i;
  };
  {
    BlockIQ2_XXS b;
    std::memset(&b, 0xFF, sizeof b);
    b.d = kOne;
    check(DType::IQ2_XXS, deq(DType::IQ2_XXS, b), [](int i) { return -31.0f / 8 * byte_of(kIQ2XXSGrid[255], i % 8); });
  }
  {
    BlockIQ2_XS b;
    std::memset(&b, 0xFF, sizeof b);
    b.d = kOne;
    check(DType::IQ2_XS, deq(DType::IQ2_XS, b), [](int i) { return -31.0f / 8 * byte_of(kIQ2XSGrid[511], i % 8); });
  }
  {
    BlockIQ2_S b;
    std::memset(&b, 0xFF, sizeof b);
    b.d = kOne;
    check(DType::IQ2_S, deq(DType::IQ2_S, b), [](int i) { return -31.0f / 8 * byte_of(kIQ2SGrid[1023], i % 8); });
  }
  {
    BlockIQ3_XXS b;
    std::memset(&b, 0xFF, sizeof b);
    b.d = kOne;
    check(DType::IQ3_XXS, deq(DType::IQ3_XXS, b), [](int i) { return -31.0f / 4 * byte_of(kIQ3XXSGrid[255], i % 4); });
  }
  {
    BlockIQ3_S b;
    std::memset(&b, 0xFF, sizeof b);
    b.d = kOne;
    check(DType::IQ3_S, deq(DType::IQ3_S, b), [](int i) { return -31.0f * byte_of(kIQ3SGrid[511], i % 4); });
  }
  {
    BlockIQ1_S b;
    std::memset(&b, 0xFF, sizeof b);
    b.d = kOne;
    check(DType::IQ1_S, deq(DType::IQ1_S, b),
          [](int i) { return 15.0f * (sbyte_of(kIQ1SGrid[2047], i % 8) - 0.125f); });
  }
  {
    BlockIQ1_M b;
    std::memset(&b, 0xFF, sizeof b);
    set_iq1m_d(b, kOne);
    check(DType::IQ1_M, deq(DType::IQ1_M, b),
          [](int i) { return 15.0f * (sbyte_of(kIQ1SGrid[2047], i % 8) - 0.125f); });
  }
}

// Random bytes (with d = 1): finite, within d * largest scale * largest level, for every type,
// through both the dequantiser and matmul.
TEST(IQHostile, RandomBlocksStayInRange) {
  struct Case {
    DType t;
    float max_abs;
  };
  const Case cases[] = {{DType::IQ2_XXS, 31.0f / 8 * 43}, {DType::IQ2_XS, 31.0f / 8 * 43},
                        {DType::IQ2_S, 31.0f / 8 * 43},   {DType::IQ3_XXS, 31.0f / 4 * 62},
                        {DType::IQ3_S, 31.0f * 15},       {DType::IQ1_S, 15 * 1.125f},
                        {DType::IQ1_M, 15 * 1.125f}};
  std::mt19937 rng(7);
  for (const Case& c : cases) {
    const size_t bs = info(c.t).type_size;
    const int nb = 64;
    std::vector<uint8_t> bytes(bs * nb);
    for (auto& v : bytes) v = static_cast<uint8_t>(rng());
    for (int i = 0; i < nb; ++i) {
      uint8_t* b = bytes.data() + bs * i;
      if (c.t == DType::IQ1_M)
        set_iq1m_d(*reinterpret_cast<BlockIQ1_M*>(b), kOne);
      else
        std::memcpy(b, &kOne, 2);
    }
    std::vector<float> y(static_cast<size_t>(kQKK) * nb);
    dequantize_row_ref(c.t, bytes.data(), y.data(), kQKK * nb);
    for (float v : y) {
      ASSERT_TRUE(std::isfinite(v)) << dtype_name(c.t);
      ASSERT_LE(std::fabs(v), c.max_abs) << dtype_name(c.t);
    }
    // The same bytes as a 4 x 4096 weight through matmul.
    TensorView w;
    w.name = "hostile";
    w.type = c.t;
    w.n_dims = 2;
    w.ne = {kQKK * nb / 4, 4, 1, 1};
    w.data = bytes.data();
    std::vector<float> x(static_cast<size_t>(w.ne[0]), 0.5f), out(4);
    kernels::matmul(w, x.data(), 1, out.data());
    for (int o = 0; o < 4; ++o) {
      double s = 0;
      for (int64_t i = 0; i < w.ne[0]; ++i) s += 0.5 * y[static_cast<size_t>(o * w.ne[0] + i)];
      EXPECT_NEAR(out[o], s, 1e-3 * (1 + std::fabs(s))) << dtype_name(c.t);  // x = 0.5 is exact in Q8_K
    }
  }
}

}  // namespace
}  // namespace owl
