// Faults of a distributed run: a rank killed mid-request ends the job (mpirun names the rank and
// its host), a rank that stops answering ends it after OWL_DIST_TIMEOUT with owl's own line
// naming it, model files that differ between ranks are refused at start, and bad --split use
// gets one clear line.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "dist/mpi_util.h"

namespace owl::test {
namespace {

std::string host_name() {
  char name[256] = {};
  ::gethostname(name, sizeof name - 1);
  return name;
}

// Starts a long greedy run on 2 ranks (pipeline), sends `signal` to rank 1 once it runs, and
// waits for the job (60 s at most: a hang fails the test). Returns mpirun's exit code and stderr.
RunResult signal_rank_one_mid_request(const std::string& signal) {
  const std::string dir = temp_dir();
  const std::string model = shared_path("golden/qwen3/q4_k_m.gguf");
  std::string mpirun = "mpirun --allow-run-as-root --oversubscribe -x OWL_DIST_TIMEOUT=3 -n 2 " +
                       shell_quote(OWL_BINARY) + " logits " + shell_quote(model) + " --tokens 1,2,3 --out " +
                       shell_quote(dir + "/x.f32") + " --greedy 40000 --split layers -t 1";
  // Rank 1 is the child of mpirun whose environment says OMPI_COMM_WORLD_RANK=1.
  const std::string script =
      "timeout 60 " + mpirun + " >/dev/null 2>" + shell_quote(dir + "/err") +
      " & mp=$!\n"
      "for i in $(seq 200); do\n"
      "  for p in $(pgrep -P $(pgrep -P $mp -x mpirun || echo $mp)); do\n"
      "    if tr '\\0' '\\n' </proc/$p/environ 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=1; then\n"
      "      sleep 0.5; kill -" +
      signal +
      " $p; victim=$p; break 2; fi\n"
      "  done; sleep 0.1\n"
      "done\n"
      "wait $mp; rc=$?; [ -n \"$victim\" ] && kill -9 $victim 2>/dev/null; exit $rc\n";
  { std::ofstream(dir + "/fault.sh") << script; }
  const int st = std::system(("bash " + shell_quote(dir + "/fault.sh")).c_str());
  RunResult r;
  r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  r.err = read_file(dir + "/err");
  return r;
}

TEST(DistFaults, KilledRankEndsTheJobNamingRankAndHost) {
  RunResult r = signal_rank_one_mid_request("KILL");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.exit_code, 124) << "the job hung after a rank died";
  EXPECT_NE(r.err.find("process rank 1"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("on node " + host_name()), std::string::npos) << r.err;
}

TEST(DistFaults, StoppedRankEndsTheJobAfterTheTimeout) {
  RunResult r = signal_rank_one_mid_request("STOP");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("owl: error: rank 0 (host " + host_name() + ") waited 3 s for activations from rank 1 (host " +
                       host_name() + "); it died or stopped answering"),
            std::string::npos)
      << r.err;
}

TEST(DistFaults, ModelFilesThatDifferBetweenRanksAreRefused) {
  const std::string model = shared_path("golden/qwen3/q4_k_m.gguf");
  const std::string dir = temp_dir();
  // Same size, one letter of the description changed: only the header checksum tells.
  std::string bytes = read_file(model);
  const size_t at = bytes.find("random-weight");
  ASSERT_NE(at, std::string::npos);
  bytes[at] = 'R';
  const std::string other = dir + "/other.gguf";
  { std::ofstream(other, std::ios::binary) << bytes; }
  const std::string out = dir + "/x.f32";
  // Rank 0 opens the file, rank 1 the changed copy.
  const std::string cmd = "mpirun --allow-run-as-root --oversubscribe -q -n 1 " + shell_quote(OWL_BINARY) + " logits " +
                          shell_quote(model) + " --tokens 1,2 --out " + shell_quote(out) + " --split layers : -n 1 " +
                          shell_quote(OWL_BINARY) + " logits " + shell_quote(other) + " --tokens 1,2 --out " +
                          shell_quote(out) + " --split layers 2>" + shell_quote(dir + "/err");
  const int st = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 1);
  const std::string err = read_file(dir + "/err");
  EXPECT_NE(err.find("owl: error: rank 1 (host " + host_name() + "): its model file '" + other + "' (" +
                     std::to_string(bytes.size()) + " bytes, header checksum "),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("differs from rank 0's"), std::string::npos) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << "one line: " << err;
}

TEST(DistFaults, SplitMisuseIsOneClearLine) {
  const std::string dense = shared_path("golden/qwen3/q4_k_m.gguf");
  const std::string out = temp_dir() + "/x.f32";
  struct Case {
    int ranks;
    std::vector<std::string> args;
    int code;
    std::string message;
  };
  const std::vector<Case> cases = {
      {2, {"logits", dense, "--tokens", "1,2", "--out", out}, 2, "give --split layers or --split experts"},
      {2,
       {"logits", dense, "--tokens", "1,2", "--out", out, "--split", "experts"},
       2,
       "model is dense: use --split layers"},
      {2,
       {"logits", dense, "--tokens", "1,2", "--out", out, "--split", "rows"},
       2,
       "--split: rows not in {layers,experts}"},
      {2, {"logits", dense, "--tokens", "1,999", "--out", out, "--split", "layers"}, 1, "token id 999 is outside"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.message);
    RunResult r = run_mpi(c.ranks, c.args);
    EXPECT_EQ(r.exit_code, c.code) << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
  }
  // One rank is the single-process engine, with or without --split.
  RunResult one = run_owl({"logits", dense, "--tokens", "1,2", "--out", out, "--split", "layers"});
  EXPECT_EQ(one.exit_code, 0) << one.err;
}

}  // namespace
}  // namespace owl::test
