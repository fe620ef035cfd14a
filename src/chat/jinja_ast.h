// The syntax tree the Jinja parser builds and the evaluator walks. One struct
// per level (expressions, statements) with a kind tag keeps the tree small and
// the evaluator a pair of switches; each node remembers where it came from so
// errors can name the template line and column.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "chat/jinja_value.h"

namespace owl::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    Literal,  // literal
    Name,     // name
    GetAttr,  // args[0].name
    GetItem,  // args[0][args[1]]
    Slice,    // args[0][args[1]:args[2]:args[3]] (absent parts are null)
    Call,     // args[0](args[1..], kw...)
    Filter,   // args[0] | name(args[1..], kw...)
    Test,     // args[0] is [not] name(args[1..])
    Unary,    // name in {"not", "-", "+"} applied to args[0]
    Binary,   // args[0] name args[1]: and or + - * / // % ** ~ in "not in"
    Compare,  // args[0] ops[0] args[1] ops[1] args[2] ... (chained like Python)
    Cond,     // args[0] if args[1] else args[2] (args[2] may be null: undefined)
    List,     // [args...]; name == "tuple" for (a, b)
    Dict,     // {args[0]: args[1], args[2]: args[3], ...}
  };
  Kind kind;
  int line = 0, col = 0;
  Value literal;
  std::string name;
  std::vector<ExprPtr> args;
  std::vector<std::string> kw_names;  // keyword arguments of Call/Filter
  std::vector<ExprPtr> kw_values;
  std::vector<std::string> ops;  // Compare
  bool negated = false;          // Test: `is not`
  int height = 1;                // longest path to a leaf (bounded so evaluation cannot overflow the stack)

  Expr(Kind k, int l, int c) : kind(k), line(l), col(c) {}
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Stmt {
  enum class Kind {
    Text,         // text
    Output,       // {{ expr }}
    If,           // branches (cond, body)...; else_body
    For,          // for names in expr [if cond] body [else else_body]
    Set,          // set names = expr, or set names[0].attr = expr
    SetBlock,     // set names[0] [| filters] %} body {% endset
    Macro,        // macro name(names with defaults) body
    CallBlock,    // call[(names)] expr %} body {% endcall   (body becomes `caller`)
    FilterBlock,  // filter filters %} body {% endfilter
    Break,
    Continue,
    Do,  // do expr
  };
  Kind kind;
  int line = 0, col = 0;
  std::string text;                                // Text; Macro name; Set attribute (when assigning ns.attr)
  ExprPtr expr;                                    // Output, Set, For iterable, CallBlock call, Do
  ExprPtr cond;                                    // For filter
  std::vector<std::string> names;                  // For targets, Set targets, Macro/CallBlock parameters
  std::vector<ExprPtr> defaults;                   // Macro/CallBlock parameter defaults (null = required)
  std::vector<ExprPtr> filters;                    // SetBlock/FilterBlock: Filter nodes whose args[0] is null
  std::vector<std::pair<ExprPtr, Body>> branches;  // If
  Body body, else_body;

  Stmt(Kind k, int l, int c) : kind(k), line(l), col(c) {}
};

}  // namespace owl::jinja
