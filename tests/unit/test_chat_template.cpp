// Chat-template renderer: every case of shared/chat-templates byte for byte, plus Jinja language features
// (expected strings computed with Jinja2 3.1 configured as transformers does).
#include <gtest/gtest.h>

#include <cstdio>
#include <dirent.h>
#include <fstream>
#include <sstream>

#include "chat/chat_template.h"
#include "core/error.h"
#include "core/json.h"

using tfu::chat::message;
using tfu::chat::render;
using tfu::chat::render_options;

namespace {

std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// 2026-01-02 12:00 local time, as the cases were rendered with.
std::time_t fixed_now() {
    std::tm tm{};
    tm.tm_year = 2026 - 1900;
    tm.tm_mon = 0;
    tm.tm_mday = 2;
    tm.tm_hour = 12;
    tm.tm_isdst = -1;
    return std::mktime(&tm);
}

std::vector<message> two_messages() { return {{"user", "hi"}, {"assistant", "yo"}}; }

// Renders with two messages (user "hi", assistant "yo"); on error returns "ERR " + message.
std::string r(const std::string& src, bool add_generation_prompt = false) {
    render_options o;
    o.add_generation_prompt = add_generation_prompt;
    o.bos_token = "<s>";
    o.eos_token = "</s>";
    o.now = fixed_now();
    try {
        return render(src, two_messages(), o);
    } catch (const tfu::error& e) {
        EXPECT_EQ(e.status(), TFU_STATUS_TEMPLATE_ERROR);
        return std::string("ERR ") + e.what();
    }
}

}  // namespace

TEST(chat_template, shared_conformance_cases) {
    const std::string dir = std::string(TFU_SHARED_DIR) + "/chat-templates";
    std::vector<std::string> files;
    if (DIR* d = opendir(dir.c_str())) {
        while (dirent* e = readdir(d)) {
            std::string n = e->d_name;
            if (n.size() > 11 && n.compare(n.size() - 11, 11, ".cases.json") == 0) files.push_back(n);
        }
        closedir(d);
    }
    std::sort(files.begin(), files.end());
    ASSERT_GE(files.size(), 8u) << "no cases found in " << dir;
    size_t total = 0, passed_total = 0;
    for (const std::string& file : files) {
        tfu::json::value cases = tfu::json::parse(read_file(dir + "/" + file));
        std::string tmpl = read_file(dir + "/" + cases.at("template").as_string());
        ASSERT_FALSE(tmpl.empty()) << file;
        size_t passed = 0, n = 0;
        for (const tfu::json::value& c : cases.at("cases").as_array()) {
            ++n;
            std::vector<message> msgs;
            for (const tfu::json::value& m : c.at("messages").as_array())
                msgs.push_back({m.at("role").as_string(), m.at("content").as_string()});
            render_options o;
            o.add_generation_prompt = c.at("add_generation_prompt").as_bool();
            o.bos_token = c.at("variables").at("bos_token").as_string();
            o.eos_token = c.at("variables").at("eos_token").as_string();
            o.now = fixed_now();
            std::string got, err;
            try {
                got = render(tmpl, msgs, o);
            } catch (const tfu::error& e) {
                EXPECT_EQ(e.status(), TFU_STATUS_TEMPLATE_ERROR);
                err = e.what();
            }
            if (const tfu::json::value* want = c.find("expected")) {
                EXPECT_EQ(err, "") << file << " case " << n;
                EXPECT_EQ(got, want->as_string()) << file << " case " << n;
                passed += err.empty() && got == want->as_string();
            } else {
                const std::string& want_err = c.at("error").as_string();
                EXPECT_EQ(err, want_err) << file << " case " << n;
                passed += err == want_err;
            }
        }
        std::printf("%-55s %zu/%zu passed\n", file.c_str(), passed, n);
        total += n;
        passed_total += passed;
    }
    std::printf("all templates: %zu/%zu passed\n", passed_total, total);
}

