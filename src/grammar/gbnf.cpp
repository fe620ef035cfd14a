#include "grammar/gbnf.h"

#include <cctype>
#include <map>
#include <string>

#include "grammar/chars.h"

namespace owl::grammar {

namespace {

class GbnfParser {
 public:
  explicit GbnfParser(std::string_view t) : t_(t) {}

  std::shared_ptr<const Grammar> run() {
    skip_space();
    while (!eof()) {
      size_t at = pos_;
      std::string name = read_name();
      if (name.empty()) fail("expected a rule name");
      skip_space();
      if (t_.substr(pos_, 3) != "::=") fail("expected '::=' after rule name '" + name + "'");
      pos_ += 3;
      RuleId r = rule(name);
      if (defined_.count(name)) {
        pos_ = at;
        fail("rule '" + name + "' defined twice");
      }
      defined_[name] = at;
      pool_.set_rule(r, alternatives(0));
      skip_space();
    }
    if (!defined_.count("root")) throw CompileError("GBNF: no 'root' rule");
    for (auto& [name, at] : used_) {
      if (!defined_.count(name)) {
        pos_ = at;
        fail("undefined rule '" + name + "'");
      }
    }
    try {
      return compile(pool_, rules_.at("root"));
    } catch (const CompileError& e) {
      throw CompileError(std::string("GBNF: ") + e.what());
    }
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < pos_ && i < t_.size(); ++i) {
      if (t_[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    throw CompileError("GBNF syntax error at line " + std::to_string(line) + ", column " + std::to_string(col) + ": " +
                       what);
  }
  bool eof() const { return pos_ >= t_.size(); }
  static bool name_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_'; }

  void skip_space() {
    while (!eof()) {
      char c = t_[pos_];
      if (c == '#') {
        while (!eof() && t_[pos_] != '\n') ++pos_;
      } else if (std::isspace(static_cast<unsigned char>(c))) {
        ++pos_;
      } else {
        break;
      }
    }
  }

  std::string read_name() {
    size_t s = pos_;
    while (!eof() && name_char(t_[pos_])) ++pos_;
    return std::string(t_.substr(s, pos_ - s));
  }

  RuleId rule(const std::string& name) {
    auto it = rules_.find(name);
    if (it != rules_.end()) return it->second;
    RuleId r = pool_.add_rule(name);
    rules_.emplace(name, r);
    return r;
  }

  // True when the next tokens are "name ::=", i.e. the next rule starts.
  bool at_rule_start() {
    size_t save = pos_;
    std::string n = read_name();
    skip_space();
    bool yes = !n.empty() && t_.substr(pos_, 3) == "::=";
    pos_ = save;
    return yes;
  }

  ExprId alternatives(int depth) {
    std::vector<ExprId> alts{sequence(depth)};
    while (!eof() && t_[pos_] == '|') {
      ++pos_;
      alts.push_back(sequence(depth));
    }
    return alts.size() == 1 ? alts[0] : pool_.alt(std::move(alts));
  }

  ExprId sequence(int depth) {
    std::vector<ExprId> items;
    while (true) {
      skip_space();
      if (eof()) break;
      char c = t_[pos_];
      if (c == '|' || c == ')') break;
      if (depth == 0 && name_char(c) && at_rule_start()) break;
      ExprId e = primary(depth);
      items.push_back(quantified(e));
    }
    return pool_.seq(std::move(items));
  }

  uint32_t read_uint() {
    skip_space();
    size_t s = pos_;
    uint32_t v = 0;
    while (!eof() && std::isdigit(static_cast<unsigned char>(t_[pos_]))) {
      v = v * 10 + static_cast<uint32_t>(t_[pos_] - '0');
      if (v > 100000) fail("repetition count too large");
      ++pos_;
    }
    if (pos_ == s) fail("expected a number");
    return v;
  }

  ExprId quantified(ExprId e) {
    while (!eof()) {
      char c = t_[pos_];
      if (c == '*') {
        e = pool_.star(e);
      } else if (c == '+') {
        e = pool_.plus(e);
      } else if (c == '?') {
        e = pool_.opt(e);
      } else if (c == '{') {
        ++pos_;
        uint32_t mn = read_uint(), mx = mn;
        skip_space();
        if (!eof() && t_[pos_] == ',') {
          ++pos_;
          skip_space();
          mx = (!eof() && t_[pos_] == '}') ? kUnbounded : read_uint();
        }
        skip_space();
        if (eof() || t_[pos_] != '}') fail("expected '}'");
        if (mx != kUnbounded && mx < mn) fail("repetition {m,n} with n < m");
        e = pool_.repeat(e, mn, mx);
      } else {
        break;
      }
      ++pos_;
    }
    return e;
  }

  uint32_t read_hex(size_t n) {
    uint32_t v = 0;
    for (size_t i = 0; i < n; ++i) {
      if (eof() || !std::isxdigit(static_cast<unsigned char>(t_[pos_]))) fail("bad hex escape");
      char c = t_[pos_++];
      v = v * 16 +
          static_cast<uint32_t>(std::isdigit(static_cast<unsigned char>(c)) ? c - '0' : std::tolower(c) - 'a' + 10);
    }
    return v;
  }

  // One character of a string or class, escapes decoded.
  uint32_t read_char() {
    if (eof()) fail("unexpected end of grammar");
    unsigned char c = static_cast<unsigned char>(t_[pos_]);
    if (c == '\\') {
      ++pos_;
      if (eof()) fail("unexpected end after '\\'");
      char e = t_[pos_++];
      switch (e) {
        case 'n':
          return '\n';
        case 'r':
          return '\r';
        case 't':
          return '\t';
        case 'x':
          return read_hex(2);
        case 'u':
          return read_hex(4);
        case 'U':
          return read_hex(8);
        case '\\':
        case '"':
        case '[':
        case ']':
        case '-':
        case '^':
          return static_cast<uint32_t>(e);
        default:
          --pos_;
          fail(std::string("unknown escape '\\") + e + "'");
      }
    }
    int extra = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : 0;
    uint32_t cp = extra == 0 ? c : c & (0x3F >> extra);
    ++pos_;
    for (int i = 0; i < extra && !eof(); ++i) cp = (cp << 6) | (static_cast<unsigned char>(t_[pos_++]) & 0x3F);
    return cp;
  }

  ExprId primary(int depth) {
    char c = t_[pos_];
    if (c == '"') {
      ++pos_;
      std::string bytes;
      while (true) {
        if (eof() || t_[pos_] == '\n') fail("unterminated string");
        if (t_[pos_] == '"') break;
        append_utf8(bytes, read_char());
      }
      ++pos_;
      return pool_.literal(bytes);
    }
    if (c == '[') {
      ++pos_;
      bool negate = !eof() && t_[pos_] == '^';
      if (negate) ++pos_;
      CharSet set;
      while (true) {
        if (eof() || t_[pos_] == '\n') fail("unterminated character class");
        if (t_[pos_] == ']') break;
        uint32_t lo = read_char(), hi = lo;
        if (pos_ + 1 < t_.size() && t_[pos_] == '-' && t_[pos_ + 1] != ']') {
          ++pos_;
          hi = read_char();
          if (hi < lo) fail("character range out of order");
        }
        set.add(lo, hi);
      }
      ++pos_;
      return char_expr(pool_, negate ? set.complement() : set, CharEncoding::kUtf8);
    }
    if (c == '(') {
      ++pos_;
      ExprId e = alternatives(depth + 1);
      skip_space();
      if (eof() || t_[pos_] != ')') fail("expected ')'");
      ++pos_;
      return e;
    }
    if (c == '.') {
      ++pos_;
      return char_expr(pool_, CharSet::any(), CharEncoding::kUtf8);
    }
    if (name_char(c)) {
      size_t at = pos_;
      std::string n = read_name();
      used_.emplace(n, at);
      return pool_.ref(rule(n));
    }
    fail(std::string("unexpected character '") + c + "'");
  }

  std::string_view t_;
  size_t pos_ = 0;
  ExprPool pool_;
  std::map<std::string, RuleId> rules_;
  std::map<std::string, size_t> defined_, used_;
};

}  // namespace

std::shared_ptr<const Grammar> compile_gbnf(std::string_view text) { return GbnfParser(text).run(); }

}  // namespace owl::grammar
