// Greedy decoding on a device backend with ARGMAX (model/decoder.h, runtime/session.cpp): the tokens and the
// logits equal those of the full-logits path (TFU_DEVICE_ARGMAX=0), alone and in batched steps
// (runtime/session_batch.cpp: each session's logits kept on the device in its own decoder), on stories260K with
// every GPU backend present (Vulkan runs on lavapipe in CI; CUDA skips without a GPU), and the path is taken only
// where it may be.
#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/stories_fixture.h"
#include "runtime/session.h"

namespace {

using tfu::test::k_stories;

struct device_fixture {
    explicit device_fixture(tfu_backend_kind kind) {
        tfu_engine_params ep = tfu_engine_params_default();
        ep.backend = kind;
        ep.n_threads = 2;
        eng = std::make_unique<tfu::engine>(ep);
        mdl = std::make_unique<tfu::model>(*eng, k_stories, tfu_model_params_default());
    }
    // A session on the contiguous f16 cache (what device backends use); device_argmax false sets
    // TFU_DEVICE_ARGMAX=0 while it is made (the session reads it once).
    std::unique_ptr<tfu::session> make(bool device_argmax, float temperature = 0.0f, float repeat_penalty = 1.0f) {
        tfu_session_params sp = tfu_session_params_default();
        sp.n_ctx = 256;
        sp.n_batch = 32;
        sp.sampler.temperature = temperature;
        sp.sampler.repeat_penalty = repeat_penalty;
        if (!device_argmax) setenv("TFU_DEVICE_ARGMAX", "0", 1);
        std::unique_ptr<tfu::session> s;
        try {
            s = std::make_unique<tfu::session>(*mdl, sp, tfu::dtype::F16);
        } catch (...) {
            unsetenv("TFU_DEVICE_ARGMAX");
            throw;
        }
        unsetenv("TFU_DEVICE_ARGMAX");
        return s;
    }
    std::unique_ptr<tfu::engine> eng;
    std::unique_ptr<tfu::model> mdl;
};

class device_argmax : public ::testing::TestWithParam<tfu_backend_kind> {
protected:
    void SetUp() override {
        try {
            fx = std::make_unique<device_fixture>(GetParam());
        } catch (const tfu::error& e) {
            if (e.status() == TFU_STATUS_BACKEND_UNAVAILABLE) GTEST_SKIP() << e.what();
            throw;
        }
    }
    std::unique_ptr<device_fixture> fx;
};

int32_t host_argmax(const std::vector<float>& l) {
    int32_t best = 0;
    for (int32_t i = 1; i < int32_t(l.size()); ++i)
        if (l[size_t(i)] > l[size_t(best)]) best = i;
    return best;
}

constexpr int k_steps = 40;

// tfu_session_sample's loop (sample, then the next sample evaluates it): identical tokens every step; the device
// path leaves the logits on the device, and logits() then downloads the same logits as the full path's.
TEST_P(device_argmax, sample_matches_full_logits_path) {
    auto on = fx->make(true), off = fx->make(false);
    for (auto* s : {on.get(), off.get()}) s->add_text("Once upon a time", true);
    for (int step = 0; step < k_steps; ++step) {
        const int32_t a = on->sample(), b = off->sample();
        ASSERT_EQ(a, b) << "step " << step;
        EXPECT_TRUE(on->logits_on_device()) << "step " << step << ": the device path was not taken";
        EXPECT_FALSE(off->logits_on_device());
        if (step % 8 == 3) {  // logits after a device step: downloaded on demand, equal to the full path's
            const std::vector<float>& la = on->logits();
            const std::vector<float>& lb = off->logits();
            EXPECT_FALSE(on->logits_on_device());
            EXPECT_LE(tfu::test::rel_l2(la, lb), 1e-6) << "step " << step;
            EXPECT_EQ(host_argmax(la), a) << "step " << step;
        }
    }
    // The next pass after logits() were fetched takes the device path again.
    EXPECT_EQ(on->sample(), off->sample());
    EXPECT_TRUE(on->logits_on_device());
    // eval_logits after a device step: the same logits on both, and the kept ones are replaced.
    const int32_t next[3] = {on->tokens().back(), 42, 7};
    const size_t V = size_t(fx->mdl->hp.n_vocab);
    std::vector<float> ea(3 * V), eb(3 * V);
    on->eval_logits(next, 3, ea.data());
    off->eval_logits(next, 3, eb.data());
    EXPECT_LE(tfu::test::rel_l2(ea, eb), 1e-6);
    EXPECT_FALSE(on->logits_on_device());
    EXPECT_LE(tfu::test::rel_l2(on->logits(), off->logits()), 1e-6);
    EXPECT_EQ(on->sample(), off->sample());
}

// generate(): the same tokens over k_steps tokens with the device path on and off, and the same last logits
// (fetched from the device after generate returns).
TEST_P(device_argmax, generate_matches_full_logits_path) {
    std::vector<int32_t> toks[2];
    std::unique_ptr<tfu::session> ss[2];
    for (int i = 0; i < 2; ++i) {
        ss[i] = fx->make(i == 0);
        tfu::session& s = *ss[i];
        s.add_text("Once upon a time", true);
        tfu_generate_params gp = tfu_generate_params_default();
        gp.max_tokens = k_steps;
        gp.render_special = true;  // do not stop at an end-of-text token: k_steps tokens either way
        gp.on_token = [](const char*, size_t, tfu_token t, void* ud) {
            static_cast<std::vector<int32_t>*>(ud)->push_back(t);
            return true;
        };
        gp.user_data = &toks[i];
        tfu_generate_result res{};
        s.generate(gp, &res);
        EXPECT_EQ(res.n_generated, k_steps);
        EXPECT_EQ(s.logits_on_device(), i == 0);
    }
    EXPECT_GE(toks[0].size(), size_t(k_steps) / 2);  // the callback sees the tokens that complete a character
    EXPECT_EQ(toks[0], toks[1]);
    const std::vector<float>& la = ss[0]->logits();
    const std::vector<float>& lb = ss[1]->logits();
    EXPECT_LE(tfu::test::rel_l2(la, lb), 1e-6);
    EXPECT_EQ(host_argmax(la), host_argmax(lb));
    EXPECT_EQ(ss[0]->sample(), ss[1]->sample());  // the next step, on both paths
}

// Batched steps of greedy sessions (tfu_session_decode_batch): ARGMAX on the device and each session's logits
// copied into its own decoder. The same tokens as the same sessions on the full-logits path, batched alike; the
// same logits when asked for, also those of a session left out of the batches since (the model's batch decoder
// has run again meanwhile); a left-out session goes on alone and joins the batch again.
TEST_P(device_argmax, batched_steps_match_full_logits_path) {
    constexpr size_t n = 3;
    const char* prompts[n] = {"Once upon a time", "The little dog", "Lily and Tom went"};
    std::unique_ptr<tfu::session> on[n], off[n];
    tfu::session* on_p[n];
    tfu::session* off_p[n];
    for (size_t i = 0; i < n; ++i) {
        on[i] = fx->make(true);
        off[i] = fx->make(false);
        on[i]->add_text(prompts[i], true);
        off[i]->add_text(prompts[i], true);
        on_p[i] = on[i].get();
        off_p[i] = off[i].get();
    }
    for (int step = 0; step < 24; ++step) {
        for (size_t i = 0; i < n; ++i) {  // the left-out session's pending token is evaluated alone here
            const int32_t a = on[i]->sample(), b = off[i]->sample();
            ASSERT_EQ(a, b) << "step " << step << " session " << i;
        }
        const size_t nb = step % 4 == 3 ? n - 1 : n;  // now and then a batch without the last session
        tfu::session::decode_batch(on_p, nullptr, nb);
        tfu::session::decode_batch(off_p, nullptr, nb);
        for (size_t i = 0; i < nb; ++i) {
            EXPECT_TRUE(on[i]->logits_on_device()) << "step " << step << ": the device path was not taken";
            EXPECT_FALSE(off[i]->logits_on_device());
        }
        if (nb < n || step % 6 == 1)
            for (size_t i = 0; i < n; ++i) {
                const std::vector<float>& la = on[i]->logits();
                const std::vector<float>& lb = off[i]->logits();
                EXPECT_LE(tfu::test::rel_l2(la, lb), 1e-6) << "step " << step << " session " << i;
                EXPECT_EQ(host_argmax(la), host_argmax(lb)) << "step " << step << " session " << i;
            }
    }
}

// Samplers that need the full logits never take the device path.
TEST_P(device_argmax, not_for_samplers_that_need_logits) {
    auto penalised = fx->make(true, 0.0f, 1.3f);
    auto warm = fx->make(true, 0.8f);
    for (auto* s : {penalised.get(), warm.get()}) {
        s->add_text("Once upon a time", true);
        for (int step = 0; step < 4; ++step) {
            s->sample();
            EXPECT_FALSE(s->logits_on_device());
        }
    }
}

INSTANTIATE_TEST_SUITE_P(gpu, device_argmax, ::testing::Values(TFU_BACKEND_CUDA, TFU_BACKEND_VULKAN),
                         [](const auto& p) { return p.param == TFU_BACKEND_CUDA ? "cuda" : "vulkan"; });

// The CPU backends read host logits directly: no device path.
TEST(device_argmax_cpu, host_backend_keeps_host_logits) {
    device_fixture fx(TFU_BACKEND_CPU);
    auto s = fx.make(true);
    s->add_text("Once upon a time", true);
    s->sample();
    s->sample();
    EXPECT_FALSE(s->logits_on_device());
}

}  // namespace
