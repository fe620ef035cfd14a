// Tokenizer API behaviour beyond the reference cases: special ids, the small
// SentencePiece vocabulary of stories260K, streaming decode, invalid UTF-8,
// long inputs, and clear errors for bad files.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "text/utf8.h"
#include "tokenizer_test_util.h"

namespace owl::test {
namespace {

using json = nlohmann::json;

const Tokenizer& stories() {
  static std::unique_ptr<Tokenizer> t = Tokenizer::open(shared_path("models/stories260K/stories260K-f32.gguf"));
  return *t;
}

TEST(TokenizerApi, SpecialIdsQwen3) {
  const Tokenizer& t = family_tokenizer("qwen3");
  EXPECT_EQ(t.n_vocab(), 151669);
  EXPECT_EQ(t.bos_id(), -1);
  EXPECT_EQ(t.eos_id(), 151645);  // <|im_end|> per tokenizer_config.json
  EXPECT_TRUE(t.is_eog(151645));
  EXPECT_TRUE(t.is_eog(151643));  // <|endoftext|>
  EXPECT_FALSE(t.is_eog(9707));
  EXPECT_TRUE(t.is_special(151644));
  EXPECT_FALSE(t.is_special(151667));  // <think> is an added token but not special
  EXPECT_EQ(t.token_id("<think>"), 151667);
  EXPECT_EQ(t.token_text(1879), "\xC4\xA0world");  // "Ġworld"
  EXPECT_EQ(t.token_id("\xC4\xA0world"), 1879);
  EXPECT_FALSE(t.token_id("no such token here").has_value());
  EXPECT_EQ(t.token_text(-1), "");
  EXPECT_EQ(t.token_text(t.n_vocab()), "");
  // skip_special drops <|im_start|> but keeps the non-special <think>.
  auto ids = t.encode("<|im_start|><think>hi");
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_EQ(t.decode(ids, true), "<think>hi");
}

TEST(TokenizerApi, ParseSpecialOff) {
  const Tokenizer& q = family_tokenizer("qwen3");
  const std::string text = "<|im_start|>user<think>";
  auto parsed = q.encode(text, false, true);
  EXPECT_EQ(parsed, q.encode(text));
  EXPECT_EQ(parsed.front(), 151644);
  auto plain = q.encode(text, false, false);
  EXPECT_GT(plain.size(), parsed.size());
  EXPECT_EQ(plain.back(), 151667);  // <think> is not special: still one token
  for (int32_t id : plain) EXPECT_FALSE(q.is_special(id));
  EXPECT_EQ(q.decode(plain), text);
}

TEST(TokenizerApi, SpecialIdsLlama31AndMistral) {
  const Tokenizer& l = family_tokenizer("llama-3.1");
  EXPECT_EQ(l.bos_id(), 128000);
  EXPECT_EQ(l.eos_id(), 128009);  // <|eot_id|>
  EXPECT_TRUE(l.is_eog(128009));
  EXPECT_TRUE(l.is_eog(128001));  // <|end_of_text|>
  EXPECT_EQ(l.encode("Hi", true).front(), 128000);
  const Tokenizer& m = family_tokenizer("mistral-7b-v0.1");
  EXPECT_EQ(m.bos_id(), 1);
  EXPECT_EQ(m.eos_id(), 2);
  EXPECT_EQ(m.encode("", true), std::vector<int32_t>{1});
  EXPECT_EQ(m.encode(" Hello"), (std::vector<int32_t>{28705, 22557}));
}

// stories260K: llama.cpp's prompt ids (add_special=true adds BOS) and the
// pieces of the generated ids, from the model's reference.jsonl.
TEST(TokenizerApi, Stories260KMatchesLlamaCpp) {
  const Tokenizer& t = stories();
  EXPECT_EQ(t.n_vocab(), 512);
  EXPECT_EQ(t.bos_id(), 1);
  EXPECT_EQ(t.eos_id(), 2);
  std::ifstream f(shared_path("models/stories260K/reference.jsonl"));
  std::string line;
  int n = 0;
  while (std::getline(f, line)) {
    json j = json::parse(line);
    auto want = j["prompt_ids"].get<std::vector<int32_t>>();
    std::string prompt = j["prompt"];
    EXPECT_EQ(diff_ids(t.encode(prompt, true), want), "") << "prompt " << j["id"] << ": " << prompt;
    // The generated text is the concatenation of the pieces (byte tokens as raw bytes).
    std::string pieces;
    for (int32_t id : j["generated_ids"].get<std::vector<int32_t>>()) pieces += t.token_bytes(id);
    EXPECT_EQ(pieces, j["generated_text"].get<std::string>()) << "line " << j["id"];
    // Round trip of the prompt (decode strips the dummy-prefix space).
    EXPECT_EQ(t.decode(want, true), prompt);
    ++n;
  }
  EXPECT_EQ(n, 10);
  // Dummy-prefix "▁", then byte fallback for ë.
  EXPECT_EQ(t.encode("Zo\xC3\xAB"), (std::vector<int32_t>{410, 469, 414, 198, 174}));
}

// Streaming decode over every corpus case of every family: each push returns
// valid UTF-8 and the pieces add up to decode(ids).
TEST(IncrementalDecoder, MatchesDecodeOnCorpus) {
  std::ifstream f(shared_path("tokenizers/corpus.jsonl"));
  std::vector<std::string> texts;
  std::string line;
  while (std::getline(f, line)) texts.push_back(json::parse(line)["text"]);
  ASSERT_EQ(texts.size(), 388u);
  for (const char* family : {"qwen3", "deepseek-v3", "llama-3.1", "mistral-nemo", "mistral-7b-v0.1"}) {
    const Tokenizer& t = family_tokenizer(family);
    int failures = 0;
    for (size_t k = 0; k < texts.size() && failures < 3; ++k) {
      auto ids = t.encode(texts[k], true);
      for (bool skip : {false, true}) {
        IncrementalDecoder dec(t, skip);
        std::string streamed;
        for (int32_t id : ids) {
          std::string part = dec.push(id);
          if (!text::utf8_is_valid(part)) {
            ++failures;
            ADD_FAILURE() << family << " case " << k << ": push returned invalid UTF-8";
          }
          streamed += part;
        }
        streamed += dec.flush();
        if (streamed != t.decode(ids, skip)) {
          ++failures;
          ADD_FAILURE() << family << " case " << k << " skip=" << skip << ": streamed \"" << streamed
                        << "\" != decode \"" << t.decode(ids, skip) << "\"";
        }
      }
    }
  }
}

TEST(IncrementalDecoder, HoldsBackPartialCharacters) {
  // Mistral 7B spells 丂 (U+4E02, not in its vocabulary) as byte tokens <0xE4><0xB8><0x82>.
  const Tokenizer& m = family_tokenizer("mistral-7b-v0.1");
  auto ids = m.encode("\xE4\xB8\x82");
  ASSERT_EQ(ids.size(), 4u);  // "▁" then three byte tokens
  EXPECT_EQ(m.token_text(ids[1]), "<0xE4>");
  IncrementalDecoder d(m);
  EXPECT_EQ(d.push(ids[0]), "");  // the dummy-prefix space is stripped
  EXPECT_EQ(d.push(ids[1]), "");
  EXPECT_EQ(d.push(ids[2]), "");
  EXPECT_EQ(d.push(ids[3]), "\xE4\xB8\x82");
  EXPECT_EQ(d.flush(), "");

  // Byte-level: a rare CJK character (U+2A6D6) that Qwen3 splits into several tokens.
  const Tokenizer& q = family_tokenizer("qwen3");
  const std::string rare = "\xF0\xAA\x9B\x96";
  auto e = q.encode(rare);
  ASSERT_GE(e.size(), 2u);
  IncrementalDecoder dq(q);
  std::string out;
  for (size_t i = 0; i + 1 < e.size(); ++i) out += dq.push(e[i]);
  EXPECT_EQ(out, "");
  EXPECT_EQ(dq.push(e.back()), rare);

  // A sequence cut short: flush turns the dangling bytes into U+FFFD.
  IncrementalDecoder cut(m);
  cut.push(ids[0]);
  cut.push(ids[1]);
  cut.push(ids[2]);
  EXPECT_EQ(cut.flush(), "\xEF\xBF\xBD");
  // A byte that can never start a character is replaced at once.
  IncrementalDecoder bad(m);
  EXPECT_EQ(bad.push(*m.token_id("<0xFF>")), "\xEF\xBF\xBD");
}

// Invalid UTF-8 input: each maximal invalid subsequence is encoded as U+FFFD.
TEST(TokenizerApi, InvalidUtf8BecomesReplacementCharacter) {
  const Tokenizer& q = family_tokenizer("qwen3");
  EXPECT_EQ(q.encode("a\xFF"
                     "b"),
            q.encode("a\xEF\xBF\xBD"
                     "b"));
  EXPECT_EQ(q.encode("\xE4\xB8"), q.encode("\xEF\xBF\xBD"));              // truncated 3-byte sequence: one U+FFFD
  EXPECT_EQ(q.encode("\xC0\xAF"), q.encode("\xEF\xBF\xBD\xEF\xBF\xBD"));  // overlong: two
  EXPECT_EQ(q.encode("\xED\xA0\x80"), q.encode("\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"));  // surrogate
  EXPECT_EQ(q.decode(q.encode("x\xFFy")), "x\xEF\xBF\xBDy");
  // Decoding half a character yields U+FFFD, never broken UTF-8.
  auto e = q.encode("\xF0\xAA\x9B\x96");
  ASSERT_GE(e.size(), 2u);
  std::string half = q.decode({e[0]});
  EXPECT_TRUE(text::utf8_is_valid(half));
  EXPECT_EQ(half, "\xEF\xBF\xBD");
  // Out-of-range ids decode to nothing.
  EXPECT_EQ(q.decode({-5, 9707, 999999999}), "Hello");
}

// 100 KB of one character: BPE merges are O(n log n) per pre-token, so this
// is quick; the test checks the result, the benchmark measures the time.
TEST(TokenizerApi, LongRunOfOneCharacter) {
  const std::string run(100000, 'a');
  for (const char* family : {"qwen3", "mistral-7b-v0.1", "llama-3.1"}) {
    const Tokenizer& t = family_tokenizer(family);
    auto ids = t.encode(run);
    EXPECT_LT(ids.size(), run.size() / 4) << family;
    EXPECT_EQ(t.decode(ids), run) << family;
  }
  const Tokenizer& q = family_tokenizer("qwen3");
  std::string spaces(100000, ' ');
  EXPECT_EQ(q.decode(q.encode(spaces)), spaces);
  std::string digits(100000, '7');
  EXPECT_EQ(q.encode(digits).size(), digits.size());  // Qwen splits digits one by one
}

TEST(TokenizerApi, CleanUpTokenizationSpaces) {
  const Tokenizer& l = family_tokenizer("llama-3.1");
  EXPECT_TRUE(l.clean_up_tokenization_spaces());
  auto ids = l.encode("x != y , it 's");
  EXPECT_EQ(l.decode(ids), "x != y , it 's");
  EXPECT_EQ(l.decode(ids, false, true), "x!= y, it's");
}

// ---- bad input: one clear owl::Error each ----

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

std::string write_temp(const std::string& name, const std::string& content) {
  std::string p = temp_dir() + "/" + name;
  std::ofstream(p, std::ios::binary) << content;
  return p;
}

TEST(TokenizerErrors, MissingPath) {
  EXPECT_NE(error_of([] { Tokenizer::open("/nonexistent/tok.json"); }).find("no such file"), std::string::npos);
  std::string dir = temp_dir();
  EXPECT_NE(error_of([&] { Tokenizer::open(dir); }).find("no tokenizer.json"), std::string::npos);
}

TEST(TokenizerErrors, BadJson) {
  std::string p = write_temp("tokenizer.json", "{ not json");
  EXPECT_NE(error_of([&] { Tokenizer::open(p); }).find("not valid JSON"), std::string::npos);
  std::string q = write_temp("tokenizer.json", R"({"model": {"type": "WordPiece", "vocab": {}}})");
  EXPECT_NE(error_of([&] { Tokenizer::open(q); }).find("WordPiece"), std::string::npos);
  std::string r = write_temp("tokenizer.json", R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}})");
  EXPECT_NE(error_of([&] { Tokenizer::open(r); }).find("not in the vocabulary"), std::string::npos);
  std::string s = write_temp("tokenizer.json",
                             R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
                                 "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "[a-"}, "behavior": "Isolated"}})");
  EXPECT_NE(error_of([&] { Tokenizer::open(s); }).find("does not compile"), std::string::npos);
  std::string u = write_temp("tokenizer.json",
                             R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
                                 "normalizer": {"type": "Precompiled"}})");
  EXPECT_NE(error_of([&] { Tokenizer::open(u); }).find("normalizer type 'Precompiled'"), std::string::npos);
}

