// Tool-call extraction per family format. Where possible the model output is
// produced by the family's own chat template (an assistant turn with a tool
// call rendered from ../shared), so parser and template agree on the format.
#include <gtest/gtest.h>

#include <fstream>
#include <set>

#include "chat/chat_template.h"
#include "chat/tool_calls.h"
#include "test_util.h"

namespace {

using json = nlohmann::ordered_json;
using owl::chat::parse_tool_calls;
using owl::chat::ToolCallFormat;

std::string template_source(const std::string& family) {
  return owl::test::read_file(owl::test::shared_path("chat-templates/" + family + "/chat_template.jinja"));
}

TEST(ToolCalls, FormatFromTemplate) {
  EXPECT_EQ(owl::chat::tool_call_format_for_template(template_source("qwen3")), ToolCallFormat::Hermes);
  EXPECT_EQ(owl::chat::tool_call_format_for_template(template_source("deepseek-v3")), ToolCallFormat::DeepSeekV3);
  EXPECT_EQ(owl::chat::tool_call_format_for_template(template_source("deepseek-r1")), ToolCallFormat::DeepSeekV3);
  EXPECT_EQ(owl::chat::tool_call_format_for_template(template_source("kimi-k2")), ToolCallFormat::KimiK2);
  EXPECT_EQ(owl::chat::tool_call_format_for_template(template_source("kimi-k2-thinking")), ToolCallFormat::KimiK2);
  EXPECT_EQ(owl::chat::tool_call_format_for_template(template_source("glm-4.6")), ToolCallFormat::Glm45);
  EXPECT_EQ(owl::chat::tool_call_format_for_template(template_source("llama-3.1")), ToolCallFormat::Llama31);
  EXPECT_EQ(owl::chat::tool_call_format_for_template(template_source("mistral-nemo")), ToolCallFormat::Mistral);
  EXPECT_EQ(owl::chat::tool_call_format_for_template("{{ messages }}"), ToolCallFormat::None);
}

// Renders [user, assistant(tool_calls)] without a generation prompt and returns the text after `after`.
std::string rendered_call(const std::string& family, const json& tool_calls, const std::string& after,
                          const std::string& before = "", const json& content = nullptr) {
  owl::chat::ChatTemplate t(template_source(family));
  owl::chat::ChatInputs in;
  in.messages = json::array({{{"role", "user"}, {"content", "Weather?"}},
                             {{"role", "assistant"}, {"content", content}, {"tool_calls", tool_calls}}});
  in.add_generation_prompt = false;
  in.bos_token = "";
  in.eos_token = "";
  std::string s = t.render(in);
  size_t a = s.rfind(after);
  EXPECT_NE(a, std::string::npos) << s;
  s = s.substr(a + after.size());
  if (!before.empty()) s = s.substr(0, s.rfind(before));
  return s;
}

json two_calls(bool string_args) {
  json a1 = {{"city", "Lisbon"}, {"unit", "celsius"}}, a2 = {{"city", "Porto"}, {"days", 3}};
  return json::array({{{"id", "call00001"},
                       {"type", "function"},
                       {"function", {{"name", "get_weather"}, {"arguments", string_args ? json(a1.dump()) : a1}}}},
                      {{"id", "call00002"},
                       {"type", "function"},
                       {"function", {{"name", "get_forecast"}, {"arguments", string_args ? json(a2.dump()) : a2}}}}});
}

void expect_two_calls(const owl::chat::ParsedOutput& p) {
  ASSERT_EQ(p.tool_calls.size(), 2u) << p.content;
  EXPECT_EQ(p.tool_calls[0].name, "get_weather");
  EXPECT_EQ(p.tool_calls[0].arguments, R"({"city":"Lisbon","unit":"celsius"})");
  EXPECT_EQ(p.tool_calls[1].name, "get_forecast");
  EXPECT_EQ(p.tool_calls[1].arguments, R"({"city":"Porto","days":3})");
  EXPECT_EQ(p.tool_calls[0].id.size(), 9u);
  EXPECT_NE(p.tool_calls[0].id, p.tool_calls[1].id);
}

TEST(ToolCalls, HermesFromQwen3Template) {
  std::string out = rendered_call("qwen3", two_calls(false), "</think>\n\n", "<|im_end|>", "");
  auto p = parse_tool_calls(ToolCallFormat::Hermes, "Let me check.\n" + out);
  expect_two_calls(p);
  EXPECT_EQ(p.content, "Let me check.");
}

TEST(ToolCalls, DeepSeekFromV3Template) {
  std::string out = rendered_call("deepseek-v3", two_calls(true), "<｜User｜>Weather?", "<｜end▁of▁sentence｜>");
  ASSERT_EQ(out.rfind("<｜Assistant｜>", 0), 0u) << out;
  out = out.substr(std::string("<｜Assistant｜>").size());
  auto p = parse_tool_calls(ToolCallFormat::DeepSeekV3, out);
  expect_two_calls(p);
  EXPECT_EQ(p.content, "");
  // A single call (no section end marker, as the template renders it).
  auto one = parse_tool_calls(ToolCallFormat::DeepSeekV3,
                              "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{"
                              "\"city\": \"Lisbon\"}\n```<｜tool▁call▁end｜>");
  ASSERT_EQ(one.tool_calls.size(), 1u);
  EXPECT_EQ(one.tool_calls[0].arguments, R"({"city":"Lisbon"})");
}

TEST(ToolCalls, KimiFromTemplateKeepsItsIds) {
  std::string out = rendered_call("kimi-k2", two_calls(false), "<|im_assistant|>assistant<|im_middle|>", "<|im_end|>");
  auto p = parse_tool_calls(ToolCallFormat::KimiK2, out);
  ASSERT_EQ(p.tool_calls.size(), 2u) << out;
  EXPECT_EQ(p.tool_calls[0].id, "functions.get_weather:0");
  EXPECT_EQ(p.tool_calls[1].id, "functions.get_forecast:1");
  EXPECT_EQ(p.tool_calls[0].name, "get_weather");
  EXPECT_EQ(p.tool_calls[1].arguments, R"({"city":"Porto","days":3})");
}

TEST(ToolCalls, GlmFromTemplate) {
  std::string out = rendered_call("glm-4.6", two_calls(false), "<|assistant|>");
  auto p = parse_tool_calls(ToolCallFormat::Glm45, out);
  expect_two_calls(p);
  // A string parameter that looks like a number stays a string when the schema says so.
  json tools = json::parse(
      R"([{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"zip":{"type":"string"}}}}}])");
  auto z = parse_tool_calls(ToolCallFormat::Glm45,
                            "<tool_call>f\n<arg_key>zip</arg_key>\n<arg_value>01234</arg_value>\n</tool_call>", tools);
  ASSERT_EQ(z.tool_calls.size(), 1u);
  EXPECT_EQ(z.tool_calls[0].arguments, R"({"zip":"01234"})");
}

TEST(ToolCalls, Llama31JsonAndBuiltin) {
  json one = json::array({two_calls(false)[0]});
  std::string out = rendered_call("llama-3.1", one, "<|start_header_id|>assistant<|end_header_id|>\n\n", "<|eot_id|>");
  auto p = parse_tool_calls(ToolCallFormat::Llama31, out);
  ASSERT_EQ(p.tool_calls.size(), 1u) << out;
  EXPECT_EQ(p.tool_calls[0].name, "get_weather");
  EXPECT_EQ(p.tool_calls[0].arguments, R"({"city":"Lisbon","unit":"celsius"})");
  auto b = parse_tool_calls(ToolCallFormat::Llama31, "<|python_tag|>brave_search.call(query=\"weather in Lisbon\")");
  ASSERT_EQ(b.tool_calls.size(), 1u);
  EXPECT_EQ(b.tool_calls[0].name, "brave_search");
  EXPECT_EQ(b.tool_calls[0].arguments, R"({"query":"weather in Lisbon"})");
  auto text = parse_tool_calls(ToolCallFormat::Llama31, "The weather is {sunny}.");
  EXPECT_TRUE(text.tool_calls.empty());
  EXPECT_EQ(text.content, "The weather is {sunny}.");
}

TEST(ToolCalls, MistralFromTemplateKeepsIds) {
  std::string out = rendered_call("mistral-nemo", two_calls(false), "[/INST]", "");
  auto p = parse_tool_calls(ToolCallFormat::Mistral, out.substr(0, out.size()));
  expect_two_calls(p);
  EXPECT_EQ(p.tool_calls[0].id, "call00001");
  EXPECT_EQ(p.tool_calls[1].id, "call00002");
}

TEST(ToolCalls, MalformedCallsStayInContent) {
  std::string bad = "Sure <tool_call>\n{\"name\": \"f\", \"arguments\": {broken}\n</tool_call>";
  auto p = parse_tool_calls(ToolCallFormat::Hermes, bad);
  EXPECT_TRUE(p.tool_calls.empty());
  EXPECT_EQ(p.content, bad);
  auto m = parse_tool_calls(ToolCallFormat::Mistral, "[TOOL_CALLS][{\"name\": 3}]");
  EXPECT_TRUE(m.tool_calls.empty());
  auto none = parse_tool_calls(ToolCallFormat::None, "<tool_call>{\"name\":\"f\",\"arguments\":{}}</tool_call>");
  EXPECT_TRUE(none.tool_calls.empty());
}

TEST(ToolCalls, HoldBackWhileACallMayBeStarting) {
  using owl::chat::tool_call_hold_from;
  EXPECT_EQ(tool_call_hold_from(ToolCallFormat::Hermes, "Hello"), 5u);
  EXPECT_EQ(tool_call_hold_from(ToolCallFormat::Hermes, "Hello <tool"), 6u);
  EXPECT_EQ(tool_call_hold_from(ToolCallFormat::Hermes, "Hello <tool_call>{\"na"), 6u);
  EXPECT_EQ(tool_call_hold_from(ToolCallFormat::Hermes, "a < b"), 5u);
  EXPECT_EQ(tool_call_hold_from(ToolCallFormat::Hermes, "a <"), 2u);
  EXPECT_EQ(tool_call_hold_from(ToolCallFormat::DeepSeekV3, "x<｜tool▁ca"), 1u);
  EXPECT_EQ(tool_call_hold_from(ToolCallFormat::KimiK2, "ok<|tool_calls_section_begin|>"), 2u);
  EXPECT_EQ(tool_call_hold_from(ToolCallFormat::Mistral, "[TOOL"), 0u);
  EXPECT_EQ(tool_call_hold_from(ToolCallFormat::Llama31, "{\"name\""), 0u);
  EXPECT_EQ(tool_call_hold_from(ToolCallFormat::Llama31, "<|python"), 0u);
  EXPECT_EQ(tool_call_hold_from(ToolCallFormat::Llama31, "Sure, {x}"), 9u);
  EXPECT_EQ(tool_call_hold_from(ToolCallFormat::None, "<tool_call>"), 11u);
}

TEST(ToolCalls, GeneratedIdsAreDistinctAlphanumeric) {
  std::set<std::string> seen;
  for (uint64_t i = 0; i < 1000; ++i) {
    std::string id = owl::chat::make_tool_call_id(i);
    ASSERT_EQ(id.size(), 9u);
    for (char c : id) ASSERT_TRUE(isalnum(static_cast<unsigned char>(c))) << id;
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 1000u);
}

}  // namespace

