// The paged KV cache through block maps (runtime/paged_kv.h: the KV_STORE_BLOCKS and ATTENTION_BLOCKS ops), which
// sessions on a GPU take for the quantized formats: on every backend that runs the block ops (CUDA where a GPU is;
// the CPU with TFU_KV_BLOCK_OPS=1, the device's code path over host memory) stories260K's logits equal those of the
// host-written paged cache of the same formats on the CPU (bit for bit on the CPU; within a bound on the GPU,
// printed), alone, in batched steps, after a prefix shared from another session and after a session file round
// trip; a device pool's copy-on-write copies the bytes; where the ops are missing (Vulkan) or the format is q4 keys,
// a session is refused with a message; the sliding window runs there like on the host.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/stories_fixture.h"
#include "runtime/session.h"

namespace {

using tfu::test::k_stories;
using tfu::test::rel_l2;

// BOS + "Once upon a time" and the golden greedy tokens after it, then again: 100 tokens, three full blocks of 32.
std::vector<int32_t> prompt_tokens() {
    const std::vector<int32_t> t = {1,   403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317,
                                    426, 338, 401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282, 295,
                                    433, 426, 385, 328, 432, 358, 394, 261, 370, 432, 352, 266, 268, 388, 426};
    std::vector<int32_t> out = t;
    out.insert(out.end(), t.begin() + 1, t.end());
    out.insert(out.end(), t.begin() + 1, t.begin() + 12);
    return out;
}

struct engine_model {
    explicit engine_model(tfu_backend_kind kind) {
        tfu_engine_params ep = tfu_engine_params_default();
        ep.backend = kind;
        ep.n_threads = 2;
        eng = std::make_unique<tfu::engine>(ep);
        mdl = std::make_unique<tfu::model>(*eng, k_stories, tfu_model_params_default());
    }
    // A paged session of these formats; block_ops: with TFU_KV_BLOCK_OPS=1 while it is made (read once, and only
    // on host backends: a device backend always takes the block ops).
    std::unique_ptr<tfu::session> make(tfu_kv_type k, tfu_kv_type v, bool block_ops, int32_t n_batch = 45,
                                       tfu_kv_policy policy = TFU_KV_POLICY_REFUSE, int32_t n_ctx = 256) {
        tfu_session_params sp = tfu_session_params_default();
        sp.n_ctx = n_ctx;
        sp.kv_policy = policy;
        sp.n_batch = n_batch;
        sp.kv_type_k = k;
        sp.kv_type_v = v;
        sp.sampler.temperature = 0.0f;
        if (block_ops) setenv("TFU_KV_BLOCK_OPS", "1", 1);
        std::unique_ptr<tfu::session> s;
        try {
            s = std::make_unique<tfu::session>(*mdl, sp);
        } catch (...) {
            unsetenv("TFU_KV_BLOCK_OPS");
            throw;
        }
        unsetenv("TFU_KV_BLOCK_OPS");
        return s;
    }
    std::unique_ptr<tfu::engine> eng;
    std::unique_ptr<tfu::model> mdl;
};

struct kv_pair {
    tfu_kv_type k, v;
    const char* name;
};
const kv_pair k_pairs[] = {{TFU_KV_Q8, TFU_KV_Q8, "q8/q8"},   {TFU_KV_Q8, TFU_KV_Q4, "q8/q4"},
                           {TFU_KV_F16, TFU_KV_Q4, "f16/q4"}, {TFU_KV_BF16, TFU_KV_Q8, "bf16/q8"},
                           {TFU_KV_F16, TFU_KV_F16, "f16/f16"}};

// Greedy steps of two sessions fed the same prompt (none: they go on from where they are): the same token at every
// step (asserted), then a last eval.
void greedy_together(tfu::session& a, tfu::session& b, const std::vector<int32_t>& prompt, int steps,
                     const std::string& what) {
    a.add_tokens(prompt.data(), prompt.size());
    b.add_tokens(prompt.data(), prompt.size());
    for (int step = 0; step < steps; ++step) {
        a.eval();
        b.eval();
        const int32_t ta = a.sample(), tb = b.sample();
        ASSERT_EQ(tb, ta) << what << " step " << step;
        a.add_tokens(&ta, 1);
        b.add_tokens(&tb, 1);
    }
    a.eval();
    b.eval();
}

class kv_blocks : public ::testing::TestWithParam<tfu_backend_kind> {
protected:
    void SetUp() override {
        try {
            dev = std::make_unique<engine_model>(GetParam());
        } catch (const tfu::error& e) {
            if (e.status() == TFU_STATUS_BACKEND_UNAVAILABLE) GTEST_SKIP() << e.what();
            throw;
        }
        host = std::make_unique<engine_model>(TFU_BACKEND_CPU);
    }
    bool on_cpu() const { return GetParam() == TFU_BACKEND_CPU; }
    // The CPU runs the same kernels on the same bytes both ways: equal. A GPU differs from the CPU by its f32
    // arithmetic (and so, rarely, by a quantization code at a rounding boundary); measured on the H100: printed.
    double bound() const { return on_cpu() ? 0.0 : 1e-3; }
    std::unique_ptr<engine_model> dev, host;
};

// Every position's logits over 100 tokens, in one batch and in batches of 7 (positions straddle the blocks).
TEST_P(kv_blocks, logits_equal_host_paged_cache) {
    const std::vector<int32_t> toks = prompt_tokens();
    for (const kv_pair& p : k_pairs)
        for (int32_t nb : {45, 7}) {
            std::vector<float> want = host->make(p.k, p.v, false, nb)->eval_all_logits(toks);
            std::vector<float> got = dev->make(p.k, p.v, true, nb)->eval_all_logits(toks);
            ASSERT_EQ(got.size(), want.size());
            const double e = rel_l2(got, want);
            std::printf("%s K/V %s n_batch %d: rel L2 vs the host-written cache %.3e\n", dev->eng->backend_name(),
                        p.name, nb, e);
            EXPECT_LE(e, bound()) << p.name << " n_batch " << nb;
        }
}

// Greedy steps one token at a time after the prompt: the same tokens and last logits as the host-written cache.
TEST_P(kv_blocks, greedy_steps_equal_host_paged_cache) {
    const std::vector<int32_t> toks = prompt_tokens();
    for (const kv_pair& p : k_pairs) {
        auto a = host->make(p.k, p.v, false);
        auto b = dev->make(p.k, p.v, true);
        greedy_together(*a, *b, toks, 40, p.name);
        if (HasFatalFailure()) return;
        const double e = rel_l2(b->logits(), a->logits());
        std::printf("%s K/V %s: 40 greedy steps, last logits rel L2 %.3e\n", dev->eng->backend_name(), p.name, e);
        EXPECT_LE(e, bound()) << p.name;
    }
}

// Three sessions decoded in batched steps (the model's batch decoder writes each one's own cache) give the tokens
// and logits of each decoded alone.
TEST_P(kv_blocks, batched_steps_equal_alone) {
    const std::vector<int32_t> toks = prompt_tokens();
    std::vector<std::unique_ptr<tfu::session>> alone, batched;
    for (int i = 0; i < 3; ++i) {
        const size_t n = 20 + size_t(i) * 31;  // different lengths: different blocks and positions per column
        for (auto* list : {&alone, &batched}) {
            list->push_back(dev->make(TFU_KV_Q8, TFU_KV_Q4, true));
            list->back()->add_tokens(toks.data(), n);
            list->back()->eval();
        }
    }
    for (int step = 0; step < 24; ++step) {
        std::vector<int32_t> picks;
        std::vector<tfu::session*> ss;
        for (int i = 0; i < 3; ++i) {
            const int32_t t = alone[size_t(i)]->sample();
            ASSERT_EQ(batched[size_t(i)]->sample(), t) << "session " << i << " step " << step;
            alone[size_t(i)]->add_tokens(&t, 1);
            alone[size_t(i)]->eval();
            picks.push_back(t);
            ss.push_back(batched[size_t(i)].get());
        }
        tfu::session::decode_batch(ss.data(), picks.data(), ss.size());
    }
    for (int i = 0; i < 3; ++i) {
        const double e = rel_l2(batched[size_t(i)]->logits(), alone[size_t(i)]->logits());
        std::printf("%s batched q8/q4 session %d: rel L2 vs alone %.3e\n", dev->eng->backend_name(), i, e);
        EXPECT_LE(e, on_cpu() ? 1e-5 : 1e-3) << "session " << i;
    }
}

// A second session with the same prompt adopts the first one's published blocks (prefix sharing) and its logits
// equal the first one's.
TEST_P(kv_blocks, shared_prefix_equals_own_prefill) {
    const std::vector<int32_t> toks = prompt_tokens();
    auto a = dev->make(TFU_KV_Q8, TFU_KV_Q8, true);
    a->add_tokens(toks.data(), toks.size());
    a->eval();
    auto b = dev->make(TFU_KV_Q8, TFU_KV_Q8, true);
    b->add_tokens(toks.data(), toks.size());
    b->eval();
    tfu_session_stats st = {};
    st.struct_size = sizeof st;
    b->stats(&st);
    EXPECT_EQ(st.n_prefix_reused, 96u);  // three full blocks of 32
    EXPECT_LE(rel_l2(b->logits(), a->logits()), on_cpu() ? 0.0 : 1e-4);
    greedy_together(*a, *b, {}, 10, "after the shared prefix");  // b's own blocks after the shared ones
}

// Save, load into a fresh session, and both continue alike (the blocks come back through download and go up
// through upload on a device).
TEST_P(kv_blocks, session_file_round_trip) {
    const std::vector<int32_t> toks = prompt_tokens();
    auto a = dev->make(TFU_KV_Q8, TFU_KV_Q4, true);
    a->add_tokens(toks.data(), 70);
    a->eval();
    const std::string path = testing::TempDir() + "/kv_blocks_session.bin";
    a->save(path);
    auto b = dev->make(TFU_KV_Q8, TFU_KV_Q4, true);
    b->load(path);
    std::remove(path.c_str());
    greedy_together(*a, *b, {}, 20, "after the load");
    if (HasFatalFailure()) return;
    EXPECT_LE(rel_l2(b->logits(), a->logits()), 0.0);  // the same bytes and the same kernels
}

// The sliding window (the policy a device session may take): a 192-token cache, a 100-token prompt and 200 greedy
// steps drop a block ten times; each drop re-rotates the later keys through host copies of their blocks. Tokens
// and logits equal those of the host-written cache under the same policy.
TEST_P(kv_blocks, sliding_window_equals_host_paged_cache) {
    const std::vector<int32_t> toks = prompt_tokens();
    for (const kv_pair& p : {k_pairs[0], k_pairs[4]}) {  // q8/q8; f16/f16 (paged on a device too, under a policy)
        auto a = host->make(p.k, p.v, false, 32, TFU_KV_POLICY_SLIDING_WINDOW, 192);
        auto b = dev->make(p.k, p.v, true, 32, TFU_KV_POLICY_SLIDING_WINDOW, 192);
        greedy_together(*a, *b, toks, 200, p.name);
        if (HasFatalFailure()) return;
        tfu_session_stats sa = {}, sb = {};
        sa.struct_size = sb.struct_size = sizeof sa;
        a->stats(&sa);
        b->stats(&sb);
        EXPECT_EQ(sb.n_evictions, sa.n_evictions);
        EXPECT_GE(sb.n_evictions, 3u) << p.name;
        const double e = rel_l2(b->logits(), a->logits());
        std::printf("%s K/V %s sliding window: %llu evictions, last logits rel L2 %.3e\n", dev->eng->backend_name(),
                    p.name, (unsigned long long)sb.n_evictions, e);
        EXPECT_LE(e, bound()) << p.name;
    }
}

// A device pool's make_writable copies a shared block's bytes (backend::copy) and leaves the original as it was.
TEST_P(kv_blocks, pool_copy_on_write) {
    tfu::backend& be = dev->eng->device();
    if (be.host_memory()) GTEST_SKIP() << "host pools are tested in test_kv_pool";
    tfu::kv_pool_params pp;
    pp.n_layer = 2;
    pp.n_head_kv = 2;
    pp.head_dim = 64;
    pp.k_format = tfu::kv_format::q8;
    pp.v_format = tfu::kv_format::q4;
    pp.chunk_blocks = 2;
    pp.device = &be;
    tfu::kv_block_pool pool(pp);
    const int32_t id = pool.allocate();
    std::vector<uint8_t> bytes(pool.block_bytes());
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = uint8_t(i * 131 + 7);
    be.upload(pool.data(id), bytes.data(), bytes.size());
    pool.retain(id);  // a second holder
    const int32_t mine = pool.make_writable(id);
    ASSERT_NE(mine, id);
    std::vector<uint8_t> copy(bytes.size()), orig(bytes.size());
    be.download(copy.data(), pool.data(mine), copy.size());
    be.download(orig.data(), pool.data(id), orig.size());
    EXPECT_EQ(copy, bytes);
    EXPECT_EQ(orig, bytes);
    pool.release(mine);
    pool.release(id);
}

// What the block ops cannot hold is refused with a message when the session is made: q4 keys and the H2O and
// chunk-summary policies on a device, and every quantized format on a device whose module lacks the ops.
TEST_P(kv_blocks, refused_where_unsupported) {
    if (dev->eng->device().host_memory()) GTEST_SKIP() << "host backends take every format";
    try {
        dev->make(TFU_KV_Q4, TFU_KV_Q4, true);
        ADD_FAILURE() << "q4 keys accepted on " << dev->eng->backend_name();
    } catch (const tfu::error& e) {
        EXPECT_EQ(e.status(), TFU_STATUS_UNSUPPORTED);
        EXPECT_NE(std::string(e.what()).find("q4 keys"), std::string::npos) << e.what();
    }
    for (tfu_kv_policy pol : {TFU_KV_POLICY_H2O, TFU_KV_POLICY_CHUNK_SUMMARY}) {
        try {
            dev->make(TFU_KV_Q8, TFU_KV_Q8, true, 32, pol, 128);
            ADD_FAILURE() << "policy " << int(pol) << " accepted on " << dev->eng->backend_name();
        } catch (const tfu::error& e) {
            EXPECT_EQ(e.status(), TFU_STATUS_UNSUPPORTED);
            EXPECT_NE(std::string(e.what()).find("policies are not available"), std::string::npos) << e.what();
        }
    }
}

INSTANTIATE_TEST_SUITE_P(backends, kv_blocks, ::testing::Values(TFU_BACKEND_CPU, TFU_BACKEND_CUDA),
                         [](const auto& p) { return p.param == TFU_BACKEND_CPU ? "cpu" : "cuda"; });

// Vulkan (lavapipe in CI) has no block ops yet: the quantized formats are refused with a message, f16 still works.
TEST(kv_blocks_vulkan, quantized_formats_refused) {
    std::unique_ptr<engine_model> vk;
    try {
        vk = std::make_unique<engine_model>(TFU_BACKEND_VULKAN);
    } catch (const tfu::error& e) {
        if (e.status() == TFU_STATUS_BACKEND_UNAVAILABLE) GTEST_SKIP() << e.what();
        throw;
    }
    try {
        vk->make(TFU_KV_Q8, TFU_KV_Q8, true);
        ADD_FAILURE() << "q8 accepted on Vulkan, which has no block ops";
    } catch (const tfu::error& e) {
        EXPECT_EQ(e.status(), TFU_STATUS_UNSUPPORTED);
        EXPECT_NE(std::string(e.what()).find("not available"), std::string::npos) << e.what();
    }
    EXPECT_NO_THROW(vk->make(TFU_KV_F16, TFU_KV_F16, true));
}

}  // namespace
