// GBNF grammars: the language they accept, and syntax errors with line and column.
#include <gtest/gtest.h>

#include <string>

#include "grammar/gbnf.h"
#include "grammar/matcher.h"

namespace {

using owl::grammar::compile_gbnf;
using owl::grammar::CompileError;

bool accepts(const std::shared_ptr<const owl::grammar::Grammar>& g, const std::string& text) {
  owl::grammar::Matcher m(g);
  return m.advance(text) && m.accepting();
}

std::string error_of(const std::string& text) {
  try {
    compile_gbnf(text);
  } catch (const CompileError& e) {
    return e.what();
  }
  return "";
}

TEST(Gbnf, AcceptsItsLanguage) {
  auto g = compile_gbnf(
      "# answers\n"
      "root ::= \"yes\" | \"no\" ws num{2} | list\n"
      "ws ::= [ \\t]*\n"
      "num ::= [0-9]\n"
      "list ::= \"[\" ( item (\",\" item)* )? \"]\"\n"
      "item ::= [^\\],]+ | \"\\u00e9\"\n");
  EXPECT_TRUE(accepts(g, "yes"));
  EXPECT_TRUE(accepts(g, "no 12"));
  EXPECT_FALSE(accepts(g, "no 1"));
  EXPECT_FALSE(accepts(g, "maybe"));
  EXPECT_TRUE(accepts(g, "[a,b c,\xc3\xa9]"));
  EXPECT_FALSE(accepts(g, "[a,]"));
  auto any = compile_gbnf("root ::= .{1,3} \"!\"");
  EXPECT_TRUE(accepts(any, "\xe2\x82\xac!"));
  EXPECT_FALSE(accepts(any, "abcd!"));
}

TEST(Gbnf, SyntaxErrorsNameThePosition) {
  EXPECT_EQ(error_of("root ::= \"yes\" | (\n"), "GBNF syntax error at line 2, column 1: expected ')'");
  EXPECT_EQ(error_of("root ::= \"abc\nx ::= \"d\"\n"), "GBNF syntax error at line 1, column 14: unterminated string");
  EXPECT_EQ(error_of("root ::= item\n"), "GBNF syntax error at line 1, column 10: undefined rule 'item'");
  EXPECT_EQ(error_of("start ::= \"a\"\n"), "GBNF: no 'root' rule");
  EXPECT_EQ(error_of("root ::= [z-a]\n"), "GBNF syntax error at line 1, column 14: character range out of order");
  EXPECT_EQ(error_of("root ::= root \"a\" | \"b\"\n"), "GBNF: left recursion through rule 'root'");
}

}  // namespace
