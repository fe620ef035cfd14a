// owl convert carries a folder's tokenizer into the GGUF: the GGUF tokenizer
// (text/load_gguf) encodes the shared corpus exactly as the folder's
// tokenizer.json does, and the special ids and chat template come along.
// owl export writes byte-level BPE vocabularies back as tokenizer.json, which
// then encodes the corpus exactly as the GGUF does. (Qwen's tokenizer.json
// applies NFC, which GGUF vocabularies cannot express, as in llama.cpp: for
// Qwen only the GGUF -> exported folder direction is compared.)
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
  bool nfc;  // the folder normalises to NFC (GGUF cannot): compare the folder with the GGUF only after export
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
  // GGUF -> HF: SentencePiece vocabularies get no tokenizer.json (said on stderr); BPE ones do.
  const std::string exported = temp_dir() + "/exported";
  RunResult ex = run_owl({"export", out, exported});
  ASSERT_EQ(ex.exit_code, 0) << ex.err;
  const bool bpe = std::string(tc.model) == "gpt2";
  ASSERT_EQ(fs::exists(exported + "/tokenizer.json"), bpe) << ex.err;
  if (!bpe) {
    EXPECT_NE(ex.err.find("no tokenizer.json written"), std::string::npos) << ex.err;
  }
  auto from_export = bpe ? Tokenizer::from_hf_dir(exported) : nullptr;
  auto from_hf = Tokenizer::from_hf_dir(dir);
  const bool hf_adds_bos = !from_hf->encode("", true).empty();
  std::ifstream corpus(shared_path("tokenizers/corpus.jsonl"));
  std::string line;
  int64_t n = 0, same = 0, exported_same = 0;
  while (std::getline(corpus, line)) {
    const std::string text = nlohmann::json::parse(line).at("text").get<std::string>();
    for (bool special : {false, true}) {
      const auto a = from_gguf->encode(text, special);
      ++n;
      if (from_export) {
        const bool ok = from_export->encode(text, special) == a;
        exported_same += ok;
        EXPECT_TRUE(ok) << tc.family << " exported folder: '" << text.substr(0, 60) << "'";
      }
      if (tc.nfc) continue;
      auto b = from_hf->encode(text, special);
      // tokenizer_config.json's add_bos_token is what the GGUF records (as llama.cpp's converter
      // does); DeepSeek-V3's tokenizer.json post-processor does not add the BOS that it asks for.
      if (special && add_bos && !hf_adds_bos) b.insert(b.begin(), static_cast<int32_t>(tc.bos));
      same += a == b;
      EXPECT_EQ(a, b) << tc.family << (special ? " (with special tokens)" : "") << ": '" << text.substr(0, 60) << "'";
    }
  }
  EXPECT_GT(n, 500);
  std::printf("[convert tokenizer %s] of %lld encodings, GGUF = folder: %lld%s, exported folder = GGUF: %lld\n",
              tc.family, static_cast<long long>(n), static_cast<long long>(same), tc.nfc ? " (not compared: NFC)" : "",
              static_cast<long long>(exported_same));
}

INSTANTIATE_TEST_SUITE_P(Families, ConvertTokenizer,
                         ::testing::Values(TokCase{"llama-3.1", "gpt2", "llama-bpe", 128000, 128009, false},
                                           TokCase{"deepseek-v3", "gpt2", "deepseek-v3", 0, 1, false},
                                           TokCase{"mistral-nemo", "gpt2", "tekken", 1, 2, false},
                                           TokCase{"qwen3", "gpt2", "qwen2", -1, 151645, true},
                                           TokCase{"mistral-7b-v0.1", "llama", "default", 1, 2, false}),
                         [](const auto& p) {
                           std::string s = p.param.family;
                           for (char& ch : s)
                             if (ch == '-' || ch == '.') ch = '_';
                           return s;
                         });

}  // namespace
}  // namespace owl::test
