// Offloading idle sessions' KV caches to host memory when the engine budget is full (tfu_offload_policy): the
// victims follow LRU, LFU and FIFO; a session whose cache went to host memory and came back continues bit for
// bit like one that never left; a cache that cannot come back gives OUT_OF_MEMORY and stays intact; the
// accounting adds up.
#include <gtest/gtest.h>

#include <map>

#include "core/error.h"
#include "runtime/engine.h"
#include "runtime/model.h"
#include "runtime/session.h"
#include "runtime/stats.h"

namespace {

const std::string k_model = std::string(TFU_SHARED_DIR) + "/models/stories260K.gguf";
const char* const k_prompts[] = {"Once upon a time", "The little dog", "Tom and Sue went to the park",
                                 "One day, a big fish"};

// One conversation: created, then rounds of generation through session_use, as API calls do.
struct conv {
    std::unique_ptr<tfu::session> s;
    std::vector<int32_t> out;
};

tfu_session_params params(uint64_t seed) {
    tfu_session_params sp = tfu_session_params_default();
    sp.n_ctx = 128;
    sp.kv_type_k = TFU_KV_Q4;  // the q4 keys' f16 tail must travel too
    sp.kv_type_v = TFU_KV_Q8;
    sp.sampler.temperature = 0.9f;
    sp.sampler.seed = seed;
    return sp;
}

void round(conv& c, int n) {
    tfu::session_use u(*c.s);
    for (int i = 0; i < n; ++i) {
        c.out.push_back(c.s->sample());
        c.s->eval();
    }
}

std::unique_ptr<tfu::engine> make_engine(uint64_t budget, tfu_offload_policy policy) {
    tfu_engine_params ep = tfu_engine_params_default();
    ep.backend = TFU_BACKEND_CPU;
    ep.n_threads = 2;
    ep.memory_budget = budget;
    ep.offload_policy = policy;
    return std::make_unique<tfu::engine>(ep);
}

conv start(tfu::model& m, int i) {
    conv c;
    c.s = std::make_unique<tfu::session>(m, params(uint64_t(100 + i)));
    tfu::session_use u(*c.s);
    c.s->add_text(k_prompts[i], true);
    c.s->eval();
    return c;
}

bool offloaded(const conv& c) {
    tfu_session_stats st{};
    c.s->stats(&st);
    return st.kv_offloaded;
}

// The budget: the model's weights plus room for `n` sessions' caches (each reserves its whole 128 tokens).
uint64_t budget_for(int n) {
    auto e = make_engine(0, TFU_OFFLOAD_LRU);
    tfu::model m(*e, k_model, tfu_model_params_default());
    const uint64_t weights = e->memory_used();
    tfu::session s(m, params(1));
    const uint64_t per_session = e->memory_used() - weights;
    return weights + uint64_t(n) * per_session + per_session / 2;
}

TEST(kv_offload, lru_round_trips_are_bit_exact) {
    // Reference: the four conversations alone, without a budget.
    std::vector<std::vector<int32_t>> want;
    {
        auto e = make_engine(0, TFU_OFFLOAD_LRU);
        tfu::model m(*e, k_model, tfu_model_params_default());
        for (int i = 0; i < 4; ++i) {
            conv c = start(m, i);
            round(c, 20);
            round(c, 20);
            round(c, 15);
            want.push_back(c.out);
        }
    }
    auto e = make_engine(budget_for(2), TFU_OFFLOAD_LRU);
    tfu::model m(*e, k_model, tfu_model_params_default());
    std::vector<conv> cs;
    for (int i = 0; i < 4; ++i) {  // the third and fourth sessions push the least recently used ones out
        cs.push_back(start(m, i));
        round(cs.back(), 20);
    }
    EXPECT_TRUE(offloaded(cs[0]));
    EXPECT_TRUE(offloaded(cs[1]));
    EXPECT_FALSE(offloaded(cs[2]));
    EXPECT_FALSE(offloaded(cs[3]));
    // Round 2 in order 0..3: each comes back and pushes out the least recently used of the others.
    for (int r = 0; r < 2; ++r)
        for (int i = 0; i < 4; ++i) {
            round(cs[size_t(i)], r == 0 ? 20 : 15);
            EXPECT_FALSE(offloaded(cs[size_t(i)]));
            EXPECT_TRUE(offloaded(cs[size_t((i + 2) % 4)])) << "LRU victim after session " << i;
        }
    for (int i = 0; i < 4; ++i) EXPECT_EQ(cs[size_t(i)].out, want[size_t(i)]) << "conversation " << i;
    EXPECT_LE(e->memory_used(), e->memory_budget());
    const std::string js = tfu::engine_stats_json(*e);
    EXPECT_NE(js.find("\"sessions_offloaded\": 2"), std::string::npos) << js;
    EXPECT_NE(js.find("\"policy\": \"lru\""), std::string::npos) << js;
    std::printf("offloads %llu, prefetches %llu\n", (unsigned long long)e->n_offloads.load(),
                (unsigned long long)e->n_prefetches.load());
    EXPECT_EQ(e->n_offloads.load(), 2u + 8u);
    EXPECT_EQ(e->n_prefetches.load(), 8u);
    // The accounting: two sessions hold their caches in the budget, two hold host bytes.
    uint64_t host = 0;
    for (const conv& c : cs) {
        tfu_session_stats st{};
        c.s->stats(&st);
        host += st.kv_host_bytes;
        EXPECT_EQ(st.kv_offloaded, st.kv_bytes == 0);
    }
    EXPECT_GT(host, 0u);
}

TEST(kv_offload, lfu_and_fifo_pick_their_victims) {
    for (tfu_offload_policy pol : {TFU_OFFLOAD_LFU, TFU_OFFLOAD_FIFO}) {
        auto e = make_engine(budget_for(2), pol);
        tfu::model m(*e, k_model, tfu_model_params_default());
        std::vector<conv> cs;
        cs.push_back(start(m, 0));
        cs.push_back(start(m, 1));
        for (int i = 0; i < 4; ++i) round(cs[0], 2);  // session 0: older, used more, and used last
        round(cs[1], 2);
        round(cs[0], 2);
        cs.push_back(start(m, 2));
        // LFU moves the less used session 1; FIFO moves the oldest, session 0, though it was used last.
        EXPECT_EQ(offloaded(cs[0]), pol == TFU_OFFLOAD_FIFO);
        EXPECT_EQ(offloaded(cs[1]), pol == TFU_OFFLOAD_LFU);
    }
}

TEST(kv_offload, a_cache_that_cannot_come_back_is_kept) {
    auto e = make_engine(budget_for(2), TFU_OFFLOAD_LRU);
    tfu::model m(*e, k_model, tfu_model_params_default());
    std::vector<conv> cs;
    for (int i = 0; i < 3; ++i) {
        cs.push_back(start(m, i));
        round(cs.back(), 10);
    }
    ASSERT_TRUE(offloaded(cs[0]));
    tfu_session_stats before{};
    cs[0].s->stats(&before);
    {
        // Sessions 1 and 2 are in calls on other threads: nothing can move.
        tfu::session_use b1(*cs[1].s), b2(*cs[2].s);
        try {
            tfu::session_use again(*cs[0].s);
            ADD_FAILURE() << "came back without room";
        } catch (const tfu::error& err) {
            EXPECT_EQ(err.status(), TFU_STATUS_OUT_OF_MEMORY);
            EXPECT_NE(std::string(err.what()).find("no idle session"), std::string::npos) << err.what();
        }
        EXPECT_FALSE(cs[0].s->busy.load()) << "a failed call releases the session";
        tfu_session_stats st{};
        cs[0].s->stats(&st);
        EXPECT_TRUE(st.kv_offloaded);
        EXPECT_EQ(st.kv_host_bytes, before.kv_host_bytes);
    }
    // Once the others are idle it comes back and goes on as if nothing happened.
    std::vector<int32_t> got;
    {
        conv& c = cs[0];
        round(c, 10);
        got = c.out;
    }
    auto ref_engine = make_engine(0, TFU_OFFLOAD_LRU);
    tfu::model m2(*ref_engine, k_model, tfu_model_params_default());
    conv ref = start(m2, 0);
    round(ref, 10);
    round(ref, 10);
    EXPECT_EQ(got, ref.out);
}

TEST(kv_offload, policy_none_refuses) {
    auto e = make_engine(budget_for(2), TFU_OFFLOAD_NONE);
    tfu::model m(*e, k_model, tfu_model_params_default());
    conv a = start(m, 0), b = start(m, 1);
    try {
        conv c = start(m, 2);
        ADD_FAILURE() << "a third session fit";
    } catch (const tfu::error& err) {
        EXPECT_EQ(err.status(), TFU_STATUS_OUT_OF_MEMORY);
        EXPECT_NE(std::string(err.what()).find("TFU_OFFLOAD_NONE"), std::string::npos) << err.what();
    }
}

}  // namespace
