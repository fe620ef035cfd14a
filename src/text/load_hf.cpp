// Builds a Tokenizer from Hugging Face tokenizer.json (+ tokenizer_config.json,
// generation_config.json beside it for BOS/EOS and end-of-generation ids).
#include <climits>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/error.h"
#include "text/tokenizer_impl.h"

namespace owl {

using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path + ": cannot open");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

json parse_json(const std::string& path) {
  try {
    return json::parse(read_all(path));
  } catch (const json::exception& e) {
    throw Error(path + ": not valid JSON (" + e.what() + ")");
  }
}

// Errors name the file and the part of the pipeline that is not understood.
struct Ctx {
  std::string file;
  [[noreturn]] void fail(const std::string& what) const { throw Error(file + ": " + what); }
  template <class T>
  T get(const json& j, const char* key, T def) const {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return def;
    try {
      return it->get<T>();
    } catch (const json::exception&) {
      fail(std::string("field '") + key + "' has the wrong type");
    }
  }
};

// {"String": "x"} or {"Regex": "x"} -> (text, literal)
std::pair<std::string, bool> read_pattern(const Ctx& c, const json& j) {
  if (!j.is_object()) c.fail("pattern must be an object with String or Regex");
  if (j.contains("String")) return {j["String"].get<std::string>(), true};
  if (j.contains("Regex")) return {j["Regex"].get<std::string>(), false};
  c.fail("pattern must have String or Regex");
}

std::unique_ptr<text::Normalizer> build_normalizer(const Ctx& c, const json& j) {
  if (j.is_null()) return nullptr;
  std::string type = c.get<std::string>(j, "type", "");
  if (type == "NFC") return text::make_unicode_normalizer(text::UnicodeForm::NFC);
  if (type == "NFD") return text::make_unicode_normalizer(text::UnicodeForm::NFD);
  if (type == "NFKC") return text::make_unicode_normalizer(text::UnicodeForm::NFKC);
  if (type == "NFKD") return text::make_unicode_normalizer(text::UnicodeForm::NFKD);
  if (type == "Lowercase") return text::make_lowercase_normalizer();
  if (type == "Prepend") return text::make_prepend_normalizer(c.get<std::string>(j, "prepend", ""));
  if (type == "Strip") return text::make_strip_normalizer(c.get(j, "strip_left", true), c.get(j, "strip_right", true));
  if (type == "Replace") {
    auto [pat, literal] = read_pattern(c, j.at("pattern"));
    return text::make_replace_normalizer(pat, literal, c.get<std::string>(j, "content", ""));
  }
  if (type == "Sequence") {
    std::vector<std::unique_ptr<text::Normalizer>> parts;
    for (const json& n : j.at("normalizers"))
      if (auto p = build_normalizer(c, n)) parts.push_back(std::move(p));
    if (parts.empty()) return nullptr;
    return text::make_sequence_normalizer(std::move(parts));
  }
  c.fail("normalizer type '" + type + "' is not supported");
}

std::string metaspace_scheme(const Ctx& c, const json& j) {
  if (j.contains("prepend_scheme")) return c.get<std::string>(j, "prepend_scheme", "always");
  return c.get(j, "add_prefix_space", true) ? "always" : "never";  // older files
}

std::unique_ptr<text::PreTokenizer> build_pre_tokenizer(const Ctx& c, const json& j) {
  if (j.is_null()) return nullptr;
  std::string type = c.get<std::string>(j, "type", "");
  if (type == "Split") {
    auto [pat, literal] = read_pattern(c, j.at("pattern"));
    std::string b = c.get<std::string>(j, "behavior", "Isolated");
    text::SplitBehavior behavior;
    if (b == "Isolated")
      behavior = text::SplitBehavior::Isolated;
    else if (b == "Removed")
      behavior = text::SplitBehavior::Removed;
    else if (b == "MergedWithPrevious")
      behavior = text::SplitBehavior::MergedWithPrevious;
    else if (b == "MergedWithNext")
      behavior = text::SplitBehavior::MergedWithNext;
    else if (b == "Contiguous")
      behavior = text::SplitBehavior::Contiguous;
    else
      c.fail("Split behavior '" + b + "' is not supported");
    return text::make_split(pat, literal, behavior, c.get(j, "invert", false));
  }
  if (type == "ByteLevel")
    return text::make_byte_level(c.get(j, "add_prefix_space", false), c.get(j, "use_regex", true));
  if (type == "Digits") return text::make_digits(c.get(j, "individual_digits", false));
  if (type == "Metaspace")
    return text::make_metaspace(c.get<std::string>(j, "replacement", "\xE2\x96\x81"), metaspace_scheme(c, j),
                                c.get(j, "split", true));
  if (type == "Whitespace") return text::make_whitespace();
  if (type == "WhitespaceSplit") return text::make_whitespace_split();
  if (type == "Sequence") {
    std::vector<std::unique_ptr<text::PreTokenizer>> parts;
    for (const json& p : j.at("pretokenizers"))
      if (auto q = build_pre_tokenizer(c, p)) parts.push_back(std::move(q));
    if (parts.empty()) return nullptr;
    return text::make_sequence_pre_tokenizer(std::move(parts));
  }
  c.fail("pre_tokenizer type '" + type + "' is not supported");
}

