#include "grammar/json_schema.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <optional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "grammar/chars.h"
#include "grammar/matcher.h"
#include "grammar/number_range.h"
#include "grammar/regex.h"

namespace owl::grammar {

namespace {

using json = nlohmann::ordered_json;

// Keywords that only annotate; validators ignore them and so do we.
const std::set<std::string, std::less<>> kAnnotations = {"$schema",
                                                         "$id",
                                                         "id",
                                                         "title",
                                                         "description",
                                                         "default",
                                                         "examples",
                                                         "example",
                                                         "$comment",
                                                         "readOnly",
                                                         "writeOnly",
                                                         "deprecated",
                                                         "contentEncoding",
                                                         "contentMediaType",
                                                         "definitions",
                                                         "$defs",
                                                         "$anchor",
                                                         "discriminator",
                                                         "xml",
                                                         "externalDocs",
                                                         "$vocabulary",
                                                         "markdownDescription"};

// Validation keywords owl cannot enforce: a schema using them does not compile.
const std::set<std::string, std::less<>> kUnsupported = {
    "not",           "if",          "dependencies",  "dependentRequired",     "dependentSchemas", "contains",
    "minContains",   "maxContains", "propertyNames", "unevaluatedProperties", "unevaluatedItems", "$dynamicRef",
    "$recursiveRef", "multipleOf"};

const std::set<std::string, std::less<>> kStandardFormats = {
    "date-time", "date",          "time", "duration",     "email",        "idn-email",
    "hostname",  "idn-hostname",  "ipv4", "ipv6",         "uri",          "uri-reference",
    "iri",       "iri-reference", "uuid", "uri-template", "json-pointer", "relative-json-pointer",
    "regex"};

// RFC 3339 full-date with the days of each month (29 February only in leap years).
const std::string kDate =
    R"((\d{4}-((0[13578]|1[02])-(0[1-9]|[12]\d|3[01])|(0[469]|11)-(0[1-9]|[12]\d|30)|02-(0[1-9]|1\d|2[0-8]))|)"
    R"((\d\d(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26]|00)00)-02-29))";
const std::string kTime = R"(([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d+)?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d))";

const std::map<std::string, std::string, std::less<>> kFormatRegex = {
    {"date", "^" + kDate + "$"},
    {"time", "^" + kTime + "$"},
    {"date-time", "^" + kDate + "[Tt]" + kTime + "$"},
    {"uuid", R"(^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$)"},
    {"email",
     R"(^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$)"},
    {"hostname", R"(^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$)"},
    {"ipv4", R"(^((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$)"},
    {"uri", R"(^[A-Za-z][A-Za-z0-9+.-]*:[^\x00-\x20"<>\\^`{|}]*$)"},
    {"uri-reference", R"(^[^\x00-\x20"<>\\^`{|}]*$)"},
};

bool is_integer_value(const json& v) {
  if (v.is_number_integer()) return true;
  if (v.is_number_float()) {
    double d = v.get<double>();
    return std::isfinite(d) && std::floor(d) == d;
  }
  return false;
}

bool value_has_type(const json& v, const std::string& t) {
  if (t == "null") return v.is_null();
  if (t == "boolean") return v.is_boolean();
  if (t == "string") return v.is_string();
  if (t == "number") return v.is_number();
  if (t == "integer") return is_integer_value(v);
  if (t == "object") return v.is_object();
  if (t == "array") return v.is_array();
  return false;
}

const std::vector<std::string> kAllTypes = {"object", "array", "string", "number", "boolean", "null"};

// The JSON-pointer path of a local $ref ("#/definitions/a~1b" -> {"definitions", "a/b"}).
std::vector<std::string> ref_path(const std::string& ref) {
  if (ref.empty() || ref[0] != '#')
    throw CompileError("$ref '" + ref + "': only local references (#/...) are supported");
  std::vector<std::string> out;
  if (ref.size() == 1) return out;
  if (ref[1] != '/') throw CompileError("$ref '" + ref + "': anchors are not supported, use a JSON pointer");
  std::string cur;
  auto flush = [&] {
    std::string dec;
    for (size_t i = 0; i < cur.size(); ++i) {
      if (cur[i] == '~' && i + 1 < cur.size()) {
        dec.push_back(cur[i + 1] == '1' ? '/' : '~');
        ++i;
      } else if (cur[i] == '%' && i + 2 < cur.size() && std::isxdigit(static_cast<unsigned char>(cur[i + 1])) &&
                 std::isxdigit(static_cast<unsigned char>(cur[i + 2]))) {
        dec.push_back(static_cast<char>(std::stoi(cur.substr(i + 1, 2), nullptr, 16)));
        i += 2;
      } else {
        dec.push_back(cur[i]);
      }
    }
    out.push_back(dec);
    cur.clear();
  };
  for (size_t i = 2; i < ref.size(); ++i) {
    if (ref[i] == '/') {
      flush();
    } else {
      cur.push_back(ref[i]);
    }
  }
  flush();
  return out;
}

class SchemaCompiler {
 public:
  explicit SchemaCompiler(const json& root) : root_(root), pool_(own_pool_) {}
  // Adds the schema's rules to another grammar's pool.
  SchemaCompiler(const json& root, ExprPool& pool) : root_(root), pool_(pool) {}

  // The schema as a rule of the pool (a reference to it).
  ExprId as_expr(const std::string& name) {
    RuleId top = pool_.add_rule(name);
    pool_.set_rule(top, compile(root_));
    if (pool_.is_nothing(pool_.rule_body(top)))
      throw CompileError("the schema is unsatisfiable: no value can match it");
    return pool_.ref(top);
  }

