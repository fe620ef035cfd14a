// `owl imatrix` and the low-bit options of `owl quantize` as commands: an importance matrix
// collected from text (per expert, only the tokens routed to it), read back by `owl quantize
// --imatrix`; the IQ1/IQ2 types without one, an imatrix of another model and bad --tensor-type or
// --recipe values are one clear line; --tensor-type and --recipe dynamic-moe choose the types they
// say, `owl info` reports the bits per weight per tensor class, and the bytes do not depend on
// the thread count.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "convert/quantize_test_util.h"
#include "formats/imatrix.h"

using namespace owl;
using namespace owl::test;
namespace fs = std::filesystem;

namespace {

int count_lines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

void expect_refused(const std::vector<std::string>& args, int code, const std::string& says) {
  RunResult r = run_owl(args);
  EXPECT_EQ(r.exit_code, code) << r.err;
  EXPECT_NE(r.err.find(says), std::string::npos) << r.err;
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
}

// A calibration text: English from the shared tokenizer corpus (about 3000 bytes).
std::string calibration_file() {
  const std::string path = temp_dir() + "/calibration.txt";
  std::ifstream in(shared_path("tokenizers/corpus.jsonl"));
  std::ofstream out(path);
  std::string line;
  size_t written = 0;
  while (written < 3000 && std::getline(in, line)) {
    const std::string text = nlohmann::json::parse(line).at("text").get<std::string>();
    out << text << "\n";
    written += text.size() + 1;
  }
  return path;
}

// Token ids for the golden models, which have no vocabulary: n pseudo-random ids below 512.
std::string token_ids_file(int n) {
  const std::string path = temp_dir() + "/ids.txt";
  std::ofstream out(path);
  uint32_t s = 12345;
  for (int i = 0; i < n; ++i) {
    s = s * 1103515245u + 12345u;
    out << (s >> 16) % 512 << (i % 10 == 9 ? "\n" : ", ");
  }
  return path;
}

std::map<std::string, std::string> types_of(const std::string& path) {
  auto f = gguf::File::open(path);
  std::map<std::string, std::string> m;
  for (const auto& ti : f->tensor_infos()) m[ti.name] = dtype_name(ti.type);
  return m;
}

}  // namespace

