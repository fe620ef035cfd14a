#include "chat/jinja_value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace owl::jinja {

const Value* Dict::find(const std::string& key) const {
  for (const auto& kv : items)
    if (kv.first == key) return &kv.second;
  return nullptr;
}

Value* Dict::find(const std::string& key) {
  for (auto& kv : items)
    if (kv.first == key) return &kv.second;
  return nullptr;
}

void Dict::set(const std::string& key, Value v) {
  if (Value* p = find(key)) {
    *p = std::move(v);
    return;
  }
  items.emplace_back(key, std::move(v));
}

Value Value::none() {
  Value v;
  v.type_ = Type::None;
  return v;
}

Value Value::undefined(std::string why) {
  Value v;
  v.s_ = std::make_shared<const std::string>(std::move(why));
  return v;
}

const std::string& Value::undefined_hint() const {
  static const std::string empty = "value is undefined";
  return s_ ? *s_ : empty;
}

Value::Value(bool b) : type_(Type::Bool), b_(b) {}
Value::Value(int64_t v) : type_(Type::Int), i_(v) {}
Value::Value(double v) : type_(Type::Float), f_(v) {}
Value::Value(std::string s) : type_(Type::String), s_(std::make_shared<const std::string>(std::move(s))) {}

Value Value::list(List items) {
  Value v;
  v.type_ = Type::List;
  v.list_ = std::make_shared<List>(std::move(items));
  return v;
}

Value Value::tuple(List items) {
  Value v = list(std::move(items));
  v.tuple_ = true;
  return v;
}

Value Value::dict(Dict d) {
  Value v;
  v.type_ = Type::Dict;
  v.dict_ = std::make_shared<Dict>(std::move(d));
  return v;
}

Value Value::callable(std::string name, std::function<Value(CallArgs&, Evaluator&)> fn) {
  Value v;
  v.type_ = Type::Callable;
  v.fn_ = std::make_shared<Callable>(Callable{std::move(name), std::move(fn)});
  return v;
}

static Value from_json_at(const nlohmann::ordered_json& j, int depth);

Value Value::from_json(const nlohmann::ordered_json& j) { return from_json_at(j, 0); }

static Value from_json_at(const nlohmann::ordered_json& j, int depth) {
  if (depth > Value::kMaxValueDepth)
    throw EvalError("JSON input nested too deeply (limit " + std::to_string(Value::kMaxValueDepth) + ")");
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null:
      return Value::none();
    case nlohmann::ordered_json::value_t::boolean:
      return Value(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
      return Value(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      uint64_t u = j.get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) return Value(static_cast<double>(u));
      return Value(static_cast<int64_t>(u));
    }
    case nlohmann::ordered_json::value_t::number_float:
      return Value(j.get<double>());
    case nlohmann::ordered_json::value_t::string:
      return Value(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      List items;
      items.reserve(j.size());
      for (const auto& e : j) items.push_back(from_json_at(e, depth + 1));
      return Value::list(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      Dict d;
      for (const auto& [k, e] : j.items()) d.items.emplace_back(k, from_json_at(e, depth + 1));
      return Value::dict(std::move(d));
    }
    default:
      return Value();  // binary/discarded: not produced by the JSON parser
  }
}

double Value::as_number() const {
  switch (type_) {
    case Type::Int:
      return static_cast<double>(i_);
    case Type::Float:
      return f_;
    case Type::Bool:
      return b_ ? 1.0 : 0.0;
    default:
      return 0.0;
  }
}

bool Value::same_object(const Value& o) const {
  if (type_ != o.type_) return false;
  switch (type_) {
    case Type::List:
      return list_ == o.list_;
    case Type::Dict:
      return dict_ == o.dict_;
    case Type::Callable:
      return fn_ == o.fn_;
    default:
      return *this == o;
  }
}

// Depth of nested containers below v (0 for a scalar); throws on a cycle through `target` or too deep.
static int nesting(const Value& v, const Value* target, int depth) {
  if (v.is_callable() && v.callable_ref().bound_method)
    throw EvalError("cannot store the method '" + v.callable_ref().name + "' in a container; call it instead");
  if (!v.is_list() && !v.is_dict()) return 0;
  if (depth > Value::kMaxValueDepth)
    throw EvalError("value nested too deeply (limit " + std::to_string(Value::kMaxValueDepth) + ")");
  if (target && v.same_object(*target)) throw EvalError("cannot store a container inside itself");
  int d = 0;
  if (v.is_list())
    for (const auto& e : v.list_ref()) d = std::max(d, nesting(e, target, depth + 1));
  else
    for (const auto& kv : v.dict_ref().items) d = std::max(d, nesting(kv.second, target, depth + 1));
  return d + 1;
}

void Value::check_nesting(const Value* container) const { nesting(*this, container, 1); }