  std::shared_ptr<const Grammar> run() {
    RuleId top = pool_.add_rule("root");
    pool_.set_rule(top, compile(root_));
    if (pool_.is_nothing(pool_.rule_body(top)))
      throw CompileError("the schema is unsatisfiable: no value can match it");
    return grammar::compile(pool_, top);
  }

  std::shared_ptr<const Grammar> any_object() {
    RuleId top = pool_.add_rule("root");
    pool_.set_rule(top, pool_.ref(object_any()));
    return grammar::compile(pool_, top);
  }

 private:
  const json& resolve(const std::string& ref) {
    const json* cur = &root_;
    for (const std::string& part : ref_path(ref)) {
      if (cur->is_object() && cur->contains(part)) {
        cur = &(*cur)[part];
      } else if (cur->is_array() && !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit) &&
                 std::stoul(part) < cur->size()) {
        cur = &(*cur)[std::stoul(part)];
      } else {
        throw CompileError("$ref '" + ref + "' does not resolve inside the schema");
      }
    }
    return *cur;
  }

  static bool is_validation_key(const std::string& k) { return !kAnnotations.contains(k) && k.rfind("x-", 0) != 0; }

  static bool has_validation(const json& s, std::initializer_list<const char*> except) {
    for (auto it = s.begin(); it != s.end(); ++it) {
      if (!is_validation_key(it.key())) continue;
      bool skip = false;
      for (const char* e : except) skip = skip || it.key() == e;
      if (!skip) return true;
    }
    return false;
  }

  // ---- the generic JSON rules ----
  // Inline (not a rule) so that a string's rule ends only at its closing quote: the mask
  // engine then decides every token inside a string without looking at the context.
  ExprId string_chars() { return pool_.star(char_expr(pool_, CharSet::any(), CharEncoding::kJsonString)); }
  ExprId as_rule(const char* name, ExprId e) {
    if (pool_.is_nothing(e)) return e;
    RuleId r = pool_.add_rule(name);
    pool_.set_rule(r, e);
    return pool_.ref(r);
  }
  ExprId quoted(ExprId content) { return pool_.seq({pool_.byte('"'), content, pool_.byte('"')}); }
  RuleId string_any() {
    if (!string_any_) {
      string_any_ = pool_.add_rule("string");
      pool_.set_rule(*string_any_, quoted(string_chars()));
    }
    return *string_any_;
  }
  ExprId digits() { return pool_.plus(pool_.bytes(ByteSet::range('0', '9'))); }
  ExprId uint_expr() {
    return pool_.alt({pool_.byte('0'), pool_.seq({pool_.bytes(ByteSet::range('1', '9')),
                                                  pool_.star(pool_.bytes(ByteSet::range('0', '9')))})});
  }
  ExprId integer_any() { return pool_.seq({pool_.opt(pool_.byte('-')), uint_expr()}); }
  ExprId fraction() { return pool_.seq({pool_.byte('.'), digits()}); }
  ExprId exponent() {
    ByteSet e = ByteSet::of('e');
    e.add('E');
    ByteSet sign = ByteSet::of('+');
    sign.add('-');
    return pool_.seq({pool_.bytes(e), pool_.opt(pool_.bytes(sign)), digits()});
  }
  RuleId number_any() {
    if (!number_any_) {
      number_any_ = pool_.add_rule("number");
      pool_.set_rule(*number_any_, pool_.seq({integer_any(), pool_.opt(fraction()), pool_.opt(exponent())}));
    }
    return *number_any_;
  }
  RuleId value_any() {
    if (!value_any_) {
      value_any_ = pool_.add_rule("value");
      RuleId arr = pool_.add_rule("array");
      ExprId v = pool_.ref(*value_any_);
      pool_.set_rule(arr,
                     pool_.seq({pool_.byte('['), pool_.opt(pool_.seq({v, pool_.star(pool_.seq({pool_.byte(','), v}))})),
                                pool_.byte(']')}));
      pool_.set_rule(*value_any_, pool_.alt({pool_.ref(object_any()), pool_.ref(arr), pool_.ref(string_any()),
                                             pool_.ref(number_any()), pool_.literal("true"), pool_.literal("false"),
                                             pool_.literal("null")}));
    }
    return *value_any_;
  }
  RuleId object_any() {
    if (!object_any_) {
      object_any_ = pool_.add_rule("object");
      RuleId member = pool_.add_rule("member");
      pool_.set_rule(member, pool_.seq({pool_.ref(string_any()), pool_.byte(':'), pool_.ref(value_any())}));
      ExprId m = pool_.ref(member);
      pool_.set_rule(*object_any_,
                     pool_.seq({pool_.byte('{'), pool_.opt(pool_.seq({m, pool_.star(pool_.seq({pool_.byte(','), m}))})),
                                pool_.byte('}')}));
    }
    return *object_any_;
  }

  ExprId literal_value(const json& v) { return pool_.literal(v.dump(-1, ' ', false)); }

  // ---- allOf: one merged schema ----
  json deref(const json& s, int depth) {
    if (depth > 64) throw CompileError("allOf/$ref nesting too deep (recursive allOf?)");
    if (!s.is_object() || !s.contains("$ref")) return s;
    json target = deref(resolve(s["$ref"].get<std::string>()), depth + 1);
    json rest = s;
    rest.erase("$ref");
    if (!has_validation(rest, {})) return target;
    return merge(target, rest, depth + 1);
  }

  json flatten(const json& s, int depth) {
    json d = deref(s, depth);
    if (d.is_boolean()) return d.get<bool>() ? json::object() : json{{"type", json::array()}};
    if (!d.is_object() || !d.contains("allOf")) return d;
    json acc = d;
    acc.erase("allOf");
    for (const json& b : d["allOf"]) acc = merge(acc, flatten(b, depth + 1), depth + 1);
    return acc;
  }

