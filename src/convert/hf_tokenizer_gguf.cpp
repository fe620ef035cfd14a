#include "convert/hf_tokenizer_gguf.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/error.h"
#include "model/family.h"

namespace owl {

namespace {

using json = nlohmann::json;
using gguf::Value;
using gguf::ValueType;

// llama.cpp token types.
namespace tt = gguf::token_type;

json read_json(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) return json();
  std::stringstream ss;
  ss << f.rdbuf();
  try {
    return json::parse(ss.str());
  } catch (const json::exception& e) {
    throw Error("'" + p.string() + "' is not valid JSON (" + e.what() + "); download it again");
  }
}

// The tokenizer.ggml.pre name for a byte-level BPE, from its pre-tokenizer regexes
// (llama.cpp recognises them by hashing a tokenisation; the regexes are what differ).
// Unrecognised regexes fall back to the family's name (family.h: tokenizer_pre).
std::string pre_name(const json& tok, const std::string& arch) {
  const std::string family_pre = family_of(arch).tokenizer_pre();
  const std::string pre = tok.contains("pre_tokenizer") ? tok["pre_tokenizer"].dump() : "";
  auto has = [&](const char* s) { return pre.find(s) != std::string::npos; };
  if (has("[\\\\p{Lu}\\\\p{Lt}\\\\p{Lm}\\\\p{Lo}\\\\p{M}]*")) return "tekken";
  if (has("\\u4e00") || has("一-龥")) return "deepseek-v3";
  // GLM-4 uses Llama 3's regexes under a name of its own.
  if (has("(?i:'s|'t|'re|'ve|'m|'ll|'d)") && has("\\\\p{N}{1,3}")) return family_pre == "glm4" ? "glm4" : "llama-bpe";
  if (has("(?i:'s|'t|'re|'ve|'m|'ll|'d)") && has("\\\\p{N}|")) return "qwen2";
  return family_pre;
}

// "<s>" or {"content": "<s>", ...} in tokenizer_config.json.
std::string token_text(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return "";
}

}  // namespace

