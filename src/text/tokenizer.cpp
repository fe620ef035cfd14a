#include "text/tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "formats/gguf.h"
#include "text/tokenizer_impl.h"
#include "text/utf8.h"

namespace owl {

using text::utf8_next;

// ---- added tokens ---------------------------------------------------------

int32_t AddedTokenMatcher::child(int32_t node, uint8_t byte) const {
  auto it = edges_.find((static_cast<uint64_t>(node) << 8) | byte);
  return it == edges_.end() ? -1 : it->second;
}

void AddedTokenMatcher::build(const std::vector<AddedToken>& tokens) {
  edges_.clear();
  terminal_.assign(1, -1);
  std::fill(std::begin(can_start_), std::end(can_start_), false);
  for (size_t t = 0; t < tokens.size(); ++t) {
    const std::string& s = tokens[t].content;
    if (s.empty()) continue;
    can_start_[static_cast<uint8_t>(s[0])] = true;
    int32_t node = 0;
    for (char c : s) {
      uint8_t b = static_cast<uint8_t>(c);
      int32_t next = child(node, b);
      if (next < 0) {
        next = static_cast<int32_t>(terminal_.size());
        terminal_.push_back(-1);
        edges_.emplace((static_cast<uint64_t>(node) << 8) | b, next);
      }
      node = next;
    }
    if (terminal_[node] < 0) terminal_[node] = static_cast<int32_t>(t);
  }
}

namespace {

bool is_word_char(char32_t c) {
  return (c < 0x80) ? (std::isalnum(static_cast<int>(c)) || c == '_') : !text::is_unicode_space(c);
}

// The code point ending just before byte offset i (i > 0).
char32_t char_before(std::string_view s, size_t i) {
  size_t b = i - 1;
  while (b > 0 && (static_cast<uint8_t>(s[b]) & 0xC0) == 0x80) --b;
  return utf8_next(s, b);
}

}  // namespace

std::vector<AddedTokenMatcher::Section> AddedTokenMatcher::split(std::string_view text,
                                                                 const std::vector<AddedToken>& tokens,
                                                                 bool parse_special) const {
  std::vector<Section> out;
  size_t start = 0;  // start of the pending plain-text section
  for (size_t i = 0; i < text.size();) {
    if (!can_start_[static_cast<uint8_t>(text[i])]) {
      ++i;
      continue;
    }
    int32_t node = 0, best = -1;
    size_t best_end = 0;
    for (size_t j = i; j < text.size(); ++j) {
      node = child(node, static_cast<uint8_t>(text[j]));
      if (node < 0) break;
      int32_t t = terminal_[node];
      if (t < 0 || (!parse_special && tokens[t].special)) continue;
      if (tokens[t].single_word) {
        bool left_ok = i == 0 || !is_word_char(char_before(text, i));
        size_t k = j + 1;
        bool right_ok = k >= text.size() || !is_word_char(utf8_next(text, k));
        if (!left_ok || !right_ok) continue;
      }
      best = t;
      best_end = j + 1;
    }
    if (best < 0) {
      ++i;
      continue;
    }
    if (i > start) out.push_back({text.substr(start, i - start), -1});
    out.push_back({text.substr(i, best_end - i), best});
    i = start = best_end;
  }
  if (start < text.size()) out.push_back({text.substr(start), -1});
  return out;
}

namespace {

std::string_view trim_space_left(std::string_view s) {
  while (!s.empty()) {
    size_t i = 0;
    if (!text::is_unicode_space(utf8_next(s, i))) break;
    s.remove_prefix(i);
  }
  return s;
}

std::string_view trim_space_right(std::string_view s) {
  while (!s.empty()) {
    size_t b = s.size() - 1;
    while (b > 0 && (static_cast<uint8_t>(s[b]) & 0xC0) == 0x80) --b;
    size_t i = b;
    if (!text::is_unicode_space(utf8_next(s, i))) break;
    s.remove_suffix(s.size() - b);
  }
  return s;
}

const char* const kEogTexts[] = {
    "<|eot_id|>",      "<|im_end|>",      "<|end|>",       "<|endoftext|>", "<|end_of_text|>",       "<|eom_id|>",
    "<|return|>",      "<|call|>",        "<end_of_turn>", "<EOT>",         "<｜end▁of▁sentence｜>", "<|user|>",
    "<|observation|>", "<|end_of_turn|>",
};

}  // namespace

bool is_known_eog_text(std::string_view s) {
  for (const char* t : kEogTexts)
    if (s == t) return true;
  return false;
}

void Tokenizer::Impl::finish() {
  bpe.finish_loading();
  added_index.assign(bpe.vocab.size(), -1);
  for (size_t i = 0; i < added.size(); ++i)
    if (added[i].id >= 0 && added[i].id < static_cast<int32_t>(added_index.size()))
      added_index[added[i].id] = static_cast<int32_t>(i);
  matcher.build(added);
  if (eos >= 0) eog.insert(eos);
  for (const AddedToken& t : added)
    if (t.special && is_known_eog_text(t.content)) eog.insert(t.id);
}

// ---- Tokenizer -------------------------------------------------------------

Tokenizer::Tokenizer() : impl_(std::make_unique<Impl>()) {}
Tokenizer::~Tokenizer() = default;

std::unique_ptr<Tokenizer> Tokenizer::open(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    if (fs::exists(fs::path(path) / "tokenizer.json")) return from_hf_dir(path);
    // A model folder converted to a single GGUF is not a tokenizer folder: say what is missing.
    throw Error(
        path +
        ": no tokenizer.json in this folder (pass a GGUF file, a folder with tokenizer.json, or a tokenizer.json)");
  }
  if (!fs::exists(path, ec)) throw Error(path + ": no such file or folder");
  std::ifstream f(path, std::ios::binary);
  char magic[4] = {};
  f.read(magic, 4);
  if (f.gcount() == 4 && std::string_view(magic, 4) == "GGUF") {
    auto g = gguf::File::open(path);
    return from_gguf(*g);
  }
  return from_tokenizer_json(path);
}

