// Jinja lexer for chat templates: splits the source into text and tag tokens, applying whitespace control.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tfu::chat {

enum class tok {
    text,         // raw template text (already whitespace-trimmed), in `s`
    var_begin,    // {{
    var_end,      // }}
    block_begin,  // {%
    block_end,    // %}
    name,         // identifier or keyword, in `s`
    string,       // string literal with escapes resolved, in `s`
    integer,      // in `i`
    floating,     // in `d`
    op,           // operator or punctuation, in `s`: + - * / // % ** ~ == != < <= > >= = . , : | ( ) [ ] { }
    eof,
};

struct token {
    tok type;
    std::string s;
    int64_t i = 0;
    double d = 0;
    int line = 1;
};

// Tokenizes like Jinja2 with trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False:
// newlines (\r\n, \r) are normalised to \n and one trailing newline is dropped; {#...#} comments vanish;
// "-" next to a delimiter strips all whitespace on that side, "+" disables trim/lstrip for that tag;
// trim_blocks drops the first newline after %} and #}; lstrip_blocks drops spaces/tabs between a line start and
// {% or {#. {% raw %}...{% endraw %} becomes text. Errors throw template_runtime_error("line N: ...")-style
// tfu::error via syntax_fail (see parser.h).
std::vector<token> lex(std::string_view source);

// Throws tfu::error(TFU_STATUS_TEMPLATE_ERROR, "chat template: line N: <what>").
[[noreturn]] void syntax_fail(int line, const std::string& what);

}  // namespace tfu::chat
