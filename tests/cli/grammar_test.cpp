// owl grammar check / bench as a user runs them: JSON output with the rejected byte,
// compile errors as data, and the MaskBench summary line on a small folder of real cases.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <nlohmann/json.hpp>
#include <string>

#include "test_util.h"

namespace {

using owl::test::run_owl;

std::string write(const std::string& dir, const std::string& name, const std::string& text) {
  std::string p = dir + "/" + name;
  std::ofstream(p, std::ios::binary) << text;
  return p;
}

TEST(GrammarCli, CheckPrintsAcceptedAndTheRejectedByte) {
  std::string dir = owl::test::temp_dir();
  std::string tok = owl::test::shared_path("tokenizers/llama-3.1");
  std::string schema = write(
      dir, "s.json", R"({"type":"object","properties":{"id":{"type":"integer","maximum":99}},"required":["id"]})");
  auto ok = run_owl(
      {"grammar", "check", "--schema", schema, "--instance", write(dir, "ok.json", R"({ "id": 42 })"), "--model", tok});
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(ok.out, "{\"compiled\":true,\"error\":null,\"accepted\":true,\"rejected_at\":null}\n");
  auto bad = run_owl(
      {"grammar", "check", "--schema", schema, "--instance", write(dir, "bad.json", R"({"id": 100})"), "--model", tok});
  ASSERT_EQ(bad.exit_code, 0) << bad.err;
  EXPECT_EQ(bad.out, "{\"compiled\":true,\"error\":null,\"accepted\":false,\"rejected_at\":8}\n");  // {"id":10 then '0'
  auto gbnf = run_owl({"grammar", "check", "--gbnf", write(dir, "g.gbnf", "root ::= \"a\"+ \"b\""), "--instance",
                       write(dir, "t.txt", "aaab"), "--model", tok});
  EXPECT_EQ(gbnf.out, "{\"compiled\":true,\"error\":null,\"accepted\":true,\"rejected_at\":null}\n");
}

TEST(GrammarCli, CompileErrorsAreReported) {
  std::string dir = owl::test::temp_dir();
  std::string tok = owl::test::shared_path("tokenizers/llama-3.1");
  std::string inst = write(dir, "i.json", "1");
  auto r = run_owl({"grammar", "check", "--schema", write(dir, "s.json", R"({"type":"integer","multipleOf":3})"),
                    "--instance", inst, "--model", tok});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_FALSE(j["compiled"].get<bool>());
  EXPECT_EQ(j["error"], "unsupported JSON Schema keyword: multipleOf");
  auto gb = run_owl(
      {"grammar", "check", "--gbnf", write(dir, "g.gbnf", "root ::= (\"a\""), "--instance", inst, "--model", tok});
  EXPECT_EQ(nlohmann::json::parse(gb.out)["error"], "GBNF syntax error at line 1, column 14: expected ')'");
  auto usage = run_owl({"grammar", "check", "--instance", inst, "--model", tok});
  EXPECT_EQ(usage.exit_code, 2);
  EXPECT_NE(usage.err.find("give one of --schema or --gbnf"), std::string::npos) << usage.err;
}

TEST(GrammarCli, BenchPrintsTheSummaryLine) {
  std::string dir = owl::test::temp_dir();
  for (const char* f : {"Github_easy---o17438.json", "Github_easy---o46379.json"})
    std::filesystem::copy_file(owl::test::shared_path(std::string("jsonschema/maskbench/") + f), dir + "/" + f);
  auto r = run_owl({"grammar", "bench", dir, "--model", owl::test::shared_path("tokenizers/llama-3.1"), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string body = r.out.substr(0, r.out.size() - 1);
  std::string last = body.substr(body.rfind('\n') + 1);
  auto j = nlohmann::json::parse(last);
  EXPECT_EQ(j["cases"], 2);
  EXPECT_EQ(j["passing"], 1);
  EXPECT_EQ(j["compile_errors"], 1);
  EXPECT_EQ(j["invalid_accepted"], 0);
  EXPECT_EQ(j["valid_rejected"], 0);
  for (const char* k : {"p50", "p75", "p90", "p99", "p999"}) {
    EXPECT_TRUE(j["mask_us"].contains(k));
    EXPECT_TRUE(j["compile_us"].contains(k));
  }
  EXPECT_NE(r.out.find("FAIL Github_easy---o46379.json compile error: unsupported JSON Schema keyword: multipleOf"),
            std::string::npos)
      << r.out;
}

// --slowest N names the N slowest masks (all from the one case that compiles) on stderr;
// --cpu-time changes only the clock.
TEST(GrammarCli, BenchTracesTheSlowestMasks) {
  std::string dir = owl::test::temp_dir();
  for (const char* f : {"Github_easy---o17438.json", "Github_easy---o46379.json"})
    std::filesystem::copy_file(owl::test::shared_path(std::string("jsonschema/maskbench/") + f), dir + "/" + f);
  auto r = run_owl({"grammar", "bench", dir, "--model", owl::test::shared_path("tokenizers/llama-3.1"), "--json",
                    "--cpu-time", "--slowest", "3"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::istringstream err(r.err);
  std::vector<std::string> lines;
  for (std::string line; std::getline(err, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 3u) << r.err;
  double prev = 1e18;
  for (const std::string& l : lines) {
    EXPECT_NE(l.find(" us  Github_easy---o17438.json  instance "), std::string::npos) << l;
    EXPECT_NE(l.find(" byte "), std::string::npos) << l;
    double us = std::stod(l);
    EXPECT_LE(us, prev) << r.err;  // slowest first
    prev = us;
  }
  std::string body = r.out.substr(0, r.out.size() - 1);
  EXPECT_EQ(nlohmann::json::parse(body.substr(body.rfind('\n') + 1))["passing"], 1);
}

}  // namespace
