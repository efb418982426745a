// tfu::json: value accessors, the strict RFC 8259 parser and the serializer (see json.h).
#include "core/json.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "core/utf8.h"

namespace tfu::json {

const char* kind_name(kind k) {
    switch (k) {
        case kind::null: return "null";
        case kind::boolean: return "bool";
        case kind::integer: return "integer";
        case kind::number: return "number";
        case kind::string: return "string";
        case kind::array: return "array";
        case kind::object: return "object";
    }
    return "?";
}

[[noreturn]] static void wrong_kind(const char* want, kind got) {
    fail(TFU_STATUS_INVALID_ARGUMENT, std::string("json: expected ") + want + ", got " + kind_name(got));
}

bool value::as_bool() const {
    if (kind_ != kind::boolean) wrong_kind("bool", kind_);
    return b_;
}
int64_t value::as_int() const {
    if (kind_ != kind::integer) wrong_kind("integer", kind_);
    return i_;
}
double value::as_double() const {
    if (kind_ == kind::integer) return static_cast<double>(i_);
    if (kind_ != kind::number) wrong_kind("number", kind_);
    return d_;
}
const std::string& value::as_string() const {
    if (kind_ != kind::string) wrong_kind("string", kind_);
    return s_;
}
const value::array_t& value::as_array() const {
    if (kind_ != kind::array) wrong_kind("array", kind_);
    return a_;
}
value::array_t& value::as_array() {
    if (kind_ != kind::array) wrong_kind("array", kind_);
    return a_;
}
const value::object_t& value::as_object() const {
    if (kind_ != kind::object) wrong_kind("object", kind_);
    return o_;
}
value::object_t& value::as_object() {
    if (kind_ != kind::object) wrong_kind("object", kind_);
    return o_;
}
std::vector<float> value::as_floats() const {
    const array_t& a = as_array();
    std::vector<float> out;
    out.reserve(a.size());
    for (const value& v : a) out.push_back(static_cast<float>(v.as_double()));
    return out;
}
size_t value::size() const {
    if (kind_ == kind::array) return a_.size();
    if (kind_ == kind::object) return o_.size();
    wrong_kind("array or object", kind_);
}
const value& value::operator[](size_t i) const {
    const array_t& a = as_array();
    if (i >= a.size())
        fail(TFU_STATUS_INVALID_ARGUMENT,
             "json: index " + std::to_string(i) + " out of range (size " + std::to_string(a.size()) + ")");
    return a[i];
}
const value* value::find(std::string_view key) const {
    for (const member_t& m : as_object())
        if (m.first == key) return &m.second;
    return nullptr;
}
const value& value::at(std::string_view key) const {
    const value* v = find(key);
    if (!v) fail(TFU_STATUS_INVALID_ARGUMENT, "json: missing key \"" + std::string(key) + "\"");
    return *v;
}
value& value::set(std::string_view key, value v) {
    if (kind_ == kind::null) kind_ = kind::object;
    for (member_t& m : as_object())
        if (m.first == key) return m.second = std::move(v);
    o_.emplace_back(std::string(key), std::move(v));
    return o_.back().second;
}
void value::push_back(value v) {
    if (kind_ == kind::null) kind_ = kind::array;
    as_array().push_back(std::move(v));
}
bool value::operator==(const value& o) const {
    if (is_number() && o.is_number()) {
        if (kind_ == kind::integer && o.kind_ == kind::integer) return i_ == o.i_;
        return as_double() == o.as_double();
    }
    if (kind_ != o.kind_) return false;
    switch (kind_) {
        case kind::null: return true;
        case kind::boolean: return b_ == o.b_;
        case kind::string: return s_ == o.s_;
        case kind::array: return a_ == o.a_;
        case kind::object: return o_ == o.o_;
        default: return false;
    }
}

// ---------------------------------------------------------------------------------------------------------
// Parser: recursive descent over the text; `depth` counts open arrays/objects.
namespace {

class parser {
public:
    parser(std::string_view t, int max_depth) : t_(t), max_depth_(max_depth) {}

