// Every tool-call format under streaming and under broken output: a call's start marker split
// at any byte is never streamed as content (tool_call_hold_from), a malformed call stays in the
// content verbatim, and a truncated answer never yields a call whose arguments are not a JSON
// object. Also the Qwen3-Coder XML format (<function=…><parameter=…>) with schema-typed values.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "chat/tool_call_stream.h"
#include "chat/tool_calls.h"

namespace {

using json = nlohmann::ordered_json;
using owl::chat::parse_tool_calls;
using owl::chat::tool_call_hold_from;
using owl::chat::ToolCallFormat;

const json kTools = json::parse(R"([{"type":"function","function":{"name":"get_weather","parameters":{
  "type":"object","properties":{"city":{"type":"string"},"zip":{"type":"string"},"days":{"type":"integer"},
  "metric":{"type":"boolean"},"where":{"type":"object"}}}}}])");

struct Sample {
  ToolCallFormat format;
  std::string call;                 // one call of get_weather with {"city":"Lisbon","days":3}
  std::vector<std::string> broken;  // malformed forms of it
};

std::vector<Sample> samples() {
  return {
      {ToolCallFormat::Hermes,
       "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Lisbon\", \"days\": 3}}\n</tool_call>",
       {"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": Lisbon}}\n</tool_call>",
        "<tool_call>\n{\"arguments\": {\"city\": \"Lisbon\"}}\n</tool_call>",
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": [1]}\n</tool_call>"}},
      {ToolCallFormat::Qwen3CoderXml,
       "<tool_call>\n<function=get_weather>\n<parameter=city>\nLisbon\n</parameter>\n<parameter=days>\n3\n</"
       "parameter>\n</function>\n</tool_call>",
       {"<tool_call>\n<function=get_weather>\n<parameter=city>\nLisbon\n</function>\n</tool_call>",
        "<tool_call>\n<function=>\n</function>\n</tool_call>",
        "<tool_call>\n<function=get_weather>\n<parameter=city>\nLisbon\n</parameter>\n</tool_call>",
        "<tool_call>\n<function=get_weather>\nstray text<parameter=city>\nLisbon\n</parameter>\n</function>\n</"
        "tool_call>",
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}\n</tool_call>"}},
      {ToolCallFormat::DeepSeekV3,
       "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Lisbon\", "
       "\"days\": 3}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
       {"<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": "
        "}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
        "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function get_weather {}<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
        "<｜tool▁calls▁begin｜>junk<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{}\n```<"
        "｜tool▁call▁"
        "end｜><｜tool▁calls▁end｜>"}},
      {ToolCallFormat::DeepSeekV31,
       "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": \"Lisbon\", \"days\": "
       "3}<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
       {"<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\"<｜tool▁call▁end｜><"
        "｜tool▁calls▁end｜>",
        "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>\"Lisbon\"<｜tool▁call▁end｜><"
        "｜tool▁calls▁"
        "end｜>"}},
      {ToolCallFormat::KimiK2,
       "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{\"city\": "
       "\"Lisbon\", \"days\": 3}<|tool_call_end|><|tool_calls_section_end|>",
       {"<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0{\"city\": "
        "\"Lisbon\"}<|tool_call_end|><|tool_calls_section_end|>",
        "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{\"city\": "
        "<|tool_call_end|><|tool_calls_section_end|>"}},
      {ToolCallFormat::Glm45,
       "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Lisbon</arg_value>\n<arg_key>days</"
       "arg_key>\n<arg_value>3</arg_value>\n</tool_call>",
       {"<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Lisbon\n</tool_call>",
        "<tool_call>\n<arg_key>city</arg_key>\n<arg_value>Lisbon</arg_value>\n</tool_call>",
        "<tool_call>{\"name\": \"get_weather\"}\n</tool_call>"}},
  };
}

const std::string kLead = "Let me check.\n";

