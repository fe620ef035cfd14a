// The grammars of tool_choice "required" / a named function, per tool-call format: the
// format's own call text (as its parser reads it) is accepted with schema-valid arguments of
// an allowed function, and free text, another function, schema-invalid arguments or a second
// call where one is asked for are not. Strict schemas owl cannot compile and unknown named
// functions are 400s naming the field.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "chat/tool_calls.h"
#include "grammar/matcher.h"
#include "server/api.h"
#include "server/tool_choice.h"

namespace owl::server {
namespace {

using json = nlohmann::ordered_json;
using chat::ToolCallFormat;

ChatParams request(const std::string& extra) {
  json body = json::parse(R"({"messages":[{"role":"user","content":"hi"}],"tools":[
    {"type":"function","function":{"name":"get_weather","strict":true,"parameters":{"type":"object",
      "properties":{"city":{"type":"string"},"days":{"type":"integer","minimum":1,"maximum":9}},
      "required":["city","days"],"additionalProperties":false}}},
    {"type":"function","function":{"name":"ping","parameters":{"type":"object","properties":{}}}}]})");
  body.update(json::parse(extra));
  return parse_chat_request(body.dump());
}

bool accepts(const std::shared_ptr<const grammar::Grammar>& g, const std::string& text) {
  grammar::Matcher m(g);
  return m.advance(text) && m.accepting();
}

struct FormatCase {
  ToolCallFormat format;
  std::string weather;   // get_weather({"city":"Lisbon","days":3}) as the grammar writes it
  std::string bad_args;  // the same with days out of range
  std::string two;       // weather then ping, in one answer
};

std::vector<FormatCase> cases() {
  return {
      {ToolCallFormat::Hermes,
       "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\":\"Lisbon\",\"days\":3}}\n</tool_call>",
       "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\":\"Lisbon\",\"days\":12}}\n</tool_call>",
       "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\":\"Lisbon\",\"days\":3}}\n</tool_call>\n"
       "<tool_call>\n{\"name\": \"ping\", \"arguments\": {}}\n</tool_call>"},
      {ToolCallFormat::Qwen3CoderXml,
       "<tool_call>\n<function=get_weather>\n<parameter=city>\nLisbon\n</parameter>\n<parameter=days>\n3\n</"
       "parameter>\n</function>\n</tool_call>",
       "<tool_call>\n<function=get_weather>\n<parameter=city>\nLisbon\n</parameter>\n<parameter=days>\nthree\n</"
       "parameter>\n</function>\n</tool_call>",
       "<tool_call>\n<function=get_weather>\n<parameter=city>\nLisbon\n</parameter>\n<parameter=days>\n3\n</"
       "parameter>\n</function>\n</tool_call>\n<tool_call>\n<function=ping>\n</function>\n</tool_call>"},
      {ToolCallFormat::Glm45,
       "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Lisbon</arg_value>\n<arg_key>days</"
       "arg_key>\n<arg_value>3</arg_value>\n</tool_call>",
       "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Lisbon</arg_value>\n</tool_call>",
       "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Lisbon</arg_value>\n<arg_key>days</"
       "arg_key>\n<arg_value>3</arg_value>\n</tool_call>\n<tool_call>ping\n</tool_call>"},
      {ToolCallFormat::DeepSeekV3,
       "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\":\"Lisbon\","
       "\"days\":3}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
       "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\":\"Lisbon\"}"
       "\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
       "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\":\"Lisbon\","
       "\"days\":3}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>ping\n```json\n{}\n```<｜tool▁"
       "call▁end｜><｜tool▁calls▁end｜>"},
      {ToolCallFormat::DeepSeekV31,
       "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\":\"Lisbon\",\"days\":3}<"
       "｜tool▁call"
       "▁end｜><｜tool▁calls▁end｜>",
       "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\":3,\"days\":3}<｜tool▁call▁end｜><"
       "｜"
       "tool▁calls▁end｜>",
       "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\":\"Lisbon\",\"days\":3}<"
       "｜tool▁call"
       "▁end｜><｜tool▁call▁begin｜>ping<｜tool▁sep｜>{}<｜tool▁call▁end｜><｜tool▁calls▁end｜>"},
      {ToolCallFormat::KimiK2,
       "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{\"city\":"
       "\"Lisbon\",\"days\":3}<|tool_call_end|><|tool_calls_section_end|>",
       "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{\"city\":"
       "\"Lisbon\",\"days\":0}<|tool_call_end|><|tool_calls_section_end|>",
       "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{\"city\":"
       "\"Lisbon\",\"days\":3}<|tool_call_end|><|tool_call_begin|>functions.ping:1<|tool_call_argument_begin|>{}<|"
       "tool_call_end|><|tool_calls_section_end|>"},
  };
}