TEST(ImatrixCli, CollectsPerExpertAndQuantizeReadsIt) {
  const std::string model = shared_path("golden/qwen3moe/f32.gguf");
  const std::string im = temp_dir() + "/qwen3moe.imatrix.gguf";
  RunResult r =
      run_owl({"imatrix", model, "--token-ids", token_ids_file(100), "-o", im, "--ctx", "32", "--chunks", "5"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("from 3 chunks of 32 tokens"), std::string::npos) << r.out;  // 100 ids: 3 whole chunks

  const Imatrix m = read_imatrix(im);
  EXPECT_EQ(m.chunk_count, 3);
  EXPECT_EQ(m.chunk_size, 32);
  ASSERT_EQ(m.datasets.size(), 1u);
  EXPECT_EQ(m.datasets[0], "ids.txt");
  // Dense weights see every token; each token goes to n_expert_used (4 of 8) experts.
  const ImatrixEntry& q = m.entries.at("blk.1.attn_q.weight");
  ASSERT_EQ(q.counts.size(), 1u);
  EXPECT_EQ(q.counts[0], 96.0);
  for (const char* stack : {"blk.0.ffn_gate_exps.weight", "blk.1.ffn_down_exps.weight"}) {
    const ImatrixEntry& e = m.entries.at(stack);
    ASSERT_EQ(e.counts.size(), 8u) << stack;
    double routed = 0;
    for (double c : e.counts) routed += c;
    EXPECT_EQ(routed, 96.0 * 4) << stack;
  }
  EXPECT_EQ(m.entries.count("output.weight"), 0u);
  EXPECT_EQ(m.entries.count("token_embd.weight"), 0u);
  for (float s : q.sums) EXPECT_GT(s, 0.0f);

  const std::string out = temp_dir() + "/qwen3moe-iq2_xxs.gguf";
  r = run_owl({"quantize", model, out, "iq2_xxs", "--imatrix", im});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(types_of(out).at("blk.1.ffn_up_exps.weight"), "IQ2_XXS");
  r = run_owl({"logits", out, "--tokens", "1,2,3", "--out", temp_dir() + "/l.f32"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

// From text, through the model's own tokenizer (the small real model in ../shared/models).
TEST(ImatrixCli, CollectsFromText) {
  const std::string im = temp_dir() + "/stories.imatrix.gguf";
  RunResult r = run_owl({"imatrix", shared_path("models/stories260K/stories260K-f32.gguf"), "--file",
                         calibration_file(), "-o", im, "--ctx", "64"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Imatrix m = read_imatrix(im);
  ASSERT_EQ(m.datasets.size(), 1u);
  EXPECT_EQ(m.datasets[0], "calibration.txt");
  EXPECT_GE(m.chunk_count, 2);
  const ImatrixEntry& e = m.entries.at("blk.0.ffn_down.weight");
  ASSERT_EQ(e.counts.size(), 1u);
  EXPECT_EQ(e.counts[0], static_cast<double>(64 * m.chunk_count));
}

TEST(ImatrixCli, BadInputIsOneLine) {
  const std::string model = shared_path("golden/qwen3/f32.gguf");
  const std::string out = temp_dir() + "/never.gguf";
  expect_refused({"quantize", model, out, "iq2_xxs"}, 2, "needs an importance matrix: give one with --imatrix");
  expect_refused({"quantize", model, out, "iq1_s", "--imatrix", shared_path("golden/qwen3moe/imatrix.dat")}, 1,
                 "which is not a tensor of this model");
  expect_refused({"quantize", model, out, "q4_k_m", "--tensor-type", "attn_q"}, 2, "is not REGEX=TYPE");
  expect_refused({"quantize", model, out, "q4_k_m", "--tensor-type", "attn_(q=q8_0"}, 2, "bad regular expression");
  expect_refused({"quantize", model, out, "q4_k_m", "--tensor-type", "attn_q=q9_9"}, 2, "is not a type owl writes");
  expect_refused({"quantize", model, out, "--recipe", "fancy", "iq1_s"}, 2, "--recipe takes 'dynamic-moe LOWTYPE'");
  expect_refused({"quantize", model, out, "--recipe", "dynamic-moe", "q9"}, 2,
                 "'q9' is not a quantised type owl writes");
  expect_refused({"info", shared_path("golden/qwen3/hf"), "--quant", "iq1_s"}, 2,
                 "--quant iq1_s needs an importance matrix");
  expect_refused({"imatrix", model, "--file", temp_dir() + "/no-such.txt", "-o", out}, 1, "is not a readable file");
  expect_refused({"imatrix", model, "-o", out}, 2, "give the calibration input: --file or --token-ids");
  const std::string tiny = temp_dir() + "/tiny.txt";
  std::ofstream(tiny) << "1, 2, 3";
  expect_refused({"imatrix", model, "--token-ids", tiny, "-o", out}, 1, "is 3 tokens, less than one chunk of 512");
  std::ofstream(tiny) << "1, 2, x3";
  expect_refused({"imatrix", model, "--token-ids", tiny, "-o", out}, 1, "'x3' is not a token id");
  std::ofstream(tiny) << "1, 2, 3, 600";
  expect_refused({"imatrix", model, "--token-ids", tiny, "-o", out, "--ctx", "2"}, 1,
                 "token id 600 in '" + tiny + "' is outside the model's vocabulary of 512");
  EXPECT_FALSE(fs::exists(out));
}

TEST(ImatrixCli, TensorTypeRulesAndTheDynamicMoeRecipe) {
  const std::string qwen3 = shared_path("golden/qwen3/f32.gguf");
  const std::string a = temp_dir() + "/qwen3-rules.gguf";
  RunResult r = run_owl({"quantize", qwen3, a, "q4_k_m", "--tensor-type", "blk\\.1\\.attn_.*=q8_0", "--tensor-type",
                         "ffn_up=iq4_xs", "--tensor-type", "attn=q2_k"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto t = types_of(a);
  EXPECT_EQ(t.at("blk.1.attn_q.weight"), "Q8_0");  // the first matching rule wins
  EXPECT_EQ(t.at("blk.0.attn_q.weight"), "Q2_K");
  EXPECT_EQ(t.at("blk.0.ffn_up.weight"), "IQ4_XS");
  EXPECT_EQ(t.at("blk.0.ffn_gate.weight"), "Q4_K");  // no rule: the q4_k_m mix
  EXPECT_EQ(t.at("blk.0.attn_norm.weight"), "F32");  // not converted, whatever the rules say

  const std::string moe = shared_path("golden/deepseek-v3/f32.gguf");
  const std::string b = temp_dir() + "/ds-dynamic.gguf";
  r = run_owl({"quantize", moe, b, "--recipe", "dynamic-moe", "iq1_s", "--imatrix",
               shared_path("golden/deepseek-v3/imatrix.dat")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  t = types_of(b);
  EXPECT_EQ(t.at("blk.1.ffn_gate_exps.weight"), "IQ1_S");
  EXPECT_EQ(t.at("blk.2.ffn_up_exps.weight"), "IQ1_S");
  EXPECT_EQ(t.at("blk.1.ffn_down_exps.weight"), "IQ4_NL");  // IQ2_XXS, but its 64-wide rows fall back
  EXPECT_EQ(t.at("blk.1.ffn_gate_shexp.weight"), "Q4_K");   // shared expert: 4 bits
  EXPECT_EQ(t.at("blk.0.ffn_gate.weight"), "Q4_K");         // dense leading layer
  EXPECT_EQ(t.at("blk.0.attn_kv_a_mqa.weight"), "Q4_K");
  EXPECT_EQ(t.at("output.weight"), "Q6_K");
  EXPECT_EQ(t.at("token_embd.weight"), "Q4_K");

  r = run_owl({"info", b, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  const double experts = j["bits_per_weight_by_class"]["experts"]["bits_per_weight"].get<double>();
  const double attention = j["bits_per_weight_by_class"]["attention"]["bits_per_weight"].get<double>();
  EXPECT_LT(experts, 4.0);  // IQ1_S gate/up (1.56) with IQ4_NL down (4.5)
  EXPECT_GT(experts, 1.5);
  EXPECT_GE(attention, 4.5);
  EXPECT_GT(j["bits_per_weight"].get<double>(), experts);
  r = run_owl({"info", b});
  EXPECT_NE(r.out.find("bits/wt"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(" experts "), std::string::npos) << r.out;
}

// Rows are quantised independently, so the file does not depend on the thread count.
TEST(ImatrixCli, QuantizedBytesDoNotDependOnThreads) {
  const std::string dir = shared_path("golden/qwen3");
  std::string bytes[2];
  for (int k = 0; k < 2; ++k) {
    const std::string out = temp_dir() + "/qwen3-iq2_s-t" + std::to_string(k + 1) + ".gguf";
    RunResult r = run_owl(
        {"quantize", dir + "/f32.gguf", out, "iq2_s", "--imatrix", dir + "/imatrix.dat", "-t", std::to_string(k + 1)});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    bytes[k] = read_file(out);
  }
  EXPECT_GT(bytes[0].size(), 100000u);
  EXPECT_TRUE(bytes[0] == bytes[1]);
}
