// Jinja builtins (see builtins.h): attribute lookup, methods, tests and tojson. Filters are in filters.cpp.
#include "chat/builtins.h"

#include <cmath>
#include <cstring>

#include "core/json.h"

namespace tfu::chat {

void check_size(size_t n) {
    if (n > max_result_size) runtime_fail("result too large (limit " + std::to_string(max_result_size) + ")");
}

static bool is_py_space(unsigned char c) { return c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f); }

std::string py_strip(const std::string& s, const value* chars, bool left, bool right) {
    auto strip_set = [&](unsigned char c) {
        if (!chars || chars->is_none() || chars->is_undefined()) return is_py_space(c);
        return std::memchr(chars->str().data(), c, chars->str().size()) != nullptr;
    };
    if (chars && !chars->is_none() && !chars->is_undefined() && !chars->is_string())
        runtime_fail("strip arg must be None or str");
    size_t b = 0, e = s.size();
    if (left)
        while (b < e && strip_set((unsigned char)s[b])) ++b;
    if (right)
        while (e > b && strip_set((unsigned char)s[e - 1])) --e;
    return s.substr(b, e - b);
}

value_list iterate(const value& v) {
    switch (v.kind()) {
        case value::type::undefined: return {};
        case value::type::list: return v.list();
        case value::type::dict: {
            value_list keys;
            for (const auto& kv : v.dict()) keys.push_back(kv.first);
            return keys;
        }
        case value::type::string: {
            auto offs = code_point_offsets(v.str());
            value_list out;
            for (size_t i = 0; i + 1 < offs.size(); ++i) out.push_back(v.str().substr(offs[i], offs[i + 1] - offs[i]));
            return out;
        }
        default: runtime_fail(std::string("'") + type_name(v) + "' object is not iterable");
    }
}

// ---- methods ---------------------------------------------------------------------------------------------

static const std::string& arg_str(const call_args& a, size_t i, const char* name, const char* method) {
    const value* v = a.get(i, name);
    if (!v || !v->is_string())
        runtime_fail(std::string(method) + "() argument '" + name + "' must be str");
    return v->str();
}

static value_list py_split(const std::string& s, const value* sep, int64_t maxsplit) {
    value_list out;
    if (!sep || sep->is_none()) {
        size_t i = 0, n = s.size();
        while (true) {
            while (i < n && is_py_space((unsigned char)s[i])) ++i;
            if (i >= n) break;
            if (maxsplit >= 0 && int64_t(out.size()) == maxsplit) {
                size_t e = n;
                while (e > i && is_py_space((unsigned char)s[e - 1])) --e;
                out.push_back(s.substr(i, e - i));
                break;
            }
            size_t j = i;
            while (j < n && !is_py_space((unsigned char)s[j])) ++j;
            out.push_back(s.substr(i, j - i));
            i = j;
        }
        return out;
    }
    if (!sep->is_string()) runtime_fail("must be str or None, not " + std::string(type_name(*sep)));
    const std::string& d = sep->str();
    if (d.empty()) runtime_fail("empty separator");
    size_t start = 0;
    for (;;) {
        size_t f = (maxsplit >= 0 && int64_t(out.size()) == maxsplit) ? std::string::npos : s.find(d, start);
        if (f == std::string::npos) {
            out.push_back(s.substr(start));
            return out;
        }
        out.push_back(s.substr(start, f - start));
        start = f + d.size();
    }
}

std::string py_replace(const std::string& s, const std::string& from, const std::string& to, int64_t count) {
    std::string out;
    if (from.empty()) {  // Python inserts `to` between every character (and at both ends)
        auto offs = code_point_offsets(s);
        int64_t done = 0;
        for (size_t i = 0; i + 1 < offs.size(); ++i) {
            if (count < 0 || done < count) {
                out += to;
                ++done;
            }
            out.append(s, offs[i], offs[i + 1] - offs[i]);
            check_size(out.size());
        }
        if (count < 0 || done < count) out += to;
        return out;
    }
    size_t start = 0;
    int64_t done = 0;
    for (;;) {
        size_t f = (count >= 0 && done >= count) ? std::string::npos : s.find(from, start);
        if (f == std::string::npos) break;
        out.append(s, start, f - start);
        out += to;
        check_size(out.size());
        start = f + from.size();
        ++done;
    }
    out.append(s, start, std::string::npos);
    return out;
}