bool Value::truthy() const {
  switch (type_) {
    case Type::Undefined:
    case Type::None:
      return false;
    case Type::Bool:
      return b_;
    case Type::Int:
      return i_ != 0;
    case Type::Float:
      return f_ != 0.0;
    case Type::String:
      return !s_->empty();
    case Type::List:
      return !list_->empty();
    case Type::Dict:
      return dict_->is_namespace || !dict_->items.empty();
    case Type::Callable:
      return true;
  }
  return false;
}

const char* Value::type_name() const {
  switch (type_) {
    case Type::Undefined:
      return "Undefined";
    case Type::None:
      return "NoneType";
    case Type::Bool:
      return "bool";
    case Type::Int:
      return "int";
    case Type::Float:
      return "float";
    case Type::String:
      return "str";
    case Type::List:
      return "list";
    case Type::Dict:
      return dict_->is_namespace ? "Namespace" : "dict";
    case Type::Callable:
      return "function";
  }
  return "?";
}

std::string format_float(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v < 0 ? "-inf" : "inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  std::string s(buf, res.ptr);
  std::string sign;
  if (s[0] == '-') {
    sign = "-";
    s.erase(0, 1);
  }
  size_t e = s.find('e');
  std::string mant = s.substr(0, e);
  int exp10 = std::stoi(s.substr(e + 1));
  std::string digits;
  for (char c : mant)
    if (c != '.') digits += c;
  int decpt = exp10 + 1;  // value = 0.DIGITS * 10^decpt
  int nd = static_cast<int>(digits.size());
  std::string out;
  if (decpt > -4 && decpt <= 16) {
    if (decpt <= 0) {
      out = "0." + std::string(-decpt, '0') + digits;
    } else if (decpt >= nd) {
      out = digits + std::string(decpt - nd, '0') + ".0";
    } else {
      out = digits.substr(0, decpt) + "." + digits.substr(decpt);
    }
  } else {
    out = digits.substr(0, 1);
    if (nd > 1) out += "." + digits.substr(1);
    char eb[16];
    std::snprintf(eb, sizeof eb, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
    out += eb;
  }
  return sign + out;
}

static std::string repr_string(const std::string& s) {
  bool has_single = s.find('\'') != std::string::npos, has_double = s.find('"') != std::string::npos;
  char q = (has_single && !has_double) ? '"' : '\'';
  std::string out(1, q);
  for (unsigned char c : s) {
    if (c == static_cast<unsigned char>(q) || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02x", c);
      out += b;
    } else {
      out += static_cast<char>(c);
    }
  }
  out += q;
  return out;
}

std::string Value::repr() const {
  switch (type_) {
    case Type::String:
      return repr_string(*s_);
    case Type::List: {
      std::string out = tuple_ ? "(" : "[";
      for (size_t i = 0; i < list_->size(); ++i) out += (i ? ", " : "") + (*list_)[i].repr();
      if (tuple_) return out + (list_->size() == 1 ? ",)" : ")");
      return out + "]";
    }
    case Type::Dict: {
      std::string out = dict_->is_namespace ? "<Namespace {" : "{";
      bool first = true;
      for (const auto& [k, v] : dict_->items) {
        out += (first ? "" : ", ") + repr_string(k) + ": " + v.repr();
        first = false;
      }
      return out + (dict_->is_namespace ? "}>" : "}");
    }
    default:
      return to_str();
  }
}

std::string Value::to_str() const {
  switch (type_) {
    case Type::Undefined:
      return "";
    case Type::None:
      return "None";
    case Type::Bool:
      return b_ ? "True" : "False";
    case Type::Int:
      return std::to_string(i_);
    case Type::Float:
      return format_float(f_);
    case Type::String:
      return *s_;
    case Type::List:
    case Type::Dict:
      return repr();
    case Type::Callable:
      return "<function " + fn_->name + ">";
  }
  return "";
}

bool Value::operator==(const Value& o) const {
  bool num_a = type_ == Type::Int || type_ == Type::Float || type_ == Type::Bool;
  bool num_b = o.type_ == Type::Int || o.type_ == Type::Float || o.type_ == Type::Bool;
  if (num_a && num_b) {
    if (type_ == Type::Int && o.type_ == Type::Int) return i_ == o.i_;
    return as_number() == o.as_number();
  }
  if (type_ != o.type_) return false;
  switch (type_) {
    case Type::Undefined:
    case Type::None:
      return true;
    case Type::String:
      return *s_ == *o.s_;
    case Type::List: {
      if (list_ == o.list_) return true;
      if (list_->size() != o.list_->size()) return false;
      for (size_t i = 0; i < list_->size(); ++i)
        if (!((*list_)[i] == (*o.list_)[i])) return false;
      return true;
    }
    case Type::Dict: {
      if (dict_ == o.dict_) return true;
      if (dict_->is_namespace || o.dict_->is_namespace) return false;
      if (dict_->items.size() != o.dict_->items.size()) return false;
      for (const auto& [k, v] : dict_->items) {
        const Value* w = o.dict_->find(k);
        if (!w || !(v == *w)) return false;
      }
      return true;
    }
    case Type::Callable:
      return fn_ == o.fn_;
    default:
      return false;
  }
}

// ---- json.dumps ----

static void json_string(std::string& out, const std::string& s, bool ensure_ascii) {
  out += '"';
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '"':
        out += "\\\"";
        continue;
      case '\\':
        out += "\\\\";
        continue;
      case '\n':
        out += "\\n";
        continue;
      case '\r':
        out += "\\r";
        continue;
      case '\t':
        out += "\\t";
        continue;
      case '\b':
        out += "\\b";
        continue;
      case '\f':
        out += "\\f";
        continue;
      default:
        break;
    }
    char b[16];
    if (c < 0x20 || (ensure_ascii && c == 0x7f)) {
      std::snprintf(b, sizeof b, "\\u%04x", c);
      out += b;
    } else if (c < 0x80 || !ensure_ascii) {
      out += static_cast<char>(c);
    } else {
      // Decode one UTF-8 sequence; invalid bytes are escaped as themselves.
      uint32_t cp = c;
      int extra = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : c >= 0xc0 ? 1 : 0;
      cp = extra == 3 ? (c & 0x07) : extra == 2 ? (c & 0x0f) : (c & 0x1f);
      if (extra == 0 || i + extra >= s.size()) {
        std::snprintf(b, sizeof b, "\\u%04x", c);
        out += b;
        continue;
      }
      for (int k = 1; k <= extra; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3f);
      i += extra;
      if (cp >= 0x10000) {
        cp -= 0x10000;
        std::snprintf(b, sizeof b, "\\u%04x\\u%04x", 0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
      } else {
        std::snprintf(b, sizeof b, "\\u%04x", cp);
      }
      out += b;
    }
  }
  out += '"';
}

