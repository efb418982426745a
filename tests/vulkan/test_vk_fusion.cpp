// The Vulkan backend's fused launches (kernels_vk/vk_ops.h record_fused), against cpu-ref running the same ops one
// by one, and how many dispatches and fused launches each run recorded (the backend's TFU_VK_PROFILE=1 counters,
// read from its log line on destruction):
//  - gate/up + SWIGLU: MUL_MAT g, MUL_MAT u of one x, then SWIGLU(g, g, u): one dispatch;
//  - Q/K/V: three MUL_MATs of one x with different row counts: one dispatch;
//  - lookalikes that must not fuse (SWIGLU written over up, SWIGLU(u, g), a MUL_MAT chain, results written over
//    each other, 9 columns) and give the op-by-op values;
//  - weights larger than one binding (TFU_VK_MAX_BINDING_BYTES): row pieces, not fused; TFU_VK_FUSION=0;
//  - the row-wise pairs ADD + RMS_NORM, ROPE q + k, KV_STORE k + v, and ROPE q + k + the KV pair as one launch
//    (tests/ops/pair_case.h: one run() against each op in its own run(), every buffer bit-identical, and against
//    cpu-ref): odd row widths, head sizes 8 .. 258, f16/bf16/f32 caches, neox and normal rope, factors, in place,
//    broadcast, caches starting mid-word; lookalikes that must not fuse; a decoder layer's chain; decode steps
//    replayed from kept command buffers (the stores' positions read on the device, each store its own, also when
//    they differ from the recording's);
//  - stories260K: dispatches per decode step with and without fusion (8 fewer per layer, 1 more in the last).
// Every weight type of the Vulkan dequantizers, 1, 3 and 8 columns, row counts that are not a multiple of the rows
// per workgroup. Bounds: test_ops' MUL_MAT rel-L2 bounds per type (the fused SWIGLU's product 2x). Skipped where no
// Vulkan device (or module) is present (lavapipe: TFU_VK_ALLOW_CPU=1).
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <mutex>

#include "core/log.h"
#include "ops/pair_case.h"
#include "vulkan/vk_test_env.h"
#include "runtime/engine.h"
#include "runtime/model.h"
#include "runtime/session.h"

