// Builtins of owl's Jinja: Python semantics of attribute/item access, slicing,
// operators and `in`; the filters and tests of Jinja2 that chat templates use
// (tojson as transformers defines it); Python str/list/dict methods; and the
// globals range, namespace, dict, raise_exception and strftime_now.
#include <algorithm>
#include <cmath>
#include <ctime>
#include <string_view>
#include <unordered_map>
#include <utf8proc.h>

#include "chat/jinja_eval.h"

namespace owl::jinja {
namespace {

// ---- UTF-8 / Python str helpers ----

std::vector<uint32_t> decode(const std::string& s) {
  std::vector<uint32_t> out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    utf8proc_int32_t cp;
    auto n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(s.data() + i),
                              static_cast<utf8proc_ssize_t>(s.size() - i), &cp);
    if (n <= 0) {  // invalid byte: keep it as its own "character" (U+DC80+byte, like surrogateescape)
      out.push_back(0xdc00u + static_cast<unsigned char>(s[i]));
      ++i;
    } else {
      out.push_back(static_cast<uint32_t>(cp));
      i += static_cast<size_t>(n);
    }
  }
  return out;
}

void encode_to(std::string& out, uint32_t cp) {
  if (cp >= 0xdc80 && cp <= 0xdcff) {  // an invalid byte carried through decode()
    out += static_cast<char>(cp - 0xdc00);
    return;
  }
  utf8proc_uint8_t buf[4];
  auto n = utf8proc_encode_char(static_cast<utf8proc_int32_t>(cp), buf);
  out.append(reinterpret_cast<const char*>(buf), static_cast<size_t>(n));
}

std::string encode(const std::vector<uint32_t>& cps, size_t from = 0, size_t to = SIZE_MAX) {
  std::string out;
  to = std::min(to, cps.size());
  for (size_t i = from; i < to; ++i) encode_to(out, cps[i]);
  return out;
}

size_t char_count(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xc0) != 0x80) ++n;
  return n;
}

// Python str.isspace() for one character.
bool py_space(uint32_t c) {
  return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

uint32_t to_upper(uint32_t c) { return static_cast<uint32_t>(utf8proc_toupper(static_cast<utf8proc_int32_t>(c))); }
uint32_t to_lower(uint32_t c) { return static_cast<uint32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c))); }
bool is_cased(uint32_t c) { return to_upper(c) != c || to_lower(c) != c; }

std::string map_chars(const std::string& s, uint32_t (*f)(uint32_t)) {
  std::string out;
  for (uint32_t c : decode(s)) encode_to(out, f(c));
  return out;
}

// Python str.title(): a cased character after an uncased one starts a word.
std::string py_title(const std::string& s) {
  std::string out;
  bool prev_cased = false;
  for (uint32_t c : decode(s)) {
    encode_to(out, prev_cased ? to_lower(c) : to_upper(c));
    prev_cased = is_cased(c);
  }
  return out;
}

std::string py_capitalize(const std::string& s) {
  auto cps = decode(s);
  std::string out;
  for (size_t i = 0; i < cps.size(); ++i) encode_to(out, i == 0 ? to_upper(cps[i]) : to_lower(cps[i]));
  return out;
}

// strip/lstrip/rstrip: `chars` null means whitespace.
std::string py_strip(const std::string& s, const Value* chars, bool left, bool right) {
  auto cps = decode(s);
  std::vector<uint32_t> set;
  bool ws = !chars || chars->is_none() || chars->is_undefined();
  if (!ws) {
    if (!chars->is_string()) throw EvalError("strip arg must be None or str");
    set = decode(chars->str());
  }
  auto strip_it = [&](uint32_t c) { return ws ? py_space(c) : std::find(set.begin(), set.end(), c) != set.end(); };
  size_t a = 0, b = cps.size();
  if (left)
    while (a < b && strip_it(cps[a])) ++a;
  if (right)
    while (b > a && strip_it(cps[b - 1])) --b;
  return encode(cps, a, b);
}

List py_split(const std::string& s, const Value* sep_v, const Value* max_v, bool from_right) {
  int64_t maxsplit = -1;
  if (max_v && !max_v->is_none()) {
    if (!max_v->is_int()) throw EvalError("maxsplit must be an integer");
    maxsplit = max_v->as_int();
  }
  List out;
  if (!sep_v || sep_v->is_none()) {  // runs of whitespace, no empty strings
    auto cps = decode(s);
    std::vector<std::pair<size_t, size_t>> words;
    size_t i = 0;
    while (i < cps.size()) {
      while (i < cps.size() && py_space(cps[i])) ++i;
      if (i >= cps.size()) break;
      size_t j = i;
      while (j < cps.size() && !py_space(cps[j])) ++j;
      words.emplace_back(i, j);
      i = j;
    }
    if (maxsplit >= 0 && static_cast<int64_t>(words.size()) > maxsplit + 1) {
      // The remainder keeps its inner whitespace (and, for rsplit, is on the left).
      if (!from_right) {
        size_t keep = static_cast<size_t>(maxsplit);
        for (size_t k = 0; k < keep; ++k) out.emplace_back(encode(cps, words[k].first, words[k].second));
        size_t end = cps.size();
        while (end > words[keep].first && py_space(cps[end - 1])) --end;
        out.emplace_back(encode(cps, words[keep].first, end));
      } else {
        size_t keep = static_cast<size_t>(maxsplit);
        size_t first_kept = words.size() - keep;
        size_t start = 0;
        while (start < cps.size() && py_space(cps[start])) ++start;
        out.emplace_back(encode(cps, start, words[first_kept - 1].second));
        for (size_t k = first_kept; k < words.size(); ++k)
          out.emplace_back(encode(cps, words[k].first, words[k].second));
      }
      return out;
    }
    for (auto [a, b] : words) out.emplace_back(encode(cps, a, b));
    return out;
  }
  if (!sep_v->is_string()) throw EvalError("must be str or None, not " + std::string(sep_v->type_name()));
  const std::string& sep = sep_v->str();
  if (sep.empty()) throw EvalError("empty separator");
  std::vector<std::string> parts;
  if (!from_right) {
    size_t pos = 0;
    int64_t n = 0;
    while (maxsplit < 0 || n < maxsplit) {
      size_t f = s.find(sep, pos);
      if (f == std::string::npos) break;
      parts.push_back(s.substr(pos, f - pos));
      pos = f + sep.size();
      ++n;
    }
    parts.push_back(s.substr(pos));
  } else {
    size_t end = s.size();
    int64_t n = 0;
    std::vector<std::string> rev;
    while (maxsplit < 0 || n < maxsplit) {
      if (end < sep.size()) break;
      size_t f = s.rfind(sep, end - sep.size());
      if (f == std::string::npos) break;
      rev.push_back(s.substr(f + sep.size(), end - f - sep.size()));
      end = f;
      ++n;
    }
    rev.push_back(s.substr(0, end));
    parts.assign(rev.rbegin(), rev.rend());
  }
  for (auto& p : parts) out.emplace_back(std::move(p));
  return out;
}

