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

}  // namespace
}  // namespace owl::server
