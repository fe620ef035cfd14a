// llama.cpp's tokenizer vectors (../shared/tokenizers/llama-cpp-vectors):
// every input of every vocabulary that can be run must give exactly the
// expected ids (no BOS/EOS).
//  - With a vocab GGUF present: deepseek-coder, deepseek-llm, gpt-2, llama-spm, phi-3
//    (loaded through Tokenizer::from_gguf).
//  - Without the GGUF but with the same vocabulary in ../shared/tokenizers:
//    llama-bpe -> llama-3.1/tokenizer.json, qwen2 -> qwen3/tokenizer.json, and
//    qwen35 -> qwen3/tokenizer.json with its NFC normalizer removed (Qwen3.5 does
//    not compose NFD input, per the vectors README).
//  - command-r and gemma-4 have neither a GGUF nor a matching tokenizer.json
//    here, so their vectors cannot be run; they are not tested.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "formats/gguf.h"
#include "tokenizer_test_util.h"

namespace owl::test {
namespace {

struct Vectors {
  std::vector<std::string> inputs;
  std::vector<std::vector<int32_t>> expected;
};

Vectors read_vectors(const std::string& name) {
  std::string base = "tokenizers/llama-cpp-vectors/ggml-vocab-" + name + ".gguf";
  std::string inp = read_file(shared_path(base + ".inp"));
  std::string out = read_file(shared_path(base + ".out"));
  Vectors v;
  const std::string sep = "\n__ggml_vocab_test__\n";
  size_t start = 0, pos;
  while ((pos = inp.find(sep, start)) != std::string::npos) {
    v.inputs.push_back(inp.substr(start, pos - start));
    start = pos + sep.size();
  }
  std::istringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream ids(line);
    std::vector<int32_t> row;
    int32_t id;
    while (ids >> id) row.push_back(id);
    v.expected.push_back(row);
  }
  return v;
}

void check_vectors(const std::string& name, const Tokenizer& tok, size_t expected_count) {
  Vectors v = read_vectors(name);
  ASSERT_EQ(v.inputs.size(), expected_count) << name;
  ASSERT_EQ(v.expected.size(), v.inputs.size()) << name;
  int failures = 0;
  for (size_t i = 0; i < v.inputs.size(); ++i) {
    std::string d = diff_ids(tok.encode(v.inputs[i]), v.expected[i]);
    if (!d.empty()) {
      ++failures;
      ADD_FAILURE() << name << " input " << i << " \"" << v.inputs[i] << "\": " << d;
    }
  }
  EXPECT_EQ(failures, 0) << name;
}

std::unique_ptr<Tokenizer> gguf_tokenizer(const std::string& name) {
  return Tokenizer::open(shared_path("tokenizers/llama-cpp-vectors/ggml-vocab-" + name + ".gguf"));
}

TEST(LlamaCppVectors, DeepseekCoderGguf) { check_vectors("deepseek-coder", *gguf_tokenizer("deepseek-coder"), 46); }
TEST(LlamaCppVectors, DeepseekLlmGguf) { check_vectors("deepseek-llm", *gguf_tokenizer("deepseek-llm"), 46); }
TEST(LlamaCppVectors, Gpt2Gguf) { check_vectors("gpt-2", *gguf_tokenizer("gpt-2"), 46); }
TEST(LlamaCppVectors, LlamaSpmGguf) { check_vectors("llama-spm", *gguf_tokenizer("llama-spm"), 46); }
TEST(LlamaCppVectors, Phi3Gguf) { check_vectors("phi-3", *gguf_tokenizer("phi-3"), 46); }
TEST(LlamaCppVectors, LlamaBpeWithLlama31Json) { check_vectors("llama-bpe", family_tokenizer("llama-3.1"), 46); }
TEST(LlamaCppVectors, Qwen2WithQwen3Json) { check_vectors("qwen2", family_tokenizer("qwen3"), 46); }

TEST(LlamaCppVectors, Qwen35WithQwen3JsonWithoutNfc) {
  nlohmann::json j = nlohmann::json::parse(read_file(shared_path("tokenizers/qwen3/tokenizer.json")));
  ASSERT_EQ(j["normalizer"]["type"], "NFC");
  j["normalizer"] = nullptr;
  std::string path = temp_dir() + "/tokenizer.json";
  std::ofstream(path) << j.dump();
  check_vectors("qwen35", *Tokenizer::open(path), 50);
}

}  // namespace
}  // namespace owl::test
