// The C API's behaviour on bad input and under concurrency: statuses and messages, cancellation during
// prefill, sessions of several models on several threads at once, BUSY on concurrent use of one session.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "core/json.h"
#include "tfusion/tfusion.h"

namespace {

const std::string k_model = std::string(TFU_SHARED_DIR) + "/models/stories260K.gguf";

struct api_fixture : ::testing::Test {
    void SetUp() override {
        tfu_engine_params ep = tfu_engine_params_default();
        ep.n_threads = 2;
        ASSERT_EQ(tfu_engine_create(&ep, &eng), TFU_STATUS_OK) << tfu_last_error();
        ASSERT_EQ(tfu_model_load(eng, k_model.c_str(), nullptr, &mdl), TFU_STATUS_OK) << tfu_last_error();
    }
    void TearDown() override {
        EXPECT_EQ(tfu_model_unload(mdl), TFU_STATUS_OK) << tfu_last_error();
        EXPECT_EQ(tfu_engine_destroy(eng), TFU_STATUS_OK) << tfu_last_error();
    }
    tfu_session* new_session(int32_t n_ctx, float temp = 0.0f) {
        tfu_session_params sp = tfu_session_params_default();
        sp.n_ctx = n_ctx;
        sp.sampler.temperature = temp;
        tfu_session* s = nullptr;
        EXPECT_EQ(tfu_session_create(mdl, &sp, &s), TFU_STATUS_OK) << tfu_last_error();
        return s;
    }
    tfu_engine* eng = nullptr;
    tfu_model* mdl = nullptr;
};

bool collect(const char* piece, size_t len, tfu_token, void* ud) {
    static_cast<std::string*>(ud)->append(piece, len);
    return true;
}

std::string generate_text(tfu_session* s, const char* prompt, int n) {
    std::string out;
    EXPECT_EQ(tfu_session_add_text(s, prompt, true), TFU_STATUS_OK) << tfu_last_error();
    tfu_generate_params gp = tfu_generate_params_default();
    gp.max_tokens = n;
    gp.on_token = collect;
    gp.user_data = &out;
    EXPECT_EQ(tfu_session_generate(s, &gp, nullptr), TFU_STATUS_OK) << tfu_last_error();
    return out;
}

TEST(api, null_handles_and_missing_file) {
    tfu_engine* eng = nullptr;
    EXPECT_EQ(tfu_engine_create(nullptr, nullptr), TFU_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(std::string(tfu_last_error()), "");
    ASSERT_EQ(tfu_engine_create(nullptr, &eng), TFU_STATUS_OK);
    tfu_model* mdl = nullptr;
    EXPECT_EQ(tfu_model_load(eng, "/nonexistent/model.gguf", nullptr, &mdl), TFU_STATUS_NOT_FOUND);
    EXPECT_NE(std::string(tfu_last_error()).find("/nonexistent/model.gguf"), std::string::npos) << tfu_last_error();
    EXPECT_EQ(mdl, nullptr);
    EXPECT_EQ(tfu_model_load(nullptr, k_model.c_str(), nullptr, &mdl), TFU_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(tfu_model_load(eng, nullptr, nullptr, &mdl), TFU_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(tfu_session_create(nullptr, nullptr, nullptr), TFU_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(tfu_session_add_text(nullptr, "x", true), TFU_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(tfu_session_generate(nullptr, nullptr, nullptr), TFU_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(tfu_session_cancel(nullptr), TFU_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(tfu_model_get_info(nullptr, nullptr), TFU_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(tfu_engine_destroy(eng), TFU_STATUS_OK);
    EXPECT_EQ(tfu_engine_destroy(nullptr), TFU_STATUS_OK);
}

TEST(api, params_struct_size_is_checked) {
    tfu_engine_params ep = tfu_engine_params_default();
    ep.struct_size = 0;
    tfu_engine* eng = nullptr;
    EXPECT_EQ(tfu_engine_create(&ep, &eng), TFU_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(std::string(tfu_last_error()).find("struct_size"), std::string::npos);
    ep = tfu_engine_params_default();
    ep.backend = TFU_BACKEND_CUDA;
    tfu_status st = tfu_engine_create(&ep, &eng);
    EXPECT_TRUE(st == TFU_STATUS_BACKEND_UNAVAILABLE || st == TFU_STATUS_OK);
    if (st == TFU_STATUS_OK) tfu_engine_destroy(eng);
}

TEST_F(api_fixture, model_info) {
    tfu_model_info info = {};
    info.struct_size = sizeof info;
    ASSERT_EQ(tfu_model_get_info(mdl, &info), TFU_STATUS_OK);
    EXPECT_STREQ(info.architecture, "llama");
    EXPECT_EQ(info.n_vocab, 512);
    EXPECT_EQ(info.n_layer, 5);
    EXPECT_EQ(info.n_embd, 64);
    EXPECT_EQ(info.n_head, 8);
    EXPECT_EQ(info.n_head_kv, 4);
    EXPECT_EQ(info.bos, 1);
    EXPECT_EQ(info.eos, 2);
    EXPECT_TRUE(info.add_bos);
    EXPECT_FALSE(info.has_chat_template);
    EXPECT_STREQ(info.weight_type, "f32");
    EXPECT_EQ(info.file_type, -1);  // the file has no general.file_type
    EXPECT_TRUE(tfu_model_token_is_eog(mdl, 2));
    EXPECT_FALSE(tfu_model_token_is_eog(mdl, 403));
    // An old caller with a smaller struct gets only the fields it knows.
    tfu_model_info small = {};
    small.struct_size = offsetof(tfu_model_info, n_params);
    small.n_params = 12345;
    ASSERT_EQ(tfu_model_get_info(mdl, &small), TFU_STATUS_OK);
    EXPECT_EQ(small.n_params, 12345u);
    EXPECT_STREQ(small.architecture, "llama");
}

TEST_F(api_fixture, tokenize_detokenize_and_buffer_protocol) {
    const char* text = "Once upon a time";
    tfu_token toks[3];
    size_t n = 0;
    EXPECT_EQ(tfu_tokenize(mdl, text, strlen(text), true, false, toks, 3, &n), TFU_STATUS_BUFFER_TOO_SMALL);
    EXPECT_EQ(n, 5u);
    std::vector<tfu_token> all(n);
    ASSERT_EQ(tfu_tokenize(mdl, text, strlen(text), true, false, all.data(), all.size(), &n), TFU_STATUS_OK);
    EXPECT_EQ(all, (std::vector<tfu_token>{1, 403, 407, 261, 378}));
    char buf[64];
    size_t len = 0;
    ASSERT_EQ(tfu_detokenize(mdl, all.data() + 1, 4, false, buf, sizeof buf, &len), TFU_STATUS_OK);
    EXPECT_EQ(std::string(buf, len), text);
    EXPECT_EQ(tfu_detokenize(mdl, all.data(), all.size(), false, buf, 4, &len), TFU_STATUS_BUFFER_TOO_SMALL);
    tfu_token bad = 99999;
    EXPECT_EQ(tfu_detokenize(mdl, &bad, 1, false, buf, sizeof buf, &len), TFU_STATUS_INVALID_ARGUMENT);
    const char invalid[] = "ab\xff\xfe";
    EXPECT_EQ(tfu_tokenize(mdl, invalid, 4, false, false, all.data(), all.size(), &n), TFU_STATUS_INVALID_UTF8);
    tfu_chat_message m = {"user", "hi"};
    EXPECT_EQ(tfu_chat_apply_template(mdl, nullptr, &m, 1, true, buf, sizeof buf, &len), TFU_STATUS_UNSUPPORTED);
    const char* tmpl = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}";
    ASSERT_EQ(tfu_chat_apply_template(mdl, tmpl, &m, 1, true, buf, sizeof buf, &len), TFU_STATUS_OK)
        << tfu_last_error();
    EXPECT_EQ(std::string(buf, len), "<user>hi");
    EXPECT_EQ(tfu_chat_apply_template(mdl, "{{ raise_exception('nope') }}", &m, 1, true, buf, sizeof buf, &len),
              TFU_STATUS_TEMPLATE_ERROR);
    EXPECT_STREQ(tfu_last_error(), "nope");
}

TEST_F(api_fixture, bad_prompts) {
    tfu_session* s = new_session(16);
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(tfu_session_add_text(s, "bad \xc3\x28 utf8", true), TFU_STATUS_INVALID_UTF8);
    std::string longp;
    for (int i = 0; i < 40; ++i) longp += "Once upon a time ";
    EXPECT_EQ(tfu_session_add_text(s, longp.c_str(), true), TFU_STATUS_CONTEXT_FULL);
    EXPECT_NE(std::string(tfu_last_error()).find("16"), std::string::npos) << tfu_last_error();
    tfu_token bad = 512;
    EXPECT_EQ(tfu_session_add_tokens(s, &bad, 1), TFU_STATUS_INVALID_ARGUMENT);
    const float* logits = nullptr;
    EXPECT_EQ(tfu_session_get_logits(s, &logits, nullptr), TFU_STATUS_INVALID_ARGUMENT);
    // The session is still usable after the refusals, and generation stops when the context is full.
    EXPECT_EQ(tfu_session_add_text(s, "Once upon a time", true), TFU_STATUS_OK);
    tfu_generate_params gp = tfu_generate_params_default();
    gp.max_tokens = 100;
    tfu_generate_result res = {};
    res.struct_size = sizeof res;
    EXPECT_EQ(tfu_session_generate(s, &gp, &res), TFU_STATUS_OK) << tfu_last_error();
    EXPECT_TRUE(res.stop_reason == TFU_STOP_CONTEXT_FULL || res.stop_reason == TFU_STOP_EOG) << res.stop_reason;
    EXPECT_EQ(tfu_session_destroy(s), TFU_STATUS_OK);
}

// Logits of every position in one call equal those of a token-by-token evaluation.
TEST_F(api_fixture, eval_logits_matches_step_by_step) {
    const tfu_token toks[5] = {1, 403, 407, 261, 378};
    std::vector<float> all(5 * 512);
    tfu_session* a = new_session(64);
    ASSERT_EQ(tfu_session_eval_logits(a, toks, 5, all.data()), TFU_STATUS_OK) << tfu_last_error();
    tfu_session* b = new_session(64);
    for (size_t i = 0; i < 5; ++i) {
        ASSERT_EQ(tfu_session_add_tokens(b, &toks[i], 1), TFU_STATUS_OK);
        ASSERT_EQ(tfu_session_eval(b), TFU_STATUS_OK);
        const float* lg = nullptr;
        size_t nv = 0;
        ASSERT_EQ(tfu_session_get_logits(b, &lg, &nv), TFU_STATUS_OK);
        ASSERT_EQ(nv, 512u);
        for (size_t j = 0; j < nv; ++j) ASSERT_NEAR(all[i * 512 + j], lg[j], 1e-3f) << "position " << i;
    }
    tfu_token bad = -5;
    EXPECT_EQ(tfu_session_eval_logits(a, &bad, 1, all.data()), TFU_STATUS_INVALID_ARGUMENT);
    tfu_session_destroy(a);
    tfu_session_destroy(b);
}

// Session and engine statistics: blocks held and shared, last use, and the engine's JSON with the pool counters.
TEST_F(api_fixture, kv_statistics) {
    tfu_session* a = new_session(256);
    tfu_session* b = new_session(256);
    std::vector<tfu_token> prompt(40);
    for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = tfu_token(3 + i * 7 % 500);
    for (tfu_session* s : {a, b}) {
        ASSERT_EQ(tfu_session_add_tokens(s, prompt.data(), prompt.size()), TFU_STATUS_OK);
        ASSERT_EQ(tfu_session_eval(s), TFU_STATUS_OK) << tfu_last_error();
    }
    tfu_session_stats sa = {}, sb = {};
    sa.struct_size = sb.struct_size = sizeof sa;
    ASSERT_EQ(tfu_session_get_stats(a, &sa), TFU_STATUS_OK);
    ASSERT_EQ(tfu_session_get_stats(b, &sb), TFU_STATUS_OK);
    EXPECT_EQ(sa.kv_blocks, 2u);         // 40 tokens, blocks of 32
    EXPECT_EQ(sb.n_prefix_reused, 32u);  // b took a's first block
    EXPECT_EQ(sb.kv_shared_blocks, 1u);
    EXPECT_GT(sa.last_used_unix_ms, 1700000000000u);
    size_t len = 0;
    EXPECT_EQ(tfu_engine_get_stats_json(eng, nullptr, 0, &len), TFU_STATUS_BUFFER_TOO_SMALL);
    std::string text(len + 1, '\0');
    ASSERT_EQ(tfu_engine_get_stats_json(eng, &text[0], text.size(), &len), TFU_STATUS_OK);
    text.resize(len);
    const tfu::json::value doc = tfu::json::parse(text);
    EXPECT_EQ(doc.at("models").size(), 1u);
    const tfu::json::value& pool = doc.at("models")[0].at("kv_pools")[0];
    EXPECT_EQ(pool.at("type_k").as_string(), "f16");
    EXPECT_EQ(pool.at("blocks_in_use").as_int(), 3);  // a: 2 blocks, b: 1 shared + 1 own
    EXPECT_EQ(pool.at("prefix_hits").as_int(), 1);
    EXPECT_EQ(pool.at("bytes_in_use").as_int(), 3 * pool.at("block_bytes").as_int());
    tfu_session_destroy(a);
    tfu_session_destroy(b);
}

TEST_F(api_fixture, unload_with_live_session_is_refused) {
    tfu_session* s = new_session(64);
    EXPECT_EQ(tfu_model_unload(mdl), TFU_STATUS_BUSY);
    EXPECT_EQ(tfu_engine_destroy(eng), TFU_STATUS_BUSY);
    EXPECT_EQ(tfu_session_destroy(s), TFU_STATUS_OK);
}

TEST_F(api_fixture, reset_gives_the_same_greedy_text) {
    tfu_session* s = new_session(256);
    std::string a = generate_text(s, "Once upon a time", 30);
    ASSERT_EQ(tfu_session_reset(s), TFU_STATUS_OK);
    std::string b = generate_text(s, "Once upon a time", 30);
    EXPECT_EQ(a, b);
    EXPECT_GT(a.size(), 20u);
    tfu_session_destroy(s);
}

TEST_F(api_fixture, seeded_sampling_is_reproducible) {
    tfu_session* s1 = new_session(256, 0.9f);
    tfu_session* s2 = new_session(256, 0.9f);
    EXPECT_EQ(generate_text(s1, "Once upon a time", 40), generate_text(s2, "Once upon a time", 40));
    tfu_session_destroy(s1);
    tfu_session_destroy(s2);
}

// Cancel from another thread while a long prefill runs on the slow reference backend.
TEST(api_cancel, cancel_during_prefill) {
    tfu_engine_params ep = tfu_engine_params_default();
    ep.backend = TFU_BACKEND_CPU_REF;
    tfu_engine* eng = nullptr;
    ASSERT_EQ(tfu_engine_create(&ep, &eng), TFU_STATUS_OK);
    tfu_model* mdl = nullptr;
    ASSERT_EQ(tfu_model_load(eng, k_model.c_str(), nullptr, &mdl), TFU_STATUS_OK);
    tfu_session_params sp = tfu_session_params_default();
    sp.n_ctx = 2048;
    sp.n_batch = 64;
    tfu_session* s = nullptr;
    ASSERT_EQ(tfu_session_create(mdl, &sp, &s), TFU_STATUS_OK);
    std::vector<tfu_token> prompt(2000);
    for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = tfu_token(3 + (i * 37) % 500);
    ASSERT_EQ(tfu_session_add_tokens(s, prompt.data(), prompt.size()), TFU_STATUS_OK);
    std::atomic<bool> started{false};
    std::thread canceller([&] {
        while (!started.load()) std::this_thread::yield();
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        tfu_session_cancel(s);
    });
    started.store(true);
    auto t0 = std::chrono::steady_clock::now();
    tfu_status st = tfu_session_eval(s);
    canceller.join();
    EXPECT_EQ(st, TFU_STATUS_CANCELLED);
    tfu_session_stats stats = {};
    stats.struct_size = sizeof stats;
    ASSERT_EQ(tfu_session_get_stats(s, &stats), TFU_STATUS_OK);
    EXPECT_LT(stats.n_past, 2000) << "prefill was not interrupted";
    EXPECT_EQ(stats.n_past + stats.n_pending, 2000) << "tokens were lost";
    std::cout << "cancelled after " << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()
              << " s with " << stats.n_past << " of 2000 tokens prefilled\n";
    // Still usable: the rest of the prompt can be evaluated afterwards.
    EXPECT_EQ(tfu_session_destroy(s), TFU_STATUS_OK);
    EXPECT_EQ(tfu_model_unload(mdl), TFU_STATUS_OK);
    EXPECT_EQ(tfu_engine_destroy(eng), TFU_STATUS_OK);
}

// Two models in one engine, four sessions on four threads at once, each equal to its single-threaded result.
TEST(api_threads, sessions_of_two_models_on_many_threads) {
    tfu_engine* eng = nullptr;
    ASSERT_EQ(tfu_engine_create(nullptr, &eng), TFU_STATUS_OK);
    tfu_model* m1 = nullptr;
    tfu_model* m2 = nullptr;
    ASSERT_EQ(tfu_model_load(eng, k_model.c_str(), nullptr, &m1), TFU_STATUS_OK);
    tfu_model_params mp = tfu_model_params_default();
    mp.use_mmap = false;
    ASSERT_EQ(tfu_model_load(eng, k_model.c_str(), &mp, &m2), TFU_STATUS_OK);
    const char* prompts[4] = {"Once upon a time", "The dog", "Lily was", "One day"};
    auto run = [&](tfu_model* m, const char* p) {
        tfu_session_params sp = tfu_session_params_default();
        sp.n_ctx = 256;
        sp.sampler.temperature = 0;
        tfu_session* s = nullptr;
        EXPECT_EQ(tfu_session_create(m, &sp, &s), TFU_STATUS_OK);
        std::string out = generate_text(s, p, 40);
        tfu_session_destroy(s);
        return out;
    };
    std::vector<std::string> serial, parallel(4);
    for (int i = 0; i < 4; ++i) serial.push_back(run(i % 2 ? m2 : m1, prompts[i]));
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; ++i) threads.emplace_back([&, i] { parallel[size_t(i)] = run(i % 2 ? m2 : m1, prompts[i]); });
    for (auto& t : threads) t.join();
    EXPECT_EQ(serial, parallel);
    EXPECT_EQ(tfu_model_unload(m1), TFU_STATUS_OK);
    EXPECT_EQ(tfu_model_unload(m2), TFU_STATUS_OK);
    EXPECT_EQ(tfu_engine_destroy(eng), TFU_STATUS_OK);
}

TEST(api_budget, memory_budget_is_enforced) {
    tfu_engine_params ep = tfu_engine_params_default();
    ep.memory_budget = 2u << 20;  // the model's 1.1 MiB fits, a 4096-token f16 cache (2.6 MiB) does not
    tfu_engine* eng = nullptr;
    ASSERT_EQ(tfu_engine_create(&ep, &eng), TFU_STATUS_OK);
    tfu_model* mdl = nullptr;
    ASSERT_EQ(tfu_model_load(eng, k_model.c_str(), nullptr, &mdl), TFU_STATUS_OK) << tfu_last_error();
    uint64_t after_model = tfu_engine_memory_used(eng);
    EXPECT_GT(after_model, 1000000u);
    tfu_session_params sp = tfu_session_params_default();
    sp.n_ctx = 4096;
    tfu_session* s = nullptr;
    EXPECT_EQ(tfu_session_create(mdl, &sp, &s), TFU_STATUS_OUT_OF_MEMORY);
    EXPECT_NE(std::string(tfu_last_error()).find("budget"), std::string::npos) << tfu_last_error();
    EXPECT_EQ(tfu_engine_memory_used(eng), after_model);
    sp.n_ctx = 256;
    ASSERT_EQ(tfu_session_create(mdl, &sp, &s), TFU_STATUS_OK) << tfu_last_error();
    EXPECT_GT(tfu_engine_memory_used(eng), after_model);
    tfu_session_destroy(s);
    EXPECT_EQ(tfu_engine_memory_used(eng), after_model);
    tfu_model_unload(mdl);
    EXPECT_EQ(tfu_engine_memory_used(eng), 0u);
    tfu_engine_destroy(eng);
}

}  // namespace
