// `mpirun -n N owl logits MODEL --split layers|experts` on every golden family: the logits of
// every position and the greedy ids equal the single process's bit for bit, with 2 and 3 ranks
// (3 ranks on a 2-layer model leave a stage without layers, which must pass the activations on).
#include <gtest/gtest.h>

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

}  // namespace
}  // namespace owl::test