std::string ascii_upper(std::string s) {
    for (char& c : s)
        if (c >= 'a' && c <= 'z') c = char(c - 32);
    return s;
}
std::string ascii_lower(std::string s) {
    for (char& c : s)
        if (c >= 'A' && c <= 'Z') c = char(c + 32);
    return s;
}
static bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
// Python str.title() on ASCII letters: upper after a non-letter, lower after a letter.
std::string py_title(std::string s) {
    bool prev_alpha = false;
    for (char& c : s) {
        if (is_alpha(c)) {
            c = prev_alpha ? ascii_lower(std::string(1, c))[0] : ascii_upper(std::string(1, c))[0];
            prev_alpha = true;
        } else {
            prev_alpha = (unsigned char)c >= 0x80 && prev_alpha;
        }
    }
    return s;
}
std::string py_capitalize(const std::string& s) {
    std::string out = ascii_lower(s);
    if (!out.empty()) out[0] = ascii_upper(out.substr(0, 1))[0];
    return out;
}

static bool affix_match(const std::string& s, const value& affix, bool prefix) {
    auto one = [&](const value& a) {
        if (!a.is_string()) runtime_fail("startswith/endswith argument must be str or a tuple of str");
        const std::string& x = a.str();
        if (x.size() > s.size()) return false;
        return prefix ? s.compare(0, x.size(), x) == 0 : s.compare(s.size() - x.size(), x.size(), x) == 0;
    };
    if (affix.is_list()) {
        for (const value& a : affix.list())
            if (one(a)) return true;
        return false;
    }
    return one(affix);
}

static int64_t int_arg(const call_args& a, size_t i, const char* name, int64_t dflt) {
    const value* v = a.get(i, name);
    if (!v || v->is_none()) return dflt;
    if (!v->is_int()) runtime_fail(std::string("argument '") + name + "' must be an integer");
    return v->as_int();
}

