// Every reference rendering in ../shared/chat-templates/*/cases.jsonl must come
// out byte-identical (or fail with the template's own message where the case
// expects an error). disagreements.jsonl rows follow Python Jinja2, which the
// README names as the expectation (for Kimi's list.append: the mutable-sandbox render).
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "chat/chat_template.h"
#include "test_util.h"

namespace {

using json = nlohmann::ordered_json;
using owl::chat::ChatInputs;
using owl::chat::ChatTemplate;

const char* kFamilies[] = {"qwen3",        "deepseek-v3", "deepseek-r1", "llama-3.1",
                           "mistral-nemo", "glm-4.6",     "kimi-k2",     "kimi-k2-thinking"};

std::vector<json> read_jsonl(const std::string& path) {
  std::vector<json> rows;
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line))
    if (!line.empty()) rows.push_back(json::parse(line));
  return rows;
}

std::string first_difference(const std::string& got, const std::string& want) {
  size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
  return "first difference at byte " + std::to_string(i) + ": got \"" + got.substr(i > 20 ? i - 20 : 0, 80) +
         "\" want \"" + want.substr(i > 20 ? i - 20 : 0, 80) + "\"";
}

class FamilyCases : public ::testing::TestWithParam<const char*> {};

TEST_P(FamilyCases, RendersEveryCaseExactly) {
  std::string family = GetParam();
  std::string dir = owl::test::shared_path("chat-templates/" + family);
  ChatTemplate tmpl = ChatTemplate::load(dir + "/chat_template.jinja");
  auto rows = read_jsonl(dir + "/cases.jsonl");
  ASSERT_GT(rows.size(), 20u);
  int rendered = 0, errors = 0;
  for (const auto& row : rows) {
    SCOPED_TRACE(row["id"].get<std::string>() + " " + row["name"].get<std::string>());
    ChatInputs in = ChatInputs::from_json(row);
    if (row.contains("expect_error")) {
      try {
        std::string out = tmpl.render(in);
        ADD_FAILURE() << "expected error '" << row["expect_error"].get<std::string>() << "', rendered: " << out;
      } catch (const owl::jinja::TemplateError& e) {
        EXPECT_EQ(e.message(), row["expect_error"].get<std::string>());
        ++errors;
      }
      continue;
    }
    std::string want = row["rendered"].get<std::string>();
    try {
      std::string got = tmpl.render(in);
      EXPECT_EQ(got, want) << first_difference(got, want);
      ++rendered;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "render failed: " << e.what();
    }
  }
  EXPECT_EQ(rendered + errors, static_cast<int>(rows.size()));
}

TEST_P(FamilyCases, DisagreementsFollowPythonJinja) {
  std::string family = GetParam();
  std::string dir = owl::test::shared_path("chat-templates/" + family);
  ChatTemplate tmpl = ChatTemplate::load(dir + "/chat_template.jinja");
  std::ifstream probe(dir + "/disagreements.jsonl");
  if (!probe) return;  // families without disagreements have no file
  for (const auto& row : read_jsonl(dir + "/disagreements.jsonl")) {
    SCOPED_TRACE(row["id"].get<std::string>() + " " + row["name"].get<std::string>());
    const json& py = row["python_jinja2"];
    ChatInputs in = ChatInputs::from_json(row);
    std::string want;
    if (py.contains("rendered_mutable_sandbox"))
      want = py["rendered_mutable_sandbox"].get<std::string>();
    else if (py.contains("rendered"))
      want = py["rendered"].get<std::string>();
    if (!want.empty()) {
      std::string got = tmpl.render(in);
      EXPECT_EQ(got, want) << first_difference(got, want);
      continue;
    }
    try {
      std::string got = tmpl.render(in);
      ADD_FAILURE() << "Python Jinja2 failed here, owl rendered: " << got;
    } catch (const owl::jinja::TemplateError& e) {
      if (py.contains("raised")) {
        EXPECT_EQ(e.message(), py["raised"].get<std::string>());
      } else {
        EXPECT_NE(e.message().find("can only concatenate str"), std::string::npos) << e.message();
      }
    }
  }
}

std::string family_test_name(const ::testing::TestParamInfo<const char*>& param_info) {
  std::string n = param_info.param;
  for (auto& c : n)
    if (!isalnum(static_cast<unsigned char>(c))) c = '_';
  return n;
}

INSTANTIATE_TEST_SUITE_P(ChatTemplates, FamilyCases, ::testing::ValuesIn(kFamilies), family_test_name);

}  // namespace
