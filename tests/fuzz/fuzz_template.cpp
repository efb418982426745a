// libFuzzer target: renders arbitrary bytes as a chat template with two messages; only TEMPLATE_ERROR may escape.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "chat/chat_template.h"
#include "core/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::vector<tfu::chat::message> msgs{{"system", "be brief"}, {"user", "hello \xc3\xa9"}};
    tfu::chat::render_options opt;
    opt.add_generation_prompt = size % 2 == 0;
    opt.bos_token = "<s>";
    opt.eos_token = "</s>";
    opt.now = 1767355200;  // 2026-01-02
    try {
        tfu::chat::render(std::string_view(reinterpret_cast<const char*>(data), size), msgs, opt);
    } catch (const tfu::error& e) {
        // Every failure must be a template error with a message; anything else escapes and is reported.
        if (e.status() != TFU_STATUS_TEMPLATE_ERROR) __builtin_trap();
    }
    return 0;
}
