// Jinja parser for chat templates: tokens (lexer.h) -> statement list (ast.h).
#pragma once

#include <string_view>

#include "chat/ast.h"

namespace tfu::chat {

// Parses a whole template. Grammar and operator precedence follow jinja2/parser.py (3.1):
//   expr := or ["if" or ["else" expr]];  or := and ("or" and)*;  and := not ("and" not)*;
//   not := "not" not | compare;  compare := math1 (("=="|"!="|"<"|"<="|">"|">="|"in"|"not in") math1)*;
//   math1 := concat (("+"|"-") concat)*;  concat := math2 ("~" math2)*;  math2 := pow (("*"|"/"|"//"|"%") pow)*;
//   pow := unary ("**" unary)*;  unary := ("-"|"+") unary | primary postfix* (filter | test | call)*
// Tags: if/elif/else, for/else (with "if" filter), set (incl. block set and namespace attributes), macro,
// call, filter, raw (lexer), break/continue, generation (transformers' marker: renders its body).
// Syntax errors throw tfu::error(TFU_STATUS_TEMPLATE_ERROR, "chat template: line N: ..."). Nesting deeper
// than max_nesting (expressions or blocks) is a syntax error, so that hostile input cannot exhaust the stack.
constexpr int max_nesting = 128;
stmt_list parse_template(std::string_view source);

}  // namespace tfu::chat
