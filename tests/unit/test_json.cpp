// Tests of tfu::json: parse/dump round trips, strictness errors with line/col, unicode escapes, doubles.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>

#include "core/error.h"
#include "core/json.h"

using tfu::json::dump;
using tfu::json::parse;
using tfu::json::value;

static std::string parse_error(std::string_view text) {
    try {
        parse(text);
    } catch (const tfu::error& e) {
        EXPECT_EQ(e.status(), TFU_STATUS_INVALID_ARGUMENT);
        return e.what();
    }
    return "<no error>";
}

TEST(json, scalars) {
    EXPECT_TRUE(parse("null").is_null());
    EXPECT_EQ(parse(" true ").as_bool(), true);
    EXPECT_EQ(parse("false").as_bool(), false);
    EXPECT_EQ(parse("-42").as_int(), -42);
    EXPECT_EQ(parse("9223372036854775807").as_int(), INT64_MAX);
    EXPECT_EQ(parse("-9223372036854775808").as_int(), INT64_MIN);
    EXPECT_TRUE(parse("9223372036854775808").type() == tfu::json::kind::number);  // too big: double
    EXPECT_DOUBLE_EQ(parse("1.5e3").as_double(), 1500.0);
    EXPECT_DOUBLE_EQ(parse("-0.25").as_double(), -0.25);
    EXPECT_EQ(parse("\"a\\nb\"").as_string(), "a\nb");
}

TEST(json, object_order_and_access) {
    value v = parse(R"({"z": 1, "a": [1, 2.5, "x"], "m": {"k": null}, "z": 3})");
    ASSERT_TRUE(v.is_object());
    ASSERT_EQ(v.size(), 3u);
    EXPECT_EQ(v.as_object()[0].first, "z");  // duplicate keeps first position, last value
    EXPECT_EQ(v.at("z").as_int(), 3);
    EXPECT_EQ(v.as_object()[1].first, "a");
    EXPECT_EQ(v.at("a")[2].as_string(), "x");
    EXPECT_TRUE(v.at("m").at("k").is_null());
    EXPECT_EQ(v.find("missing"), nullptr);
    EXPECT_THROW(v.at("missing"), tfu::error);
    EXPECT_THROW(v.at("a")[3], tfu::error);
    EXPECT_THROW(v.at("z").as_string(), tfu::error);
    EXPECT_EQ(dump(v), R"({"z":3,"a":[1,2.5,"x"],"m":{"k":null}})");
}

TEST(json, dump_indent) {
    value v = value::object();
    v.set("name", "t");
    v.set("list", value(value::array_t{1, 2}));
    v.set("empty", value::array());
    EXPECT_EQ(dump(v, 2), "{\n  \"name\": \"t\",\n  \"list\": [\n    1,\n    2\n  ],\n  \"empty\": []\n}");
    EXPECT_EQ(parse(dump(v, 2)), v);
}

TEST(json, floats_shortest_roundtrip) {
    // Spellings checked against Python's repr(float).
    EXPECT_EQ(tfu::json::format_double(1.0), "1.0");
    EXPECT_EQ(tfu::json::format_double(0.1), "0.1");
    EXPECT_EQ(tfu::json::format_double(1e-5), "1e-05");
    EXPECT_EQ(tfu::json::format_double(1.5e16), "1.5e+16");
    EXPECT_EQ(tfu::json::format_double(1e15), "1000000000000000.0");
    EXPECT_EQ(tfu::json::format_double(0.00012), "0.00012");
    EXPECT_EQ(tfu::json::format_double(-0.0), "-0.0");
    EXPECT_EQ(tfu::json::format_double(5e-324), "5e-324");
    EXPECT_EQ(tfu::json::format_double(1.7976931348623157e308), "1.7976931348623157e+308");
    EXPECT_EQ(tfu::json::format_double(12345.678), "12345.678");
    EXPECT_EQ(tfu::json::format_double(123456789012345678.0), "1.2345678901234568e+17");

    const unsigned seed = 1234;
    std::printf("seed %u\n", seed);
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> mant(-1.0, 1.0);
    std::uniform_int_distribution<int> ex(-300, 300);
    value arr = value::array();
    for (int i = 0; i < 2000; ++i) arr.push_back(mant(rng) * std::pow(10.0, ex(rng)));
    value back = parse(dump(arr));
    ASSERT_EQ(back.size(), arr.size());
    for (size_t i = 0; i < arr.size(); ++i) EXPECT_EQ(back[i].as_double(), arr[i].as_double()) << i;
    std::vector<float> f = parse("[1, 2.5, -3e-2]").as_floats();
    ASSERT_EQ(f.size(), 3u);
    EXPECT_EQ(f[2], -3e-2f);
    value nan_v(std::nan(""));
    EXPECT_THROW(dump(nan_v), tfu::error);
}