// A tool loop's turns render in every family's template, as OpenAI's clients send them (the
// arguments a JSON string, the content null or absent) or with object arguments: the server
// rewrites them to the template's own style (tool_turn_style), and the call, its arguments and
// the tool's result all reach the prompt, nothing encoded twice and no "None".
TEST(ToolCalls, ToolLoopTurnsRenderInEveryFamily) {
  const std::string shared[] = {"qwen3",   "deepseek-v3", "deepseek-r1", "kimi-k2", "kimi-k2-thinking",
                                "glm-4.6", "llama-3.1",   "mistral-nemo"};
  std::vector<std::pair<std::string, std::string>> templates;
  for (const auto& f : shared) templates.emplace_back(f, template_source(f));
  for (const char* f : {"qwen3_coder_style.jinja", "deepseek_v31_style.jinja"})
    templates.emplace_back(f, owl::test::read_file(std::string(OWL_SOURCE_DIR) + "/tests/server/" + f));
  const json tools = json::parse(R"([{"type":"function","function":{"name":"get_weather","description":"Weather",
    "parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}])");
  for (const auto& [name, source] : templates) {
    owl::chat::ChatTemplate t(source);
    const owl::chat::ToolTurnStyle style = owl::chat::tool_turn_style(t);
    EXPECT_TRUE(style.known) << name;
    for (bool absent : {false, true}) {
      for (bool string_args : {true, false}) {
        SCOPED_TRACE(name + (absent ? " / no content" : " / content null") + (string_args ? " / string args" : ""));
        json args = {{"city", "Lisbon"}};
        json call = {{"id", "call00001"},
                     {"type", "function"},
                     {"function", {{"name", "get_weather"}, {"arguments", string_args ? json(args.dump()) : args}}}};
        json assistant = {{"role", "assistant"}, {"tool_calls", json::array({call})}};
        if (!absent) assistant["content"] = nullptr;
        owl::chat::ChatInputs in;
        in.messages = json::array({{{"role", "user"}, {"content", "Weather in Lisbon?"}},
                                   assistant,
                                   {{"role", "tool"},
                                    {"tool_call_id", "call00001"},
                                    {"name", "get_weather"},
                                    {"content", "{\"celsius\": 21}"}}});
        in.tools = tools;
        in.add_generation_prompt = true;
        in.bos_token = "";
        in.eos_token = "";
        owl::chat::apply_tool_turn_style(style, in.messages);
        std::string s;
        ASSERT_NO_THROW(s = t.render(in));
        const size_t asked = s.find("Weather in Lisbon?"), called = s.find("get_weather", asked);
        ASSERT_NE(asked, std::string::npos) << s;
        ASSERT_NE(called, std::string::npos) << s;  // the call, after the question
        EXPECT_NE(s.find("Lisbon", called), std::string::npos) << s;
        EXPECT_EQ(s.find("\\\"city", called), std::string::npos) << s;  // not encoded twice
        // Then the tool's answer (Llama 3.1's template writes a string result with tojson).
        EXPECT_NE(s.find("celsius", called), std::string::npos) << s;
        EXPECT_EQ(s.find("None"), std::string::npos) << s;
      }
    }
  }
  // The styles found, as the templates are written.
  auto style_of = [&](const std::string& family) {
    return owl::chat::tool_turn_style(owl::chat::ChatTemplate(template_source(family)));
  };
  EXPECT_TRUE(style_of("deepseek-v3").null_content);
  EXPECT_FALSE(style_of("deepseek-v3").object_arguments);
  EXPECT_FALSE(style_of("qwen3").null_content);
  EXPECT_TRUE(style_of("glm-4.6").object_arguments);
  EXPECT_FALSE(style_of("glm-4.6").null_content);
  EXPECT_TRUE(style_of("llama-3.1").object_arguments);
}