  static json types_of(const json& s) {
    if (!s.contains("type")) return json();
    return s["type"].is_array() ? s["type"] : json::array({s["type"]});
  }

  json merge(const json& a0, const json& b0, int depth) {
    json a = flatten(a0, depth + 1), b = flatten(b0, depth + 1);
    for (auto it = b.begin(); it != b.end(); ++it) {
      const std::string& k = it.key();
      const json& bv = it.value();
      if (!a.contains(k)) {
        a[k] = bv;
        continue;
      }
      json& av = a[k];
      if (av == bv || !is_validation_key(k)) continue;
      if (k == "type") {
        json ta = types_of(a), tb = types_of(b), out = json::array();
        for (const json& t : ta) {
          for (const json& u : tb) {
            if (t == u)
              out.push_back(t);
            else if (t == "number" && u == "integer")
              out.push_back(u);
            else if (t == "integer" && u == "number")
              out.push_back(t);
          }
        }
        av = out;
      } else if (k == "properties") {
        for (auto p = bv.begin(); p != bv.end(); ++p) {
          if (av.contains(p.key())) {
            av[p.key()] = json{{"allOf", json::array({av[p.key()], p.value()})}};
          } else {
            av[p.key()] = p.value();
          }
        }
      } else if (k == "required") {
        for (const json& r : bv)
          if (std::find(av.begin(), av.end(), r) == av.end()) av.push_back(r);
      } else if (k == "minLength" || k == "minItems" || k == "minimum" || k == "minProperties" ||
                 (k == "exclusiveMinimum" && av.is_number() && bv.is_number())) {
        if (bv > av) av = bv;
      } else if (k == "maxLength" || k == "maxItems" || k == "maximum" || k == "maxProperties" ||
                 (k == "exclusiveMaximum" && av.is_number() && bv.is_number())) {
        if (bv < av) av = bv;
      } else if (k == "enum") {
        json out = json::array();
        for (const json& v : av)
          if (std::find(bv.begin(), bv.end(), v) != bv.end()) out.push_back(v);
        av = out;
      } else if (k == "items" && av.is_object() == bv.is_object() && !av.is_array()) {
        av = json{{"allOf", json::array({av, bv})}};
      } else if (k == "additionalProperties") {
        if (av == false || bv == false)
          av = false;
        else
          av = json{{"allOf", json::array({av, bv})}};
      } else if (k == "anyOf" || k == "oneOf") {
        json out = json::array();
        for (const json& x : av)
          for (const json& y : bv) out.push_back(json{{"allOf", json::array({x, y})}});
        if (out.size() > 256) throw CompileError("allOf of two " + k + " lists is too large to expand");
        av = out;
      } else {
        throw CompileError("allOf: cannot combine two different '" + k + "' keywords");
      }
    }
    // additionalProperties of one branch applies to the properties the other branch adds.
    auto restrict = [&](const json& side, const json& other) {
      if (!side.contains("additionalProperties") || !other.contains("properties") || !a.contains("properties")) return;
      const json& ap = side["additionalProperties"];
      if (ap == true) return;
      const json& own = side.contains("properties") ? side["properties"] : json::object();
      for (auto p = other["properties"].begin(); p != other["properties"].end(); ++p) {
        if (own.contains(p.key())) continue;
        if (side.contains("patternProperties"))
          throw CompileError("allOf: additionalProperties with patternProperties in another branch");
        a["properties"][p.key()] =
            ap == false ? json(false) : json{{"allOf", json::array({a["properties"][p.key()], ap})}};
      }
    };
    json fa = flatten(a0, depth + 1), fb = b;
    restrict(fa, fb);
    restrict(fb, fa);
    return a;
  }

  // ---- oneOf: can two (flattened) schemas match the same value? false only when provably not ----
  static std::set<std::string> admitted_types(const json& s) {
    std::set<std::string> out;
    if (s.is_boolean()) {
      if (s.get<bool>()) out.insert(kAllTypes.begin(), kAllTypes.end());
      return out;
    }
    if (s.contains("const") || s.contains("enum")) {
      json values = s.contains("const") ? json::array({s["const"]}) : s["enum"];
      for (const json& v : values)
        for (const std::string& t : kAllTypes)
          if (value_has_type(v, t) || (t == "number" && value_has_type(v, "integer"))) out.insert(t);
    } else {
      out.insert(kAllTypes.begin(), kAllTypes.end());
    }
    json types = types_of(s);
    if (!types.is_null()) {
      std::set<std::string> named;
      for (const json& t : types) named.insert(t.get<std::string>() == "integer" ? "number" : t.get<std::string>());
      if (s.value("nullable", false)) named.insert("null");
      std::set<std::string> both;
      for (const std::string& t : out)
        if (named.contains(t)) both.insert(t);
      out = both;
    }
    return out;
  }

  static bool forbids(const json& s, const std::string& prop) {
    if (!s.is_object()) return false;
    if (s.contains("properties") && s["properties"].contains(prop)) return s["properties"][prop] == false;
    if (s.contains("patternProperties") && !s["patternProperties"].empty()) return false;
    return s.contains("additionalProperties") && s["additionalProperties"] == false;
  }

  static std::vector<std::string> required_of(const json& s) {
    std::vector<std::string> out;
    if (s.is_object() && s.contains("required") && s["required"].is_array())
      for (const json& r : s["required"])
        if (r.is_string()) out.push_back(r.get<std::string>());
    return out;
  }