static void json_value(std::string& out, const Value& v, const JsonFormat& f, const std::string& item_sep,
                       const std::string& key_sep, int level) {
  if (level > Value::kMaxValueDepth) throw EvalError("tojson: value nested too deeply");
  const int indent = f.indent;
  auto newline = [&](int lvl) {
    out += '\n';
    out.append(static_cast<size_t>(indent) * static_cast<size_t>(lvl), ' ');
  };
  switch (v.type()) {
    case Value::Type::None:
      out += "null";
      return;
    case Value::Type::Bool:
      out += v.as_bool() ? "true" : "false";
      return;
    case Value::Type::Int:
      out += std::to_string(v.as_int());
      return;
    case Value::Type::Float: {
      double x = v.as_number();
      if (std::isnan(x))
        out += "NaN";
      else if (std::isinf(x))
        out += x < 0 ? "-Infinity" : "Infinity";
      else
        out += format_float(x);
      return;
    }
    case Value::Type::String:
      json_string(out, v.str(), f.ensure_ascii);
      return;
    case Value::Type::List: {
      const List& l = v.list_ref();
      if (l.empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t i = 0; i < l.size(); ++i) {
        if (i) out += item_sep;
        if (indent >= 0) newline(level + 1);
        json_value(out, l[i], f, item_sep, key_sep, level + 1);
      }
      if (indent >= 0) newline(level);
      out += ']';
      return;
    }
    case Value::Type::Dict: {
      const Dict& d = v.dict_ref();
      if (d.is_namespace) throw EvalError("Object of type Namespace is not JSON serializable");
      if (d.items.empty()) {
        out += "{}";
        return;
      }
      std::vector<const std::pair<std::string, Value>*> items;
      for (const auto& kv : d.items) items.push_back(&kv);
      if (f.sort_keys)
        std::stable_sort(items.begin(), items.end(), [](auto* a, auto* b) { return a->first < b->first; });
      out += '{';
      bool first = true;
      for (const auto* kv : items) {
        if (!first) out += item_sep;
        first = false;
        if (indent >= 0) newline(level + 1);
        json_string(out, kv->first, f.ensure_ascii);
        out += key_sep;
        json_value(out, kv->second, f, item_sep, key_sep, level + 1);
      }
      if (indent >= 0) newline(level);
      out += '}';
      return;
    }
    default:
      throw EvalError(std::string("Object of type ") + v.type_name() + " is not JSON serializable");
  }
}

std::string to_json(const Value& v, const JsonFormat& format) {
  std::string item_sep = format.item_separator, key_sep = format.key_separator;
  if (item_sep.empty()) item_sep = format.indent >= 0 ? "," : ", ";
  if (key_sep.empty()) key_sep = ": ";
  std::string out;
  json_value(out, v, format, item_sep, key_sep, 0);
  return out;
}

}  // namespace owl::jinja