TEST(ToolChoice, RequiredAcceptsOnlyWellFormedCallsTheParserReads) {
  for (const FormatCase& c : cases()) {
    SCOPED_TRACE(chat::tool_call_format_name(c.format));
    auto g = tool_call_grammar(c.format, request(R"({"tool_choice":"required"})"));
    ASSERT_TRUE(g);
    EXPECT_TRUE(accepts(g, c.weather));
    EXPECT_TRUE(accepts(g, "\n\n" + c.weather));  // the blank lines after a reasoning block
    EXPECT_TRUE(accepts(g, c.two));
    EXPECT_FALSE(accepts(g, c.bad_args));
    EXPECT_FALSE(accepts(g, "Sure! " + c.weather));
    EXPECT_FALSE(accepts(g, ""));
    // What the grammar accepts, the format's parser reads as the same calls.
    auto parsed = chat::parse_tool_calls(c.format, c.two, request("{}").tools);
    ASSERT_EQ(parsed.tool_calls.size(), 2u) << parsed.content;
    EXPECT_EQ(parsed.tool_calls[0].name, "get_weather");
    EXPECT_EQ(parsed.tool_calls[0].arguments, R"({"city":"Lisbon","days":3})");
    EXPECT_EQ(parsed.tool_calls[1].name, "ping");
    EXPECT_EQ(parsed.tool_calls[1].arguments, "{}");
    EXPECT_EQ(parsed.content, "");
  }
}

TEST(ToolChoice, NamedFunctionAndSingleCall) {
  for (const FormatCase& c : cases()) {
    SCOPED_TRACE(chat::tool_call_format_name(c.format));
    auto named =
        tool_call_grammar(c.format, request(R"({"tool_choice":{"type":"function","function":{"name":"ping"}}})"));
    ASSERT_TRUE(named);
    EXPECT_FALSE(accepts(named, c.weather));  // another function
    EXPECT_FALSE(accepts(named, c.two));      // exactly one call
    auto single = tool_call_grammar(c.format, request(R"({"tool_choice":"required","parallel_tool_calls":false})"));
    EXPECT_TRUE(accepts(single, c.weather));
    EXPECT_FALSE(accepts(single, c.two));
  }
  // "auto" with a strict tool: the calls' grammar, applied once the format's marker appears.
  auto lazy = tool_call_grammar(ToolCallFormat::Hermes, request(R"({"tool_choice":"auto"})"));
  ASSERT_TRUE(lazy);
  EXPECT_EQ(tool_call_trigger(ToolCallFormat::Hermes), "<tool_call>");
  EXPECT_TRUE(accepts(lazy, cases()[0].two));
  EXPECT_FALSE(accepts(lazy, cases()[0].bad_args));
  EXPECT_EQ(tool_call_trigger(ToolCallFormat::KimiK2), "<|tool_calls_section_begin|>");
  EXPECT_EQ(tool_call_trigger(ToolCallFormat::Llama31), "");
  ChatParams loose = request(R"({"tool_choice":"auto"})");
  loose.tools[0]["function"].erase("strict");
  EXPECT_FALSE(tool_call_grammar(ToolCallFormat::Hermes, loose));
  EXPECT_FALSE(tool_call_grammar(ToolCallFormat::Hermes, request(R"({"tool_choice":"none"})")));
}

