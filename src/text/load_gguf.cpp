// Builds a Tokenizer from a GGUF file's tokenizer.ggml.* keys, mapping the
// llama.cpp vocabulary types onto the same pipeline a tokenizer.json uses:
//  - "gpt2": byte-level BPE with merges; tokenizer.ggml.pre names the
//    pre-tokenizer regexes (a sequence of Isolated splits, as llama.cpp applies them);
//  - "llama": SentencePiece BPE ranked by scores, "▁" for spaces, byte fallback.
#include <cstring>

#include "base/error.h"
#include "formats/gguf.h"
#include "text/tokenizer_impl.h"

namespace owl {

namespace {

// llama.cpp token types (tokenizer.ggml.token_type).
namespace tt = gguf::token_type;

const char* const kLlama3Regex =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* const kQwen2Regex =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* const kTekkenRegex =
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|[^\\r\\n\\p{L}\\p{N}]?["
    "\\p{"
    "Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* const kDeepseekV3Regex =
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| "
    "?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
// The letter ranges DeepSeek-LLM's tokenizer.json spells out (Latin, Greek, Cyrillic, ... excluding CJK),
// written as escapes: several are singletons that Unicode normalisation would silently change (U+2126 -> U+03A9).
const char* const kDeepseekLlmLetters =
    "\\s?[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}\\x{1C4}-\\x{293}\\x{295}"
    "-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}\\x{37F}\\x{386}\\x{388}-\\x{38A}\\x{38C}"
    "\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}"
    "\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}\\x{1D6B}"
    "-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}"
    "\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}"
    "\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}"
    "\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}"
    "\\x{2124}\\x{2126}\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}\\x{2145}"
    "-\\x{2149}\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}"
    "\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}"
    "\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}"
    "-\\x{1044F}\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}"
    "-\\x{118DF}\\x{1E900}-\\x{1E943}]+";

struct PreSpec {
  std::vector<std::string> regexes;  // applied in order, each splitting the previous pieces
  bool ignore_merges = false;
};

// tokenizer.ggml.pre -> the regexes of that model's Hugging Face pre-tokenizer.
PreSpec pre_spec(const std::string& pre, const std::string& file) {
  if (pre == "llama3" || pre == "llama-v3" || pre == "llama-bpe" || pre == "falcon3" || pre == "pixtral")
    return {{kLlama3Regex}, true};
  if (pre == "smaug-bpe" || pre == "dbrx" || pre == "glm4" || pre == "chatglm-bpe") return {{kLlama3Regex}, false};
  if (pre == "qwen2" || pre == "deepseek-r1-qwen" || pre == "megrez" || pre == "hunyuan") return {{kQwen2Regex}, false};
  if (pre == "tekken") return {{kTekkenRegex}, true};
  if (pre == "deepseek-v3") return {{"\\p{N}{1,3}", "[一-龥぀-ゟ゠-ヿ]+", kDeepseekV3Regex}, false};
  if (pre == "deepseek-llm")
    return {{"[\\r\\n]", kDeepseekLlmLetters, "\\s?[!-/:-~！-／：-～‘-‟　-。]+", "\\s+$", "[一-龥ࠀ-一가-퟿]+",
             "\\p{N}+"},
            false};
  if (pre == "deepseek-coder")
    return {{"[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[一-龥ࠀ-一가-퟿]+", "\\p{N}"}, false};
  if (pre == "gpt-2" || pre == "default" || pre == "phi-2" || pre == "gpt2" || pre == "olmo" || pre == "jais")
    return {{text::kGpt2Pattern}, false};
  throw Error(file + ": tokenizer.ggml.pre '" + pre +
              "' is not a pre-tokenizer owl knows (known: llama-bpe, qwen2, deepseek-v3, deepseek-llm, "
              "deepseek-coder, tekken, glm4, gpt-2)");
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const gguf::File& f) {
  const gguf::Metadata& md = f.metadata();
  const std::string& file = f.path();
  auto model = md.get_string("tokenizer.ggml.model");
  if (!model) throw Error(file + ": no tokenizer in this GGUF (tokenizer.ggml.model is missing)");
  if (*model != "gpt2" && *model != "llama")
    throw Error(file + ": tokenizer.ggml.model '" + *model +
                "' is not supported (owl reads gpt2 and llama vocabularies)");
  const gguf::Value* tokens_v = md.find("tokenizer.ggml.tokens");
  if (!tokens_v || tokens_v->type != gguf::ValueType::ARRAY)
    throw Error(file + ": tokenizer.ggml.tokens is missing or not an array");
  const auto& tokens = tokens_v->as_array().items;
  const size_t n = tokens.size();
  if (n == 0) throw Error(file + ": tokenizer.ggml.tokens is empty");

  auto array_of = [&](const char* key) -> const std::vector<gguf::Value>* {
    const gguf::Value* v = md.find(key);
    if (!v) return nullptr;
    if (v->type != gguf::ValueType::ARRAY) throw Error(file + ": " + key + " is not an array");
    if (std::strcmp(key, "tokenizer.ggml.merges") != 0 && v->as_array().items.size() != n)
      throw Error(file + ": " + key + " has " + std::to_string(v->as_array().items.size()) + " entries for " +
                  std::to_string(n) + " tokens");
    return &v->as_array().items;
  };
  const auto* types = array_of("tokenizer.ggml.token_type");
  const auto* scores = array_of("tokenizer.ggml.scores");
  const auto* merges = array_of("tokenizer.ggml.merges");

  std::unique_ptr<Tokenizer> tok(new Tokenizer());
  Impl& m = *tok->impl_;
  m.source = file;
  text::Bpe& bpe = m.bpe;
  bpe.vocab.resize(n);
  bpe.ids.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    if (tokens[i].type != gguf::ValueType::STRING) throw Error(file + ": tokenizer.ggml.tokens holds a non-string");
    bpe.vocab[i] = tokens[i].as_string();
    bpe.ids.emplace(bpe.vocab[i], static_cast<int32_t>(i));  // the first id wins on duplicates
    int type = types ? static_cast<int>((*types)[i].as_int()) : int{tt::Normal};
    // Control, user-defined and unknown tokens are matched in text before BPE, like HF added tokens.
    if (type == tt::Control || type == tt::UserDefined || type == tt::Unknown) {
      AddedToken t;
      t.id = static_cast<int32_t>(i);
      t.content = bpe.vocab[i];
      t.special = type != tt::UserDefined;
      m.added.push_back(std::move(t));
    }
  }

  auto id_key = [&](const char* key) -> int32_t {
    auto v = md.get_int(key);
    if (!v || *v < 0 || *v >= static_cast<int64_t>(n)) return -1;  // absent or "none" (0xFFFFFFFF)
    return static_cast<int32_t>(*v);
  };
  m.bos = id_key("tokenizer.ggml.bos_token_id");
  m.eos = id_key("tokenizer.ggml.eos_token_id");
  for (const char* k : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"})
    if (int32_t id = id_key(k); id >= 0) m.eog.insert(id);
  bpe.unk_id = id_key("tokenizer.ggml.unknown_token_id");

  bool is_spm = *model == "llama";
  bool add_bos = md.get_bool("tokenizer.ggml.add_bos_token").value_or(is_spm);
  bool add_eos = md.get_bool("tokenizer.ggml.add_eos_token").value_or(false);
  if (add_bos && m.bos >= 0) m.prefix.push_back(m.bos);
  if (add_eos && m.eos >= 0) m.suffix.push_back(m.eos);

  using K = text::Decoder::Kind;
  if (is_spm) {
    if (!scores) throw Error(file + ": a llama (SentencePiece) vocabulary needs tokenizer.ggml.scores");
    bpe.scores.resize(n);
    for (size_t i = 0; i < n; ++i) {
      // Only normal and user-defined pieces can be produced by a merge (as in SentencePiece):
      // byte, control and unknown pieces such as "<0x0A>" must not be assembled from text.
      int type = types ? static_cast<int>((*types)[i].as_int()) : int{tt::Normal};
      bool mergeable = type == tt::Normal || type == tt::UserDefined;
      bpe.scores[i] = mergeable ? static_cast<float>((*scores)[i].as_float()) : text::Bpe::kNoMerge;
    }
    bpe.byte_fallback = true;
    const std::string space_marker = "\xE2\x96\x81";  // ▁
    std::vector<std::unique_ptr<text::Normalizer>> norm;
    if (md.get_bool("tokenizer.ggml.add_space_prefix").value_or(true))
      norm.push_back(text::make_prepend_normalizer(space_marker));
    norm.push_back(text::make_replace_normalizer(" ", true, space_marker));
    m.normalizer = text::make_sequence_normalizer(std::move(norm));
    m.decoder.steps = {{K::Replace, space_marker, " "}, {K::ByteFallback, "", ""}};
    m.decoder.strip_start = md.get_bool("tokenizer.ggml.add_space_prefix").value_or(true) ? 1 : 0;
  } else {
    if (!merges) throw Error(file + ": a gpt2 (byte-level BPE) vocabulary needs tokenizer.ggml.merges");
    int32_t rank = 0;
    for (const gguf::Value& v : *merges) {
      if (v.type != gguf::ValueType::STRING) throw Error(file + ": tokenizer.ggml.merges holds a non-string");
      const std::string& s = v.as_string();
      size_t sp = s.find(' ', 1);
      if (sp == std::string::npos) throw Error(file + ": merge '" + s + "' is not two tokens separated by a space");
      auto a = bpe.find(std::string_view(s).substr(0, sp)), b = bpe.find(std::string_view(s).substr(sp + 1));
      auto ab = bpe.find(s.substr(0, sp) + s.substr(sp + 1));
      if (!a || !b || !ab) throw Error(file + ": merge '" + s + "' uses a token that is not in the vocabulary");
      bpe.add_merge(*a, *b, rank++, *ab);
    }
    std::string pre = md.get_string("tokenizer.ggml.pre").value_or("default");
    PreSpec spec = pre_spec(pre, file);
    bpe.ignore_merges = spec.ignore_merges;
    std::vector<std::unique_ptr<text::PreTokenizer>> parts;
    for (const std::string& r : spec.regexes)
      parts.push_back(text::make_split(r, false, text::SplitBehavior::Isolated, false));
    parts.push_back(text::make_byte_level(false, false));
    m.pre_tokenizer = text::make_sequence_pre_tokenizer(std::move(parts));
    m.decoder.steps = {{K::ByteLevel, "", ""}};
  }
  m.finish();
  return tok;
}

}  // namespace owl
