// stories260K against the goldens in ../shared/models/golden: logits (F32 weights, 1e-4 absolute) and the greedy
// continuation of "Once upon a time", on every backend (the GPU ones where their module and device are there).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/json.h"
#include "runtime/engine.h"
#include "runtime/model.h"
#include "runtime/session.h"

namespace {

const std::string k_shared = TFU_SHARED_DIR;
const std::string k_model = k_shared + "/models/stories260K.gguf";

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

struct fixture {
    explicit fixture(tfu_backend_kind kind) {
        tfu_engine_params ep = {};
        ep.struct_size = sizeof ep;
        ep.backend = kind;
        ep.n_threads = 2;
        eng = std::make_unique<tfu::engine>(ep);
        tfu_model_params mp = {};
        mp.struct_size = sizeof mp;
        mp.use_mmap = true;
        mdl = std::make_unique<tfu::model>(*eng, k_model, mp);
    }
    std::unique_ptr<tfu::session> make_session(tfu::dtype kv_type, int32_t n_batch = 256) {
        tfu_session_params sp = {};
        sp.struct_size = sizeof sp;
        sp.n_ctx = 512;
        sp.n_batch = n_batch;
        sp.sampler.temperature = 0.0f;
        sp.sampler.top_k = 0;
        sp.sampler.top_p = 1.0f;
        sp.sampler.repeat_penalty = 1.0f;
        sp.sampler.penalty_last_n = 64;
        return std::make_unique<tfu::session>(*mdl, sp, kv_type);
    }
    std::unique_ptr<tfu::engine> eng;
    std::unique_ptr<tfu::model> mdl;
};

class stories260k : public ::testing::TestWithParam<tfu_backend_kind> {};

// The fixture, or a skip with the reason when the backend is not on this machine (GPU modules).
#define MAKE_FIXTURE(fx)                                                                                    \
    std::unique_ptr<fixture> fx##_holder;                                                                   \
    try {                                                                                                   \
        fx##_holder = std::make_unique<fixture>(GetParam());                                                \
    } catch (const tfu::error& e) {                                                                         \
        if (e.status() == TFU_STATUS_BACKEND_UNAVAILABLE) GTEST_SKIP() << e.what();                         \
        throw;                                                                                              \
    }                                                                                                       \
    fixture& fx = *fx##_holder

// Logits after each of the 45 golden tokens: the first 3 positions in full, the top-5 logits everywhere.
TEST_P(stories260k, logits_match_reference) {
    tfu::json::value ref = tfu::json::parse(read_file(k_shared + "/models/golden/stories260K_ref_logits.json"));
    std::vector<int32_t> ids;
    for (const auto& v : ref.at("token_ids").as_array()) ids.push_back(int32_t(v.as_int()));
    // Batch sizes 45 (one prefill) and 7 (several batches, exercising n_past > 0 in attention).
    for (int32_t n_batch : {45, 7}) {
        MAKE_FIXTURE(fx);
        auto s = fx.make_session(tfu::dtype::F32, n_batch);
        std::vector<float> logits = s->eval_all_logits(ids);
        const size_t V = 512;
        ASSERT_EQ(logits.size(), V * ids.size());
        double max_err = 0;
        const auto& first3 = ref.at("logits_first3").as_array();
        for (size_t p = 0; p < first3.size(); ++p) {
            std::vector<float> want = first3[p].as_floats();
            ASSERT_EQ(want.size(), V);
            for (size_t i = 0; i < V; ++i) max_err = std::max(max_err, double(std::fabs(logits[p * V + i] - want[i])));
        }
        const auto& top5 = ref.at("top5").as_array();
        for (size_t p = 0; p < top5.size(); ++p)
            for (const auto& pair : top5[p].as_array()) {
                size_t id = size_t(pair[0].as_int());
                max_err = std::max(max_err, std::fabs(double(logits[p * V + id]) - pair[1].as_double()));
            }
        EXPECT_LT(max_err, 1e-4) << "n_batch " << n_batch;
        std::cout << "backend " << fx.eng->backend_name() << " n_batch " << n_batch << ": max |logit - ref| = "
                  << max_err << "\n";
    }
}

// Greedy generation from BOS + "Once upon a time" reproduces llama2.c's text (F16 and F32 KV cache).
TEST_P(stories260k, greedy_text_matches_golden) {
    std::string golden = read_file(k_shared + "/models/golden/stories260K_greedy_once_upon_a_time.txt");
    while (!golden.empty() && (golden.back() == '\n' || golden.back() == ' ')) golden.pop_back();
    ASSERT_GT(golden.size(), 100u);
    for (tfu::dtype kv : {tfu::dtype::F32, tfu::dtype::F16}) {
        MAKE_FIXTURE(fx);
        auto s = fx.make_session(kv);
        s->add_text("Once upon a time", true);
        std::string text = "Once upon a time";
        tfu_generate_params gp = {};
        gp.struct_size = sizeof gp;
        gp.max_tokens = 400;
        gp.on_token = [](const char* piece, size_t len, tfu_token, void* ud) {
            static_cast<std::string*>(ud)->append(piece, len);
            return true;
        };
        gp.user_data = &text;
        tfu_generate_result res = {};
        s->generate(gp, &res);
        ASSERT_GE(text.size(), golden.size()) << text;
        EXPECT_EQ(text.substr(0, golden.size()), golden) << "kv " << tfu::dtype_name(kv);
    }
}

INSTANTIATE_TEST_SUITE_P(cpu, stories260k, ::testing::Values(TFU_BACKEND_CPU_REF, TFU_BACKEND_CPU),
                         [](const auto& p) { return p.param == TFU_BACKEND_CPU ? "cpu" : "cpu_ref"; });
// The GPU modules (skipped where absent): weights, activations and the contiguous cache in device memory.
INSTANTIATE_TEST_SUITE_P(gpu, stories260k, ::testing::Values(TFU_BACKEND_CUDA, TFU_BACKEND_VULKAN),
                         [](const auto& p) { return p.param == TFU_BACKEND_CUDA ? "cuda" : "vulkan"; });

}  // namespace