std::string py_replace(const std::string& s, const std::string& from, const std::string& to, int64_t count,
                       Evaluator& ev) {
  std::string out;
  if (from.empty()) {  // Python inserts `to` between every character
    auto cps = decode(s);
    int64_t n = 0;
    for (size_t i = 0; i <= cps.size(); ++i) {
      if (count < 0 || n < count) {
        out += to;
        ++n;
      }
      if (i < cps.size()) encode_to(out, cps[i]);
      ev.check_size(out.size());
    }
    return out;
  }
  size_t pos = 0;
  int64_t n = 0;
  while (count < 0 || n < count) {
    size_t f = s.find(from, pos);
    if (f == std::string::npos) break;
    out.append(s, pos, f - pos);
    out += to;
    ev.check_size(out.size());
    pos = f + from.size();
    ++n;
  }
  out.append(s, pos, std::string::npos);
  return out;
}

int64_t to_index(const Value& v, const char* what) {
  if (v.is_int()) return v.as_int();
  if (v.is_bool()) return v.as_bool() ? 1 : 0;
  throw EvalError(std::string(what) + " must be an integer, not '" + v.type_name() + "'");
}

// Python slice.indices() + gather.
std::vector<size_t> slice_positions(size_t len, const Value& start_v, const Value& stop_v, const Value& step_v) {
  const int64_t n = static_cast<int64_t>(len);
  int64_t step = step_v.is_none() || step_v.is_undefined() ? 1 : to_index(step_v, "slice step");
  if (step == 0) throw EvalError("slice step cannot be zero");
  auto clamp = [&](const Value& v, int64_t dflt) {
    if (v.is_none() || v.is_undefined()) return dflt;
    int64_t x = to_index(v, "slice index");
    if (x < 0) {
      x += n;
      if (x < 0) x = step < 0 ? -1 : 0;
    } else if (x >= n) {
      x = step < 0 ? n - 1 : n;
    }
    return x;
  };
  int64_t start = clamp(start_v, step < 0 ? n - 1 : 0);
  int64_t stop = clamp(stop_v, step < 0 ? -1 : n);
  std::vector<size_t> out;
  for (int64_t i = start; step > 0 ? i < stop : i > stop;) {
    out.push_back(static_cast<size_t>(i));
    if (__builtin_add_overflow(i, step, &i)) break;  // a huge step: no further element
  }
  return out;
}

// "%s" % args (printf-style), the subset templates use: %s %r %d %i %f %%, %(name)s.
std::string percent_format(const std::string& fmt, const Value& args) {
  std::string out;
  size_t next_arg = 0;
  List positional = args.is_list() ? args.list_ref() : List{args};
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '%') {
      out += fmt[i];
      continue;
    }
    if (++i >= fmt.size()) throw EvalError("incomplete format");
    if (fmt[i] == '%') {
      out += '%';
      continue;
    }
    Value arg;
    if (fmt[i] == '(') {
      size_t close = fmt.find(')', i);
      if (close == std::string::npos || !args.is_dict()) throw EvalError("format requires a mapping");
      const Value* v = args.dict_ref().find(fmt.substr(i + 1, close - i - 1));
      if (!v) throw EvalError("format key '" + fmt.substr(i + 1, close - i - 1) + "' not found");
      arg = *v;
      i = close + 1;
    } else {
      if (next_arg >= positional.size()) throw EvalError("not enough arguments for format string");
      arg = positional[next_arg++];
    }
    int precision = -1;
    if (i < fmt.size() && fmt[i] == '.') {
      precision = 0;
      while (++i < fmt.size() && std::isdigit(static_cast<unsigned char>(fmt[i])))
        precision = precision * 10 + (fmt[i] - '0');
      if (precision > 100) throw EvalError("format precision too large");
    }
    if (i >= fmt.size()) throw EvalError("incomplete format");
    char conv = fmt[i];
    if (conv == 's') {
      out += arg.to_str();
    } else if (conv == 'r') {
      out += arg.repr();
    } else if (conv == 'd' || conv == 'i') {
      if (!arg.is_number() && !arg.is_bool())
        throw EvalError("%d format: a real number is required, not " + std::string(arg.type_name()));
      out += std::to_string(arg.is_float() ? static_cast<int64_t>(arg.as_number()) : to_index(arg, "%d"));
    } else if (conv == 'f') {
      if (!arg.is_number() && !arg.is_bool()) throw EvalError("%f format: a real number is required");
      char buf[512];
      std::snprintf(buf, sizeof buf, "%.*f", precision < 0 ? 6 : precision, arg.as_number());
      out += buf;
    } else {
      throw EvalError(std::string("unsupported format character '") + conv + "'");
    }
  }
  if (!args.is_dict() && next_arg < positional.size())
    throw EvalError("not all arguments converted during string formatting");
  return out;
}

// str.format: {} {0} {name}, {{ and }}; no format specs.
std::string brace_format(const std::string& fmt, CallArgs& args) {
  std::string out;
  size_t auto_idx = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    char c = fmt[i];
    if (c == '}') {
      if (i + 1 < fmt.size() && fmt[i + 1] == '}') ++i;
      out += '}';
      continue;
    }
    if (c != '{') {
      out += c;
      continue;
    }
    if (i + 1 < fmt.size() && fmt[i + 1] == '{') {
      out += '{';
      ++i;
      continue;
    }
    size_t close = fmt.find('}', i);
    if (close == std::string::npos) throw EvalError("single '{' encountered in format string");
    std::string field = fmt.substr(i + 1, close - i - 1);
    if (field.find_first_of(":!") != std::string::npos) throw EvalError("format specs are not supported in str.format");
    const Value* v = nullptr;
    if (field.empty()) {
      v = auto_idx < args.pos.size() ? &args.pos[auto_idx] : nullptr;
      ++auto_idx;
    } else if (std::all_of(field.begin(), field.end(),
                           [](char d) { return std::isdigit(static_cast<unsigned char>(d)); })) {
      if (field.size() > 9) throw EvalError("str.format: argument index too large");
      size_t k = std::stoul(field);
      v = k < args.pos.size() ? &args.pos[k] : nullptr;
    } else {
      v = args.get(SIZE_MAX, field.c_str());
    }
    if (!v) throw EvalError("str.format: no argument for {" + field + "}");
    out += v->to_str();
    i = close;
  }
  return out;
}

const Value& arg_string(const CallArgs& a, size_t i, const char* name, const char* fn) {
  const Value& v = a.need(i, name, fn);
  if (!v.is_string()) throw EvalError(std::string(fn) + "() argument '" + name + "' must be str, not " + v.type_name());
  return v;
}

bool affix_match(const std::string& s, const Value& what, bool prefix, const char* fn) {
  auto one = [&](const Value& p) {
    if (!p.is_string())
      throw EvalError(std::string(fn) + " first arg must be str or a tuple of str, not " + p.type_name());
    const std::string& x = p.str();
    if (x.size() > s.size()) return false;
    return prefix ? s.compare(0, x.size(), x) == 0 : s.compare(s.size() - x.size(), x.size(), x) == 0;
  };
  if (what.is_list()) {
    for (const auto& p : what.list_ref())
      if (one(p)) return true;
    return false;
  }
  return one(what);
}

