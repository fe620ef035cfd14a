// Jinja renderer: language features with Python/Jinja2 semantics (expected
// strings are what Jinja2 3.1 with trim_blocks/lstrip_blocks prints), errors
// that name line and column, and the sandbox limits.
#include <gtest/gtest.h>

#include "chat/jinja.h"

namespace {

using json = nlohmann::ordered_json;
using owl::jinja::Options;
using owl::jinja::Template;
using owl::jinja::TemplateError;

std::string render(const std::string& src, const json& ctx = json::object(), Options o = {}) {
  return Template(src, o).render(ctx);
}

std::string error_of(const std::string& src, const json& ctx = json::object(), Options o = {}) {
  try {
    std::string out = Template(src, o).render(ctx);
    return "no error, rendered: " + out;
  } catch (const TemplateError& e) {
    return e.what();
  }
}

TEST(Jinja, WhitespaceControl) {
  EXPECT_EQ(render("a\n  {% if true %}\n  b\n  {% endif %}\nc"), "a\n  b\nc");  // trim_blocks + lstrip_blocks
  EXPECT_EQ(render("a  {%- if true -%}  b  {%- endif -%}  c"), "abc");
  EXPECT_EQ(render("x {{- ' y ' -}} z"), "x y z");
  EXPECT_EQ(render("a {# comment #}b\n{# c #}\nd"), "a b\nd");
  EXPECT_EQ(render("  {%+ if true %}x{% endif %}"), "  x");
  EXPECT_EQ(render("{% raw %}{{ not evaluated }}{% endraw %}"), "{{ not evaluated }}");
  EXPECT_EQ(render("line\n"), "line");  // keep_trailing_newline=False
  EXPECT_EQ(render("a\r\nb"), "a\nb");
  Options plain;
  plain.trim_blocks = plain.lstrip_blocks = false;
  EXPECT_EQ(render("a\n  {% if true %}\nb{% endif %}", json::object(), plain), "a\n  \nb");
}

TEST(Jinja, PrintsValuesLikePython) {
  json ctx = {{"n", nullptr},
              {"t", true},
              {"f", 1.0},
              {"g", 1e-5},
              {"i", 42},
              {"l", {1, "a", nullptr}},
              {"d", {{"k", "v"}, {"x", false}}}};
  EXPECT_EQ(render("{{ n }} {{ t }} {{ f }} {{ g }} {{ i }}", ctx), "None True 1.0 1e-05 42");
  EXPECT_EQ(render("{{ l }} {{ d }}", ctx), "[1, 'a', None] {'k': 'v', 'x': False}");
  EXPECT_EQ(render("{{ undefined_name }}|{{ 7 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 2 ** 10 }}"),
            "|3.5 3 -4 2 1024");
  EXPECT_EQ(render("{{ \"it's\" }} {{ ['it\\'s'] }} {{ 0.1 + 0.2 }} {{ 1e16 }} {{ 123456789.0 }}"),
            "it's [\"it's\"] 0.30000000000000004 1e+16 123456789.0");
}

TEST(Jinja, ToJsonMatchesPythonJsonDumps) {
  json ctx = json::parse(R"({"v": {"b": 1, "a": [1.5, "é\"\n", null, true, {}], "c": []}})");
  EXPECT_EQ(render("{{ v | tojson }}", ctx), R"({"b": 1, "a": [1.5, "é\"\n", null, true, {}], "c": []})");
  EXPECT_EQ(
      render("{{ v | tojson(indent=2) }}", ctx),
      "{\n  \"b\": 1,\n  \"a\": [\n    1.5,\n    \"é\\\"\\n\",\n    null,\n    true,\n    {}\n  ],\n  \"c\": []\n}");
  EXPECT_EQ(render("{{ v.a[1] | tojson(ensure_ascii=True) }}", ctx), R"("\u00e9\"\n")");
  EXPECT_EQ(render("{{ v | tojson(sort_keys=True, separators=(',', ':')) }}", ctx),
            R"({"a":[1.5,"é\"\n",null,true,{}],"b":1,"c":[]})");
  EXPECT_EQ(render("{{ '😀' | tojson(ensure_ascii=true) }}"), R"("\ud83d\ude00")");
}

