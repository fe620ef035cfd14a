#include "chat/jinja_eval.h"

#include "chat/jinja_parser.h"

namespace owl::jinja {

// ---- small helpers ----

const Value* CallArgs::get(size_t i, const char* name) const {
  if (i < pos.size()) return &pos[i];
  if (name)
    for (const auto& [k, v] : kw)
      if (k == name) return &v;
  return nullptr;
}

const Value& CallArgs::need(size_t i, const char* name, const char* fn) const {
  const Value* v = get(i, name);
  if (!v) throw EvalError(std::string(fn) + "() missing required argument '" + name + "'");
  return *v;
}

const Value* Scope::lookup(const std::string& name) const {
  for (const Scope* s = this; s; s = s->parent.get()) {
    auto it = s->vars.find(name);
    if (it != s->vars.end()) return &it->second;
  }
  return nullptr;
}

static std::shared_ptr<Scope> child_of(const std::shared_ptr<Scope>& parent) {
  auto s = std::make_shared<Scope>();
  s->parent = parent;
  return s;
}

// ---- TemplateError / Template ----

TemplateError::TemplateError(int line, int col, const std::string& message)
    : owl::Error("template error at line " + std::to_string(line) + ", column " + std::to_string(col) + ": " + message),
      line_(line),
      col_(col),
      message_(message) {}

struct Program {
  Body body;
};

Template::Template(std::string_view source, Options options)
    : program_(std::make_unique<Program>()), options_(options) {
  program_->body = parse_template(source, options_);
}
Template::~Template() = default;
Template::Template(Template&&) noexcept = default;
Template& Template::operator=(Template&&) noexcept = default;

std::string Template::render(const nlohmann::ordered_json& context) const {
  if (!context.is_object()) throw TemplateError(1, 1, "the render context must be a JSON object");
  Value ctx;
  try {
    ctx = Value::from_json(context);
  } catch (const EvalError& e) {
    throw TemplateError(1, 1, e.what());
  }
  return render(ctx);
}

std::string Template::render(const Value& context) const {
  Evaluator ev(options_);
  try {
    return ev.render(program_->body, context);
  } catch (const TemplateError&) {
    throw;
  } catch (const EvalError& e) {  // from outside any node (e.g. the context itself)
    throw TemplateError(1, 1, e.what());
  } catch (const std::bad_alloc&) {
    throw;
  } catch (const std::exception& e) {
    // A bug in owl, not in the template; reported, never allowed to take a server down.
    throw TemplateError(1, 1, std::string("internal error in the template renderer: ") + e.what());
  }
}

// ---- Evaluator ----

Evaluator::Evaluator(const Options& options) : options_(options) {}

void Evaluator::check_size(size_t bytes) const {
  if (bytes > options_.limits.max_output_bytes)
    throw EvalError("output limit exceeded (" + std::to_string(options_.limits.max_output_bytes) + " bytes)");
}

void Evaluator::count_iterations(uint64_t n) {
  iterations_ += n;
  if (iterations_ > options_.limits.max_loop_iterations)
    throw EvalError("loop iteration limit exceeded (" + std::to_string(options_.limits.max_loop_iterations) + ")");
}

void Evaluator::write(const std::string& text) {
  check_size(out_->size() + text.size());
  out_->append(text);
}

std::string Evaluator::render(const Body& body, const Value& context) {
  globals_ = std::make_shared<Scope>();
  install_globals(*globals_);
  auto root = child_of(globals_);
  if (context.is_dict())
    for (const auto& [k, v] : context.dict_ref().items) root->vars[k] = v;
  std::string out;
  out_ = &out;
  exec(body, root);
  return out;
}

Evaluator::Flow Evaluator::exec(const Body& body, const std::shared_ptr<Scope>& scope) {
  for (const auto& s : body) {
    Flow f = exec_stmt(*s, scope);
    if (f != Flow::Normal) return f;
  }
  return Flow::Normal;
}

std::string Evaluator::capture(const Body& body, const std::shared_ptr<Scope>& scope) {
  std::string buf;
  std::string* saved = out_;
  out_ = &buf;
  try {
    exec(body, scope);
  } catch (...) {
    out_ = saved;
    throw;
  }
  out_ = saved;
  return buf;
}

Evaluator::Flow Evaluator::exec_stmt(const Stmt& s, const std::shared_ptr<Scope>& scope) {
  try {
    switch (s.kind) {
      case Stmt::Kind::Text:
        write(s.text);
        return Flow::Normal;
      case Stmt::Kind::Output:
        write(eval(*s.expr, scope).to_str());
        return Flow::Normal;
      case Stmt::Kind::If:
        for (const auto& [cond, body] : s.branches)
          if (eval(*cond, scope).truthy()) return exec(body, scope);
        return exec(s.else_body, scope);
      case Stmt::Kind::For:
        exec_for(s, scope);
        return Flow::Normal;
      case Stmt::Kind::Set:
        exec_set(s, scope);
        return Flow::Normal;
      case Stmt::Kind::SetBlock: {
        Value v(capture(s.body, scope));
        for (const auto& f : s.filters) v = apply_filter(*f, std::move(v), scope);
        scope->vars[s.names[0]] = std::move(v);
        return Flow::Normal;
      }
      case Stmt::Kind::FilterBlock: {
        Value v(capture(s.body, scope));
        for (const auto& f : s.filters) v = apply_filter(*f, std::move(v), scope);
        write(v.to_str());
        return Flow::Normal;
      }
      case Stmt::Kind::Macro:
        scope->vars[s.text] = make_macro(s, scope);
        return Flow::Normal;
      case Stmt::Kind::CallBlock: {
        Value caller = make_macro(s, scope);
        const Expr& call = *s.expr;
        Value fn = eval(*call.args[0], scope);
        CallArgs args;
        eval_args(call, 1, scope, args);
        args.kw.emplace_back("caller", caller);
        write(this->call(fn, args).to_str());
        return Flow::Normal;
      }
      case Stmt::Kind::Break:
        return Flow::Break;
      case Stmt::Kind::Continue:
        return Flow::Continue;
      case Stmt::Kind::Do:
        eval(*s.expr, scope);
        return Flow::Normal;
    }
  } catch (const EvalError& e) {
    throw TemplateError(s.line, s.col, e.what());
  }
  return Flow::Normal;
}

// Binds one name to `v`, or several to the items of `v` (tuple unpacking).
static void bind_names(Scope& scope, const std::vector<std::string>& names, const Value& v, const char* what) {
  if (names.size() == 1) {
    scope.vars[names[0]] = v;
    return;
  }
  List items = iterate(v);
  if (items.size() != names.size())
    throw EvalError("cannot unpack " + std::to_string(items.size()) + " values into " + std::to_string(names.size()) +
                    " " + what);
  for (size_t i = 0; i < items.size(); ++i) scope.vars[names[i]] = items[i];
}

void Evaluator::exec_set(const Stmt& s, const std::shared_ptr<Scope>& scope) {
  Value v = eval(*s.expr, scope);
  if (!s.text.empty()) {  // set ns.attr = v
    const Value* target = scope->lookup(s.names[0]);
    if (!target || !target->is_dict() || !target->dict_ref().is_namespace)
      throw EvalError("cannot assign attribute '" + s.text + "' on '" + s.names[0] +
                      "': only namespace() objects allow it");
    v.check_nesting(target);
    target->dict_ref().set(s.text, std::move(v));
    return;
  }
  bind_names(*scope, s.names, v, "names");
}

void Evaluator::exec_for(const Stmt& s, const std::shared_ptr<Scope>& scope) {
  Value iterable = eval(*s.expr, scope);
  List items = iterate(iterable);
  auto loop_scope = child_of(scope);
  auto bind = [&](const Value& item) { bind_names(*loop_scope, s.names, item, "loop variables"); };
  if (s.cond) {  // `for x in xs if cond`: loop.length counts the kept items
    List kept;
    for (const auto& item : items) {
      count_iterations(1);
      bind(item);
      if (eval(*s.cond, loop_scope).truthy()) kept.push_back(item);
    }
    items = std::move(kept);
  }
  if (items.empty()) {
    exec(s.else_body, scope);
    return;
  }
  const int64_t n = static_cast<int64_t>(items.size());
  for (int64_t i = 0; i < n; ++i) {
    count_iterations(1);
    bind(items[static_cast<size_t>(i)]);
    Dict loop;
    loop.set("index", Value(i + 1));
    loop.set("index0", Value(i));
    loop.set("revindex", Value(n - i));
    loop.set("revindex0", Value(n - i - 1));
    loop.set("first", Value(i == 0));
    loop.set("last", Value(i == n - 1));
    loop.set("length", Value(n));
    loop.set("depth", Value(int64_t{1}));
    loop.set("depth0", Value(int64_t{0}));
    loop.set("previtem", i > 0 ? items[static_cast<size_t>(i - 1)] : Value::undefined("there is no previous item"));
    loop.set("nextitem", i + 1 < n ? items[static_cast<size_t>(i + 1)] : Value::undefined("there is no next item"));
    loop.set("cycle", Value::callable("loop.cycle", [i](CallArgs& a, Evaluator&) -> Value {
               if (a.pos.empty()) throw EvalError("loop.cycle() needs at least one argument");
               return a.pos[static_cast<size_t>(i) % a.pos.size()];
             }));
    loop_scope->vars["loop"] = Value::dict(std::move(loop));
    Flow f = exec(s.body, loop_scope);
    if (f == Flow::Break) break;
  }
}

Value Evaluator::make_macro(const Stmt& s, const std::shared_ptr<Scope>& scope) {
  const Stmt* def = &s;
  // Weak: the macro value usually lives in the scope that defines it.
  std::weak_ptr<Scope> defining = scope;
  std::string name = s.kind == Stmt::Kind::Macro ? s.text : "caller";
  return Value::callable(name, [def, defining, name](CallArgs& args, Evaluator& ev) -> Value {
    auto parent = defining.lock();
    if (!parent) throw EvalError("macro '" + name + "' called after the block that defined it ended");
    auto local = child_of(parent);
    size_t n = def->names.size();
    List varargs;
    for (size_t i = 0; i < args.pos.size(); ++i) {
      if (i < n)
        local->vars[def->names[i]] = args.pos[i];
      else
        varargs.push_back(args.pos[i]);
    }
    Dict kwargs;
    for (auto& [k, v] : args.kw) {
      bool is_param = false;
      for (size_t i = 0; i < n; ++i)
        if (def->names[i] == k) {
          if (i < args.pos.size()) throw EvalError("macro '" + name + "' got multiple values for argument '" + k + "'");
          is_param = true;
        }
      if (is_param || k == "caller")
        local->vars[k] = v;
      else
        kwargs.set(k, v);
    }
    for (size_t i = 0; i < n; ++i) {
      if (local->vars.count(def->names[i])) continue;
      local->vars[def->names[i]] =
          def->defaults[i] ? ev.eval(*def->defaults[i], local)
                           : Value::undefined("'" + def->names[i] + "' is undefined (missing macro argument)");
    }
    local->vars["varargs"] = Value::list(std::move(varargs));
    local->vars["kwargs"] = Value::dict(std::move(kwargs));
    return Value(ev.capture(def->body, local));
  });
}

Value Evaluator::call(const Value& fn, CallArgs& args) {
  if (fn.is_undefined()) throw EvalError(fn.undefined_hint() + "; it cannot be called");
  if (!fn.is_callable()) throw EvalError(std::string("'") + fn.type_name() + "' object is not callable");
  if (++call_depth_ > options_.limits.max_call_depth) {
    --call_depth_;
    throw EvalError("call depth limit exceeded (" + std::to_string(options_.limits.max_call_depth) + " nested calls)");
  }
  try {
    Value r = fn.callable_ref().fn(args, *this);
    --call_depth_;
    return r;
  } catch (...) {
    --call_depth_;
    throw;
  }
}

// ---- expressions ----

Value Evaluator::eval(const Expr& e, const std::shared_ptr<Scope>& scope) {
  try {
    return eval_inner(e, scope);
  } catch (const EvalError& err) {
    throw TemplateError(e.line, e.col, err.what());
  }
}

void Evaluator::eval_args(const Expr& e, size_t first, const std::shared_ptr<Scope>& scope, CallArgs& out) {
  for (size_t i = first; i < e.args.size(); ++i) out.pos.push_back(eval(*e.args[i], scope));
  for (size_t i = 0; i < e.kw_names.size(); ++i) out.kw.emplace_back(e.kw_names[i], eval(*e.kw_values[i], scope));
}

Value Evaluator::apply_filter(const Expr& f, Value input, const std::shared_ptr<Scope>& scope) {
  CallArgs args;
  eval_args(f, 1, scope, args);
  try {
    return call_filter(f.name, std::move(input), args, *this);
  } catch (const EvalError& err) {
    throw TemplateError(f.line, f.col, err.what());
  }
}

Value Evaluator::eval_inner(const Expr& e, const std::shared_ptr<Scope>& scope) {
  switch (e.kind) {
    case Expr::Kind::Literal:
      return e.literal;
    case Expr::Kind::Name: {
      const Value* v = scope->lookup(e.name);
      return v ? *v : Value::undefined("'" + e.name + "' is undefined");
    }
    case Expr::Kind::GetAttr:
      return get_attr(eval(*e.args[0], scope), e.name);
    case Expr::Kind::GetItem:
      return get_item(eval(*e.args[0], scope), eval(*e.args[1], scope));
    case Expr::Kind::Slice: {
      Value obj = eval(*e.args[0], scope);
      auto part = [&](size_t i) { return e.args[i] ? eval(*e.args[i], scope) : Value::none(); };
      Value a = part(1), b = part(2), c = part(3);
      return slice(obj, a, b, c);
    }
    case Expr::Kind::Call: {
      Value fn = eval(*e.args[0], scope);
      CallArgs args;
      eval_args(e, 1, scope, args);
      return call(fn, args);
    }
    case Expr::Kind::Filter:
      return apply_filter(e, eval(*e.args[0], scope), scope);
    case Expr::Kind::Test: {
      Value v = eval(*e.args[0], scope);
      CallArgs args;
      eval_args(e, 1, scope, args);
      bool r = call_test(e.name, v, args, *this);
      return Value(e.negated ? !r : r);
    }
    case Expr::Kind::Unary: {
      Value v = eval(*e.args[0], scope);
      if (e.name == "not") return Value(!v.truthy());
      if (v.is_undefined()) throw EvalError(v.undefined_hint());
      if (v.is_int() || v.is_bool()) {
        int64_t x = v.is_bool() ? (v.as_bool() ? 1 : 0) : v.as_int();
        if (e.name == "-" && x == INT64_MIN) throw EvalError("integer overflow");
        return Value(e.name == "-" ? -x : x);
      }
      if (v.is_float()) return Value(e.name == "-" ? -v.as_number() : v.as_number());
      throw EvalError(std::string("bad operand type for unary ") + e.name + ": '" + v.type_name() + "'");
    }
    case Expr::Kind::Binary:
      return eval_binary(e, scope);
    case Expr::Kind::Compare:
      return eval_compare(e, scope);
    case Expr::Kind::Cond:
      if (eval(*e.args[1], scope).truthy()) return eval(*e.args[0], scope);
      return e.args[2] ? eval(*e.args[2], scope)
                       : Value::undefined("the condition of an inline if was false and it has no else");
    case Expr::Kind::List: {
      List items;
      for (const auto& a : e.args) items.push_back(eval(*a, scope));
      Value l = e.name == "tuple" ? Value::tuple(std::move(items)) : Value::list(std::move(items));
      l.check_nesting(nullptr);
      return l;
    }
    case Expr::Kind::Dict: {
      Dict d;
      for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
        Value k = eval(*e.args[i], scope);
        if (!k.is_string())
          throw EvalError("dict keys must be strings in owl's Jinja, got '" + std::string(k.type_name()) + "'");
        d.set(k.str(), eval(*e.args[i + 1], scope));
      }
      Value dv = Value::dict(std::move(d));
      dv.check_nesting(nullptr);
      return dv;
    }
  }
  return Value();
}

