// `owl quantize f32.gguf OUT TYPE --imatrix imatrix.dat` for the nine low-bit types on the golden
// models that llama.cpp quantised the same way (README "Low-bit files"):
//  * every tensor gets the type llama-quantize gave it in the golden file (the mix rules);
//  * the mean KL of our file's logits against the F32 golden logits is at most 1.25 x that of
//    llama.cpp's file of the same type (its logits against the same F32 logits: both from the
//    golden data), pooled over the prompt rows of the three prompts.
// The weights are random, so KL is large for every type (1-8 nats); the ratio is the check.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "quantize_test_util.h"

using namespace owl;
using namespace owl::test;
using namespace owl::test::quant;

namespace {

struct Param {
  const char* model;
  const char* type;
};

std::string param_name(const ::testing::TestParamInfo<Param>& p) {
  std::string s = std::string(p.param.model) + "_" + p.param.type;
  for (auto& ch : s)
    if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return s;
}

// The prompt rows of a golden low-bit set ([type].cases.json: positions "all", no greedy ids).
std::vector<float> golden_rows(const std::string& model, const std::string& type,
                               std::vector<std::vector<int32_t>>* tokens) {
  const std::string dir = shared_path("golden/" + model);
  const auto j = nlohmann::json::parse(read_file(dir + "/" + type + ".cases.json"));
  std::vector<float> all;
  for (const auto& c : j.at("cases")) {
    if (tokens) tokens->push_back(c.at("tokens").get<std::vector<int32_t>>());
    const auto l = read_f32(dir + "/" + c.at("logits_file").get<std::string>());
    all.insert(all.end(), l.begin(), l.end());
  }
  return all;
}

class QuantizeLowbit : public ::testing::TestWithParam<Param> {};

TEST_P(QuantizeLowbit, AsGoodAsLlamaCpp) {
  const std::string model = GetParam().model, type = GetParam().type;
  const std::string dir = shared_path("golden/" + model);
  const std::string out = scratch() + "/" + model + "-" + type + "-imatrix.gguf";
  RunResult r = run_owl({"quantize", dir + "/f32.gguf", out, type, "--imatrix", dir + "/imatrix.dat"});
  ASSERT_EQ(r.exit_code, 0) << r.err;

  // The same type for every tensor as llama-quantize chose.
  auto ours = gguf::File::open(out);
  auto gold = gguf::File::open(dir + "/" + type + ".gguf");
  ASSERT_EQ(ours->tensor_infos().size(), gold->tensor_infos().size());
  for (const auto& g : gold->tensor_infos()) {
    const gguf::TensorInfo* o = ours->find_info(g.name);
    ASSERT_TRUE(o) << g.name;
    EXPECT_EQ(dtype_name(o->type), std::string(dtype_name(g.type))) << g.name;
  }

  // KL against the F32 logits: ours, and llama.cpp's file's.
  const nlohmann::json f32_cases = nlohmann::json::parse(read_file(dir + "/f32.cases.json"));
  const int64_t n_vocab = f32_cases.at("n_vocab").get<int64_t>();
  std::vector<float> f32_rows;
  for (const auto& c : f32_cases.at("cases")) {
    const auto l = read_f32(dir + "/" + c.at("logits_file").get<std::string>());
    f32_rows.insert(f32_rows.end(), l.begin(), l.end());
  }
  std::vector<std::vector<int32_t>> prompts;
  const std::vector<float> llama_rows = golden_rows(model, type, &prompts);
  const Agreement theirs = compare(llama_rows, f32_rows, n_vocab);

  auto source = open_model_source(out);
  auto m = Model::load(*source);
  std::vector<float> our_rows;
  for (const auto& t : prompts) {
    GoldenCase c;
    c.tokens = t;
    const auto l = prompt_logits(*m, c);
    our_rows.insert(our_rows.end(), l.begin(), l.end());
  }
  const Agreement mine = compare(our_rows, f32_rows, n_vocab);
  std::printf("  %s/%s vs F32: owl %.3f, llama.cpp %.3f (ratio %.2f)\n", model.c_str(), type.c_str(), mine.mean_kl,
              theirs.mean_kl, mine.mean_kl / theirs.mean_kl);
  EXPECT_LE(mine.mean_kl, 1.25 * theirs.mean_kl) << "owl " << describe(mine) << "; llama.cpp " << describe(theirs);
}

std::vector<Param> all_params() {
  std::vector<Param> v;
  for (const char* m : {"qwen3", "qwen3moe", "deepseek-v3"})
    for (const char* t : {"iq1_s", "iq1_m", "iq2_xxs", "iq2_xs", "iq2_s", "iq3_xxs", "iq3_s", "q2_k", "q3_k_m"})
      v.push_back({m, t});
  return v;
}

INSTANTIATE_TEST_SUITE_P(Golden, QuantizeLowbit, ::testing::ValuesIn(all_params()), param_name);

}  // namespace
