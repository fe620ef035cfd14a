// The grammar constraint of a generation: which logits it sends to -inf, and how a reasoning
// block (opened by the prompt or by the model's first token) stays free until "</think>", and
// how a trigger (a tool call's marker) starts the grammar in an otherwise free answer.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "grammar/json_schema.h"
#include "runtime/grammar_constraint.h"

namespace {

// A toy vocabulary: 0 "<think>", 1 "</think>", 2 "{", 3 "}", 4 "x", 5 end of generation (special).
std::shared_ptr<const owl::grammar::Vocabulary> toy_vocab() {
  auto v = std::make_shared<owl::grammar::Vocabulary>();
  v->token_bytes = {"<think>", "</think>", "{", "}", "x", ""};
  v->trie = std::make_shared<owl::grammar::TokenTrie>(v->token_bytes, std::vector<int32_t>{5},
                                                      std::vector<bool>{false, false, false, false, false, true});
  return v;
}

std::vector<int> allowed(owl::GrammarConstraint& c) {
  std::vector<float> logits(6, 0.0f);
  c.apply(logits);
  std::vector<int> out;
  for (int i = 0; i < 6; ++i)
    if (!std::isinf(logits[i])) out.push_back(i);
  return out;
}

TEST(GrammarConstraint, MasksAndCompletes) {
  owl::GrammarConstraint c(owl::grammar::json_object_grammar(), toy_vocab());
  EXPECT_EQ(allowed(c), (std::vector<int>{2}));
  c.accept(2, "{");
  EXPECT_EQ(allowed(c), (std::vector<int>{3}));
  c.accept(3, "}");
  EXPECT_TRUE(c.complete());
  EXPECT_EQ(allowed(c), (std::vector<int>{5}));
}

TEST(GrammarConstraint, ReasoningTheModelOpensStaysFree) {
  owl::GrammarConstraint c(owl::grammar::json_object_grammar(), toy_vocab(), "</think>", {0});
  EXPECT_EQ(allowed(c), (std::vector<int>{0, 2}));  // open the block, or answer at once
  c.accept(0, "<think>");
  EXPECT_EQ(allowed(c).size(), 6u);  // free while reasoning
  c.accept(4, "x");
  c.accept(1, "</think>");
  EXPECT_EQ(allowed(c), (std::vector<int>{2}));

  owl::GrammarConstraint direct(owl::grammar::json_object_grammar(), toy_vocab(), "</think>", {0});
  direct.accept(2, "{");  // answered without reasoning: constrained from the first token
  EXPECT_EQ(allowed(direct), (std::vector<int>{3}));
}

TEST(GrammarConstraint, ReasoningThePromptOpenedStaysFree) {
  owl::GrammarConstraint c(owl::grammar::json_object_grammar(), toy_vocab(), "</think>");
  EXPECT_EQ(allowed(c).size(), 6u);
  c.accept(4, "x");
  c.accept(1, "</think>");
  EXPECT_EQ(allowed(c), (std::vector<int>{2}));
}

// tool_choice "auto" with strict tools: free text until the trigger, then the grammar (which
// starts with the trigger) from the trigger's first byte; a trigger inside reasoning does not count.
TEST(GrammarConstraint, TriggerStartsTheGrammar) {
  owl::GrammarConstraint c(owl::grammar::json_object_grammar(), toy_vocab(), "", {}, "{");
  EXPECT_FALSE(c.active());
  c.accept(4, "x");
  EXPECT_FALSE(c.active());
  c.accept(2, "{");
  ASSERT_TRUE(c.active());
  EXPECT_EQ(allowed(c), (std::vector<int>{3}));
  c.accept(3, "}");
  EXPECT_EQ(allowed(c), (std::vector<int>{5}));

  owl::GrammarConstraint r(owl::grammar::json_object_grammar(), toy_vocab(), "</think>", {0}, "{");
  EXPECT_FALSE(r.active());  // the first token is free too: the answer need not call
  r.accept(0, "<think>");
  r.accept(2, "{");  // inside reasoning
  EXPECT_FALSE(r.active());
  r.accept(1, "</think>");
  EXPECT_FALSE(r.active());
  r.accept(4, "x");
  r.accept(2, "{");
  EXPECT_EQ(allowed(r), (std::vector<int>{3}));
}

}  // namespace
