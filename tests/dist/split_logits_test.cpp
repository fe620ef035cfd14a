// `mpirun -n N owl logits MODEL --split layers|experts` on every golden family: the logits of
// every position and the greedy ids equal the single process's bit for bit, with 2 and 3 ranks
// (3 ranks on a 2-layer model leave a stage without layers, which must pass the activations on).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <regex>

#include "dist/mpi_util.h"
#include "model/golden_util.h"

namespace owl::test {
namespace {

struct SplitCase {
  const char* model;
  bool moe;
};

const SplitCase kFamilies[] = {
    {"llama", false},   {"llama-rope-scaled", false}, {"qwen2", false},           {"qwen3", false},
    {"qwen3moe", true}, {"deepseek-v3", true},        {"deepseek-v2-lite", true}, {"glm4moe", true},
};

// The single process's logits file and greedy ids for case `case_index` of model/quant.
struct Reference {
  std::string model_file, tokens, logits;
  std::string greedy;
};

Reference single_process(const std::string& model, const std::string& quant, size_t case_index, const char* greedy) {
  Golden g = load_golden(model, quant);
  Reference ref;
  ref.model_file = g.dir + "/" + quant + ".gguf";
  ref.tokens = join_ids(g.cases.at(case_index).tokens);
  const std::string out = temp_dir() + "/single.f32";
  RunResult r =
      run_owl({"logits", ref.model_file, "--tokens", ref.tokens, "--out", out, "--greedy", greedy, "-t", "1"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  ref.logits = read_file(out);
  ref.greedy = r.out;
  EXPECT_EQ(ref.logits.size(), g.cases.at(case_index).tokens.size() * 512 * sizeof(float));
  return ref;
}

void expect_same_as_single(const Reference& ref, int n_ranks, const std::string& split, const char* greedy) {
  SCOPED_TRACE("mpirun -n " + std::to_string(n_ranks) + " --split " + split);
  const std::string out = temp_dir() + "/split.f32";
  RunResult r = run_mpi(n_ranks, {"logits", ref.model_file, "--tokens", ref.tokens, "--out", out, "--greedy", greedy,
                                  "-t", "1", "--split", split});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, ref.greedy);
  EXPECT_TRUE(read_file(out) == ref.logits) << "logits differ from the single process";
}

TEST(SplitLogits, EveryFamilyBothSplitsTwoAndThreeRanksEqualOneProcess) {
  for (const SplitCase& f : kFamilies) {
    SCOPED_TRACE(f.model);
    const Reference ref = single_process(f.model, "q4_k_m", 0, "3");
    for (int n : {2, 3}) {
      expect_same_as_single(ref, n, "layers", "3");
      if (f.moe) expect_same_as_single(ref, n, "experts", "3");
    }
  }
}

// A 256-token prompt runs in chunks through the pipeline (dense models: 64 rows a chunk) and in
// one batch through the expert exchange; F32 weights take the unpacked kernels.
TEST(SplitLogits, LongPromptsInChunksAndF32Weights) {
  const Reference dense = single_process("qwen2", "f32", 2, "4");
  expect_same_as_single(dense, 3, "layers", "4");
  const Reference moe = single_process("deepseek-v3", "f32", 2, "4");
  expect_same_as_single(moe, 3, "experts", "4");
  expect_same_as_single(moe, 2, "layers", "4");
}

// Ranks launched with different --mem values (mpirun's colon syntax) get layer ranges in
// proportion to their budgets, and the logits stay the single process's. deepseek-v3 has three
// trunk layers; equal budgets give rank 0 layers [0, 2) (Placement tests), a quarter of the
// memory on rank 0 gives it one layer only, six sevenths all three (rank 1 passes the
// activations on).
TEST(SplitLogits, LayerRangesFollowEachRanksMemBudget) {
  const Reference ref = single_process("deepseek-v3", "q4_k_m", 0, "3");
  const std::string out = temp_dir() + "/split.f32";
  const std::vector<std::string> args = {"logits", ref.model_file, "--tokens", ref.tokens, "--out",  out,    "--greedy",
                                         "3",      "-t",           "1",        "--split",  "layers", "--mem"};
  struct Budgets {
    const char* rank0;
    const char* rank1;
    const char* ranges;  // "rank 0 [b, e), rank 1 [b, e)"
  };
  for (const Budgets& b : {Budgets{"1G", "3G", "[0, 1) [1, 3)"}, Budgets{"6G", "1G", "[0, 3) [3, 3)"}}) {
    SCOPED_TRACE(std::string("--mem ") + b.rank0 + " : --mem " + b.rank1);
    std::vector<std::string> rank0 = args, rank1 = args;
    rank0.emplace_back(b.rank0);
    rank1.emplace_back(b.rank1);
    RunResult r = run_mpi_per_rank({rank0, rank1}, {"-x", "OWL_LOG=info"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, ref.greedy);
    EXPECT_TRUE(read_file(out) == ref.logits) << "logits differ from the single process";
    // Each rank logs its range at info level: "rank R (host H): trunk layers [B, E) for ...".
    const std::regex line(R"(rank (\d) \(host [^)]*\): trunk layers (\[\d+, \d+\)) for a memory budget of )");
    std::string ranges[2];
    for (std::sregex_iterator m(r.err.begin(), r.err.end(), line), end; m != end; ++m)
      ranges[std::stoi((*m)[1].str())] = (*m)[2].str();
    EXPECT_EQ(ranges[0] + " " + ranges[1], b.ranges) << r.err;
  }
}

// Several sequences in one batch, as a server runs them: the prompts in one call, then greedy
// steps of one row per sequence. The pipeline cuts each step between sequences into as many
// micro-batches as ranks (rank k works on one while rank k + 1 works on the one before); the
// logits of the prompts and of every step equal the single process's bit for bit, with 2 and 3
// ranks and the default (MoE: as many as ranks; dense: none). qwen3 (dense, 64-row chunks) and
// deepseek-v3 (MoE, MLA).
TEST(SplitLogits, MicroBatchedStepsOfSeveralSequencesEqualOneProcess) {
  for (const char* model : {"qwen3", "deepseek-v3"}) {
    SCOPED_TRACE(model);
    const Golden g = load_golden(model, "q4_k_m");
    const std::string file = g.dir + "/q4_k_m.gguf", dir = temp_dir();
    std::vector<std::string> args = {"logits", file, "--greedy", "4", "-t", "1"};
    for (int q = 0; q < 5; ++q) {  // 5 sequences of 3..7 prompt tokens
      const auto& t = g.cases.at(1).tokens;
      args.insert(args.end(), {"--tokens", join_ids({t.begin() + 9 * q, t.begin() + 9 * q + 3 + q})});
    }
    auto with = [&](const std::string& tag) {
      std::vector<std::string> a = args;
      a.insert(a.end(), {"--out", dir + "/" + tag + ".f32", "--greedy-out", dir + "/" + tag + ".steps.f32"});
      return a;
    };
    const RunResult one = run_owl(with("one"));
    ASSERT_EQ(one.exit_code, 0) << one.err;
    ASSERT_EQ(read_file(dir + "/one.steps.f32").size(), 3u * 5u * 512u * sizeof(float));
    struct Run {
      int ranks;
      const char* micro_batches;
    };
    for (const Run& run : {Run{2, "2"}, Run{3, "3"}, Run{3, "0"}}) {
      SCOPED_TRACE(std::to_string(run.ranks) + " ranks, --micro-batches " + run.micro_batches);
      std::vector<std::string> a = with("split");
      a.insert(a.end(), {"--split", "layers", "--micro-batches", run.micro_batches});
      const RunResult r = run_mpi(run.ranks, a);
      ASSERT_EQ(r.exit_code, 0) << r.err;
      EXPECT_EQ(r.out, one.out);
      EXPECT_TRUE(read_file(dir + "/split.f32") == read_file(dir + "/one.f32")) << "prompt logits differ";
      EXPECT_TRUE(read_file(dir + "/split.steps.f32") == read_file(dir + "/one.steps.f32")) << "step logits differ";
    }
  }
}

// The NextN (multi-token prediction) head under a split: in a pipeline rank 0 computes its input
// and logits and the last rank its block; with the expert split every rank runs it on its share
// of the experts. Trunk and head logits equal the single process's bit for bit.
TEST(SplitLogits, MtpHeadEqualsOneProcess) {
  const std::string golden = shared_path("golden/deepseek-v3-mtp"), file = golden + "/q4_k_m.gguf", dir = temp_dir();
  const auto cases = nlohmann::json::parse(read_file(golden + "/q4_k_m.cases.json"));
  const auto ids = cases.at("cases").at(0).at("tokens").get<std::vector<int32_t>>();
  const std::string tokens = join_ids(ids);
  auto args = [&](const std::string& tag) {
    return std::vector<std::string>{"logits",    file,
                                    "--tokens",  tokens,
                                    "--out",     dir + "/" + tag + ".f32",
                                    "--mtp-out", dir + "/" + tag + ".mtp.f32",
                                    "--greedy",  "3",
                                    "-t",        "1"};
  };
  const RunResult one = run_owl(args("one"));
  ASSERT_EQ(one.exit_code, 0) << one.err;
  ASSERT_EQ(read_file(dir + "/one.mtp.f32").size(), ids.size() * cases.at("n_vocab").get<size_t>() * sizeof(float));
  struct Run {
    int ranks;
    const char* split;
  };
  for (const Run& run : {Run{2, "layers"}, Run{2, "experts"}, Run{3, "layers"}}) {
    SCOPED_TRACE(std::to_string(run.ranks) + " ranks, --split " + run.split);
    std::vector<std::string> a = args("split");
    a.insert(a.end(), {"--split", run.split});
    const RunResult r = run_mpi(run.ranks, a);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, one.out);
    EXPECT_TRUE(read_file(dir + "/split.f32") == read_file(dir + "/one.f32")) << "trunk logits differ";
    EXPECT_TRUE(read_file(dir + "/split.mtp.f32") == read_file(dir + "/one.mtp.f32")) << "head logits differ";
  }
}

}  // namespace
}  // namespace owl::test