// Each expectation is what Jinja2 3.1 renders (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks,
// loopcontrols, transformers' tojson) for the same template and variables; errors: Jinja raised an exception.
TEST(chat_template, language_features) {
    EXPECT_EQ(r("{{ 1.5 }} {{ none }} {{ true }} {{ [1,'a',none,true,1.0] }} {{ {'a': 1, 'b': [1, 2]} }} {{ \"it's\" }} {{ [\"it's\", 'a\"b'] }}"), "1.5 None True [1, 'a', None, True, 1.0] {'a': 1, 'b': [1, 2]} it's [\"it's\", 'a\"b']");
    EXPECT_EQ(r("{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 7 / 2 }} {{ 6 / 2 }} {{ 'ab' * 3 }} {{ 1 + 2 * 3 - 4 }} {{ 2 ** 3 ** 2 }} {{ -2 ** 2 }}"), "3 -4 1 2 1024 3.5 3.0 ababab 3 64 4");
    EXPECT_EQ(r("  {% if true %}\n  x\n  {% endif %}\n  {#- c #}\ny   {# c #}\nz"), "  x\ny   z");
    EXPECT_EQ(r("a {{- 'b' -}}   c {%+ if true %} d{% endif +%}\ne"), "abc  d\ne");
    EXPECT_EQ(r("{% for m in messages %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.revindex }}/{{ loop.revindex0 }}/{{ loop.first }}/{{ loop.last }}/{{ loop.length }}/{{ loop.previtem is defined }}/{{ loop.nextitem is defined }}|{% endfor %}"), "1/0/2/1/True/False/2/False/True|2/1/1/0/False/True/2/True/False|");
    EXPECT_EQ(r("{% for x in [] %}a{% else %}empty{% endfor %}"), "empty");
    EXPECT_EQ(r("{% for x in [1,2,3,4,5] %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}"), "13");
    EXPECT_EQ(r("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}{% for k in {'x': 1, 'y': 2} %}{{ k }}{% endfor %}"), "a=1;b=2;xy");
    EXPECT_EQ(r("{% for x in [1,2,3,4] if x is even %}{{ x }}{{ '' if loop.last else ',' }}{% endfor %}"), "2,4");
    EXPECT_EQ(r("{% set ns = namespace(n=0, s='') %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% set ns.s = ns.s ~ m.role %}{% endfor %}{{ ns.n }} {{ ns.s }}"), "2 userassistant");
    EXPECT_EQ(r("{% set x = 5 %}{% for i in [1,2] %}{{ x }}{% set x = i %}{{ x }}{% endfor %}[{{ x }}]"), "5152[5]");
    EXPECT_EQ(r("{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set t %}block {{ a }}{% endset %}{{ t }}|{% set u | upper %}up{% endset %}{{ u }}"), "12block 1|UP");
    EXPECT_EQ(r("{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}!{% endmacro %}{{ greet('Bob') }} {{ greet('Ann', greeting='Hi') }} {{ greet('Al', 'Yo') }}"), "Hello, Bob! Hi, Ann! Yo, Al!");
    EXPECT_EQ(r("{% macro wrap() %}[{{ caller() }}]{% endmacro %}{% call wrap() %}inside{% endcall %}"), "[inside]");
    EXPECT_EQ(r("{{ '  x  ' | trim }}|{{ 'aXb' | upper }}|{{ 'aXb' | lower }}|{{ 'hello world' | capitalize }}|{{ 'hello big-world' | title }}|{{ [1,2,3] | length }}|{{ 'h\xc3""\xa9""llo' | length }}"), "x|AXB|axb|Hello world|Hello Big-World|3|5");
    EXPECT_EQ(r("{{ messages | tojson }}|{{ {'a': [1, 2.5, none, true], '\xc3""\xa9""': '\xc3""\xbc""\"\\n'} | tojson }}|{{ {'a': {'b': [1]}, 'c': []} | tojson(indent=2) }}"), "[{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}]|{\"a\": [1, 2.5, null, true], \"\xc3""\xa9""\": \"\xc3""\xbc""\\\"\\n\"}|{\n  \"a\": {\n    \"b\": [\n      1\n    ]\n  },\n  \"c\": []\n}");
    EXPECT_EQ(r("{{ [1, 2, 3] | join(', ') }}|{{ messages | map(attribute='role') | join('/') }}|{{ undefined_thing | default('dflt') }}|{{ '' | default('e', true) }}"), "1, 2, 3|user/assistant|dflt|e");
    EXPECT_EQ(r("{{ [3, 1, 2] | first }}{{ [3, 1, 2] | last }}{{ 'abc' | list }}{{ [3, 1, 2] | sort }}{{ ['b', 'A', 'c'] | sort }}{{ [3, 1, 2] | sort(reverse=true) }}"), "32['a', 'b', 'c'][1, 2, 3]['A', 'b', 'c'][3, 2, 1]");
    EXPECT_EQ(r("{{ messages | selectattr('role', 'equalto', 'user') | list | length }}{{ messages | rejectattr('role', 'equalto', 'user') | map(attribute='content') | first }}{{ [1, 2, 3, 4] | select('odd') | list }}{{ [1, 2, 3, 4] | reject('odd') | list }}{{ [0, 1, '', 'a'] | select | list }}"), "1yo[1, 3][2, 4][1, 'a']");
    EXPECT_EQ(r("{{ {'b': 1, 'a': 2} | items | list }}{{ {'b': 1, 'a': 2} | dictsort }}{{ [1, 2, 1, 3] | unique | list }}{{ -3 | abs }}{{ '42' | int + 1 }}{{ '3.5' | float }}{{ 2.567 | round(1) }}{{ 2.5 | round }}{{ 7 | string ~ 'x' }}"), "[('b', 1), ('a', 2)][('a', 2), ('b', 1)][1, 2, 3]3433.52.62.07x");
    EXPECT_EQ(r("{{ 'a b a' | replace('a', 'c') }}|{{ 'line1\\nline2\\n\\nline3' | indent(2) }}|{{ 'one two  three' | wordcount }}|{{ [1, 2, 3] | sum }}|{{ [4, 2, 8] | max }}{{ [4, 2, 8] | min }}|{{ '<a & b>' | escape }}|{{ 'x' | safe }}|{{ [1,2] | reverse | list }}"), "c b c|line1\n  line2\n\n  line3|3|6|82|&lt;a &amp; b&gt;|x|[2, 1]");
    EXPECT_EQ(r("{{ 1 is defined }}{{ nope is defined }}{{ nope is undefined }}{{ none is none }}{{ 'a' is string }}{{ 1 is number }}{{ {} is mapping }}{{ [] is iterable }}{{ 'x' is sequence }}{{ true is boolean }}{{ 1 is true }}{{ false is false }}"), "TrueFalseTrueTrueTrueTrueTrueTrueTrueTrueFalseTrue");
    EXPECT_EQ(r("{{ 1 is equalto 1 }}{{ 1 is eq 2 }}{{ 1 is ne 2 }}{{ 2 is in [1, 2] }}{{ 3 is odd }}{{ 4 is even }}{{ 9 is divisibleby 3 }}{{ 9 is divisibleby(2) }}{{ 2 is not in [1] }}"), "TrueFalseTrueTrueTrueTrueTrueFalseTrue");
    EXPECT_EQ(r("{{ '  ab  '.strip() }}|{{ 'xxabxx'.strip('x') }}|{{ '  ab'.lstrip() }}|{{ 'ab\\n\\n'.rstrip() }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith(('x', 'c')) }}|{{ 'aB'.upper() }}{{ 'aB'.lower() }}|{{ 'a-a'.replace('a', 'b') }}|{{ 'hello world'.title() }}"), "ab|ab|ab|ab|['a', 'b', '', 'c']|['a', 'b']|TrueTrue|ABab|b-b|Hello World");
    EXPECT_EQ(r("{% set d = {'k': 'v', 'n': 1} %}{{ d.keys() | list }}{{ d.values() | list }}{{ d.get('k') }}{{ d.get('zz', 'dflt') }}{{ d.get('zz') }}{{ d['k'] }}{{ d.k }}"), "['k', 'n']['v', 1]vdfltNonevv");
    EXPECT_EQ(r("{% set l = [0, 1, 2, 3, 4, 5] %}{{ l[1:3] }}{{ l[::2] }}{{ l[::-1] }}{{ l[-2:] }}{{ l[:-4] }}{{ 'hello'[1:4] }}{{ 'hello'[::-1] }}{{ l[-1] }}{{ 'h\xc3""\xa9""llo'[1] }}"), "[1, 2][0, 2, 4][5, 4, 3, 2, 1, 0][4, 5][0, 1]ellolleh5\xc3""\xa9""");
    EXPECT_EQ(r("{{ 'a' ~ 1 ~ none }}|{{ 'a' + 'b' }}|{{ 'b' in 'abc' }}{{ 'z' not in 'abc' }}{{ 'role' in messages[0] }}{{ 2 in [1, 2] }}|{{ 1 < 2 < 3 }}{{ 1 < 2 > 3 }}{{ 'a' < 'b' }}{{ 1 == 1.0 }}{{ 1 != 2 }}|{{ true and 'x' }}{{ false or 'y' }}{{ not 0 }}|{{ 'yes' if 1 else 'no' }}{{ 'yes' if 0 else 'no' }}[{{ 'x' if 0 }}]"), "a1None|ab|TrueTrueTrueTrue|TrueFalseTrueTrueTrue|xyTrue|yesno[]");
    EXPECT_EQ(r("{{ \"a\\tb\\\\n\\'\\\"\" }}|{{ 'x' 'y' }}|{{ [1, [2, 3]] }}|{{ (1, 2) }}|{{ {'a': none} }}|{{ 1e3 }}{{ 0.1 + 0.2 }}|{{ range(3) | list }}{{ range(1, 7, 2) | list }}"), "a\tb\\n'\"|xy|[1, [2, 3]]|(1, 2)|{'a': None}|1000.00.30000000000000004|[0, 1, 2][1, 3, 5]");
    EXPECT_EQ(r("{{ strftime_now('%Y-%m-%d %B') }}|{{ bos_token }}{{ eos_token }}{{ add_generation_prompt }}|{{ tools }}"), "2026-01-02 January|<s></s>False|None");
    EXPECT_EQ(r("{{ raise_exception('custom failure: ' ~ messages | length) }}"), "ERR custom failure: 2");
    EXPECT_EQ(r("{% raw %}{{ not rendered }}{% endraw %}"), "{{ not rendered }}");
    EXPECT_EQ(r("{{ foo.bar }}").substr(0, 18), "ERR chat template:");
    EXPECT_EQ(r("{{ messages[0].nope.deeper }}").substr(0, 18), "ERR chat template:");
    EXPECT_EQ(r("{{ 1 + 'a' }}").substr(0, 18), "ERR chat template:");
    EXPECT_EQ(r("{% if %}x{% endif %}").substr(0, 18), "ERR chat template:");
    EXPECT_EQ(r("{% for x in 5 %}{% endfor %}").substr(0, 18), "ERR chat template:");
    EXPECT_EQ(r("{% endfor %}").substr(0, 18), "ERR chat template:");
    EXPECT_EQ(r("{{ x | nosuchfilter }}").substr(0, 18), "ERR chat template:");
    EXPECT_EQ(r("{{ messages[0].nope }}{{ nope }}[{{ messages[5] }}]"), "[]");
    EXPECT_EQ(r("{% for m in messages %}\n  {{ m.role }}\n{% endfor %}\ndone"), "  user\n  assistant\ndone");
    EXPECT_EQ(r("{%- for m in messages -%}\n    <{{ m.content }}>\n{%- endfor %}\nend\n"), "<hi><yo>end");
}

