// Where each rank's share lies: contiguous layer ranges that cover the trunk once, balanced by
// weight bytes (and skewed by per-rank weights), and the model-file fingerprint that start-up
// compares between ranks.
#include "dist/placement.h"

#include <gtest/gtest.h>

#include <fstream>

#include "base/error.h"
#include "model/source.h"
#include "test_util.h"

namespace owl::dist {
namespace {

using test::shared_path;

void expect_cover(const std::vector<std::pair<int64_t, int64_t>>& r, int64_t n_layers) {
  int64_t at = 0;
  for (const auto& [b, e] : r) {
    EXPECT_EQ(b, at);
    EXPECT_LE(b, e);
    at = e;
  }
  EXPECT_EQ(at, n_layers);
}

TEST(Placement, LayerRangesCoverTheTrunkOnceInOrder) {
  // deepseek-v3: 3 trunk layers (one dense lead, two MoE) and a NextN layer that is not run.
  auto src = open_model_source(shared_path("golden/deepseek-v3-mtp/q4_k_m.gguf"));
  const int64_t n_trunk = src->config().n_layer - src->config().n_nextn_layers;
  ASSERT_EQ(n_trunk, 3);
  for (int n = 1; n <= 4; ++n) {
    SCOPED_TRACE(n);
    const auto r = layer_ranges(*src, std::vector<double>(static_cast<size_t>(n), 1.0));
    ASSERT_EQ(r.size(), static_cast<size_t>(n));
    expect_cover(r, n_trunk);
  }
  // Two equal ranks: the two MoE layers weigh most, so each rank gets one of them.
  EXPECT_EQ(layer_ranges(*src, {1.0, 1.0}), (std::vector<std::pair<int64_t, int64_t>>{{0, 2}, {2, 3}}));
  // A rank with three times the memory takes every layer.
  EXPECT_EQ(layer_ranges(*src, {3.0, 0.01}), (std::vector<std::pair<int64_t, int64_t>>{{0, 3}, {3, 3}}));
}

TEST(Placement, FingerprintTellsFilesApartBySizeAndHeader) {
  const std::string model = shared_path("golden/qwen3/q4_k_m.gguf");
  const Fingerprint a = fingerprint(model);
  std::string bytes = test::read_file(model);
  EXPECT_EQ(a.size, bytes.size());
  const std::string dir = test::temp_dir();
  { std::ofstream(dir + "/same.gguf", std::ios::binary) << bytes; }
  const Fingerprint same = fingerprint(dir + "/same.gguf");
  EXPECT_EQ(same.size, a.size);
  EXPECT_EQ(same.checksum, a.checksum);
  bytes[bytes.find("random-weight")] = 'R';
  { std::ofstream(dir + "/changed.gguf", std::ios::binary) << bytes; }
  EXPECT_NE(fingerprint(dir + "/changed.gguf").checksum, a.checksum);
  { std::ofstream(dir + "/short.gguf", std::ios::binary) << bytes.substr(0, bytes.size() - 1); }
  EXPECT_NE(fingerprint(dir + "/short.gguf").size, a.size);
  EXPECT_THROW(fingerprint(dir + "/missing.gguf"), Error);
}

using Pieces = std::vector<std::pair<int64_t, int64_t>>;

TEST(Placement, PipelinePiecesCutOnlyBetweenSequences) {
  const std::vector<int32_t> eight_seqs = {0, 1, 2, 3, 4, 5, 6, 7};
  EXPECT_EQ(pipeline_pieces(eight_seqs, 64, 3), (Pieces{{0, 3}, {3, 6}, {6, 8}}));
  EXPECT_EQ(pipeline_pieces(eight_seqs, 64, 2), (Pieces{{0, 4}, {4, 8}}));
  EXPECT_EQ(pipeline_pieces(eight_seqs, 64, 1), (Pieces{{0, 8}}));
  EXPECT_EQ(pipeline_pieces(eight_seqs, 64, 0), (Pieces{{0, 8}}));
  // One sequence's prompt is never cut: its attention must run as in one process.
  EXPECT_EQ(pipeline_pieces(std::vector<int32_t>(8, 5), 64, 3), (Pieces{{0, 8}}));
  // A prompt of 5 rows and three decode rows: the first cut moves past the prompt.
  EXPECT_EQ(pipeline_pieces({0, 0, 0, 0, 0, 1, 2, 3}, 64, 2), (Pieces{{0, 5}, {5, 8}}));
  // More micro-batches than sequences: one sequence each.
  EXPECT_EQ(pipeline_pieces({4, 9, 2}, 64, 5), (Pieces{{0, 1}, {1, 2}, {2, 3}}));
  // Within forward()'s chunks (here 4 rows), never across them.
  EXPECT_EQ(pipeline_pieces({0, 1, 0, 1, 0, 1, 0, 1, 0, 1}, 4, 2),
            (Pieces{{0, 2}, {2, 4}, {4, 6}, {6, 8}, {8, 9}, {9, 10}}));
  EXPECT_EQ(pipeline_pieces({0, 1, 0, 1, 0, 1, 0, 1, 0, 1}, 4, 1), (Pieces{{0, 4}, {4, 8}, {8, 10}}));
  EXPECT_TRUE(pipeline_pieces({}, 64, 2).empty());
}

}  // namespace
}  // namespace owl::dist