TEST(ToolChoice, BadRequestsNameTheField) {
  try {
    tool_call_grammar(ToolCallFormat::Hermes,
                      request(R"({"tool_choice":{"type":"function","function":{"name":"nope"}}})"));
    FAIL() << "no error";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.param, "tool_choice");
    EXPECT_NE(std::string(e.what()).find("nope"), std::string::npos);
  }
  // A strict schema owl cannot enforce (uniqueItems) is refused even under "auto"; the same
  // schema without strict is allowed (its arguments are then any object).
  ChatParams p = request(R"({"tool_choice":"auto"})");
  p.tools[1]["function"]["parameters"] =
      json::parse(R"({"type":"object","properties":{"ids":{"type":"array","uniqueItems":true}}})");
  p.tools[1]["function"]["strict"] = true;
  try {
    check_tool_request(p);
    FAIL() << "no error";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.param, "tools[1].function.parameters");
    EXPECT_NE(std::string(e.what()).find("uniqueItems"), std::string::npos) << e.what();
  }
  p.tools[1]["function"].erase("strict");
  p.tool_choice = "required";
  auto g = tool_call_grammar(ToolCallFormat::Hermes, p);
  EXPECT_TRUE(accepts(g, "<tool_call>\n{\"name\": \"ping\", \"arguments\": {\"ids\":[1,1]}}\n</tool_call>"));
}

// The key/value formats write string parameters raw: a pattern or a format is matched by the
// raw text itself (no JSON quotes or escapes), which may not hold '<' (it could close the tag).
TEST(ToolChoice, RawStringParametersFollowTheirPatternAndFormat) {
  ChatParams p = request(R"({"tool_choice":"required"})");
  p.tools = json::parse(R"([{"type":"function","function":{"name":"book","strict":true,"parameters":{
    "type":"object","properties":{"code":{"type":"string","pattern":"^[A-Z]{3}$"},
    "day":{"type":"string","format":"date"},"note":{"type":"string","pattern":"[0-9]"}},
    "required":["code","day","note"],"additionalProperties":false}}}])");
  struct Form {
    ToolCallFormat format;
    std::string (*call)(const std::string&, const std::string&, const std::string&);
  };
  const Form forms[] = {
      {ToolCallFormat::Qwen3CoderXml,
       [](const std::string& code, const std::string& day, const std::string& note) {
         return "<tool_call>\n<function=book>\n<parameter=code>\n" + code + "\n</parameter>\n<parameter=day>\n" + day +
                "\n</parameter>\n<parameter=note>\n" + note + "\n</parameter>\n</function>\n</tool_call>";
       }},
      {ToolCallFormat::Glm45,
       [](const std::string& code, const std::string& day, const std::string& note) {
         return "<tool_call>book\n<arg_key>code</arg_key>\n<arg_value>" + code +
                "</arg_value>\n<arg_key>day</arg_key>\n<arg_value>" + day +
                "</arg_value>\n<arg_key>note</arg_key>\n<arg_value>" + note + "</arg_value>\n</tool_call>";
       }},
  };
  for (const Form& f : forms) {
    SCOPED_TRACE(chat::tool_call_format_name(f.format));
    auto g = tool_call_grammar(f.format, p);
    ASSERT_TRUE(g);
    const std::string good = f.call("EUR", "2024-02-29", "room 7");
    EXPECT_TRUE(accepts(g, good));
    EXPECT_FALSE(accepts(g, f.call("eur", "2024-02-29", "room 7")));      // pattern
    EXPECT_FALSE(accepts(g, f.call("EURO", "2024-02-29", "room 7")));     // anchored pattern
    EXPECT_FALSE(accepts(g, f.call("EUR", "2023-02-29", "room 7")));      // format date (no leap day)
    EXPECT_FALSE(accepts(g, f.call("EUR", "2024-02-29", "room")));        // the unanchored pattern finds no digit
    EXPECT_FALSE(accepts(g, f.call("EUR", "2024-02-29", "<b>7</b>")));    // '<' may close the tag
    EXPECT_FALSE(accepts(g, f.call("EUR", "\"2024-02-29\"", "room 7")));  // raw, not JSON
    EXPECT_TRUE(accepts(g, f.call("EUR", "2024-02-29", "7 rooms")));
    auto parsed = chat::parse_tool_calls(f.format, good, p.tools);
    ASSERT_EQ(parsed.tool_calls.size(), 1u) << parsed.content;
    EXPECT_EQ(parsed.tool_calls[0].arguments, R"({"code":"EUR","day":"2024-02-29","note":"room 7"})");
  }
  // What cannot be enforced is a 400 naming the parameters (and the parameter, where the JSON
  // Schema itself compiles) when strict; without strict the value is raw text of its length.
  const std::pair<std::string, std::string> refused[] = {
      {R"({"type":"string","pattern":"^<b>$"})", "'code': its pattern needs '<'"},
      {R"({"type":"string","pattern":"(?<=a)b"})", "at offset 0: lookaround"},
      {R"({"type":"string","format":"ipv6"})", "ipv6"},
      {R"({"type":"string","pattern":"^[A-Z]+$","maxLength":3})", "maxLength"},
  };
  for (const auto& [schema, why] : refused) {
    SCOPED_TRACE(schema);
    p.tools[0]["function"]["parameters"]["properties"]["code"] = json::parse(schema);
    for (ToolCallFormat format : {ToolCallFormat::Qwen3CoderXml, ToolCallFormat::Glm45}) {
      p.tools[0]["function"]["strict"] = true;
      try {
        tool_call_grammar(format, p);
        ADD_FAILURE() << "no error";
      } catch (const ApiError& e) {
        EXPECT_EQ(e.status, 400);
        EXPECT_EQ(e.param, "tools[0].function.parameters");
        EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
      }
      p.tools[0]["function"].erase("strict");
      auto loose = tool_call_grammar(format, p);
      const std::string call = forms[format == ToolCallFormat::Glm45].call("xyz", "2024-02-29", "7");
      EXPECT_TRUE(accepts(loose, call));
    }
  }
}

