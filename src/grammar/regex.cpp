#include "grammar/regex.h"

#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

namespace owl::grammar {

namespace {

struct RNode {
  enum class Kind { Chars, Seq, Alt, Repeat, Start, End, Empty };
  Kind kind = Kind::Empty;
  CharSet set;
  std::vector<RNode> kids;
  uint32_t min = 0, max = 0;
};

constexpr uint32_t kMaxRepeat = 10000;

CharSet digit() { return CharSet::range('0', '9'); }
CharSet word() {
  CharSet s = CharSet::range('a', 'z');
  s.add('A', 'Z');
  s.add('0', '9');
  s.add('_', '_');
  return s;
}
CharSet space() {
  CharSet s = CharSet::range('\t', '\r');
  s.add(' ', ' ');
  s.add(0xA0, 0xA0);
  s.add(0x1680, 0x1680);
  s.add(0x2000, 0x200A);
  s.add(0x2028, 0x2029);
  s.add(0x202F, 0x202F);
  s.add(0x205F, 0x205F);
  s.add(0x3000, 0x3000);
  s.add(0xFEFF, 0xFEFF);
  return s;
}

class Parser {
 public:
  explicit Parser(std::string_view p) : p_(p) {}

  RNode parse() {
    RNode n = alternation();
    if (pos_ < p_.size()) fail("unmatched ')'");
    return n;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw CompileError("regex /" + std::string(p_) + "/ at offset " + std::to_string(pos_) + ": " + what);
  }
  bool eof() const { return pos_ >= p_.size(); }
  char peek() const { return p_[pos_]; }

  uint32_t next_char() {
    unsigned char c = static_cast<unsigned char>(p_[pos_]);
    uint32_t cp = c;
    int extra = 0;
    if (c >= 0xF0) {
      cp = c & 7;
      extra = 3;
    } else if (c >= 0xE0) {
      cp = c & 15;
      extra = 2;
    } else if (c >= 0xC0) {
      cp = c & 31;
      extra = 1;
    }
    ++pos_;
    for (int i = 0; i < extra && pos_ < p_.size(); ++i)
      cp = (cp << 6) | (static_cast<unsigned char>(p_[pos_++]) & 0x3F);
    return cp;
  }

  RNode alternation() {
    std::vector<RNode> alts{sequence()};
    while (!eof() && peek() == '|') {
      ++pos_;
      alts.push_back(sequence());
    }
    if (alts.size() == 1) return std::move(alts[0]);
    RNode n;
    n.kind = RNode::Kind::Alt;
    n.kids = std::move(alts);
    return n;
  }

  RNode sequence() {
    RNode n;
    n.kind = RNode::Kind::Seq;
    while (!eof() && peek() != '|' && peek() != ')') {
      RNode a = atom();
      quantifier(a);
      n.kids.push_back(std::move(a));
    }
    return n;
  }

  bool read_int(uint32_t& v) {
    size_t start = pos_;
    v = 0;
    while (!eof() && peek() >= '0' && peek() <= '9') {
      v = std::min<uint32_t>(v * 10 + static_cast<uint32_t>(peek() - '0'), 1000000);
      ++pos_;
    }
    return pos_ > start;
  }

  void quantifier(RNode& a) {
    while (!eof()) {
      uint32_t mn = 0, mx = 0;
      char c = peek();
      size_t save = pos_;
      if (c == '*') {
        mn = 0, mx = kUnbounded;
        ++pos_;
      } else if (c == '+') {
        mn = 1, mx = kUnbounded;
        ++pos_;
      } else if (c == '?') {
        mn = 0, mx = 1;
        ++pos_;
      } else if (c == '{') {
        ++pos_;
        if (!read_int(mn)) {
          pos_ = save;  // a literal '{' (Annex B)
          return;
        }
        mx = mn;
        if (!eof() && peek() == ',') {
          ++pos_;
          if (!read_int(mx)) mx = kUnbounded;
        }
        if (eof() || peek() != '}') {
          pos_ = save;
          return;
        }
        ++pos_;
        if (mx != kUnbounded && mx < mn) fail("quantifier {" + std::to_string(mn) + "," + std::to_string(mx) + "}");
        if (mn > kMaxRepeat || (mx != kUnbounded && mx > kMaxRepeat)) fail("repetition count above 10000");
      } else {
        return;
      }
      if (a.kind == RNode::Kind::Start || a.kind == RNode::Kind::End) fail("quantified anchor");
      if (!eof() && peek() == '?') ++pos_;  // lazy: the same language
      RNode r;
      r.kind = RNode::Kind::Repeat;
      r.min = mn;
      r.max = mx;
      r.kids.push_back(std::move(a));
      a = std::move(r);
    }
  }

  static RNode chars(CharSet s) {
    RNode n;
    n.kind = RNode::Kind::Chars;
    n.set = std::move(s);
    return n;
  }

