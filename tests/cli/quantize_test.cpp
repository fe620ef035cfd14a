// `owl quantize` as a command: its summary, requantising with a warning, and one
// clear line for each class of bad input (exit 2 for usage, 1 for runtime errors),
// never leaving OUT (or OUT.tmp) behind. And --quant at load for Hugging Face folders.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "convert/quantize_test_util.h"

using namespace owl;
using namespace owl::test;
using namespace owl::test::quant;
namespace fs = std::filesystem;

namespace {

int count_lines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

// A bad-input run: the exit code, one line on stderr naming the problem, no output file.
void expect_refused(const std::vector<std::string>& args, int code, const std::string& says, const std::string& out) {
  test::RunResult r = test::run_owl(args);
  EXPECT_EQ(r.exit_code, code) << r.err;
  EXPECT_NE(r.err.find(says), std::string::npos) << r.err;
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  if (!out.empty()) {
    EXPECT_FALSE(fs::exists(out)) << out;
    EXPECT_FALSE(fs::exists(out + ".tmp")) << out << ".tmp";
  }
}

}  // namespace

TEST(QuantizeCli, PrintsASummary) {
  const std::string out = test::temp_dir() + "/llama-q4_k_m.gguf";
  test::RunResult r =
      test::run_owl({"quantize", test::shared_path("golden/llama/f32.gguf"), out, "q4_k_m", "--threads", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // llama: 5 F32 (norms), 13 Q4_K, 3 Q6_K, as llama.cpp's q4_k_m.cases.json counts them.
  EXPECT_NE(r.out.find("21 tensors (5 F32, 13 Q4_K, 3 Q6_K)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("MiB ->"), std::string::npos) << r.out;
  EXPECT_EQ(r.err, "");
  EXPECT_TRUE(fs::exists(out));
  EXPECT_FALSE(fs::exists(out + ".tmp"));
}

// From an already quantised file: a warning, and the same type choices as from F32.
TEST(QuantizeCli, RequantisingWarnsAndKeepsThePlan) {
  const std::string out = test::temp_dir() + "/qwen3-from-q8.gguf";
  test::RunResult r = test::run_owl({"quantize", test::shared_path("golden/qwen3/q8_0.gguf"), out, "q4_k_m"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("warning: requantising 15 tensors already stored quantised (15 Q8_0)"), std::string::npos)
      << r.err;
  auto ours = gguf::File::open(out);
  auto gold = gguf::File::open(test::shared_path("golden/qwen3/q4_k_m.gguf"));
  for (const auto& g : gold->tensor_infos()) {
    const gguf::TensorInfo* o = ours->find_info(g.name);
    ASSERT_TRUE(o) << g.name;
    EXPECT_EQ(o->type, g.type) << g.name;
  }
  // And it still runs about as close to F32 as llama.cpp's q4_k_m made from F32.
  auto src = open_model_source(out);
  const Golden f32 = load_golden("qwen3", "f32");
  const Agreement requant = prompt_agreement(*src, f32);
  const Agreement theirs = prompt_agreement(load_golden("qwen3", "q4_k_m"), f32);
  std::printf("  qwen3 q8_0 -> q4_k_m vs f32: %s; llama.cpp q4_k_m from f32: %s\n", describe(requant).c_str(),
              describe(theirs).c_str());
  EXPECT_LE(requant.mean_kl, 1.25 * theirs.mean_kl) << describe(requant);
  EXPECT_GE(requant.argmax_agree, theirs.argmax_agree - 0.07) << describe(requant);
}

// --nextn-type: the NextN layer's matrices (its block and eh_proj) get that type, its norms and
// the trunk keep the mix; the file still runs its head.
TEST(QuantizeCli, NextnTypeAppliesToTheNextnLayerOnly) {
  const std::string dir = test::temp_dir(), out = dir + "/q.gguf";
  const std::string f32 = test::shared_path("golden/deepseek-v3-mtp/f32.gguf");
  auto r = test::run_owl({"quantize", f32, out, "q4_k_m", "--nextn-type", "q8_0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto f = gguf::File::open(out);
  int matrices = 0;
  for (const auto& t : f->tensor_infos()) {
    const bool nextn = t.name.rfind("blk.3.", 0) == 0;
    if (nextn && t.n_dims >= 2) {
      EXPECT_EQ(t.type, DType::Q8_0) << t.name;
      ++matrices;
    }
    if (nextn && t.n_dims == 1) {
      EXPECT_EQ(t.type, DType::F32) << t.name;
    }
  }
  EXPECT_EQ(matrices, 14);  // MLA + MoE block (13) and eh_proj
  // The trunk keeps Q4_K_M's mix: the types of llama.cpp's Q4_K_M of the same file.
  auto gold = gguf::File::open(test::shared_path("golden/deepseek-v3-mtp/q4_k_m.gguf"));
  for (const auto& t : gold->tensor_infos()) {
    if (t.name.rfind("blk.3.", 0) != 0) {
      EXPECT_EQ(f->find_info(t.name)->type, t.type) << t.name;
    }
  }
  expect_refused(
      {"quantize", test::shared_path("golden/llama/f32.gguf"), dir + "/x.gguf", "q8_0", "--nextn-type", "q4_0"}, 2,
      "no NextN", dir + "/x.gguf");
  expect_refused({"quantize", f32, dir + "/y.gguf", "q8_0", "--nextn-type", "q9"}, 2, "unknown quantisation type",
                 dir + "/y.gguf");
}

TEST(QuantizeCli, BadInputs) {
  const std::string dir = test::temp_dir();
  const std::string f32 = test::shared_path("golden/llama/f32.gguf");
  const std::string out = dir + "/out.gguf";
  // Unknown type: usage error listing the valid ones.
  expect_refused({"quantize", f32, out, "q3_k_xl"}, 2, "unknown quantisation type 'q3_k_xl'; use one of f32,", out);
  // Same file for input and output (also through another spelling of the path).
  const std::string copy = dir + "/copy.gguf";
  fs::copy_file(f32, copy);
  expect_refused({"quantize", copy, copy, "q8_0"}, 2, "input and output are the same file", "");
  expect_refused({"quantize", copy, dir + "/./copy.gguf", "q8_0"}, 2, "input and output are the same file", "");
  EXPECT_EQ(fs::file_size(copy), fs::file_size(f32));
  // Missing input; a folder as input.
  expect_refused({"quantize", dir + "/nope.gguf", out, "q8_0"}, 1, "does not exist", out);
  expect_refused({"quantize", dir, out, "q8_0"}, 1, "is a folder", out);
  // Corrupt input: not GGUF, and a truncated GGUF.
  const std::string junk = dir + "/junk.gguf";
  std::ofstream(junk) << "this is not a model file";
  expect_refused({"quantize", junk, out, "q8_0"}, 1, junk, out);
  const std::string cut = dir + "/cut.gguf";
  fs::copy_file(f32, cut);
  fs::resize_file(cut, fs::file_size(f32) / 2);
  expect_refused({"quantize", cut, out, "q8_0"}, 1, cut, out);
  // Unwritable output: a folder that does not exist, and a folder as the output.
  expect_refused({"quantize", f32, dir + "/no/such/dir/out.gguf", "q8_0"}, 1, "cannot create",
                 dir + "/no/such/dir/out.gguf");
  expect_refused({"quantize", f32, dir, "q8_0"}, 2, "is a folder", "");
  // Bad --threads.
  expect_refused({"quantize", f32, out, "q8_0", "--threads", "-3"}, 2, "--threads", out);
}

// --quant at load: the HF twins quantised while they open hold exactly the bytes
// `owl quantize f32.gguf OUT q8_0` writes (the twins are the same weights; llama's Q/K rows
// are permuted back before quantising), and their logits are within the README's Q8_0
// bounds of the golden F32 logits.
TEST(QuantAtLoad, HfTwinsQ8_0EqualOwlQuantizeAndStayWithinBounds) {
  for (const std::string model : {"llama", "qwen3", "deepseek-v3"}) {
    SCOPED_TRACE(model);
    auto hf = open_hf_source(test::shared_path("golden/" + model + "/hf"), "q8_0");
    auto file = gguf::File::open(quantized(model, "q8_0"));
    size_t n = 0;
    for (const auto& t : hf->tensors()) {
      const gguf::TensorInfo* ti = file->find_info(t.name);
      ASSERT_TRUE(ti) << t.name;
      EXPECT_EQ(t.type, ti->type) << t.name;
      ASSERT_EQ(t.n_bytes(), ti->n_bytes) << t.name;
      EXPECT_EQ(std::memcmp(t.data, file->view(*ti).data, t.n_bytes()), 0) << t.name << " differs";
      ++n;
    }
    EXPECT_EQ(n, file->tensor_infos().size());
    Agreement a = agreement(*hf, load_golden(model, "f32"));
    std::printf("  %s/hf --quant q8_0 vs golden f32: %s\n", model.c_str(), describe(a).c_str());
    expect_quant_bounds(a, is_moe(model), model + " hf q8_0");
  }
}

// The option end to end through `owl logits`, and its errors.
TEST(QuantAtLoad, LogitsCommandTakesQuant) {
  const std::string dir = test::temp_dir();
  const Golden g = load_golden("qwen3", "f32");
  const GoldenCase& c = g.cases[1];  // medium
  std::string ids;
  for (int32_t t : c.tokens) ids += (ids.empty() ? "" : ",") + std::to_string(t);
  const std::string hf = test::shared_path("golden/qwen3/hf");
  test::RunResult r = test::run_owl({"logits", hf, "--quant", "q8_0", "--tokens", ids, "--out", dir + "/l.f32"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Agreement a = compare(test::read_f32(dir + "/l.f32"), c.logits, g.n_vocab);
  std::printf("  qwen3/hf owl logits --quant q8_0, medium: %s\n", describe(a).c_str());
  expect_quant_bounds(a, false, "owl logits --quant q8_0");
  EXPECT_GT(a.max_abs, 0.0) << "the weights were not quantised";

  // Unknown type: usage error before loading; a GGUF file: usage error pointing at owl quantize.
  r = test::run_owl({"logits", hf, "--quant", "q9", "--tokens", "1,2", "--out", dir + "/x.f32"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("unknown quantisation type 'q9'"), std::string::npos) << r.err;
  const std::string gguf_path = test::shared_path("golden/qwen3/f32.gguf");
  r = test::run_owl({"logits", gguf_path, "--quant", "q8_0", "--tokens", "1,2", "--out", dir + "/x.f32"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("use `owl quantize"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir + "/x.f32"));
}

// Every command that opens a model takes --quant.
TEST(QuantAtLoad, EveryLoadingCommandHasTheOption) {
  for (const char* cmd : {"run", "logits", "serve", "chat", "info"}) {
    test::RunResult r = test::run_owl({cmd, "--help"});
    EXPECT_EQ(r.exit_code, 0) << cmd;
    EXPECT_NE(r.out.find("--quant"), std::string::npos) << cmd << " lacks --quant";
  }
  // owl info shows the converted types.
  test::RunResult r = test::run_owl({"info", test::shared_path("golden/llama/hf"), "--quant", "q4_k_m", "--tensors"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("Q6_K"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Q4_K"), std::string::npos) << r.out;
}
