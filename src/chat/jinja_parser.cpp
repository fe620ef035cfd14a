#include "chat/jinja_parser.h"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <initializer_list>
#include <set>

#include "chat/jinja.h"
#include "chat/jinja_lexer.h"

namespace owl::jinja {
namespace {

using TT = Token::Type;

class Parser {
 public:
  Parser(std::vector<Token> toks, const Options& o) : t_(std::move(toks)), o_(o) {}

  Body parse_all() {
    std::string end;
    Body b = parse_body({}, end);
    return b;
  }

 private:
  std::vector<Token> t_;
  const Options& o_;
  size_t p_ = 0;
  int depth_ = 0;

  struct DepthGuard {
    Parser& p;
    explicit DepthGuard(Parser& pp) : p(pp) {
      if (++p.depth_ > p.o_.limits.max_nesting)
        p.fail("template nested too deeply (limit " + std::to_string(p.o_.limits.max_nesting) + ")");
    }
    ~DepthGuard() { --p.depth_; }
  };

  const Token& cur() const { return t_[p_]; }
  const Token& peek(size_t k = 1) const { return t_[std::min(p_ + k, t_.size() - 1)]; }
  void next() {
    if (p_ + 1 < t_.size()) ++p_;
  }

  [[noreturn]] void fail(const std::string& msg) const { throw TemplateError(cur().line, cur().col, msg); }

  static std::string describe(const Token& t) {
    switch (t.type) {
      case TT::Text:
        return "text";
      case TT::VarBegin:
        return "'{{'";
      case TT::VarEnd:
        return "'}}'";
      case TT::BlockBegin:
        return "'{%'";
      case TT::BlockEnd:
        return "'%}'";
      case TT::Name:
        return "'" + t.text + "'";
      case TT::String:
        return "string literal";
      case TT::Int:
      case TT::Float:
        return "number " + t.text;
      case TT::Op:
        return "'" + t.text + "'";
      case TT::End:
        return "end of template";
    }
    return "?";
  }

  bool is_op(const char* op) const { return cur().type == TT::Op && cur().text == op; }
  bool is_name(const char* n) const { return cur().type == TT::Name && cur().text == n; }
  bool accept_op(const char* op) {
    if (!is_op(op)) return false;
    next();
    return true;
  }
  bool accept_name(const char* n) {
    if (!is_name(n)) return false;
    next();
    return true;
  }
  void expect_op(const char* op) {
    if (!accept_op(op)) fail(std::string("expected '") + op + "', got " + describe(cur()));
  }
  void expect_block_end() {
    if (cur().type != TT::BlockEnd) fail("expected end of block tag '%}', got " + describe(cur()));
    next();
  }
  std::string expect_identifier() {
    if (cur().type != TT::Name) fail("expected a name, got " + describe(cur()));
    std::string n = cur().text;
    next();
    return n;
  }

  ExprPtr make(Expr::Kind k, const Token& at) { return std::make_unique<Expr>(k, at.line, at.col); }

  // Records a finished node's height; left-deep chains (a + b + c ..., x.a.b ..., x|f|g ...) are
  // built iteratively, so this, not the recursion guard, keeps them shallow enough to evaluate.
  ExprPtr seal(ExprPtr e) {
    int h = 0;
    for (const auto& c : e->args)
      if (c) h = std::max(h, c->height);
    for (const auto& c : e->kw_values)
      if (c) h = std::max(h, c->height);
    e->height = h + 1;
    if (e->height > o_.limits.max_nesting)
      throw TemplateError(e->line, e->col,
                          "expression nested too deeply (limit " + std::to_string(o_.limits.max_nesting) + ")");
    return e;
  }
  StmtPtr make_stmt(Stmt::Kind k, const Token& at) { return std::make_unique<Stmt>(k, at.line, at.col); }

  // ---- statements ----

