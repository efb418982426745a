// The Vulkan backend's fused matrix-vector launches (kernels_vk/vk_ops.h record_fused), against cpu-ref running the
// same ops one by one, and how many dispatches each run recorded (the backend's TFU_VK_PROFILE=1 counters, read
// from its log line on destruction):
//  - gate/up + SWIGLU: MUL_MAT g, MUL_MAT u of one x, then SWIGLU(g, g, u): one dispatch;
//  - Q/K/V: three MUL_MATs of one x with different row counts: one dispatch;
//  - lookalikes that must not fuse (SWIGLU written over up, SWIGLU(u, g), a MUL_MAT chain, results written over
//    each other, 9 columns) and give the op-by-op values;
//  - weights larger than one binding (TFU_VK_MAX_BINDING_BYTES): row pieces, not fused; TFU_VK_FUSION=0;
//  - stories260K: dispatches per decode step with and without fusion (4 fewer per layer).
// Every weight type of the Vulkan dequantizers, 1, 3 and 8 columns, row counts that are not a multiple of the rows
// per workgroup. Bounds: test_ops' MUL_MAT rel-L2 bounds per type (the fused SWIGLU's product 2x). Skipped where no
// Vulkan device (or module) is present (lavapipe: TFU_VK_ALLOW_CPU=1).
#include <cmath>
#include <cstdio>
#include <map>
#include <mutex>

#include "core/log.h"
#include "ops/device_test_util.h"
#include "runtime/engine.h"
#include "runtime/model.h"
#include "runtime/session.h"