int64_t py_find(const std::string& s, const std::string& sub, bool reverse) {
  size_t f = reverse ? s.rfind(sub) : s.find(sub);
  if (f == std::string::npos) return -1;
  return static_cast<int64_t>(char_count(s.substr(0, f)));
}

Value string_method(const std::string& s, const std::string& m, CallArgs& a, Evaluator& ev) {
  const char* fn = m.c_str();
  if (m == "startswith" || m == "endswith")
    return Value(affix_match(s, a.need(0, "prefix", fn), m == "startswith", fn));
  if (m == "split" || m == "rsplit")
    return Value::list(py_split(s, a.get(0, "sep"), a.get(1, "maxsplit"), m == "rsplit"));
  if (m == "strip") return Value(py_strip(s, a.get(0, "chars"), true, true));
  if (m == "lstrip") return Value(py_strip(s, a.get(0, "chars"), true, false));
  if (m == "rstrip") return Value(py_strip(s, a.get(0, "chars"), false, true));
  if (m == "replace") {
    const Value* count = a.get(2, "count");
    return Value(py_replace(s, arg_string(a, 0, "old", fn).str(), arg_string(a, 1, "new", fn).str(),
                            count ? to_index(*count, "count") : -1, ev));
  }
  if (m == "lower") return Value(map_chars(s, to_lower));
  if (m == "upper") return Value(map_chars(s, to_upper));
  if (m == "title") return Value(py_title(s));
  if (m == "capitalize") return Value(py_capitalize(s));
  if (m == "find" || m == "rfind") return Value(py_find(s, arg_string(a, 0, "sub", fn).str(), m == "rfind"));
  if (m == "index" || m == "rindex") {
    int64_t r = py_find(s, arg_string(a, 0, "sub", fn).str(), m == "rindex");
    if (r < 0) throw EvalError("substring not found");
    return Value(r);
  }
  if (m == "count") {
    const std::string& sub = arg_string(a, 0, "sub", fn).str();
    if (sub.empty()) return Value(static_cast<int64_t>(char_count(s) + 1));
    int64_t n = 0;
    for (size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++n;
    return Value(n);
  }
  if (m == "join") {
    std::string out;
    bool first = true;
    for (const auto& item : iterate(a.need(0, "iterable", fn))) {
      if (!item.is_string())
        throw EvalError("sequence item: expected str instance, " + std::string(item.type_name()) + " found");
      if (!first) out += s;
      first = false;
      out += item.str();
      ev.check_size(out.size());
    }
    return Value(std::move(out));
  }
  if (m == "format") {
    std::string r = brace_format(s, a);
    ev.check_size(r.size());
    return Value(std::move(r));
  }
  if (m == "splitlines") {
    List out;
    size_t start = 0;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '\n' || s[i] == '\r') {
        out.emplace_back(s.substr(start, i - start));
        if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ++i;
        start = i + 1;
      }
    }
    if (start < s.size()) out.emplace_back(s.substr(start));
    return Value::list(std::move(out));
  }
  auto all_chars = [&](auto pred) {
    auto cps = decode(s);
    return Value(!cps.empty() && std::all_of(cps.begin(), cps.end(), pred));
  };
  if (m == "isspace") return all_chars(py_space);
  if (m == "isdigit") return all_chars([](uint32_t c) { return c >= '0' && c <= '9'; });
  if (m == "isalpha")
    return all_chars([](uint32_t c) {
      auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
      return cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
    });
  if (m == "isalnum")
    return all_chars([](uint32_t c) {
      auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
      return (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) ||
             (cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO);
    });
  if (m == "islower" || m == "isupper") {
    bool any = false;
    for (uint32_t c : decode(s)) {
      if (!is_cased(c)) continue;
      any = true;
      if ((m == "islower") != (to_lower(c) == c)) return Value(false);
    }
    return Value(any);
  }
  throw EvalError("'str' object has no attribute '" + m + "'");
}

bool is_string_method(const std::string& m) {
  static const char* names[] = {"startswith", "endswith", "split",   "rsplit",  "strip",      "lstrip",     "rstrip",
                                "replace",    "lower",    "upper",   "title",   "capitalize", "find",       "rfind",
                                "index",      "rindex",   "count",   "join",    "format",     "splitlines", "isspace",
                                "isdigit",    "isalpha",  "isalnum", "islower", "isupper"};
  return std::find(std::begin(names), std::end(names), m) != std::end(names);
}

Value list_method(const Value& self, const std::string& m, CallArgs& a, Evaluator& ev) {
  List& l = self.list_ref();
  const char* fn = m.c_str();
  auto insert_checked = [&](size_t at, const Value& v) {
    v.check_nesting(&self);
    ev.check_size(l.size() + 1);
    l.insert(l.begin() + static_cast<std::ptrdiff_t>(at), v);
  };
  if (m == "append") {
    insert_checked(l.size(), a.need(0, "object", fn));
    return Value::none();
  }
  if (m == "insert") {
    int64_t i = to_index(a.need(0, "index", fn), "index");
    int64_t n = static_cast<int64_t>(l.size());
    if (i < 0) i = std::max<int64_t>(0, i + n);
    insert_checked(static_cast<size_t>(std::min(i, n)), a.need(1, "object", fn));
    return Value::none();
  }
  if (m == "extend") {
    for (const auto& v : iterate(a.need(0, "iterable", fn))) insert_checked(l.size(), v);
    return Value::none();
  }
  if (m == "pop") {
    if (l.empty()) throw EvalError("pop from empty list");
    int64_t n = static_cast<int64_t>(l.size());
    int64_t i = a.get(0, "index") ? to_index(*a.get(0, "index"), "index") : n - 1;
    if (i < 0) i += n;
    if (i < 0 || i >= n) throw EvalError("pop index out of range");
    Value v = l[static_cast<size_t>(i)];
    l.erase(l.begin() + i);
    return v;
  }
  if (m == "index") {
    const Value& x = a.need(0, "value", fn);
    for (size_t i = 0; i < l.size(); ++i)
      if (l[i] == x) return Value(static_cast<int64_t>(i));
    throw EvalError("value is not in list");
  }
  if (m == "count") {
    const Value& x = a.need(0, "value", fn);
    return Value(static_cast<int64_t>(std::count(l.begin(), l.end(), x)));
  }
  if (m == "copy") return Value::list(l);
  if (m == "reverse") {
    std::reverse(l.begin(), l.end());
    return Value::none();
  }
  throw EvalError("'list' object has no attribute '" + m + "'");
}

bool is_list_method(const std::string& m) {
  return m == "append" || m == "insert" || m == "extend" || m == "pop" || m == "index" || m == "count" || m == "copy" ||
         m == "reverse";
}