Value Evaluator::eval_binary(const Expr& e, const std::shared_ptr<Scope>& scope) {
  if (e.name == "and") {
    Value a = eval(*e.args[0], scope);
    return a.truthy() ? eval(*e.args[1], scope) : a;
  }
  if (e.name == "or") {
    Value a = eval(*e.args[0], scope);
    return a.truthy() ? a : eval(*e.args[1], scope);
  }
  Value a = eval(*e.args[0], scope);
  Value b = eval(*e.args[1], scope);
  return binary_op(e.name, a, b, *this);
}

Value Evaluator::eval_compare(const Expr& e, const std::shared_ptr<Scope>& scope) {
  Value left = eval(*e.args[0], scope);
  for (size_t i = 0; i < e.ops.size(); ++i) {
    Value right = eval(*e.args[i + 1], scope);
    const std::string& op = e.ops[i];
    bool r;
    if (op == "==")
      r = left == right;
    else if (op == "!=")
      r = !(left == right);
    else if (op == "in")
      r = contains(right, left);
    else if (op == "not in")
      r = !contains(right, left);
    else {
      int c = compare(left, right, op.c_str());
      r = op == "<" ? c < 0 : op == ">" ? c > 0 : op == "<=" ? c <= 0 : c >= 0;
    }
    if (!r) return Value(false);
    left = std::move(right);
  }
  return Value(true);
}

}  // namespace owl::jinja
