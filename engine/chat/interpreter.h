// Jinja interpreter for chat templates: executes a parsed template (ast.h) against global variables.
#pragma once

#include <cstdint>
#include <string>

#include "chat/ast.h"

namespace tfu::chat {

// Guards against hostile templates; exceeding one is a template_runtime_error.
struct render_limits {
    size_t max_output = size_t(16) << 20;  // bytes of any output buffer (the result, a macro's or set block's)
    int max_call_depth = 64;               // nested macro calls
    uint64_t max_steps = 1'000'000;        // statements executed + loop iterations + macro calls
};

// Renders `body` with `globals` as the outermost scope (messages, bos_token, raise_exception, ...).
// Scoping as Jinja: each for-loop iteration and each macro call has its own scope; `set` binds in the current
// scope; namespace() objects are shared by reference so loops can update them. Throws
// template_runtime_error (message without line) with the line of the failing node in *error_line.
std::string interpret(const stmt_list& body, const value_dict& globals, const render_limits& limits,
                      int* error_line);

}  // namespace tfu::chat
