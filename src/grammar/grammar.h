// The grammar every constraint compiles to: rules of byte-level expressions (byte sets,
// sequences, alternatives, bounded or unbounded repetition, references to rules), built
// with ExprPool and lowered by compile() into a recursive transition network: each rule is
// an NFA over bytes whose nodes may call other rules. JSON Schema, GBNF and regular
// expressions all produce this one form; the Matcher runs it.
#pragma once
#include <array>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace owl::grammar {

// A grammar that cannot be built (bad schema, GBNF syntax error, unsupported keyword,
// unsatisfiable constraint); the message names the cause and, for text input, the position.
class CompileError : public Error {
 public:
  explicit CompileError(const std::string& what) : Error(what) {}
};

struct ByteSet {
  std::array<uint64_t, 4> w{};
  bool has(uint8_t b) const { return (w[b >> 6] >> (b & 63)) & 1; }
  void add(uint8_t b) { w[b >> 6] |= uint64_t{1} << (b & 63); }
  void add_range(uint8_t lo, uint8_t hi) {
    for (unsigned b = lo; b <= hi; ++b) add(static_cast<uint8_t>(b));
  }
  bool empty() const { return (w[0] | w[1] | w[2] | w[3]) == 0; }
  ByteSet operator|(const ByteSet& o) const {
    ByteSet r;
    for (int i = 0; i < 4; ++i) r.w[i] = w[i] | o.w[i];
    return r;
  }
  bool operator==(const ByteSet& o) const = default;
  static ByteSet of(uint8_t b) {
    ByteSet s;
    s.add(b);
    return s;
  }
  static ByteSet range(uint8_t lo, uint8_t hi) {
    ByteSet s;
    s.add_range(lo, hi);
    return s;
  }
};

using ExprId = uint32_t;
using RuleId = uint32_t;
inline constexpr uint32_t kUnbounded = std::numeric_limits<uint32_t>::max();

// Expressions over bytes. Nothing matches no input (an unsatisfiable branch); Empty the empty string.
class ExprPool {
 public:
  enum class Kind : uint8_t { Nothing, Empty, Bytes, Seq, Alt, Repeat, Ref };
  struct Expr {
    Kind kind = Kind::Empty;
    ByteSet bytes;
    std::vector<ExprId> kids;
    uint32_t min = 0, max = 0;  // Repeat bounds (max may be kUnbounded)
    RuleId rule = 0;            // Ref
  };

  ExprPool();
  ExprId nothing() const { return 0; }
  ExprId empty() const { return 1; }
  ExprId bytes(const ByteSet& s);
  ExprId byte(uint8_t b) { return bytes(ByteSet::of(b)); }
  ExprId literal(std::string_view s);
  ExprId seq(std::vector<ExprId> kids);
  ExprId alt(std::vector<ExprId> kids);
  ExprId repeat(ExprId e, uint32_t min, uint32_t max);
  ExprId opt(ExprId e) { return repeat(e, 0, 1); }
  ExprId star(ExprId e) { return repeat(e, 0, kUnbounded); }
  ExprId plus(ExprId e) { return repeat(e, 1, kUnbounded); }
  ExprId ref(RuleId r);

  RuleId add_rule(std::string name);  // body set later with set_rule (allows recursion)
  void set_rule(RuleId r, ExprId body);
  size_t n_rules() const { return rules_.size(); }
  const std::string& rule_name(RuleId r) const { return rules_[r].name; }
  ExprId rule_body(RuleId r) const { return rules_[r].body; }

  const Expr& get(ExprId e) const { return exprs_[e]; }
  bool is_nothing(ExprId e) const { return e == 0; }

 private:
  struct Rule {
    std::string name;
    ExprId body = kNoBody;
    static constexpr ExprId kNoBody = std::numeric_limits<ExprId>::max();
  };
  ExprId push(Expr e);
  std::vector<Expr> exprs_;
  std::vector<Rule> rules_;
};

// The lowered network. Node ids index `nodes`; a configuration of the matcher is a node
// plus a stack of return nodes.
struct Grammar {
  struct Edge {
    ByteSet bytes;
    uint32_t to;
  };
  struct Node {
    std::vector<Edge> edges;    // consume one byte
    std::vector<uint32_t> eps;  // move without input
    RuleId call = kNoCall;      // enter this rule, then continue at `ret`
    uint32_t ret = 0;
    bool final = false;  // end of its rule: return to the caller
    static constexpr RuleId kNoCall = std::numeric_limits<RuleId>::max();
  };
  // What a node reaches without consuming input, precomputed: consuming nodes, call
  // nodes, and whether the end of the rule is among them.
  struct Closure {
    std::vector<uint32_t> consuming;
    std::vector<uint32_t> calls;
    bool final = false;
  };
  // A bounded repetition lowered as `count` copies of one expression, copy k occupying nodes
  // [first + k * stride, first + (k + 1) * stride): every copy but the last is wired the same
  // way to the next, so two states that differ only by a shift along the copies behave alike
  // until the shifted one runs out of copies (the matcher uses this to share mask work
  // between the positions of a string with maxLength). Outermost repetitions only, sorted.
  struct Chain {
    uint32_t first, stride, count;
  };
  std::vector<Node> nodes;
  std::vector<Chain> chains;
  std::vector<Closure> closure;
  std::vector<uint32_t> rule_start;
  std::vector<std::string> rule_names;
  RuleId root = 0;
};

// Lowers the pool with `root` as the start rule. Rules without a body, left recursion and
// grammars past the size limit are CompileErrors.
std::shared_ptr<const Grammar> compile(const ExprPool& pool, RuleId root);

}  // namespace owl::grammar
