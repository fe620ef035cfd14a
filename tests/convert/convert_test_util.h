// Helpers for the convert/export tests: running owl convert/export on the
// golden models, comparing GGUF tensors byte for byte, and evaluating a
// model (GGUF file or HF folder) on the golden cases in process.
#pragma once
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "model/golden_util.h"
#include "model/model.h"
#include "model/source.h"
#include "test_util.h"

namespace owl::test {

inline const std::vector<std::string>& golden_models() {
  static const std::vector<std::string> v = {"llama",       "llama-rope-scaled", "qwen2",  "qwen3", "qwen3moe",
                                             "deepseek-v3", "deepseek-v2-lite",  "glm4moe"};
  return v;
}
inline const std::vector<std::string>& twin_models() {
  static const std::vector<std::string> v = {"llama", "qwen3", "deepseek-v3"};
  return v;
}

inline std::string golden_file(const std::string& model, const std::string& quant = "f32") {
  return shared_path("golden/" + model + "/" + quant + ".gguf");
}

// Runs `owl args...` and fails the test (with stderr) unless it exits 0.
inline void owl_ok(const std::vector<std::string>& args) {
  RunResult r = run_owl(args);
  std::string cmd;
  for (const auto& a : args) cmd += " " + a;
  ASSERT_EQ(r.exit_code, 0) << "owl" << cmd << "\nstderr: " << r.err;
}

// Every tensor of `want` is in `got` with the same type, shape and bytes, and there are no others.
inline void expect_same_tensors(const gguf::File& got, const gguf::File& want, const std::string& what) {
  EXPECT_EQ(got.tensor_infos().size(), want.tensor_infos().size()) << what;
  int64_t identical = 0;
  for (const auto& wi : want.tensor_infos()) {
    auto g = got.tensor(wi.name);
    if (!g) {
      ADD_FAILURE() << what << ": lacks tensor " << wi.name;
      continue;
    }
    TensorView w = want.view(wi);
    EXPECT_EQ(g->type, w.type) << what << ": " << wi.name;
    EXPECT_EQ(g->ne, w.ne) << what << ": " << wi.name;
    if (g->type == w.type && g->ne == w.ne) {
      const bool same = std::memcmp(g->data, w.data, w.n_bytes()) == 0;
      EXPECT_TRUE(same) << what << ": " << wi.name << " differs";
      identical += same;
    }
  }
  EXPECT_EQ(identical, static_cast<int64_t>(want.tensor_infos().size())) << what;
}

// The model at `path` (GGUF or HF folder) on every golden case: prompt logits, greedy, teacher-forced rows.
inline std::vector<CaseRun> run_cases(const std::string& path, const Golden& g) {
  auto src = open_model_source(path);
  auto model = Model::load(*src);
  std::vector<CaseRun> runs;
  for (const auto& c : g.cases) runs.push_back(run_case(*model, c, DType::F32));
  return runs;
}

inline std::string ids_csv(const std::vector<int32_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  return s;
}

// Largest |a - b| over two equally long tables (infinity when the sizes differ).
inline double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::fabs(static_cast<double>(a[i]) - b[i]);
    if (!(d <= m)) m = std::isnan(d) ? INFINITY : d;
  }
  return m;
}

}  // namespace owl::test