  uint32_t hex(size_t n) {
    uint32_t v = 0;
    for (size_t i = 0; i < n; ++i) {
      if (eof() || !std::isxdigit(static_cast<unsigned char>(peek()))) fail("bad hex escape");
      char c = p_[pos_++];
      v = v * 16 +
          static_cast<uint32_t>(std::isdigit(static_cast<unsigned char>(c)) ? c - '0' : (std::tolower(c) - 'a' + 10));
    }
    return v;
  }

  // After a backslash: a class escape or one character. in_class: \b is backspace.
  CharSet escape(bool in_class) {
    if (eof()) fail("trailing backslash");
    char c = p_[pos_++];
    switch (c) {
      case 'd':
        return digit();
      case 'D':
        return digit().complement();
      case 'w':
        return word();
      case 'W':
        return word().complement();
      case 's':
        return space();
      case 'S':
        return space().complement();
      case 'n':
        return CharSet::of('\n');
      case 'r':
        return CharSet::of('\r');
      case 't':
        return CharSet::of('\t');
      case 'f':
        return CharSet::of('\f');
      case 'v':
        return CharSet::of('\v');
      case '0':
        return CharSet::of(0);
      case 'x':
        return CharSet::of(hex(2));
      case 'u': {
        if (!eof() && peek() == '{') {
          ++pos_;
          uint32_t v = 0;
          while (!eof() && peek() != '}') v = v * 16 + hex(1);
          ++pos_;
          return CharSet::of(v);
        }
        uint32_t v = hex(4);
        if (v >= 0xD800 && v <= 0xDBFF && pos_ + 6 <= p_.size() && p_[pos_] == '\\' && p_[pos_ + 1] == 'u') {
          pos_ += 2;
          uint32_t lo = hex(4);
          return CharSet::of(0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00));
        }
        return CharSet::of(v);
      }
      case 'c':
        if (!eof() && std::isalpha(static_cast<unsigned char>(peek())))
          return CharSet::of(static_cast<uint32_t>(p_[pos_++]) % 32);
        return CharSet::of('\\');
      case 'b':
        if (in_class) return CharSet::of('\b');
        --pos_;
        fail("word boundary \\b is not supported");
      case 'B':
        --pos_;
        fail("word boundary \\B is not supported");
      case 'p':
      case 'P':
        --pos_;
        fail("Unicode property escapes are not supported");
      case 'k':
        --pos_;
        fail("backreferences are not supported");
      default:
        if (c >= '1' && c <= '9') {
          --pos_;
          fail("backreferences are not supported");
        }
        --pos_;
        return CharSet::of(next_char());
    }
  }

  RNode char_class() {
    bool negate = false;
    if (!eof() && peek() == '^') {
      negate = true;
      ++pos_;
    }
    CharSet set;
    bool first = true;
    while (true) {
      if (eof()) fail("unterminated character class");
      if (peek() == ']' && !first) break;
      if (peek() == ']' && first) {
        // [] matches nothing, [^] anything (JS)
        break;
      }
      first = false;
      CharSet lo_set;
      bool single = true;
      uint32_t lo = 0;
      if (peek() == '\\') {
        ++pos_;
        lo_set = escape(true);
        single = lo_set.ranges().size() == 1 && lo_set.ranges()[0].first == lo_set.ranges()[0].second;
        if (single) lo = lo_set.ranges()[0].first;
      } else {
        lo = next_char();
        lo_set = CharSet::of(lo);
      }
      if (single && pos_ + 1 < p_.size() && peek() == '-' && p_[pos_ + 1] != ']') {
        ++pos_;
        uint32_t hi = 0;
        if (peek() == '\\') {
          ++pos_;
          CharSet h = escape(true);
          if (h.ranges().size() != 1 || h.ranges()[0].first != h.ranges()[0].second) fail("bad class range");
          hi = h.ranges()[0].first;
        } else {
          hi = next_char();
        }
        if (hi < lo) fail("class range out of order");
        set.add(lo, hi);
      } else {
        set.add(lo_set);
      }
    }
    ++pos_;  // ']'
    return chars(negate ? set.complement() : set);
  }

  RNode atom() {
    char c = peek();
    switch (c) {
      case '(': {
        ++pos_;
        if (!eof() && peek() == '?') {
          ++pos_;
          if (!eof() && peek() == ':') {
            ++pos_;
          } else if (!eof() && peek() == '<' && pos_ + 1 < p_.size() && p_[pos_ + 1] != '=' && p_[pos_ + 1] != '!') {
            while (!eof() && peek() != '>') ++pos_;
            ++pos_;
          } else {
            pos_ -= 2;
            fail("lookaround assertions are not supported");
          }
        }
        RNode inner = alternation();
        if (eof() || peek() != ')') fail("missing ')'");
        ++pos_;
        return inner;
      }
      case '[':
        ++pos_;
        return char_class();
      case '.': {
        ++pos_;
        CharSet nl;
        nl.add('\n', '\n');
        nl.add('\r', '\r');
        nl.add(0x2028, 0x2029);
        CharSet out = nl.complement();
        return chars(out);
      }
      case '\\':
        ++pos_;
        return chars(escape(false));
      case '^': {
        ++pos_;
        RNode n;
        n.kind = RNode::Kind::Start;
        return n;
      }
      case '$': {
        ++pos_;
        RNode n;
        n.kind = RNode::Kind::End;
        return n;
      }
      case '*':
      case '+':
      case '?':
        fail("nothing to repeat");
      default:
        return chars(CharSet::of(next_char()));
    }
  }

