// JSON Schema -> grammar: which compact JSON texts each schema accepts, and the compile
// errors for each class of bad input (not JSON, unsatisfiable, unsupported keyword,
// regex the engine cannot compile).
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "grammar/json_schema.h"
#include "grammar/matcher.h"

namespace {

using owl::grammar::compile_json_schema_text;
using owl::grammar::CompileError;
using owl::grammar::Matcher;

bool accepts(const std::shared_ptr<const owl::grammar::Grammar>& g, const std::string& text) {
  Matcher m(g);
  return m.advance(text) && m.accepting();
}

void expect_language(const std::string& schema, const std::vector<std::pair<std::string, bool>>& cases) {
  auto g = compile_json_schema_text(schema);
  for (const auto& [text, want] : cases) EXPECT_EQ(accepts(g, text), want) << schema << " on " << text;
}

std::string compile_error(const std::string& schema) {
  try {
    compile_json_schema_text(schema);
  } catch (const CompileError& e) {
    return e.what();
  }
  return "";
}

TEST(JsonSchema, IntegerRanges) {
  expect_language(
      R"({"type":"integer","minimum":5,"maximum":123})",
      {{"5", true}, {"4", false}, {"123", true}, {"124", false}, {"50", true}, {"-1", false}, {"05", false}});
  expect_language(R"({"type":"integer","exclusiveMinimum":-3,"exclusiveMaximum":3})",
                  {{"-2", true}, {"-3", false}, {"2", true}, {"3", false}, {"0", true}});
  expect_language(R"({"type":"integer","minimum":5,"exclusiveMinimum":true})", {{"5", false}, {"6", true}});  // draft 4
}

TEST(JsonSchema, NumberBoundsWithFractions) {
  expect_language(R"({"type":"number","minimum":0,"exclusiveMaximum":10})",
                  {{"0", true}, {"9.99", true}, {"10", false}, {"10.0", false}, {"-0.5", false}, {"0.5", true}});
  expect_language(R"({"type":"number","maximum":-2})",
                  {{"-2", true}, {"-2.5", true}, {"-1.5", false}, {"-2.0", true}, {"-3", true}, {"0", false}});
  expect_language(R"({"type":"number","exclusiveMinimum":1,"maximum":3})",
                  {{"1", false}, {"1.0", false}, {"1.01", true}, {"3", true}, {"3.0", true}, {"3.01", false}});
  expect_language(R"({"type":"number"})", {{"1e-05", true}, {"-0.25E+3", true}, {"01", false}, {".5", false}});
}

TEST(JsonSchema, Strings) {
  expect_language(R"({"type":"string","pattern":"^[a-z]+$"})",
                  {{"\"abc\"", true}, {"\"aBc\"", false}, {"\"\"", false}});
  expect_language(R"({"type":"string","pattern":"b"})", {{"\"abc\"", true}, {"\"ac\"", false}});
  expect_language(R"({"type":"string","pattern":"^a\"b$"})", {{"\"a\\\"b\"", true}, {"\"a\"b\"", false}});
  expect_language(R"({"type":"string","minLength":2,"maxLength":3})", {{"\"ab\"", true},
                                                                       {"\"a\"", false},
                                                                       {"\"abcd\"", false},
                                                                       {"\"\xc3\xa9\xc3\xa9\xc3\xa9\"", true},
                                                                       {"\"\\n\\t\"", true}});
  expect_language(R"({"type":"string"})",
                  {{"\"a\\u0001\"", true}, {"\"tab\there\"", false}, {"\"\xe2\x82\xac\"", true}, {"\"\xc3\"", false}});
}

TEST(JsonSchema, Formats) {
  expect_language(R"({"type":"string","format":"date-time"})", {{"\"2020-01-01T10:00:00Z\"", true},
                                                                {"\"2020-01-01T10:00:00.5+02:00\"", true},
                                                                {"\"2020-13-01T10:00:00Z\"", false},
                                                                {"\"2020-01-01\"", false}});
  expect_language(R"({"type":"string","format":"date"})", {{"\"2020-02-29\"", true},
                                                           {"\"2021-02-29\"", false},
                                                           {"\"2000-02-29\"", true},
                                                           {"\"1900-02-29\"", false},
                                                           {"\"2022-02-31\"", false},
                                                           {"\"2022-04-31\"", false},
                                                           {"\"2022-12-31\"", true}});
  expect_language(R"({"type":"string","format":"uuid"})",
                  {{"\"123e4567-e89b-12d3-a456-426614174000\"", true}, {"\"123e4567\"", false}});
  expect_language(R"({"type":"string","format":"ipv4"})",
                  {{"\"192.168.0.1\"", true}, {"\"256.1.1.1\"", false}, {"\"1.2.3\"", false}});
  expect_language(R"({"type":"string","format":"email"})", {{"\"a.b@example.com\"", true}, {"\"nobody\"", false}});
  expect_language(R"({"type":"string","format":"int32"})", {{"\"anything\"", true}});  // not a standard format
}

TEST(JsonSchema, ObjectsInSchemaOrder) {
  std::string s = R"({"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string"}},"required":["b"]})";
  expect_language(s, {{R"({"a":1,"b":"x"})", true},
                      {R"({"b":"x"})", true},
                      {R"({"a":1})", false},
                      {R"({"b":"x","a":1})", false},  // properties come in schema order
                      {R"({"b":"x","c":null})", true},
                      {R"({"b":"x","ab":[1,{"z":true}]})", true},
                      {R"({})", false}});
  // An extra property may not repeat a listed one, so a wrong-typed optional one cannot sneak in.
  expect_language(s, {{R"({"b":"x","a":"s"})", false}});
  expect_language(R"({"type":"object","properties":{"a":{"type":"integer"}},"additionalProperties":false})",
                  {{"{}", true}, {R"({"a":1})", true}, {R"({"b":1})", false}});
  expect_language(R"({"type":"object","patternProperties":{"^x-":{"type":"integer"}},"additionalProperties":false})",
                  {{R"({"x-a":1})", true}, {R"({"y":1})", false}, {R"({"x-a":"s"})", false}});
}

