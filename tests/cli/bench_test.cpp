// `owl bench` end to end on real small models: the JSON report's fields and how they relate
// (never its speeds: those belong in docs/BENCHMARKS.md, not in tests), --quant, --no-repack, --no-vnni,
// --depth, --parallel (the engine's continuous batching), --no-warmup, and its errors.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "kernels/kernels.h"
#include "model/source.h"
#include "test_util.h"

namespace {

using owl::test::run_owl;

// `gen`: the -n given (the options may be given once only).
nlohmann::json bench_json(const std::vector<std::string>& extra, const std::string& gen = "4") {
  std::vector<std::string> args = {"bench", "-p", "8", "-n", gen, "-r", "1", "-t", "1", "--json"};
  args.insert(args.end(), extra.begin(), extra.end());
  auto r = run_owl(args);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return nlohmann::json::parse(r.out);
}

TEST(CliBench, JsonReportIsConsistent) {
  const std::string model = owl::test::shared_path("models/stories260K/stories260K-f32.gguf");
  nlohmann::json j = bench_json({model});
  EXPECT_EQ(j["arch"], "llama");
  EXPECT_EQ(j["threads"], 1);
  EXPECT_EQ(j["kernels"], owl::kernels::isa_name(owl::kernels::best_isa()));  // the kernels that ran
  EXPECT_EQ(j["pp"]["tokens"], 8);
  EXPECT_EQ(j["tg"]["tokens"], 4);
  for (const char* phase : {"pp", "tg"}) {
    EXPECT_GT(j[phase]["tps_min"].get<double>(), 0) << phase;
    EXPECT_LE(j[phase]["tps_min"].get<double>(), j[phase]["tps_median"].get<double>()) << phase;
  }
  // Roofline: bandwidth over the bytes a decoded token reads, and the share reached of it.
  const double bw = j["bandwidth_gbs"].get<double>() * 1e9, bpt = j["bytes_per_token"].get<double>();
  EXPECT_GT(bpt, 0);
  EXPECT_LE(bpt, static_cast<double>(std::filesystem::file_size(model)));
  EXPECT_NEAR(j["roofline_tps"].get<double>(), bw / bpt, 1e-6 * bw / bpt);
  EXPECT_NEAR(j["roofline_share"].get<double>(), j["tg"]["tps_median"].get<double>() / (bw / bpt),
              1e-6 * j["roofline_share"].get<double>());
  // Memory: the bound is file + KV cache + 5%, and within_bound says whether peak RSS is under it.
  const nlohmann::json& m = j["memory"];
  EXPECT_EQ(m["file_bytes"].get<double>(), static_cast<double>(std::filesystem::file_size(model)));
  EXPECT_GT(m["kv_cache_bytes"].get<double>(), 0);
  EXPECT_NEAR(m["bound_bytes"].get<double>(),
              1.05 * (m["file_bytes"].get<double>() + m["kv_cache_bytes"].get<double>()), 1.0);
  EXPECT_GT(m["peak_rss_bytes"].get<double>(), 0);
  EXPECT_EQ(m["within_bound"].get<bool>(), m["peak_rss_bytes"].get<double>() <= m["bound_bytes"].get<double>());
  EXPECT_GE(j["load_s"].get<double>(), 0);

  // The file's own layout (no interleaved copies) reads the same bytes per token.
  nlohmann::json plain = bench_json({model, "--no-repack"});
  EXPECT_EQ(plain["bytes_per_token"], j["bytes_per_token"]);
  // --no-vnni: the AVX2 kernels, whatever the CPU has.
  EXPECT_EQ(bench_json({model, "--no-vnni"})["kernels"], "avx2");
}

// --seqs S: decode steps of S sequences at once; the report says so and leaves out the roofline
// share (the roofline is one sequence's).
TEST(CliBench, SeveralSequencesDecodeTogether) {
  const std::string model = owl::test::shared_path("models/stories260K/stories260K-f32.gguf");
  nlohmann::json j = bench_json({model, "--seqs", "4"});
  EXPECT_EQ(j["tg"]["seqs"], 4);
  EXPECT_EQ(j["tg"]["tokens"], 4);
  EXPECT_GT(j["tg"]["tps_min"].get<double>(), 0);
  EXPECT_FALSE(j.contains("roofline_share"));
  EXPECT_EQ(bench_json({model})["tg"]["seqs"], 1);
}

TEST(CliBench, BandwidthProbeReportsItsPassesAndATriad) {
  nlohmann::json j = bench_json({owl::test::shared_path("models/stories260K/stories260K-f32.gguf")});
  const nlohmann::json& read = j["bandwidth_passes"];
  EXPECT_GE(read["passes"].get<int>(), 5);
  EXPECT_EQ(read["best_gbs"], j["bandwidth_gbs"]);  // the roofline uses the best pass
  EXPECT_GE(read["best_gbs"].get<double>(), read["median_gbs"].get<double>());
  EXPECT_GE(read["median_gbs"].get<double>(), read["worst_gbs"].get<double>());
  EXPECT_GT(read["worst_gbs"].get<double>(), 0);
  const nlohmann::json& triad = j["triad_gbs"];
  EXPECT_GE(triad["passes"].get<int>(), 3);
  EXPECT_GE(triad["best_gbs"].get<double>(), triad["worst_gbs"].get<double>());
  EXPECT_GT(triad["worst_gbs"].get<double>(), 0);
}

TEST(CliBench, DepthFillsTheContextBeforeTheTimedRuns) {
  const std::string model = owl::test::shared_path("models/stories260K/stories260K-f32.gguf");
  nlohmann::json shallow = bench_json({model});
  nlohmann::json deep = bench_json({model, "-d", "100"});
  EXPECT_EQ(shallow["depth"], 0);
  EXPECT_EQ(deep["depth"], 100);
  EXPECT_EQ(deep["tg"]["tokens"], 4);
  // The cache holds the 100 tokens besides the timed ones (whole pages of 32 tokens).
  EXPECT_GT(deep["memory"]["kv_cache_bytes"].get<double>(), shallow["memory"]["kv_cache_bytes"].get<double>());
}

TEST(CliBench, ColdStartRunHasNoWarmupAndNoProbe) {
  nlohmann::json j =
      bench_json({owl::test::shared_path("models/stories260K/stories260K-f32.gguf"), "--no-warmup"}, "0");
  EXPECT_EQ(j["pp"]["tokens"], 8);
  EXPECT_FALSE(j.contains("tg"));
  EXPECT_EQ(j["first_forward_s"], 0.0);
  EXPECT_EQ(j["bandwidth_passes"]["passes"], 0);
}

TEST(CliBench, ParallelSequencesThroughTheEngine) {
  nlohmann::json j =
      bench_json({owl::test::shared_path("models/stories260K/stories260K-f32.gguf"), "--parallel", "1,3"}, "6");
  ASSERT_EQ(j["parallel"].size(), 2u);
  int k = 0;
  for (const int n : {1, 3}) {
    const nlohmann::json& p = j["parallel"][k++];
    EXPECT_EQ(p["sequences"], n);
    EXPECT_EQ(p["prompt_tokens"], 8 * n);
    EXPECT_EQ(p["generated_tokens"], 6 * n);  // end of generation ignored: every sequence gives all 6
    // All sequences decode together for at most 5 steps (the first token comes with the prompt).
    EXPECT_GE(p["decode_steps"].get<int>(), 1);
    EXPECT_LE(p["decode_steps"].get<int>(), 5);
    // (A model this small decodes a step in microseconds, below what the timing window resolves:
    // only the relation of the speeds is checked, not that they are positive.)
    EXPECT_GE(p["decode_tps_best"].get<double>(), p["decode_tps_worst"].get<double>());
    EXPECT_GE(p["decode_tps_worst"].get<double>(), 0);
    EXPECT_GT(p["total_tps"].get<double>(), 0);
  }
}

TEST(CliBench, ParallelOnAFileWithoutVocabularyTakesTokenizer) {
  const std::string dir = owl::test::temp_dir();
  const std::string model = dir + "/tiny.gguf";
  auto r = run_owl({"synth", "--shape", "tiny-llama", "--type", "f32", "-o", model});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_owl({"bench", model, "--parallel", "2", "-p", "4", "-n", "3", "-r", "1", "-t", "1"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--tokenizer"), std::string::npos) << r.err;
  nlohmann::json j =
      bench_json({model, "--parallel", "2", "--tokenizer", owl::test::shared_path("tokenizers/llama-3.1")});
  EXPECT_EQ(j["parallel"][0]["generated_tokens"], 8);
}

TEST(CliBench, QuantAtLoadShrinksTheBytesPerToken) {
  const std::string hf = owl::test::shared_path("golden/llama/hf");
  const double f32 = bench_json({hf})["bytes_per_token"].get<double>();
  const double q8 = bench_json({hf, "--quant", "q8_0"})["bytes_per_token"].get<double>();
  // Q8_0 is 34 bytes per 32 weights against 128; norms stay F32.
  EXPECT_LT(q8, 0.35 * f32);
  EXPECT_GT(q8, 34.0 / 128.0 * f32);
}

// --verify-rows: per row count, the weight bytes its forward read. One row reads k of E experts
// of every routed stack, exactly; three rows read more experts (at most three times as many),
// everything else once whatever the rows; the floor is those bytes at the probe's bandwidth.
TEST(CliBench, VerifyRowsCountTheWeightsRead) {
  const std::string model = owl::test::shared_path("golden/qwen3moe/f32.gguf");
  nlohmann::json j = bench_json({model, "--verify-rows", "1,3"}, "1");
  auto src = owl::open_model_source(model);
  double routed = 0;
  for (const auto& t : src->tensors())
    if (t.name.find("_exps.") != std::string::npos) routed += static_cast<double>(t.n_bytes());
  routed *= static_cast<double>(src->config().n_expert_used) / static_cast<double>(src->config().n_expert);
  const nlohmann::json& v = j["verify_rows"];
  ASSERT_EQ(v.size(), 2u);
  auto num = [&](int row, const char* key) { return v[row][key].get<double>(); };
  EXPECT_NEAR(num(0, "routed_bytes"), routed, 1e-9 * routed);
  EXPECT_EQ(num(0, "weight_bytes") - num(0, "routed_bytes"), num(1, "weight_bytes") - num(1, "routed_bytes"));
  EXPECT_GT(num(1, "routed_bytes"), num(0, "routed_bytes"));
  EXPECT_LE(num(1, "routed_bytes"), 3 * num(0, "routed_bytes"));
  // The per-token figure also counts the norms and an embedding row, which no matmul reads.
  EXPECT_LT(num(0, "weight_bytes"), j["bytes_per_token"].get<double>());
  EXPECT_NEAR(num(1, "bytes_vs_one_row"), num(1, "weight_bytes") / num(0, "weight_bytes"), 1e-9);
  const double bw = j["bandwidth_gbs"].get<double>() * 1e9;
  for (int row : {0, 1}) EXPECT_NEAR(num(row, "floor_ms"), 1e3 * num(row, "weight_bytes") / bw, 1e-9 * 1e3);
}

TEST(CliBench, BadInput) {
  const std::string gguf = owl::test::shared_path("golden/llama/f32.gguf");
  auto r = run_owl({"bench", gguf, "--quant", "q8_0", "-p", "4", "-n", "2"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("owl quantize"), std::string::npos) << r.err;
  r = run_owl({"bench", gguf, "--seqs", "0"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--seqs must be 1..256"), std::string::npos) << r.err;
  for (const std::vector<std::string>& bad :
       std::vector<std::vector<std::string>>{{"-d", "-1"},
                                             {"--parallel", "0"},
                                             {"--parallel", "2", "-d", "8"},
                                             {"--parallel", "2", "--verify-rows", "2"}}) {
    std::vector<std::string> args = {"bench", gguf, "-p", "4", "-n", "2"};
    args.insert(args.end(), bad.begin(), bad.end());
    r = run_owl(args);
    EXPECT_EQ(r.exit_code, 2) << bad[0] << " " << bad[1] << ": " << r.err;
    EXPECT_NE(r.err.find(bad[0]), std::string::npos) << r.err;
  }
  r = run_owl({"bench", "no/such/model.gguf"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("does not exist"), std::string::npos) << r.err;
}

}  // namespace