void add_hf_tokenizer_metadata(gguf::Metadata& m, const std::string& folder, const ModelConfig& c) {
  namespace fs = std::filesystem;
  const fs::path dir(folder);
  const json tok = read_json(dir / "tokenizer.json");
  const json cfg = read_json(dir / "tokenizer_config.json");
  const std::string where = (dir / "tokenizer.json").string();
  if (!tok.is_object() || !tok.contains("model") || !tok["model"].is_object())
    throw Error("'" + where + "' has no tokenizer model; download it again");
  const json& model = tok["model"];
  const std::string type = model.value("type", "BPE");
  if (type != "BPE" || !model.contains("vocab") || !model["vocab"].is_object())
    throw Error("'" + where + "': tokenizer model '" + type +
                "' cannot be written to GGUF by owl (supported: BPE); convert without it or with llama.cpp");
  const bool spm = model.value("byte_fallback", false);  // SentencePiece-style BPE

  // id -> piece over the model vocabulary and the added tokens.
  std::map<int64_t, std::string> pieces;
  std::map<int64_t, int32_t> types;
  for (const auto& [piece, id] : model["vocab"].items())
    if (id.is_number_integer()) pieces[id.get<int64_t>()] = piece;
  if (tok.contains("added_tokens") && tok["added_tokens"].is_array())
    for (const auto& t : tok["added_tokens"]) {
      if (!t.contains("id") || !t["id"].is_number_integer() || !t.contains("content")) continue;
      const int64_t id = t["id"].get<int64_t>();
      pieces[id] = t["content"].get<std::string>();
      types[id] = t.value("special", false) ? tt::Control : tt::UserDefined;
    }
  if (pieces.empty()) throw Error("'" + where + "' has an empty vocabulary");
  const int64_t n = std::max<int64_t>(c.n_vocab, pieces.rbegin()->first + 1);
  std::map<std::string, int64_t> ids;
  for (const auto& [id, p] : pieces) ids.emplace(p, id);

  // SentencePiece merges the adjacent pair whose joined piece scores highest; HF BPE the pair
  // of lowest merge rank. Scoring each piece -(rank of the merge that makes it) makes them agree.
  std::map<std::string, int64_t> merge_rank;
  const bool has_merges = model.contains("merges") && model["merges"].is_array();
  if (spm && has_merges) {
    int64_t rank = 0;
    for (const auto& mg : model["merges"]) {
      std::string joined;
      if (mg.is_string()) {
        const std::string ab = mg.get<std::string>();
        const size_t sp = ab.find(' ');
        joined = sp == std::string::npos ? ab : ab.substr(0, sp) + ab.substr(sp + 1);
      } else if (mg.is_array() && mg.size() == 2) {
        joined = mg[0].get<std::string>() + mg[1].get<std::string>();
      }
      merge_rank.emplace(joined, rank++);  // the first (lowest) rank wins
    }
  }

  std::vector<Value> tokens, token_types, scores;
  tokens.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    auto it = pieces.find(i);
    if (it == pieces.end()) {
      tokens.push_back(Value::str("[PAD" + std::to_string(i) + "]"));
      token_types.push_back(Value::i32(tt::Unused));
      scores.push_back(Value::f32(-1000.0f));
      continue;
    }
    int32_t t = tt::Normal;
    if (auto ty = types.find(i); ty != types.end())
      t = ty->second;
    else if (spm && it->second.size() == 6 && it->second.compare(0, 3, "<0x") == 0 && it->second.back() == '>')
      t = tt::Byte;
    if (model.contains("unk_token") && model["unk_token"].is_string() && model["unk_token"] == it->second)
      t = tt::Unknown;
    tokens.push_back(Value::str(it->second));
    token_types.push_back(Value::i32(t));
    float score = 0.0f;
    if (t == tt::Normal) {
      auto r = merge_rank.find(it->second);
      score = -static_cast<float>(r != merge_rank.end() ? r->second : static_cast<int64_t>(merge_rank.size()) + i);
    }
    scores.push_back(Value::f32(score));
  }

  m.set("tokenizer.ggml.model", Value::str(spm ? "llama" : "gpt2"));
  m.set("tokenizer.ggml.pre", Value::str(spm ? "default" : pre_name(tok, c.arch)));
  m.set("tokenizer.ggml.tokens", Value::array(ValueType::STRING, std::move(tokens)));
  if (spm) m.set("tokenizer.ggml.scores", Value::array(ValueType::FLOAT32, std::move(scores)));
  m.set("tokenizer.ggml.token_type", Value::array(ValueType::INT32, std::move(token_types)));
  if (!spm && has_merges) {
    std::vector<Value> merges;
    merges.reserve(model["merges"].size());
    for (const auto& mg : model["merges"]) {
      if (mg.is_string())
        merges.push_back(Value::str(mg.get<std::string>()));
      else if (mg.is_array() && mg.size() == 2)
        merges.push_back(Value::str(mg[0].get<std::string>() + " " + mg[1].get<std::string>()));
      else
        throw Error("'" + where + "' has a merge that is neither \"a b\" nor [\"a\", \"b\"]");
    }
    m.set("tokenizer.ggml.merges", Value::array(ValueType::STRING, std::move(merges)));
  }

  // Special ids: tokenizer_config.json's token strings first, then config.json's ids.
  auto special = [&](const char* cfg_key, const char* gguf_key, int64_t fallback) {
    int64_t id = -1;
    if (cfg.is_object() && cfg.contains(cfg_key))
      if (auto it = ids.find(token_text(cfg[cfg_key])); it != ids.end()) id = it->second;
    if (id < 0) id = fallback;
    if (id >= 0) m.set(gguf_key, Value::u32(static_cast<uint32_t>(id)));
  };
  special("bos_token", "tokenizer.ggml.bos_token_id", c.bos_id);
  special("eos_token", "tokenizer.ggml.eos_token_id", c.eos_id);
  special("unk_token", "tokenizer.ggml.unknown_token_id", -1);
  special("pad_token", "tokenizer.ggml.padding_token_id", -1);
  if (cfg.is_object()) {
    if (cfg.contains("add_bos_token") && cfg["add_bos_token"].is_boolean())
      m.set("tokenizer.ggml.add_bos_token", Value::boolean(cfg["add_bos_token"].get<bool>()));
    if (cfg.contains("add_eos_token") && cfg["add_eos_token"].is_boolean())
      m.set("tokenizer.ggml.add_eos_token", Value::boolean(cfg["add_eos_token"].get<bool>()));
  }
  if (!m.has("tokenizer.ggml.add_bos_token") && tok.contains("post_processor")) {
    // A TemplateProcessing post-processor that starts with the BOS token adds it.
    const std::string pp = tok["post_processor"].dump();
    bool adds = false;
    if (m.has("tokenizer.ggml.bos_token_id")) {
      const std::string bos = pieces[m.get_int("tokenizer.ggml.bos_token_id").value()];
      adds = pp.find("\"single\":[{\"SpecialToken\":{\"id\":" + json(bos).dump()) != std::string::npos;
    }
    m.set("tokenizer.ggml.add_bos_token", Value::boolean(adds));
  }

  // Chat template: tokenizer_config.json (a string, or a list of named templates), else chat_template.jinja.
  std::string tmpl;
  if (cfg.is_object() && cfg.contains("chat_template")) {
    const json& t = cfg["chat_template"];
    if (t.is_string())
      tmpl = t.get<std::string>();
    else if (t.is_array())
      for (const auto& e : t)
        if (e.is_object() && e.value("name", "") == "default") tmpl = e.value("template", "");
  }
  if (tmpl.empty() && fs::exists(dir / "chat_template.jinja")) {
    std::ifstream f(dir / "chat_template.jinja", std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    tmpl = ss.str();
  }
  if (!tmpl.empty()) m.set("tokenizer.chat_template", Value::str(tmpl));
}

}  // namespace owl
