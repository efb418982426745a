// Chat-template rendering entry point: builds the variables and globals, parses and interprets the template.
#include "chat/chat_template.h"

#include <algorithm>
#include <cmath>
#include <new>

#include "chat/builtins.h"
#include "chat/interpreter.h"
#include "chat/lexer.h"
#include "chat/parser.h"
#include "core/error.h"

namespace tfu::chat {

namespace {

value make_range(const call_args& a) {
    for (const value& v : a.pos)
        if (!v.is_int()) runtime_fail(std::string("'") + type_name(v) + "' object cannot be interpreted as an integer");
    int64_t start = 0, stop = 0, st = 1;
    if (a.pos.size() == 1) stop = a.pos[0].as_int();
    else if (a.pos.size() == 2 || a.pos.size() == 3) {
        start = a.pos[0].as_int();
        stop = a.pos[1].as_int();
        if (a.pos.size() == 3) st = a.pos[2].as_int();
    } else {
        runtime_fail("range expected 1 to 3 arguments");
    }
    if (st == 0) runtime_fail("range() arg 3 must not be zero");
    // Count first, as a double, so that hostile bounds cannot overflow or allocate without limit.
    double count = std::max(0.0, std::ceil((double(stop) - double(start)) / double(st)));
    check_size(size_t(std::min(count, double(max_result_size) + 1)));
    value_list out;
    for (int64_t i = start; st > 0 ? i < stop : i > stop; i += st) out.push_back(value(i));
    return value(out);
}

value kwargs_dict(const call_args& a, const char* fn) {
    value_dict d;
    if (!a.pos.empty()) {
        if (a.pos.size() > 1 || !a.pos[0].is_dict()) runtime_fail(std::string(fn) + "() takes one mapping argument");
        d = a.pos[0].dict();
    }
    for (const auto& kw : a.kw) {
        bool replaced = false;
        for (auto& kv : d)
            if (kv.first.is_string() && kv.first.str() == kw.first) {
                kv.second = kw.second;
                replaced = true;
            }
        if (!replaced) d.emplace_back(value(kw.first), kw.second);
    }
    return value(std::move(d));
}

}  // namespace

std::string render(std::string_view source, const std::vector<message>& messages, const render_options& opt) {
    stmt_list body = parse_template(source);

    value_list msgs;
    for (const message& m : messages)
        msgs.push_back(value(value_dict{{value("role"), value(m.role)}, {value("content"), value(m.content)}}));
    std::time_t now = opt.now ? *opt.now : std::time(nullptr);

    value_dict globals{
        {value("messages"), value(std::move(msgs))},
        {value("add_generation_prompt"), value(opt.add_generation_prompt)},
        {value("bos_token"), value(opt.bos_token)},
        {value("eos_token"), value(opt.eos_token)},
        // transformers passes these explicitly (None when the caller gives none).
        {value("tools"), value::none()},
        {value("documents"), value::none()},
        {value("raise_exception"), value::function("raise_exception", [](const call_args& a) -> value {
             const value* msg = a.get(0, "message");
             fail(TFU_STATUS_TEMPLATE_ERROR, msg ? to_str(*msg) : std::string());
         })},
        {value("strftime_now"), value::function("strftime_now", [now](const call_args& a) {
             const value* fmt = a.get(0, "format");
             if (!fmt || !fmt->is_string()) runtime_fail("strftime_now() needs a format string");
             std::tm tm{};
             localtime_r(&now, &tm);
             if (fmt->str().empty()) return value("");
             std::vector<char> buf(256 + fmt->str().size() * 64);
             size_t n = std::strftime(buf.data(), buf.size(), fmt->str().c_str(), &tm);
             return value(std::string(buf.data(), n));
         })},
        {value("range"), value::function("range", make_range)},
        {value("namespace"), value::function("namespace", [](const call_args& a) {
             return value::new_namespace(kwargs_dict(a, "namespace").dict());
         })},
        {value("dict"), value::function("dict", [](const call_args& a) { return kwargs_dict(a, "dict"); })},
    };

    int line = 0;
    try {
        return interpret(body, globals, render_limits{}, &line);
    } catch (const template_runtime_error& e) {
        fail(TFU_STATUS_TEMPLATE_ERROR, "chat template: line " + std::to_string(line) + ": " + e.what());
    } catch (const std::bad_alloc&) {
        fail(TFU_STATUS_TEMPLATE_ERROR, "chat template: line " + std::to_string(line) + ": out of memory");
    }
}

}  // namespace tfu::chat