// Free keys (additionalProperties beside listed names) are any string but a listed name: a
// prefix or an extension of a name, a character after a name's prefix that no name has there,
// escapes, UTF-8 and names that hold non-ASCII or escaped characters themselves.
TEST(JsonSchema, FreeKeysAreEveryStringButTheNames) {
  const std::string s =
      R"({"type":"object","properties":{"ab":{"type":"integer"},"abc":{"type":"integer"},"q\"":{"type":"integer"},)"
      R"("\u00e9":{"type":"integer"}},"additionalProperties":{"type":"string"}})";
  expect_language(s, {{R"({"ab":1,"abc":2})", true},
                      {R"({"ab":"x"})", false},  // a listed name is not a free key
                      {R"({"abc":"x"})", false},
                      {R"({"q\"":"x"})", false},
                      {"{\"\xc3\xa9\":\"x\"}", false},
                      {R"({"a":"x"})", true},
                      {R"({"":"x"})", true},
                      {R"({"abcd":"x"})", true},
                      {R"({"abd":"x"})", true},
                      {R"({"b":"x","ac":"y"})", true},
                      {R"({"a\n":"x","a\u0001":"y","a\"":"z","q":"w","q\"\"":"v"})", true},
                      {"{\"\xc3\xa9\xc3\xa9\":\"x\",\"\xc3\xa8\":\"y\",\"a\xe6\x97\xa5\":\"z\"}", true},
                      {R"({"a\u0041":"x"})", false},  // not canonical: A is written as itself
                      {R"({"ab)", false}});
}

TEST(JsonSchema, Arrays) {
  expect_language(R"({"type":"array","items":{"type":"integer"},"minItems":1,"maxItems":3})",
                  {{"[]", false}, {"[1]", true}, {"[1,2,3]", true}, {"[1,2,3,4]", false}, {"[1,\"a\"]", false}});
  expect_language(R"({"type":"array","prefixItems":[{"type":"string"},{"type":"integer"}],"items":false})",
                  {{"[]", true}, {"[\"a\"]", true}, {"[\"a\",1]", true}, {"[\"a\",1,2]", false}, {"[1]", false}});
  expect_language(R"({"type":"array","items":[{"type":"string"}],"additionalItems":{"type":"null"},"minItems":2})",
                  {{"[\"a\"]", false}, {"[\"a\",null]", true}, {"[\"a\",1]", false}});
}

TEST(JsonSchema, RefsCombinatorsEnums) {
  expect_language(
      R"({"$defs":{"n":{"type":"object","properties":{"next":{"$ref":"#/$defs/n"}},"additionalProperties":false}},"$ref":"#/$defs/n"})",
      {{R"({"next":{"next":{}}})", true}, {R"({"next":1})", false}});
  expect_language(R"({"allOf":[{"type":"object","properties":{"a":{"type":"integer"}}},{"required":["a"]}]})",
                  {{R"({"a":1})", true}, {"{}", false}});
  expect_language(R"({"anyOf":[{"type":"string"},{"type":"null"}]})", {{"null", true}, {"\"x\"", true}, {"1", false}});
  expect_language(R"({"enum":["a",1,null,{"k":[true]}]})",
                  {{"\"a\"", true}, {"1", true}, {"null", true}, {R"({"k":[true]})", true}, {"2", false}});
  expect_language(R"({"type":"string","enum":["a",1]})", {{"\"a\"", true}, {"1", false}});
  expect_language(R"({"const":"x"})", {{"\"x\"", true}, {"\"y\"", false}});
  expect_language(R"({"type":["string","null"],"maxLength":1})", {{"null", true}, {"\"ab\"", false}});
  expect_language("true", {{"[1,{\"a\":\"b\"}]", true}, {"[1,]", false}});
}

TEST(JsonSchema, BadInputIsAClearCompileError) {
  EXPECT_NE(compile_error("{\"type\": "), "");
  EXPECT_NE(compile_error("{\"type\": ").find("not JSON (byte 10)"), std::string::npos) << compile_error("{\"type\": ");
  EXPECT_NE(compile_error(R"({"type":"integer","minimum":5,"maximum":1})").find("unsatisfiable"), std::string::npos);
  EXPECT_NE(compile_error(R"({"not":{"type":"string"}})").find("unsupported JSON Schema keyword: not"),
            std::string::npos);
  EXPECT_NE(compile_error(R"({"type":"array","uniqueItems":true})").find("uniqueItems"), std::string::npos);
  EXPECT_NE(compile_error(R"({"type":"string","format":"ipv6"})").find("ipv6"), std::string::npos);
  std::string re = compile_error(R"({"type":"string","pattern":"^(?!x)a$"})");
  EXPECT_NE(re.find("offset 1: lookaround"), std::string::npos) << re;
  EXPECT_NE(compile_error(R"({"type":"string","pattern":"(a)\\1"})").find("backreferences"), std::string::npos);
  EXPECT_NE(compile_error(R"({"$ref":"#/definitions/missing"})").find("does not resolve"), std::string::npos);
  EXPECT_NE(compile_error(R"({"$ref":"other.json#/x"})").find("only local references"), std::string::npos);
}

}  // namespace
