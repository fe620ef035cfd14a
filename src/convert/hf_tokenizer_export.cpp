#include "convert/hf_tokenizer_export.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <nlohmann/json.hpp>

#include "base/error.h"

namespace owl {

namespace {

using json = nlohmann::json;  // sorted keys: ordered_json looks keys up linearly, too slow for 150k tokens

// The split regexes of the Hugging Face pre-tokenizers that llama.cpp's pre names stand for
// (as the models' tokenizer.json files spell them).
const char* const kLlama3 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
    "\\s+(?!\\S)|\\s+";
const char* const kQwen2 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
    "\\s+(?!\\S)|\\s+";
const char* const kTekken =
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|[^\\r\\n\\p{L}\\p{N}]?["
    "\\p{"
    "Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|"
    "\\s+(?!\\S)|\\s+";
const char* const kDeepseekV3Words =
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| "
    "?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+";

struct Pre {
  std::vector<std::string> splits;
  bool ignore_merges = false;
  bool gpt2 = false;  // ByteLevel's own GPT-2 regex
};

std::optional<Pre> pre_for(const std::string& pre) {
  if (pre == "llama-bpe" || pre == "llama3" || pre == "llama-v3") return Pre{{kLlama3}, true, false};
  if (pre == "glm4" || pre == "smaug-bpe" || pre == "chatglm-bpe") return Pre{{kLlama3}, false, false};
  if (pre == "qwen2" || pre == "deepseek-r1-qwen") return Pre{{kQwen2}, false, false};
  if (pre == "tekken") return Pre{{kTekken}, true, false};
  if (pre == "deepseek-v3") return Pre{{"\\p{N}{1,3}", "[一-龥぀-ゟ゠-ヿ]+", kDeepseekV3Words}, false, false};
  if (pre == "gpt-2" || pre == "gpt2" || pre == "default") return Pre{{}, false, true};
  return std::nullopt;
}

namespace tt = gguf::token_type;

void write_json(const std::filesystem::path& p, const json& j) {
  std::ofstream f(p, std::ios::binary);
  if (!f) throw Error("cannot write '" + p.string() + "'; check that the folder is writable");
  f << j.dump(2) << "\n";
  if (!f.flush()) throw Error("writing '" + p.string() + "' failed (disk full?)");
}

}  // namespace

std::string write_hf_tokenizer(const gguf::Metadata& m, const std::string& folder, int64_t n_ctx) {
  const std::string model = m.get_string("tokenizer.ggml.model").value_or("none");
  if (model != "gpt2") return "tokenizer.ggml.model '" + model + "' (owl writes byte-level BPE vocabularies only)";
  const std::string pre_name = m.get_string("tokenizer.ggml.pre").value_or("default");
  const auto pre = pre_for(pre_name);
  if (!pre) return "tokenizer.ggml.pre '" + pre_name + "' has no known Hugging Face pre-tokenizer";
  const gguf::Value* tv = m.find("tokenizer.ggml.tokens");
  const gguf::Value* mv = m.find("tokenizer.ggml.merges");
  if (!tv || tv->type != gguf::ValueType::ARRAY) return "no tokenizer.ggml.tokens";
  const auto& tokens = tv->as_array().items;
  const gguf::Value* typev = m.find("tokenizer.ggml.token_type");
  const std::vector<gguf::Value>* types =
      typev && typev->type == gguf::ValueType::ARRAY && typev->as_array().items.size() == tokens.size()
          ? &typev->as_array().items
          : nullptr;

  json vocab = json::object(), added = json::array();
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::string& piece = tokens[i].as_string();
    const int64_t type = types ? (*types)[i].as_int() : int64_t{tt::Normal};
    if (type == tt::Unused && piece.rfind("[PAD", 0) == 0) continue;  // the converter's padding
    if (type == tt::Control || type == tt::UserDefined || type == tt::Unknown) {
      added.push_back({{"id", i},
                       {"content", piece},
                       {"single_word", false},
                       {"lstrip", false},
                       {"rstrip", false},
                       {"normalized", false},
                       {"special", type != tt::UserDefined}});
    } else {
      vocab.emplace(piece, i);  // the first id of a duplicated piece wins
    }
  }
  json merges = json::array();
  if (mv && mv->type == gguf::ValueType::ARRAY)
    for (const auto& v : mv->as_array().items) merges.push_back(v.as_string());

