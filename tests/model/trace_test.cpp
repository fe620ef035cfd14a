// trace.h: named intermediates written per layer, for locating a golden mismatch.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <cmath>
#include <set>

#include "base/error.h"
#include "model/model.h"
#include "model/source.h"
#include "model/trace.h"
#include "runtime/kv_cache.h"
#include "test_util.h"

namespace owl {
namespace {

std::vector<float> read_record(const std::string& dir, const std::string& suffix) {
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
      return test::read_f32(e.path().string());
  }
  return {};
}

TEST(Trace, WritesNamedLayersAndTheLogitsItReturns) {
  const std::string dir = test::temp_dir() + "/trace";
  auto src = open_model_source(test::shared_path("golden/qwen3moe/f32.gguf"));
  auto m = Model::load(*src);
  const ModelConfig& c = m->config();
  KVCache kv(m->kv_shape(), {.type = DType::F32, .n_ctx = 64, .n_seq_max = 1, .page_tokens = 16});
  Batch b;
  const std::vector<int32_t> tokens = {3, 14, 15, 92, 65};
  for (size_t i = 0; i < tokens.size(); ++i) b.add(tokens[i], static_cast<int64_t>(i), 0, true);

  trace::start(dir, "attn_norm,moe_experts,l_out,logits");
  const auto logits = m->forward(b, kv);
  const std::vector<float> returned(logits.begin(), logits.end());
  trace::stop();
  EXPECT_FALSE(trace::on("logits"));

  const int64_t n = static_cast<int64_t>(tokens.size());
  // One record per name and layer, named NNNNN-NAME-LAYER.f32, of rows x cols floats.
  std::set<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir)) files.insert(e.path().filename().string());
  EXPECT_EQ(files.size(), static_cast<size_t>(3 * c.n_layer + 1 + 1));  // + logits + trace.txt
  for (int64_t il = 0; il < c.n_layer; ++il) {
    EXPECT_EQ(read_record(dir, "-attn_norm-" + std::to_string(il) + ".f32").size(), static_cast<size_t>(n * c.n_embd));
    EXPECT_EQ(read_record(dir, "-l_out-" + std::to_string(il) + ".f32").size(), static_cast<size_t>(n * c.n_embd));
    const auto ids = read_record(dir, "-moe_experts-" + std::to_string(il) + ".f32");
    ASSERT_EQ(ids.size(), static_cast<size_t>(n * c.n_expert_used));
    for (float id : ids) {
      EXPECT_EQ(id, std::floor(id));
      EXPECT_GE(id, 0.0f);
      EXPECT_LT(id, static_cast<float>(c.n_expert));
    }
  }
  EXPECT_EQ(read_record(dir, "-logits--1.f32"), returned);  // bit for bit what forward returned

  // trace.txt: one summary line per record, with the shape and sum as llama.cpp prints them.
  std::ifstream idx(dir + "/trace.txt");
  std::string line;
  size_t lines = 0;
  while (std::getline(idx, line)) {
    ++lines;
    EXPECT_NE(line.find(" sum = "), std::string::npos) << line;
  }
  EXPECT_EQ(lines, files.size() - 1);
  std::filesystem::remove_all(dir);
}

TEST(Trace, UnwritableFolderIsAClearError) { EXPECT_THROW(trace::start("/proc/owl-trace-cannot-exist", "all"), Error); }

}  // namespace
}  // namespace owl
