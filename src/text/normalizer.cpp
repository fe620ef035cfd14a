#include "text/normalizer.h"

#include <utf8proc.h>

#include <cstdlib>

#include "base/error.h"
#include "text/utf8.h"

namespace owl::text {

bool is_unicode_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

namespace {

class UnicodeNormalizer : public Normalizer {
 public:
  explicit UnicodeNormalizer(UnicodeForm f) : form_(f) {}
  void apply(std::string& s) const override {
    if (s.empty()) return;
    // Pure ASCII is invariant under every normalisation form: skip the copy.
    bool ascii = true;
    for (char c : s) ascii &= static_cast<uint8_t>(c) < 0x80;
    if (ascii) return;
    int opts = UTF8PROC_STABLE;
    switch (form_) {
      case UnicodeForm::NFC:
        opts |= UTF8PROC_COMPOSE;
        break;
      case UnicodeForm::NFD:
        opts |= UTF8PROC_DECOMPOSE;
        break;
      case UnicodeForm::NFKC:
        opts |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
        break;
      case UnicodeForm::NFKD:
        opts |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
        break;
    }
    utf8proc_uint8_t* out = nullptr;
    utf8proc_ssize_t n =
        utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()), static_cast<utf8proc_ssize_t>(s.size()), &out,
                     static_cast<utf8proc_option_t>(opts));
    if (n < 0) throw Error(std::string("Unicode normalisation failed: ") + utf8proc_errmsg(n));
    s.assign(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
    std::free(out);
  }

 private:
  UnicodeForm form_;
};

class LowercaseNormalizer : public Normalizer {
 public:
  void apply(std::string& s) const override {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size();) utf8_append(out, static_cast<char32_t>(utf8proc_tolower(utf8_next(s, i))));
    s.swap(out);
  }
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(const std::string& pattern, bool literal, std::string content)
      : literal_(literal), pattern_(pattern), content_(std::move(content)) {
    if (!literal_) regex_ = std::make_unique<Regex>(pattern, false);
    if (literal_ && pattern_.empty()) throw Error("tokenizer.json: Replace normalizer with an empty pattern");
  }
  void apply(std::string& s) const override {
    std::string out;
    size_t last = 0;
    if (literal_) {
      size_t pos;
      if (s.find(pattern_) == std::string::npos) return;
      while ((pos = s.find(pattern_, last)) != std::string::npos) {
        out.append(s, last, pos - last);
        out += content_;
        last = pos + pattern_.size();
      }
    } else {
      regex_->for_each_match(s, [&](size_t b, size_t e) {
        out.append(s, last, b - last);
        out += content_;
        last = e;
      });
    }
    out.append(s, last, std::string::npos);
    s.swap(out);
  }

 private:
  bool literal_;
  std::string pattern_;
  std::string content_;
  std::unique_ptr<Regex> regex_;
};

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string p) : prefix_(std::move(p)) {}
  void apply(std::string& s) const override {
    if (!s.empty()) s.insert(0, prefix_);
  }

 private:
  std::string prefix_;
};

class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool l, bool r) : left_(l), right_(r) {}
  void apply(std::string& s) const override {
    size_t b = 0, e = s.size();
    if (left_) {
      while (b < e) {
        size_t i = b;
        if (!is_unicode_space(utf8_next(s, i))) break;
        b = i;
      }
    }
    if (right_) {
      while (e > b) {
        size_t start = e - 1;
        while (start > b && (static_cast<uint8_t>(s[start]) & 0xC0) == 0x80) --start;
        size_t i = start;
        if (!is_unicode_space(utf8_next(s, i))) break;
        e = start;
      }
    }
    s = s.substr(b, e - b);
  }

 private:
  bool left_, right_;
};

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> p) : parts_(std::move(p)) {}
  void apply(std::string& s) const override {
    for (const auto& n : parts_) n->apply(s);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

}  // namespace

std::unique_ptr<Normalizer> make_unicode_normalizer(UnicodeForm form) {
  return std::make_unique<UnicodeNormalizer>(form);
}
std::unique_ptr<Normalizer> make_lowercase_normalizer() { return std::make_unique<LowercaseNormalizer>(); }
std::unique_ptr<Normalizer> make_replace_normalizer(const std::string& pattern, bool literal, std::string content) {
  return std::make_unique<ReplaceNormalizer>(pattern, literal, std::move(content));
}
std::unique_ptr<Normalizer> make_prepend_normalizer(std::string prefix) {
  return std::make_unique<PrependNormalizer>(std::move(prefix));
}
std::unique_ptr<Normalizer> make_strip_normalizer(bool left, bool right) {
  return std::make_unique<StripNormalizer>(left, right);
}
std::unique_ptr<Normalizer> make_sequence_normalizer(std::vector<std::unique_ptr<Normalizer>> parts) {
  return std::make_unique<SequenceNormalizer>(std::move(parts));
}

}  // namespace owl::text
