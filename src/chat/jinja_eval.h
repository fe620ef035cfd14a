// The Jinja evaluator: walks the statement tree with a chain of scopes and
// writes the output, enforcing Limits. Builtins (filters, tests, Python
// methods, globals) live in jinja_builtins.cpp and report failures by throwing
// EvalError, which the evaluator turns into a TemplateError at the node that
// was being evaluated.
#pragma once
#include <memory>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "chat/jinja.h"
#include "chat/jinja_ast.h"

namespace owl::jinja {

struct CallArgs {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;

  // Positional argument i, else keyword `name`, else nullptr.
  const Value* get(size_t i, const char* name) const;
  // Like get(), but an absent argument is an error naming the function.
  const Value& need(size_t i, const char* name, const char* fn) const;
};

struct Scope {
  std::unordered_map<std::string, Value> vars;
  std::shared_ptr<Scope> parent;
  const Value* lookup(const std::string& name) const;
};

class Evaluator {
 public:
  explicit Evaluator(const Options& options);

  std::string render(const Body& body, const Value& context);

  // Used by builtins.
  const Options& options() const { return options_; }
  void check_size(size_t bytes) const;          // a string/list built on the way may not exceed the output limit
  void count_iterations(uint64_t n);            // adds to the loop budget
  Value call(const Value& fn, CallArgs& args);  // invokes a callable (macro or builtin)

 private:
  enum class Flow { Normal, Break, Continue };

  const Options& options_;
  std::string* out_ = nullptr;
  std::shared_ptr<Scope> globals_;
  uint64_t iterations_ = 0;
  int call_depth_ = 0;

  Flow exec(const Body& body, const std::shared_ptr<Scope>& scope);
  Flow exec_stmt(const Stmt& s, const std::shared_ptr<Scope>& scope);
  void exec_for(const Stmt& s, const std::shared_ptr<Scope>& scope);
  void exec_set(const Stmt& s, const std::shared_ptr<Scope>& scope);
  std::string capture(const Body& body, const std::shared_ptr<Scope>& scope);
  Value make_macro(const Stmt& s, const std::shared_ptr<Scope>& scope);
  void write(const std::string& text);

  Value eval(const Expr& e, const std::shared_ptr<Scope>& scope);
  Value eval_inner(const Expr& e, const std::shared_ptr<Scope>& scope);
  Value eval_binary(const Expr& e, const std::shared_ptr<Scope>& scope);
  Value eval_compare(const Expr& e, const std::shared_ptr<Scope>& scope);
  void eval_args(const Expr& e, size_t first, const std::shared_ptr<Scope>& scope, CallArgs& out);
  Value apply_filter(const Expr& f, Value input, const std::shared_ptr<Scope>& scope);
};

// ---- builtins (jinja_builtins.cpp) ----

// Python semantics shared by the evaluator and the builtins.
Value get_attr(const Value& obj, const std::string& name);  // obj.name: method first, then key (as Jinja)
Value get_item(const Value& obj, const Value& key);         // obj[key]: key first, then attribute
Value slice(const Value& obj, const Value& start, const Value& stop, const Value& step);
List iterate(const Value& v);  // the items a for loop sees (dict -> keys, str -> characters)
bool contains(const Value& container, const Value& item);     // Python `in`
int compare(const Value& a, const Value& b, const char* op);  // <0, 0, >0; EvalError when not orderable
Value binary_op(const std::string& op, const Value& a, const Value& b, Evaluator& ev);
size_t py_len(const Value& v);  // len(); EvalError when the value has no length

Value call_filter(const std::string& name, Value input, CallArgs& args, Evaluator& ev);
bool call_test(const std::string& name, const Value& input, CallArgs& args, Evaluator& ev);
void install_globals(Scope& globals);  // range, namespace, dict, raise_exception, strftime_now

}  // namespace owl::jinja