  bool disjoint(const json& a0, const json& b0, int depth) {
    if (depth > 8) return false;
    json a = flatten(a0, depth), b = flatten(b0, depth);
    std::set<std::string> ta = admitted_types(a), tb = admitted_types(b);
    bool common = false;
    for (const std::string& t : ta) common = common || tb.contains(t);
    if (!common) return true;
    if ((a.contains("const") || a.contains("enum")) && (b.contains("const") || b.contains("enum"))) {
      json va = a.contains("const") ? json::array({a["const"]}) : a["enum"];
      json vb = b.contains("const") ? json::array({b["const"]}) : b["enum"];
      bool shared = false;
      for (const json& v : va) shared = shared || std::find(vb.begin(), vb.end(), v) != vb.end();
      if (!shared) return true;
    }
    // Only objects are left in common: a property one requires and the other forbids, or
    // requires with a disjoint schema, separates them.
    if (ta.size() > 1 || !ta.contains("object") || tb.size() > 1) return false;
    const std::vector<std::string> req_b = required_of(b);
    for (const std::string& r : required_of(a)) {
      if (forbids(b, r)) return true;
      if (a.contains("properties") && a["properties"].contains(r) && b.contains("properties") &&
          b["properties"].contains(r) && std::find(req_b.begin(), req_b.end(), r) != req_b.end() &&
          disjoint(a["properties"][r], b["properties"][r], depth + 1))
        return true;
    }
    for (const std::string& r : required_of(b))
      if (forbids(a, r)) return true;
    return false;
  }

  // ---- compile ----
  void check_keywords(const json& s) {
    std::string bad;
    for (auto it = s.begin(); it != s.end(); ++it) {
      const std::string& k = it.key();
      bool unsupported = kUnsupported.contains(k);
      if (k == "uniqueItems")
        unsupported =
            it.value() == true && !(s.contains("maxItems") && s["maxItems"].is_number() && s["maxItems"] <= 1);
      if (k == "multipleOf")
        unsupported = !(it.value().is_number() && it.value() == 1 && types_of(s) == json::array({"integer"}));
      if (unsupported) bad += (bad.empty() ? "" : ", ") + k;
    }
    if (!bad.empty()) throw CompileError("unsupported JSON Schema keyword: " + bad);
  }

  RuleId ref_rule(const std::string& ref) {
    auto it = ref_rules_.find(ref);
    if (it != ref_rules_.end()) return it->second;
    RuleId r = pool_.add_rule("ref:" + ref);
    ref_rules_.emplace(ref, r);
    pool_.set_rule(r, compile(resolve(ref)));
    return r;
  }

  ExprId compile(const json& s) {
    if (++depth_ > 200) throw CompileError("schema nested deeper than 200 levels");
    struct Guard {
      int& d;
      ~Guard() { --d; }
    } guard{depth_};
    if (s.is_boolean()) return s.get<bool>() ? pool_.ref(value_any()) : pool_.nothing();
    if (!s.is_object()) throw CompileError("a schema must be an object or a boolean, got " + s.dump());
    if (s.contains("$ref")) {
      if (!s["$ref"].is_string()) throw CompileError("$ref must be a string");
      json rest = s;
      rest.erase("$ref");
      if (!has_validation(rest, {})) return pool_.ref(ref_rule(s["$ref"].get<std::string>()));
      return compile(flatten(s, 0));
    }
    if (s.contains("allOf")) return compile(flatten(s, 0));
    check_keywords(s);
    for (const char* k : {"anyOf", "oneOf"}) {
      if (!s.contains(k)) continue;
      if (!s[k].is_array() || s[k].empty()) throw CompileError(std::string(k) + " must be a non-empty array");
      json rest = s;
      rest.erase(k);
      std::vector<ExprId> alts;
      bool plain = !has_validation(rest, {});
      std::vector<json> branches;
      for (const json& b : s[k]) branches.push_back(plain ? flatten(b, 0) : merge(rest, b, 0));
      if (std::string(k) == "oneOf") {
        // oneOf is anyOf when no value can match two branches; exclusivity itself is not enforced.
        for (size_t i = 0; i < branches.size(); ++i)
          for (size_t j = i + 1; j < branches.size(); ++j)
            if (!disjoint(branches[i], branches[j], 0))
              throw CompileError("unsupported JSON Schema keyword: oneOf (branches " + std::to_string(i) + " and " +
                                 std::to_string(j) + " may both match)");
      }
      for (const json& b : branches) alts.push_back(compile(b));
      return pool_.alt(std::move(alts));
    }
    json types = types_of(s);
    if (types.is_null()) {
      types = json::array();
      for (const std::string& t : kAllTypes) types.push_back(t);
    }
    if (s.value("nullable", false) && std::find(types.begin(), types.end(), "null") == types.end())
      types.push_back("null");
    bool has_number = std::find(types.begin(), types.end(), "number") != types.end();
    if (s.contains("const") || s.contains("enum")) {
      json values = s.contains("const") ? json::array({s["const"]}) : s["enum"];
      if (!values.is_array()) throw CompileError("enum must be an array");
      if (s.contains("const") && s.contains("enum") &&
          std::find(s["enum"].begin(), s["enum"].end(), s["const"]) == s["enum"].end())
        return pool_.nothing();
      std::vector<ExprId> alts;
      for (const json& v : values) {
        bool ok = false;
        for (const json& t : types) ok = ok || value_has_type(v, t.get<std::string>());
        if (ok) alts.push_back(literal_value(v));
      }
      return pool_.alt(std::move(alts));
    }
    std::vector<ExprId> alts;
    for (const json& tj : types) {
      if (!tj.is_string()) throw CompileError("type must be a string or an array of strings");
      const std::string t = tj.get<std::string>();
      if (t == "string")
        alts.push_back(compile_string(s));
      else if (t == "number")
        alts.push_back(compile_number(s, false));
      else if (t == "integer") {
        if (!has_number) alts.push_back(compile_number(s, true));
      } else if (t == "boolean")
        alts.push_back(pool_.alt({pool_.literal("true"), pool_.literal("false")}));
      else if (t == "null")
        alts.push_back(pool_.literal("null"));
      else if (t == "object")
        alts.push_back(compile_object(s));
      else if (t == "array")
        alts.push_back(compile_array(s));
      else
        throw CompileError("unknown type '" + t + "'");
    }
    return pool_.alt(std::move(alts));
  }

