// Token masks over the real Llama-3.1 vocabulary (128k tokens): the mask allows exactly the
// tokens the byte-level matcher accepts, end of generation only when the grammar is
// complete, and MaskBench cases (a fixed sample of ../shared/jsonschema/maskbench) score
// exactly: valid instances accepted, invalid ones rejected, compile errors where expected.
#include <gtest/gtest.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "grammar/gbnf.h"
#include "grammar/json_schema.h"
#include "grammar/maskbench.h"
#include "grammar/matcher.h"
#include "runtime/grammar_vocab.h"
#include "test_util.h"

namespace {

using owl::grammar::MaskCache;
using owl::grammar::Matcher;

struct Llama3 {
  std::unique_ptr<owl::Tokenizer> tok;
  owl::grammar::Vocabulary vocab;
};

const Llama3& llama3() {
  static Llama3* l = [] {
    auto* x = new Llama3;
    x->tok = owl::Tokenizer::from_hf_dir(owl::test::shared_path("tokenizers/llama-3.1"));
    x->vocab = owl::runtime::grammar_vocabulary(*x->tok);
    return x;
  }();
  return *l;
}

bool bit(const std::vector<uint64_t>& mask, int32_t id) {
  return (mask[static_cast<uint32_t>(id) >> 6] >> (id & 63)) & 1;
}

TEST(Mask, AgreesWithTheMatcherOnEveryToken) {
  const Llama3& l = llama3();
  auto g = owl::grammar::compile_json_schema_text(
      R"({"type":"object","properties":{"name":{"type":"string","maxLength":8},"n":{"type":"integer","minimum":1}},"required":["name","n"],"additionalProperties":false})");
  auto cache = std::make_shared<MaskCache>(g, l.vocab.trie);
  Matcher m(cache);
  std::vector<uint64_t> mask;
  const std::string text = R"({"name":"ab \"c","n":42})";
  for (int32_t id : l.vocab.encode(text)) {
    m.fill_mask(mask);
    // Every token of the vocabulary: the mask bit equals what the matcher would accept.
    for (int32_t t = 0; t < l.tok->n_vocab(); t += 7) {
      if (l.tok->is_special(t)) {
        EXPECT_FALSE(bit(mask, t)) << t;
        continue;
      }
      ASSERT_EQ(bit(mask, t), m.allows(l.vocab.token_bytes[t])) << "token " << t << " after some of " << text;
    }
    ASSERT_TRUE(bit(mask, id));
    EXPECT_FALSE(bit(mask, l.tok->eos_id()));
    ASSERT_TRUE(m.advance(l.vocab.token_bytes[id]));
  }
  m.fill_mask(mask);
  EXPECT_TRUE(m.accepting());
  for (int32_t e : l.vocab.trie->eos()) EXPECT_TRUE(bit(mask, e));
  size_t allowed = 0;
  for (uint64_t w : mask) allowed += static_cast<size_t>(__builtin_popcountll(w));
  EXPECT_EQ(allowed, l.vocab.trie->eos().size());  // nothing may follow the closing brace
}

// Random walks through grammars whose masks lean on loop regions (free strings with escapes
// and UTF-8, keys other than the listed ones, regex loops, GBNF character classes, strings with
// a maxLength, free keys, repeated formats): at every
// step the mask allows exactly the tokens the byte-level matcher accepts.
TEST(Mask, LoopRegionsAgreeWithTheMatcherOnRandomWalks) {
  const Llama3& l = llama3();
  const std::vector<std::shared_ptr<const owl::grammar::Grammar>> grammars = {
      owl::grammar::compile_json_schema_text(R"({"type":"array","items":{"type":"string"}})"),
      owl::grammar::compile_json_schema_text(
          R"({"type":"object","properties":{"id":{"type":"integer"}},"additionalProperties":{"type":"string"}})"),
      owl::grammar::compile_json_schema_text(
          R"({"type":"array","items":{"anyOf":[{"type":"string","pattern":"^[a-z0-9-]+$"},{"type":"string","format":"email"}]}})"),
      owl::grammar::compile_json_schema_text(R"({"type":"array","items":{"type":"string","minLength":3}})"),
      // Bounded strings: positions share loop regions up to a shift along the copies.
      owl::grammar::compile_json_schema_text(
          R"({"type":"array","items":{"anyOf":[{"type":"string","maxLength":30},{"type":"string","minLength":12,"maxLength":200}]}})"),
      owl::grammar::compile_gbnf("root ::= (\"<\" [^<>\\\\]* \">\" | [\u00e0-\u00ff]+ \".\")+"),
      // Free keys (a string loop behind every key prefix, shared by shape), two properties of
      // one format and two of one length bound (one rule each).
      owl::grammar::compile_json_schema_text(
          R"({"type":"object","properties":{"home":{"type":"string","format":"uri"},"docs":{"type":"string","format":"uri"},)"
          R"("ab":{"type":"string","maxLength":12},"abc":{"type":"string","maxLength":12}},"additionalProperties":{"type":"integer"}})"),
  };
  std::mt19937 rng(11);
  std::vector<uint64_t> mask;
  size_t checked = 0;
  for (size_t gi = 0; gi < grammars.size(); ++gi) {
    auto cache = std::make_shared<MaskCache>(grammars[gi], l.vocab.trie);
    for (int walk = 0; walk < 2; ++walk) {
      Matcher m(cache);
      for (int step = 0; step < 8 && !m.finished(); ++step) {
        m.fill_mask(mask);
        std::vector<int32_t> allowed;
        for (int32_t t = 0; t < l.tok->n_vocab(); ++t) {
          if (l.tok->is_special(t)) {
            ASSERT_FALSE(bit(mask, t)) << t;
            continue;
          }
          const bool ok = m.allows(l.vocab.token_bytes[t]);
          ASSERT_EQ(bit(mask, t), ok) << "grammar " << gi << " step " << step << " token " << t;
          if (ok) allowed.push_back(t);
        }
        ++checked;
        if (allowed.empty()) break;
        ASSERT_TRUE(m.advance(l.vocab.token_bytes[allowed[rng() % allowed.size()]]));
      }
    }
  }
  EXPECT_GT(checked, 40u);
}