TEST(Jinja, LoopsAndLoopObject) {
  json ctx = {{"xs", {"a", "b", "c"}}};
  EXPECT_EQ(render("{% for x in xs %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.first }}{{ loop.last "
                   "}}{{ loop.length }}{{ x }};{% endfor %}",
                   ctx),
            "103TrueFalse3a;212FalseFalse3b;321FalseTrue3c;");
  EXPECT_EQ(render("{% for x in xs if x != 'b' %}{{ x }}{{ loop.length }}{% endfor %}", ctx), "a2c2");
  EXPECT_EQ(render("{% for x in [] %}x{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(render("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }} {% endfor %}"), "a=1 b=2 ");
  EXPECT_EQ(render("{% for x in xs %}{% if x == 'b' %}{% continue %}{% endif %}{% if x == 'c' %}{% break %}{% endif "
                   "%}{{ x }}{% endfor %}",
                   ctx),
            "a");
  EXPECT_EQ(render("{% for i in range(3, -1, -1) %}{{ i }}{% endfor %}{% for c in 'hé' %}[{{ c }}]{% endfor %}"),
            "3210[h][é]");
  EXPECT_EQ(render("{% for x in xs %}{{ loop.cycle('o', 'e') }}{{ loop.previtem }}{% endfor %}", ctx), "oeaob");
  // set inside a loop does not leak; namespace attributes do
  EXPECT_EQ(render("{% set x = 1 %}{% set ns = namespace(y=1) %}{% for i in [1,2] %}{% set x = 5 %}{% set ns.y = ns.y "
                   "+ i %}{% endfor %}{{ x }} {{ ns.y }}"),
            "1 4");
}

TEST(Jinja, MacrosAndCallBlocks) {
  EXPECT_EQ(render("{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('Ann') }} {{ "
                   "greet('Bo', punct='?') }}"),
            "Hi Ann! Hi Bo?");
  EXPECT_EQ(render("{% macro wrap() %}<{{ caller() }}>{% endmacro %}{% call wrap() %}inner{% endcall %}"), "<inner>");
  EXPECT_EQ(render("{% macro m() %}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, k=3) }}"), "[1, 2]{'k': 3}");
  EXPECT_EQ(render("{% set x %}  block {{ 1 + 1 }}{% endset %}[{{ x }}]{% filter upper %}up{% endfilter %}"),
            "[  block 2]UP");
}

TEST(Jinja, ExpressionsAndTests) {
  json ctx = {{"m", {{"role", "user"}, {"content", "Hello"}}}, {"none_v", nullptr}, {"s", "abc"}};
  EXPECT_EQ(render("{{ 'yes' if 'role' in m else 'no' }} {{ 'x' not in s }} {{ 'b' in s }} {{ m.role ~ 1 }}", ctx),
            "yes True True user1");
  EXPECT_EQ(render("{{ m is mapping }} {{ s is string }} {{ s is iterable }} {{ none_v is none }} {{ m.missing is "
                   "defined }} {{ 3 is number }}",
                   ctx),
            "True True True True False True");
  EXPECT_EQ(
      render(
          "{{ not m.x is defined }} {{ 1 < 2 < 3 }} {{ 'a' < 'b' }} {{ [1, 2] == [1, 2] }} {{ {'a': 1} == {'a': 1} }}",
          ctx),
      "True True True True True");
  EXPECT_EQ(
      render("{{ none_v or 'dflt' }} {{ s and 5 }} {{ 2 is even }} {{ 5 is divisibleby 5 }} {{ s is equalto 'abc' }}",
             ctx),
      "dflt 5 True True True");
  EXPECT_EQ(render("{{ s[::-1] }} {{ s[1:] }} {{ s[:-1] }} {{ s[-1] }} {{ [1,2,3,4][::2] }} {{ [1,2,3][-2:] }}", ctx),
            "cba bc ab c [1, 3] [2, 3]");
  EXPECT_EQ(render("{{ 'héllo wörld'[1:4] }} {{ 'héllo' | length }}"), "éll 5");
  EXPECT_EQ(render("{{ 'abc'[1::9223372036854775807] }} {{ 'abc'[::-9223372036854775807] }} {{ [1, 2][5:] }} {{ "
                   "'abc'[-100:100] }}"),
            "b c [] abc");
  EXPECT_EQ(render("{{ '%s has %d items' % ('list', 3) }} {{ '{} and {name}'.format(1, name='x') }}"),
            "list has 3 items 1 and x");
}