  std::string_view p_;
  size_t pos_ = 0;
};

RNode any_star() {
  RNode c;
  c.kind = RNode::Kind::Chars;
  c.set = CharSet::any();
  RNode r;
  r.kind = RNode::Kind::Repeat;
  r.min = 0;
  r.max = kUnbounded;
  r.kids.push_back(std::move(c));
  return r;
}

RNode seq2(RNode a, RNode b) {
  RNode s;
  s.kind = RNode::Kind::Seq;
  s.kids.push_back(std::move(a));
  s.kids.push_back(std::move(b));
  return s;
}

// Removes a leading ^ (at_start) or trailing $ from every way through `n`; branches that are
// not anchored get `.*` there instead, so the result always matches from the edge.
bool strip_anchor(RNode& n, bool at_start) {
  switch (n.kind) {
    case RNode::Kind::Start:
    case RNode::Kind::End:
      if ((n.kind == RNode::Kind::Start) != at_start) return false;
      n.kind = RNode::Kind::Empty;
      return true;
    case RNode::Kind::Seq: {
      if (n.kids.empty()) return false;
      RNode& edge = at_start ? n.kids.front() : n.kids.back();
      return strip_anchor(edge, at_start);
    }
    case RNode::Kind::Alt: {
      std::vector<char> anchored;
      for (RNode& k : n.kids) anchored.push_back(strip_anchor(k, at_start));
      bool any = std::find(anchored.begin(), anchored.end(), 1) != anchored.end();
      if (!any) return false;
      for (size_t i = 0; i < n.kids.size(); ++i) {
        if (anchored[i]) continue;
        n.kids[i] = at_start ? seq2(any_star(), std::move(n.kids[i])) : seq2(std::move(n.kids[i]), any_star());
      }
      return true;
    }
    default:
      return false;
  }
}

void bounds(const RNode& n, uint64_t& mn, uint64_t& mx) {
  constexpr uint64_t inf = kUnbounded;
  switch (n.kind) {
    case RNode::Kind::Chars:
      mn = mx = 1;
      return;
    case RNode::Kind::Seq: {
      mn = mx = 0;
      for (const RNode& k : n.kids) {
        uint64_t a, b;
        bounds(k, a, b);
        mn += a;
        mx = (mx == inf || b == inf) ? inf : std::min<uint64_t>(mx + b, inf);
      }
      return;
    }
    case RNode::Kind::Alt: {
      mn = inf;
      mx = 0;
      for (const RNode& k : n.kids) {
        uint64_t a, b;
        bounds(k, a, b);
        mn = std::min(mn, a);
        mx = std::max(mx, b);
      }
      return;
    }
    case RNode::Kind::Repeat: {
      uint64_t a, b;
      bounds(n.kids[0], a, b);
      mn = std::min<uint64_t>(a * n.min, inf);
      mx = (n.max == kUnbounded && b > 0) || b == inf ? inf : std::min<uint64_t>(b * n.max, inf);
      return;
    }
    default:
      mn = mx = 0;
  }
}

ExprId lower(ExprPool& pool, const RNode& n, CharEncoding enc, std::string_view pattern) {
  switch (n.kind) {
    case RNode::Kind::Chars:
      return char_expr(pool, n.set, enc);
    case RNode::Kind::Seq: {
      std::vector<ExprId> kids;
      for (const RNode& k : n.kids) kids.push_back(lower(pool, k, enc, pattern));
      return pool.seq(std::move(kids));
    }
    case RNode::Kind::Alt: {
      std::vector<ExprId> kids;
      for (const RNode& k : n.kids) kids.push_back(lower(pool, k, enc, pattern));
      return pool.alt(std::move(kids));
    }
    case RNode::Kind::Repeat:
      return pool.repeat(lower(pool, n.kids[0], enc, pattern), n.min, n.max);
    case RNode::Kind::Start:
    case RNode::Kind::End:
      throw CompileError("regex /" + std::string(pattern) + "/: ^ or $ inside the pattern is not supported");
    case RNode::Kind::Empty:
      return pool.empty();
  }
  return pool.empty();
}

}  // namespace

CompiledRegex compile_regex(ExprPool& pool, std::string_view pattern, CharEncoding enc, bool search) {
  RNode root = Parser(pattern).parse();
  if (search) {
    if (!strip_anchor(root, true)) root = seq2(any_star(), std::move(root));
    if (!strip_anchor(root, false)) root = seq2(std::move(root), any_star());
  }
  uint64_t mn = 0, mx = 0;
  bounds(root, mn, mx);
  CompiledRegex r;
  r.expr = lower(pool, root, enc, pattern);
  r.min_chars = static_cast<uint32_t>(std::min<uint64_t>(mn, kUnbounded));
  r.max_chars = static_cast<uint32_t>(std::min<uint64_t>(mx, kUnbounded));
  return r;
}

}  // namespace owl::grammar