// Key positions of objects with free keys share their subtree walks (and exit tails) by shape,
// process-wide: the second and third objects reuse the first one's walks below the string loop,
// with other names around them. Every token of every mask agrees with the byte-level matcher.
TEST(Mask, SharedSubtreeWalksAgreeWithTheMatcherAcrossGrammars) {
  const Llama3& l = llama3();
  const std::pair<const char*, const char*> cases[] = {
      {R"({"type":"object","properties":{"alpha":{"type":"integer"},"beta":{"type":"string"}},"additionalProperties":{"type":"integer"}})",
       R"({"alpha":1,"beta":"x","bz":2,"q\"r":3})"},
      {R"({"type":"object","properties":{"bravo":{"type":"integer"},"\u00e9t\u00e9":{"type":"integer"},"al":{"type":"string","maxLength":3}},"additionalProperties":{"type":"integer"}})",
       R"({"bravo":1,"al":"abc","alpha":2,")"
       "\xc3\xa9x"
       R"(":4})"},
      {R"({"type":"array","items":{"type":"object","properties":{"kind":{"type":"string"}},"additionalProperties":{"type":"boolean"}}})",
       R"([{"kind":"a","kin":true},{"k":false}])"},
  };
  std::vector<uint64_t> mask;
  size_t checked = 0;
  for (const auto& [schema, text] : cases) {
    auto cache = std::make_shared<MaskCache>(owl::grammar::compile_json_schema_text(schema), l.vocab.trie);
    Matcher m(cache);
    for (int32_t id : l.vocab.encode(text)) {
      m.fill_mask(mask);
      for (int32_t t = 0; t < l.tok->n_vocab(); ++t) {
        if (l.tok->is_special(t)) continue;
        ASSERT_EQ(bit(mask, t), m.allows(l.vocab.token_bytes[t])) << "token " << t << " in " << text;
      }
      ++checked;
      ASSERT_TRUE(m.advance(l.vocab.token_bytes[id])) << text;
    }
    EXPECT_TRUE(m.accepting()) << text;
  }
  EXPECT_GT(checked, 20u);
}