// Llama 3.1 under "auto" with a strict tool: the call has no marker but is the whole answer, so
// an answer that opens like a call ('{', or <|python_tag|>) must be one valid call, and any other
// answer stays free (after the tag too when the template was given built-in tools).
TEST(ToolChoice, Llama31AutoWithAStrictToolDecidesAtTheFirstByte) {
  auto g = tool_call_grammar(ToolCallFormat::Llama31, request(R"({"tool_choice":"auto"})"));
  ASSERT_TRUE(g);
  const std::string weather = R"({"name": "get_weather", "parameters": {"city":"Lisbon","days":3}})";
  for (const std::string& ok :
       {weather, "<|python_tag|>" + weather, "\n\n" + weather, std::string(R"({"name": "ping", "parameters": {}})"),
        std::string("It is sunny in Lisbon."), std::string(""), std::string("<b>sunny</b>"), std::string("<|py"),
        std::string("I cannot {really} tell.")}) {
    EXPECT_TRUE(accepts(g, ok)) << ok;
  }
  for (const std::string& bad :
       {std::string(R"({"name": "get_weather", "parameters": {"city":"Lisbon","days":12}})"), std::string("{sunny}"),
        std::string(R"(<|python_tag|>{"name": "nope", "parameters": {}})"),
        std::string(R"({"name": "get_weather", "arguments": {"city":"Lisbon","days":3}})"), weather + " and more",
        std::string("<|python_tag|>brave_search.call(query=\"Lisbon\")")}) {
    EXPECT_FALSE(accepts(g, bad)) << bad;
  }
  auto builtin =
      tool_call_grammar(ToolCallFormat::Llama31,
                        request(R"({"tool_choice":"auto","chat_template_kwargs":{"builtin_tools":["brave_search"]}})"));
  EXPECT_TRUE(accepts(builtin, "<|python_tag|>brave_search.call(query=\"Lisbon\")"));
  EXPECT_TRUE(accepts(builtin, "<|python_tag|>" + weather));
  EXPECT_FALSE(accepts(builtin, R"(<|python_tag|>{"name": "nope", "parameters": {}})"));
  // What the grammar accepts the parser reads as the same call, or as text.
  for (const std::string& s : {weather, "<|python_tag|>" + weather}) {
    auto parsed = chat::parse_tool_calls(ToolCallFormat::Llama31, s);
    ASSERT_EQ(parsed.tool_calls.size(), 1u) << s;
    EXPECT_EQ(parsed.tool_calls[0].arguments, R"({"city":"Lisbon","days":3})");
  }
  EXPECT_TRUE(chat::parse_tool_calls(ToolCallFormat::Llama31, "I cannot {really} tell.").tool_calls.empty());
  // "required" is the call alone.
  auto required = tool_call_grammar(ToolCallFormat::Llama31, request(R"({"tool_choice":"required"})"));
  EXPECT_TRUE(accepts(required, weather));
  EXPECT_FALSE(accepts(required, "It is sunny."));
}

}  // namespace
}  // namespace owl::server
