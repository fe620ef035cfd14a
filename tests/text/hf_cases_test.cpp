// Every line of ../shared/tokenizers/<family>/cases.jsonl: encode (ids, and
// ids_special with the post-processor's BOS) and decode (roundtrip / decoded /
// decoded_default / decoded_skip_special) must match the reference exactly.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "tokenizer_test_util.h"

namespace owl::test {
namespace {

using json = nlohmann::json;

std::vector<json> read_cases(const std::string& family) {
  std::ifstream f(shared_path("tokenizers/" + family + "/cases.jsonl"));
  std::vector<json> cases;
  std::string line;
  while (std::getline(f, line))
    if (!line.empty()) cases.push_back(json::parse(line));
  return cases;
}

class HfCases : public ::testing::TestWithParam<std::string> {};

TEST_P(HfCases, EncodeMatchesReference) {
  const std::string family = GetParam();
  const Tokenizer& tok = family_tokenizer(family);
  auto cases = read_cases(family);
  ASSERT_EQ(cases.size(), 388u);
  int failures = 0;
  for (const json& c : cases) {
    std::string text = c["text"];
    auto want = c["ids"].get<std::vector<int32_t>>();
    auto got = tok.encode(text);
    std::string d = diff_ids(got, want);
    if (!d.empty()) {
      ++failures;
      ADD_FAILURE() << family << " " << c["id"].get<std::string>() << " (" << c["category"].get<std::string>()
                    << ") encode: " << d;
    }
    auto want_s = c["ids_special"].get<std::vector<int32_t>>();
    std::string ds = diff_ids(tok.encode(text, true), want_s);
    if (!ds.empty()) {
      ++failures;
      ADD_FAILURE() << family << " " << c["id"].get<std::string>() << " encode(add_special): " << ds;
    }
  }
  EXPECT_EQ(failures, 0);
}

TEST_P(HfCases, DecodeMatchesReference) {
  const std::string family = GetParam();
  const Tokenizer& tok = family_tokenizer(family);
  int failures = 0;
  for (const json& c : read_cases(family)) {
    auto ids = c["ids"].get<std::vector<int32_t>>();
    std::string text = c["text"];
    std::string want = c["roundtrip"].get<bool>() ? text : c["decoded"].get<std::string>();
    std::string got = tok.decode(ids);
    if (got != want) {
      ++failures;
      ADD_FAILURE() << family << " " << c["id"].get<std::string>() << " decode: got \"" << got << "\" want \"" << want
                    << "\"";
    }
    std::string want_skip = c.contains("decoded_skip_special") ? c["decoded_skip_special"].get<std::string>() : want;
    if (std::string g = tok.decode(ids, true); g != want_skip) {
      ++failures;
      ADD_FAILURE() << family << " " << c["id"].get<std::string>() << " decode(skip_special): got \"" << g
                    << "\" want \"" << want_skip << "\"";
    }
    std::string want_default = c.contains("decoded_default") ? c["decoded_default"].get<std::string>() : want;
    if (std::string g = tok.decode(ids, false, tok.clean_up_tokenization_spaces()); g != want_default) {
      ++failures;
      ADD_FAILURE() << family << " " << c["id"].get<std::string>() << " decode(defaults): got \"" << g << "\" want \""
                    << want_default << "\"";
    }
    // Token strings: the vocabulary text of each id.
    auto tokens = c["tokens"].get<std::vector<std::string>>();
    for (size_t i = 0; i < ids.size() && i < tokens.size(); ++i)
      if (tok.token_text(ids[i]) != tokens[i]) {
        ++failures;
        ADD_FAILURE() << family << " " << c["id"].get<std::string>() << " token_text(" << ids[i] << ") = \""
                      << tok.token_text(ids[i]) << "\" want \"" << tokens[i] << "\"";
        break;
      }
  }
  EXPECT_EQ(failures, 0);
}

std::string family_test_name(const ::testing::TestParamInfo<std::string>& p) {
  std::string n = p.param;
  for (char& ch : n)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return n;
}

INSTANTIATE_TEST_SUITE_P(Families, HfCases,
                         ::testing::Values("qwen3", "deepseek-v3", "llama-3.1", "mistral-nemo", "mistral-7b-v0.1"),
                         family_test_name);

}  // namespace
}  // namespace owl::test