namespace tfu::test {
namespace {

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

// ---- row-wise pairs: ADD + RMS_NORM, ROPE q + k, KV_STORE k + v ----------------------------------------------

// Runs body on a Vulkan backend of its own (profile on, env extra) and returns its counters (seen false where no
// Vulkan device).
profile_counts with_vk(const std::function<void(backend&)>& body,
                       const std::vector<std::pair<const char*, const char*>>& env = {}) {
    log_capture cap;
    std::string why;
    std::unique_ptr<backend> dev = make_vk(&why, env);
    if (!dev) return {};
    body(*dev);
    dev.reset();
    return cap.profile();
}

// `bytes` (a multiple of 4) of cache elements of dtype t holding normal random values, as the 4-byte words
// pair_case::set takes (a buffer's own random f32 bytes read as halves may be infinities or NaN).
std::vector<uint32_t> cache_words(std::mt19937_64& rng, dtype t, size_t bytes) {
    const size_t per_word = t == dtype::F32 ? 1 : 2;
    const std::vector<float> v = random_floats(rng, bytes / 4 * per_word);
    std::vector<uint32_t> w(bytes / 4);
    for (size_t i = 0; i < w.size(); ++i) {
        if (t == dtype::F32) std::memcpy(&w[i], &v[i], 4);
        else if (t == dtype::F16) w[i] = f32_to_fp16(v[2 * i]) | uint32_t(f32_to_fp16(v[2 * i + 1])) << 16;
        else w[i] = f32_to_bf16(v[2 * i]) | uint32_t(f32_to_bf16(v[2 * i + 1])) << 16;
    }
    return w;
}

// One fused launch per case, then the two ops alone: 3 dispatches.
void expect_fused_pairs(const profile_counts& p, unsigned long long n_cases) {
    ASSERT_TRUE(p.seen);
    EXPECT_EQ(p.fused, n_cases) << "one fused launch per case";
    EXPECT_EQ(p.dispatches, 3 * n_cases) << "the fused launch, then the two ops alone";
}

TEST(vk_fusion, add_rms_norm_bit_identical) {
    std::string why;
    if (!make_vk(&why)) GTEST_SKIP() << why;
    std::mt19937_64 rng(test_seed() + 61);
    unsigned long long n_cases = 0;
    const profile_counts p = with_vk([&](backend& dev) {
        for (int64_t rows : {1, 3, 5})
            for (int64_t k : {2048, 1000, 257, 33})
                for (bool bcast : {false, true})
                    for (add_norm_form f : {add_norm_form::decoder, add_norm_form::apart, add_norm_form::norm_in_place,
                                            add_norm_form::padded, add_norm_form::norm_over_a}) {
                        add_rms_norm_case(dev, rng, rows, k, bcast, f);
                        ++n_cases;
                    }
    });
    expect_fused_pairs(p, n_cases);
}

TEST(vk_fusion, rope_q_k_bit_identical) {
    std::string why;
    if (!make_vk(&why)) GTEST_SKIP() << why;
    std::mt19937_64 rng(test_seed() + 62);
    const rope_shape shapes[] = {
        {8, 4, 2, 8, 0, false, false, 10000.0f, 1.0f},          // the smallest head
        {64, 32, 8, 64, 0, false, false, 10000.0f, 1.0f},       // llama-like, the decoder's form (out of place)
        {128, 32, 8, 128, 2, false, false, 1000000.0f, 1.0f},   // neox (qwen2)
        {64, 32, 8, 32, 0, false, false, 10000.0f, 0.25f},      // n_rot < hd (dims >= n_rot copied), scaled
        {64, 8, 8, 64, 2, true, false, 500000.0f, 1.0f},        // frequency factors (llama 3)
        {64, 32, 8, 48, 2, true, true, 10000.0f, 1.0f},         // in place, neox, n_rot < hd, factors
        {96, 6, 2, 96, 0, false, true, 10000.0f, 1.0f},         // in place, normal
        {40, 5, 1, 20, 0, true, false, 10000.0f, 1.0f},         // one KV head, n_rot = hd / 2, factors
    };
    unsigned long long n_cases = 0;
    const profile_counts p = with_vk([&](backend& dev) {
        for (const rope_shape& s : shapes)
            for (int64_t n : {1, 3}) {
                rope_pair_case(dev, rng, s, n);
                ++n_cases;
            }
    });
    expect_fused_pairs(p, n_cases);
}

TEST(vk_fusion, kv_store_k_v_bit_identical) {
    std::string why;
    if (!make_vk(&why)) GTEST_SKIP() << why;
    std::mt19937_64 rng(test_seed() + 63);
    unsigned long long n_cases = 0;
    const profile_counts p = with_vk([&](backend& dev) {
        for (dtype t : {dtype::F16, dtype::BF16, dtype::F32})
            for (int64_t row : {512, 99})  // 99 halves: 16-bit cache rows start mid-word
                for (int64_t n : {1, 3})
                    for (int32_t first : {37, 61})  // 61 + 3 = 64: the last rows of the cache
                        for (bool one_buffer : {false, true}) {  // k and v caches side by side in one allocation
                            kv_store_pair_case(dev, rng, t, row, n, first, one_buffer);
                            ++n_cases;
                        }
    });
    expect_fused_pairs(p, n_cases);
}

// Pairs that must run op by op (pair_case.h's lookalikes; for Vulkan also two KV_STOREs whose rows share a 32-bit
// word): no fused launch at all, the op-by-op values.
TEST(vk_fusion, row_pair_lookalikes_run_op_by_op) {
    std::string why;
    if (!make_vk(&why)) GTEST_SKIP() << why;
    std::mt19937_64 rng(test_seed() + 64);
    const int64_t hd = 64, nh = 8, n = 3;
    const profile_counts p = with_vk([&](backend& dev) {
        for (rope_diff d : {rope_diff::pos, rope_diff::n_rot, rope_diff::mode, rope_diff::base, rope_diff::scale,
                            rope_diff::factors, rope_diff::reads_first_dst, rope_diff::writes_first_src})
            rope_lookalike(dev, rng, d, hd, nh, n);
        for (norm_diff d : {norm_diff::other_src, norm_diff::shifted_rows, norm_diff::dst_over_next_source,
                            norm_diff::weight_is_sum})
            norm_lookalike(dev, rng, d, hd * nh, n);
        for (store_diff d :
             {store_diff::first, store_diff::dtype_, store_diff::reads_first_dst, store_diff::shared_word})
            store_lookalike(dev, rng, d, n);
    });
    ASSERT_TRUE(p.seen);
    EXPECT_EQ(p.fused, 0u);
}

// ROPE q, ROPE k, KV_STORE k, KV_STORE v (pair_case.h rope_store_case): one rope_store launch where the k store
// reads the rotated k and the head rows are whole 32-bit words of the caches (f32, or an even head size and cache
// rows on word boundaries), else the ROPE pair and the KV pair (with 16-bit caches: odd head sizes, cache rows
// padded by 2 bytes; heads past the 256 floats the launch keeps; the lookalikes); every buffer bit-identical to the
// ops one by one, the results within test_ops' bounds of cpu-ref. Padding of 4 bytes keeps the launch.
TEST(vk_fusion, rope_store_four_ops_bit_identical) {
    std::string why;
    if (!make_vk(&why)) GTEST_SKIP() << why;
    std::mt19937_64 rng(test_seed() + 68);
    const rope_store_shape shapes[] = {
        {64, 32, 8, 64, 0, false},    // llama-like decode
        {128, 8, 2, 128, 2, true},    // neox, frequency factors
        {64, 8, 4, 32, 0, false},     // n_rot < hd: dims past n_rot copied
        {40, 5, 1, 20, 2, true},      // one KV head
        {9, 2, 2, 8, 0, false},       // odd head: its rows are not whole words of a 16-bit cache
        {256, 4, 2, 256, 2, false},   // the largest head the launch keeps
        {258, 2, 1, 256, 0, false},   // one past it
    };
    unsigned long long n_cases = 0, launches = 0;
    const profile_counts p = with_vk([&](backend& dev) {
        for (dtype t : {dtype::F16, dtype::BF16, dtype::F32})
            for (const rope_store_shape& s : shapes)
                for (int64_t n : {1, 3}) {
                    const bool words = s.hd <= 256 && (t == dtype::F32 || s.hd % 2 == 0);
                    for (rope_store_form f : {rope_store_form::decoder, rope_store_form::in_place,
                                              rope_store_form::store_unrotated, rope_store_form::v_is_rotated_k,
                                              rope_store_form::shifted_k_rows}) {
                        if (f == rope_store_form::shifted_k_rows && n == 1) continue;
                        rope_store_case(dev, rng, t, s, n, f);
                        const bool four = words && (f == rope_store_form::decoder || f == rope_store_form::in_place);
                        launches += four ? 1 : 2;
                        ++n_cases;
                    }
                    for (size_t pad : {2, 4}) {  // padded cache rows: every other row starts mid-word with 2
                        if (t == dtype::F32 && pad == 2) continue;  // f32 cache rows must be 4-byte strided
                        rope_store_case(dev, rng, t, s, n, rope_store_form::decoder, pad);
                        launches += words && pad == 4 ? 1 : 2;
                        ++n_cases;
                    }
                    if (HasFatalFailure()) return;
                }
    });
    ASSERT_TRUE(p.seen);
    EXPECT_EQ(p.fused, launches) << "rope_store, or the ROPE pair and the KV pair";
    EXPECT_EQ(p.fused_ops, 4 * n_cases);
    EXPECT_EQ(p.dispatches, launches + 4 * n_cases) << "the fused launches, then the four ops alone";
}

// A decoder layer's row-wise ops in one run() (pair_case.h's chain): three fused launches feeding each other
// through the barriers; TFU_VK_FUSION=0 none, with the same values.
TEST(vk_fusion, decoder_layer_chain) {
    std::string why;
    if (!make_vk(&why)) GTEST_SKIP() << why;
    std::mt19937_64 rng(test_seed() + 65);
    for (const char* fusion : {"1", "0"}) {
        const profile_counts p = with_vk(
            [&](backend& dev) {
                for (int64_t n : {1, 3}) decoder_chain_case(dev, rng, n, 64, 8, 2);
            },
            {{"TFU_VK_FUSION", fusion}});
        ASSERT_TRUE(p.seen);
        const bool on = fusion[0] == '1';
        EXPECT_EQ(p.fused, on ? 4u : 0u) << "fusion=" << fusion << ": ROPE + KV_STORE and ADD + RMS_NORM per chain";
        EXPECT_EQ(p.dispatches, 2 * ((on ? 2u : 6u) + 6u)) << "fusion=" << fusion;
    }
}

// Decode steps from kept command buffers (kernels_vk/vk_replay.h): a layer's ops at positions 0 .. 11, the same
// tensors every step, so from the third step on the one-run pass replays its recording (and each op-by-op run its
// own), KV_STORE's and ATTENTION's i[0] read on the device. Every step against the op-by-op pass (bit-identical)
// and cpu-ref: q, k, the stored rows, the attention over the cache, the residual sum and its norm. f16, bf16 and f32
// caches (filled with valid values: the attention reads every row up to the position).
TEST(vk_fusion, kept_decode_steps_with_fused_pairs) {
    std::string why;
    if (!make_vk(&why)) GTEST_SKIP() << why;
    std::mt19937_64 rng(test_seed() + 66);
    const int n_steps = 12;
    for (dtype t : {dtype::F16, dtype::BF16, dtype::F32}) {
        const profile_counts p = with_vk([&](backend& dev) {
            const int64_t hd = 32, nh = 4, nkv = 2, n_ctx = 16, e = hd * nh;
            pair_case c(dev);
            const size_t bq = c.buffer(rng, size_t(e) * 4, "q"), bk = c.buffer(rng, size_t(hd * nkv) * 4, "k");
            const size_t bv = c.buffer(rng, size_t(hd * nkv) * 4, "v");
            const size_t bqr = c.buffer(rng, size_t(e) * 4, "qr"), bkr = c.buffer(rng, size_t(hd * nkv) * 4, "kr");
            const size_t bp = c.buffer(rng, 4, "pos");
            const size_t cache_bytes = row_size(t, hd * nkv) * size_t(n_ctx);
            const size_t bck = c.buffer(rng, cache_bytes, "cache k"), bcv = c.buffer(rng, cache_bytes, "cache v");
            c.set(bck, 0, cache_words(rng, t, cache_bytes));
            c.set(bcv, 0, cache_words(rng, t, cache_bytes));
            const size_t batt = c.buffer(rng, size_t(e) * 4, "att");
            const size_t bx = c.buffer(rng, size_t(e) * 4, "x"), bxn = c.buffer(rng, size_t(e) * 4, "xn");
            const size_t bw = c.buffer(rng, size_t(e) * 4, "w");
            tensor* qr = c.view(bqr, 0, dtype::F32, hd, nh, 1);
            tensor* kr = c.view(bkr, 0, dtype::F32, hd, nkv, 1);
            tensor* ck = c.view(bck, 0, t, hd * nkv, n_ctx);
            tensor* cv = c.view(bcv, 0, t, hd * nkv, n_ctx);
            tensor* att = c.view(batt, 0, dtype::F32, hd, nh, 1);
            tensor* x = c.view(bx, 0, dtype::F32, e);
            tensor* xn = c.view(bxn, 0, dtype::F32, e);
            for (int32_t pos = 0; pos < n_steps; ++pos) {
                c.set(bp, 0, positions(pos, 1));
                op a = make_op(op_type::ATTENTION, att, qr, ck, cv);
                a.i[0] = pos;
                a.i[1] = int32_t(nkv);
                a.f[0] = float(1.0 / std::sqrt(double(hd)));
                tensor* p1 = c.view(bp, 0, dtype::I32, 1);
                c.run({rope_op(qr, c.view(bq, 0, dtype::F32, hd, nh, 1), p1, nullptr, int(hd), 2, 10000.0f, 1.0f),
                       rope_op(kr, c.view(bk, 0, dtype::F32, hd, nkv, 1), p1, nullptr, int(hd), 2, 10000.0f, 1.0f),
                       store_op(ck, c.view(bkr, 0, dtype::F32, hd * nkv), pos),
                       store_op(cv, c.view(bv, 0, dtype::F32, hd * nkv), pos), a,
                       make_op(op_type::ADD, x, x, c.view(batt, 0, dtype::F32, e)),
                       norm_op(xn, x, c.view(bw, 0, dtype::F32, e), 1e-5f)});
                const std::string what = std::string(dtype_name(t)) + " position " + std::to_string(pos);
                c.expect_identical(what);
                c.expect_close(qr, k_rope, what + " q");
                c.expect_close(kr, k_rope, what + " k");
                const size_t at = row_size(t, hd * nkv) * size_t(pos);
                // The k row holds the rotation rounded to the cache dtype (see decoder_layer_chain).
                const bound kb = t == dtype::F32 ? k_rope : t == dtype::F16 ? bound{1e-3, 4e-3} : bound{8e-3, 3e-2};
                c.expect_close(c.view(bck, at, t, hd * nkv), kb, what + " cache k");
                c.expect_close(c.view(bcv, at, t, hd * nkv), k_store, what + " cache v");
                c.expect_close(att, bound{1e-4, 1e-3}, what + " attention");
                c.expect_close(x, bound{1e-4, 1e-3}, what + " x");
                c.expect_close(xn, bound{1e-4, 1e-3}, what + " xn");
                if (HasFatalFailure()) return;
            }
        });
        ASSERT_TRUE(p.seen);
        // The one-run pass: first sight, recorded, then replayed; the 7 op-by-op runs likewise.
        EXPECT_EQ(p.replayed, 8u * (n_steps - 2)) << dtype_name(t);
        EXPECT_EQ(p.fused, 2u * n_steps) << dtype_name(t) << ": ROPE + KV_STORE and ADD + RMS_NORM every step";
    }
}

// The KV pair in kept command buffers: f16 caches of 33-element rows (rows start mid-word), two rows a step. After
// the first two runs (same first row for k and v: the recording fuses) k and v go to different rows, as nothing in
// the replay key stops them: each part reads its own i[0]. Adjacent caches in one allocation fuse (their words
// are apart wherever the rows go); caches interleaved row by row in one allocation (k row r, then v row r) fuse in
// a frame's recording (the rows of one i[0] are apart) but not in the kept one (other i[0]s would overlap them).
TEST(vk_fusion, kept_kv_pair_with_own_positions) {
    std::string why;
    if (!make_vk(&why)) GTEST_SKIP() << why;
    std::mt19937_64 rng(test_seed() + 67);
    const int n_steps = 16;
    for (bool interleaved : {false, true}) {
        const profile_counts p = with_vk([&](backend& dev) {
            const int64_t row = interleaved ? 34 : 33, n_ctx = 24, nn = interleaved ? 1 : 2;
            const size_t rb = row_size(dtype::F16, row), cache_bytes = rb * size_t(n_ctx);
            pair_case c(dev);
            const size_t bxk = c.buffer(rng, size_t(row * nn) * 4, "xk");
            const size_t bxv = c.buffer(rng, size_t(row * nn) * 4, "xv");
            const size_t bc = c.buffer(rng, 2 * cache_bytes, "caches");
            c.set(bc, 0, cache_words(rng, dtype::F16, 2 * cache_bytes));
            tensor* xk = c.view(bxk, 0, dtype::F32, row, nn);
            tensor* xv = c.view(bxv, 0, dtype::F32, row, nn);
            const size_t stride = interleaved ? 2 * rb : rb, v_at = interleaved ? rb : cache_bytes;
            tensor* ck = c.view(bc, 0, dtype::F16, row, n_ctx, 1, stride);
            tensor* cv = c.view(bc, v_at, dtype::F16, row, n_ctx, 1, stride);
            for (int s = 0; s < n_steps; ++s) {
                const int32_t fk = s < 2 ? 5 : int32_t(s % (n_ctx - 1));
                const int32_t fv = s < 2 ? 5 : int32_t((7 * s + 3) % (n_ctx - 1));
                c.run({store_op(ck, xk, fk), store_op(cv, xv, fv)});
                const std::string what = std::string(interleaved ? "interleaved" : "adjacent") + " step " +
                                         std::to_string(s) + " k at " + std::to_string(fk) + " v at " + std::to_string(fv);
                c.expect_identical(what);
                c.expect_close(c.view(bc, size_t(fk) * stride, dtype::F16, row, nn, 1, stride), k_store,
                               what + " k rows");
                c.expect_close(c.view(bc, v_at + size_t(fv) * stride, dtype::F16, row, nn, 1, stride), k_store,
                               what + " v rows");
                if (HasFatalFailure()) return;
            }
        });
        ASSERT_TRUE(p.seen);
        EXPECT_EQ(p.replayed, 3u * (n_steps - 2)) << "the one-run pass and both op-by-op runs";
        // Adjacent: the first run (a frame's), the recording, every replay. Interleaved: the first run only.
        EXPECT_EQ(p.fused, interleaved ? 1u : unsigned(n_steps)) << (interleaved ? "interleaved" : "adjacent");
    }
}

// The four-op launch in kept command buffers: the recording's stores take both device-read slots, k's first and
// v's second, as two KV_STOREs do. After the first two runs (same first row for k and v: the recording fuses) k and
// v go to different rows, ROPE to other positions: each store reads its own i[0]. f16 caches (whole words: fused)
// and 39-float heads with bf16 caches (odd head rows: the ROPE pair and the KV pair, recorded the same way).
TEST(vk_fusion, kept_rope_store_with_own_positions) {
    std::string why;
    if (!make_vk(&why)) GTEST_SKIP() << why;
    std::mt19937_64 rng(test_seed() + 69);
    const int n_steps = 16;
    for (bool odd : {false, true}) {
        const profile_counts p = with_vk([&](backend& dev) {
            const int64_t hd = odd ? 39 : 64, nh = 8, nkv = 2, n_ctx = 24, row = hd * nkv;
            const int n_rot = odd ? 38 : 64;
            const dtype t = odd ? dtype::BF16 : dtype::F16;
            const size_t rb = row_size(t, row), cache_bytes = rb * size_t(n_ctx);
            pair_case c(dev);
            const size_t bq = c.buffer(rng, size_t(hd * nh) * 4, "q"), bk = c.buffer(rng, size_t(row) * 4, "k");
            const size_t bv = c.buffer(rng, size_t(row) * 4, "v");
            const size_t bqr = c.buffer(rng, size_t(hd * nh) * 4, "qr"), bkr = c.buffer(rng, size_t(row) * 4, "kr");
            const size_t bp = c.buffer(rng, 4, "pos");
            const size_t bck = c.buffer(rng, (cache_bytes + 3) / 4 * 4, "cache k");
            const size_t bcv = c.buffer(rng, (cache_bytes + 3) / 4 * 4, "cache v");
            tensor* qr = c.view(bqr, 0, dtype::F32, hd, nh, 1);
            tensor* kr = c.view(bkr, 0, dtype::F32, hd, nkv, 1);
            tensor* ck = c.view(bck, 0, t, row, n_ctx);
            tensor* cv = c.view(bcv, 0, t, row, n_ctx);
            for (int s = 0; s < n_steps; ++s) {
                const int32_t fk = s < 2 ? 5 : int32_t(s % n_ctx);
                const int32_t fv = s < 2 ? 5 : int32_t((7 * s + 3) % n_ctx);
                c.set(bp, 0, positions(s < 2 ? 5 : 1000 + 37 * s, 1));
                tensor* p1 = c.view(bp, 0, dtype::I32, 1);
                c.run({rope_op(qr, c.view(bq, 0, dtype::F32, hd, nh, 1), p1, nullptr, n_rot, 0, 10000.0f, 1.0f),
                       rope_op(kr, c.view(bk, 0, dtype::F32, hd, nkv, 1), p1, nullptr, n_rot, 0, 10000.0f, 1.0f),
                       store_op(ck, c.view(bkr, 0, dtype::F32, row), fk),
                       store_op(cv, c.view(bv, 0, dtype::F32, row), fv)});
                const std::string what = std::string(odd ? "odd" : "f16") + " step " + std::to_string(s) + " k at " +
                                         std::to_string(fk) + " v at " + std::to_string(fv);
                c.expect_identical(what);
                c.expect_close(qr, k_rope, what + " q");
                c.expect_close(kr, k_rope, what + " k");
                const bound kb = t == dtype::F16 ? bound{1e-3, 4e-3} : bound{8e-3, 3e-2};
                c.expect_close(c.view(bck, size_t(fk) * rb, t, row), kb, what + " cache k");
                c.expect_close(c.view(bcv, size_t(fv) * rb, t, row), k_store, what + " cache v");
                if (HasFatalFailure()) return;
            }
        });
        ASSERT_TRUE(p.seen);
        EXPECT_EQ(p.replayed, 5u * (n_steps - 2)) << "the one-run pass and the four op-by-op runs";
        // The first run (a frame's), the recording, every replay: one launch each (two for the pairs).
        EXPECT_EQ(p.fused, (odd ? 2u : 1u) * n_steps) << (odd ? "odd" : "f16");
    }
}

// stories260K through the engine: dispatches of one decode step (the difference between generating 9 and 1
// tokens, over 8) with fusion off and on.
TEST(vk_fusion, stories260k_dispatches_per_decode_step) {
    std::string why;
    if (!make_vk(&why)) GTEST_SKIP() << why;
    const std::string path = std::string(TFU_SHARED_DIR) + "/models/stories260K.gguf";
    int32_t n_layer = 0;
    bool subgroups = false;
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
        subgroups = cap.saw("reductions with subgroupAdd") && !cap.saw("subgroup arithmetic not used");
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
    // Per layer 9 fewer: Q/K/V 3 -> 1, gate/up + SWIGLU 3 -> 1, ROPE q + k + KV_STORE k + v 4 -> 1, and both residual
    // ADDs in their projections' launches. With subgroup arithmetic both RMS_NORMs go into the launches after them
    // (Q/K/V, gate/up: 2 fewer a layer), and so does the output norm (the output projection has 512 rows: few
    // enough); without, the FFN's RMS_NORM runs alone, and the last layer's second ADD joins the output norm.
    EXPECT_EQ(off_step - on_step, subgroups ? 11.0 * n_layer + 1 : 9.0 * n_layer);
}

}  // namespace
}  // namespace tfu::test