void build_decoder(const Ctx& c, const json& j, text::Decoder& d) {
  if (j.is_null()) return;
  std::string type = c.get<std::string>(j, "type", "");
  using K = text::Decoder::Kind;
  if (type == "ByteLevel") {
    d.steps.push_back({K::ByteLevel, "", ""});
  } else if (type == "ByteFallback") {
    d.steps.push_back({K::ByteFallback, "", ""});
  } else if (type == "Fuse") {
    // Pieces are concatenated anyway.
  } else if (type == "Replace") {
    auto [pat, literal] = read_pattern(c, j.at("pattern"));
    if (!literal) c.fail("Replace decoder with a Regex pattern is not supported");
    d.steps.push_back({K::Replace, pat, c.get<std::string>(j, "content", "")});
  } else if (type == "Strip") {
    std::string content = c.get<std::string>(j, "content", " ");
    if (content.size() != 1) c.fail("Strip decoder content must be one ASCII character");
    d.strip_char = content[0];
    d.strip_start = c.get<size_t>(j, "start", 0);
    d.strip_stop = c.get<size_t>(j, "stop", 0);
  } else if (type == "Metaspace") {
    d.steps.push_back({K::Replace, c.get<std::string>(j, "replacement", "\xE2\x96\x81"), " "});
    if (metaspace_scheme(c, j) != "never") d.strip_start = 1, d.strip_char = ' ';
  } else if (type == "Sequence") {
    for (const json& x : j.at("decoders")) build_decoder(c, x, d);
  } else {
    c.fail("decoder type '" + type + "' is not supported");
  }
}

int32_t special_token_id(const Ctx& c, const json& special_tokens, const std::string& name) {
  auto it = special_tokens.find(name);
  if (it == special_tokens.end() || !it->contains("ids") || (*it)["ids"].empty())
    c.fail("post_processor refers to special token '" + name + "' without ids");
  return (*it)["ids"][0].get<int32_t>();
}

void build_post_processor(const Ctx& c, const json& j, Tokenizer::Impl& m) {
  if (j.is_null()) return;
  std::string type = c.get<std::string>(j, "type", "");
  if (type == "ByteLevel") return;  // only adjusts offsets
  if (type == "Sequence") {
    for (const json& p : j.at("processors")) build_post_processor(c, p, m);
    return;
  }
  if (type == "TemplateProcessing") {
    bool seen_a = false;
    for (const json& item : j.at("single")) {
      if (item.contains("Sequence")) {
        seen_a = true;
      } else if (item.contains("SpecialToken")) {
        int32_t id = special_token_id(c, j.at("special_tokens"), item["SpecialToken"].at("id").get<std::string>());
        (seen_a ? m.suffix : m.prefix).push_back(id);
      }
    }
    return;
  }
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    m.prefix.push_back(j.at("cls").at(1).get<int32_t>());
    m.suffix.push_back(j.at("sep").at(1).get<int32_t>());
    return;
  }
  c.fail("post_processor type '" + type + "' is not supported");
}

// tokenizer_config.json writes a token as "text" or {"content": "text", ...}.
std::optional<std::string> config_token(const json& cfg, const char* key) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content")) return (*it)["content"].get<std::string>();
  return std::nullopt;
}

// Reads tokenizer.json in one SAX pass. model.vocab and model.merges (nearly
// the whole file) go straight into flat arrays; everything else becomes a
// DOM. Building a DOM of a 150k-entry vocabulary would take most of a second.
class TokenizerJsonReader : public nlohmann::json_sax<json> {
 public:
  json root;
  std::vector<std::pair<std::string, int64_t>> vocab;
  std::vector<std::pair<std::string, std::string>> merges;
  bool saw_vocab = false, saw_merges = false;
  std::string error;

