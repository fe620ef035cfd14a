// Resident routed experts are packed on first use (model/lazy_experts.h): only the experts asked
// for get packed, each once (pack_all_lazy_experts packs the rest), and their products equal
// those of the stacks packed whole at load, bit for bit (the golden qwen3moe Q4_K_M file: Q4_K gate/up and Q6_K down
// stacks).
#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "kernels/kernels.h"
#include "model/lazy_experts.h"
#include "model/source.h"
#include "test_util.h"

namespace owl {
namespace {

std::vector<float> product(const kernels::Weight& w, const std::vector<float>& x, int64_t rows) {
  std::vector<float> y(static_cast<size_t>(rows * w.out()));
  kernels::matmul(w, x.data(), rows, y.data());
  return y;
}

TEST(LazyExperts, PacksOnlyTheExpertsAskedForAndEqualsPackingAtLoad) {
  auto src = open_gguf_source(test::shared_path("golden/qwen3moe/q4_k_m.gguf"));
  const char* names[3] = {"blk.1.ffn_gate_exps.weight", "blk.1.ffn_up_exps.weight", "blk.1.ffn_down_exps.weight"};
  std::array<TensorView, 3> sources;
  std::array<kernels::Weight, 3> packed, whole;
  for (int m = 0; m < 3; ++m) {
    sources[m] = *src->find(names[m]);
    packed[m] = kernels::prepare_weight_deferred(sources[m], src->prepare);
    whole[m] = kernels::prepare_weight(sources[m], src->prepare);
    ASSERT_TRUE(packed[m].packed()) << names[m];
  }
  const int64_t n_expert = sources[0].ne[2];
  ASSERT_GE(n_expert, 8);
  LazyExperts lazy(sources, packed, src->prepare);
  EXPECT_EQ(lazy.packed_count(), 0);
  const std::vector<int32_t> first = {5, 2, 5};  // a repeat is packed once
  lazy.ensure(first);
  EXPECT_EQ(lazy.packed_count(), 2);
  lazy.ensure(std::vector<int32_t>{2, 5});
  EXPECT_EQ(lazy.packed_count(), 2);
  // Experts of an expert split's share: ids counted from the share's first expert.
  lazy.ensure(std::vector<int32_t>{9}, 2);  // matrix 7
  EXPECT_EQ(lazy.packed_count(), 3);
  EXPECT_THROW(lazy.ensure(std::vector<int32_t>{static_cast<int32_t>(n_expert)}), Error);
  EXPECT_THROW(lazy.ensure(std::vector<int32_t>{1}, 2), Error);

  pack_all_lazy_experts();  // owl bench's: the rest of every live instance
  EXPECT_EQ(lazy.packed_count(), n_expert);

  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  for (const int64_t e : {2, 5, 7}) {
    for (int m = 0; m < 3; ++m) {
      std::vector<float> x(static_cast<size_t>(2 * sources[m].ne[0]));
      for (float& v : x) v = nd(rng);
      const auto want = product(kernels::matrix_slice(whole[m], e), x, 2);
      const auto got = product(kernels::matrix_slice(packed[m], e), x, 2);
      ASSERT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * sizeof(float))) << names[m] << " expert " << e;
    }
  }
}

}  // namespace
}  // namespace owl