  json pre_tok;
  if (pre->gpt2) {
    pre_tok = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
  } else {
    json seq = json::array();
    for (const auto& r : pre->splits)
      seq.push_back({{"type", "Split"}, {"pattern", {{"Regex", r}}}, {"behavior", "Isolated"}, {"invert", false}});
    seq.push_back({{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}});
    pre_tok = {{"type", "Sequence"}, {"pretokenizers", seq}};
  }

  auto piece_of = [&](const char* key) -> std::string {
    auto id = m.get_int(key);
    if (!id || *id < 0 || static_cast<size_t>(*id) >= tokens.size()) return "";
    return tokens[static_cast<size_t>(*id)].as_string();
  };
  const std::string bos = piece_of("tokenizer.ggml.bos_token_id"), eos = piece_of("tokenizer.ggml.eos_token_id");
  const bool add_bos = m.get_bool("tokenizer.ggml.add_bos_token").value_or(false) && !bos.empty();
  const bool add_eos = m.get_bool("tokenizer.ggml.add_eos_token").value_or(false) && !eos.empty();
  json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}, {"use_regex", true}};
  json post = byte_level;
  if (add_bos || add_eos) {
    json single = json::array(), pair = json::array(), specials = json::object();
    auto special = [&](const std::string& p, int type_id) {
      return json{{"SpecialToken", {{"id", p}, {"type_id", type_id}}}};
    };
    auto seq = [](const char* id, int type_id) { return json{{"Sequence", {{"id", id}, {"type_id", type_id}}}}; };
    if (add_bos) single.push_back(special(bos, 0)), pair.push_back(special(bos, 0));
    single.push_back(seq("A", 0)), pair.push_back(seq("A", 0));
    if (add_eos) single.push_back(special(eos, 0)), pair.push_back(special(eos, 0));
    if (add_bos) pair.push_back(special(bos, 1));
    pair.push_back(seq("B", 1));
    if (add_eos) pair.push_back(special(eos, 1));
    for (const char* key : {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"}) {
      const std::string p = piece_of(key);
      if (!p.empty()) specials[p] = {{"id", p}, {"ids", {m.get_int(key).value()}}, {"tokens", {p}}};
    }
    post = {{"type", "Sequence"},
            {"processors",
             {byte_level,
              {{"type", "TemplateProcessing"}, {"single", single}, {"pair", pair}, {"special_tokens", specials}}}}};
  }

  json tok = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer", pre_tok},
      {"post_processor", post},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"ignore_merges", pre->ignore_merges},
        {"vocab", vocab},
        {"merges", merges}}}};

  json cfg = {{"tokenizer_class", "PreTrainedTokenizerFast"},
              {"add_bos_token", add_bos},
              {"add_eos_token", add_eos},
              {"clean_up_tokenization_spaces", false},
              {"model_max_length", n_ctx}};
  if (!bos.empty()) cfg["bos_token"] = bos;
  if (!eos.empty()) cfg["eos_token"] = eos;
  if (const std::string pad = piece_of("tokenizer.ggml.padding_token_id"); !pad.empty()) cfg["pad_token"] = pad;
  if (auto t = m.get_string("tokenizer.chat_template")) cfg["chat_template"] = *t;

  const std::filesystem::path dir(folder);
  write_json(dir / "tokenizer.json", tok);
  write_json(dir / "tokenizer_config.json", cfg);
  return "";
}

}  // namespace owl