TEST(ToolCallFormats, EveryFormatParsesItsCall) {
  for (const Sample& s : samples()) {
    SCOPED_TRACE(owl::chat::tool_call_format_name(s.format));
    auto p = parse_tool_calls(s.format, kLead + s.call, kTools);
    ASSERT_EQ(p.tool_calls.size(), 1u) << p.content;
    EXPECT_EQ(p.tool_calls[0].name, "get_weather");
    EXPECT_EQ(p.tool_calls[0].arguments, R"({"city":"Lisbon","days":3})");
    EXPECT_EQ(p.content, "Let me check.");
  }
}

// Streaming one byte at a time: what may be sent as content never reaches into the call,
// whatever byte a marker is split at; once the call is whole the content before it is released.
TEST(ToolCallFormats, SplitMarkersAreNeverStreamedAsContent) {
  for (const Sample& s : samples()) {
    SCOPED_TRACE(owl::chat::tool_call_format_name(s.format));
    const std::string text = kLead + s.call;
    size_t sent = 0;
    for (size_t n = 0; n <= text.size(); ++n) {
      std::string_view prefix(text.data(), n);
      size_t hold = std::max(sent, tool_call_hold_from(s.format, prefix));
      ASSERT_LE(hold, kLead.size()) << "released '" << prefix.substr(0, hold) << "'";
      sent = hold;
    }
    EXPECT_EQ(sent, kLead.size());
  }
}

TEST(ToolCallFormats, MalformedCallsStayInTheContent) {
  for (const Sample& s : samples()) {
    SCOPED_TRACE(owl::chat::tool_call_format_name(s.format));
    for (const std::string& bad : s.broken) {
      auto p = parse_tool_calls(s.format, kLead + bad, kTools);
      EXPECT_TRUE(p.tool_calls.empty()) << bad;
      EXPECT_EQ(p.content, kLead + bad);
    }
  }
}

// An answer cut anywhere (max_tokens) yields no call or a call with object arguments, never a throw.
TEST(ToolCallFormats, TruncatedAnswersNeverYieldBrokenCalls) {
  for (const Sample& s : samples()) {
    SCOPED_TRACE(owl::chat::tool_call_format_name(s.format));
    const std::string text = kLead + s.call;
    for (size_t n = 0; n < text.size(); ++n) {
      auto p = parse_tool_calls(s.format, std::string_view(text.data(), n), kTools);
      for (const auto& c : p.tool_calls) {
        EXPECT_EQ(c.name, "get_weather");
        json a = json::parse(c.arguments, nullptr, false);
        EXPECT_TRUE(a.is_object()) << c.arguments;
      }
      if (p.tool_calls.empty()) {
        EXPECT_EQ(p.content, text.substr(0, n));
      }
    }
  }
}

// Streams `text` one byte at a time; the deltas of each call, by index: id, name, arguments joined.
struct Streamed {
  std::vector<std::string> ids, names, arguments;
  std::vector<size_t> fragments;
};

Streamed stream_bytes(ToolCallFormat f, const std::string& text, uint64_t seed) {
  owl::chat::ToolCallStreamer s(f, kTools, seed);
  Streamed out;
  auto take = [&](const std::vector<owl::chat::ToolCallDelta>& ds) {
    for (const auto& d : ds) {
      if (d.first) {
        EXPECT_EQ(d.index, out.ids.size());
        out.ids.push_back(d.id);
        out.names.push_back(d.name);
        out.arguments.emplace_back();
        out.fragments.push_back(0);
      } else {
        ASSERT_LT(d.index, out.ids.size());
        EXPECT_FALSE(d.arguments.empty());
        out.arguments[d.index] += d.arguments;
        ++out.fragments[d.index];
      }
    }
  };
  for (size_t n = 0; n <= text.size(); ++n) take(s.update(std::string_view(text.data(), n)));
  take(s.finish(parse_tool_calls(f, text, kTools, seed)));
  return out;
}

