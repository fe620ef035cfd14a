// Batch invariance: a row's logits do not depend on which other rows share its forward call.
// A server's continuous batching puts the decode rows of whatever sequences are running into one
// call, and a pipeline (src/dist) cuts a step into micro-batches; either way each sequence must
// get exactly what it gets alone. The kernels compute every output row with the same code
// whatever the rows per call (packed 1..4-row tiles, 1..6-row dot groups, per-row attention
// below a run of 18 rows of one sequence), and MoE blocks add each token's experts in one order.
#include <gtest/gtest.h>

#include <cstring>

#include "golden_util.h"

namespace owl::test {
namespace {

constexpr int32_t kSeqs = 8;
constexpr int64_t kPrompt = 5;

class BatchInvariance : public ::testing::TestWithParam<std::pair<const char*, const char*>> {
 protected:
  void SetUp() override {
    golden_ = load_golden(GetParam().first, GetParam().second);
    source_ = open_model_source(golden_.dir + "/" + GetParam().second + ".gguf");
    model_ = Model::load(*source_);
  }
  KVCache make_cache() const {
    KVCacheOptions o;
    o.type = DType::F32;
    o.n_ctx = 64;
    o.n_seq_max = kSeqs;
    return KVCache(model_->kv_shape(), o);
  }
  int32_t token(int32_t seq, int64_t pos) const {
    const auto& t = golden_.cases[1].tokens;
    return t[static_cast<size_t>(seq * 7 + pos) % t.size()];
  }
  // The rows [begin, end) of `rows` in one call; their logits appended to out.
  void run(KVCache& kv, const Batch& rows, int64_t begin, int64_t end, std::vector<float>& out) {
    Batch b;
    for (int64_t r = begin; r < end; ++r)
      b.add(rows.tokens[r], rows.positions[r], rows.seq_ids[r], rows.want_logits[r] != 0);
    const auto l = model_->forward(b, kv);
    out.insert(out.end(), l.begin(), l.end());
  }
  // Prompts of every sequence, then two decode steps of all of them, each batch cut at `cuts`
  // (row counts per call; empty: one call). Returns every logits row in batch order.
  std::vector<float> evaluate(const std::vector<int64_t>& prompt_cuts, const std::vector<int64_t>& step_cuts) {
    KVCache kv = make_cache();
    std::vector<float> out;
    Batch prompts;
    for (int32_t q = 0; q < kSeqs; ++q)
      for (int64_t i = 0; i < kPrompt; ++i) prompts.add(token(q, i), i, q, true);
    run_in_pieces(kv, prompts, prompt_cuts, out);
    for (int64_t step = 0; step < 2; ++step) {
      Batch rows;
      for (int32_t q = 0; q < kSeqs; ++q) rows.add(token(q, kPrompt + step), kPrompt + step, q, true);
      run_in_pieces(kv, rows, step_cuts, out);
    }
    return out;
  }
  void run_in_pieces(KVCache& kv, const Batch& rows, const std::vector<int64_t>& cuts, std::vector<float>& out) {
    int64_t at = 0;
    for (int64_t len : cuts) {
      run(kv, rows, at, at + len, out);
      at += len;
    }
    if (at < rows.size()) run(kv, rows, at, rows.size(), out);
  }
  Golden golden_;
  std::unique_ptr<ModelSource> source_;
  std::unique_ptr<Model> model_;
};

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST_P(BatchInvariance, RowsGiveTheSameBitsWhateverElseIsInTheCall) {
  const std::vector<float> together = evaluate({}, {});
  ASSERT_EQ(together.size(), static_cast<size_t>(kSeqs * (kPrompt + 2) * model_->n_vocab()));
  // Prompts sequence by sequence; steps in micro-batches of 3, 3, 2 rows, and one row at a time.
  std::vector<int64_t> per_sequence(kSeqs, kPrompt);
  EXPECT_TRUE(same_bits(evaluate(per_sequence, {3, 3}), together)) << "prompts alone, steps in 3 + 3 + 2 rows";
  EXPECT_TRUE(same_bits(evaluate({2 * kPrompt, kPrompt}, std::vector<int64_t>(kSeqs, 1)), together))
      << "prompts in 2 + 1 + 5 sequences, steps one row at a time";
}

// Packed Q4_K/Q6_K (dense and MoE, MLA), and F32 weights through the plain dot kernels.
INSTANTIATE_TEST_SUITE_P(Models, BatchInvariance,
                         ::testing::Values(std::make_pair("qwen3", "q4_k_m"), std::make_pair("qwen3moe", "q4_k_m"),
                                           std::make_pair("deepseek-v3", "q4_k_m"), std::make_pair("llama", "f32")),
                         [](const auto& param_info) {
                           std::string n = std::string(param_info.param.first) + "_" + param_info.param.second;
                           for (char& c : n)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return n;
                         });

}  // namespace
}  // namespace owl::test