Value dict_method(const Value& self, const std::string& m, CallArgs& a, Evaluator& ev) {
  Dict& d = self.dict_ref();
  const char* fn = m.c_str();
  if (m == "get") {
    const Value& k = a.need(0, "key", fn);
    const Value* v = k.is_string() ? d.find(k.str()) : nullptr;
    if (v) return *v;
    const Value* dflt = a.get(1, "default");
    return dflt ? *dflt : Value::none();
  }
  if (m == "keys" || m == "values" || m == "items") {
    List out;
    for (const auto& [k, v] : d.items)
      out.push_back(m == "keys" ? Value(k) : m == "values" ? v : Value::tuple({Value(k), v}));
    return Value::list(std::move(out));
  }
  if (m == "pop") {
    const Value& k = arg_string(a, 0, "key", fn);
    for (auto it = d.items.begin(); it != d.items.end(); ++it)
      if (it->first == k.str()) {
        Value v = it->second;
        d.items.erase(it);
        return v;
      }
    if (const Value* dflt = a.get(1, "default")) return *dflt;
    throw EvalError("KeyError: '" + k.str() + "'");
  }
  if (m == "update") {
    auto put = [&](const std::string& k, const Value& v) {
      v.check_nesting(&self);
      d.set(k, v);
    };
    if (const Value* other = a.get(0, nullptr)) {
      if (!other->is_dict()) throw EvalError("dict.update() needs a mapping");
      auto items = other->dict_ref().items;  // copy: other may be d itself
      for (const auto& [k, v] : items) put(k, v);
    }
    for (const auto& [k, v] : a.kw) put(k, v);
    ev.check_size(d.items.size());
    return Value::none();
  }
  if (m == "copy") return Value::dict(Dict{d.items, false});
  throw EvalError("'dict' object has no attribute '" + m + "'");
}

bool is_dict_method(const std::string& m) {
  return m == "get" || m == "keys" || m == "values" || m == "items" || m == "pop" || m == "update" || m == "copy";
}

Value bound_method(const Value& obj, const std::string& m) {
  Value f = Value::callable(m, [obj, m](CallArgs& a, Evaluator& ev) -> Value {
    if (obj.is_string()) return string_method(obj.str(), m, a, ev);
    if (obj.is_list()) return list_method(obj, m, a, ev);
    return dict_method(obj, m, a, ev);
  });
  f.mark_bound_method();
  return f;
}

Value no_attribute(const Value& obj, const std::string& name) {
  return Value::undefined("'" + std::string(obj.type_name()) + " object' has no attribute '" + name + "'");
}

// Jinja's attribute getter for selectattr/map/sort: "a.b.0" walks items.
Value get_path(const Value& obj, const std::string& path) {
  Value cur = obj;
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    bool numeric = !part.empty() && std::all_of(part.begin(), part.end(),
                                                [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
    if (cur.is_undefined()) return cur;
    cur = get_item(cur, numeric && part.size() < 18 ? Value(static_cast<int64_t>(std::stoll(part))) : Value(part));
    if (dot == std::string::npos) return cur;
    start = dot + 1;
  }
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// Sort key comparison used by sort/dictsort/unique/min/max: strings case-folded unless case_sensitive.
Value fold(const Value& v, bool case_sensitive) {
  if (!case_sensitive && v.is_string()) return Value(map_chars(v.str(), to_lower));
  return v;
}

bool test_arg_bool(const CallArgs& a, size_t i, const char* name, bool dflt) {
  const Value* v = a.get(i, name);
  return v ? v->truthy() : dflt;
}

// Applies a named test to each item: select/reject/selectattr/rejectattr.
Value filter_by_test(const Value& input, CallArgs& a, Evaluator& ev, bool by_attr, bool keep_if) {
  size_t k = 0;
  std::string attr;
  if (by_attr) attr = arg_string(a, k++, "attribute", "selectattr").str();
  std::string test;
  CallArgs test_args;
  if (k < a.pos.size()) {
    if (!a.pos[k].is_string()) throw EvalError("the test name must be a string");
    test = a.pos[k++].str();
    test_args.pos.assign(a.pos.begin() + static_cast<std::ptrdiff_t>(k), a.pos.end());
  }
  List out;
  for (const auto& item : iterate(input)) {
    Value v = by_attr ? get_path(item, attr) : item;
    bool r = test.empty() ? v.truthy() : call_test(test, v, test_args, ev);
    if (r == keep_if) out.push_back(item);
  }
  return Value::list(std::move(out));
}

std::string join_values(const List& items, const std::string& sep, Evaluator& ev) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += sep;
    out += items[i].to_str();
    ev.check_size(out.size());
  }
  return out;
}

}  // namespace

// ---- access and operators ----

Value get_attr(const Value& obj, const std::string& name) {
  if (obj.is_undefined()) throw EvalError(obj.undefined_hint());
  if (obj.is_string()) return is_string_method(name) ? bound_method(obj, name) : no_attribute(obj, name);
  if (obj.is_list()) return is_list_method(name) ? bound_method(obj, name) : no_attribute(obj, name);
  if (obj.is_dict()) {
    if (!obj.dict_ref().is_namespace && is_dict_method(name)) return bound_method(obj, name);
    if (const Value* v = obj.dict_ref().find(name)) return *v;
    return no_attribute(obj, name);
  }
  return no_attribute(obj, name);
}

Value get_item(const Value& obj, const Value& key) {
  if (obj.is_undefined()) throw EvalError(obj.undefined_hint());
  if (obj.is_dict()) {
    if (key.is_string()) {
      if (const Value* v = obj.dict_ref().find(key.str())) return *v;
      return get_attr(obj, key.str());
    }
    return Value::undefined("'dict object' has no key " + key.repr());
  }
  if (obj.is_list() || obj.is_string()) {
    if (key.is_string()) return get_attr(obj, key.str());
    if (!key.is_int() && !key.is_bool())
      return Value::undefined(std::string("bad index type '") + key.type_name() + "'");
    int64_t i = to_index(key, "index");
    if (obj.is_list()) {
      int64_t n = static_cast<int64_t>(obj.list_ref().size());
      if (i < 0) i += n;
      if (i < 0 || i >= n) return Value::undefined("list index out of range");
      return obj.list_ref()[static_cast<size_t>(i)];
    }
    auto cps = decode(obj.str());
    int64_t n = static_cast<int64_t>(cps.size());
    if (i < 0) i += n;
    if (i < 0 || i >= n) return Value::undefined("string index out of range");
    return Value(encode(cps, static_cast<size_t>(i), static_cast<size_t>(i) + 1));
  }
  return Value::undefined("'" + std::string(obj.type_name()) + " object' has no item " + key.repr());
}

Value slice(const Value& obj, const Value& start, const Value& stop, const Value& step) {
  if (obj.is_undefined()) throw EvalError(obj.undefined_hint());
  if (obj.is_list()) {
    const List& l = obj.list_ref();
    List out;
    for (size_t i : slice_positions(l.size(), start, stop, step)) out.push_back(l[i]);
    return Value::list(std::move(out));
  }
  if (obj.is_string()) {
    auto cps = decode(obj.str());
    std::string out;
    for (size_t i : slice_positions(cps.size(), start, stop, step)) encode_to(out, cps[i]);
    return Value(std::move(out));
  }
  throw EvalError("'" + std::string(obj.type_name()) + "' object is not subscriptable");
}