  static uint32_t count(const json& s, const char* k, uint32_t dflt) {
    if (!s.contains(k)) return dflt;
    if (!s[k].is_number() || s[k].get<double>() < 0)
      throw CompileError(std::string(k) + " must be a non-negative number");
    double v = s[k].get<double>();
    return v >= 1e9 ? kUnbounded : static_cast<uint32_t>(std::ceil(v));
  }

  // Every string schema with the same format or pattern (or the same length bounds) is one
  // rule: the mask engine then decides its tokens once per grammar, not once per property
  // (a schema with nine `format: uri` properties walks the vocabulary for one).
  ExprId compile_string(const json& s) {
    uint32_t mn = count(s, "minLength", 0), mx = count(s, "maxLength", kUnbounded);
    if (mx != kUnbounded && mn > mx) return pool_.nothing();
    std::optional<std::string> re_source;
    if (s.contains("format") && s["format"].is_string()) re_source = format_regex(s["format"].get<std::string>());
    if (s.contains("pattern")) {
      if (!s["pattern"].is_string()) throw CompileError("pattern must be a string");
      if (re_source) throw CompileError("pattern together with format is not supported");
      re_source = s["pattern"].get<std::string>();
    }
    if (re_source) {
      auto it = pattern_rules_.find(*re_source);
      if (it == pattern_rules_.end()) {
        CompiledRegex re = compile_regex(pool_, *re_source, CharEncoding::kJsonString, true);
        it = pattern_rules_
                 .emplace(*re_source, PatternRule{as_rule("pattern", quoted(re.expr)), re.min_chars, re.max_chars})
                 .first;
      }
      const PatternRule& pr = it->second;
      bool implied = pr.min_chars >= mn && (mx == kUnbounded || (pr.max_chars != kUnbounded && pr.max_chars <= mx));
      if (!implied) throw CompileError("minLength/maxLength together with pattern or format is not supported");
      return pr.expr;
    }
    if (mn == 0 && mx == kUnbounded) return pool_.ref(string_any());
    if (mx != kUnbounded && mx > 10000) throw CompileError("maxLength above 10000 is not supported");
    if (mn > 10000) throw CompileError("minLength above 10000 is not supported");
    auto [it, fresh] = bounded_strings_.emplace(std::make_pair(mn, mx), ExprId{0});
    if (!fresh) return it->second;
    ExprId ch = char_expr(pool_, CharSet::any(), CharEncoding::kJsonString);
    if (mx == kUnbounded)
      it->second = as_rule("string", quoted(pool_.seq({pool_.repeat(ch, mn, mn), string_chars()})));
    else
      it->second = as_rule("string", quoted(pool_.repeat(ch, mn, mx)));
    return it->second;
  }

  ExprId compile_number(const json& s, bool integer) {
    NumberBounds b;
    auto num = [&](const char* k) -> std::optional<double> {
      if (!s.contains(k)) return std::nullopt;
      if (s[k].is_boolean()) return std::nullopt;
      if (!s[k].is_number()) throw CompileError(std::string(k) + " must be a number");
      return s[k].get<double>();
    };
    if (auto v = num("minimum")) b.lo = *v;
    if (auto v = num("maximum")) b.hi = *v;
    if (s.contains("exclusiveMinimum")) {
      if (s["exclusiveMinimum"].is_boolean()) {
        b.lo_exclusive = s["exclusiveMinimum"].get<bool>();
      } else if (auto v = num("exclusiveMinimum"); !b.lo || *v >= *b.lo) {
        b.lo = *v;
        b.lo_exclusive = true;
      }
    }
    if (s.contains("exclusiveMaximum")) {
      if (s["exclusiveMaximum"].is_boolean()) {
        b.hi_exclusive = s["exclusiveMaximum"].get<bool>();
      } else if (auto v = num("exclusiveMaximum"); !b.hi || *v <= *b.hi) {
        b.hi = *v;
        b.hi_exclusive = true;
      }
    }
    if (!b.lo && !b.hi) {
      if (integer) return integer_any();
      return pool_.ref(number_any());
    }
    return number_range_expr(pool_, b, integer);
  }

