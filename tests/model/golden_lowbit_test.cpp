// The low-bit GGUF files of ../shared/golden (README "Low-bit files"): qwen3 (dense), qwen3moe
// and deepseek-v3 (MoE) quantised by llama-quantize to IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S,
// IQ3_XXS, IQ3_S, Q2_K and Q3_K_M, against llama.cpp's logits of the same file (F32 KV cache,
// every position of the three prompts, the whole prompt in one forward call). The weights are
// random, so these test that the block formats and kernels compute what llama.cpp computes, not
// quality. Bounds (the README's): mean KL(golden ‖ ours) per prompt <= 0.02 (dense) / 0.03 (MoE),
// argmax agreement >= 90% pooled over the three prompts. A missing file fails the test.
// deepseek-v3 runs twice: with owl's default MLA form (a fresh prompt takes the expanded form) and
// with the absorbed form forced, which is what llama.cpp computes: the expanded form quantises
// other intermediates to Q8_K, so it lands 2-10x farther (worst mean KL 0.029 vs 0.017 at IQ2_XS).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <string>
#include <vector>

#include "golden_util.h"
#include "model/mla.h"

namespace owl::test {
namespace {

struct Param {
  const char* model;
  const char* quant;
  MlaForm mla = MlaForm::Auto;  // deepseek-v3: also run with the absorbed form forced
};

std::string param_name(const ::testing::TestParamInfo<Param>& p) {
  std::string s =
      std::string(p.param.model) + "_" + p.param.quant + (p.param.mla == MlaForm::Absorbed ? "_absorbed" : "");
  for (auto& ch : s)
    if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return s;
}

struct LowbitCase {
  std::string name;
  std::vector<int32_t> tokens;
  std::vector<float> logits;  // [n_tokens][n_vocab]
};

class GoldenLowbit : public ::testing::TestWithParam<Param> {};

TEST_P(GoldenLowbit, LogitsMatchLlamaCpp) {
  const Param prm = GetParam();
  const std::string dir = shared_path(std::string("golden/") + prm.model);
  const auto j = nlohmann::json::parse(read_file(dir + "/" + prm.quant + ".cases.json"));
  const int64_t n_vocab = j.at("n_vocab").get<int64_t>();
  std::vector<LowbitCase> cases;
  for (const auto& c : j.at("cases"))
    cases.push_back(
        {c.at("name").get<std::string>(), c.at("tokens").get<std::vector<int32_t>>(),
         read_f32(shared_path(std::string("golden/") + prm.model + "/" + c.at("logits_file").get<std::string>()))});
  ASSERT_EQ(cases.size(), 3u);

  auto source = open_model_source(shared_path(std::string("golden/") + prm.model + "/" + prm.quant + ".gguf"));
  source->mla_form = prm.mla;
  auto model = Model::load(*source);
  const bool dense = std::string(prm.model) == "qwen3";
  const double kl_bound = dense ? 0.02 : 0.03;
  const char* form = prm.mla == MlaForm::Absorbed ? " (absorbed MLA)" : "";

  std::vector<float> all_ours, all_golden;
  double worst_kl = 0;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    KVCacheOptions opt;
    opt.type = DType::F32;
    opt.n_ctx = 512;
    KVCache kv(model->kv_shape(), opt);
    Batch b;
    for (size_t i = 0; i < c.tokens.size(); ++i) b.add(c.tokens[i], static_cast<int64_t>(i), 0, true);
    auto l = model->forward(b, kv);
    const std::vector<float> ours(l.begin(), l.end());
    ASSERT_EQ(ours.size(), c.logits.size());
    const Agreement a = compare(ours, c.logits, n_vocab);
    std::printf("  %s/%s%s %s: %s\n", prm.model, prm.quant, form, c.name.c_str(), describe(a).c_str());
    EXPECT_LE(a.mean_kl, kl_bound) << describe(a);
    worst_kl = std::max(worst_kl, a.mean_kl);
    all_ours.insert(all_ours.end(), ours.begin(), ours.end());
    all_golden.insert(all_golden.end(), c.logits.begin(), c.logits.end());
  }
  const Agreement pooled = compare(all_ours, all_golden, n_vocab);
  std::printf("  %s/%s%s: worst per-prompt mean KL %.3g, pooled argmax %.3f\n", prm.model, prm.quant, form, worst_kl,
              pooled.argmax_agree);
  EXPECT_GE(pooled.argmax_agree, 0.90) << describe(pooled);
}

std::vector<Param> all_params() {
  std::vector<Param> v;
  for (const char* m : {"qwen3", "qwen3moe", "deepseek-v3"})
    for (const char* q : {"iq1_s", "iq1_m", "iq2_xxs", "iq2_xs", "iq2_s", "iq3_xxs", "iq3_s", "q2_k", "q3_k_m"})
      v.push_back({m, q});
  for (const char* q : {"iq1_s", "iq1_m", "iq2_xxs", "iq2_xs", "iq2_s", "iq3_xxs", "iq3_s", "q2_k", "q3_k_m"})
    v.push_back({"deepseek-v3", q, MlaForm::Absorbed});
  return v;
}

INSTANTIATE_TEST_SUITE_P(Lowbit, GoldenLowbit, ::testing::ValuesIn(all_params()), param_name);

}  // namespace
}  // namespace owl::test