  // Parses until a block tag whose keyword is in `ends` (left unconsumed after the '{%'); `end` gets the keyword.
  Body parse_body(const std::set<std::string>& ends, std::string& end) {
    DepthGuard g(*this);
    Body body;
    while (true) {
      const Token& tk = cur();
      if (tk.type == TT::End) {
        if (!ends.empty()) {
          std::string closer = *ends.begin();
          for (const auto& e : ends)
            if (e.rfind("end", 0) == 0) closer = e;
          fail("unexpected end of template; missing {% " + closer + " %}");
        }
        return body;
      }
      if (tk.type == TT::Text) {
        auto s = make_stmt(Stmt::Kind::Text, tk);
        s->text = tk.text;
        body.push_back(std::move(s));
        next();
      } else if (tk.type == TT::VarBegin) {
        next();
        auto s = make_stmt(Stmt::Kind::Output, tk);
        s->expr = parse_expression();
        if (cur().type != TT::VarEnd) fail("expected end of expression '}}', got " + describe(cur()));
        next();
        body.push_back(std::move(s));
      } else if (tk.type == TT::BlockBegin) {
        const Token& kw = peek();
        if (kw.type != TT::Name) {
          next();
          fail("expected a statement keyword, got " + describe(cur()));
        }
        if (ends.count(kw.text)) {
          next();
          end = kw.text;
          next();
          return body;
        }
        next();
        body.push_back(parse_statement());
      } else {
        fail("unexpected " + describe(tk));
      }
    }
  }

  StmtPtr parse_statement() {
    const Token kw = cur();
    const std::string& k = kw.text;
    next();
    if (k == "if") return parse_if(kw);
    if (k == "for") return parse_for(kw);
    if (k == "set") return parse_set(kw);
    if (k == "macro") return parse_macro(kw);
    if (k == "call") return parse_call_block(kw);
    if (k == "filter") return parse_filter_block(kw);
    if (k == "break" || k == "continue") {
      expect_block_end();
      return make_stmt(k == "break" ? Stmt::Kind::Break : Stmt::Kind::Continue, kw);
    }
    if (k == "do") {
      auto s = make_stmt(Stmt::Kind::Do, kw);
      s->expr = parse_expression();
      expect_block_end();
      return s;
    }
    if (k == "generation") {  // transformers' assistant-mask marker: renders its body unchanged
      auto s = make_stmt(Stmt::Kind::If, kw);
      auto yes = make(Expr::Kind::Literal, kw);
      yes->literal = Value(true);
      s->branches.emplace_back(std::move(yes), block_until("endgeneration"));
      return s;
    }
    if (k == "include" || k == "import" || k == "from" || k == "extends" || k == "block")
      throw TemplateError(kw.line, kw.col, "'" + k + "' is not supported: chat templates cannot load other templates");
    throw TemplateError(kw.line, kw.col, "unknown statement '" + k + "'");
  }

  // The rest of a block tag, its body up to {% end_tag %}, and the end tag.
  Body block_until(const char* end_tag) {
    expect_block_end();
    std::string end;
    Body b = parse_body({end_tag}, end);
    expect_block_end();
    return b;
  }

  StmtPtr parse_if(const Token& kw) {
    auto s = make_stmt(Stmt::Kind::If, kw);
    ExprPtr cond = parse_expression();
    expect_block_end();
    while (true) {
      std::string end;
      Body b = parse_body({"elif", "else", "endif"}, end);
      s->branches.emplace_back(std::move(cond), std::move(b));
      if (end == "elif") {
        cond = parse_expression();
        expect_block_end();
        continue;
      }
      if (end == "else") {
        expect_block_end();
        std::string end2;
        s->else_body = parse_body({"endif"}, end2);
      }
      expect_block_end();
      return s;
    }
  }

  StmtPtr parse_for(const Token& kw) {
    auto s = make_stmt(Stmt::Kind::For, kw);
    s->names.push_back(expect_identifier());
    while (accept_op(",")) s->names.push_back(expect_identifier());
    if (!accept_name("in")) fail("expected 'in' in for loop, got " + describe(cur()));
    s->expr = parse_ternary(false);  // `if` after the iterable is the loop filter
    if (accept_name("if")) s->cond = parse_ternary(true);
    if (accept_name("recursive")) fail("recursive for loops are not supported");
    expect_block_end();
    std::string end;
    s->body = parse_body({"else", "endfor"}, end);
    if (end == "else") {
      expect_block_end();
      s->else_body = parse_body({"endfor"}, end);
    }
    expect_block_end();
    return s;
  }

