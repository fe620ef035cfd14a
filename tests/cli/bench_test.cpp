// `owl bench` end to end on real small models: the JSON report's fields and how they relate
// (never its speeds: those belong in docs/BENCHMARKS.md, not in tests), --quant, --no-repack, --no-vnni,
// and its errors.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "kernels/kernels.h"
#include "test_util.h"

namespace {

using owl::test::run_owl;

nlohmann::json bench_json(const std::vector<std::string>& extra) {
  std::vector<std::string> args = {"bench", "-p", "8", "-n", "4", "-r", "1", "-t", "1", "--json"};
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

TEST(CliBench, QuantAtLoadShrinksTheBytesPerToken) {
  const std::string hf = owl::test::shared_path("golden/llama/hf");
  const double f32 = bench_json({hf})["bytes_per_token"].get<double>();
  const double q8 = bench_json({hf, "--quant", "q8_0"})["bytes_per_token"].get<double>();
  // Q8_0 is 34 bytes per 32 weights against 128; norms stay F32.
  EXPECT_LT(q8, 0.35 * f32);
  EXPECT_GT(q8, 34.0 / 128.0 * f32);
}

TEST(CliBench, BadInput) {
  const std::string gguf = owl::test::shared_path("golden/llama/f32.gguf");
  auto r = run_owl({"bench", gguf, "--quant", "q8_0", "-p", "4", "-n", "2"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("owl quantize"), std::string::npos) << r.err;
  r = run_owl({"bench", gguf, "--seqs", "0"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--seqs must be 1..256"), std::string::npos) << r.err;
  r = run_owl({"bench", "no/such/model.gguf"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("does not exist"), std::string::npos) << r.err;
}

}  // namespace
