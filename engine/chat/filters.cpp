// Jinja filters (see builtins.h for the list). ref: jinja2/filters.py (3.1) for each filter's arguments.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "chat/builtins.h"

namespace tfu::chat {

namespace {

const value* arg(const call_args& a, size_t i, const char* name) { return a.get(i, name); }

bool is_alpha_num_or_under(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           (unsigned char)c >= 0x80;  // \w in Python matches letters of every script
}

bool arg_bool(const call_args& a, size_t i, const char* name, bool dflt) {
    const value* v = a.get(i, name);
    return v ? truthy(*v) : dflt;
}

size_t length_of(const value& v) {
    switch (v.kind()) {
        case value::type::undefined: return 0;
        case value::type::string: return code_point_count(v.str());
        case value::type::list: return v.list().size();
        case value::type::dict:
        case value::type::ns: return v.dict().size();
        default: runtime_fail(std::string("object of type '") + type_name(v) + "' has no len()");
    }
}

// Dotted attribute path "a.b.0" as Jinja's make_attrgetter (items first, integers as indices).
value attr_path(const value& v, const std::string& path) {
    value cur = v;
    size_t start = 0;
    for (;;) {
        size_t dot = path.find('.', start);
        std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
        bool digits = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
        cur = digits ? get_item(cur, value(int64_t(std::atoll(part.c_str())))) : get_item(cur, value(part));
        if (dot == std::string::npos) return cur;
        start = dot + 1;
    }
}

// Arguments after `skip` positional ones, as the test/filter's own arguments.
call_args rest_args(const call_args& a, size_t skip) {
    call_args r;
    for (size_t i = skip; i < a.pos.size(); ++i) r.pos.push_back(a.pos[i]);
    r.kw = a.kw;
    return r;
}

// select/reject/selectattr/rejectattr.
value select_like(const value& input, const call_args& a, bool by_attr, bool keep) {
    std::string attr;
    size_t next = 0;
    if (by_attr) {
        const value* at = arg(a, 0, "attribute");
        if (!at || !at->is_string()) runtime_fail("selectattr/rejectattr need an attribute name");
        attr = at->str();
        next = 1;
    }
    const value* test = next < a.pos.size() ? &a.pos[next] : nullptr;
    call_args targs;
    if (test) {
        if (!test->is_string()) runtime_fail("test name must be a string");
        for (size_t i = next + 1; i < a.pos.size(); ++i) targs.pos.push_back(a.pos[i]);
    }
    value_list out;
    for (const value& e : iterate(input)) {
        value x = by_attr ? attr_path(e, attr) : e;
        bool ok = test ? apply_test(test->str(), x, targs) : truthy(x);
        if (ok == keep) out.push_back(e);
    }
    return value(out);
}

std::string sort_key_str(const value& v, bool case_sensitive) {
    return case_sensitive ? v.str() : ascii_lower(v.str());
}

bool sort_less(const value& x, const value& y, bool case_sensitive) {
    if (!case_sensitive && x.is_string() && y.is_string()) return sort_key_str(x, false) < sort_key_str(y, false);
    return less(x, y);
}

double to_float(const value& v, bool* ok) {
    *ok = true;
    if (v.is_number()) return v.as_double();
    if (v.is_string()) {
        std::string s = py_strip(v.str(), nullptr, true, true);
        const char* b = s.c_str();
        char* e = nullptr;
        double d = std::strtod(b, &e);
        if (!s.empty() && e && *e == 0 && s.find_first_of("xXpP") == std::string::npos) return d;
    }
    *ok = false;
    return 0;
}

std::vector<std::string> splitlines(const std::string& s) {
    std::vector<std::string> out;
    size_t start = 0, i = 0;
    while (i < s.size()) {
        char c = s[i];
        if (c == '\n' || c == '\r' || c == '\v' || c == '\f' || c == '\x1c' || c == '\x1d' || c == '\x1e') {
            out.push_back(s.substr(start, i - start));
            i += (c == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ? 2 : 1;
            start = i;
        } else {
            ++i;
        }
    }
    if (start < s.size()) out.push_back(s.substr(start));
    return out;
}

std::string html_escape(const std::string& s) {
    std::string out;
    for (char c : s) {
        switch (c) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&#34;"; break;
            case '\'': out += "&#39;"; break;
            default: out += c;
        }
    }
    return out;
}

}  // namespace

value apply_filter(const std::string& name, const value& in, const call_args& a) {
    if (name == "safe") return in;
    if (name == "string") return value(to_str(in));
    if (name == "length" || name == "count") return value(int64_t(length_of(in)));
    if (name == "default" || name == "d") {
        bool boolean = arg_bool(a, 1, "boolean", false);
        if (in.is_undefined() || (boolean && !truthy(in))) {
            const value* d = arg(a, 0, "default_value");
            return d ? *d : value("");
        }
        return in;
    }
    if (name == "tojson") {
        const value* ea = arg(a, 0, "ensure_ascii");
        if (ea && truthy(*ea)) runtime_fail("tojson: ensure_ascii=True is not supported");
        const value* ind = arg(a, 1, "indent");
        if (!ind || ind->is_none()) return value(to_json(in, -1));
        if (ind->is_string()) return value(to_json(in, 0, ind->str()));
        if (!ind->is_int()) runtime_fail("tojson: indent must be an integer or a string");
        return value(to_json(in, int(std::clamp<int64_t>(ind->as_int(), 0, 64))));
    }
    if (name == "list") return value(iterate(in));
    if (name == "items") {
        if (in.is_undefined()) return value(value_list{});
        if (!in.is_dict()) runtime_fail("items filter needs a mapping");
        value_list out;
        for (const auto& kv : in.dict()) out.push_back(value::tuple(value_list{kv.first, kv.second}));
        return value(out);
    }
    if (name == "first" || name == "last") {
        value_list l = iterate(in);
        if (l.empty()) return value::undefined("No " + name + " item, sequence was empty.");
        return name == "first" ? l.front() : l.back();
    }
    if (name == "join") {
        const value* sep = arg(a, 0, "d");
        const value* attr = arg(a, 1, "attribute");
        std::string s = sep ? to_str(*sep) : "";
        std::string out;
        bool first = true;
        for (const value& e : iterate(in)) {
            if (!first) out += s;
            first = false;
            out += to_str(attr ? attr_path(e, to_str(*attr)) : e);
            check_size(out.size());
        }
        return value(out);
    }
    if (name == "map") {
        const value* attr = nullptr;
        for (const auto& kw : a.kw)
            if (kw.first == "attribute") attr = &kw.second;
        value_list out;
        if (attr) {
            const value* dflt = nullptr;
            for (const auto& kw : a.kw)
                if (kw.first == "default") dflt = &kw.second;
            for (const value& e : iterate(in)) {
                value x = attr_path(e, to_str(*attr));
                out.push_back(x.is_undefined() && dflt ? *dflt : x);
            }
            return value(out);
        }
        if (a.pos.empty() || !a.pos[0].is_string()) runtime_fail("map needs a filter name or attribute=");
        call_args fargs = rest_args(a, 1);
        for (const value& e : iterate(in)) out.push_back(apply_filter(a.pos[0].str(), e, fargs));
        return value(out);
    }
    if (name == "select") return select_like(in, a, false, true);
    if (name == "reject") return select_like(in, a, false, false);
    if (name == "selectattr") return select_like(in, a, true, true);
    if (name == "rejectattr") return select_like(in, a, true, false);
    if (name == "unique") {
        bool cs = arg_bool(a, 0, "case_sensitive", false);
        const value* attr = arg(a, 1, "attribute");
        value_list out, keys;
        for (const value& e : iterate(in)) {
            value k = attr ? attr_path(e, to_str(*attr)) : e;
            if (!cs && k.is_string()) k = value(ascii_lower(k.str()));
            bool seen = false;
            for (const value& s : keys)
                if (equals(s, k)) seen = true;
            if (!seen) {
                keys.push_back(k);
                out.push_back(e);
            }
        }
        return value(out);
    }
    if (name == "sort") {
        bool rev = arg_bool(a, 0, "reverse", false);
        bool cs = arg_bool(a, 1, "case_sensitive", false);
        const value* attr = arg(a, 2, "attribute");
        value_list l = iterate(in);
        std::string at = attr ? to_str(*attr) : "";
        std::stable_sort(l.begin(), l.end(), [&](const value& x, const value& y) {
            value kx = attr ? attr_path(x, at) : x, ky = attr ? attr_path(y, at) : y;
            return rev ? sort_less(ky, kx, cs) : sort_less(kx, ky, cs);
        });
        return value(l);
    }
    if (name == "dictsort") {
        if (!in.is_dict()) runtime_fail("dictsort needs a mapping");
        bool cs = arg_bool(a, 0, "case_sensitive", false);
        const value* by = arg(a, 1, "by");
        bool rev = arg_bool(a, 2, "reverse", false);
        int pos = 0;
        if (by && by->is_string() && by->str() == "value") pos = 1;
        else if (by && !(by->is_string() && by->str() == "key")) runtime_fail("You can only sort by either \"key\" or \"value\"");
        value_list l;
        for (const auto& kv : in.dict()) l.push_back(value::tuple(value_list{kv.first, kv.second}));
        std::stable_sort(l.begin(), l.end(), [&](const value& x, const value& y) {
            const value &kx = x.list()[size_t(pos)], &ky = y.list()[size_t(pos)];
            return rev ? sort_less(ky, kx, cs) : sort_less(kx, ky, cs);
        });
        return value(l);
    }
    if (name == "reverse") {
        if (in.is_string()) {
            value_list chars = iterate(in);
            std::string out;
            for (auto it = chars.rbegin(); it != chars.rend(); ++it) out += it->str();
            return value(out);
        }
        value_list l = iterate(in);
        std::reverse(l.begin(), l.end());
        return value(l);
    }
    if (name == "sum") {
        const value* attr = arg(a, 0, "attribute");
        const value* start = arg(a, 1, "start");
        bool is_float = start && start->kind() == value::type::floating;
        int64_t si = start && start->is_int() ? start->as_int() : 0;
        double sd = start ? start->as_double() : 0;
        for (const value& e : iterate(in)) {
            value x = attr ? attr_path(e, to_str(*attr)) : e;
            if (!x.is_number()) runtime_fail(std::string("unsupported operand type(s) for +: 'int' and '") + type_name(x) + "'");
            if (x.kind() == value::type::floating) is_float = true;
            si += x.is_int() ? x.as_int() : 0;
            sd += x.as_double();
        }
        return is_float ? value(sd) : value(si);
    }
    if (name == "min" || name == "max") {
        bool cs = arg_bool(a, 0, "case_sensitive", false);
        const value* attr = arg(a, 1, "attribute");
        value_list l = iterate(in);
        if (l.empty()) return value::undefined("No aggregated item, sequence was empty.");
        size_t best = 0;
        for (size_t i = 1; i < l.size(); ++i) {
            value kb = attr ? attr_path(l[best], to_str(*attr)) : l[best];
            value ki = attr ? attr_path(l[i], to_str(*attr)) : l[i];
            if (name == "min" ? sort_less(ki, kb, cs) : sort_less(kb, ki, cs)) best = i;
        }
        return l[best];
    }
    if (name == "abs") {
        require_defined(in);
        if (in.kind() == value::type::floating) return value(std::fabs(in.as_double()));
        if (in.is_int()) {
            if (in.as_int() == INT64_MIN) runtime_fail("integer overflow");
            return value(int64_t(std::llabs(in.as_int())));
        }
        runtime_fail(std::string("bad operand type for abs(): '") + type_name(in) + "'");
    }
    if (name == "int") {
        const value* d = arg(a, 0, "default");
        value dflt = d ? *d : value(int64_t(0));
        if (in.is_int()) return value(in.as_int());
        bool ok = false;
        if (in.is_string()) {
            std::string s = py_strip(in.str(), nullptr, true, true);
            char* e = nullptr;
            errno = 0;
            long long v = std::strtoll(s.c_str(), &e, 10);
            if (!s.empty() && e && *e == 0 && errno == 0) return value(int64_t(v));
        }
        double f = to_float(in, &ok);
        if (!ok || !std::isfinite(f) || std::fabs(f) >= 9.2e18) return dflt;
        return value(int64_t(f));
    }
    if (name == "float") {
        const value* d = arg(a, 0, "default");
        bool ok = false;
        double f = to_float(in, &ok);
        if (!ok) return d ? *d : value(0.0);
        return value(f);
    }
    if (name == "round") {
        const value* p = arg(a, 0, "precision");
        const value* m = arg(a, 1, "method");
        std::string method = m ? to_str(*m) : "common";
        if (method != "common" && method != "ceil" && method != "floor")
            runtime_fail("method must be 'common', 'ceil' or 'floor'");
        require_defined(in);
        if (!in.is_number()) runtime_fail("round needs a number");
        int64_t prec = p && p->is_int() ? p->as_int() : 0;
        if (in.kind() != value::type::floating && method == "common") return value(in.as_int());
        double scale = std::pow(10.0, double(std::clamp<int64_t>(prec, -300, 300)));
        double x = in.as_double() * scale;
        // Python's round() is round-half-even (common); ceil/floor as math.ceil/floor.
        double r = method == "common" ? std::nearbyint(x) : method == "ceil" ? std::ceil(x) : std::floor(x);
        return value(r / scale);
    }
    // String filters: the input is converted with str() as Jinja's soft_str does.
    std::string s = to_str(in);
    if (name == "trim") return value(py_strip(s, arg(a, 0, "chars"), true, true));
    if (name == "upper") return value(ascii_upper(s));
    if (name == "lower") return value(ascii_lower(s));
    if (name == "capitalize") return value(py_capitalize(s));
    if (name == "title") {
        // ref: jinja2 do_title: words start after runs of -, whitespace, (, {, [, <.
        std::string out = s;
        bool start = true;
        for (char& c : out) {
            bool sep = c == '-' || c == ' ' || (c >= 0x09 && c <= 0x0d) || c == '(' || c == '{' || c == '[' || c == '<';
            if (sep) {
                start = true;
                continue;
            }
            c = start ? ascii_upper(std::string(1, c))[0] : ascii_lower(std::string(1, c))[0];
            start = false;
        }
        return value(out);
    }
    if (name == "replace") {
        const value* o = arg(a, 0, "old");
        const value* n = arg(a, 1, "new");
        const value* c = arg(a, 2, "count");
        if (!o || !n) runtime_fail("replace needs old and new");
        return value(py_replace(s, to_str(*o), to_str(*n), c && c->is_int() ? c->as_int() : -1));
    }
    if (name == "escape" || name == "e") return value(html_escape(s));
    if (name == "wordcount") {
        int64_t n = 0;
        bool in_word = false;
        for (char c : s) {
            bool w = is_alpha_num_or_under(c);
            if (w && !in_word) ++n;
            in_word = w;
        }
        return value(n);
    }
    if (name == "indent") {
        const value* w = arg(a, 0, "width");
        std::string ind = w && w->is_string() ? w->str() : std::string(size_t(std::clamp<int64_t>(w && w->is_int() ? w->as_int() : 4, 0, 1024)), ' ');
        bool first = arg_bool(a, 1, "first", false), blank = arg_bool(a, 2, "blank", false);
        std::vector<std::string> lines = splitlines(s + "\n");
        std::string rv;
        for (size_t i = 0; i < lines.size(); ++i) {
            if (i) rv += '\n';
            if (i && (blank || !lines[i].empty())) rv += ind;
            rv += lines[i];
            check_size(rv.size());
        }
        if (first) rv = ind + rv;
        return value(rv);
    }
    runtime_fail("no filter named '" + name + "'");
}

}  // namespace tfu::chat
