#include "text/pre_tokenizer.h"

#include <utility>

#include "text/byte_level.h"
#include "text/utf8.h"

namespace owl::text {

const char* const kGpt2Pattern = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

namespace {

// Cuts s at the given match ranges according to the behaviour; appends non-empty pieces to out.
void split_by_matches(const std::string& s, const std::vector<std::pair<size_t, size_t>>& matches,
                      SplitBehavior behavior, std::vector<std::string>& out) {
  // Each segment is (begin, end, is_match), covering s completely.
  struct Seg {
    size_t b, e;
    bool match;
  };
  std::vector<Seg> segs;
  size_t last = 0;
  for (auto [b, e] : matches) {
    if (b > last) segs.push_back({last, b, false});
    segs.push_back({b, e, true});
    last = e;
  }
  if (last < s.size()) segs.push_back({last, s.size(), false});

  auto emit = [&](size_t b, size_t e) {
    if (e > b) out.emplace_back(s, b, e - b);
  };
  switch (behavior) {
    case SplitBehavior::Removed:
      for (const Seg& g : segs)
        if (!g.match) emit(g.b, g.e);
      break;
    case SplitBehavior::Isolated:
      for (const Seg& g : segs) emit(g.b, g.e);
      break;
    case SplitBehavior::Contiguous: {
      for (size_t i = 0; i < segs.size();) {
        size_t j = i + 1;
        while (segs[i].match && j < segs.size() && segs[j].match) ++j;
        emit(segs[i].b, segs[j - 1].e);
        i = j;
      }
      break;
    }
    case SplitBehavior::MergedWithPrevious: {
      size_t start = 0;
      for (const Seg& g : segs)
        if (g.match) {
          emit(start, g.e);
          start = g.e;
        }
      emit(start, s.size());
      break;
    }
    case SplitBehavior::MergedWithNext: {
      size_t start = 0;
      for (const Seg& g : segs)
        if (g.match) {
          emit(start, g.b);
          start = g.b;
        }
      emit(start, s.size());
      break;
    }
  }
}

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(const std::string& pattern, bool literal, SplitBehavior b, bool invert)
      : regex_(pattern, literal), behavior_(b), invert_(invert) {}
  void apply(std::vector<std::string>& pieces, bool) const override {
    std::vector<std::string> out;
    out.reserve(pieces.size() * 2);
    std::vector<std::pair<size_t, size_t>> matches;
    for (const std::string& p : pieces) {
      matches.clear();
      regex_.for_each_match(p, [&](size_t b, size_t e) { matches.emplace_back(b, e); });
      if (invert_) {  // the gaps become the "matches"
        std::vector<std::pair<size_t, size_t>> gaps;
        size_t last = 0;
        for (auto [b, e] : matches) {
          if (b > last) gaps.emplace_back(last, b);
          last = e;
        }
        if (last < p.size()) gaps.emplace_back(last, p.size());
        matches.swap(gaps);
      }
      split_by_matches(p, matches, behavior_, out);
    }
    pieces.swap(out);
  }

 private:
  Regex regex_;
  SplitBehavior behavior_;
  bool invert_;
};

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool prefix, bool use_regex) : add_prefix_space_(prefix) {
    if (use_regex) split_ = std::make_unique<SplitPreTokenizer>(kGpt2Pattern, false, SplitBehavior::Isolated, false);
  }
  void apply(std::vector<std::string>& pieces, bool first) const override {
    if (add_prefix_space_)
      for (auto& p : pieces)
        if (p.empty() || p[0] != ' ') p.insert(0, 1, ' ');
    if (split_) split_->apply(pieces, first);
    for (auto& p : pieces) p = byte_level_encode(p);
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<SplitPreTokenizer> split_;
};

class DigitsPreTokenizer : public PreTokenizer {
 public:
  explicit DigitsPreTokenizer(bool individual)
      : split_("\\p{N}", false, individual ? SplitBehavior::Isolated : SplitBehavior::Contiguous, false) {}
  void apply(std::vector<std::string>& pieces, bool first) const override { split_.apply(pieces, first); }

 private:
  SplitPreTokenizer split_;
};

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string repl, std::string scheme, bool split)
      : replacement_(std::move(repl)), scheme_(std::move(scheme)), split_(split) {}
  void apply(std::vector<std::string>& pieces, bool first) const override {
    std::vector<std::string> out;
    for (const std::string& p : pieces) {
      std::string s;
      for (char c : p) {
        if (c == ' ')
          s += replacement_;
        else
          s += c;
      }
      bool prepend = scheme_ == "always" || (scheme_ == "first" && first);
      if (prepend && s.compare(0, replacement_.size(), replacement_) != 0) s.insert(0, replacement_);
      if (!split_) {
        if (!s.empty()) out.push_back(std::move(s));
        continue;
      }
      // Split before each replacement character (MergedWithNext).
      size_t start = 0, pos;
      while ((pos = s.find(replacement_, start + 1)) != std::string::npos && !replacement_.empty()) {
        out.emplace_back(s, start, pos - start);
        start = pos;
      }
      if (start < s.size()) out.emplace_back(s, start, std::string::npos);
    }
    pieces.swap(out);
  }

 private:
  std::string replacement_, scheme_;
  bool split_;
};

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> p) : parts_(std::move(p)) {}
  void apply(std::vector<std::string>& pieces, bool first) const override {
    for (const auto& p : parts_) p->apply(pieces, first);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

}  // namespace

std::unique_ptr<PreTokenizer> make_split(const std::string& pattern, bool literal, SplitBehavior behavior,
                                         bool invert) {
  return std::make_unique<SplitPreTokenizer>(pattern, literal, behavior, invert);
}
std::unique_ptr<PreTokenizer> make_byte_level(bool add_prefix_space, bool use_regex) {
  return std::make_unique<ByteLevelPreTokenizer>(add_prefix_space, use_regex);
}
std::unique_ptr<PreTokenizer> make_digits(bool individual_digits) {
  return std::make_unique<DigitsPreTokenizer>(individual_digits);
}
std::unique_ptr<PreTokenizer> make_metaspace(std::string replacement, std::string prepend_scheme, bool split) {
  return std::make_unique<MetaspacePreTokenizer>(std::move(replacement), std::move(prepend_scheme), split);
}
std::unique_ptr<PreTokenizer> make_whitespace() {
  return std::make_unique<SplitPreTokenizer>("\\w+|[^\\w\\s]+", false, SplitBehavior::Removed, true);
}
std::unique_ptr<PreTokenizer> make_whitespace_split() {
  return std::make_unique<SplitPreTokenizer>("\\s+", false, SplitBehavior::Removed, false);
}
std::unique_ptr<PreTokenizer> make_sequence_pre_tokenizer(std::vector<std::unique_ptr<PreTokenizer>> parts) {
  return std::make_unique<SequencePreTokenizer>(std::move(parts));
}

}  // namespace owl::text