std::vector<int32_t> Tokenizer::encode(std::string_view input, bool add_special) const {
  return encode(input, add_special, true);
}

std::vector<int32_t> Tokenizer::encode(std::string_view input, bool add_special, bool parse_special) const {
  const Impl& m = *impl_;
  std::string sanitized;
  std::string_view text = input;
  if (!text::utf8_is_valid(input)) {
    sanitized = text::utf8_sanitize(input);
    text = sanitized;
  }

  std::vector<int32_t> ids;
  if (add_special) ids = m.prefix;
  auto sections = m.matcher.split(text, m.added, parse_special);
  // lstrip/rstrip: an added token swallows the whitespace next to it.
  for (size_t i = 0; i < sections.size(); ++i) {
    if (sections[i].token < 0) continue;
    const AddedToken& t = m.added[sections[i].token];
    if (t.lstrip && i > 0 && sections[i - 1].token < 0) sections[i - 1].text = trim_space_right(sections[i - 1].text);
    if (t.rstrip && i + 1 < sections.size() && sections[i + 1].token < 0)
      sections[i + 1].text = trim_space_left(sections[i + 1].text);
  }

  std::vector<std::string> pieces;
  for (size_t i = 0; i < sections.size(); ++i) {
    const auto& sec = sections[i];
    if (sec.token >= 0) {
      ids.push_back(m.added[sec.token].id);
      continue;
    }
    if (sec.text.empty()) continue;
    std::string s(sec.text);
    if (m.normalizer) m.normalizer->apply(s);
    if (s.empty()) continue;
    pieces.clear();
    pieces.push_back(std::move(s));
    if (m.pre_tokenizer) m.pre_tokenizer->apply(pieces, i == 0);
    for (const std::string& p : pieces) m.bpe.encode_word(p, ids);
  }
  if (add_special) ids.insert(ids.end(), m.suffix.begin(), m.suffix.end());
  return ids;
}