    value run() {
        skip_ws();
        value v = parse_value(0);
        skip_ws();
        if (p_ != t_.size()) error("unexpected text after the JSON value");
        return v;
    }

private:
    std::string_view t_;
    size_t p_ = 0;
    int max_depth_;

    [[noreturn]] void error(const std::string& what) const { error_at(p_, what); }
    [[noreturn]] void error_at(size_t pos, const std::string& what) const {
        size_t line = 1, col = 1;
        for (size_t i = 0; i < pos && i < t_.size(); ++i) {
            if (t_[i] == '\n') {
                ++line;
                col = 1;
            } else {
                ++col;
            }
        }
        fail(TFU_STATUS_INVALID_ARGUMENT,
             "json: line " + std::to_string(line) + " col " + std::to_string(col) + ": " + what);
    }

    void skip_ws() {
        while (p_ < t_.size() && (t_[p_] == ' ' || t_[p_] == '\t' || t_[p_] == '\n' || t_[p_] == '\r')) ++p_;
    }
    bool eof() const { return p_ >= t_.size(); }

    void expect_word(const char* w) {
        size_t n = std::strlen(w);
        if (t_.substr(p_, n) != w) error("invalid literal");
        p_ += n;
    }

    value parse_value(int depth) {
        if (eof()) error("unexpected end of input");
        char c = t_[p_];
        switch (c) {
            case '{': return parse_object(depth + 1);
            case '[': return parse_array(depth + 1);
            case '"': return value(parse_string());
            case 't': expect_word("true"); return value(true);
            case 'f': expect_word("false"); return value(false);
            case 'n': expect_word("null"); return value(nullptr);
            default:
                if (c == '-' || (c >= '0' && c <= '9')) return parse_number();
                error(std::string("unexpected character '") + (c >= 0x20 && c < 0x7f ? std::string(1, c) : "?") +
                      "'");
        }
    }

    value parse_array(int depth) {
        if (depth > max_depth_) error("nesting deeper than " + std::to_string(max_depth_));
        ++p_;  // [
        value out = value::array();
        skip_ws();
        if (!eof() && t_[p_] == ']') {
            ++p_;
            return out;
        }
        for (;;) {
            skip_ws();
            out.as_array().push_back(parse_value(depth));
            skip_ws();
            if (eof()) error("unterminated array");
            if (t_[p_] == ',') {
                ++p_;
                continue;
            }
            if (t_[p_] == ']') {
                ++p_;
                return out;
            }
            error("expected ',' or ']' in array");
        }
    }

    value parse_object(int depth) {
        if (depth > max_depth_) error("nesting deeper than " + std::to_string(max_depth_));
        ++p_;  // {
        value out = value::object();
        skip_ws();
        if (!eof() && t_[p_] == '}') {
            ++p_;
            return out;
        }
        for (;;) {
            skip_ws();
            if (eof() || t_[p_] != '"') error("expected a string key in object");
            std::string key = parse_string();
            skip_ws();
            if (eof() || t_[p_] != ':') error("expected ':' after object key");
            ++p_;
            skip_ws();
            out.set(key, parse_value(depth));
            skip_ws();
            if (eof()) error("unterminated object");
            if (t_[p_] == ',') {
                ++p_;
                continue;
            }
            if (t_[p_] == '}') {
                ++p_;
                return out;
            }
            error("expected ',' or '}' in object");
        }
    }

