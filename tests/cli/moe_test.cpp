// `owl logits` end to end on the MoE golden models: the medium prompt's logits (max |Δ| <= 1e-3,
// F32 KV cache) and its 16 greedy ids (every golden top-2 margin of these cases is >= 2.9e-3,
// far above the engine's ~2e-5 error, so all 16 must be equal).
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "test_util.h"

namespace owl {
namespace {

class MoeCli : public ::testing::TestWithParam<const char*> {};

TEST_P(MoeCli, LogitsAndGreedyIdsMatchTheGolden) {
  const std::string dir = std::string("golden/") + GetParam() + "/";
  const auto meta = nlohmann::json::parse(test::read_file(test::shared_path(dir + "f32.cases.json")));
  const auto& c = meta["cases"][1];
  ASSERT_EQ(c["name"], "medium");
  std::string ids;
  for (int t : c["tokens"].get<std::vector<int>>()) ids += (ids.empty() ? "" : ",") + std::to_string(t);
  const std::string out = test::temp_dir() + "/logits.f32";
  const auto r = test::run_owl({"logits", test::shared_path(dir + "f32.gguf"), "--tokens", ids, "--out", out,
                                "--greedy", "16", "--threads", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out).get<std::vector<int>>(), c["greedy"].get<std::vector<int>>());
  const auto ours = test::read_f32(out);
  const auto gold = test::read_f32(test::shared_path(dir + c["logits_file"].get<std::string>()));
  ASSERT_EQ(ours.size(), gold.size());
  double max_abs = 0;
  for (size_t i = 0; i < gold.size(); ++i)
    max_abs = std::max(max_abs, static_cast<double>(std::fabs(ours[i] - gold[i])));
  EXPECT_LE(max_abs, 1e-3);
}

INSTANTIATE_TEST_SUITE_P(Files, MoeCli, ::testing::Values("deepseek-v3", "qwen3moe", "glm4moe"),
                         [](const ::testing::TestParamInfo<const char*>& i) {
                           std::string s = i.param;
                           for (char& ch : s)
                             if (ch == '-') ch = '_';
                           return s;
                         });

}  // namespace
}  // namespace owl