// The arguments go out as they are generated, and their fragments add up to the final string.
TEST(ToolCallFormats, StreamedArgumentsAddUpToTheFinalArguments) {
  for (const Sample& s : samples()) {
    SCOPED_TRACE(owl::chat::tool_call_format_name(s.format));
    // Two calls in one answer (one section around both where the format has sections).
    std::string first = s.call, second = s.call;
    for (std::string_view end : {"<｜tool▁calls▁end｜>", "<|tool_calls_section_end|>"})
      if (first.ends_with(end)) first.resize(first.size() - end.size());
    for (std::string_view begin : {"<｜tool▁calls▁begin｜>", "<|tool_calls_section_begin|>"})
      if (second.starts_with(begin)) second.erase(0, begin.size());
    const std::string text = kLead + first + "\n" + second;
    auto whole = parse_tool_calls(s.format, text, kTools, 7);
    ASSERT_EQ(whole.tool_calls.size(), 2u);
    Streamed st = stream_bytes(s.format, text, 7);
    ASSERT_EQ(st.ids.size(), 2u);
    for (size_t i = 0; i < 2; ++i) {
      EXPECT_EQ(st.ids[i], whole.tool_calls[i].id);
      EXPECT_EQ(st.names[i], "get_weather");
      EXPECT_EQ(st.arguments[i], whole.tool_calls[i].arguments);
      // JSON arguments stream nearly byte by byte; key/value ones once per parameter and the brace.
      EXPECT_GE(st.fragments[i], 3u);
    }
  }
}

TEST(ToolCallFormats, Qwen3CoderValuesAreTypedBySchema) {
  const std::string out =
      "<tool_call>\n<function=get_weather>\n<parameter=city>\nSão Paulo\nnorth side\n</parameter>\n"
      "<parameter=zip>\n01234\n</parameter>\n<parameter=days>\n7\n</parameter>\n<parameter=metric>\ntrue\n</"
      "parameter>\n<parameter=where>\n{\"lat\": 1.5}\n</parameter>\n<parameter=note>\n42\n</parameter>\n</function>\n"
      "</tool_call>\n<tool_call>\n<function=ping>\n</function>\n</tool_call>";
  auto p = parse_tool_calls(ToolCallFormat::Qwen3CoderXml, out, kTools);
  ASSERT_EQ(p.tool_calls.size(), 2u) << p.content;
  // Strings stay raw (newlines inside kept, "01234" not a number); the rest is JSON; an
  // undeclared parameter is JSON when it parses.
  EXPECT_EQ(p.tool_calls[0].arguments,
            R"({"city":"São Paulo\nnorth side","zip":"01234","days":7,"metric":true,"where":{"lat":1.5},"note":42})");
  EXPECT_EQ(p.tool_calls[1].name, "ping");
  EXPECT_EQ(p.tool_calls[1].arguments, "{}");
  EXPECT_EQ(p.content, "");
  EXPECT_NE(p.tool_calls[0].id, p.tool_calls[1].id);
}

TEST(ToolCallFormats, RecognisedFromTemplateMarkers) {
  // The markers of Qwen3-Coder's template (tools and past calls in its XML form) and of
  // DeepSeek-V3.1's (name<｜tool▁sep｜>arguments, no ```json fence).
  const std::string coder =
      "{%- for tool in tools %}<function>\n<name>{{ tool.name }}</name>{%- endfor %}"
      "{{- '<tool_call>\\n<function=' + tool_call.name + '>\\n' }}"
      "{{- '<parameter=' + args_name + '>\\n' }}{{- '\\n</parameter>\\n' }}";
  EXPECT_EQ(owl::chat::tool_call_format_for_template(coder), ToolCallFormat::Qwen3CoderXml);
  const std::string v31 =
      "{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>'+ tool['function']['name'] + '<｜tool▁sep｜>' + "
      "tool['function']['arguments'] + '<｜tool▁call▁end｜>'}}";
  EXPECT_EQ(owl::chat::tool_call_format_for_template(v31), ToolCallFormat::DeepSeekV31);
  EXPECT_EQ(owl::chat::tool_call_format_for_template("<tool_call>{{ tool_call | tojson }}</tool_call>"),
            ToolCallFormat::Hermes);
}

}  // namespace