  bool null() override { return put(json()); }
  bool boolean(bool v) override { return put(json(v)); }
  bool number_integer(number_integer_t v) override { return number(v); }
  bool number_unsigned(number_unsigned_t v) override {
    return number(v > static_cast<uint64_t>(INT64_MAX) ? -1 : static_cast<int64_t>(v));
  }
  bool number_float(number_float_t v, const string_t&) override {
    if (mode_ == Mode::Vocab) return fail("model.vocab values must be integer ids");
    return put(json(v));
  }
  bool binary(binary_t&) override { return fail("binary values are not JSON"); }
  bool string(string_t& v) override {
    switch (mode_) {
      case Mode::Merges: {
        size_t sp = v.find(' ', 1);
        if (sp == std::string::npos) return fail("merge '" + v + "' is not two tokens separated by a space");
        merges.emplace_back(v.substr(0, sp), v.substr(sp + 1));
        return true;
      }
      case Mode::MergePair:
        pair_.push_back(std::move(v));
        return true;
      case Mode::Vocab:
        return fail("model.vocab values must be integer ids");
      case Mode::Dom:
        return put(json(std::move(v)));
    }
    return true;
  }
  bool start_object(std::size_t) override {
    if (mode_ != Mode::Dom) return fail("unexpected object inside model.vocab or model.merges");
    if (stack_.size() == 2 && in_model_ && key_ == "vocab") {
      mode_ = Mode::Vocab;
      saw_vocab = true;
      return true;
    }
    bool entering_model = stack_.size() == 1 && key_ == "model";
    if (!open(json::object())) return false;
    if (entering_model) in_model_ = true;
    return true;
  }
  bool key(string_t& k) override {
    key_ = std::move(k);
    return true;
  }
  bool end_object() override {
    if (mode_ == Mode::Vocab) {
      mode_ = Mode::Dom;
      return true;
    }
    if (stack_.size() == 2 && in_model_) in_model_ = false;
    stack_.pop_back();
    return true;
  }
  bool start_array(std::size_t) override {
    if (mode_ == Mode::Merges) {
      mode_ = Mode::MergePair;
      pair_.clear();
      return true;
    }
    if (mode_ != Mode::Dom) return fail("unexpected array inside model.vocab or a merge");
    if (stack_.size() == 2 && in_model_ && key_ == "merges") {
      mode_ = Mode::Merges;
      saw_merges = true;
      return true;
    }
    return open(json::array());
  }
  bool end_array() override {
    if (mode_ == Mode::MergePair) {
      if (pair_.size() != 2) return fail("a merge pair must have exactly two tokens");
      merges.emplace_back(std::move(pair_[0]), std::move(pair_[1]));
      mode_ = Mode::Merges;
      return true;
    }
    if (mode_ == Mode::Merges) {
      mode_ = Mode::Dom;
      return true;
    }
    stack_.pop_back();
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    return fail(std::string("not valid JSON (") + e.what() + ")");
  }

 private:
  enum class Mode { Dom, Vocab, Merges, MergePair };
  Mode mode_ = Mode::Dom;
  bool in_model_ = false;  // the open object at depth 2 is root["model"]
  std::vector<json*> stack_;
  std::string key_;
  std::vector<std::string> pair_;

  bool fail(const std::string& what) {
    if (error.empty()) error = what;
    return false;
  }
  bool number(int64_t v) {
    if (mode_ == Mode::Vocab) {
      vocab.emplace_back(std::move(key_), v);
      return true;
    }
    if (mode_ != Mode::Dom) return fail("merges must be strings \"a b\" or pairs [a, b]");
    return put(json(v));
  }
  json* place(json&& v) {
    if (stack_.empty()) {
      root = std::move(v);
      return &root;
    }
    json& top = *stack_.back();
    if (top.is_array()) {
      top.push_back(std::move(v));
      return &top.back();
    }
    json& slot = top[key_];
    slot = std::move(v);
    return &slot;
  }
  bool put(json&& v) {
    if (mode_ == Mode::MergePair) return fail("merges must be strings \"a b\" or pairs [a, b]");
    place(std::move(v));
    return true;
  }
  bool open(json&& container) {
    stack_.push_back(place(std::move(container)));
    return true;
  }
};

