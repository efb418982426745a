// The sliding-window cache policy (StreamingLLM) on stories260K: after an eviction the session's logits equal
// those of an exact f32 cache built by hand the way the policy says (sinks kept, old blocks dropped, later keys
// re-rotated to their new positions); long generation keeps the cap, the sinks and the recent tokens; bad
// settings are refused with a message.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "kv/kv_cache.h"
#include "model/decoder.h"
#include "model/stories_fixture.h"
#include "runtime/engine.h"
#include "runtime/model.h"
#include "runtime/session.h"

namespace {

const std::string& k_model = tfu::test::k_stories;

struct policy_fixture : tfu::test::stories_fixture {
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
};

using tfu::test::rel_l2;

// The reference: an exact f32 contiguous cache filled with the first n_fill tokens, then edited by hand the way a
// policy says: new row q is the mean of old rows groups[q] with each key first rotated from its old position to q
// (`rotate` = false skips the rotation: the wrong thing, to show the comparison can tell); then the rest of the
// tokens are evaluated after the edited rows. Returns the logits of the rest.
std::vector<float> reference(tfu::model& m, tfu::backend& be, const std::vector<int32_t>& toks, int32_t n_fill,
                             const std::vector<std::pair<int32_t, int32_t>>& groups, bool rotate) {
    const tfu::hparams& hp = m.hp;
    const int32_t E = hp.n_embd_kv(), hd = hp.head_dim, nkv = hp.n_head_kv;
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
    std::vector<float> row(static_cast<size_t>(E));
    for (int32_t l = 0; l < hp.n_layer; ++l) {
        const float* kf = full.k(l).ptr<float>();
        const float* vf = full.v(l).ptr<float>();
        float* kc = cut.k(l).ptr<float>();
        float* vc = cut.v(l).ptr<float>();
        for (size_t q = 0; q < groups.size(); ++q) {
            const auto [a, e] = groups[q];
            float* ko = kc + q * size_t(E);
            float* vo = vc + q * size_t(E);
            std::fill(ko, ko + E, 0.f);
            std::fill(vo, vo + E, 0.f);
            for (int32_t r = a; r < e; ++r) {
                std::copy(kf + size_t(r) * size_t(E), kf + size_t(r + 1) * size_t(E), row.begin());
                const std::vector<int32_t> deltas(size_t(nkv), int32_t(q) - r);
                if (rotate) dec.rope_shift(*host, row.data(), deltas.data(), nkv);
                for (int32_t c = 0; c < E; ++c) {
                    ko[c] += row[size_t(c)] / float(e - a);
                    vo[c] += vf[size_t(r) * size_t(E) + size_t(c)] / float(e - a);
                }
            }
        }
    }
    (void)hd;
    const int32_t n_rest = n_ctx - n_fill;
    std::vector<float> out(size_t(hp.n_vocab) * size_t(n_rest));
    tfu::kv_target tc;
    tc.contiguous = lc.data();
    dec.forward(be, tc, toks.data() + n_fill, n_rest, int32_t(groups.size()), true, out.data(), nullptr);
    return out;
}

// The groups a session's cache holds now, from its origins: slot q covers [origin[q], origin[q + 1]) when the
// policy pools (chunk summary), else just origin[q]; only slots filled before `n_fill`.
std::vector<std::pair<int32_t, int32_t>> groups_of(const tfu::session& s, int32_t n_fill, bool pooled) {
    std::vector<std::pair<int32_t, int32_t>> g;
    const std::vector<int64_t>& o = s.origins();
    for (size_t q = 0; q < o.size() && o[q] < n_fill; ++q) {
        const int32_t a = int32_t(o[q]);
        const int32_t e = pooled ? int32_t(q + 1 < o.size() ? std::min<int64_t>(o[q + 1], n_fill) : n_fill) : a + 1;
        g.push_back({a, e});
    }
    return g;
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

    const auto groups = groups_of(s, 192, false);
    ASSERT_EQ(groups.size(), 160u);
    const std::vector<float> ref = reference(*mdl, eng->device(), toks, 192, groups, true);
    const std::vector<float> wrong = reference(*mdl, eng->device(), toks, 192, groups, false);
    const double e = rel_l2(got, ref), e_wrong = rel_l2(got, wrong);
    std::printf("sliding window vs hand-built f32 cache: rel L2 %.2e (unrotated keys: %.2e)\n", e, e_wrong);
    EXPECT_LT(e, 1e-3) << "f16 cache against the exact f32 reference";
    EXPECT_GT(e_wrong, 10 * e) << "the check must tell rotated keys from unrotated ones";
}

// H2O and chunk summary: the same check against a cache edited by hand from the session's origins.
TEST_F(policy_fixture, token_policies_equal_the_hand_built_cache) {
    for (tfu_kv_policy pol : {TFU_KV_POLICY_H2O, TFU_KV_POLICY_CHUNK_SUMMARY}) {
        SCOPED_TRACE(int(pol));
        const std::vector<int32_t> toks = tokens(212);
        tfu_session_params sp = tfu_session_params_default();
        sp.n_ctx = 192;
        sp.kv_policy = pol;
        sp.kv_n_sink = 4;
        sp.kv_n_recent = 40;
        sp.kv_chunk = 6;
        tfu::session s(*mdl, sp);
        s.eval_all_logits(std::vector<int32_t>(toks.begin(), toks.begin() + 192));
        const std::vector<float> got = s.eval_all_logits(std::vector<int32_t>(toks.begin() + 192, toks.end()));
        tfu_session_stats st{};
        s.stats(&st);
        EXPECT_EQ(st.n_evictions, 1u);
        EXPECT_GE(st.n_evicted_tokens, 48u) << "a quarter of the cache";
        const std::vector<int64_t>& o = s.origins();
        ASSERT_EQ(o.size(), size_t(st.n_past));
        for (int i = 0; i < 4; ++i) EXPECT_EQ(o[size_t(i)], i) << "sink " << i;
        for (int i = 0; i < 60; ++i) EXPECT_EQ(o[o.size() - 1 - size_t(i)], 211 - i) << "recent " << i;
        const bool pooled = pol == TFU_KV_POLICY_CHUNK_SUMMARY;
        const auto groups = groups_of(s, 192, pooled);
        const std::vector<float> ref = reference(*mdl, eng->device(), toks, 192, groups, true);
        const std::vector<float> wrong = reference(*mdl, eng->device(), toks, 192, groups, false);
        const double e = rel_l2(got, ref), e_wrong = rel_l2(got, wrong);
        std::printf("%s vs hand-built f32 cache: rel L2 %.2e (unrotated keys: %.2e)\n", pooled ? "chunk summary" : "H2O",
                    e, e_wrong);
        EXPECT_LT(e, 1e-3);
        EXPECT_GT(e_wrong, 10 * e);
    }
}

// H2O's scores are the attention's own probabilities: each query's sum to 1 per layer and head, so after n
// tokens they add up to n x layers x heads; and the eviction drops exactly the lowest-scored tokens between the
// sinks and the recent ones.
TEST_F(policy_fixture, h2o_drops_the_lowest_attention_mass) {
    tfu_session_params sp = tfu_session_params_default();
    sp.n_ctx = 192;
    sp.kv_policy = TFU_KV_POLICY_H2O;
    sp.kv_n_recent = 40;
    tfu::session s(*mdl, sp);
    const std::vector<int32_t> t = tokens(212);
    s.eval_all_logits(std::vector<int32_t>(t.begin(), t.begin() + 192));
    const std::vector<double> sc = s.attention_scores();
    ASSERT_EQ(sc.size(), 192u);
    double sum = 0;
    for (double x : sc) sum += x;
    const double want = 192.0 * mdl->hp.n_layer * mdl->hp.n_head;
    EXPECT_NEAR(sum, want, want * 1e-9) << "probabilities of every query, layer and head";
    // The eviction before the next 20 tokens drops max(20, 192 / 4) = 48 of positions [4, 152), lowest first.
    std::vector<int32_t> cand;
    for (int32_t p = 4; p < 152; ++p) cand.push_back(p);
    std::stable_sort(cand.begin(), cand.end(), [&](int32_t a, int32_t b) { return sc[size_t(a)] < sc[size_t(b)]; });
    std::vector<int64_t> kept;
    for (int32_t p = 0; p < 212; ++p)
        if (std::find(cand.begin(), cand.begin() + 48, p) == cand.begin() + 48) kept.push_back(p);
    s.eval_all_logits(std::vector<int32_t>(t.begin() + 192, t.end()));
    EXPECT_EQ(s.origins(), kept);
}

TEST_F(policy_fixture, long_generation_keeps_cap_sinks_and_recent_tokens) {
    struct run {
        tfu_kv_policy policy;
        tfu_kv_type type;
        int32_t sinks;   // origins 0 .. sinks-1 always present
        int32_t recent;  // the newest `recent` origins always present
    };
    // The window keeps whole blocks: 32 sink tokens and at least the batch after the dropped quarter.
    const run runs[] = {{TFU_KV_POLICY_SLIDING_WINDOW, TFU_KV_F16, 32, 64},
                        {TFU_KV_POLICY_SLIDING_WINDOW, TFU_KV_Q4, 32, 64},
                        {TFU_KV_POLICY_H2O, TFU_KV_Q8, 4, 40},
                        {TFU_KV_POLICY_CHUNK_SUMMARY, TFU_KV_Q4, 4, 40}};
    for (const run& r : runs) {
        SCOPED_TRACE(std::to_string(int(r.policy)) + " " + std::to_string(int(r.type)));
        tfu_session_params sp = tfu_session_params_default();
        sp.n_ctx = 160;
        sp.n_batch = 64;
        sp.kv_policy = r.policy;
        sp.kv_type_k = r.type;
        sp.kv_type_v = r.type;
        sp.kv_n_recent = 40;
        sp.sampler.temperature = 0.8f;
        sp.sampler.seed = 7;
        tfu::session s(*mdl, sp);
        const std::vector<int32_t> prompt = tokens(100);
        s.add_tokens(prompt.data(), prompt.size());
        std::vector<int32_t> all = prompt;
        for (int i = 0; i < 300; ++i) {
            all.push_back(s.sample());
            s.eval();
            tfu_session_stats st{};
            s.stats(&st);
            ASSERT_LE(st.n_past, 160) << "cap exceeded at step " << i;
            const std::vector<int64_t>& o = s.origins();
            const std::vector<int32_t>& kept = s.tokens();
            ASSERT_EQ(size_t(st.n_past), o.size());
            for (int32_t k = 0; k < r.sinks; ++k) ASSERT_EQ(o[size_t(k)], k) << "sink lost at step " << i;
            const int64_t n_all = int64_t(all.size());
            for (int32_t k = 0; k < std::min<int32_t>(r.recent, int32_t(o.size()) - r.sinks); ++k)
                ASSERT_EQ(o[o.size() - 1 - size_t(k)], n_all - 1 - k) << "recent token lost at step " << i;
            for (size_t q = 0; q < o.size(); ++q) ASSERT_EQ(kept[q], all[size_t(o[q])]) << "token/origin mismatch";
        }
        tfu_session_stats st{};
        s.stats(&st);
        EXPECT_GE(st.n_evictions, 5u);
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