std::string gguf_bytes(const std::function<void(gguf::Metadata&)>& fill) {
  gguf::Writer w;
  w.metadata().set("general.architecture", gguf::Value::str("llama"));
  fill(w.metadata());
  return w.to_bytes();
}

std::unique_ptr<Tokenizer> tokenizer_from_bytes(const std::string& bytes) {
  auto f = gguf::File::parse(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "test.gguf");
  return Tokenizer::from_gguf(*f);
}

gguf::Value str_array(std::vector<std::string> v) {
  std::vector<gguf::Value> items;
  for (auto& s : v) items.push_back(gguf::Value::str(s));
  return gguf::Value::array(gguf::ValueType::STRING, std::move(items));
}

TEST(TokenizerErrors, BadGguf) {
  std::string none = gguf_bytes([](gguf::Metadata&) {});
  EXPECT_NE(error_of([&] { tokenizer_from_bytes(none); }).find("no tokenizer"), std::string::npos);

  std::string bert = gguf_bytes([](gguf::Metadata& m) { m.set("tokenizer.ggml.model", gguf::Value::str("bert")); });
  EXPECT_NE(error_of([&] { tokenizer_from_bytes(bert); }).find("'bert' is not supported"), std::string::npos);

  auto gpt2 = [](const std::string& pre) {
    return gguf_bytes([&](gguf::Metadata& m) {
      m.set("tokenizer.ggml.model", gguf::Value::str("gpt2"));
      m.set("tokenizer.ggml.pre", gguf::Value::str(pre));
      m.set("tokenizer.ggml.tokens", str_array({"a", "b", "ab"}));
      m.set("tokenizer.ggml.merges", str_array({"a b"}));
    });
  };
  EXPECT_NE(error_of([&] { tokenizer_from_bytes(gpt2("kimi-k2")); }).find("'kimi-k2' is not a pre-tokenizer"),
            std::string::npos);
  // A tiny valid vocabulary works end to end.
  auto t = tokenizer_from_bytes(gpt2("qwen2"));
  EXPECT_EQ(t->encode("abab"), (std::vector<int32_t>{2, 2}));
  EXPECT_EQ(t->decode({2, 0}), "aba");

  std::string mismatch = gguf_bytes([](gguf::Metadata& m) {
    m.set("tokenizer.ggml.model", gguf::Value::str("llama"));
    m.set("tokenizer.ggml.tokens", str_array({"a", "b"}));
    m.set("tokenizer.ggml.scores", gguf::Value::array(gguf::ValueType::FLOAT32, {gguf::Value::f32(0)}));
  });
  EXPECT_NE(error_of([&] { tokenizer_from_bytes(mismatch); }).find("has 1 entries for 2 tokens"), std::string::npos);
}

}  // namespace
}  // namespace owl::test
