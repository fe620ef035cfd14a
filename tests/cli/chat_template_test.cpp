// `owl chat-template MODEL --input CASE.json` as a process: exact stdout for
// .jinja files, tokenizer folders and GGUF files; template errors exit 1 with
// the message; bad input is a clear error.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "formats/gguf_writer.h"
#include "test_util.h"

namespace {

using json = nlohmann::ordered_json;
using owl::test::run_owl;
using owl::test::shared_path;

std::vector<json> cases_of(const std::string& family) {
  std::vector<json> rows;
  std::ifstream f(shared_path("chat-templates/" + family + "/cases.jsonl"));
  std::string line;
  while (std::getline(f, line))
    if (!line.empty()) rows.push_back(json::parse(line));
  return rows;
}

std::string write_case(const json& c, const std::string& name = "case.json") {
  std::string path = owl::test::temp_dir() + "/" + name;
  std::ofstream(path, std::ios::binary) << c.dump();
  return path;
}

TEST(CliChatTemplate, RendersCasesOfEveryFamilyFromJinjaFiles) {
  for (const char* family :
       {"qwen3", "deepseek-v3", "deepseek-r1", "llama-3.1", "mistral-nemo", "glm-4.6", "kimi-k2", "kimi-k2-thinking"}) {
    auto rows = cases_of(family);
    std::string tmpl = shared_path(std::string("chat-templates/") + family + "/chat_template.jinja");
    int checked = 0, errors = 0;
    for (size_t i = 0; i < rows.size(); ++i) {
      const json& c = rows[i];
      bool is_error = c.contains("expect_error");
      if (!is_error && i % 9 != 0) continue;  // a spread of rendered cases plus every error case
      SCOPED_TRACE(c["id"].get<std::string>());
      auto r = run_owl({"chat-template", tmpl, "--input", write_case(c)});
      if (is_error) {
        EXPECT_EQ(r.exit_code, 1);
        EXPECT_EQ(r.out, "");
        EXPECT_NE(r.err.find(c["expect_error"].get<std::string>()), std::string::npos) << r.err;
        EXPECT_NE(r.err.find("template error at line "), std::string::npos) << r.err;
        ++errors;
      } else {
        EXPECT_EQ(r.exit_code, 0) << r.err;
        EXPECT_EQ(r.out, c["rendered"].get<std::string>());
        ++checked;
      }
    }
    EXPECT_GE(checked, 3) << family;
  }
}

TEST(CliChatTemplate, TokenizerFolderSuppliesTemplateAndSpecialTokens) {
  // deepseek-v3's tokenizer_config.json writes bos/eos as AddedToken objects; with the case's
  // bos/eos keys removed, the folder's own tokens must give the same prompt.
  for (const char* family : {"qwen3", "deepseek-v3"}) {
    auto rows = cases_of(family);
    for (size_t i = 0; i < rows.size(); i += 7) {
      json c = rows[i];
      SCOPED_TRACE(c["id"].get<std::string>());
      std::string want = c["rendered"].get<std::string>();
      c.erase("bos_token");
      c.erase("eos_token");
      auto r = run_owl({"chat-template", shared_path(std::string("tokenizers/") + family), "--input", write_case(c)});
      EXPECT_EQ(r.exit_code, 0) << r.err;
      EXPECT_EQ(r.out, want);
    }
  }
}

TEST(CliChatTemplate, GgufMetadataTemplate) {
  std::string tmpl = owl::test::read_file(shared_path("chat-templates/deepseek-r1/chat_template.jinja"));
  owl::gguf::Writer w;
  w.metadata().set("general.architecture", owl::gguf::Value::str("llama"));
  w.metadata().set("tokenizer.chat_template", owl::gguf::Value::str(tmpl));
  w.metadata().set("tokenizer.ggml.tokens", owl::gguf::Value::array(owl::gguf::ValueType::STRING,
                                                                    {owl::gguf::Value::str("<｜begin▁of▁sentence｜>"),
                                                                     owl::gguf::Value::str("<｜end▁of▁sentence｜>")}));
  w.metadata().set("tokenizer.ggml.bos_token_id", owl::gguf::Value::u32(0));
  w.metadata().set("tokenizer.ggml.eos_token_id", owl::gguf::Value::u32(1));
  std::string gguf_path = owl::test::temp_dir() + "/r1.gguf";
  w.write(gguf_path);
  auto rows = cases_of("deepseek-r1");
  for (size_t i = 0; i < rows.size(); i += 5) {
    json c = rows[i];
    SCOPED_TRACE(c["id"].get<std::string>());
    std::string want = c["rendered"].get<std::string>();
    c.erase("bos_token");  // from the GGUF's token table
    c.erase("eos_token");
    auto r = run_owl({"chat-template", gguf_path, "--input", write_case(c)});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, want);
  }
  // A GGUF without a template says so.
  owl::gguf::Writer bare;
  bare.metadata().set("general.architecture", owl::gguf::Value::str("llama"));
  std::string bare_path = owl::test::temp_dir() + "/bare.gguf";
  bare.write(bare_path);
  auto r = run_owl({"chat-template", bare_path, "--input", write_case(rows[0])});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("has no tokenizer.chat_template metadata"), std::string::npos) << r.err;
}

TEST(CliChatTemplate, BadInputIsAClearError) {
  std::string tmpl = shared_path("chat-templates/qwen3/chat_template.jinja");
  std::string dir = owl::test::temp_dir();
  std::ofstream(dir + "/bad.json") << "{not json";
  auto r = run_owl({"chat-template", tmpl, "--input", dir + "/bad.json"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("is not valid JSON"), std::string::npos) << r.err;

  r = run_owl({"chat-template", tmpl, "--input", write_case(json{{"messages", "hi"}})});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("needs a \"messages\" array"), std::string::npos) << r.err;

  std::ofstream(dir + "/broken.jinja") << "{% for x in messages %}\n{{ x.content | nosuchfilter }}{% endfor %}";
  r = run_owl({"chat-template", dir + "/broken.jinja", "--input",
               write_case(json{{"messages", json::array({{{"role", "user"}, {"content", "hi"}}})}})});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("template error at line 2, column 16: unknown filter 'nosuchfilter'"), std::string::npos)
      << r.err;

  std::ofstream(dir + "/syntax.jinja") << "{% if %}";
  r = run_owl({"chat-template", dir + "/syntax.jinja", "--input", write_case(json{{"messages", json::array()}})});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("template error at line 1, column 7: unexpected '%}'"), std::string::npos) << r.err;

  r = run_owl({"chat-template", tmpl});
  EXPECT_EQ(r.exit_code, 2);

  r = run_owl({"chat-template", dir + "/missing.jinja", "--input", dir + "/bad.json"});
  EXPECT_EQ(r.exit_code, 1);
}

}  // namespace
