// Jinja values: construction and the Python semantics used by the interpreter (see value.h).
#include "chat/value.h"

#include <cmath>

#include "core/json.h"

namespace tfu::chat {

void runtime_fail(const std::string& message) { throw template_runtime_error(message); }

const value* call_args::get(size_t i, const char* name) const {
    if (i < pos.size()) return &pos[i];
    for (const auto& k : kw)
        if (k.first == name) return &k.second;
    return nullptr;
}

value value::function(std::string name, native_fn fn) {
    value v = with_type(type::callable);
    v.s_ = std::move(name);
    v.fn_ = std::make_shared<native_fn>(std::move(fn));
    return v;
}

value value::new_namespace(value_dict attrs) {
    value v = with_type(type::ns);
    v.d_map_ = std::make_shared<value_dict>(std::move(attrs));
    return v;
}

const value* value::find(const std::string& key) const {
    if (t_ != type::dict && t_ != type::ns) return nullptr;
    for (const auto& kv : *d_map_)
        if (kv.first.is_string() && kv.first.str() == key) return &kv.second;
    return nullptr;
}

const value* value::find(const value& key) const {
    if (key.is_string()) return find(key.str());
    if (t_ != type::dict && t_ != type::ns) return nullptr;
    for (const auto& kv : *d_map_)
        if (equals(kv.first, key)) return &kv.second;
    return nullptr;
}

bool truthy(const value& v) {
    switch (v.kind()) {
        case value::type::undefined:
        case value::type::none: return false;
        case value::type::boolean:
        case value::type::integer: return v.as_int() != 0;
        case value::type::floating: return v.as_double() != 0.0;
        case value::type::string: return !v.str().empty();
        case value::type::list: return !v.list().empty();
        case value::type::dict: return !v.dict().empty();
        case value::type::callable:
        case value::type::ns: return true;
    }
    return false;
}

static void append_repr_string(std::string& out, const std::string& s) {
    // ref: CPython unicode_repr: single quotes unless the text has ' and no ".
    bool has_single = s.find('\'') != std::string::npos;
    bool has_double = s.find('"') != std::string::npos;
    char q = (has_single && !has_double) ? '"' : '\'';
    static const char hex[] = "0123456789abcdef";
    out += q;
    for (char ch : s) {
        unsigned char c = (unsigned char)ch;
        if (ch == q || ch == '\\') {
            out += '\\';
            out += ch;
        } else if (ch == '\n') {
            out += "\\n";
        } else if (ch == '\r') {
            out += "\\r";
        } else if (ch == '\t') {
            out += "\\t";
        } else if (c < 0x20 || c == 0x7f) {
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 15];
        } else {
            out += ch;
        }
    }
    out += q;
}

static void append_str(std::string& out, const value& v, bool as_repr) {
    switch (v.kind()) {
        case value::type::undefined: return;
        case value::type::none: out += "None"; return;
        case value::type::boolean: out += v.as_bool() ? "True" : "False"; return;
        case value::type::integer: out += std::to_string(v.as_int()); return;
        case value::type::floating: out += json::format_double(v.as_double()); return;
        case value::type::string:
            if (as_repr) append_repr_string(out, v.str());
            else out += v.str();
            return;
        case value::type::list: {
            out += v.is_tuple() ? '(' : '[';
            bool first = true;
            for (const value& e : v.list()) {
                if (!first) out += ", ";
                first = false;
                append_str(out, e, true);
            }
            if (v.is_tuple() && v.list().size() == 1) out += ',';
            out += v.is_tuple() ? ')' : ']';
            return;
        }
        case value::type::dict: {
            out += '{';
            bool first = true;
            for (const auto& kv : v.dict()) {
                if (!first) out += ", ";
                first = false;
                append_str(out, kv.first, true);
                out += ": ";
                append_str(out, kv.second, true);
            }
            out += '}';
            return;
        }
        case value::type::callable: out += "<function " + v.callable_name() + ">"; return;
        case value::type::ns: out += "<Namespace>"; return;
    }
}

std::string to_str(const value& v) {
    std::string out;
    append_str(out, v, false);
    return out;
}

std::string repr(const value& v) {
    if (v.is_undefined()) return "Undefined";
    std::string out;
    append_str(out, v, true);
    return out;
}

bool equals(const value& a, const value& b) {
    if (a.is_number() && b.is_number()) {
        if (a.kind() != value::type::floating && b.kind() != value::type::floating) return a.as_int() == b.as_int();
        return a.as_double() == b.as_double();
    }
    if (a.kind() != b.kind()) return false;
    switch (a.kind()) {
        case value::type::undefined:
        case value::type::none: return true;
        case value::type::string: return a.str() == b.str();
        case value::type::list: {
            const auto &x = a.list(), &y = b.list();
            if (x.size() != y.size()) return false;
            for (size_t i = 0; i < x.size(); ++i)
                if (!equals(x[i], y[i])) return false;
            return true;
        }
        case value::type::dict: {
            if (a.dict().size() != b.dict().size()) return false;
            for (const auto& kv : a.dict()) {
                const value* o = b.find(kv.first);
                if (!o || !equals(kv.second, *o)) return false;
            }
            return true;
        }
        case value::type::ns: return &a.ns_attrs() == &b.ns_attrs();
        default: return false;
    }
}

bool less(const value& a, const value& b) {
    if (a.is_number() && b.is_number()) {
        if (a.kind() != value::type::floating && b.kind() != value::type::floating) return a.as_int() < b.as_int();
        return a.as_double() < b.as_double();
    }
    if (a.is_string() && b.is_string()) return a.str() < b.str();  // UTF-8 byte order is code point order
    if (a.is_list() && b.is_list()) {
        const auto &x = a.list(), &y = b.list();
        for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
            if (less(x[i], y[i])) return true;
            if (less(y[i], x[i])) return false;
        }
        return x.size() < y.size();
    }
    require_defined(a);
    require_defined(b);
    runtime_fail(std::string("'<' not supported between instances of '") + type_name(a) + "' and '" +
                 type_name(b) + "'");
}

const char* type_name(const value& v) {
    switch (v.kind()) {
        case value::type::undefined: return "Undefined";
        case value::type::none: return "NoneType";
        case value::type::boolean: return "bool";
        case value::type::integer: return "int";
        case value::type::floating: return "float";
        case value::type::string: return "str";
        case value::type::list: return "list";
        case value::type::dict: return "dict";
        case value::type::callable: return "function";
        case value::type::ns: return "Namespace";
    }
    return "object";
}

std::string object_name(const value& v) { return std::string("'") + type_name(v) + " object'"; }

const value& require_defined(const value& v) {
    if (v.is_undefined()) runtime_fail(v.str().empty() ? "value is undefined" : v.str());
    return v;
}

std::vector<size_t> code_point_offsets(const std::string& s) {
    std::vector<size_t> offs;
    offs.reserve(s.size() + 1);
    for (size_t i = 0; i < s.size(); ++i)
        if (((unsigned char)s[i] & 0xC0) != 0x80) offs.push_back(i);  // not a continuation byte
    offs.push_back(s.size());
    return offs;
}

size_t code_point_count(const std::string& s) {
    size_t n = 0;
    for (char c : s)
        if (((unsigned char)c & 0xC0) != 0x80) ++n;
    return n;
}

}  // namespace tfu::chat
