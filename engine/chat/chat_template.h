// Chat-template rendering: turns a conversation into prompt text with the model's Jinja chat template.
#pragma once

#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tfu::chat {

struct message {
    std::string role;
    std::string content;
};

struct render_options {
    bool add_generation_prompt = false;
    std::string bos_token, eos_token;
    // strftime_now() uses this time if set (tests), else the current local time.
    std::optional<std::time_t> now;
};

// Renders `source` (a Jinja chat template) for the messages, as Hugging Face transformers does: Jinja2 with
// trim_blocks, lstrip_blocks and loop controls; variables messages (list of {"role", "content"} dicts),
// add_generation_prompt, bos_token, eos_token, tools = None, documents = None; globals raise_exception(msg),
// strftime_now(fmt), range, namespace, dict; the tojson filter is json.dumps with non-ASCII kept.
// Template syntax errors and raise_exception() throw tfu::error(TFU_STATUS_TEMPLATE_ERROR, message) where
// message is exactly the template's own text for raise_exception, and "chat template: line N: ..." for
// syntax/runtime errors (also for hostile templates that exceed the output size, step or nesting limits).
// Thread-safe: no shared state.
std::string render(std::string_view source, const std::vector<message>& messages, const render_options& opt);

}  // namespace tfu::chat