List iterate(const Value& v) {
  switch (v.type()) {
    case Value::Type::Undefined:
      return {};
    case Value::Type::List:
      return v.list_ref();
    case Value::Type::Dict: {
      if (v.dict_ref().is_namespace) break;
      List keys;
      for (const auto& kv : v.dict_ref().items) keys.emplace_back(kv.first);
      return keys;
    }
    case Value::Type::String: {
      List chars;
      auto cps = decode(v.str());
      for (size_t i = 0; i < cps.size(); ++i) chars.emplace_back(encode(cps, i, i + 1));
      return chars;
    }
    default:
      break;
  }
  throw EvalError("'" + std::string(v.type_name()) + "' object is not iterable");
}

bool contains(const Value& container, const Value& item) {
  switch (container.type()) {
    case Value::Type::Undefined:
      return false;
    case Value::Type::String:
      if (!item.is_string())
        throw EvalError("'in <string>' requires string as left operand, not " + std::string(item.type_name()));
      return container.str().find(item.str()) != std::string::npos;
    case Value::Type::List:
      return std::find(container.list_ref().begin(), container.list_ref().end(), item) != container.list_ref().end();
    case Value::Type::Dict:
      return item.is_string() && container.dict_ref().find(item.str()) != nullptr;
    default:
      throw EvalError("argument of type '" + std::string(container.type_name()) + "' is not iterable");
  }
}

int compare(const Value& a, const Value& b, const char* op) {
  bool na = a.is_number() || a.is_bool(), nb = b.is_number() || b.is_bool();
  if (na && nb) {
    if (a.is_int() && b.is_int()) return a.as_int() < b.as_int() ? -1 : a.as_int() > b.as_int() ? 1 : 0;
    double x = a.as_number(), y = b.as_number();
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.is_string() && b.is_string()) {
    int c = a.str().compare(b.str());  // byte order of UTF-8 = code point order
    return c < 0 ? -1 : c > 0 ? 1 : 0;
  }
  if (a.is_list() && b.is_list()) {
    const List &x = a.list_ref(), &y = b.list_ref();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (x[i] == y[i]) continue;
      return compare(x[i], y[i], op);
    }
    return x.size() < y.size() ? -1 : x.size() > y.size() ? 1 : 0;
  }
  if (a.is_undefined()) throw EvalError(a.undefined_hint());
  if (b.is_undefined()) throw EvalError(b.undefined_hint());
  throw EvalError(std::string("'") + op + "' not supported between instances of '" + a.type_name() + "' and '" +
                  b.type_name() + "'");
}

size_t py_len(const Value& v) {
  switch (v.type()) {
    case Value::Type::Undefined:
      return 0;
    case Value::Type::String:
      return char_count(v.str());
    case Value::Type::List:
      return v.list_ref().size();
    case Value::Type::Dict:
      return v.dict_ref().items.size();
    default:
      throw EvalError("object of type '" + std::string(v.type_name()) + "' has no len()");
  }
}

Value binary_op(const std::string& op, const Value& a, const Value& b, Evaluator& ev) {
  if (op == "~") {
    std::string r = a.to_str() + b.to_str();
    ev.check_size(r.size());
    return Value(std::move(r));
  }
  if (a.is_undefined()) throw EvalError(a.undefined_hint());
  if (b.is_undefined()) throw EvalError(b.undefined_hint());
  const bool na = a.is_number() || a.is_bool(), nb = b.is_number() || b.is_bool();
  const bool ints = na && nb && !a.is_float() && !b.is_float();
  auto ival = [](const Value& v) { return v.is_bool() ? (v.as_bool() ? int64_t{1} : int64_t{0}) : v.as_int(); };
  auto unsupported = [&]() -> EvalError {
    return EvalError("unsupported operand type(s) for " + op + ": '" + a.type_name() + "' and '" + b.type_name() + "'");
  };
  if (op == "+") {
    if (ints) {
      int64_t r = 0;
      if (__builtin_add_overflow(ival(a), ival(b), &r)) throw EvalError("integer overflow");
      return Value(r);
    }
    if (na && nb) return Value(a.as_number() + b.as_number());
    if (a.is_string() && b.is_string()) {
      ev.check_size(a.str().size() + b.str().size());
      return Value(a.str() + b.str());
    }
    if (a.is_list() && b.is_list()) {
      ev.check_size(a.list_ref().size() + b.list_ref().size());
      List r = a.list_ref();
      r.insert(r.end(), b.list_ref().begin(), b.list_ref().end());
      return Value::list(std::move(r));
    }
    if (a.is_string()) throw EvalError(std::string("can only concatenate str (not \"") + b.type_name() + "\") to str");
    if (a.is_list()) throw EvalError(std::string("can only concatenate list (not \"") + b.type_name() + "\") to list");
    throw unsupported();
  }
  if (op == "*") {
    if (ints) {
      int64_t r = 0;
      if (__builtin_mul_overflow(ival(a), ival(b), &r)) throw EvalError("integer overflow");
      return Value(r);
    }
    if (na && nb) return Value(a.as_number() * b.as_number());
    const Value* seq = (a.is_string() || a.is_list()) ? &a : (b.is_string() || b.is_list()) ? &b : nullptr;
    const Value* count = seq == &a ? &b : &a;
    if (seq && (count->is_int() || count->is_bool())) {
      int64_t n = std::max<int64_t>(0, ival(*count));
      if (seq->is_string()) {
        if (n > 0) ev.check_size(seq->str().size() * static_cast<size_t>(std::min<int64_t>(n, INT32_MAX)));
        std::string r;
        for (int64_t i = 0; i < n; ++i) r += seq->str();
        return Value(std::move(r));
      }
      if (n > 0) ev.check_size(seq->list_ref().size() * static_cast<size_t>(std::min<int64_t>(n, INT32_MAX)));
      List r;
      for (int64_t i = 0; i < n; ++i) r.insert(r.end(), seq->list_ref().begin(), seq->list_ref().end());
      return Value::list(std::move(r));
    }
    throw unsupported();
  }
  if (op == "%" && a.is_string()) {
    std::string r = percent_format(a.str(), b);
    ev.check_size(r.size());
    return Value(std::move(r));
  }
  if (!na || !nb) throw unsupported();
  if (op == "-") {
    if (ints) {
      int64_t r = 0;
      if (__builtin_sub_overflow(ival(a), ival(b), &r)) throw EvalError("integer overflow");
      return Value(r);
    }
    return Value(a.as_number() - b.as_number());
  }
  if (op == "/") {
    if (b.as_number() == 0) throw EvalError("division by zero");
    return Value(a.as_number() / b.as_number());
  }
  if (op == "//" || op == "%") {
    if (b.as_number() == 0) throw EvalError(op == "%" ? "integer modulo by zero" : "integer division by zero");
    if (ints) {
      int64_t x = ival(a), y = ival(b);
      if (x == INT64_MIN && y == -1) throw EvalError("integer overflow");
      int64_t q = x / y, r = x % y;
      if (r != 0 && ((r < 0) != (y < 0))) {
        --q;
        r += y;
      }
      return Value(op == "//" ? q : r);
    }
    double x = a.as_number(), y = b.as_number();
    double q = std::floor(x / y);
    return Value(op == "//" ? q : x - q * y);
  }
  if (op == "**") {
    if (ints && ival(b) >= 0) {
      int64_t base = ival(a), e = ival(b), r = 1;
      while (e-- > 0) {
        if (__builtin_mul_overflow(r, base, &r)) throw EvalError("integer overflow");
        if (r == 0 || r == 1) break;
      }
      return Value(r);
    }
    return Value(std::pow(a.as_number(), b.as_number()));
  }
  throw EvalError("unknown operator '" + op + "'");
}