// Key positions of objects with many properties and free keys take their masks from the plain
// string loop's, walking only the subtrees of the bytes where the key differs (a name's next
// character, the closing quote after a whole name, a character some name starts with, and an
// escaped quote or backslash a name holds). At every step of fixed texts and random walks the
// mask allows exactly the tokens the byte-level matcher accepts, and the derived path ran.
TEST(Mask, KeyMasksDerivedFromTheStringLoopAgreeWithTheMatcher) {
  const Llama3& l = llama3();
  const std::pair<const char*, std::vector<const char*>> cases[] = {
      {R"({"type":"object","properties":{"alpha":{"type":"integer"},"alpine":{"type":"string"},"al":{"type":"integer"},)"
       R"("beta":{"type":"boolean"},"be":{"type":"integer"},"name":{"type":"string","maxLength":5},"names":{"type":"integer"},)"
       R"("q\"x":{"type":"integer"},"b\\s":{"type":"integer"},"\u00e9t\u00e9":{"type":"integer"},"\u65e5":{"type":"integer"},)"
       R"("id":{"type":"integer"},"ident":{"type":"integer"},"x-y":{"type":"integer"}},"additionalProperties":{"type":"integer"}})",
       {R"({"alpha":1,"alpine":"a","al":2,"beta":true,"names":18,"q\"x":7,"b\\s":9,)"
        "\"\xc3\xa9t\xc3\xa9\":11,\"\xe6\x97\xa5\":13,"
        R"("x-y":16,"alp":3,"a":4,"":5,"bet":6,"q\"":8,"b\\":10,)"
        "\"\xc3\xa9t\":12,\"\xe6\x97\xa5\xe6\x9c\xac\":14,"
        R"("identity":15,"x-":17,"namesake":19,"zzz":20})",
        R"({"name":"abc","nam":1,"n\u0001":2,"\t":3})"}},
      {R"({"type":"array","items":{"type":"object","properties":{"kind":{"type":"string"},"kin":{"type":"integer"},)"
       R"("k":{"type":"integer"},"metadata":{"type":"object","properties":{"labels":{"type":"object"},"name":{"type":"string"}},)"
       R"("additionalProperties":{"type":"string"}}},"additionalProperties":{"type":"boolean"}}})",
       {R"([{"kind":"a","kin":1,"k":2,"metadata":{"labels":{"a":"b"},"name":"x","nam":"y","label":"z"},"kinds":true},{"ki":false}])"}},
  };
  std::mt19937 rng(7);
  std::vector<uint64_t> mask;
  size_t checked = 0, derived = 0;
  auto check = [&](Matcher& m, const std::string& where) {
    m.fill_mask(mask);
    std::vector<int32_t> allowed;
    for (int32_t t = 0; t < l.tok->n_vocab(); ++t) {
      if (l.tok->is_special(t)) {
        EXPECT_FALSE(bit(mask, t)) << t;
        continue;
      }
      const bool ok = m.allows(l.vocab.token_bytes[t]);
      EXPECT_EQ(bit(mask, t), ok) << "token " << t << " (" << l.vocab.token_bytes[t] << ") " << where;
      if (ok) allowed.push_back(t);
    }
    ++checked;
    return allowed;
  };
  for (const auto& [schema, texts] : cases) {
    auto cache = std::make_shared<MaskCache>(owl::grammar::compile_json_schema_text(schema), l.vocab.trie);
    for (const char* text : texts) {
      Matcher m(cache);
      std::string done;
      for (int32_t id : l.vocab.encode(text)) {
        check(m, "after " + done);
        ASSERT_TRUE(m.advance(l.vocab.token_bytes[id])) << done;
        done += l.vocab.token_bytes[id];
      }
      EXPECT_TRUE(m.accepting()) << text;
      derived += m.derived_groups();
    }
    // Random walks from the start and from inside a key.
    for (int walk = 0; walk < 6; ++walk) {
      Matcher m(cache);
      ASSERT_TRUE(m.advance(walk < 3 ? "" : (texts[0][0] == '[' ? R"([{"ki)" : R"({"alp)")));
      for (int step = 0; step < 6 && !m.finished(); ++step) {
        std::vector<int32_t> allowed = check(m, "walk " + std::to_string(walk) + " step " + std::to_string(step));
        if (allowed.empty()) break;
        ASSERT_TRUE(m.advance(l.vocab.token_bytes[allowed[rng() % allowed.size()]]));
      }
      derived += m.derived_groups();
    }
  }
  EXPECT_GT(checked, 80u);
  EXPECT_GT(derived, 20u);
}

TEST(Mask, CheckReportsTheRejectedByte) {
  const Llama3& l = llama3();
  auto g = owl::grammar::compile_json_schema_text(R"({"type":"object","properties":{"a":{"enum":["yes","no"]}}})");
  owl::grammar::InstanceResult ok = owl::grammar::check_text(g, R"({"a":"no"})", l.vocab, nullptr);
  EXPECT_TRUE(ok.accepted);
  owl::grammar::InstanceResult bad = owl::grammar::check_text(g, R"({"a":"nope"})", l.vocab, nullptr);
  EXPECT_FALSE(bad.accepted);
  EXPECT_EQ(bad.rejected_at, 8);  // {"a":"no then 'p'
  EXPECT_EQ(bad.mask_mismatches, 0u);
}

struct Expected {
  const char* file;
  const char* compile_error;  // nullptr: compiles, every instance scored right
};

// A fixed sample of MaskBench: cases owl passes, and cases whose keywords owl cannot enforce.
const Expected kCases[] = {
#include "maskbench_sample.inc"
};

TEST(MaskBench, FixedSampleScoresExactly) {
  const Llama3& l = llama3();
  size_t instances = 0;
  for (const Expected& e : kCases) {
    std::string path = owl::test::shared_path(std::string("jsonschema/maskbench/") + e.file);
    auto c = nlohmann::ordered_json::parse(owl::test::read_file(path));
    owl::grammar::CaseResult r = owl::grammar::run_case(e.file, c, l.vocab);
    if (e.compile_error) {
      EXPECT_FALSE(r.compiled) << e.file;
      EXPECT_NE(r.error.find(e.compile_error), std::string::npos) << e.file << ": " << r.error;
      continue;
    }
    EXPECT_TRUE(r.compiled) << e.file << ": " << r.error;
    EXPECT_EQ(r.valid_rejected, 0u) << e.file;
    EXPECT_EQ(r.invalid_accepted, 0u) << e.file;
    EXPECT_EQ(r.mask_mismatches, 0u) << e.file;
    EXPECT_GT(r.valid + r.invalid, 0u) << e.file;
    instances += r.valid + r.invalid;
  }
  EXPECT_GT(instances, 60u);
}

}  // namespace