  // A JSON string whose decoded content is none of `names`, in canonical encoding.
  ExprId key_not_in(const std::vector<std::string>& names) {
    struct TrieNode {
      std::map<uint32_t, size_t> kids;
      bool end = false;
    };
    std::vector<TrieNode> trie(1);
    for (const std::string& n : names) {
      size_t cur = 0;
      for (size_t i = 0; i < n.size();) {
        unsigned char c = static_cast<unsigned char>(n[i]);
        int len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        uint32_t cp = len == 1 ? c : c & (0xFF >> (len + 1));
        for (int k = 1; k < len && i + k < n.size(); ++k)
          cp = (cp << 6) | (static_cast<unsigned char>(n[i + k]) & 0x3F);
        i += len;
        auto it = trie[cur].kids.find(cp);
        if (it == trie[cur].kids.end()) {
          trie.emplace_back();
          it = trie[cur].kids.emplace(cp, trie.size() - 1).first;
        }
        cur = it->second;
      }
      trie[cur].end = true;
    }
    // Past a name prefix, a key is a free string: where the prefix's next characters are all
    // printable ASCII written as themselves, it continues in one rule shared by every prefix
    // and every object (a tail call: it runs in the key's frame, see Matcher), so the states
    // after every name prefix are the same and their masks are computed once.
    auto plain_ascii = [](uint32_t cp) { return cp >= 0x20 && cp < 0x7F && cp != '"' && cp != '\\'; };
    std::function<ExprId(size_t)> build = [&](size_t node) -> ExprId {
      std::vector<ExprId> alts;
      if (!trie[node].end) alts.push_back(pool_.byte('"'));
      CharSet used;
      bool all_plain = true;
      for (auto& [cp, child] : trie[node].kids) {
        used.add(cp, cp);
        all_plain = all_plain && plain_ascii(cp);
        alts.push_back(pool_.seq({char_expr(pool_, CharSet::of(cp), CharEncoding::kJsonString), build(child)}));
      }
      if (all_plain) {
        ByteSet ascii;
        for (uint32_t b = 0x20; b < 0x7F; ++b) {
          bool u = false;
          for (auto& [lo, hi] : used.ranges()) u = u || (b >= lo && b <= hi);
          if (plain_ascii(b) && !u) ascii.add(static_cast<uint8_t>(b));
        }
        alts.push_back(pool_.seq({pool_.bytes(ascii), pool_.ref(key_rest())}));
        alts.push_back(pool_.ref(key_other()));
      } else {
        CharSet rest = used.empty() ? CharSet::any() : used.complement();
        alts.push_back(pool_.seq({char_expr(pool_, rest, CharEncoding::kJsonString), string_chars(), pool_.byte('"')}));
      }
      return pool_.alt(std::move(alts));
    };
    return as_rule("key", pool_.seq({pool_.byte('"'), build(0)}));
  }
  // The rest of a free key after its first character, closing quote included.
  RuleId key_rest() {
    if (!key_rest_) {
      key_rest_ = pool_.add_rule("key_rest");
      pool_.set_rule(*key_rest_, pool_.seq({string_chars(), pool_.byte('"')}));
    }
    return *key_rest_;
  }
  // A free key's next character when it is not printable ASCII written as itself (an escape,
  // a UTF-8 sequence), then the rest of the key.
  RuleId key_other() {
    if (!key_other_) {
      CharSet other = CharSet::range(0, 0x1F);
      other.add('"', '"');
      other.add('\\', '\\');
      other.add(0x7F, kMaxCodePoint);
      // (CharSet::any() leaves out surrogates; intersect by complementing twice.)
      other = other.complement().complement();
      key_other_ = pool_.add_rule("key_other");
      pool_.set_rule(*key_other_,
                     pool_.seq({char_expr(pool_, other, CharEncoding::kJsonString), pool_.ref(key_rest())}));
    }
    return *key_other_;
  }

  ExprId compile_object(const json& s) {
    const json empty_obj = json::object();
    const json& props = s.contains("properties") ? s["properties"] : empty_obj;
    if (!props.is_object()) throw CompileError("properties must be an object");
    json ap = s.contains("additionalProperties") ? s["additionalProperties"] : json(true);
    std::vector<std::string> required;
    if (s.contains("required")) {
      if (!s["required"].is_array()) throw CompileError("required must be an array");
      for (const json& r : s["required"]) required.push_back(r.get<std::string>());
    }
    struct Member {
      std::string name;
      ExprId expr;
      bool required;
    };
    std::vector<Member> members;
    std::vector<std::string> names;
    auto is_required = [&](const std::string& n) {
      return std::find(required.begin(), required.end(), n) != required.end();
    };
    auto member_expr = [&](const std::string& name, ExprId value) {
      return pool_.seq({pool_.literal(json(name).dump(-1, ' ', false)), pool_.byte(':'), value});
    };
    for (auto it = props.begin(); it != props.end(); ++it) {
      names.push_back(it.key());
      ExprId v = compile(it.value());
      if (pool_.is_nothing(v)) {
        if (is_required(it.key())) return pool_.nothing();
        continue;
      }
      members.push_back({it.key(), member_expr(it.key(), v), is_required(it.key())});
    }
    bool has_pp = s.contains("patternProperties") && !s["patternProperties"].empty();
    for (const std::string& r : required) {
      if (props.contains(r)) continue;
      if (has_pp) throw CompileError("required property '" + r + "' that only patternProperties describe");
      names.push_back(r);
      ExprId v = compile(ap);
      if (pool_.is_nothing(v)) return pool_.nothing();
      members.push_back({r, member_expr(r, v), true});
    }
    // Extra members: after the listed ones, any number.
    ExprId extra = pool_.nothing();
    if (has_pp) {
      if (ap != false) throw CompileError("patternProperties is supported only with additionalProperties: false");
      std::vector<ExprId> alts;
      for (auto it = s["patternProperties"].begin(); it != s["patternProperties"].end(); ++it) {
        // A listed property that a pattern also matches would need both schemas: not supported.
        ExprPool probe;
        RuleId pr = probe.add_rule("key");
        probe.set_rule(pr, compile_regex(probe, it.key(), CharEncoding::kJsonString, true).expr);
        auto pg = grammar::compile(probe, pr);
        for (const std::string& n : names) {
          Matcher m(pg);
          std::string enc = json(n).dump(-1, ' ', false);
          if (m.advance(enc.substr(1, enc.size() - 2)) && m.accepting())
            throw CompileError("property '" + n + "' also matches patternProperties /" + it.key() + "/");
        }
        ExprId v = compile(it.value());
        alts.push_back(
            pool_.seq({as_rule("key", quoted(compile_regex(pool_, it.key(), CharEncoding::kJsonString, true).expr)),
                       pool_.byte(':'), v}));
      }
      extra = pool_.alt(std::move(alts));
    } else if (ap != false) {
      ExprId v = compile(ap);
      if (!pool_.is_nothing(v))
        extra = pool_.seq({names.empty() ? pool_.ref(string_any()) : key_not_in(names), pool_.byte(':'), v});
    }
    uint32_t min_props = count(s, "minProperties", 0), max_props = count(s, "maxProperties", kUnbounded);
    size_t n_required = std::count_if(members.begin(), members.end(), [](const Member& m) { return m.required; });
    bool closed = pool_.is_nothing(extra);
    if (min_props > n_required && !(min_props == 1 && closed && members.size() == 1))
      throw CompileError("unsupported JSON Schema keyword: minProperties");
    if (max_props != kUnbounded && !(closed && max_props >= members.size()))
      throw CompileError("unsupported JSON Schema keyword: maxProperties");
    if (min_props == 1 && n_required == 0 && closed && members.size() == 1) members[0].required = true;

    // tail(i, comma): members i.. then extras then '}', each rule shared.
    RuleId extra_rule = 0;
    if (!closed) {
      extra_rule = pool_.add_rule("extra");
      pool_.set_rule(extra_rule, extra);
    }
    size_t n = members.size();
    std::vector<RuleId> member_rules;
    for (size_t i = 0; i < n; ++i) {
      member_rules.push_back(pool_.add_rule("member:" + members[i].name));
      pool_.set_rule(member_rules[i], members[i].expr);
    }
    std::vector<std::array<ExprId, 2>> tail(n + 1);
    ExprId close = pool_.byte('}');
    if (closed) {
      tail[n] = {close, close};
    } else {
      ExprId e = pool_.ref(extra_rule);
      ExprId more = pool_.star(pool_.seq({pool_.byte(','), e}));
      tail[n][1] = pool_.seq({more, close});
      tail[n][0] = pool_.seq({pool_.opt(pool_.seq({e, more})), close});
    }
    for (size_t i = n; i-- > 0;) {
      for (int comma = 0; comma < 2; ++comma) {
        RuleId r = pool_.add_rule("tail");
        ExprId present =
            pool_.seq({comma ? pool_.byte(',') : pool_.empty(), pool_.ref(member_rules[i]), tail[i + 1][1]});
        pool_.set_rule(r, members[i].required ? present : pool_.alt({present, tail[i + 1][comma]}));
        tail[i][comma] = pool_.ref(r);
      }
    }
    return pool_.seq({pool_.byte('{'), tail[0][0]});
  }