// ---- filters ----
//
// One function per filter (the one-line ones in the table); all take the filter's name (for
// messages and shared filters), its input and arguments.

namespace {

using Filter = Value (*)(const std::string& name, Value in, CallArgs& a, Evaluator& ev);

// transformers: tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
Value filter_tojson(const std::string& name, Value in, CallArgs& a, Evaluator& ev) {
  JsonFormat f;
  if (const Value* v = a.get(0, "ensure_ascii")) f.ensure_ascii = v->truthy();
  if (const Value* v = a.get(1, "indent"); v && !v->is_none())
    f.indent = static_cast<int>(std::clamp<int64_t>(to_index(*v, "indent"), 0, 64));
  if (const Value* v = a.get(2, "separators"); v && !v->is_none()) {
    if (!v->is_list() || v->list_ref().size() != 2 || !v->list_ref()[0].is_string() || !v->list_ref()[1].is_string())
      throw EvalError("tojson separators must be a pair of strings");
    f.item_separator = v->list_ref()[0].str();
    f.key_separator = v->list_ref()[1].str();
    if (f.item_separator.empty() || f.key_separator.empty()) throw EvalError("tojson separators must not be empty");
  }
  if (const Value* v = a.get(3, "sort_keys")) f.sort_keys = v->truthy();
  std::string r = to_json(in, f);
  ev.check_size(r.size());
  return Value(std::move(r));
}

// Jinja: words start after whitespace, '-', and opening brackets
Value filter_title(const std::string& name, Value in, CallArgs& a, Evaluator& ev) {
  std::string out;
  bool start = true;
  for (uint32_t c : decode(in.to_str())) {
    bool sep = py_space(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
    encode_to(out, sep ? c : start ? to_upper(c) : to_lower(c));
    start = sep;
  }
  return Value(std::move(out));
}

Value filter_replace(const std::string& name, Value in, CallArgs& a, Evaluator& ev) {
  const char* fn = name.c_str();
  const Value* count = a.get(2, "count");
  return Value(py_replace(in.to_str(), a.need(0, "old", fn).to_str(), a.need(1, "new", fn).to_str(),
                          count && !count->is_none() ? to_index(*count, "count") : -1, ev));
}

Value filter_default(const std::string& name, Value in, CallArgs& a, Evaluator& ev) {
  bool boolean = test_arg_bool(a, 1, "boolean", false);
  if (in.is_undefined() || (boolean && !in.truthy())) {
    const Value* d = a.get(0, "default_value");
    return d ? *d : Value("");
  }
  return in;
}

Value filter_first(const std::string& name, Value in, CallArgs& a, Evaluator& ev) {
  List l = iterate(in);
  return l.empty() ? Value::undefined("first of an empty sequence") : l.front();
}

Value filter_last(const std::string& name, Value in, CallArgs& a, Evaluator& ev) {
  List l = iterate(in);
  return l.empty() ? Value::undefined("last of an empty sequence") : l.back();
}

Value filter_join(const std::string& name, Value in, CallArgs& a, Evaluator& ev) {
  List items = iterate(in);
  if (const Value* attr = a.get(1, "attribute"))
    for (auto& it : items) it = get_path(it, attr->to_str());
  const Value* sep = a.get(0, "d");
  return Value(join_values(items, sep ? sep->to_str() : "", ev));
}

Value filter_items(const std::string& name, Value in, CallArgs& a, Evaluator& ev) {
  if (in.is_undefined()) return Value::list();
  if (!in.is_dict()) throw EvalError("items filter expects a mapping, got '" + std::string(in.type_name()) + "'");
  CallArgs none;
  return dict_method(in, "items", none, ev);
}

Value filter_dictsort(const std::string& name, Value in, CallArgs& a, Evaluator& ev) {
  if (!in.is_dict()) throw EvalError("dictsort filter expects a mapping");
  bool cs = test_arg_bool(a, 0, "case_sensitive", false);
  const Value* by = a.get(1, "by");
  bool by_value = by && by->is_string() && by->str() == "value";
  bool reverse = test_arg_bool(a, 2, "reverse", false);
  auto items = in.dict_ref().items;
  std::stable_sort(items.begin(), items.end(), [&](const auto& x, const auto& y) {
    Value kx = by_value ? x.second : Value(x.first), ky = by_value ? y.second : Value(y.first);
    int c = compare(fold(kx, cs), fold(ky, cs), "<");
    return reverse ? c > 0 : c < 0;
  });
  List out;
  for (auto& [k, v] : items) out.push_back(Value::tuple({Value(k), v}));
  return Value::list(std::move(out));
}

Value filter_map(const std::string& name, Value in, CallArgs& a, Evaluator& ev) {
  List out;
  if (const Value* attr = a.get(SIZE_MAX, "attribute")) {
    const Value* dflt = a.get(SIZE_MAX, "default");
    for (const auto& item : iterate(in)) {
      Value v = get_path(item, attr->to_str());
      out.push_back(v.is_undefined() && dflt ? *dflt : v);
    }
    return Value::list(std::move(out));
  }
  if (a.pos.empty() || !a.pos[0].is_string()) throw EvalError("map needs a filter name or attribute=");
  std::string filter = a.pos[0].str();
  CallArgs rest;
  rest.pos.assign(a.pos.begin() + 1, a.pos.end());
  rest.kw = a.kw;
  for (const auto& item : iterate(in)) out.push_back(call_filter(filter, item, rest, ev));
  return Value::list(std::move(out));
}

Value filter_unique(const std::string& name, Value in, CallArgs& a, Evaluator& ev) {
  bool cs = test_arg_bool(a, 0, "case_sensitive", false);
  const Value* attr = a.get(1, "attribute");
  List out, seen;
  for (const auto& item : iterate(in)) {
    Value key = fold(attr ? get_path(item, attr->to_str()) : item, cs);
    if (std::find(seen.begin(), seen.end(), key) != seen.end()) continue;
    seen.push_back(key);
    out.push_back(item);
  }
  return Value::list(std::move(out));
}

Value filter_sort(const std::string& name, Value in, CallArgs& a, Evaluator& ev) {
  bool reverse = test_arg_bool(a, 0, "reverse", false);
  bool cs = test_arg_bool(a, 1, "case_sensitive", false);
  const Value* attr = a.get(2, "attribute");
  List items = iterate(in);
  std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
    Value kx = fold(attr ? get_path(x, attr->to_str()) : x, cs), ky = fold(attr ? get_path(y, attr->to_str()) : y, cs);
    int c = compare(kx, ky, "<");
    return reverse ? c > 0 : c < 0;
  });
  return Value::list(std::move(items));
}

