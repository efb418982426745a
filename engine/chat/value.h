// Jinja values for the chat-template interpreter: Python-like semantics (truth, str(), repr(), ==, <).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace tfu::chat {

// A runtime error inside the template (type error, undefined access, ...). render() prefixes the line:
// "chat template: line N: <message>". raise_exception() throws tfu::error directly instead (its text is kept).
struct template_runtime_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};
[[noreturn]] void runtime_fail(const std::string& message);

class value;
using value_list = std::vector<value>;
using value_dict = std::vector<std::pair<value, value>>;  // insertion-ordered (Python dict), keys unique

// Arguments of a call: f(pos..., name=kw...).
struct call_args {
    std::vector<value> pos;
    std::vector<std::pair<std::string, value>> kw;
    // Python-style binding: positional index `i` or keyword `name`; nullptr when absent.
    const value* get(size_t i, const char* name) const;
};
using native_fn = std::function<value(const call_args&)>;

class value {
public:
    enum class type { undefined, none, boolean, integer, floating, string, list, dict, callable, ns };

    value() = default;  // undefined with no name
    static value undefined(std::string hint) {  // hint: the UndefinedError text, e.g. "'x' is undefined"
        value v;
        v.s_ = std::move(hint);
        return v;
    }
    static value none() { return with_type(type::none); }
    value(bool b) : t_(type::boolean), i_(b) {}
    value(int v) : t_(type::integer), i_(v) {}
    value(int64_t v) : t_(type::integer), i_(v) {}
    value(double d) : t_(type::floating), d_(d) {}
    value(std::string s) : t_(type::string), s_(std::move(s)) {}
    value(const char* s) : t_(type::string), s_(s) {}
    value(value_list l) : t_(type::list), l_(std::make_shared<value_list>(std::move(l))) {}
    value(value_dict d) : t_(type::dict), d_map_(std::make_shared<value_dict>(std::move(d))) {}
    static value tuple(value_list l) {  // a list that prints as a Python tuple: (1, 2)
        value v(std::move(l));
        v.i_ = 1;
        return v;
    }
    static value function(std::string name, native_fn fn);
    static value new_namespace(value_dict attrs);  // mutable, shared by reference (namespace())

    type kind() const { return t_; }
    bool is_undefined() const { return t_ == type::undefined; }
    bool is_none() const { return t_ == type::none; }
    bool is_bool() const { return t_ == type::boolean; }
    bool is_int() const { return t_ == type::integer || t_ == type::boolean; }  // Python: bool is an int
    bool is_number() const { return is_int() || t_ == type::floating; }
    bool is_string() const { return t_ == type::string; }
    bool is_list() const { return t_ == type::list; }
    bool is_dict() const { return t_ == type::dict; }
    bool is_tuple() const { return t_ == type::list && i_ == 1; }
    bool is_namespace() const { return t_ == type::ns; }
    bool is_callable() const { return t_ == type::callable; }

    bool as_bool() const { return i_ != 0; }
    int64_t as_int() const { return i_; }  // integer or bool
    double as_double() const { return t_ == type::floating ? d_ : double(i_); }
    const std::string& str() const { return s_; }        // string value, or the undefined hint
    const value_list& list() const { return *l_; }
    const value_dict& dict() const { return *d_map_; }   // dict or namespace attributes
    value_dict& ns_attrs() const { return *d_map_; }     // namespace only: mutable through every copy
    const std::string& callable_name() const { return s_; }
    value call(const call_args& a) const { return (*fn_)(a); }

    // Dict/namespace member with a string key; nullptr when absent.
    const value* find(const std::string& key) const;
    const value* find(const value& key) const;

private:
    static value with_type(type t) {
        value v;
        v.t_ = t;
        return v;
    }
    type t_ = type::undefined;
    int64_t i_ = 0;
    double d_ = 0;
    std::string s_;
    std::shared_ptr<value_list> l_;
    std::shared_ptr<value_dict> d_map_;
    std::shared_ptr<native_fn> fn_;
};

// Python semantics.
bool truthy(const value& v);                       // bool(v); undefined is false
std::string to_str(const value& v);                // str(v): None, True, 1.5, ['a', 1], {'k': 'v'}; undefined ""
std::string repr(const value& v);                  // repr(v): strings quoted as Python does
bool equals(const value& a, const value& b);       // ==; 1 == 1.0 == True; undefined == undefined
bool less(const value& a, const value& b);         // < for numbers, strings, lists; else runtime error
const char* type_name(const value& v);             // Python type name for messages: 'int', 'str', 'dict', ...
std::string object_name(const value& v);           // Jinja's name in attribute errors: "'dict object'"
// Throws the undefined's own error ("'x' is undefined") if v is undefined; returns v otherwise.
const value& require_defined(const value& v);

// Strings are UTF-8; Python indexes code points. Byte offsets of each code point start (+ the end).
std::vector<size_t> code_point_offsets(const std::string& s);
size_t code_point_count(const std::string& s);

}  // namespace tfu::chat
