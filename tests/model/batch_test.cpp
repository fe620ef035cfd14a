// One forward call serves prefill, decode and continuous batching: these tests
// check that the paths agree with each other (bound: max|Δ| <= 1e-4, F32 KV
// cache; llama.cpp itself shows 2.1e-5 between them) and that bad batches are
// clear errors.
#include <gtest/gtest.h>

#include "base/error.h"
#include "golden_util.h"

namespace owl::test {
namespace {

constexpr double kPathBound = 1e-4;

double max_abs_diff(std::span<const float> a, std::span<const float> b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) m = std::max(m, std::fabs(double(a[i]) - b[i]));
  return m;
}

class BatchPaths : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    golden_ = load_golden(GetParam(), "f32");
    source_ = open_model_source(golden_.dir + "/f32.gguf");
    model_ = Model::load(*source_);
  }
  KVCache make_cache(int64_t n_seq = 4, int64_t n_ctx = 512) {
    KVCacheOptions o;
    o.type = DType::F32;
    o.n_ctx = n_ctx;
    o.n_seq_max = n_seq;
    o.page_tokens = 16;  // small pages: prompts span several
    return KVCache(model_->kv_shape(), o);
  }
  // Logits of every position of `ids` evaluated alone as one sequence.
  std::vector<float> alone(const std::vector<int32_t>& ids) {
    KVCache kv = make_cache();
    Batch b;
    for (size_t i = 0; i < ids.size(); ++i) b.add(ids[i], int64_t(i), 0, true);
    auto l = model_->forward(b, kv);
    return {l.begin(), l.end()};
  }
  Golden golden_;
  std::unique_ptr<ModelSource> source_;
  std::unique_ptr<Model> model_;
};

TEST_P(BatchPaths, InterleavedSequencesMatchSeparateRuns) {
  const int64_t V = model_->n_vocab();
  const auto& a = golden_.cases[0].tokens;  // 8 ids
  std::vector<int32_t> b(golden_.cases[1].tokens.begin(), golden_.cases[1].tokens.begin() + 20);
  const auto la = alone(a), lb = alone(b);

  KVCache kv = make_cache();
  Batch batch;
  // Rows alternate between sequence 7 and sequence 3 while both have tokens left.
  std::vector<std::pair<int32_t, int64_t>> rows;  // (sequence, position) of each logits row
  for (size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
    if (i < a.size()) batch.add(a[i], int64_t(i), 7, true), rows.emplace_back(7, i);
    if (i < b.size()) batch.add(b[i], int64_t(i), 3, true), rows.emplace_back(3, i);
  }
  auto l = model_->forward(batch, kv);
  ASSERT_EQ(l.size(), rows.size() * size_t(V));
  for (size_t r = 0; r < rows.size(); ++r) {
    const auto& ref = rows[r].first == 7 ? la : lb;
    auto want = std::span<const float>(ref).subspan(size_t(rows[r].second * V), size_t(V));
    EXPECT_LE(max_abs_diff(l.subspan(r * V, V), want), kPathBound) << "row " << r;
  }
  EXPECT_EQ(kv.seq_length(7), int64_t(a.size()));
  EXPECT_EQ(kv.seq_length(3), int64_t(b.size()));

  // Continue both sequences with one decode row each in the same call.
  Batch step;
  step.add(11, int64_t(a.size()), 7, true);
  step.add(12, int64_t(b.size()), 3, true);
  auto step_logits = model_->forward(step, kv);
  const std::vector<float> ls(step_logits.begin(), step_logits.end());  // forward() reuses its buffer
  auto a2 = a, b2 = b;
  a2.push_back(11);
  b2.push_back(12);
  const auto la2 = alone(a2), lb2 = alone(b2);
  EXPECT_LE(max_abs_diff(std::span<const float>(ls).first(V), std::span<const float>(la2).last(V)), kPathBound);
  EXPECT_LE(max_abs_diff(std::span<const float>(ls).last(V), std::span<const float>(lb2).last(V)), kPathBound);
}

// One call mixing a new prompt (a run of rows of one sequence: attention over blocks of rows)
// with single decode rows of two other sequences (attention row by row), in that order.
TEST_P(BatchPaths, PromptAndDecodeRowsInOneCallMatchSeparateRuns) {
  const int64_t V = model_->n_vocab();
  const std::vector<int32_t> a(golden_.cases[0].tokens.begin(), golden_.cases[0].tokens.begin() + 7);
  const std::vector<int32_t> b(golden_.cases[1].tokens.begin(), golden_.cases[1].tokens.begin() + 11);
  const std::vector<int32_t> p(golden_.cases[1].tokens.begin() + 20, golden_.cases[1].tokens.begin() + 40);
  KVCache kv = make_cache();
  Batch first;  // sequences 7 and 3 up to their last token
  for (size_t i = 0; i + 1 < a.size(); ++i) first.add(a[i], int64_t(i), 7, false);
  for (size_t i = 0; i + 1 < b.size(); ++i) first.add(b[i], int64_t(i), 3, false);
  model_->forward(first, kv);

  Batch mixed;
  mixed.add(a.back(), int64_t(a.size() - 1), 7, true);
  for (size_t i = 0; i < p.size(); ++i) mixed.add(p[i], int64_t(i), 5, true);
  mixed.add(b.back(), int64_t(b.size() - 1), 3, true);
  auto l = model_->forward(mixed, kv);
  const std::vector<float> got(l.begin(), l.end());
  ASSERT_EQ(got.size(), (p.size() + 2) * size_t(V));
  const auto la = alone(a), lb = alone(b), lp = alone(p);
  const std::span<const float> g(got);
  EXPECT_LE(max_abs_diff(g.first(V), std::span<const float>(la).last(V)), kPathBound);
  EXPECT_LE(max_abs_diff(g.subspan(size_t(V), p.size() * V), lp), kPathBound);
  EXPECT_LE(max_abs_diff(g.last(V), std::span<const float>(lb).last(V)), kPathBound);
}