TEST(Jinja, StringMethods) {
  EXPECT_EQ(
      render(
          "{{ '  a b  '.strip() }}|{{ '\\n\\nx\\n'.lstrip('\\n') }}|{{ 'xxhixx'.rstrip('x') }}|{{ ' a  b '.split() }}"),
      "a b|x\n|xxhi|['a', 'b']");
  EXPECT_EQ(render("{{ 'a,b,,c'.split(',') }} {{ 'a,b,c'.rsplit(',', 1) }} {{ 'a b c'.split(None, 1) }}"),
            "['a', 'b', '', 'c'] ['a,b', 'c'] ['a', 'b c']");
  EXPECT_EQ(render("{{ 'Hello'.startswith('He') }} {{ 'Hello'.endswith(('x', 'lo')) }} {{ 'abcabc'.replace('b', 'X', "
                   "1) }} {{ 'hello world'.title() }}"),
            "True True aXcabc Hello World");
  EXPECT_EQ(render("{{ 'abc'.find('c') }} {{ 'aXa'.count('a') }} {{ 'ÉCOLE'.lower() }} {{ 'abc'.upper() }} {{ "
                   "'-'.join(['a', 'b']) }}"),
            "2 2 école ABC a-b");
  EXPECT_EQ(render("{{ '\\u3000 x\\u00a0'.strip() }}"), "x");  // Python's Unicode whitespace
}

TEST(Jinja, ListAndDictMethods) {
  EXPECT_EQ(render("{% set ns = namespace(ids=[]) %}{% set _ = ns.ids.append('a') %}{% do ns.ids.append('b') %}{{ "
                   "ns.ids.pop(0) }}{{ ns.ids }}"),
            "a['b']");
  json ctx = {{"d", {{"a", 1}, {"b", nullptr}}}};
  EXPECT_EQ(render("{{ d.get('a') }} {{ d.get('z') }} {{ d.get('z', 5) }} {{ d.keys() | list }} {{ d.values() | list "
                   "}} {{ d['b'] }}",
                   ctx),
            "1 None 5 ['a', 'b'] [1, None] None");
}

TEST(Jinja, Filters) {
  json ctx = json::parse(
      R"({"ms": [{"role": "user", "c": "A"}, {"role": "tool", "c": "B"}, {"role": "user", "c": "C", "x": 1}]})");
  EXPECT_EQ(render("{{ ms | selectattr('role', 'equalto', 'user') | map(attribute='c') | join(',') }}", ctx), "A,C");
  EXPECT_EQ(render("{{ ms | rejectattr('role', 'eq', 'user') | list | length }} {{ ms | selectattr('x', 'undefined') | "
                   "list | length }}",
                   ctx),
            "1 2");
  EXPECT_EQ(render("{{ ['a', 'code', 'b'] | reject('equalto', 'code') | join(', ') }} {{ [3, 1, 2] | sort | list }} {{ "
                   "[1, 1, 2] | unique | list }}"),
            "a, b [1, 2, 3] [1, 2]");
  EXPECT_EQ(render("{{ '  x ' | trim }}|{{ 'hi' | upper }}|{{ 'hello world' | title }}|{{ 'hello' | capitalize }}|{{ 3 "
                   "| string }}|{{ '42' | int + 1 }}|{{ '2.5' | float }}|{{ -3 | abs }}"),
            "x|HI|Hello World|Hello|3|43|2.5|3");
  EXPECT_EQ(render("{{ missing | default('d') }} {{ '' | default('e', true) }} {{ [1, 2] | first }} {{ [1, 2] | last "
                   "}} {{ {'b': 1, 'a': 2} | dictsort }}"),
            "d e 1 2 [('a', 2), ('b', 1)]");
  EXPECT_EQ(render("{{ {'k': 'v'} | items | list }} {{ 'a<b' | e }} {{ 'x' | safe }} {{ [1,2,3] | sum }} {{ 'a\\nb' | "
                   "indent(2) }}"),
            "[('k', 'v')] a&lt;b x 6 a\n  b");
}

