// C ABI: tokenize, detokenize, chat templates.
#include "api/guard.h"
#include "chat/chat_template.h"
#include "core/utf8.h"

using tfu::api::guard;
using tfu::api::need;

extern "C" {

TFU_API tfu_status tfu_tokenize(const tfu_model* model, const char* text, size_t text_len, bool add_special,
                                bool parse_special, tfu_token* out_tokens, size_t capacity, size_t* out_count) {
    return guard([&] {
        need(model, "model");
        need(out_count, "out_count");
        *out_count = 0;
        if (text_len > 0) need(text, "text");
        std::string_view sv(text ? text : "", text_len);
        if (!tfu::utf8_valid(sv)) tfu::fail(TFU_STATUS_INVALID_UTF8, "tfu_tokenize: text is not valid UTF-8");
        std::vector<int32_t> ids = model->impl->voc->tokenize(sv, add_special, parse_special);
        *out_count = ids.size();
        if (capacity > 0) need(out_tokens, "out_tokens");
        if (ids.size() > capacity)
            tfu::fail(TFU_STATUS_BUFFER_TOO_SMALL, "tfu_tokenize: " + std::to_string(ids.size()) +
                                                       " tokens do not fit in a buffer of " + std::to_string(capacity));
        std::copy(ids.begin(), ids.end(), out_tokens);
    });
}

TFU_API tfu_status tfu_detokenize(const tfu_model* model, const tfu_token* tokens, size_t n_tokens,
                                  bool render_special, char* out_text, size_t capacity, size_t* out_len) {
    return guard([&] {
        need(model, "model");
        need(out_len, "out_len");
        *out_len = 0;
        if (n_tokens > 0) need(tokens, "tokens");
        const int32_t n_vocab = model->impl->hp.n_vocab;
        for (size_t i = 0; i < n_tokens; ++i)
            if (tokens[i] < 0 || tokens[i] >= n_vocab)
                tfu::fail(TFU_STATUS_INVALID_ARGUMENT, "tfu_detokenize: token " + std::to_string(tokens[i]) +
                                                           " at index " + std::to_string(i) + " is outside the vocabulary");
        // Byte tokens can form invalid sequences; the C API promises UTF-8, so those become U+FFFD.
        std::string text = tfu::utf8_sanitize(
            model->impl->voc->detokenize(std::vector<int32_t>(tokens, tokens + n_tokens), render_special));
        tfu::api::copy_out_text(text, out_text, capacity, out_len);
    });
}

TFU_API tfu_status tfu_chat_apply_template(const tfu_model* model, const char* template_override,
                                           const tfu_chat_message* messages, size_t n_messages,
                                           bool add_generation_prompt, char* out_text, size_t capacity,
                                           size_t* out_len) {
    return guard([&] {
        need(model, "model");
        need(out_len, "out_len");
        *out_len = 0;
        if (n_messages > 0) need(messages, "messages");
        const tfu::model& m = *model->impl;
        std::string_view source = template_override ? std::string_view(template_override) : m.chat_template;
        if (source.empty())
            tfu::fail(TFU_STATUS_UNSUPPORTED, "the model has no chat template (tokenizer.chat_template); pass one "
                                              "as template_override or use plain completion");
        std::vector<tfu::chat::message> msgs;
        for (size_t i = 0; i < n_messages; ++i) {
            const std::string idx = "messages[" + std::to_string(i) + "]";
            need(messages[i].role, (idx + ".role").c_str());
            need(messages[i].content, (idx + ".content").c_str());
            if (!tfu::utf8_valid(messages[i].content))
                tfu::fail(TFU_STATUS_INVALID_UTF8, idx + ".content is not valid UTF-8");
            msgs.push_back({messages[i].role, messages[i].content});
        }
        tfu::chat::render_options opt;
        opt.add_generation_prompt = add_generation_prompt;
        auto tok_text = [&](int32_t id) { return id >= 0 ? m.voc->token_text(id) : std::string(); };
        opt.bos_token = tok_text(m.voc->bos());
        opt.eos_token = tok_text(m.voc->eos());
        std::string text = tfu::chat::render(source, msgs, opt);
        tfu::api::copy_out_text(text, out_text, capacity, out_len);
    });
}

}  // extern "C"