Value filter_min_max(const std::string& name, Value in, CallArgs& a, Evaluator& ev) {
  bool cs = test_arg_bool(a, 0, "case_sensitive", false);
  const Value* attr = a.get(1, "attribute");
  List items = iterate(in);
  if (items.empty()) return Value::undefined("no " + name + " of an empty sequence");
  size_t best = 0;
  for (size_t i = 1; i < items.size(); ++i) {
    Value x = fold(attr ? get_path(items[i], attr->to_str()) : items[i], cs);
    Value y = fold(attr ? get_path(items[best], attr->to_str()) : items[best], cs);
    int c = compare(x, y, "<");
    if (name == "min" ? c < 0 : c > 0) best = i;
  }
  return items[best];
}

Value filter_reverse(const std::string& name, Value in, CallArgs& a, Evaluator& ev) {
  if (in.is_string()) {
    auto cps = decode(in.str());
    std::reverse(cps.begin(), cps.end());
    return Value(encode(cps));
  }
  List items = iterate(in);
  std::reverse(items.begin(), items.end());
  return Value::list(std::move(items));
}

Value filter_sum(const std::string& name, Value in, CallArgs& a, Evaluator& ev) {
  const Value* attr = a.get(0, "attribute");
  const Value* start = a.get(1, "start");
  Value total = start ? *start : Value(int64_t{0});
  for (const auto& item : iterate(in)) total = binary_op("+", total, attr ? get_path(item, attr->to_str()) : item, ev);
  return total;
}

Value filter_abs(const std::string& name, Value in, CallArgs& a, Evaluator& ev) {
  if (in.is_int()) {
    if (in.as_int() == INT64_MIN) throw EvalError("integer overflow");
    return Value(in.as_int() < 0 ? -in.as_int() : in.as_int());
  }
  if (in.is_float()) return Value(std::fabs(in.as_number()));
  if (in.is_bool()) return Value(static_cast<int64_t>(in.as_bool()));
  throw EvalError("bad operand type for abs(): '" + std::string(in.type_name()) + "'");
}

Value filter_int(const std::string& name, Value in, CallArgs& a, Evaluator& ev) {
  const Value* dflt = a.get(0, "default");
  Value fallback = dflt ? *dflt : Value(int64_t{0});
  if (in.is_int()) return in;
  if (in.is_bool()) return Value(static_cast<int64_t>(in.as_bool()));
  if (in.is_float()) {
    double x = in.as_number();
    if (!std::isfinite(x) || std::fabs(x) >= 9.2e18) return fallback;
    return Value(static_cast<int64_t>(x));
  }
  if (in.is_string()) {
    std::string s = py_strip(in.str(), nullptr, true, true);
    try {
      size_t used = 0;
      long long v = std::stoll(s, &used, 10);
      if (used == s.size()) return Value(static_cast<int64_t>(v));
      double d = std::stod(s, &used);
      if (used == s.size() && std::isfinite(d) && std::fabs(d) < 9.2e18) return Value(static_cast<int64_t>(d));
    } catch (const std::exception&) {
    }
  }
  return fallback;
}

Value filter_float(const std::string& name, Value in, CallArgs& a, Evaluator& ev) {
  const Value* dflt = a.get(0, "default");
  Value fallback = dflt ? *dflt : Value(0.0);
  if (in.is_number() || in.is_bool()) return Value(in.as_number());
  if (in.is_string()) {
    std::string s = py_strip(in.str(), nullptr, true, true);
    try {
      size_t used = 0;
      double d = std::stod(s, &used);
      if (used == s.size()) return Value(d);
    } catch (const std::exception&) {
    }
  }
  return fallback;
}

Value filter_round(const std::string& name, Value in, CallArgs& a, Evaluator& ev) {
  int64_t precision = a.get(0, "precision") ? to_index(*a.get(0, "precision"), "precision") : 0;
  precision = std::clamp<int64_t>(precision, -20, 20);
  const Value* method = a.get(1, "method");
  std::string m = method ? method->to_str() : "common";
  double scale = std::pow(10.0, static_cast<double>(precision)), x = in.as_number() * scale;
  double r = m == "floor" ? std::floor(x) : m == "ceil" ? std::ceil(x) : std::round(x);
  return Value(r / scale);
}

Value filter_format(const std::string& name, Value in, CallArgs& a, Evaluator& ev) {
  List args(a.pos.begin(), a.pos.end());
  return Value(percent_format(in.to_str(), Value::list(std::move(args))));
}

Value filter_indent(const std::string& name, Value in, CallArgs& a, Evaluator& ev) {
  int64_t width = a.get(0, "width") ? to_index(*a.get(0, "width"), "width") : 4;
  std::string pad(static_cast<size_t>(std::clamp<int64_t>(width, 0, 256)), ' ');
  bool first = test_arg_bool(a, 1, "first", false), blank = test_arg_bool(a, 2, "blank", false);
  std::string s = in.to_str(), out;
  size_t start = 0;
  bool is_first = true;
  while (true) {
    size_t nl = s.find('\n', start);
    std::string line = s.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
    if ((is_first ? first : true) && (blank || !line.empty())) out += pad;
    out += line;
    ev.check_size(out.size());
    if (nl == std::string::npos) break;
    out += '\n';
    start = nl + 1;
    is_first = false;
  }
  return Value(std::move(out));
}

// The header of a filter written in place (a lambda convertible to Filter).
#define OWL_FILTER [](const std::string& name, Value in, CallArgs& a, Evaluator& ev) -> Value

