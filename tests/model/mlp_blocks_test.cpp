// blocks::mlp runs a long batch in blocks of rows whose SwiGLU hidden activations fit its
// scratch budget (kMlpScratchFloats; small ones here): the outputs are the same bits as one call
// over all rows (the matmuls compute a row the same whatever the rows beside it), and the
// scratch holds one block.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "kernels/kernels.h"
#include "kernels/matmul_test_util.h"
#include "model/blocks.h"

namespace owl {
namespace {

struct Mlp {
  test::Weights gate, up, down;
  blocks::MlpWeights w;
};

Mlp make_mlp(int64_t d, int64_t ff) {
  Mlp m;
  m.gate = test::make_weights(DType::Q4_K, d, ff, 1);
  m.up = test::make_weights(DType::Q4_K, d, ff, 2);
  m.down = test::make_weights(DType::Q4_K, ff, d, 3);
  m.w.gate.w = kernels::prepare_weight(m.gate.view);
  m.w.up.w = kernels::prepare_weight(m.up.view);
  m.w.down.w = kernels::prepare_weight(m.down.view);
  return m;
}

std::vector<float> random_rows(int64_t n, int64_t d) {
  std::mt19937 rng(7);
  std::normal_distribution<float> g;
  std::vector<float> x(static_cast<size_t>(n * d));
  for (float& v : x) v = g(rng);
  return x;
}

void expect_same_as_one_call(int64_t d, int64_t ff, int64_t n, int64_t max_floats, int64_t block_rows) {
  const Mlp m = make_mlp(d, ff);
  const std::vector<float> x = random_rows(n, d);
  // One call over all rows: the unblocked computation.
  std::vector<float> hidden(static_cast<size_t>(n * ff)), want(static_cast<size_t>(n * d));
  kernels::matmul_swiglu(m.w.gate.w, m.w.up.w, x.data(), n, hidden.data());
  kernels::matmul(m.w.down.w, hidden.data(), n, want.data());
  blocks::MlpScratch ws;
  ws.max_floats = max_floats;
  std::vector<float> got(want.size());
  blocks::mlp(m.w, x.data(), n, ws, got.data());
  EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)), 0)
      << "ff " << ff << ", " << n << " rows";
  EXPECT_EQ(static_cast<int64_t>(ws.gate.size()), block_rows * ff) << "ff " << ff << ", " << n << " rows";
}

TEST(MlpBlocks, LongBatchGoesInEvenBlocksWithTheSameBits) {
  // 100 rows of 512 hidden floats fit: 250 rows go as 3 blocks of 84, 84 and 82.
  expect_same_as_one_call(256, 512, 250, 100 * 512, 84);
}

TEST(MlpBlocks, BlocksKeepTheirLeastRows) {
  // 32 rows would fit, but a block may take kMlpMinRows (64): 150 rows as 3 x 50.
  static_assert(blocks::kMlpMinRows == 64);
  expect_same_as_one_call(256, 512, 150, 32 * 512, 50);
}

TEST(MlpBlocks, ShortBatchIsOneCall) {
  expect_same_as_one_call(256, 1024, 70, blocks::kMlpScratchFloats, 70);
  expect_same_as_one_call(256, 512, 100, 100 * 512, 100);
}

}  // namespace
}  // namespace owl
