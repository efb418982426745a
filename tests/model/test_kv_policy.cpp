// The sliding-window cache policy (StreamingLLM) on stories260K: after an eviction the session's logits equal
// those of an exact f32 cache built by hand the way the policy says (sinks kept, old blocks dropped, later keys
// re-rotated to their new positions); long generation keeps the cap, the sinks and the recent tokens; bad
// settings are refused with a message.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "kv/kv_cache.h"
#include "model/decoder.h"
#include "runtime/engine.h"
#include "runtime/model.h"
#include "runtime/session.h"

namespace {

const std::string k_model = std::string(TFU_SHARED_DIR) + "/models/stories260K.gguf";

struct policy_fixture : ::testing::Test {
    void SetUp() override {
        tfu_engine_params ep = tfu_engine_params_default();
        ep.backend = TFU_BACKEND_CPU;
        ep.n_threads = 2;
        eng = std::make_unique<tfu::engine>(ep);
        mdl = std::make_unique<tfu::model>(*eng, k_model, tfu_model_params_default());
    }
    // A token sequence that is not a repetition: a fixed pseudo-random walk over the vocabulary.
    std::vector<int32_t> tokens(size_t n) const {
        std::vector<int32_t> t{1};
        uint32_t x = 12345;
        while (t.size() < n) {
            x = x * 1103515245u + 12345u;
            t.push_back(int32_t(3 + (x >> 8) % uint32_t(mdl->hp.n_vocab - 3)));
        }
        return t;
    }
    std::unique_ptr<tfu::engine> eng;
    std::unique_ptr<tfu::model> mdl;
};

double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
        den += double(b[i]) * b[i];
    }
    return std::sqrt(num / den);
}

// The reference: an exact f32 contiguous cache filled with the first n_fill tokens, then edited by hand: rows
// [B, 2B) dropped, rows after them moved down by B with their keys rotated by -B; then the rest evaluated at
// positions n_fill - B ... Returns the logits of the rest (`rotate` = false leaves the keys unrotated: the
// wrong thing, to show the comparison can tell).
std::vector<float> reference(tfu::model& m, tfu::backend& be, const std::vector<int32_t>& toks, int32_t n_fill,
                             bool rotate) {
    const tfu::hparams& hp = m.hp;
    const int32_t B = 32, E = hp.n_embd_kv();
    const int32_t n_ctx = int32_t(toks.size());
    tfu::kv_cache full(hp.n_layer, E, n_ctx, tfu::dtype::F32), cut(hp.n_layer, E, n_ctx, tfu::dtype::F32);
    std::vector<tfu::kv_layer> lf, lc;
    for (int32_t l = 0; l < hp.n_layer; ++l) {
        lf.push_back({&full.k(l), &full.v(l)});
        lc.push_back({&cut.k(l), &cut.v(l)});
    }
    tfu::decoder dec(hp, m.weights, 48);
    std::vector<float> logits(size_t(hp.n_vocab) * 48);
    tfu::kv_target tf;
    tf.contiguous = lf.data();
    for (int32_t p = 0; p < n_fill; p += 48) {
        const int32_t n = std::min(48, n_fill - p);
        dec.forward(be, tf, toks.data() + p, n, p, false, logits.data(), nullptr);
    }
    std::unique_ptr<tfu::backend> host = tfu::make_cpu_ref_backend();
    for (int32_t l = 0; l < hp.n_layer; ++l) {
        float* kf = full.k(l).ptr<float>();
        float* vf = full.v(l).ptr<float>();
        float* kc = cut.k(l).ptr<float>();
        float* vc = cut.v(l).ptr<float>();
        std::memcpy(kc, kf, sizeof(float) * size_t(B) * size_t(E));
        std::memcpy(vc, vf, sizeof(float) * size_t(B) * size_t(E));
        const size_t moved = size_t(n_fill - 2 * B) * size_t(E);
        std::memcpy(kc + size_t(B) * size_t(E), kf + size_t(2 * B) * size_t(E), sizeof(float) * moved);
        std::memcpy(vc + size_t(B) * size_t(E), vf + size_t(2 * B) * size_t(E), sizeof(float) * moved);
        if (rotate) dec.rope_shift(*host, kc + size_t(B) * size_t(E), (n_fill - 2 * B) * hp.n_head_kv, -B);
    }
    const int32_t n_rest = n_ctx - n_fill;
    std::vector<float> out(size_t(hp.n_vocab) * size_t(n_rest));
    tfu::kv_target tc;
    tc.contiguous = lc.data();
    dec.forward(be, tc, toks.data() + n_fill, n_rest, n_fill - B, true, out.data(), nullptr);
    return out;
}