  StmtPtr parse_set(const Token& kw) {
    std::string first = expect_identifier();
    if (accept_op(".")) {
      auto s = make_stmt(Stmt::Kind::Set, kw);
      s->names.push_back(first);
      s->text = expect_identifier();
      expect_op("=");
      s->expr = parse_tuple_or_expression();
      expect_block_end();
      return s;
    }
    std::vector<std::string> names{first};
    while (accept_op(",")) names.push_back(expect_identifier());
    if (accept_op("=")) {
      auto s = make_stmt(Stmt::Kind::Set, kw);
      s->names = std::move(names);
      s->expr = parse_tuple_or_expression();
      expect_block_end();
      return s;
    }
    if (names.size() != 1) fail("expected '=' after the names of a set statement");
    auto s = make_stmt(Stmt::Kind::SetBlock, kw);
    s->names = std::move(names);
    while (accept_op("|")) s->filters.push_back(parse_filter_call(nullptr));
    s->body = block_until("endset");
    return s;
  }

  void parse_params(Stmt& s) {
    expect_op("(");
    while (!is_op(")")) {
      s.names.push_back(expect_identifier());
      s.defaults.push_back(accept_op("=") ? parse_expression() : nullptr);
      if (!accept_op(",")) break;
    }
    expect_op(")");
  }

  StmtPtr parse_macro(const Token& kw) {
    auto s = make_stmt(Stmt::Kind::Macro, kw);
    s->text = expect_identifier();
    parse_params(*s);
    expect_block_end();
    std::string end;
    s->body = parse_body({"endmacro"}, end);
    if (cur().type == TT::Name) next();  // {% endmacro name %}
    expect_block_end();
    return s;
  }

  StmtPtr parse_call_block(const Token& kw) {
    auto s = make_stmt(Stmt::Kind::CallBlock, kw);
    if (is_op("(")) parse_params(*s);
    s->expr = parse_expression();
    if (s->expr->kind != Expr::Kind::Call) fail("{% call %} needs a macro call");
    s->body = block_until("endcall");
    return s;
  }

  StmtPtr parse_filter_block(const Token& kw) {
    auto s = make_stmt(Stmt::Kind::FilterBlock, kw);
    s->filters.push_back(parse_filter_call(nullptr));
    while (accept_op("|")) s->filters.push_back(parse_filter_call(nullptr));
    s->body = block_until("endfilter");
    return s;
  }

  // ---- expressions ----

  ExprPtr parse_expression() { return parse_ternary(true); }

  // `a, b` without brackets (set x = 1, 2) is a tuple.
  ExprPtr parse_tuple_or_expression() {
    const Token at = cur();
    ExprPtr e = parse_expression();
    if (!is_op(",")) return e;
    auto t = make(Expr::Kind::List, at);
    t->name = "tuple";
    t->args.push_back(std::move(e));
    while (accept_op(",")) {
      if (cur().type == TT::BlockEnd) break;
      t->args.push_back(parse_expression());
    }
    return t;
  }

  ExprPtr parse_ternary(bool allow_cond) {
    DepthGuard g(*this);
    const Token at = cur();
    ExprPtr e = parse_or();
    while (allow_cond && is_name("if")) {
      next();
      auto c = make(Expr::Kind::Cond, at);
      c->args.push_back(std::move(e));
      c->args.push_back(parse_or());
      c->args.push_back(accept_name("else") ? parse_ternary(true) : nullptr);
      e = seal(std::move(c));
    }
    return e;
  }

  ExprPtr binary(const Token& at, const std::string& op, ExprPtr l, ExprPtr r) {
    auto b = make(Expr::Kind::Binary, at);
    b->name = op;
    b->args.push_back(std::move(l));
    b->args.push_back(std::move(r));
    return seal(std::move(b));
  }

  // One level of left-associative binary operators: operand (op operand)*. `words`: the
  // operators are names (and, or), not symbols.
  template <typename F>
  ExprPtr left_assoc(F operand, std::initializer_list<const char*> ops, bool words = false) {
    ExprPtr e = operand();
    for (;;) {
      const char* op = nullptr;
      for (const char* o : ops)
        if (words ? is_name(o) : is_op(o)) op = o;
      if (!op) return e;
      const Token at = cur();
      next();
      e = binary(at, op, std::move(e), operand());
    }
  }