static value string_method(const value& obj, const std::string& name) {
    const std::string s = obj.str();
    auto fn = [&](native_fn f) { return value::function("str." + name, std::move(f)); };
    if (name == "strip" || name == "lstrip" || name == "rstrip") {
        bool l = name != "rstrip", r = name != "lstrip";
        return fn([s, l, r](const call_args& a) { return value(py_strip(s, a.get(0, "chars"), l, r)); });
    }
    if (name == "split")
        return fn([s](const call_args& a) { return value(py_split(s, a.get(0, "sep"), int_arg(a, 1, "maxsplit", -1))); });
    if (name == "upper") return fn([s](const call_args&) { return value(ascii_upper(s)); });
    if (name == "lower") return fn([s](const call_args&) { return value(ascii_lower(s)); });
    if (name == "title") return fn([s](const call_args&) { return value(py_title(s)); });
    if (name == "capitalize") return fn([s](const call_args&) { return value(py_capitalize(s)); });
    if (name == "startswith" || name == "endswith") {
        bool prefix = name == "startswith";
        return fn([s, prefix](const call_args& a) {
            const value* x = a.get(0, "prefix");
            if (!x) runtime_fail("startswith/endswith takes one argument");
            return value(affix_match(s, *x, prefix));
        });
    }
    if (name == "replace")
        return fn([s](const call_args& a) {
            return value(py_replace(s, arg_str(a, 0, "old", "replace"), arg_str(a, 1, "new", "replace"),
                                    int_arg(a, 2, "count", -1)));
        });
    if (name == "find" || name == "count") {
        bool find = name == "find";
        return fn([s, find](const call_args& a) {
            const std::string& sub = arg_str(a, 0, "sub", find ? "find" : "count");
            if (find) {
                size_t f = s.find(sub);
                return f == std::string::npos ? value(int64_t(-1)) : value(int64_t(code_point_count(s.substr(0, f))));
            }
            if (sub.empty()) return value(int64_t(code_point_count(s) + 1));
            int64_t n = 0;
            for (size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++n;
            return value(n);
        });
    }
    if (name == "join")
        return fn([s](const call_args& a) {
            const value* it = a.get(0, "iterable");
            if (!it) runtime_fail("join() takes one argument");
            std::string out;
            bool first = true;
            for (const value& e : iterate(*it)) {
                if (!e.is_string()) runtime_fail("sequence item: expected str instance");
                if (!first) out += s;
                first = false;
                out += e.str();
                check_size(out.size());
            }
            return value(out);
        });
    if (name == "isdigit" || name == "isalpha" || name == "isspace" || name == "isalnum" || name == "islower" ||
        name == "isupper") {
        std::string m = name;
        return fn([s, m](const call_args&) {
            if (s.empty()) return value(false);
            bool any_cased = false;
            for (char c : s) {
                bool ok;
                if (m == "isdigit") ok = c >= '0' && c <= '9';
                else if (m == "isalpha") ok = is_alpha(c);
                else if (m == "isalnum") ok = is_alpha(c) || (c >= '0' && c <= '9');
                else if (m == "isspace") ok = is_py_space((unsigned char)c);
                else if (m == "islower") {
                    ok = !(c >= 'A' && c <= 'Z');
                    any_cased |= c >= 'a' && c <= 'z';
                } else {
                    ok = !(c >= 'a' && c <= 'z');
                    any_cased |= c >= 'A' && c <= 'Z';
                }
                if (!ok) return value(false);
            }
            return value((m == "islower" || m == "isupper") ? any_cased : true);
        });
    }
    return value::undefined("'str object' has no attribute '" + name + "'");
}

static value dict_method(const value& obj, const std::string& name) {
    auto fn = [&](native_fn f) { return value::function("dict." + name, std::move(f)); };
    if (name == "items")
        return fn([obj](const call_args&) {
            value_list out;
            for (const auto& kv : obj.dict()) out.push_back(value::tuple(value_list{kv.first, kv.second}));
            return value(out);
        });
    if (name == "keys")
        return fn([obj](const call_args&) {
            value_list out;
            for (const auto& kv : obj.dict()) out.push_back(kv.first);
            return value(out);
        });
    if (name == "values")
        return fn([obj](const call_args&) {
            value_list out;
            for (const auto& kv : obj.dict()) out.push_back(kv.second);
            return value(out);
        });
    if (name == "get")
        return fn([obj](const call_args& a) {
            const value* k = a.get(0, "key");
            if (!k) runtime_fail("get expected at least 1 argument");
            const value* v = obj.find(*k);
            if (v) return *v;
            const value* d = a.get(1, "default");
            return d ? *d : value::none();
        });
    return value();
}

static bool is_dict_method(const std::string& name) {
    return name == "items" || name == "keys" || name == "values" || name == "get";
}

value get_attr(const value& obj, const std::string& name) {
    switch (obj.kind()) {
        case value::type::undefined: require_defined(obj); break;
        case value::type::dict: {
            if (is_dict_method(name)) return dict_method(obj, name);
            if (const value* v = obj.find(name)) return *v;
            break;
        }
        case value::type::ns:
            if (const value* v = obj.find(name)) return *v;
            break;
        case value::type::string: {
            value m = string_method(obj, name);
            if (!m.is_undefined()) return m;
            break;
        }
        default: break;
    }
    return value::undefined(object_name(obj) + " has no attribute '" + name + "'");
}

value get_item(const value& obj, const value& key) {
    switch (obj.kind()) {
        case value::type::undefined: require_defined(obj); break;
        case value::type::dict:
        case value::type::ns:
            if (const value* v = obj.find(key)) return *v;
            if (key.is_string() && obj.is_dict() && is_dict_method(key.str())) return dict_method(obj, key.str());
            break;
        case value::type::list:
            if (key.is_int()) {
                int64_t n = int64_t(obj.list().size()), i = key.as_int();
                if (i < 0) i += n;
                if (i >= 0 && i < n) return obj.list()[size_t(i)];
                return value::undefined(object_name(obj) + " has no element " + to_str(key));
            }
            break;
        case value::type::string:
            if (key.is_int()) {
                auto offs = code_point_offsets(obj.str());
                int64_t n = int64_t(offs.size()) - 1, i = key.as_int();
                if (i < 0) i += n;
                if (i >= 0 && i < n) return value(obj.str().substr(offs[size_t(i)], offs[size_t(i) + 1] - offs[size_t(i)]));
                return value::undefined(object_name(obj) + " has no element " + to_str(key));
            }
            if (key.is_string()) {
                value m = string_method(obj, key.str());
                if (!m.is_undefined()) return m;
            }
            break;
        default: break;
    }
    if (key.is_string()) return value::undefined(object_name(obj) + " has no attribute '" + key.str() + "'");
    return value::undefined(object_name(obj) + " has no element " + repr(key));
}

value get_slice(const value& obj, const value& start, const value& stop, const value& step) {
    require_defined(obj);
    auto opt_int = [](const value& v, const char* what) -> std::pair<bool, int64_t> {
        if (v.is_undefined() || v.is_none()) return {false, 0};
        if (!v.is_int()) runtime_fail(std::string("slice ") + what + " must be an integer or None");
        return {true, v.as_int()};
    };
    std::pair<bool, int64_t> step_arg = opt_int(step, "step");
    const int64_t st = step_arg.first ? step_arg.second : 1;
    if (st == 0) runtime_fail("slice step cannot be zero");
    bool is_str = obj.is_string();
    if (!is_str && !obj.is_list()) runtime_fail(object_name(obj) + " is not subscriptable");
    std::vector<size_t> offs;
    int64_t n;
    if (is_str) {
        offs = code_point_offsets(obj.str());
        n = int64_t(offs.size()) - 1;
    } else {
        n = int64_t(obj.list().size());
    }
    // ref: CPython PySlice_AdjustIndices.
    auto adjust = [&](std::pair<bool, int64_t> v, int64_t dflt) {
        if (!v.first) return dflt;
        int64_t i = v.second;
        if (i < 0) {
            i += n;
            if (i < 0) i = st < 0 ? -1 : 0;
        } else if (i >= n) {
            i = st < 0 ? n - 1 : n;
        }
        return i;
    };
    int64_t b = adjust(opt_int(start, "start"), st < 0 ? n - 1 : 0);
    int64_t e = adjust(opt_int(stop, "stop"), st < 0 ? -1 : n);
    std::string s_out;
    value_list l_out;
    for (int64_t i = b; st > 0 ? i < e : i > e; i += st) {
        if (is_str) s_out.append(obj.str(), offs[size_t(i)], offs[size_t(i) + 1] - offs[size_t(i)]);
        else l_out.push_back(obj.list()[size_t(i)]);
    }
    return is_str ? value(std::move(s_out)) : value(std::move(l_out));
}

// ---- tests -----------------------------------------------------------------------------------------------

bool apply_test(const std::string& name, const value& v, const call_args& a) {
    auto arg = [&](const char* what) -> const value& {
        const value* x = a.get(0, what);
        if (!x) runtime_fail("test '" + name + "' needs an argument");
        return *x;
    };
    if (name == "defined") return !v.is_undefined();
    if (name == "undefined") return v.is_undefined();
    if (name == "none") return v.is_none();
    if (name == "string") return v.is_string();
    if (name == "number") return v.is_number();
    if (name == "integer") return v.kind() == value::type::integer;
    if (name == "float") return v.kind() == value::type::floating;
    if (name == "boolean") return v.is_bool();
    if (name == "true") return v.is_bool() && v.as_bool();
    if (name == "false") return v.is_bool() && !v.as_bool();
    if (name == "mapping") return v.is_dict();
    if (name == "iterable") return v.is_undefined() || v.is_string() || v.is_list() || v.is_dict();
    if (name == "sequence") return v.is_string() || v.is_list() || v.is_dict();
    if (name == "callable") return v.is_callable();
    if (name == "equalto" || name == "eq" || name == "==") return equals(v, arg("other"));
    if (name == "ne" || name == "!=") return !equals(v, arg("other"));
    if (name == "lt" || name == "lessthan" || name == "<") return less(v, arg("other"));
    if (name == "le" || name == "<=") return !less(arg("other"), v);
    if (name == "gt" || name == "greaterthan" || name == ">") return less(arg("other"), v);
    if (name == "ge" || name == ">=") return !less(v, arg("other"));
    if (name == "sameas") {
        const value& o = arg("other");
        if (v.is_none() || v.is_bool() || o.is_none() || o.is_bool()) return v.kind() == o.kind() && equals(v, o);
        return v.is_namespace() && equals(v, o);
    }
    if (name == "in") {
        const value& seq = arg("seq");
        if (seq.is_string()) {
            if (!v.is_string()) runtime_fail("'in <string>' requires string as left operand");
            return seq.str().find(v.str()) != std::string::npos;
        }
        if (seq.is_dict()) return seq.find(v) != nullptr;
        for (const value& e : iterate(seq))
            if (equals(e, v)) return true;
        return false;
    }
    if (name == "odd" || name == "even" || name == "divisibleby") {
        require_defined(v);
        if (!v.is_int()) runtime_fail("test '" + name + "' needs an integer");
        int64_t x = v.as_int();
        if (name == "odd") return (x % 2) != 0;
        if (name == "even") return (x % 2) == 0;
        const value& d = arg("num");
        if (!d.is_int() || d.as_int() == 0) runtime_fail("divisibleby needs a non-zero integer");
        if (d.as_int() == -1) return true;
        return x % d.as_int() == 0;
    }
    if (name == "lower" || name == "upper") {
        if (!v.is_string()) runtime_fail("test '" + name + "' needs a string");
        return name == "lower" ? ascii_lower(v.str()) == v.str() : ascii_upper(v.str()) == v.str();
    }
    runtime_fail("no test named '" + name + "'");
}

// ---- tojson ----------------------------------------------------------------------------------------------

static void json_rec(std::string& out, const value& v, const std::string& ind, bool pretty, int level, int depth) {
    if (depth > 512) runtime_fail("tojson: nesting too deep");
    check_size(out.size());
    auto newline = [&](int lv) {
        out += '\n';
        for (int i = 0; i < lv; ++i) out += ind;
    };
    switch (v.kind()) {
        case value::type::none: out += "null"; return;
        case value::type::boolean: out += v.as_bool() ? "true" : "false"; return;
        case value::type::integer: out += std::to_string(v.as_int()); return;
        case value::type::floating: {
            double d = v.as_double();
            // Python's json.dumps spells non-finite numbers this way (allow_nan=True).
            if (std::isnan(d)) out += "NaN";
            else if (std::isinf(d)) out += d < 0 ? "-Infinity" : "Infinity";
            else out += json::format_double(d);
            return;
        }
        case value::type::string: json::append_quoted(out, v.str()); return;
        case value::type::list: {
            if (v.list().empty()) {
                out += "[]";
                return;
            }
            out += '[';
            bool first = true;
            for (const value& e : v.list()) {
                if (!first) out += pretty ? "," : ", ";
                first = false;
                if (pretty) newline(level + 1);
                json_rec(out, e, ind, pretty, level + 1, depth + 1);
            }
            if (pretty) newline(level);
            out += ']';
            return;
        }
        case value::type::dict: {
            if (v.dict().empty()) {
                out += "{}";
                return;
            }
            out += '{';
            bool first = true;
            for (const auto& kv : v.dict()) {
                if (!first) out += pretty ? "," : ", ";
                first = false;
                if (pretty) newline(level + 1);
                const value& k = kv.first;
                // json.dumps converts these key types to strings.
                if (k.is_string()) json::append_quoted(out, k.str());
                else if (k.is_none()) out += "\"null\"";
                else if (k.is_bool()) out += k.as_bool() ? "\"true\"" : "\"false\"";
                else if (k.is_number()) json::append_quoted(out, to_str(k));
                else runtime_fail(std::string("keys must be str, int, float, bool or None, not ") + type_name(k));
                out += ": ";
                json_rec(out, kv.second, ind, pretty, level + 1, depth + 1);
            }
            if (pretty) newline(level);
            out += '}';
            return;
        }
        default: runtime_fail(std::string("Object of type ") + type_name(v) + " is not JSON serializable");
    }
}

std::string to_json(const value& v, int indent, const std::string& indent_str) {
    std::string out;
    bool pretty = indent >= 0 || !indent_str.empty();
    std::string ind = !indent_str.empty() ? indent_str : std::string(size_t(indent > 0 ? indent : 0), ' ');
    json_rec(out, v, ind, pretty, 0, 0);
    check_size(out.size());
    return out;
}

}  // namespace tfu::chat