void load_model(const Ctx& c, const json& model, TokenizerJsonReader& r, Tokenizer::Impl& m) {
  std::string type = c.get<std::string>(model, "type", r.saw_merges ? "BPE" : "");
  if (type != "BPE") c.fail("model type '" + type + "' is not supported (only BPE tokenizers are)");
  if (!r.saw_vocab || !r.saw_merges) c.fail("model.vocab (an object) and model.merges (an array) are required");
  if (!c.get<std::string>(model, "continuing_subword_prefix", "").empty() ||
      !c.get<std::string>(model, "end_of_word_suffix", "").empty())
    c.fail("BPE continuing_subword_prefix / end_of_word_suffix are not supported");
  text::Bpe& bpe = m.bpe;
  bpe.ids.reserve(r.vocab.size() * 2);
  for (auto& [token, id] : r.vocab) {
    if (id < 0 || id > 16'000'000) c.fail("vocabulary id out of range for '" + token + "'");
    if (static_cast<size_t>(id) >= bpe.vocab.size()) bpe.vocab.resize(id + 1);
    bpe.ids.emplace(token, static_cast<int32_t>(id));
    bpe.vocab[id] = std::move(token);
  }
  bpe.merges.reserve(r.merges.size() * 2);
  int32_t rank = 0;
  std::string joined;
  for (const auto& [left, right] : r.merges) {
    joined.assign(left).append(right);
    auto a = bpe.find(left), b = bpe.find(right), ab = bpe.find(joined);
    if (!a || !b || !ab) c.fail("merge '" + left + " " + right + "' uses a token that is not in the vocabulary");
    bpe.add_merge(*a, *b, rank++, *ab);
  }
  bpe.byte_fallback = c.get(model, "byte_fallback", false);
  bpe.ignore_merges = c.get(model, "ignore_merges", false);
  bpe.fuse_unk = c.get(model, "fuse_unk", false);
  if (auto unk = c.get<std::string>(model, "unk_token", ""); !unk.empty()) {
    if (auto id = bpe.find(unk)) bpe.unk_id = *id;
  }
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::from_tokenizer_json(const std::string& path) {
  std::unique_ptr<Tokenizer> tok(new Tokenizer());
  Impl& m = *tok->impl_;
  m.source = path;
  Ctx c{path};
  TokenizerJsonReader reader;
  {
    std::string bytes = read_all(path);
    json::sax_parse(bytes, &reader);
    if (!reader.error.empty()) c.fail(reader.error);
  }
  const json& j = reader.root;
  if (!j.is_object() || !j.contains("model") || !j["model"].is_object()) c.fail("not a tokenizer.json (no \"model\")");
  try {
    load_model(c, j["model"], reader, m);
    for (const json& a : c.get<json>(j, "added_tokens", json::array())) {
      AddedToken t;
      t.id = a.at("id").get<int32_t>();
      t.content = a.at("content").get<std::string>();
      t.special = c.get(a, "special", false);
      t.lstrip = c.get(a, "lstrip", false);
      t.rstrip = c.get(a, "rstrip", false);
      t.single_word = c.get(a, "single_word", false);
      if (t.id < 0 || t.id > 16'000'000) c.fail("added token id out of range: " + t.content);
      if (static_cast<size_t>(t.id) >= m.bpe.vocab.size()) m.bpe.vocab.resize(t.id + 1);
      m.bpe.vocab[t.id] = t.content;
      m.bpe.ids[t.content] = t.id;
      m.added.push_back(std::move(t));
    }
    m.normalizer = build_normalizer(c, c.get<json>(j, "normalizer", json()));
    m.pre_tokenizer = build_pre_tokenizer(c, c.get<json>(j, "pre_tokenizer", json()));
    build_post_processor(c, c.get<json>(j, "post_processor", json()), m);
    build_decoder(c, c.get<json>(j, "decoder", json()), m.decoder);
  } catch (const json::exception& e) {
    c.fail(std::string("unexpected structure (") + e.what() + ")");
  }

  // BOS/EOS and end-of-generation ids from the configs beside the file.
  fs::path dir = fs::path(path).parent_path();
  if (fs::exists(dir / "tokenizer_config.json")) {
    json cfg = parse_json((dir / "tokenizer_config.json").string());
    if (auto b = config_token(cfg, "bos_token")) m.bos = m.bpe.find(*b).value_or(-1);
    if (auto e = config_token(cfg, "eos_token")) m.eos = m.bpe.find(*e).value_or(-1);
    if (auto it = cfg.find("clean_up_tokenization_spaces"); it != cfg.end() && it->is_boolean())
      m.clean_up_spaces = it->get<bool>();
  } else if (!m.prefix.empty()) {
    m.bos = m.prefix.front();
  }
  if (fs::exists(dir / "generation_config.json")) {
    json g = parse_json((dir / "generation_config.json").string());
    if (auto it = g.find("eos_token_id"); it != g.end()) {
      if (it->is_number_integer()) m.eog.insert(it->get<int32_t>());
      if (it->is_array())
        for (const json& x : *it)
          if (x.is_number_integer()) m.eog.insert(x.get<int32_t>());
    }
  }
  m.finish();
  return tok;
}

std::unique_ptr<Tokenizer> Tokenizer::from_hf_dir(const std::string& dir) {
  fs::path p = fs::path(dir) / "tokenizer.json";
  if (!fs::exists(p)) throw Error(dir + ": no tokenizer.json in this folder");
  return from_tokenizer_json(p.string());
}

}  // namespace owl
