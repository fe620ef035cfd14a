// owl convert carries a folder's tokenizer into the GGUF: the GGUF tokenizer
// (text/load_gguf) encodes the shared corpus exactly as the folder's
// tokenizer.json does, and the special ids and chat template come along.
// (Qwen's tokenizer.json applies NFC, which GGUF vocabularies cannot express,
// as in llama.cpp; it is left out here.)
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "convert/convert_test_util.h"
#include "text/tokenizer.h"

namespace owl::test {
namespace {

namespace fs = std::filesystem;

struct TokCase {
  const char* family;  // folder in ../shared/tokenizers
  const char* model;   // tokenizer.ggml.model
  const char* pre;     // tokenizer.ggml.pre
  int64_t bos, eos;
};

class ConvertTokenizer : public ::testing::TestWithParam<TokCase> {};

TEST_P(ConvertTokenizer, EncodesTheCorpusLikeTheFolder) {
  const TokCase tc = GetParam();
  // The llama twin's weights with the family's tokenizer files.
  const std::string dir = temp_dir() + "/folder";
  fs::create_directories(dir);
  const std::string twin = shared_path("golden/llama/hf"), tok = shared_path(std::string("tokenizers/") + tc.family);
  fs::copy_file(twin + "/config.json", dir + "/config.json");
  fs::create_symlink(twin + "/model.safetensors", dir + "/model.safetensors");
  fs::copy_file(tok + "/tokenizer.json", dir + "/tokenizer.json");
  fs::copy_file(tok + "/tokenizer_config.json", dir + "/tokenizer_config.json");
  const std::string out = temp_dir() + "/tok.gguf";
  owl_ok({"convert", dir, out});

  auto f = gguf::File::open(out);
  const gguf::Metadata& m = f->metadata();
  EXPECT_EQ(m.get_string("tokenizer.ggml.model"), tc.model);
  EXPECT_EQ(m.get_string("tokenizer.ggml.pre"), tc.pre);
  EXPECT_EQ(m.get_int("tokenizer.ggml.bos_token_id").value_or(-1), tc.bos);
  EXPECT_EQ(m.get_int("tokenizer.ggml.eos_token_id").value_or(-1), tc.eos);
  auto cfg = nlohmann::json::parse(read_file(tok + "/tokenizer_config.json"));
  if (cfg.contains("chat_template") && cfg["chat_template"].is_string()) {
    EXPECT_EQ(m.get_string("tokenizer.chat_template"), cfg["chat_template"].get<std::string>());
  }

  const bool add_bos = m.get_bool("tokenizer.ggml.add_bos_token").value_or(false);
  EXPECT_EQ(add_bos, cfg.value("add_bos_token", false) || std::string(tc.family) == "llama-3.1") << tc.family;
  auto from_gguf = Tokenizer::from_gguf(*f);
  auto from_hf = Tokenizer::from_hf_dir(dir);
  const bool hf_adds_bos = !from_hf->encode("", true).empty();
  std::ifstream corpus(shared_path("tokenizers/corpus.jsonl"));
  std::string line;
  int64_t n = 0, same = 0;
  while (std::getline(corpus, line)) {
    const std::string text = nlohmann::json::parse(line).at("text").get<std::string>();
    for (bool special : {false, true}) {
      const auto a = from_gguf->encode(text, special);
      auto b = from_hf->encode(text, special);
      // tokenizer_config.json's add_bos_token is what the GGUF records (as llama.cpp's converter
      // does); DeepSeek-V3's tokenizer.json post-processor does not add the BOS that it asks for.
      if (special && add_bos && !hf_adds_bos) b.insert(b.begin(), static_cast<int32_t>(tc.bos));
      ++n;
      same += a == b;
      EXPECT_EQ(a, b) << tc.family << (special ? " (with special tokens)" : "") << ": '" << text.substr(0, 60) << "'";
    }
  }
  EXPECT_GT(n, 500);
  std::printf("[convert tokenizer %s] %lld/%lld encodings identical\n", tc.family, static_cast<long long>(same),
              static_cast<long long>(n));
}

INSTANTIATE_TEST_SUITE_P(Families, ConvertTokenizer,
                         ::testing::Values(TokCase{"llama-3.1", "gpt2", "llama-bpe", 128000, 128009},
                                           TokCase{"deepseek-v3", "gpt2", "deepseek-v3", 0, 1},
                                           TokCase{"mistral-nemo", "gpt2", "tekken", 1, 2},
                                           TokCase{"mistral-7b-v0.1", "llama", "default", 1, 2}),
                         [](const auto& p) {
                           std::string s = p.param.family;
                           for (char& ch : s)
                             if (ch == '-' || ch == '.') ch = '_';
                           return s;
                         });

}  // namespace
}  // namespace owl::test