namespace tfu::test {
namespace {

// Sets environment variables for the lifetime of the object, then restores them.
class scoped_env {
public:
    void set(const char* name, const char* value) {
        const char* old = std::getenv(name);
        saved_.push_back({name, old ? old : "", old != nullptr});
        setenv(name, value, 1);
    }
    ~scoped_env() {
        for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) {
            if (it->had) setenv(it->name.c_str(), it->value.c_str(), 1);
            else unsetenv(it->name.c_str());
        }
    }

private:
    struct saved {
        std::string name, value;
        bool had;
    };
    std::vector<saved> saved_;
};

// The backend's profile line: "vulkan: profile: R run() calls, O ops, D dispatches; ...".
struct profile_counts {
    unsigned long long runs = 0, ops = 0, dispatches = 0;
    bool seen = false;
};

// Collects the library's log lines (the module's included) while alive.
class log_capture {
public:
    log_capture() { log_set_callback(&log_capture::cb, TFU_LOG_INFO, this); }
    ~log_capture() { log_set_callback(nullptr, TFU_LOG_INFO, nullptr); }
    profile_counts profile() {
        std::lock_guard<std::mutex> lock(mutex_);
        profile_counts p;
        for (const std::string& l : lines_) {
            const size_t at = l.find("vulkan: profile: ");
            if (at != std::string::npos &&
                std::sscanf(l.c_str() + at, "vulkan: profile: %llu run() calls, %llu ops, %llu dispatches", &p.runs,
                            &p.ops, &p.dispatches) == 3)
                p.seen = true;
        }
        return p;
    }

private:
    static void cb(tfu_log_level, const char* message, void* user) {
        auto* self = static_cast<log_capture*>(user);
        std::lock_guard<std::mutex> lock(self->mutex_);
        self->lines_.emplace_back(message);
    }
    std::mutex mutex_;
    std::vector<std::string> lines_;
};

// A Vulkan backend with its profile counters on (and extra environment), or null with the reason.
std::unique_ptr<backend> make_vk(std::string* why, const std::vector<std::pair<const char*, const char*>>& env = {}) {
    scoped_env e;
    e.set("TFU_VK_PROFILE", "1");
    for (auto [name, value] : env) e.set(name, value);
    return backend_or_null(TFU_BACKEND_VULKAN, why);
}

// Every weight type the Vulkan backend dequantizes (kernels_vk/shaders/dequant.glsl).
const dtype k_types[] = {dtype::F32,  dtype::F16,  dtype::BF16, dtype::Q4_0, dtype::Q4_1, dtype::Q5_0, dtype::Q5_1,
                         dtype::Q8_0, dtype::Q2_K, dtype::Q3_K, dtype::Q4_K, dtype::Q5_K, dtype::Q6_K};

// gate/up + SWIGLU with gate, up and the product checked, one backend (one profile line) per case. env: extra
// environment of the backend. Returns the dispatches of the case's run (0 where no Vulkan device).
unsigned long long gate_up_case(std::mt19937_64& rng, dtype t, int64_t n, int64_t k, int64_t m,
                                const std::vector<std::pair<const char*, const char*>>& env = {}) {
    log_capture cap;
    std::string why;
    std::unique_ptr<backend> dev = make_vk(&why, env);
    if (!dev) return 0;
    {
        device_case c(*dev);
        tensor* x = c.add(rng, dtype::F32, k, n, true);
        tensor* wg = c.add(rng, t, k, m, true, 0.05f);
        tensor* wu = c.add(rng, t, k, m, true, 0.05f);
        tensor* g = c.add(rng, dtype::F32, m, n, false);
        tensor* u = c.add(rng, dtype::F32, m, n, false);
        c.run({make_op(op_type::MUL_MAT, g, wg, x), make_op(op_type::MUL_MAT, u, wu, x),
               make_op(op_type::SWIGLU, g, g, u)});
        const std::string what = std::string(dtype_name(t)) + " n=" + std::to_string(n);
        EXPECT_LE(rel_l2(c.device_values(u), to_floats(*u)), mul_mat_bound(t)) << what << " up";
        EXPECT_LE(rel_l2(c.device_values(g), to_floats(*g)), 2 * mul_mat_bound(t)) << what << " silu(gate) * up";
    }
    dev.reset();
    const profile_counts p = cap.profile();
    EXPECT_TRUE(p.seen) << "no profile line from the Vulkan backend";
    EXPECT_EQ(p.ops, 3u);
    return p.dispatches;
}

TEST(vk_fusion, gate_up_swiglu_one_dispatch) {
    std::string why;
    if (!make_vk(&why)) GTEST_SKIP() << why;
    std::mt19937_64 rng(test_seed() + 21);
    for (dtype t : k_types)
        for (int64_t n : {1, 3, 8}) {
            EXPECT_EQ(gate_up_case(rng, t, n, 512, 301), 1u) << dtype_name(t) << " n=" << n;
        }
}

// The shared-memory reduction (TFU_VK_SUBGROUP=0: the kernel for devices without subgroup arithmetic).
TEST(vk_fusion, gate_up_swiglu_without_subgroups) {
    std::string why;
    if (!make_vk(&why)) GTEST_SKIP() << why;
    std::mt19937_64 rng(test_seed() + 26);
    for (dtype t : {dtype::F32, dtype::Q4_0, dtype::Q5_K})
        for (int64_t n : {1, 3, 8}) {
            EXPECT_EQ(gate_up_case(rng, t, n, 512, 301, {{"TFU_VK_SUBGROUP", "0"}}), 1u) << dtype_name(t) << " n=" << n;
        }
}

// The SWIGLU product is written elsewhere (not in place over gate): still one dispatch, gate kept.
TEST(vk_fusion, gate_up_swiglu_into_other_memory) {
    std::string why;
    if (!make_vk(&why)) GTEST_SKIP() << why;
    std::mt19937_64 rng(test_seed() + 22);
    for (dtype t : {dtype::Q4_K, dtype::F16})
        for (int64_t n : {1, 8}) {
            log_capture cap;
            std::unique_ptr<backend> dev = make_vk(&why);
            {
                const int64_t k = 256, m = 77;
                device_case c(*dev);
                tensor* x = c.add(rng, dtype::F32, k, n, true);
                tensor* wg = c.add(rng, t, k, m, true, 0.05f);
                tensor* wu = c.add(rng, t, k, m, true, 0.05f);
                tensor* g = c.add(rng, dtype::F32, m, n, false);
                tensor* u = c.add(rng, dtype::F32, m, n, false);
                tensor* h = c.add(rng, dtype::F32, m, n, false);
                c.run({make_op(op_type::MUL_MAT, g, wg, x), make_op(op_type::MUL_MAT, u, wu, x),
                       make_op(op_type::SWIGLU, h, g, u)});
                const std::string what = std::string(dtype_name(t)) + " n=" + std::to_string(n);
                EXPECT_LE(rel_l2(c.device_values(g), to_floats(*g)), mul_mat_bound(t)) << what << " gate";
                EXPECT_LE(rel_l2(c.device_values(u), to_floats(*u)), mul_mat_bound(t)) << what << " up";
                EXPECT_LE(rel_l2(c.device_values(h), to_floats(*h)), 2 * mul_mat_bound(t)) << what << " product";
            }
            dev.reset();
            EXPECT_EQ(cap.profile().dispatches, 1u) << dtype_name(t) << " n=" << n;
        }
}

TEST(vk_fusion, qkv_one_dispatch) {
    std::string why;
    if (!make_vk(&why)) GTEST_SKIP() << why;
    std::mt19937_64 rng(test_seed() + 23);
    for (dtype t : k_types)
        for (int64_t n : {1, 3, 8}) {
            log_capture cap;
            std::unique_ptr<backend> dev = make_vk(&why);
            {
                const int64_t k = 256;
                device_case c(*dev);
                tensor* x = c.add(rng, dtype::F32, k, n, true);
                tensor* wq = c.add(rng, t, k, 96, true, 0.05f);
                tensor* wk = c.add(rng, t, k, 33, true, 0.05f);
                tensor* wv = c.add(rng, t, k, 7, true, 0.05f);
                tensor* q = c.add(rng, dtype::F32, 96, n, false);
                tensor* kk = c.add(rng, dtype::F32, 33, n, false);
                tensor* v = c.add(rng, dtype::F32, 7, n, false);
                c.run({make_op(op_type::MUL_MAT, q, wq, x), make_op(op_type::MUL_MAT, kk, wk, x),
                       make_op(op_type::MUL_MAT, v, wv, x)});
                const std::string what = std::string(dtype_name(t)) + " n=" + std::to_string(n);
                EXPECT_LE(rel_l2(c.device_values(q), to_floats(*q)), mul_mat_bound(t)) << what << " q";
                EXPECT_LE(rel_l2(c.device_values(kk), to_floats(*kk)), mul_mat_bound(t)) << what << " k";
                EXPECT_LE(rel_l2(c.device_values(v), to_floats(*v)), mul_mat_bound(t)) << what << " v";
            }
            dev.reset();
            EXPECT_EQ(cap.profile().dispatches, 1u) << dtype_name(t) << " n=" << n;
        }
}

// Sequences that look alike but must not (all) fuse; values as op by op, and the dispatches that shows.
TEST(vk_fusion, lookalikes_run_op_by_op) {
    std::string why;
    if (!make_vk(&why)) GTEST_SKIP() << why;
    std::mt19937_64 rng(test_seed() + 24);
    for (dtype t : {dtype::Q4_0, dtype::F16, dtype::Q6_K}) {
        const int64_t k = 256, m = 256;
        const std::string what = dtype_name(t);
        {
            // SWIGLU over up (not the fused form: gate/up still share a launch), then a chain y = W u, z = W y.
            log_capture cap;
            std::unique_ptr<backend> dev = make_vk(&why);
            {
                device_case c(*dev);
                tensor* x = c.add(rng, dtype::F32, k, 1, true);
                tensor* wg = c.add(rng, t, k, m, true, 0.05f);
                tensor* wu = c.add(rng, t, k, m, true, 0.05f);
                tensor* w2 = c.add(rng, t, m, m, true, 0.05f);
                tensor* g = c.add(rng, dtype::F32, m, 1, false);
                tensor* u = c.add(rng, dtype::F32, m, 1, false);
                tensor* y = c.add(rng, dtype::F32, m, 1, false);
                tensor* z = c.add(rng, dtype::F32, m, 1, false);
                c.run({make_op(op_type::MUL_MAT, g, wg, x), make_op(op_type::MUL_MAT, u, wu, x),
                       make_op(op_type::SWIGLU, u, g, u), make_op(op_type::MUL_MAT, y, w2, u),
                       make_op(op_type::MUL_MAT, z, w2, y)});
                EXPECT_LE(rel_l2(c.device_values(g), to_floats(*g)), mul_mat_bound(t)) << what << " gate";
                EXPECT_LE(rel_l2(c.device_values(u), to_floats(*u)), 2 * mul_mat_bound(t)) << what << " swiglu into up";
                EXPECT_LE(rel_l2(c.device_values(y), to_floats(*y)), 3 * mul_mat_bound(t)) << what << " chain 1";
                EXPECT_LE(rel_l2(c.device_values(z), to_floats(*z)), 4 * mul_mat_bound(t)) << what << " chain 2";
            }
            dev.reset();
            EXPECT_EQ(cap.profile().dispatches, 4u) << what << ": {g, u}, swiglu, y, z";
        }
        {
            // SWIGLU(g, u, g): the operands swapped; two MUL_MATs into the same result (the second one wins); a
            // third MUL_MAT of another k; 9 columns (the tiled kernel, never fused).
            log_capture cap;
            std::unique_ptr<backend> dev = make_vk(&why);
            {
                device_case c(*dev);
                tensor* x = c.add(rng, dtype::F32, k, 1, true);
                tensor* x9 = c.add(rng, dtype::F32, k, 9, true);
                tensor* x2 = c.add(rng, dtype::F32, 2 * k, 1, true);
                tensor* wg = c.add(rng, t, k, m, true, 0.05f);
                tensor* wu = c.add(rng, t, k, m, true, 0.05f);
                tensor* wk2 = c.add(rng, t, 2 * k, m, true, 0.05f);
                tensor* g = c.add(rng, dtype::F32, m, 1, false);
                tensor* u = c.add(rng, dtype::F32, m, 1, false);
                tensor* a = c.add(rng, dtype::F32, m, 1, false);
                tensor* b = c.add(rng, dtype::F32, m, 1, false);
                tensor* c9 = c.add(rng, dtype::F32, m, 9, false);
                tensor* d9 = c.add(rng, dtype::F32, m, 9, false);
                c.run({make_op(op_type::MUL_MAT, g, wg, x), make_op(op_type::MUL_MAT, u, wu, x),
                       make_op(op_type::SWIGLU, g, u, g),                                       // 2: {g, u}, swiglu
                       make_op(op_type::MUL_MAT, a, wg, x), make_op(op_type::MUL_MAT, a, wu, x),  // 2: alone each
                       make_op(op_type::MUL_MAT, b, wk2, x2),                                   // 1
                       make_op(op_type::MUL_MAT, c9, wg, x9), make_op(op_type::MUL_MAT, d9, wu, x9)});  // 2
                EXPECT_LE(rel_l2(c.device_values(u), to_floats(*u)), mul_mat_bound(t)) << what << " up";
                EXPECT_LE(rel_l2(c.device_values(g), to_floats(*g)), 2 * mul_mat_bound(t)) << what << " silu(up) * gate";
                EXPECT_LE(rel_l2(c.device_values(a), to_floats(*a)), mul_mat_bound(t)) << what << " a written twice";
                EXPECT_LE(rel_l2(c.device_values(b), to_floats(*b)), mul_mat_bound(t)) << what << " other k";
                EXPECT_LE(rel_l2(c.device_values(c9), to_floats(*c9)), mul_mat_bound(t)) << what << " 9 columns";
                EXPECT_LE(rel_l2(c.device_values(d9), to_floats(*d9)), mul_mat_bound(t)) << what << " 9 columns";
            }
            dev.reset();
            EXPECT_EQ(cap.profile().dispatches, 7u) << what;
        }
    }
}

// Weights larger than one binding (forced with TFU_VK_MAX_BINDING_BYTES) run in row pieces, unfused; fusion off
// gives three dispatches; both with the same values.
TEST(vk_fusion, split_weights_and_fusion_off) {
    std::string why;
    if (!make_vk(&why)) GTEST_SKIP() << why;
    std::mt19937_64 rng(test_seed() + 25);
    // Q8_0 k = 512: 544-byte rows, 301 rows = 163,744 bytes: 3 pieces of at most 120 rows in 65,536 bytes.
    const unsigned long long split = gate_up_case(rng, dtype::Q8_0, 3, 512, 301, {{"TFU_VK_MAX_BINDING_BYTES", "65536"}});
    EXPECT_EQ(split, 3u + 3u + 1u) << "gate and up in 3 row pieces each, then SWIGLU";
    const unsigned long long off = gate_up_case(rng, dtype::Q4_K, 1, 512, 301, {{"TFU_VK_FUSION", "0"}});
    EXPECT_EQ(off, 3u);
}

// stories260K through the engine: dispatches of one decode step (the difference between generating 9 and 1
// tokens, over 8) with fusion off and on. Fused, every layer saves 2 (Q/K/V) + 2 (gate/up/SWIGLU) dispatches.
TEST(vk_fusion, stories260k_dispatches_per_decode_step) {
    std::string why;
    if (!make_vk(&why)) GTEST_SKIP() << why;
    const std::string path = std::string(TFU_SHARED_DIR) + "/models/stories260K.gguf";
    int32_t n_layer = 0;
    auto dispatches = [&](const char* fusion, int32_t n_tokens) {
        log_capture cap;
        {
            scoped_env e;
            e.set("TFU_VK_PROFILE", "1");
            e.set("TFU_VK_FUSION", fusion);
            tfu_engine_params ep = {};
            ep.struct_size = sizeof ep;
            ep.backend = TFU_BACKEND_VULKAN;
            ep.n_threads = 2;
            engine eng(ep);
            tfu_model_params mp = {};
            mp.struct_size = sizeof mp;
            mp.use_mmap = true;
            model mdl(eng, path, mp);
            n_layer = mdl.hp.n_layer;
            tfu_session_params sp = {};
            sp.struct_size = sizeof sp;
            sp.n_ctx = 128;
            sp.n_batch = 64;
            sp.sampler.temperature = 0.0f;
            sp.sampler.top_k = 0;
            sp.sampler.top_p = 1.0f;
            sp.sampler.repeat_penalty = 1.0f;
            session s(mdl, sp, dtype::F32);
            s.add_text("Once upon a time", true);
            tfu_generate_params gp = {};
            gp.struct_size = sizeof gp;
            gp.max_tokens = n_tokens;
            tfu_generate_result res = {};
            res.struct_size = sizeof res;
            s.generate(gp, &res);
            EXPECT_EQ(res.n_generated, n_tokens);
        }
        const profile_counts p = cap.profile();
        EXPECT_TRUE(p.seen);
        return p;
    };
    const profile_counts off1 = dispatches("0", 1), off9 = dispatches("0", 9);
    const profile_counts on1 = dispatches("1", 1), on9 = dispatches("1", 9);
    const double off_step = double(off9.dispatches - off1.dispatches) / 8;
    const double on_step = double(on9.dispatches - on1.dispatches) / 8;
    const double runs_step = double(on9.runs - on1.runs) / 8;
    std::printf("stories260K (%d layers) decode step: %.1f run() calls, %.1f dispatches unfused, %.1f fused\n", n_layer,
                runs_step, off_step, on_step);
    EXPECT_EQ(off9.runs - off1.runs, on9.runs - on1.runs);
    EXPECT_EQ(off_step - on_step, 4.0 * n_layer);
}

}  // namespace
}  // namespace tfu::test