TEST_F(policy_fixture, sliding_window_equals_the_hand_built_cache) {
    // n_ctx 192 = 6 blocks; the sink is block 0; filling 192 tokens and adding 20 more drops one block (1).
    const std::vector<int32_t> toks = tokens(212);
    tfu_session_params sp = tfu_session_params_default();
    sp.n_ctx = 192;
    sp.kv_policy = TFU_KV_POLICY_SLIDING_WINDOW;
    sp.kv_n_sink = 4;
    tfu::session s(*mdl, sp);
    std::vector<int32_t> head(toks.begin(), toks.begin() + 192), rest(toks.begin() + 192, toks.end());
    s.eval_all_logits(head);
    const std::vector<float> got = s.eval_all_logits(rest);
    tfu_session_stats st{};
    s.stats(&st);
    EXPECT_EQ(st.n_evictions, 1u);
    EXPECT_EQ(st.n_evicted_tokens, 32u);
    EXPECT_EQ(st.n_past, 212 - 32);
    EXPECT_EQ(st.kv_capacity, 192);
    std::vector<int32_t> want_tokens(toks.begin(), toks.begin() + 32);
    want_tokens.insert(want_tokens.end(), toks.begin() + 64, toks.end());
    EXPECT_EQ(s.tokens(), want_tokens) << "sinks and recent tokens kept, block 1 dropped";

    const std::vector<float> ref = reference(*mdl, eng->device(), toks, 192, true);
    const std::vector<float> wrong = reference(*mdl, eng->device(), toks, 192, false);
    const double e = rel_l2(got, ref), e_wrong = rel_l2(got, wrong);
    std::printf("sliding window vs hand-built f32 cache: rel L2 %.2e (unrotated keys: %.2e)\n", e, e_wrong);
    EXPECT_LT(e, 1e-3) << "f16 cache against the exact f32 reference";
    EXPECT_GT(e_wrong, 10 * e) << "the check must tell rotated keys from unrotated ones";
}

TEST_F(policy_fixture, long_generation_keeps_cap_sinks_and_recent_tokens) {
    for (tfu_kv_type kt : {TFU_KV_F16, TFU_KV_Q4}) {
        tfu_session_params sp = tfu_session_params_default();
        sp.n_ctx = 160;
        sp.n_batch = 64;
        sp.kv_policy = TFU_KV_POLICY_SLIDING_WINDOW;
        sp.kv_type_k = kt;
        sp.kv_type_v = kt;
        sp.sampler.temperature = 0.8f;
        sp.sampler.seed = 7;
        tfu::session s(*mdl, sp);
        const std::vector<int32_t> prompt = tokens(100);
        s.add_tokens(prompt.data(), prompt.size());
        std::vector<int32_t> all = prompt;
        for (int i = 0; i < 400; ++i) {
            all.push_back(s.sample());
            s.eval();
            tfu_session_stats st{};
            s.stats(&st);
            ASSERT_LE(st.n_past, 160) << "cap exceeded at step " << i;
            const std::vector<int32_t>& kept = s.tokens();
            ASSERT_EQ(size_t(st.n_past), kept.size());
            ASSERT_TRUE(std::equal(kept.begin(), kept.begin() + 32, all.begin())) << "sinks lost at step " << i;
            // The newest tokens are the last ones produced, in order.
            const size_t recent = std::min<size_t>(kept.size() - 32, 64);
            ASSERT_TRUE(std::equal(kept.end() - long(recent), kept.end(), all.end() - long(recent)))
                << "recent tokens lost at step " << i;
        }
        tfu_session_stats st{};
        s.stats(&st);
        EXPECT_GE(st.n_evictions, 9u);
        EXPECT_EQ(st.n_evicted_tokens + uint64_t(st.n_past), all.size());
        EXPECT_EQ(uint64_t(st.kv_blocks), uint64_t((st.n_past + 31) / 32));
    }
}

TEST_F(policy_fixture, settings_are_checked) {
    tfu_session_params sp = tfu_session_params_default();
    sp.n_ctx = 128;  // sinks (1 block) + 4 blocks = 160 needed
    sp.kv_policy = TFU_KV_POLICY_SLIDING_WINDOW;
    try {
        tfu::session s(*mdl, sp);
        ADD_FAILURE() << "a window too small for the policy was accepted";
    } catch (const tfu::error& e) {
        EXPECT_EQ(e.status(), TFU_STATUS_INVALID_ARGUMENT);
        EXPECT_NE(std::string(e.what()).find("at least 160"), std::string::npos) << e.what();
    }
    sp.kv_policy = tfu_kv_policy(9);
    EXPECT_THROW(tfu::session(*mdl, sp), tfu::error);
    sp.kv_policy = TFU_KV_POLICY_REFUSE;
    sp.kv_n_sink = -1;
    EXPECT_THROW(tfu::session(*mdl, sp), tfu::error);
    sp.kv_n_sink = 4;
    // A byte cap: 2 blocks of stories260K in f16 (640 bytes per token) hold 64 tokens.
    sp.n_ctx = 512;
    sp.kv_cap_bytes = 2 * 32 * 640 + 100;
    {
        tfu::session s(*mdl, sp);
        tfu_session_stats st{};
        s.stats(&st);
        EXPECT_EQ(st.kv_capacity, 64);
        const std::vector<int32_t> t = tokens(65);
        EXPECT_THROW(s.add_tokens(t.data(), t.size()), tfu::error);
        EXPECT_NO_THROW(s.add_tokens(t.data(), 64));
    }
    sp.kv_cap_bytes = 100;
    EXPECT_THROW(tfu::session(*mdl, sp), tfu::error);
}

}  // namespace