std::string Tokenizer::token_bytes(int32_t id) const {
  if (id < 0 || id >= n_vocab()) return {};
  return impl_->decoder.piece(impl_->bpe.vocab[id], impl_->is_added(id));
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::string bytes;
  for (int32_t id : ids) {
    if (id < 0 || id >= n_vocab()) continue;  // unknown ids decode to nothing, as in HF
    if (skip_special && is_special(id)) continue;
    bytes += token_bytes(id);
  }
  return impl_->decoder.finish(std::move(bytes));
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special, bool clean_up_spaces) const {
  std::string s = decode(ids, skip_special);
  if (!clean_up_spaces) return s;
  // transformers' clean_up_tokenization: remove the space before punctuation and English contractions.
  static const std::pair<const char*, const char*> kRules[] = {
      {" .", "."},     {" ?", "?"},   {" !", "!"},   {" ,", ","},     {" ' ", "'"},
      {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"},
  };
  for (auto [from, to] : kRules) {
    std::string out;
    std::string_view f(from);
    size_t last = 0, pos;
    while ((pos = s.find(f, last)) != std::string::npos) {
      out.append(s, last, pos - last);
      out += to;
      last = pos + f.size();
    }
    out.append(s, last, std::string::npos);
    s.swap(out);
  }
  return s;
}

bool Tokenizer::clean_up_tokenization_spaces() const { return impl_->clean_up_spaces; }

std::string Tokenizer::token_text(int32_t id) const {
  if (id < 0 || id >= n_vocab()) return {};
  return impl_->bpe.vocab[id];
}

std::optional<int32_t> Tokenizer::token_id(std::string_view token) const { return impl_->bpe.find(token); }

int32_t Tokenizer::n_vocab() const { return static_cast<int32_t>(impl_->bpe.vocab.size()); }
int32_t Tokenizer::bos_id() const { return impl_->bos; }
int32_t Tokenizer::eos_id() const { return impl_->eos; }
bool Tokenizer::is_eog(int32_t id) const { return impl_->eog.count(id) != 0; }
bool Tokenizer::is_special(int32_t id) const {
  return impl_->is_added(id) && impl_->added[impl_->added_index[id]].special;
}

// ---- IncrementalDecoder ------------------------------------------------------

IncrementalDecoder::IncrementalDecoder(const Tokenizer& t, bool skip_special) : tok_(t), skip_special_(skip_special) {}

void IncrementalDecoder::prime(int32_t id) {
  const bool skip = skip_special_;
  skip_special_ = false;
  push(id);
  skip_special_ = skip;
}

std::string IncrementalDecoder::push(int32_t id) {
  if (id < 0 || id >= tok_.n_vocab()) return {};
  if (skip_special_ && tok_.is_special(id) && std::find(kept_.begin(), kept_.end(), id) == kept_.end()) return {};
  pending_ += tok_.token_bytes(id);
  const text::Decoder& d = tok_.impl_->decoder;
  if (first_) {
    // The decoder strips leading characters of the whole text (SentencePiece's dummy-prefix space).
    size_t k = 0;
    while (k < d.strip_start && stripped_ < d.strip_start && k < pending_.size() && pending_[k] == d.strip_char) {
      ++k;
      ++stripped_;
    }
    pending_.erase(0, k);
    if (pending_.empty()) return {};
    first_ = false;
  }
  // Emit everything except an incomplete (but still possibly valid) character at the end.
  size_t keep = text::utf8_incomplete_tail(pending_);
  std::string out = text::utf8_sanitize(std::string_view(pending_).substr(0, pending_.size() - keep));
  pending_.erase(0, pending_.size() - keep);
  return out;
}

std::string IncrementalDecoder::flush() {
  std::string out = text::utf8_sanitize(pending_);
  pending_.clear();
  return out;
}

}  // namespace owl
