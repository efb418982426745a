// Jinja builtins for chat templates: filters, tests, attribute/item lookup and methods of str/dict/list.
#pragma once

#include <string>

#include "chat/value.h"

namespace tfu::chat {

// Largest string or list any operation may build (hostile templates): 16 MiB / 16 Mi items.
constexpr size_t max_result_size = size_t(16) << 20;
void check_size(size_t n);  // throws template_runtime_error when n > max_result_size

// x.name (dot = true: dict methods first, then keys, as Jinja's getattr) and x[key] (dot = false: keys first).
// A missing member gives an undefined value whose hint is Jinja's message
// ("'dict object' has no attribute 'x'"); any access on an undefined throws its hint.
value get_attr(const value& obj, const std::string& name);
value get_item(const value& obj, const value& key);
value get_slice(const value& obj, const value& start, const value& stop, const value& step);

// Filters (Jinja 3.1 names and arguments): trim, upper, lower, capitalize, title, length/count, tojson(indent),
// join, default/d, first, last, list, string, int, float, round, abs, map, select, reject, selectattr,
// rejectattr, items, dictsort, sort, unique, reverse, replace, safe, escape/e, indent, wordcount, sum, min,
// max, batch, center, truncate. Unknown names throw "no filter named 'x'".
value apply_filter(const std::string& name, const value& input, const call_args& args);
// Tests: defined, undefined, none, string, number, integer, float, boolean, true, false, mapping, iterable,
// sequence, callable, equalto/eq/==, ne/!=, lt/<, le/<=, gt/>, ge/>=, in, odd, even, divisibleby, sameas,
// lower, upper; unknown names throw "no test named 'x'".
bool apply_test(const std::string& name, const value& v, const call_args& args);

// Elements when iterating: list items, dict keys, string characters (code points); undefined: none.
// Others throw "'int' object is not iterable".
value_list iterate(const value& v);

// json.dumps(v, ensure_ascii=False, indent=indent) as transformers' tojson: indent < 0 means None
// (", " and ": " separators), else newline + indent spaces per level ("," and ": ").
std::string to_json(const value& v, int indent, const std::string& indent_str = "");

// Python str helpers shared with the interpreter.
std::string py_strip(const std::string& s, const value* chars, bool left, bool right);  // chars null: spaces
std::string py_replace(const std::string& s, const std::string& from, const std::string& to, int64_t count);
// Case mapping of ASCII letters only (other bytes, UTF-8 included, are kept).
std::string ascii_upper(std::string s);
std::string ascii_lower(std::string s);
std::string py_title(std::string s);
std::string py_capitalize(const std::string& s);

}  // namespace tfu::chat