TEST(Jinja, GlobalsRaiseAndStrftime) {
  EXPECT_EQ(error_of("line one\n{{ raise_exception('Bad roles!') }}"),
            "template error at line 2, column 4: Bad roles!");
  Options o;
  o.fixed_time = 86400 * 365;  // 1971-01-01
  setenv("TZ", "UTC", 1);
  tzset();
  EXPECT_EQ(render("{{ strftime_now('%d %b %Y') }}", json::object(), o), "01 Jan 1971");
  EXPECT_EQ(render("{{ dict(a=1) }} {{ namespace(a=1).a }} {{ (1,) }} {{ (1, 'a') }}"), "{'a': 1} 1 (1,) (1, 'a')");
}

TEST(Jinja, ErrorsNameLineAndColumn) {
  EXPECT_EQ(error_of("ok\n  {{ x | nofilter }}"), "template error at line 2, column 10: unknown filter 'nofilter'");
  EXPECT_EQ(error_of("{% if x is weird %}{% endif %}"), "template error at line 1, column 9: unknown test 'weird'");
  EXPECT_EQ(error_of("{% if true %}never closed"),
            "template error at line 1, column 26: unexpected end of template; missing {% endif %}");
  EXPECT_EQ(error_of("{{ 'a' + {} }}"),
            "template error at line 1, column 8: can only concatenate str (not \"dict\") to str");
  EXPECT_EQ(error_of("{{ x.y }}"), "template error at line 1, column 5: 'x' is undefined");
  EXPECT_EQ(error_of("{{ 'unterminated }}"), "template error at line 1, column 4: unterminated string literal");
  EXPECT_EQ(error_of("{% set x = 1 %}{{ x.a.b }}"),
            "template error at line 1, column 22: 'int object' has no attribute 'a'");
  EXPECT_EQ(error_of("{{ '</think>' in none }}"),
            "template error at line 1, column 4: argument of type 'NoneType' is not iterable");
  EXPECT_EQ(
      error_of("{% include 'other.jinja' %}"),
      "template error at line 1, column 4: 'include' is not supported: chat templates cannot load other templates");
  EXPECT_EQ(error_of("{% set l = [1] %}{{ l.foo() }}"),
            "template error at line 1, column 22: 'list object' has no attribute 'foo'; it cannot be called");
  EXPECT_EQ(error_of("{{ 1 // 0 }}"), "template error at line 1, column 6: integer division by zero");
}

TEST(Jinja, SandboxLimits) {
  Options o;
  o.limits.max_loop_iterations = 1000;
  EXPECT_NE(error_of("{% for i in range(10) %}{% for j in range(200) %}{% endfor %}{% endfor %}", json::object(), o)
                .find("loop iteration limit exceeded (1000)"),
            std::string::npos);
  EXPECT_NE(error_of("{{ range(100000000000) | length }}").find("loop iteration limit exceeded"), std::string::npos);
  o = Options{};
  o.limits.max_output_bytes = 100;
  EXPECT_NE(
      error_of("{% for i in range(50) %}abc{% endfor %}", json::object(), o).find("output limit exceeded (100 bytes)"),
      std::string::npos);
  EXPECT_NE(error_of("{{ 'x' * 1000 }}", json::object(), o).find("output limit exceeded"), std::string::npos);
  EXPECT_NE(error_of("{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(0) }}")
                .find("call depth limit exceeded (64 nested calls)"),
            std::string::npos);
  std::string deep(5000, '(');
  EXPECT_NE(error_of("{{ " + deep + "1 }}").find("nested too deeply"), std::string::npos);
  std::string chain = "{{ 1";
  for (int i = 0; i < 5000; ++i) chain += " + 1";
  EXPECT_NE(error_of(chain + " }}").find("expression nested too deeply"), std::string::npos);
  std::string blocks;
  for (int i = 0; i < 1000; ++i) blocks += "{% if true %}";
  EXPECT_NE(error_of(blocks).find("nested too deeply"), std::string::npos);
  EXPECT_NE(error_of("{% set ns = namespace(l=[]) %}{% do ns.l.append(ns.l) %}")
                .find("cannot store a container inside itself"),
            std::string::npos);
  EXPECT_NE(error_of("{{ 9223372036854775807 + 1 }}").find("integer overflow"), std::string::npos);
  EXPECT_NE(error_of("{% set l = [] %}{% do l.append(l.append) %}").find("cannot store the method 'append'"),
            std::string::npos);
  EXPECT_NE(
      error_of("{% set ns = namespace(a=[]) %}{% do ns.a.append(ns) %}").find("cannot store a container inside itself"),
      std::string::npos);
}

}  // namespace
