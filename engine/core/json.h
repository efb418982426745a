// tfu::json: a small JSON value type, a strict RFC 8259 parser and a serializer (used by tests, tools, tojson).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tfu::json {

enum class kind { null, boolean, integer, number, string, array, object };

// A JSON value. Numbers written without fraction or exponent that fit int64 parse as `integer`, all others as
// `number` (double). Objects keep their members in insertion (file) order; a duplicate key in parsed text keeps
// the last value at the first key's position. Accessors of the wrong kind throw
// tfu::error(TFU_STATUS_INVALID_ARGUMENT, "json: expected <kind>, got <kind>").
class value {
public:
    using array_t = std::vector<value>;
    using member_t = std::pair<std::string, value>;
    using object_t = std::vector<member_t>;

    value() = default;  // null
    value(std::nullptr_t) {}
    value(bool b) : kind_(kind::boolean), b_(b) {}
    value(int v) : kind_(kind::integer), i_(v) {}
    value(int64_t v) : kind_(kind::integer), i_(v) {}
    value(double v) : kind_(kind::number), d_(v) {}
    value(std::string s) : kind_(kind::string), s_(std::move(s)) {}
    value(std::string_view s) : kind_(kind::string), s_(s) {}
    value(const char* s) : kind_(kind::string), s_(s) {}
    value(array_t a) : kind_(kind::array), a_(std::move(a)) {}
    value(object_t o) : kind_(kind::object), o_(std::move(o)) {}
    static value array() { return value(array_t{}); }
    static value object() { return value(object_t{}); }

    kind type() const { return kind_; }
    bool is_null() const { return kind_ == kind::null; }
    bool is_bool() const { return kind_ == kind::boolean; }
    bool is_int() const { return kind_ == kind::integer; }
    bool is_number() const { return kind_ == kind::integer || kind_ == kind::number; }  // int or double
    bool is_string() const { return kind_ == kind::string; }
    bool is_array() const { return kind_ == kind::array; }
    bool is_object() const { return kind_ == kind::object; }

    bool as_bool() const;
    int64_t as_int() const;      // integer only (a double with integral value is not converted)
    double as_double() const;    // integer or number
    const std::string& as_string() const;
    const array_t& as_array() const;
    array_t& as_array();
    const object_t& as_object() const;
    object_t& as_object();
    std::vector<float> as_floats() const;  // array of numbers -> floats (golden files)

    // Array: element count; object: member count; else throws.
    size_t size() const;
    const value& operator[](size_t i) const;  // array element; throws when out of range
    // Object member lookup: nullptr when absent (find) or throws naming the key (at).
    const value* find(std::string_view key) const;
    const value& at(std::string_view key) const;
    bool contains(std::string_view key) const { return find(key) != nullptr; }
    // Object: replaces the member's value or appends a new member. Null values become objects first.
    value& set(std::string_view key, value v);
    // Array: appends. A null value becomes an array first.
    void push_back(value v);

    bool operator==(const value& o) const;  // deep; integer 1 == number 1.0
    bool operator!=(const value& o) const { return !(*this == o); }

private:
    kind kind_ = kind::null;
    bool b_ = false;
    int64_t i_ = 0;
    double d_ = 0;
    std::string s_;
    array_t a_;
    object_t o_;
};

const char* kind_name(kind k);

// Parses exactly one JSON text (RFC 8259: no comments, no trailing commas, no NaN, strings must be valid
// UTF-8; surrogate-pair \u escapes are combined, lone surrogates rejected). Nesting deeper than max_depth
// arrays/objects is refused. Errors throw tfu::error(TFU_STATUS_INVALID_ARGUMENT, "json: line L col C: ...").
constexpr int default_max_depth = 512;
value parse(std::string_view text, int max_depth = default_max_depth);

// Serializes. indent < 0: compact, no spaces ({"a":[1,2]}); indent >= 0: members on their own lines indented
// by `indent` spaces per level and ": " after keys. Doubles use the shortest text that reads back exactly
// (format_double); NaN and infinities are not JSON and throw INVALID_ARGUMENT. Non-ASCII stays UTF-8.
std::string dump(const value& v, int indent = -1);

// Building blocks shared with tojson (chat templates):
// Appends s as a JSON string literal: quotes, escapes \" \\ \b \f \n \r \t and other bytes < 0x20 as \u00XX;
// every other byte (UTF-8 included) is copied as is (as Python's json.dumps with ensure_ascii=False).
void append_quoted(std::string& out, std::string_view s);
// The shortest decimal that round-trips, spelled like Python's repr(float): "1.0", "0.1", "1e-05", "1.5e+16",
// "nan", "inf", "-inf" (the caller decides what to do with the last three).
std::string format_double(double d);

}  // namespace tfu::json