  ExprId compile_array(const json& s) {
    std::vector<const json*> tuple;
    json rest_schema = true;
    bool rest_allowed = true;
    const json* items = s.contains("items") ? &s["items"] : nullptr;
    if (s.contains("prefixItems")) {
      for (const json& t : s["prefixItems"]) tuple.push_back(&t);
      if (items) rest_schema = *items;
    } else if (items && items->is_array()) {
      for (const json& t : *items) tuple.push_back(&t);
      if (s.contains("additionalItems")) rest_schema = s["additionalItems"];
    } else if (items) {
      rest_schema = *items;
    }
    uint32_t mn = count(s, "minItems", 0), mx = count(s, "maxItems", kUnbounded);
    if (mx != kUnbounded && mn > mx) return pool_.nothing();
    ExprId rest = compile(rest_schema);
    if (pool_.is_nothing(rest)) rest_allowed = false;
    if (mx != kUnbounded && mx > 10000) mx = kUnbounded;  // beyond any real output
    if (mn > 10000) throw CompileError("minItems above 10000 is not supported");
    size_t k = tuple.size();
    if (mx != kUnbounded && k > mx) k = mx;
    std::vector<ExprId> elems;
    for (size_t i = 0; i < k; ++i) elems.push_back(compile(*tuple[i]));
    // Items past the tuple: (',' rest){lo, hi}; the first item has no comma.
    RuleId rest_rule = pool_.add_rule("item");
    pool_.set_rule(rest_rule, rest);
    ExprId r = pool_.ref(rest_rule);
    uint32_t lo = mn > k ? mn - static_cast<uint32_t>(k) : 0;
    uint32_t hi = mx == kUnbounded ? kUnbounded : mx - static_cast<uint32_t>(k);
    if (!rest_allowed) {
      if (lo > 0) return pool_.nothing();
      hi = 0;
    }
    ExprId body;
    if (k == 0) {
      ExprId first_and_more = pool_.seq({r, pool_.repeat(pool_.seq({pool_.byte(','), r}), lo > 0 ? lo - 1 : 0,
                                                         hi == kUnbounded ? kUnbounded : hi - (hi > 0 ? 1 : 0))});
      if (hi == 0) first_and_more = pool_.nothing();
      body = lo == 0 ? pool_.alt({pool_.empty(), first_and_more}) : first_and_more;
    } else {
      ExprId tail = pool_.repeat(pool_.seq({pool_.byte(','), r}), lo, hi);
      for (size_t i = k; i-- > 0;) {
        ExprId item = pool_.seq({i > 0 ? pool_.byte(',') : pool_.empty(), elems[i], tail});
        tail = i >= mn ? pool_.alt({pool_.empty(), item}) : item;
      }
      body = tail;
    }
    return pool_.seq({pool_.byte('['), body, pool_.byte(']')});
  }

  const json& root_;
  ExprPool own_pool_;
  ExprPool& pool_;
  std::map<std::string, RuleId> ref_rules_;
  std::optional<RuleId> string_any_, number_any_, value_any_, object_any_, key_rest_, key_other_;
  struct PatternRule {
    ExprId expr;  // a reference to the rule of the quoted pattern
    uint32_t min_chars, max_chars;
  };
  std::map<std::string, PatternRule> pattern_rules_;                 // by regex source
  std::map<std::pair<uint32_t, uint32_t>, ExprId> bounded_strings_;  // by (minLength, maxLength)
  int depth_ = 0;
};

