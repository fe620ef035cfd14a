// `owl tokenize` end to end through the real binary.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace owl::test {
namespace {

using json = nlohmann::json;

json run_json(const std::vector<std::string>& args) {
  RunResult r = run_owl(args);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return json::parse(r.out);
}

TEST(CliTokenize, HfFolderJson) {
  json j = run_json({"tokenize", shared_path("tokenizers/qwen3"), "Hello world", "--json"});
  EXPECT_EQ(j["ids"], json({9707, 1879}));
  EXPECT_EQ(j["pieces"], json({"Hello", "\xC4\xA0world"}));
}

TEST(CliTokenize, SpecialAddsBos) {
  std::string dir = shared_path("tokenizers/llama-3.1");
  EXPECT_EQ(run_json({"tokenize", dir, "Hello", "--json"})["ids"], json({9906}));
  EXPECT_EQ(run_json({"tokenize", dir, "Hello", "--json", "--special"})["ids"], json({128000, 9906}));
}

TEST(CliTokenize, TokenizerJsonFileAndTextFile) {
  std::string path = temp_dir() + "/in.txt";
  std::ofstream(path, std::ios::binary) << "<s>[INST] hi [/INST]";
  json j = run_json({"tokenize", shared_path("tokenizers/mistral-7b-v0.1/tokenizer.json"), "--file", path, "--json"});
  EXPECT_EQ(j["ids"][0], 1);  // "<s>" in text is the added token
  EXPECT_EQ(j["pieces"][0], "<s>");
}

TEST(CliTokenize, GgufAndPlainOutput) {
  std::string model = shared_path("models/stories260K/stories260K-f32.gguf");
  json j = run_json({"tokenize", model, "Once upon a time", "--json", "--special"});
  EXPECT_EQ(j["ids"], json({1, 403, 407, 261, 378}));
  RunResult r = run_owl({"tokenize", model, "Once"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "403\t\"\xE2\x96\x81Once\"\n");
  RunResult s = run_owl({"tokenize", model, "--json"}, "a");  // stdin
  EXPECT_EQ(s.exit_code, 0) << s.err;
  EXPECT_EQ(json::parse(s.out)["ids"], json({261}));
}

TEST(CliTokenize, Errors) {
  RunResult r = run_owl({"tokenize", "/nonexistent/model.gguf", "x"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("error"), std::string::npos);
  RunResult both = run_owl({"tokenize", shared_path("tokenizers/qwen3"), "x", "--file", "/dev/null"});
  EXPECT_EQ(both.exit_code, 2) << both.err;
  RunResult missing = run_owl({"tokenize", shared_path("tokenizers/qwen3"), "--file", "/nonexistent.txt"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("cannot read --file"), std::string::npos);
}

}  // namespace
}  // namespace owl::test
