// owl synth: the tiny shapes reproduce the golden models' metadata, tensor
// names, shapes and (for Q4_K_M) llama.cpp's type mix; the files validate,
// `owl info` reads them, weights have the intended statistics, and the
// output does not depend on the thread count.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "formats/config_compare.h"
#include "formats/gguf.h"
#include "model/config.h"
#include "test_util.h"

using namespace owl;
using json = nlohmann::json;

namespace {

std::string synth(const std::string& shape, const std::string& type, const std::vector<std::string>& extra = {}) {
  std::string out = test::temp_dir() + "/" + shape + "-" + type + ".gguf";
  std::vector<std::string> args = {"synth", "--shape", shape, "--type", type, "-o", out};
  args.insert(args.end(), extra.begin(), extra.end());
  auto r = test::run_owl(args);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return out;
}

struct Twin {
  const char* shape;
  const char* golden;
  bool compare_q4_k_m_types;  // every shape: synth shares owl quantize's plan (formats/quant_plan)
};
const Twin kTwins[] = {
    {"tiny-llama", "llama-rope-scaled", true}, {"tiny-qwen2", "qwen2", true},           {"tiny-qwen3", "qwen3", true},
    {"tiny-qwen3moe", "qwen3moe", true},       {"tiny-deepseek2", "deepseek-v3", true},
};

}  // namespace

TEST(Synth, TinyShapesMatchTheGoldenModels) {
  for (const Twin& t : kTwins) {
    for (const char* type : {"f32", "q4_k_m"}) {
      auto ours = gguf::File::open(synth(t.shape, type));
      auto gold = gguf::File::open(test::shared_path(std::string("golden/") + t.golden + "/" + type + ".gguf"));
      const std::string what = std::string(t.shape) + " " + type;
      expect_same_hparams(config_from_gguf(ours->metadata()), config_from_gguf(gold->metadata()), what);
      EXPECT_EQ(ours->metadata().get_int("general.file_type"), gold->metadata().get_int("general.file_type")) << what;
      EXPECT_EQ(ours->metadata().get_string("tokenizer.ggml.model"), "none");
      // Same keys (general.description aside), same types.
      for (const auto& [k, v] : gold->metadata().items) {
        const gguf::Value* o = ours->metadata().find(k);
        ASSERT_TRUE(o) << what << ": missing key " << k;
        EXPECT_EQ(o->type, v.type) << what << ": " << k;
      }
      ASSERT_EQ(ours->tensor_infos().size(), gold->tensor_infos().size()) << what;
      for (const auto& g : gold->tensor_infos()) {
        const gguf::TensorInfo* o = ours->find_info(g.name);
        ASSERT_TRUE(o) << what << ": missing " << g.name;
        EXPECT_EQ(o->ne, g.ne) << what << ": " << g.name;
        EXPECT_EQ(o->n_dims, g.n_dims) << what << ": " << g.name;
        if (std::string(type) == "f32" || t.compare_q4_k_m_types) {
          EXPECT_EQ(o->type, g.type) << what << ": " << g.name << " " << dtype_name(o->type) << " vs "
                                     << dtype_name(g.type);
        }
      }
    }
  }
}

TEST(Synth, Llama3RopeFreqsEqualTheConverters) {
  auto ours = gguf::File::open(synth("tiny-llama", "f32"));
  auto gold = gguf::File::open(test::shared_path("golden/llama-rope-scaled/f32.gguf"));
  auto a = ours->tensor("rope_freqs.weight"), b = gold->tensor("rope_freqs.weight");
  ASSERT_TRUE(a && b);
  const float* x = static_cast<const float*>(a->data);
  const float* y = static_cast<const float*>(b->data);
  for (int i = 0; i < 32; ++i) EXPECT_NEAR(x[i], y[i], 1e-5f * y[i]) << i;
}

TEST(Synth, WeightStatisticsAndInfo) {
  std::string path = synth("tiny-qwen2", "f32", {"--seed", "7"});
  auto f = gguf::File::open(path);
  auto stats = [&](const std::string& name) {
    auto t = f->tensor(name);
    const float* p = static_cast<const float*>(t->data);
    double s = 0, s2 = 0;
    const int64_t n = t->n_elements();
    for (int64_t i = 0; i < n; ++i) {
      s += p[i];
      s2 += static_cast<double>(p[i]) * p[i];
    }
    const double mean = s / n;
    return std::pair<double, double>{mean, std::sqrt(s2 / n - mean * mean)};
  };
  auto [wm, ws] = stats("blk.0.ffn_up.weight");
  EXPECT_NEAR(wm, 0.0, 0.001);
  EXPECT_NEAR(ws, 0.02, 0.001);
  auto [nm, ns] = stats("blk.1.attn_norm.weight");
  EXPECT_NEAR(nm, 1.0, 0.01);
  EXPECT_LT(ns, 0.05);

  auto r = test::run_owl({"info", path, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["arch"], "qwen2");
  EXPECT_EQ(j["n_layer"], 2);
  EXPECT_EQ(j["n_vocab"], 512);
  // 2 x (embeddings + output) + final norm + 2 layers x (attention + biases + 2 norms + FFN)
  EXPECT_EQ(
      j["params_total"],
      2 * 512 * 256 + 256 + 2 * (256 * 256 + 2 * 256 * 128 + 256 * 256 + 256 + 2 * 128 + 2 * 256 + 3 * 256 * 512));
}

TEST(Synth, DeterministicAcrossThreadCountsAndSeeds) {
  std::string dir = test::temp_dir();
  auto run = [&](const std::string& name, std::vector<std::string> extra) {
    std::vector<std::string> args = {"synth", "--shape", "tiny-qwen3", "--type", "q8_0", "-o", dir + "/" + name};
    args.insert(args.end(), extra.begin(), extra.end());
    auto r = test::run_owl(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return test::read_file(dir + "/" + name);
  };
  std::string a = run("a.gguf", {"-t", "1"});
  std::string b = run("b.gguf", {"-t", "2"});
  std::string c = run("c.gguf", {"-t", "2", "--seed", "1"});
  EXPECT_TRUE(a == b);
  EXPECT_FALSE(a == c);
  EXPECT_EQ(a.size(), c.size());
}

TEST(Synth, BadArgumentsAreUsageErrors) {
  std::string out = test::temp_dir() + "/x.gguf";
  auto r = test::run_owl({"synth", "--shape", "gpt-5", "-o", out});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("unknown --shape 'gpt-5' (known: "), std::string::npos) << r.err;
  for (const char* shape : {"qwen3-0.6b", "llama-3.1-8b", "qwen3-30b-a3b-8l", "deepseek-v2-lite-8l"})
    EXPECT_NE(r.err.find(shape), std::string::npos) << r.err;
  r = test::run_owl({"synth", "--arch", "llama", "--shape", "qwen3-0.6b", "-o", out});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("shape 'qwen3-0.6b' is a qwen3 model, not llama"), std::string::npos) << r.err;
  r = test::run_owl({"synth", "--shape", "tiny-qwen3", "--type", "q3_k", "-o", out});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("unknown --type 'q3_k'"), std::string::npos) << r.err;
  r = test::run_owl({"synth", "--shape", "tiny-qwen3", "-o", "/nonexistent-dir/x.gguf"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("cannot create"), std::string::npos) << r.err;
}
