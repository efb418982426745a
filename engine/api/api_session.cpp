// C ABI: sessions: create, input, prefill, generate, batched decode, cancel, reset, logits, sampling, statistics.
#include "api/guard.h"

#include <optional>
#include <vector>

using tfu::api::guard;
using tfu::api::need;

namespace {
tfu::session& use(tfu_session* s) { return *need(s, "session")->impl; }
}  // namespace

extern "C" {

TFU_API tfu_sampler_params tfu_sampler_params_default(void) {
    tfu_sampler_params p{};
    p.struct_size = sizeof p;
    p.temperature = 0.8f;
    p.top_k = 40;
    p.top_p = 0.95f;
    p.min_p = 0.05f;
    p.repeat_penalty = 1.0f;
    p.frequency_penalty = 0.0f;
    p.presence_penalty = 0.0f;
    p.penalty_last_n = 64;
    p.seed = 0xC0FFEE;
    return p;
}

TFU_API tfu_session_params tfu_session_params_default(void) {
    tfu_session_params p{};
    p.struct_size = sizeof p;
    p.n_ctx = 0;
    p.n_batch = 256;
    p.sampler = tfu_sampler_params_default();
    p.kv_type_k = TFU_KV_F16;
    p.kv_type_v = TFU_KV_F16;
    p.kv_policy = TFU_KV_POLICY_REFUSE;
    p.kv_n_sink = 4;
    p.kv_cap_bytes = 0;
    p.kv_n_recent = 0;
    p.kv_chunk = 8;
    return p;
}

TFU_API tfu_generate_params tfu_generate_params_default(void) {
    tfu_generate_params p{};
    p.struct_size = sizeof p;
    p.max_tokens = 256;
    p.stop_strings = nullptr;
    p.n_stop_strings = 0;
    p.render_special = false;
    p.on_token = nullptr;
    p.user_data = nullptr;
    return p;
}

TFU_API tfu_status tfu_session_create(tfu_model* model, const tfu_session_params* params,
                                      tfu_session** out_session) {
    return guard([&] {
        need(out_session, "out_session");
        *out_session = nullptr;
        need(model, "model");
        tfu_session_params p = tfu::api::read_params(params, tfu_session_params_default(), "tfu_session_params");
        auto s = std::make_unique<tfu_session>();
        s->owner = model;
        s->impl = std::make_unique<tfu::session>(*model->impl, p);
        *out_session = s.release();
    });
}

TFU_API tfu_status tfu_session_destroy(tfu_session* session) {
    return guard([&] {
        if (!session) return;
        if (session->impl->busy.load())
            tfu::fail(TFU_STATUS_BUSY, "tfu_session_destroy: the session is in use by another thread");
        delete session;
    });
}

TFU_API tfu_status tfu_session_add_text(tfu_session* session, const char* text, bool add_special) {
    return guard([&] {
        tfu::session& s = use(session);
        need(text, "text");
        tfu::session_use u(s);
        s.add_text(text, add_special);
    });
}

TFU_API tfu_status tfu_session_add_tokens(tfu_session* session, const tfu_token* tokens, size_t n_tokens) {
    return guard([&] {
        tfu::session& s = use(session);
        tfu::session_use u(s);
        s.add_tokens(tokens, n_tokens);
    });
}

TFU_API tfu_status tfu_session_eval(tfu_session* session) {
    return guard([&] {
        tfu::session& s = use(session);
        tfu::session_use u(s);
        s.eval();
    });
}

TFU_API tfu_status tfu_session_generate(tfu_session* session, const tfu_generate_params* params,
                                        tfu_generate_result* out_result) {
    return guard([&] {
        tfu::session& s = use(session);
        tfu_generate_params p = tfu::api::read_params(params, tfu_generate_params_default(), "tfu_generate_params");
        tfu::session_use u(s);
        tfu_generate_result r{};
        r.struct_size = sizeof r;
        struct write_back {  // the result is filled in also when generation ends with an error (cancel)
            tfu_generate_result* out;
            tfu_generate_result* r;
            ~write_back() {
                if (!out) return;
                size_t n = out->struct_size == 0 ? sizeof *r : std::min<size_t>(out->struct_size, sizeof *r);
                r->struct_size = uint32_t(n);
                std::memcpy(static_cast<void*>(out), r, n);
            }
        } wb{out_result, &r};
        s.generate(p, &r);
    });
}

TFU_API tfu_status tfu_session_cancel(tfu_session* session) {
    // Valid sessions: one lock-free atomic store and nothing else, so that this is async-signal-safe.
    if (!session) {
        tfu::api::set_last_error("session is NULL");
        return TFU_STATUS_INVALID_ARGUMENT;
    }
    session->impl->cancel_flag.store(true);
    return TFU_STATUS_OK;
}

TFU_API tfu_status tfu_session_reset(tfu_session* session) {
    return guard([&] {
        tfu::session& s = use(session);
        tfu::session_use u(s);
        s.reset();
    });
}

TFU_API tfu_status tfu_session_get_logits(tfu_session* session, const float** out_logits, size_t* out_n_vocab) {
    return guard([&] {
        tfu::session& s = use(session);
        need(out_logits, "out_logits");
        tfu::session_use u(s);
        const std::vector<float>& lg = s.logits();
        *out_logits = lg.data();
        if (out_n_vocab) *out_n_vocab = lg.size();
    });
}

TFU_API tfu_status tfu_session_eval_logits(tfu_session* session, const tfu_token* tokens, size_t n_tokens,
                                           float* out_logits) {
    return guard([&] {
        tfu::session& s = use(session);
        if (n_tokens == 0) return;
        need(tokens, "tokens");
        need(out_logits, "out_logits");
        tfu::session_use u(s);
        s.eval_logits(tokens, n_tokens, out_logits);
    });
}

TFU_API tfu_status tfu_session_sample(tfu_session* session, tfu_token* out_token) {
    return guard([&] {
        tfu::session& s = use(session);
        need(out_token, "out_token");
        tfu::session_use u(s);
        *out_token = s.sample();
    });
}

TFU_API tfu_status tfu_session_decode_batch(tfu_session* const* sessions, const tfu_token* tokens, size_t n) {
    return guard([&] {
        if (n == 0) tfu::fail(TFU_STATUS_INVALID_ARGUMENT, "tfu_session_decode_batch: n is 0");
        if (n > TFU_DECODE_BATCH_MAX)
            tfu::fail(TFU_STATUS_INVALID_ARGUMENT, "tfu_session_decode_batch: n = " + std::to_string(n) +
                                                       " is more than TFU_DECODE_BATCH_MAX (" +
                                                       std::to_string(TFU_DECODE_BATCH_MAX) + ")");
        need(sessions, "sessions");
        std::vector<tfu::session*> ss(n);
        for (size_t i = 0; i < n; ++i) {
            if (!sessions[i])
                tfu::fail(TFU_STATUS_INVALID_ARGUMENT, "sessions[" + std::to_string(i) + "] is NULL");
            if (sessions[i]->owner != sessions[0]->owner)
                tfu::fail(TFU_STATUS_INVALID_ARGUMENT, "sessions[" + std::to_string(i) +
                                                           "] is on another model than sessions[0]");
            ss[i] = sessions[i]->impl.get();
        }
        // The checks that need no session state come before the sessions are taken (a repeated session would
        // otherwise be BUSY with itself); decode_batch checks the rest before it changes anything.
        for (size_t i = 0; i < n; ++i)
            for (size_t j = 0; j < i; ++j)
                if (ss[j] == ss[i])
                    tfu::fail(TFU_STATUS_INVALID_ARGUMENT, "sessions[" + std::to_string(i) + "] is sessions[" +
                                                               std::to_string(j) + "] again");
        if (tokens)
            for (size_t i = 0; i < n; ++i)
                if (tokens[i] < 0 || tokens[i] >= ss[0]->mdl.hp.n_vocab)
                    tfu::fail(TFU_STATUS_INVALID_ARGUMENT, "tokens[" + std::to_string(i) + "] = " +
                                                               std::to_string(tokens[i]) +
                                                               " is outside the vocabulary (0 .. " +
                                                               std::to_string(ss[0]->mdl.hp.n_vocab - 1) + ")");
        // Every session for this thread, or none: a BUSY one throws and the taken ones are released.
        std::vector<std::optional<tfu::session_use>> uses(n);
        for (size_t i = 0; i < n; ++i) uses[i].emplace(*ss[i]);
        tfu::session::decode_batch(ss.data(), tokens, n);
    });
}

TFU_API tfu_status tfu_session_save(tfu_session* session, const char* path) {
    return guard([&] {
        tfu::session& s = use(session);
        need(path, "path");
        tfu::session_use u(s);
        s.save(path);
    });
}

TFU_API tfu_status tfu_session_load(tfu_session* session, const char* path) {
    return guard([&] {
        tfu::session& s = use(session);
        need(path, "path");
        tfu::session_use u(s);
        s.load(path);
    });
}

TFU_API tfu_status tfu_session_prefetch(tfu_session* session) {
    return guard([&] {
        tfu::session& s = use(session);
        tfu::session_use u(s);  // brings the cache back (session_use), or throws OUT_OF_MEMORY
    });
}

TFU_API tfu_status tfu_session_get_stats(const tfu_session* session, tfu_session_stats* out_stats) {
    return guard([&] {
        need(session, "session");
        need(out_stats, "out_stats");
        tfu_session_stats st{};
        session->impl->stats(&st);
        size_t n = out_stats->struct_size == 0 ? sizeof st : std::min<size_t>(out_stats->struct_size, sizeof st);
        st.struct_size = uint32_t(n);
        std::memcpy(static_cast<void*>(out_stats), &st, n);
    });
}

}  // extern "C"