TEST(chat_template, error_messages) {
    EXPECT_EQ(r("{% if true %}\n{{ 1 + 'a' }}\n{% endif %}"),
              "ERR chat template: line 2: unsupported operand type(s) for +: 'int' and 'str'");
    EXPECT_EQ(r("a\n{{ foo.bar }}"), "ERR chat template: line 2: 'foo' is undefined");
    EXPECT_EQ(r("{{ messages[0].zz.yy }}"), "ERR chat template: line 1: 'dict object' has no attribute 'zz'");
    EXPECT_EQ(r("x\n\n{% for %}"), "ERR chat template: line 3: expected a name, got end of statement block");
    EXPECT_EQ(r("{% if true %}x"), "ERR chat template: line 1: unexpected end of template, expected 'elif'");
    EXPECT_EQ(r("{% break %}"), "ERR chat template: line 1: 'break' outside of a loop");
    EXPECT_EQ(r("{% frobnicate %}"), "ERR chat template: line 1: encountered unknown tag 'frobnicate'");
    EXPECT_EQ(r("{{ 'abc }}"), "ERR chat template: line 1: unterminated string literal");
    EXPECT_EQ(r("{{ 1 / 0 }}"), "ERR chat template: line 1: division by zero");
    EXPECT_EQ(r("{{ [1] | tojson }}{{ nope | tojson }}"),
              "ERR chat template: line 1: Object of type Undefined is not JSON serializable");
    EXPECT_EQ(r("{{ raise_exception('exact text, no prefix') }}"), "ERR exact text, no prefix");
}