  ExprPtr parse_or() {
    return left_assoc([this] { return parse_and(); }, {"or"}, true);
  }
  ExprPtr parse_and() {
    return left_assoc([this] { return parse_not(); }, {"and"}, true);
  }
  ExprPtr parse_math1() {
    return left_assoc([this] { return parse_concat(); }, {"+", "-"});
  }
  ExprPtr parse_concat() {
    return left_assoc([this] { return parse_math2(); }, {"~"});
  }
  ExprPtr parse_math2() {
    return left_assoc([this] { return parse_pow(); }, {"*", "/", "//", "%"});
  }
  ExprPtr parse_pow() {
    return left_assoc([this] { return parse_unary(true); }, {"**"});
  }

  ExprPtr parse_not() {
    if (is_name("not")) {
      DepthGuard g(*this);
      const Token at = cur();
      next();
      auto u = make(Expr::Kind::Unary, at);
      u->name = "not";
      u->args.push_back(parse_not());
      return seal(std::move(u));
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    const Token at = cur();
    ExprPtr first = parse_math1();
    ExprPtr cmp;
    while (true) {
      std::string op;
      if (cur().type == TT::Op && (cur().text == "==" || cur().text == "!=" || cur().text == "<" || cur().text == ">" ||
                                   cur().text == "<=" || cur().text == ">=")) {
        op = cur().text;
        next();
      } else if (is_name("in")) {
        op = "in";
        next();
      } else if (is_name("not") && peek().type == TT::Name && peek().text == "in") {
        op = "not in";
        next();
        next();
      } else {
        break;
      }
      if (!cmp) {
        cmp = make(Expr::Kind::Compare, at);
        cmp->args.push_back(std::move(first));
      }
      cmp->ops.push_back(op);
      cmp->args.push_back(parse_math1());
    }
    return cmp ? seal(std::move(cmp)) : std::move(first);
  }

  ExprPtr parse_unary(bool with_filter) {
    DepthGuard g(*this);
    const Token at = cur();
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      next();
      e = make(Expr::Kind::Unary, at);
      e->name = at.text;
      e->args.push_back(parse_unary(false));
      e = seal(std::move(e));
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    if (with_filter) e = parse_filter_expr(std::move(e));
    return e;
  }

  ExprPtr parse_primary() {
    const Token at = cur();
    switch (at.type) {
      case TT::Name: {
        next();
        auto lit = [&](Value v) {
          auto e = make(Expr::Kind::Literal, at);
          e->literal = std::move(v);
          return e;
        };
        if (at.text == "true" || at.text == "True") return lit(Value(true));
        if (at.text == "false" || at.text == "False") return lit(Value(false));
        if (at.text == "none" || at.text == "None") return lit(Value::none());
        auto e = make(Expr::Kind::Name, at);
        e->name = at.text;
        return e;
      }
      case TT::String: {
        std::string s;
        while (cur().type == TT::String) {  // adjacent literals concatenate
          s += cur().text;
          next();
        }
        auto e = make(Expr::Kind::Literal, at);
        e->literal = Value(std::move(s));
        return e;
      }
      case TT::Int: {
        next();
        int64_t v = 0;
        auto r = std::from_chars(at.text.data(), at.text.data() + at.text.size(), v);
        if (r.ec != std::errc()) throw TemplateError(at.line, at.col, "integer literal " + at.text + " is too large");
        auto e = make(Expr::Kind::Literal, at);
        e->literal = Value(v);
        return e;
      }
      case TT::Float: {
        next();
        auto e = make(Expr::Kind::Literal, at);
        e->literal = Value(std::strtod(at.text.c_str(), nullptr));
        return e;
      }
      case TT::Op:
        if (at.text == "(") {
          next();
          if (accept_op(")")) {
            auto empty = make(Expr::Kind::List, at);
            empty->name = "tuple";
            return empty;
          }
          ExprPtr e = parse_expression();
          if (is_op(",")) {
            auto t = make(Expr::Kind::List, at);
            t->name = "tuple";
            t->args.push_back(std::move(e));
            while (accept_op(",")) {
              if (is_op(")")) break;
              t->args.push_back(parse_expression());
            }
            e = std::move(t);
          }
          expect_op(")");
          return seal(std::move(e));
        }
        if (at.text == "[") {
          next();
          auto l = make(Expr::Kind::List, at);
          while (!is_op("]")) {
            l->args.push_back(parse_expression());
            if (!accept_op(",")) break;
          }
          expect_op("]");
          return seal(std::move(l));
        }
        if (at.text == "{") {
          next();
          auto d = make(Expr::Kind::Dict, at);
          while (!is_op("}")) {
            d->args.push_back(parse_expression());
            expect_op(":");
            d->args.push_back(parse_expression());
            if (!accept_op(",")) break;
          }
          expect_op("}");
          return seal(std::move(d));
        }
        break;
      default:
        break;
    }
    fail("unexpected " + describe(at));
  }

  void parse_call_args(Expr& call) {
    expect_op("(");
    while (!is_op(")")) {
      if (cur().type == TT::Name && peek().type == TT::Op && peek().text == "=") {
        call.kw_names.push_back(cur().text);
        next();
        next();
        call.kw_values.push_back(parse_expression());
      } else {
        if (!call.kw_names.empty()) fail("positional argument after keyword argument");
        call.args.push_back(parse_expression());
      }
      if (!accept_op(",")) break;
    }
    expect_op(")");
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      const Token at = cur();
      if (is_op(".")) {
        next();
        auto g = make(Expr::Kind::GetAttr, at);
        if (cur().type == TT::Int) {  // x.0 is x[0]
          g->kind = Expr::Kind::GetItem;
          g->args.push_back(std::move(e));
          auto idx = make(Expr::Kind::Literal, cur());
          idx->literal = Value(static_cast<int64_t>(std::atoll(cur().text.c_str())));
          g->args.push_back(std::move(idx));
          next();
        } else {
          g->name = expect_identifier();
          g->args.push_back(std::move(e));
        }
        e = seal(std::move(g));
      } else if (is_op("[")) {
        next();
        e = parse_subscript(at, std::move(e));
      } else if (is_op("(")) {
        auto c = make(Expr::Kind::Call, at);
        c->line = e->line;  // errors from a call point at what is called
        c->col = e->col;
        c->args.push_back(std::move(e));
        parse_call_args(*c);
        e = seal(std::move(c));
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_subscript(const Token& at, ExprPtr obj) {
    ExprPtr parts[3];
    bool is_slice = false;
    if (!is_op(":")) parts[0] = parse_expression();
    if (accept_op(":")) {
      is_slice = true;
      if (!is_op(":") && !is_op("]")) parts[1] = parse_expression();
      if (accept_op(":"))
        if (!is_op("]")) parts[2] = parse_expression();
    }
    expect_op("]");
    auto e = make(is_slice ? Expr::Kind::Slice : Expr::Kind::GetItem, at);
    e->args.push_back(std::move(obj));
    if (is_slice) {
      for (auto& p : parts) e->args.push_back(std::move(p));
    } else {
      e->args.push_back(std::move(parts[0]));
    }
    return seal(std::move(e));
  }

  // `name` or `name(args)` after '|'; the input goes to args[0].
  ExprPtr parse_filter_call(ExprPtr input) {
    const Token at = cur();
    auto f = make(Expr::Kind::Filter, at);
    f->name = expect_identifier();
    while (accept_op(".")) f->name += "." + expect_identifier();
    f->args.push_back(std::move(input));
    if (is_op("(")) parse_call_args(*f);
    return seal(std::move(f));
  }

  ExprPtr parse_filter_expr(ExprPtr e) {
    while (true) {
      if (is_op("|")) {
        next();
        e = parse_filter_call(std::move(e));
        e = parse_postfix(std::move(e));
      } else if (is_name("is")) {
        const Token at = cur();
        next();
        auto t = make(Expr::Kind::Test, at);
        t->negated = accept_name("not");
        t->name = expect_identifier();
        t->args.push_back(std::move(e));
        if (is_op("(")) {
          parse_call_args(*t);
        } else if ((cur().type == TT::Name || cur().type == TT::String || cur().type == TT::Int ||
                    cur().type == TT::Float || is_op("[") || is_op("{")) &&
                   !is_name("else") && !is_name("or") && !is_name("and") && !is_name("is") && !is_name("if") &&
                   !is_name("in") && !is_name("not")) {
          t->args.push_back(parse_postfix(parse_primary()));
        }
        e = seal(std::move(t));
      } else {
        return e;
      }
    }
  }
};

}  // namespace

Body parse_template(std::string_view source, const Options& options) {
  return Parser(tokenize(source, options), options).parse_all();
}

}  // namespace owl::jinja
