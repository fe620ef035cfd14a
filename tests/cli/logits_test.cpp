// `owl logits` as DESIGN.md specifies it, run as a real process: the file holds
// float32 [n_tokens][n_vocab] logits of every position (within the F32 bound
// 1e-3 of llama.cpp's), --greedy N prints the N greedy ids as a JSON array,
// and bad input exits 1 (runtime) or 2 (usage) with one clear line.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "model/golden_util.h"

namespace owl::test {
namespace {

std::string join_ids(const std::vector<int32_t>& ids) {
  std::string s;
  for (auto id : ids) s += (s.empty() ? "" : ",") + std::to_string(id);
  return s;
}

TEST(CliLogits, WritesEveryPositionAndGreedyIds) {
  for (const char* model : {"llama-rope-scaled", "qwen2"}) {
    SCOPED_TRACE(model);
    Golden g = load_golden(model, "f32");
    const GoldenCase& c = g.cases[0];
    const std::string out = temp_dir() + "/logits.f32";
    auto r = run_owl({"logits", g.dir + "/f32.gguf", "--tokens", join_ids(c.tokens), "--out", out, "--greedy", "16",
                      "--threads", "2"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto logits = read_f32(out);
    ASSERT_EQ(logits.size(), c.tokens.size() * size_t(g.n_vocab));
    Agreement a = compare(logits, c.logits, g.n_vocab);
    EXPECT_LE(a.max_abs, 1e-3) << describe(a);
    EXPECT_EQ(nlohmann::json::parse(r.out).get<std::vector<int32_t>>(), c.greedy);
  }
}

TEST(CliLogits, F16CacheOptionStaysWithinF16Bound) {
  Golden g = load_golden("llama", "f32");
  const GoldenCase& c = g.cases[1];
  const std::string out = temp_dir() + "/logits.f32";
  auto r = run_owl({"logits", g.dir + "/f32.gguf", "--tokens", join_ids(c.tokens), "--out", out, "--kv-type", "f16"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "");  // no --greedy: nothing on stdout
  Agreement a = compare(read_f32(out), c.logits, g.n_vocab);
  EXPECT_LE(a.max_abs, 0.05) << describe(a);
  EXPECT_GT(a.max_abs, 0.0) << "an F16 cache should round something";
}

TEST(CliLogits, DumpWritesTheNamedIntermediatesOfEveryLayer) {
  Golden g = load_golden("deepseek-v3", "f32");  // MLA + MoE names
  const GoldenCase& c = g.cases[0];
  const std::string dir = temp_dir(), out = dir + "/logits.f32", dump = dir + "/trace";
  auto r = run_owl({"logits", g.dir + "/f32.gguf", "--tokens", join_ids(c.tokens), "--out", out, "--dump", dump,
                    "--dump-names", "kv_latent,ffn_out,logits"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string index = read_file(dump + "/trace.txt");
  for (int il = 0; il < 3; ++il) {
    EXPECT_NE(index.find(" kv_latent-" + std::to_string(il) + " ["), std::string::npos) << index;
    EXPECT_NE(index.find(" ffn_out-" + std::to_string(il) + " [256, " + std::to_string(c.tokens.size()) + "]"),
              std::string::npos)
        << index;
  }
  EXPECT_EQ(index.find("attn_norm"), std::string::npos);  // not asked for
  // The last record is the logits of every row, as --out holds them.
  const std::string n = std::to_string(3 * 2);  // records 00000..00005, then the logits
  EXPECT_EQ(read_f32(dump + "/0000" + n + "-logits--1.f32"), read_f32(out));
}

// --mtp-out: the NextN head's logits of every row, within the F32 bound of llama.cpp's draft-mtp
// (golden README, "MTP"); --greedy with --spec gives the ids of plain greedy decoding.
TEST(CliLogits, MtpOutAndSpeculativeGreedy) {
  const std::string dir = shared_path("golden/deepseek-v3-mtp");
  const auto meta = nlohmann::json::parse(read_file(dir + "/f32.cases.json"));
  const auto& c = meta["cases"][1];
  const auto tokens = c["tokens"].get<std::vector<int32_t>>();
  const std::string tmp = temp_dir(), out = tmp + "/t.f32", mtp = tmp + "/m.f32";
  auto r = run_owl({"logits", dir + "/f32.gguf", "--tokens", join_ids(tokens), "--out", out, "--mtp-out", mtp,
                    "--greedy", "12", "--threads", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Agreement trunk = compare(read_f32(out), read_f32(dir + "/" + c["logits_file"].get<std::string>()), 512);
  EXPECT_LE(trunk.max_abs, 1e-3) << describe(trunk);
  Agreement head = compare(read_f32(mtp), read_f32(dir + "/" + c["mtp_logits_file"].get<std::string>()), 512);
  EXPECT_LE(head.max_abs, 1e-3) << describe(head);
  const auto plain = nlohmann::json::parse(r.out).get<std::vector<int32_t>>();
  ASSERT_EQ(plain.size(), 12u);
  for (const char* spec : {"mtp", "mtp:2", "ngram:3"}) {
    auto s = run_owl({"logits", dir + "/f32.gguf", "--tokens", join_ids(tokens), "--out", out, "--greedy", "12",
                      "--spec", spec, "--threads", "2"});
    ASSERT_EQ(s.exit_code, 0) << spec << ": " << s.err;
    EXPECT_EQ(nlohmann::json::parse(s.out).get<std::vector<int32_t>>(), plain) << spec;
    EXPECT_NE(s.err.find("tokens per forward"), std::string::npos) << s.err;
  }
  auto d = run_owl({"logits", dir + "/f32.gguf", "--tokens", join_ids(tokens), "--out", out, "--greedy", "12", "--spec",
                    "draft:2", "--draft", dir + "/q4_k_m.gguf", "--threads", "2"});
  ASSERT_EQ(d.exit_code, 0) << d.err;
  EXPECT_EQ(nlohmann::json::parse(d.out).get<std::vector<int32_t>>(), plain);
}

// --tokens given several times: the sequences share each forward call (their prompts one call,
// then one row each per greedy step) and each gets exactly the bits it gets alone.
TEST(CliLogits, SeveralSequencesInOneBatchEqualEachAlone) {
  const std::string model = shared_path("golden/qwen3moe/q4_k_m.gguf"), dir = temp_dir();
  const std::vector<std::string> tokens = {"5,17,230,3", "40,2", "9,9,100,7,300"};
  auto run = [&](const std::vector<std::string>& seqs, const std::string& tag) {
    std::vector<std::string> a = {"logits",       model,
                                  "--greedy",     "3",
                                  "-t",           "1",
                                  "--out",        dir + "/" + tag + ".f32",
                                  "--greedy-out", dir + "/" + tag + ".steps.f32"};
    for (const auto& t : seqs) a.insert(a.end(), {"--tokens", t});
    RunResult r = run_owl(a);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out;
  };
  const std::string ids = run(tokens, "all");
  std::string alone_ids, alone_prompts;
  std::vector<std::vector<float>> alone_steps;
  for (size_t q = 0; q < tokens.size(); ++q) {
    alone_ids += run({tokens[q]}, "alone");
    alone_prompts += read_file(dir + "/alone.f32");
    alone_steps.push_back(read_f32(dir + "/alone.steps.f32"));
    ASSERT_EQ(alone_steps.back().size(), 2u * 512u);  // --greedy 3: two decode calls
  }
  EXPECT_EQ(ids, alone_ids);  // one JSON array per sequence and line
  EXPECT_TRUE(read_file(dir + "/all.f32") == alone_prompts);
  // The steps' rows: step after step, sequence after sequence.
  std::vector<float> interleaved;
  for (size_t step = 0; step < 2; ++step)
    for (const auto& s : alone_steps)
      interleaved.insert(interleaved.end(), s.begin() + step * 512, s.begin() + (step + 1) * 512);
  EXPECT_TRUE(read_f32(dir + "/all.steps.f32") == interleaved);
}

TEST(CliLogits, BadInputIsAClearError) {
  const std::string model = shared_path("golden/llama/f32.gguf");
  const std::string out = temp_dir() + "/x.f32";
  struct Case {
    std::vector<std::string> args;
    int exit_code;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"logits", model, "--tokens", "1,x,3", "--out", out}, 2, "'x' is not a token id"},
      {{"logits", model, "--tokens", "1,-4", "--out", out}, 2, "'-4' is not a token id"},
      {{"logits", model, "--tokens", "1,512", "--out", out}, 1, "token id 512 is outside the vocabulary"},
      {{"logits", model, "--tokens", "1,2,3,4,5", "--out", out, "--ctx", "4"}, 1, "does not fit the context of 4"},
      {{"logits", model, "--tokens", "1,2", "--out", out, "--ctx", "4", "--greedy", "4"}, 1, "need 5 positions"},
      {{"logits", model, "--tokens", "1", "--out", out, "--kv-type", "q8"}, 2, "use f16, q8_0, q4_0 or f32"},
      {{"logits", model, "--tokens", "1", "--out", "/nonexistent-dir/x.f32"}, 1, "cannot write"},
      {{"logits", "/nonexistent/model.gguf", "--tokens", "1", "--out", out}, 1, "does not exist"},
      {{"logits", model, "--tokens", "1", "--out", out, "--mtp-out", out + ".m"}, 2, "no NextN"},
      {{"logits", model, "--tokens", "1", "--out", out, "--greedy", "2", "--spec", "mtp"}, 2, "no NextN"},
      {{"logits", model, "--tokens", "1", "--out", out, "--greedy", "2", "--spec", "mtp:0"}, 2, "from 1 to 16"},
      {{"logits", model, "--tokens", "1", "--out", out, "--greedy", "2", "--spec", "eagle"}, 2, "not a speculation"},
      {{"logits", model, "--tokens", "1", "--out", out, "--greedy", "2", "--spec", "draft"}, 2, "needs --draft"},
      {{"logits", model, "--tokens", "1", "--out", out, "--micro-batches", "-2"}, 2, "'-2' is not a count"},
      {{"logits", model, "--tokens", "1", "--tokens", "2", "--out", out, "--greedy", "2", "--spec", "ngram"},
       2,
       "take one sequence"},
      {{"logits", model, "--tokens", "1", "--out", out, "--greedy", "2", "--spec", "draft", "--draft",
        shared_path("models/stories260K/stories260K-f32.gguf")},
       2,
       "tokenizer"},
  };
  for (const auto& c : cases) {
    auto r = run_owl(c.args);
    EXPECT_EQ(r.exit_code, c.exit_code) << c.message << ": " << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << "stderr: " << r.err;
  }
}

}  // namespace
}  // namespace owl::test