    unsigned parse_hex4() {
        if (p_ + 4 > t_.size()) error("truncated \\u escape");
        unsigned v = 0;
        for (int i = 0; i < 4; ++i) {
            char c = t_[p_++];
            v <<= 4;
            if (c >= '0' && c <= '9') v |= unsigned(c - '0');
            else if (c >= 'a' && c <= 'f') v |= unsigned(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') v |= unsigned(c - 'A' + 10);
            else error("invalid hex digit in \\u escape");
        }
        return v;
    }


    // Length of the valid UTF-8 sequence at p_ (RFC 3629: no overlongs, no surrogates, <= U+10FFFF), or 0.
    size_t utf8_len() const {
        auto b = [&](size_t i) -> unsigned { return p_ + i < t_.size() ? (unsigned char)t_[p_ + i] : 0u; };
        unsigned c = b(0);
        auto cont = [&](size_t i) { return (b(i) & 0xC0) == 0x80; };
        if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
        if (c >= 0xE0 && c <= 0xEF) {
            unsigned c1 = b(1);
            if (c == 0xE0 && c1 < 0xA0) return 0;
            if (c == 0xED && c1 > 0x9F) return 0;
            return cont(1) && cont(2) ? 3 : 0;
        }
        if (c >= 0xF0 && c <= 0xF4) {
            unsigned c1 = b(1);
            if (c == 0xF0 && c1 < 0x90) return 0;
            if (c == 0xF4 && c1 > 0x8F) return 0;
            return cont(1) && cont(2) && cont(3) ? 4 : 0;
        }
        return 0;
    }

    std::string parse_string() {
        size_t start = p_;
        ++p_;  // "
        std::string out;
        for (;;) {
            if (eof()) error_at(start, "unterminated string");
            unsigned char c = (unsigned char)t_[p_];
            if (c == '"') {
                ++p_;
                return out;
            }
            if (c < 0x20) error("control character in string (must be escaped)");
            if (c == '\\') {
                ++p_;
                if (eof()) error_at(start, "unterminated string");
                char e = t_[p_++];
                switch (e) {
                    case '"': out += '"'; break;
                    case '\\': out += '\\'; break;
                    case '/': out += '/'; break;
                    case 'b': out += '\b'; break;
                    case 'f': out += '\f'; break;
                    case 'n': out += '\n'; break;
                    case 'r': out += '\r'; break;
                    case 't': out += '\t'; break;
                    case 'u': {
                        size_t at = p_ - 2;
                        unsigned cp = parse_hex4();
                        if (cp >= 0xD800 && cp <= 0xDBFF) {
                            // ref: RFC 8259 section 7: a character outside the BMP is a surrogate pair.
                            if (t_.substr(p_, 2) != "\\u") error_at(at, "lone high surrogate in \\u escape");
                            p_ += 2;
                            unsigned lo = parse_hex4();
                            if (lo < 0xDC00 || lo > 0xDFFF) error_at(at, "invalid low surrogate in \\u escape");
                            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                            error_at(at, "lone low surrogate in \\u escape");
                        }
                        utf8_append(out, cp);
                        break;
                    }
                    default: error_at(p_ - 2, "invalid escape in string");
                }
                continue;
            }
            if (c < 0x80) {
                out += char(c);
                ++p_;
                continue;
            }
            size_t n = utf8_len();
            if (n == 0) error("invalid UTF-8 in string");
            out.append(t_.substr(p_, n));
            p_ += n;
        }
    }

    value parse_number() {
        size_t start = p_;
        bool integral = true;
        if (t_[p_] == '-') ++p_;
        if (eof() || !(t_[p_] >= '0' && t_[p_] <= '9')) error("invalid number");
        if (t_[p_] == '0') {
            ++p_;
            if (!eof() && t_[p_] >= '0' && t_[p_] <= '9') error_at(start, "leading zero in number");
        } else {
            while (!eof() && t_[p_] >= '0' && t_[p_] <= '9') ++p_;
        }
        if (!eof() && t_[p_] == '.') {
            integral = false;
            ++p_;
            if (eof() || !(t_[p_] >= '0' && t_[p_] <= '9')) error("expected digits after '.' in number");
            while (!eof() && t_[p_] >= '0' && t_[p_] <= '9') ++p_;
        }
        if (!eof() && (t_[p_] == 'e' || t_[p_] == 'E')) {
            integral = false;
            ++p_;
            if (!eof() && (t_[p_] == '+' || t_[p_] == '-')) ++p_;
            if (eof() || !(t_[p_] >= '0' && t_[p_] <= '9')) error("expected digits in exponent");
            while (!eof() && t_[p_] >= '0' && t_[p_] <= '9') ++p_;
        }
        const char* b = t_.data() + start;
        const char* e = t_.data() + p_;
        if (integral) {
            int64_t v = 0;
            auto r = std::from_chars(b, e, v);
            if (r.ec == std::errc() && r.ptr == e) return value(v);
            // Too large for int64: fall through to double, as most JSON readers do.
        }
        // strtod needs a terminated string; numbers are short.
        std::string s(b, e);
        double d = std::strtod(s.c_str(), nullptr);
        if (std::isinf(d)) error_at(start, "number out of range");
        return value(d);
    }
};

void dump_rec(std::string& out, const value& v, int indent, int level) {
    auto newline = [&](int lv) {
        out += '\n';
        out.append(size_t(indent) * size_t(lv), ' ');
    };
    switch (v.type()) {
        case kind::null: out += "null"; return;
        case kind::boolean: out += v.as_bool() ? "true" : "false"; return;
        case kind::integer: out += std::to_string(v.as_int()); return;
        case kind::number: {
            double d = v.as_double();
            if (!std::isfinite(d)) fail(TFU_STATUS_INVALID_ARGUMENT, "json: cannot serialize NaN or infinity");
            out += format_double(d);
            return;
        }
        case kind::string: append_quoted(out, v.as_string()); return;
        case kind::array: {
            const auto& a = v.as_array();
            out += '[';
            for (size_t i = 0; i < a.size(); ++i) {
                if (i) out += ',';
                if (indent >= 0) newline(level + 1);
                dump_rec(out, a[i], indent, level + 1);
            }
            if (indent >= 0 && !a.empty()) newline(level);
            out += ']';
            return;
        }
        case kind::object: {
            const auto& o = v.as_object();
            out += '{';
            for (size_t i = 0; i < o.size(); ++i) {
                if (i) out += ',';
                if (indent >= 0) newline(level + 1);
                append_quoted(out, o[i].first);
                out += indent >= 0 ? ": " : ":";
                dump_rec(out, o[i].second, indent, level + 1);
            }
            if (indent >= 0 && !o.empty()) newline(level);
            out += '}';
            return;
        }
    }
}

}  // namespace

value parse(std::string_view text, int max_depth) { return parser(text, max_depth).run(); }

std::string dump(const value& v, int indent) {
    std::string out;
    dump_rec(out, v, indent, 0);
    return out;
}

void append_quoted(std::string& out, std::string_view s) {
    static const char hex[] = "0123456789abcdef";
    out += '"';
    for (char ch : s) {
        unsigned char c = (unsigned char)ch;
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\b': out += "\\b"; break;
            case '\f': out += "\\f"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default:
                if (c < 0x20) {
                    out += "\\u00";
                    out += hex[c >> 4];
                    out += hex[c & 15];
                } else {
                    out += ch;
                }
        }
    }
    out += '"';
}

std::string format_double(double d) {
    if (std::isnan(d)) return "nan";
    if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
    // Shortest round-trip digits in scientific form ("-1.2345e+17"), then respelled the way Python's
    // float.__repr__ does: positional when -4 <= exponent < 16, else d.ddde+XX (two exponent digits minimum).
    char buf[64];
    auto r = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
    std::string sci(buf, r.ptr);
    bool neg = sci[0] == '-';
    if (neg) sci.erase(0, 1);
    size_t epos = sci.find('e');
    std::string mant = sci.substr(0, epos);
    int exp10 = std::atoi(sci.c_str() + epos + 1);
    std::string digits;
    for (char c : mant)
        if (c != '.') digits += c;
    std::string out = neg ? "-" : "";
    if (exp10 >= -4 && exp10 < 16) {
        int n = int(digits.size());
        if (exp10 < 0) {
            out += "0.";
            out.append(size_t(-exp10 - 1), '0');
            out += digits;
        } else if (exp10 + 1 >= n) {
            out += digits;
            out.append(size_t(exp10 + 1 - n), '0');
            out += ".0";
        } else {
            out += digits.substr(0, size_t(exp10 + 1));
            out += '.';
            out += digits.substr(size_t(exp10 + 1));
        }
    } else {
        out += digits[0];
        if (digits.size() > 1) {
            out += '.';
            out += digits.substr(1);
        }
        out += 'e';
        out += exp10 < 0 ? '-' : '+';
        int a = exp10 < 0 ? -exp10 : exp10;
        if (a < 10) out += '0';
        out += std::to_string(a);
    }
    return out;
}

}  // namespace tfu::json
