// Helpers for the `owl quantize` / --quant tests: quantising the golden F32
// models once per test process and evaluating a model on the golden cases.
#pragma once
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "model/golden_util.h"
#include "model/model.h"
#include "model/source.h"
#include "test_util.h"

namespace owl::test::quant {

inline const std::vector<std::string>& all_models() {
  static const std::vector<std::string> v = {"llama",       "llama-rope-scaled", "qwen2",  "qwen3", "qwen3moe",
                                             "deepseek-v3", "deepseek-v2-lite",  "glm4moe"};
  return v;
}
inline bool is_moe(const std::string& model) {
  return model == "qwen3moe" || model == "deepseek-v3" || model == "deepseek-v2-lite" || model == "glm4moe";
}
inline bool golden_has(const std::string& model, const std::string& quant) {
  return std::filesystem::exists(std::filesystem::path(OWL_SOURCE_DIR) / ".." / "shared" / "golden" / model /
                                 (quant + ".gguf"));
}

// A scratch folder shared by the tests of this process, removed when the process exits.
inline std::string scratch() {
  struct Dir {
    std::string path;
    Dir() {
      auto p = std::filesystem::temp_directory_path() / ("owl-quantize-test-" + std::to_string(::getpid()));
      std::filesystem::create_directories(p);
      path = p.string();
    }
    ~Dir() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  };
  static const Dir dir;
  return dir.path;
}

// `owl quantize golden/<model>/<from>.gguf OUT <type>`, run once per (model, from, type) per process.
inline std::string quantized(const std::string& model, const std::string& type, const std::string& from = "f32") {
  static std::map<std::string, std::string> done;
  const std::string key = model + "/" + from + "/" + type;
  if (auto it = done.find(key); it != done.end()) return it->second;
  const std::string out = scratch() + "/" + model + "-" + from + "-" + type + ".gguf";
  RunResult r = run_owl({"quantize", shared_path("golden/" + model + "/" + from + ".gguf"), out, type});
  EXPECT_EQ(r.exit_code, 0) << "owl quantize " << key << ": " << r.err;
  if (r.exit_code != 0) throw std::runtime_error("owl quantize failed for " + key);
  done[key] = out;
  return out;
}

// Prompt rows and teacher-forced rows of all cases of `golden` together, against the
// model in `source` (F32 KV cache), pooled as the golden README's tolerance table is.
inline Agreement agreement(const ModelSource& source, const Golden& golden) {
  auto model = Model::load(source);
  EXPECT_EQ(model->n_vocab(), golden.n_vocab);
  std::vector<float> ours, gold;
  for (const auto& c : golden.cases) {
    CaseRun r = run_case(*model, c, DType::F32);
    ours.insert(ours.end(), r.logits.begin(), r.logits.end());
    gold.insert(gold.end(), c.logits.begin(), c.logits.end());
    ours.insert(ours.end(), r.forced.begin(), r.forced.end());
    gold.insert(gold.end(), c.gen_logits.begin(), c.gen_logits.end());
  }
  return compare(ours, gold, golden.n_vocab);
}

// The logits of a case's prompt, evaluated as one batch (F32 KV cache).
inline std::vector<float> prompt_logits(Model& model, const GoldenCase& c) {
  KVCacheOptions opt;
  opt.type = DType::F32;
  opt.n_ctx = 512;
  opt.n_seq_max = 1;
  KVCache kv(model.kv_shape(), opt);
  Batch b;
  for (size_t i = 0; i < c.tokens.size(); ++i) b.add(c.tokens[i], static_cast<int64_t>(i), 0, true);
  auto l = model.forward(b, kv);
  return {l.begin(), l.end()};
}

// Prompt rows only, of all cases: the model in `source` against `golden` (e.g. the F32 logits).
inline Agreement prompt_agreement(const ModelSource& source, const Golden& golden) {
  auto model = Model::load(source);
  std::vector<float> ours, gold;
  for (const auto& c : golden.cases) {
    std::vector<float> l = prompt_logits(*model, c);
    ours.insert(ours.end(), l.begin(), l.end());
    gold.insert(gold.end(), c.logits.begin(), c.logits.end());
  }
  return compare(ours, gold, golden.n_vocab);
}
// The same for two golden sets of one model (same prompts): e.g. llama.cpp's q4_k_m vs its f32.
inline Agreement prompt_agreement(const Golden& a, const Golden& b) {
  std::vector<float> x, y;
  for (size_t i = 0; i < a.cases.size() && i < b.cases.size(); ++i) {
    EXPECT_EQ(a.cases[i].tokens, b.cases[i].tokens);
    x.insert(x.end(), a.cases[i].logits.begin(), a.cases[i].logits.end());
    y.insert(y.end(), b.cases[i].logits.begin(), b.cases[i].logits.end());
  }
  return compare(x, y, b.n_vocab);
}

// The README's "suggested bounds" for Q8_0 / Q4_K_M files (statistical kernel tests).
inline void expect_quant_bounds(const Agreement& a, bool moe, const std::string& what) {
  EXPECT_LE(a.mean_kl, moe ? 0.03 : 0.02) << what << ": " << describe(a);
  EXPECT_GE(a.argmax_agree, 0.90) << what << ": " << describe(a);
  EXPECT_LE(a.p99_abs, moe ? 2.0 : 1.0) << what << ": " << describe(a);
}

}  // namespace owl::test::quant