// ---- serialisation in schema order ----
class Orderer {
 public:
  explicit Orderer(const json& root) : root_(root) {}

  void collect(const json& s, std::vector<std::string>& order, const json*& items, int depth) {
    if (depth > 32 || !s.is_object()) return;
    if (s.contains("$ref") && s["$ref"].is_string()) {
      try {
        const json* cur = &root_;
        for (const std::string& p : ref_path(s["$ref"].get<std::string>())) {
          if (!cur->is_object() || !cur->contains(p)) return;
          cur = &(*cur)[p];
        }
        collect(*cur, order, items, depth + 1);
      } catch (const CompileError&) {
        return;
      }
    }
    if (s.contains("properties") && s["properties"].is_object())
      for (auto it = s["properties"].begin(); it != s["properties"].end(); ++it)
        if (std::find(order.begin(), order.end(), it.key()) == order.end()) order.push_back(it.key());
    if (s.contains("required") && s["required"].is_array())
      for (const json& r : s["required"])
        if (r.is_string()) required_.push_back(r.get<std::string>());
    if (s.contains("items") && s["items"].is_object()) items = &s["items"];
    if (s.contains("allOf") && s["allOf"].is_array())
      for (const json& b : s["allOf"]) collect(b, order, items, depth + 1);
    // Of anyOf/oneOf branches, the grammar orders an object by the branch it matches: take
    // the branch that lists the most of the value's keys.
    for (const char* k : {"anyOf", "oneOf"}) {
      if (!s.contains(k) || !s[k].is_array()) continue;
      std::vector<std::string> best;
      const json* best_items = nullptr;
      long best_score = -1;
      for (const json& b : s[k]) {
        std::vector<std::string> o = order;
        const json* it = items;
        collect(b, o, it, depth + 1);
        long score = 0;
        if (value_ && value_->is_object())
          for (const std::string& key : o) score += value_->contains(key) ? 1 : 0;
        if (score > best_score) {
          best_score = score;
          best = std::move(o);
          best_items = it;
        }
      }
      order = std::move(best);
      items = best_items;
    }
  }

  const json* property_schema(const json& s, const std::string& name, int depth) {
    if (depth > 32 || !s.is_object()) return nullptr;
    if (s.contains("properties") && s["properties"].is_object() && s["properties"].contains(name))
      return &s["properties"][name];
    if (s.contains("$ref") && s["$ref"].is_string()) {
      try {
        const json* cur = &root_;
        for (const std::string& p : ref_path(s["$ref"].get<std::string>())) {
          if (!cur->is_object() || !cur->contains(p)) return nullptr;
          cur = &(*cur)[p];
        }
        if (const json* r = property_schema(*cur, name, depth + 1)) return r;
      } catch (const CompileError&) {
        return nullptr;
      }
    }
    for (const char* k : {"allOf", "anyOf", "oneOf"})
      if (s.contains(k) && s[k].is_array())
        for (const json& b : s[k])
          if (const json* r = property_schema(b, name, depth + 1)) return r;
    return nullptr;
  }

  json order(const json& v, const json& s) {
    value_ = &v;
    if (v.is_object()) {
      std::vector<std::string> keys;
      const json* items = nullptr;
      required_.clear();
      collect(s, keys, items, 0);
      // Required properties no schema lists come after the listed ones (as compiled).
      for (const std::string& r : required_)
        if (std::find(keys.begin(), keys.end(), r) == keys.end()) keys.push_back(r);
      json out = json::object();
      for (const std::string& k : keys)
        if (v.contains(k)) out[k] = sub(v[k], s, k);
      for (auto it = v.begin(); it != v.end(); ++it)
        if (!out.contains(it.key())) out[it.key()] = sub(it.value(), s, it.key());
      return out;
    }
    if (v.is_array()) {
      std::vector<std::string> keys;
      const json* items = nullptr;
      collect(s, keys, items, 0);
      json out = json::array();
      for (const json& e : v) out.push_back(items ? order(e, *items) : e);
      return out;
    }
    return v;
  }

 private:
  json sub(const json& v, const json& s, const std::string& key) {
    const json* ps = property_schema(s, key, 0);
    return ps ? order(v, *ps) : v;
  }
  const json& root_;
  const json* value_ = nullptr;  // the value being ordered (chooses among anyOf branches)
  std::vector<std::string> required_;
};

}  // namespace

std::optional<std::string> format_regex(std::string_view format) {
  if (auto it = kFormatRegex.find(format); it != kFormatRegex.end()) return it->second;
  if (kStandardFormats.contains(format)) throw CompileError("unsupported JSON Schema format: " + std::string(format));
  return std::nullopt;
}

std::shared_ptr<const Grammar> compile_json_schema(const json& schema) { return SchemaCompiler(schema).run(); }

ExprId add_json_schema(ExprPool& pool, const json& schema, const std::string& name) {
  return SchemaCompiler(schema, pool).as_expr(name);
}

std::shared_ptr<const Grammar> compile_json_schema_text(std::string_view text) {
  json schema;
  try {
    schema = json::parse(text);
  } catch (const json::parse_error& e) {
    throw CompileError("the schema is not JSON (byte " + std::to_string(e.byte) + "): " + e.what());
  }
  return compile_json_schema(schema);
}

std::shared_ptr<const Grammar> json_object_grammar() {
  static const json empty = json::object();
  return SchemaCompiler(empty).any_object();
}

std::string serialize_for_schema(const json& value, const json& schema) {
  return Orderer(schema).order(value, schema).dump(-1, ' ', false);
}

}  // namespace owl::grammar