TEST(chat_template, hostile_templates_fail_cleanly) {
    // Output, size, step and nesting limits: each is a TEMPLATE_ERROR, never a crash or a hang.
    EXPECT_EQ(r("{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}").substr(0, 18),
              "ERR chat template:");
    EXPECT_EQ(r("{% set ns = namespace(s='xxxxxxxxxxxxxxxx') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}"
                "{% endfor %}{{ ns.s | length }}").substr(0, 18),
              "ERR chat template:");
    EXPECT_EQ(r("{{ 'x' * 100000000 }}").substr(0, 18), "ERR chat template:");
    EXPECT_EQ(r("{{ range(1000000000) | length }}").substr(0, 18), "ERR chat template:");
    EXPECT_EQ(r("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}").substr(0, 18), "ERR chat template:");
    EXPECT_EQ(r("{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}").substr(0, 18), "ERR chat template:");
    EXPECT_EQ(r("{{ " + std::string(5000, '-') + "1 }}").substr(0, 18), "ERR chat template:");
    std::string chain = "{{ 1";
    for (int i = 0; i < 5000; ++i) chain += " + 1";
    EXPECT_EQ(r(chain + " }}").substr(0, 18), "ERR chat template:");
    std::string nested;
    for (int i = 0; i < 1000; ++i) nested += "{% if true %}";
    EXPECT_EQ(r(nested).substr(0, 18), "ERR chat template:");
    EXPECT_EQ(r("{{ 9223372036854775807 + 1 }}").substr(0, 18), "ERR chat template:");
    EXPECT_EQ(r("{{ 2 ** 100 }}").substr(0, 18), "ERR chat template:");
    EXPECT_EQ(r("{{ (-9223372036854775807 - 1) // -1 }}").substr(0, 18), "ERR chat template:");
    EXPECT_EQ(r("{{ 'abc'[::0] }}").substr(0, 18), "ERR chat template:");
    EXPECT_EQ(r("{{ \"\\u12\" }}").substr(0, 18), "ERR chat template:");
}