const std::unordered_map<std::string_view, Filter>& filters() {
  static const std::unordered_map<std::string_view, Filter> table = {
      {"tojson", filter_tojson}, {"title", filter_title}, {"replace", filter_replace}, {"default", filter_default},
      {"d", filter_default}, {"first", filter_first}, {"last", filter_last}, {"join", filter_join},
      {"items", filter_items}, {"dictsort", filter_dictsort}, {"map", filter_map}, {"unique", filter_unique},
      {"sort", filter_sort}, {"min", filter_min_max}, {"max", filter_min_max}, {"reverse", filter_reverse},
      {"sum", filter_sum}, {"abs", filter_abs}, {"int", filter_int}, {"float", filter_float}, {"round", filter_round},
      {"format", filter_format}, {"indent", filter_indent},
      {"trim", OWL_FILTER{return Value(py_strip(in.to_str(), a.get(0, "chars"), true, true));
}
}  // namespace
, {"length", OWL_FILTER{return Value(static_cast<int64_t>(py_len(in)));
}  // namespace owl::jinja
}
, {"count", OWL_FILTER{return Value(static_cast<int64_t>(py_len(in)));
}
}
, {"string", OWL_FILTER{return Value(in.to_str());
}
}
, {"list", OWL_FILTER{return Value::list(iterate(in));
}
}
, {"safe", OWL_FILTER{return in;
}
}
, {"forceescape", OWL_FILTER{return in;
}
}
, {"e", OWL_FILTER{return Value(html_escape(in.to_str()));
}
}
, {"escape", OWL_FILTER{return Value(html_escape(in.to_str()));
}
}
, {"upper", OWL_FILTER{return Value(map_chars(in.to_str(), to_upper));
}
}
, {"lower", OWL_FILTER{return Value(map_chars(in.to_str(), to_lower));
}
}
, {"capitalize", OWL_FILTER{return Value(py_capitalize(in.to_str()));
}
}
, {"select", OWL_FILTER{return filter_by_test(in, a, ev, false, true);
}
}
, {"reject", OWL_FILTER{return filter_by_test(in, a, ev, false, false);
}
}
, {"selectattr", OWL_FILTER{return filter_by_test(in, a, ev, true, true);
}
}
, {"rejectattr", OWL_FILTER{return filter_by_test(in, a, ev, true, false);
}
}
, {"attr", OWL_FILTER{return get_attr(in, a.need(0, "name", name.c_str()).to_str());
}
}
, {"wordcount", OWL_FILTER{return Value(static_cast<int64_t>(py_split(in.to_str(), nullptr, nullptr, false).size()));
}
}
, {"pprint", OWL_FILTER{return Value(in.repr());
}
}
,
}
;
return table;
}
#undef OWL_FILTER

}  // namespace

Value call_filter(const std::string& name, Value in, CallArgs& a, Evaluator& ev) {
  auto it = filters().find(name);
  if (it == filters().end()) throw EvalError("unknown filter '" + name + "'");
  return it->second(name, std::move(in), a, ev);
}

// ---- tests ----

bool call_test(const std::string& name, const Value& v, CallArgs& a, Evaluator& ev) {
  (void)ev;
  const char* fn = name.c_str();
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "boolean") return v.is_bool();
  if (name == "false") return v.is_bool() && !v.as_bool();
  if (name == "true") return v.is_bool() && v.as_bool();
  if (name == "integer") return v.is_int();
  if (name == "float") return v.is_float();
  if (name == "number") return v.is_number() || v.is_bool();
  if (name == "string") return v.is_string();
  if (name == "mapping") return v.is_dict() && !v.dict_ref().is_namespace;
  if (name == "sequence") return v.is_string() || v.is_list() || (v.is_dict() && !v.dict_ref().is_namespace);
  if (name == "iterable")
    return v.is_string() || v.is_list() || v.is_undefined() || (v.is_dict() && !v.dict_ref().is_namespace);
  if (name == "callable") return v.is_callable();
  if (name == "eq" || name == "equalto" || name == "==") return v == a.need(0, "other", fn);
  if (name == "ne" || name == "!=") return !(v == a.need(0, "other", fn));
  if (name == "lt" || name == "lessthan" || name == "<") return compare(v, a.need(0, "other", fn), "<") < 0;
  if (name == "le" || name == "<=") return compare(v, a.need(0, "other", fn), "<=") <= 0;
  if (name == "gt" || name == "greaterthan" || name == ">") return compare(v, a.need(0, "other", fn), ">") > 0;
  if (name == "ge" || name == ">=") return compare(v, a.need(0, "other", fn), ">=") >= 0;
  if (name == "in") return contains(a.need(0, "seq", fn), v);
  if (name == "sameas") return v.same_object(a.need(0, "other", fn));
  if (name == "odd" || name == "even" || name == "divisibleby") {
    if (!v.is_int()) throw EvalError("the '" + name + "' test needs an integer");
    if (name == "divisibleby") {
      int64_t d = to_index(a.need(0, "num", fn), "num");
      if (d == 0) throw EvalError("integer modulo by zero");
      return d == -1 || v.as_int() % d == 0;
    }
    return (v.as_int() % 2 != 0) == (name == "odd");
  }
  if (name == "lower" || name == "upper") {
    if (!v.is_string()) return false;
    CallArgs none;
    return string_method(v.str(), name == "lower" ? "islower" : "isupper", none, ev).as_bool();
  }
  throw EvalError("unknown test '" + name + "'");
}

// dict(...) and namespace(...): the entries of mappings given by position, then the keywords.
static Value dict_of(CallArgs& a, const std::string& fn) {
  Dict d;
  d.is_namespace = fn == "namespace";
  for (const auto& p : a.pos) {
    if (!p.is_dict()) throw EvalError(fn + "() positional argument must be a mapping");
    for (const auto& [k, v] : p.dict_ref().items) d.set(k, v);
  }
  for (const auto& [k, v] : a.kw) d.set(k, v);
  return Value::dict(std::move(d));
}

// ---- globals ----

void install_globals(Scope& g) {
  g.vars["range"] = Value::callable("range", [](CallArgs& a, Evaluator& ev) -> Value {
    if (a.pos.empty() || a.pos.size() > 3) throw EvalError("range expected 1 to 3 arguments");
    int64_t start = 0, stop, step = 1;
    if (a.pos.size() == 1) {
      stop = to_index(a.pos[0], "range bound");
    } else {
      start = to_index(a.pos[0], "range bound");
      stop = to_index(a.pos[1], "range bound");
      if (a.pos.size() == 3) step = to_index(a.pos[2], "range step");
    }
    if (step == 0) throw EvalError("range() arg 3 must not be zero");
    // Count first (in double: no overflow), so a huge range is refused before it is built.
    double n = std::ceil((static_cast<double>(stop) - static_cast<double>(start)) / static_cast<double>(step));
    if (n > 0) ev.count_iterations(static_cast<uint64_t>(std::min(n, 1e18)));
    List out;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
      out.emplace_back(i);
      if ((step > 0 && i > INT64_MAX - step) || (step < 0 && i < INT64_MIN - step)) break;
    }
    return Value::list(std::move(out));
  });
  g.vars["namespace"] = Value::callable("namespace", [](CallArgs& a, Evaluator&) { return dict_of(a, "namespace"); });
  g.vars["dict"] = Value::callable("dict", [](CallArgs& a, Evaluator&) { return dict_of(a, "dict"); });
  g.vars["raise_exception"] = Value::callable("raise_exception", [](CallArgs& a, Evaluator&) -> Value {
    throw EvalError(a.pos.empty() ? std::string("raise_exception() called") : a.pos[0].to_str());
  });
  g.vars["strftime_now"] = Value::callable("strftime_now", [](CallArgs& a, Evaluator& ev) -> Value {
    const Value& f = arg_string(a, 0, "format", "strftime_now");
    std::time_t now = ev.options().fixed_time ? static_cast<std::time_t>(*ev.options().fixed_time) : std::time(nullptr);
    std::tm tm{};
    localtime_r(&now, &tm);
    if (f.str().empty()) return Value("");
    char buf[1024];
    size_t n = std::strftime(buf, sizeof buf, f.str().c_str(), &tm);
    if (n == 0) throw EvalError("strftime_now: format produced no output or is too long");
    return Value(std::string(buf, n));
  });
}

}  // namespace owl::jinja