TEST(json, unicode) {
    EXPECT_EQ(parse(R"("\u00e9")").as_string(), "\xc3\xa9");
    EXPECT_EQ(parse(R"("\u20AC")").as_string(), "\xe2\x82\xac");
    EXPECT_EQ(parse(R"("\ud83d\ude42")").as_string(), "\xf0\x9f\x99\x82");  // U+1F642 as a surrogate pair
    EXPECT_EQ(parse("\"\xf0\x9f\x99\x82 raw\"").as_string(), "\xf0\x9f\x99\x82 raw");
    EXPECT_EQ(parse(R"("\u0000x")").as_string(), std::string("\0x", 2));
    // Non-ASCII stays UTF-8 on output; control characters are escaped.
    EXPECT_EQ(dump(value("\xc3\xa9\x01\"\\\t")), "\"\xc3\xa9\\u0001\\\"\\\\\\t\"");
    EXPECT_NE(parse_error(R"("\ud83d")").find("lone high surrogate"), std::string::npos);
    EXPECT_NE(parse_error(R"("\ud83dx")").find("lone high surrogate"), std::string::npos);
    EXPECT_NE(parse_error(R"("\ude42")").find("lone low surrogate"), std::string::npos);
    EXPECT_NE(parse_error(R"("\ud83d\u0041")").find("invalid low surrogate"), std::string::npos);
    EXPECT_NE(parse_error("\"\xc3\x28\"").find("invalid UTF-8"), std::string::npos);
    EXPECT_NE(parse_error("\"\xed\xa0\x80\"").find("invalid UTF-8"), std::string::npos);  // encoded surrogate
    EXPECT_NE(parse_error("\"\xc0\xaf\"").find("invalid UTF-8"), std::string::npos);      // overlong
}

TEST(json, strict_errors) {
    EXPECT_EQ(parse_error("[1,\n  2,]"), "json: line 2 col 5: unexpected character ']'");
    EXPECT_EQ(parse_error("{\"a\" 1}"), "json: line 1 col 6: expected ':' after object key");
    EXPECT_NE(parse_error("01").find("leading zero"), std::string::npos);
    EXPECT_NE(parse_error("1.").find("digits after"), std::string::npos);
    EXPECT_NE(parse_error("NaN").find("unexpected character"), std::string::npos);
    EXPECT_NE(parse_error("tru").find("invalid literal"), std::string::npos);
    EXPECT_NE(parse_error("\"a\nb\"").find("control character"), std::string::npos);
    EXPECT_NE(parse_error("\"abc").find("unterminated string"), std::string::npos);
    EXPECT_NE(parse_error("{'a': 1}").find("string key"), std::string::npos);
    EXPECT_NE(parse_error("1 2").find("after the JSON value"), std::string::npos);
    EXPECT_NE(parse_error("").find("end of input"), std::string::npos);
    EXPECT_NE(parse_error("// c\n1").find("line 1 col 1"), std::string::npos);
    EXPECT_NE(parse_error("\"\\x\"").find("invalid escape"), std::string::npos);
    EXPECT_NE(parse_error("1e999").find("out of range"), std::string::npos);
    std::string deep(600, '[');
    EXPECT_NE(parse_error(deep).find("nesting deeper"), std::string::npos);
    std::string ok = std::string(100, '[') + std::string(100, ']');
    EXPECT_NO_THROW(parse(ok));
}

TEST(json, round_trip_nested) {
    const char* text = R"({"a":[true,false,null,{"b":"\u00fc\ud83d\ude00"}],"n":-12,"x":0.5,"s":"q\"\\/"})";
    value v = parse(text);
    std::string once = dump(v);
    EXPECT_EQ(parse(once), v);
    EXPECT_EQ(dump(parse(once)), once);
    EXPECT_EQ(parse(dump(v, 4)), v);
    EXPECT_EQ(once, "{\"a\":[true,false,null,{\"b\":\"\xc3\xbc\xf0\x9f\x98\x80\"}],\"n\":-12,\"x\":0.5,\"s\":\"q\\\"\\\\/\"}");
}
