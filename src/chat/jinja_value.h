// The value type of owl's Jinja renderer. It follows Python's data model as
// Jinja2 sees it: undefined vs none, int vs float, lists and dicts shared by
// reference (so `ns.ids.append(x)` is visible through every alias), dicts that
// keep insertion order (tool schemas must print in file order), and callables
// (macros, globals such as range/namespace) as first-class values.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace owl::jinja {

// A failure in evaluation that has no template location yet; the evaluator
// rethrows it as a TemplateError naming the line and column being evaluated.
class EvalError : public std::runtime_error {
 public:
  explicit EvalError(const std::string& m) : std::runtime_error(m) {}
};

class Value;
struct CallArgs;
class Evaluator;

using List = std::vector<Value>;

// An insertion-ordered str -> Value map (Python dict with string keys).
struct Dict {
  std::vector<std::pair<std::string, Value>> items;
  bool is_namespace = false;  // namespace(): the only object whose attributes `set` may assign

  const Value* find(const std::string& key) const;
  Value* find(const std::string& key);
  void set(const std::string& key, Value v);  // replaces in place or appends
};

// A builtin function or a macro. `fn` receives the evaluated arguments.
struct Callable {
  std::string name;
  std::function<Value(CallArgs&, Evaluator&)> fn;
  bool bound_method = false;  // holds its object: never stored in a container (no cycles)
};

class Value {
 public:
  enum class Type { Undefined, None, Bool, Int, Float, String, List, Dict, Callable };

  Value() = default;  // undefined
  // An undefined that remembers why it is undefined, for the error message when it is used.
  static Value undefined(std::string why);
  const std::string& undefined_hint() const;  // "'x' is undefined" (or "")
  static Value none();
  Value(bool b);
  Value(int v) : Value(int64_t{v}) {}
  Value(int64_t v);
  Value(double v);
  Value(std::string s);
  Value(const char* s) : Value(std::string(s)) {}
  static Value list(List items = {});
  static Value tuple(List items);  // a list that prints as Python's (a, b)
  static Value dict(Dict d = {});
  static Value callable(std::string name, std::function<Value(CallArgs&, Evaluator&)> fn);
  // From JSON (integers stay ints, floats stay floats, object key order kept).
  static Value from_json(const nlohmann::ordered_json& j);

  Type type() const { return type_; }
  bool is_undefined() const { return type_ == Type::Undefined; }
  bool is_none() const { return type_ == Type::None; }
  bool is_bool() const { return type_ == Type::Bool; }
  bool is_int() const { return type_ == Type::Int; }
  bool is_float() const { return type_ == Type::Float; }
  bool is_number() const { return type_ == Type::Int || type_ == Type::Float; }  // bools excluded
  bool is_string() const { return type_ == Type::String; }
  bool is_list() const { return type_ == Type::List; }
  bool is_dict() const { return type_ == Type::Dict; }
  bool is_callable() const { return type_ == Type::Callable; }

  bool as_bool() const { return b_; }
  int64_t as_int() const { return i_; }
  double as_number() const;  // int, float or bool as double
  const std::string& str() const { return *s_; }
  List& list_ref() const { return *list_; }
  Dict& dict_ref() const { return *dict_; }
  const Callable& callable_ref() const { return *fn_; }
  void mark_bound_method() { fn_->bound_method = true; }
  bool same_object(const Value& o) const;  // Python `is` for containers
  // Throws EvalError when this value, about to be stored inside `container` (null for a
  // new literal), is or holds `container` (a reference cycle) or nests deeper than
  // kMaxValueDepth. Keeping values acyclic and shallow keeps printing, comparing and
  // freeing them safe from unbounded recursion.
  void check_nesting(const Value* container) const;
  static constexpr int kMaxValueDepth = 256;

  bool truthy() const;
  // Python str(x): None -> "None", True -> "True", 1.0 -> "1.0", lists/dicts as repr; undefined -> "".
  std::string to_str() const;
  std::string repr() const;
  const char* type_name() const;  // Python's name: 'str', 'dict', 'NoneType' ...

  bool operator==(const Value& o) const;  // Python ==, by value, 1 == 1.0 == True

 private:
  Type type_ = Type::Undefined;
  bool b_ = false;
  int64_t i_ = 0;
  double f_ = 0;
  std::shared_ptr<const std::string> s_;
  std::shared_ptr<List> list_;
  bool tuple_ = false;
  std::shared_ptr<Dict> dict_;
  std::shared_ptr<Callable> fn_;
};

// Python float repr: shortest round-trip digits, "1.0", "1e-05", "1e+16", "inf", "nan".
std::string format_float(double v);

// How json.dumps formats: indent < 0 means None (one line); empty separators mean
// Python's defaults (", " or "," with indent, and ": ").
struct JsonFormat {
  int indent = -1;
  bool ensure_ascii = false;
  bool sort_keys = false;
  std::string item_separator, key_separator;
};

// json.dumps(v, ...) with keys in insertion order (unless sort_keys). Throws EvalError
// for values JSON cannot hold (undefined, callables, namespaces).
std::string to_json(const Value& v, const JsonFormat& format = {});

}  // namespace owl::jinja
