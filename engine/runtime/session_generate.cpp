// The generation loop: prefill, then sample -> detokenize -> stop strings -> callback, one token per step.
// The last sampled token stays pending (evaluated by the next call), so no forward pass is wasted at the end.
#include <chrono>

#include "core/error.h"
#include "runtime/session.h"
#include "sampling/stop.h"
#include "tokenizer/vocab.h"

namespace tfu {
namespace {

double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

void session::generate(const tfu_generate_params& p, tfu_generate_result* result) {
    tfu_generate_result res{};
    res.struct_size = sizeof res;
    std::vector<std::string> stops;
    if (p.n_stop_strings > 0 && p.stop_strings == nullptr)
        fail(TFU_STATUS_INVALID_ARGUMENT, "generate params: stop_strings is NULL but n_stop_strings > 0");
    for (size_t i = 0; i < p.n_stop_strings; ++i) {
        if (p.stop_strings[i] == nullptr)
            fail(TFU_STATUS_INVALID_ARGUMENT, "generate params: stop_strings[" + std::to_string(i) + "] is NULL");
        stops.emplace_back(p.stop_strings[i]);
    }
    stop_matcher stopper(std::move(stops));
    detokenizer detok(*mdl.voc, p.render_special);
    detok.reset(/*at_start=*/tokens_.empty() && pending_.empty());

    // Delivers text to the callback; returns false if the callback asked to stop.
    auto emit = [&](const std::string& text, int32_t token) {
        if (text.empty() || p.on_token == nullptr) return true;
        return p.on_token(text.data(), text.size(), token, p.user_data);
    };
    const auto t_start = std::chrono::steady_clock::now();
    auto t_decode = t_start;
    bool decoding = false;
    auto finish = [&](tfu_stop_reason why) {
        res.stop_reason = why;
        if (decoding) res.decode_ms = ms_since(t_decode);
        total_generated_ += uint64_t(res.n_generated);
        total_decode_ms_ += res.decode_ms;
        if (result) *result = res;
    };

    res.n_prompt_tokens = int32_t(pending_.size());
    try {
        if (!pending_.empty() || !has_logits_) {
            if (pending_.empty()) fail(TFU_STATUS_INVALID_ARGUMENT, "nothing to generate from: add a prompt first");
            eval();
        }
    } catch (const error& e) {
        res.prefill_ms = ms_since(t_start);
        total_prefill_ms_ += res.prefill_ms;
        if (e.status() == TFU_STATUS_CANCELLED) finish(TFU_STOP_CANCELLED);
        throw;
    }
    res.prefill_ms = ms_since(t_start);
    total_prefill_ms_ += res.prefill_ms;
    total_prompt_ += uint64_t(res.n_prompt_tokens);

    t_decode = std::chrono::steady_clock::now();
    decoding = true;
    int32_t last_token = -1;
    try {
        for (;;) {
            throw_if_cancelled();
            if (p.max_tokens >= 0 && res.n_generated >= p.max_tokens) {
                emit(stopper.feed(detok.flush()).text, last_token) && emit(stopper.flush(), last_token);
                finish(TFU_STOP_MAX_TOKENS);
                break;
            }
            if (!pending_.empty()) eval();  // the token sampled last step
            if (policy_ == TFU_KV_POLICY_REFUSE && tokens_.size() >= size_t(capacity_)) {
                emit(stopper.feed(detok.flush()).text, last_token) && emit(stopper.flush(), last_token);
                finish(TFU_STOP_CONTEXT_FULL);
                break;
            }
            const int32_t t = pick_token();
            pending_.push_back(t);
            ++res.n_generated;
            last_token = t;
            if (res.n_generated == 1) res.time_to_first_token_ms = res.prefill_ms + ms_since(t_decode);
            if (mdl.voc->is_eog(t) && !p.render_special) {
                emit(stopper.feed(detok.flush()).text, t) && emit(stopper.flush(), t);
                finish(TFU_STOP_EOG);
                break;
            }
            stop_matcher::result r = stopper.feed(detok.push(t));
            const bool go_on = emit(r.text, t);
            if (r.stopped || !go_on || mdl.voc->is_eog(t)) {
                finish(r.stopped ? TFU_STOP_STRING : !go_on ? TFU_STOP_CALLBACK : TFU_STOP_EOG);
                break;
            }
        }
    } catch (const error& e) {
        if (e.status() == TFU_STATUS_CANCELLED) finish(TFU_STOP_CANCELLED);
        throw;
    }
}

}  // namespace tfu