TEST_P(BatchPaths, TokenByTokenDecodeMatchesFullPrompt) {
  const int64_t V = model_->n_vocab();
  const auto& ids = golden_.cases[1].tokens;  // 64 ids: four 16-token pages
  const auto full = alone(ids);
  KVCache kv = make_cache();
  double worst = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    Batch b;
    b.add(ids[i], int64_t(i), 0, true);
    auto l = model_->forward(b, kv);
    worst = std::max(worst, max_abs_diff(l, std::span<const float>(full).subspan(i * V, V)));
  }
  EXPECT_LE(worst, kPathBound);
  // The full prompt also matches llama.cpp's golden logits (F32 bound 1e-3).
  EXPECT_LE(compare(full, golden_.cases[1].logits, V).max_abs, 1e-3);
}

TEST_P(BatchPaths, ChunkedPrefillMatchesOneCall) {
  const auto& ids = golden_.cases[1].tokens;
  const auto full = alone(ids);
  KVCache kv = make_cache();
  std::vector<float> chunked;
  // Chunks of 5, 17 and the rest (chunk edges fall inside 16-token pages).
  size_t begin = 0;
  for (size_t len : {size_t(5), size_t(17), ids.size() - 22}) {
    Batch b;
    for (size_t i = begin; i < begin + len; ++i) b.add(ids[i], int64_t(i), 0, true);
    auto l = model_->forward(b, kv);
    chunked.insert(chunked.end(), l.begin(), l.end());
    begin += len;
  }
  EXPECT_LE(max_abs_diff(chunked, full), kPathBound);
}

// A batch longer than the rows the model runs per pass (64 for dense models) is split
// internally; rows of three interleaved sequences still match each sequence run alone.
TEST_P(BatchPaths, BatchLongerThanOnePassMatchesSeparateRuns) {
  const int64_t V = model_->n_vocab();
  const auto& ids = golden_.cases[1].tokens;  // 64 ids, 3 sequences: 192 rows
  const auto full = alone(ids);
  KVCache kv = make_cache();
  Batch batch;
  for (size_t i = 0; i < ids.size(); ++i)
    for (int32_t seq = 0; seq < 3; ++seq) batch.add(ids[i], int64_t(i), seq, true);
  auto l = model_->forward(batch, kv);
  ASSERT_EQ(l.size(), 3 * ids.size() * size_t(V));
  double worst = 0;
  for (size_t r = 0; r < 3 * ids.size(); ++r)
    worst = std::max(worst, max_abs_diff(l.subspan(r * V, V), std::span<const float>(full).subspan(r / 3 * V, V)));
  EXPECT_LE(worst, kPathBound);
}

TEST_P(BatchPaths, RemovedSequenceCanBeReusedAndOnlyRequestedRowsReturn) {
  const int64_t V = model_->n_vocab();
  const auto& ids = golden_.cases[0].tokens;
  const auto full = alone(ids);
  KVCache kv = make_cache(1, 64);
  for (int round = 0; round < 3; ++round) {
    Batch b;
    for (size_t i = 0; i < ids.size(); ++i) b.add(ids[i], int64_t(i), 5, i == 2 || i + 1 == ids.size());
    auto l = model_->forward(b, kv);
    ASSERT_EQ(l.size(), size_t(2 * V));
    EXPECT_LE(max_abs_diff(l.subspan(0, V), std::span<const float>(full).subspan(2 * V, V)), kPathBound);
    EXPECT_LE(max_abs_diff(l.subspan(V, V), std::span<const float>(full).last(V)), kPathBound);
    kv.remove(5);
    EXPECT_EQ(kv.seq_length(5), 0);
    EXPECT_EQ(kv.pages_in_use(), 0);
  }
}

TEST_P(BatchPaths, BadBatchesAreClearErrors) {
  KVCache kv = make_cache(1, 16);
  Batch b;
  b.add(1, 0, 0, true);
  b.add(2, 2, 0, true);  // skips position 1
  EXPECT_THROW(
      {
        try {
          model_->forward(b, kv);
        } catch (const Error& e) {
          EXPECT_NE(std::string(e.what()).find("continues at position 1"), std::string::npos) << e.what();
          throw;
        }
      },
      Error);

  b.clear();
  b.add(int32_t(model_->n_vocab()), 0, 0, true);
  EXPECT_THROW(model_->forward(b, kv), Error);

  b.clear();
  for (int i = 0; i < 17; ++i) b.add(1, i, 0, true);
  try {
    model_->forward(b, kv);
    ADD_FAILURE() << "a 17-token prompt fit a 16-token context";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not fit the context of 16 tokens"), std::string::npos) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Dense, BatchPaths, ::testing::Values("llama", "qwen2", "qwen3"),
                         [](const auto& p) { return std::string(p.param); });

}  // namespace
}  // namespace owl::test
