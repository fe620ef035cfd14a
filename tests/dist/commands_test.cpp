// run, bench and serve under mpirun: rank 0 runs the command, the others serve its steps, and
// the text is the single process's (greedy sampling, stories260K: real trained weights).
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "dist/mpi_util.h"

namespace owl::test {
namespace {

const char* kPrompt = "Once upon a time";

TEST(DistCommands, RunPrintsTheSingleProcessText) {
  const std::string model = shared_path("models/stories260K/stories260K-f32.gguf");
  RunResult one = run_owl({"run", model, kPrompt, "-n", "24", "--temp", "0", "-t", "1"});
  ASSERT_EQ(one.exit_code, 0) << one.err;
  ASSERT_GT(one.out.size(), 40u);
  for (const char* split : {"layers"}) {
    RunResult r = run_mpi(2, {"run", model, kPrompt, "-n", "24", "--temp", "0", "-t", "1", "--split", split});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    // mpirun hands rank 0 a terminal for stdout, so run ends the text with a newline there.
    std::string text = r.out;
    if (!text.empty() && text.back() == '\n') text.pop_back();
    EXPECT_EQ(text, one.out);
    EXPECT_NE(r.err.find("generated 24 tokens"), std::string::npos) << r.err;
  }
}

TEST(DistCommands, BenchReportsFromRankZero) {
  RunResult r = run_mpi(3, {"bench", shared_path("golden/qwen3moe/q4_k_m.gguf"), "-p", "8", "-n", "4", "-r", "1", "-t",
                            "1", "--split", "experts"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.find("tg4 "), r.out.rfind("tg4 ")) << "one report, from rank 0: " << r.out;
  EXPECT_NE(r.out.find("pp8 "), std::string::npos) << r.out;
}

// Real HTTP completions from `mpirun -n 3 owl serve --split layers --micro-batches 3`: three
// requests at once share the server's steps, which the pipeline cuts into micro-batches; each
// answer is the single process's text for its prompt alone (rows do not depend on their batch).
// SIGTERM to rank 0's owl ends every rank and the job exits 0.
TEST(DistCommands, ServeAnswersConcurrentRequestsAndStopsCleanly) {
  const std::string model = shared_path("models/stories260K/stories260K-f32.gguf");
  const std::vector<std::string> prompts = {kPrompt, "The little dog", "Lily and Tom went to"};
  std::vector<std::string> alone;
  for (const auto& p : prompts) {
    RunResult one = run_owl({"run", model, p, "-n", "16", "--temp", "0", "-t", "1"});
    ASSERT_EQ(one.exit_code, 0) << one.err;
    alone.push_back(one.out);
  }
  const std::string dir = temp_dir();
  const std::string url = "http://127.0.0.1:" + std::to_string(20000 + static_cast<int>(::getpid() % 20000));
  std::string mpirun = "mpirun";
  for (const auto& a : mpirun_options()) mpirun += " " + a;
  std::string script = "timeout 120 " + mpirun + " -n 3 " + shell_quote(OWL_BINARY) + " serve " + shell_quote(model) +
                       " --split layers --micro-batches 3 --threads 1 --port " + url.substr(url.rfind(':') + 1) + " >" +
                       shell_quote(dir + "/log") +
                       " 2>&1 & mp=$!\n"
                       "for i in $(seq 300); do curl -sf " +
                       url + "/health >/dev/null && break; sleep 0.1; done\n";
  for (size_t i = 0; i < prompts.size(); ++i)
    script += "curl -s " + url + "/v1/completions -d '{\"prompt\": \"" + prompts[i] +
              "\", \"max_tokens\": 16, \"temperature\": 0}' >" + shell_quote(dir + "/answer" + std::to_string(i)) +
              " & c=\"$c $!\"\n";
  script +=
      "wait $c\n"
      "curl -s " +
      url + "/metrics >" + shell_quote(dir + "/metrics") +
      "\n"
      "for p in $(pgrep -P $(pgrep -P $mp -x mpirun || echo $mp)); do\n"
      "  tr '\\0' '\\n' </proc/$p/environ | grep -qx OMPI_COMM_WORLD_RANK=0 && kill -TERM $p\n"
      "done\n"
      "wait $mp\n";
  { std::ofstream(dir + "/serve.sh") << script; }
  const int st = std::system(("bash " + shell_quote(dir + "/serve.sh")).c_str());
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 0) << read_file(dir + "/log");
  // The requests shared steps: fewer than one step per token of each.
  const std::string metrics = read_file(dir + "/metrics");
  const size_t at = metrics.find("\nowl_engine_steps_total ");
  ASSERT_NE(at, std::string::npos) << metrics;
  EXPECT_LT(std::stoi(metrics.substr(at + 24)), 3 * 16) << metrics;
  for (size_t i = 0; i < prompts.size(); ++i) {
    SCOPED_TRACE(prompts[i]);
    const auto answer = nlohmann::json::parse(read_file(dir + "/answer" + std::to_string(i)));
    EXPECT_EQ(answer.at("choices").at(0).at("text").get<std::string>(), alone[i]);
  }
}

}  // namespace
}  // namespace owl::test
