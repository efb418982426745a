// The Vulkan backend's kept command buffers (kernels_vk/vk_replay.h): decode-sized runs seen twice are recorded
// once and re-submitted with KV_STORE's and ATTENTION's i[0] read on the device. Here:
//  - decode steps of two layers (MUL_MAT q = Wq x, KV_STORE k, KV_STORE v, ATTENTION over f16 caches) at
//    positions 0 .. 299, each step against cpu-ref, some steps not downloaded in between (the next step's
//    uploads and run queue behind, and the same kept buffer comes back while earlier work is in flight); the
//    profile log (TFU_VK_PROFILE=1) must count the replays;
//  - the same with TFU_VK_REPLAY=0 (nothing replayed, same values);
//  - KV_STORE alone into a cache whose rows are 2-byte strided (rows start mid-word at odd positions: the kept
//    launch must cover the words of any start), the whole cache against cpu-ref;
//  - more distinct keys than the cache keeps (LRU eviction of kept runs that may still be pending).
// Run under TFU_VK_VALIDATION=1 and =sync in CI. Skips when no Vulkan device is usable.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "ops/device_test_util.h"

namespace tfu::test {
namespace {

// A Vulkan backend created with TFU_VK_PROFILE=1 (and TFU_VK_REPLAY=replay unless null) whose log is captured
// into captured_log until release() (which destroys it: the profile lines are logged then).
struct profiled_vk {
    std::unique_ptr<backend> dev;
    std::string why;
    explicit profiled_vk(const char* replay) {
        setenv("TFU_VK_PROFILE", "1", 1);
        if (replay) setenv("TFU_VK_REPLAY", replay, 1);
        start_log_capture();
        dev = backend_or_null(TFU_BACKEND_VULKAN, &why);
        unsetenv("TFU_VK_PROFILE");
        unsetenv("TFU_VK_REPLAY");
        if (!dev) stop_log_capture();
    }
    void release() {
        dev.reset();
        stop_log_capture();
    }
    ~profiled_vk() { release(); }
};

// The counters of the profile line "vulkan: replay on|off: R runs replayed, C recorded, K kept, E evicted; ...".
struct replay_counts {
    bool seen = false;
    unsigned long long replayed = 0, recorded = 0, kept = 0, evicted = 0;
};
replay_counts parse_replay_line(const std::string& log) {
    replay_counts c;
    const size_t at = log.find("vulkan: replay ");
    if (at == std::string::npos) return c;
    const size_t colon = log.find(": ", at + 15);
    c.seen = colon != std::string::npos &&
             std::sscanf(log.c_str() + colon + 2, "%llu runs replayed, %llu recorded, %llu kept, %llu evicted",
                         &c.replayed, &c.recorded, &c.kept, &c.evicted) == 4;
    return c;
}

// Decode steps of two layers at positions 0 .. n_steps - 1: each layer's run computes q = Wq x (f32 weight), stores
// k and v at the position in its f16 caches and attends over rows 0 .. pos. Returns the largest relative L2
// error of the attention output against cpu-ref.
double decode_steps(backend& dev, int n_steps) {
    std::mt19937_64 rng(test_seed() + 41);
    const int64_t hd = 64, n_head = 4, n_head_kv = 2, n_ctx = 320, n_embd = 96;
    std::unique_ptr<backend> ref = make_cpu_ref_backend();
    owned_tensor x(dtype::F32, n_embd), q(dtype::F32, hd * n_head), kx(dtype::F32, hd * n_head_kv),
        vx(dtype::F32, hd * n_head_kv), att(dtype::F32, hd, n_head, 1);
    owned_tensor wq[2] = {owned_tensor(dtype::F32, n_embd, hd * n_head), owned_tensor(dtype::F32, n_embd, hd * n_head)};
    const int64_t kv_row = hd * n_head_kv;
    owned_tensor kc[2] = {owned_tensor(dtype::F16, kv_row, n_ctx), owned_tensor(dtype::F16, kv_row, n_ctx)};
    owned_tensor vc[2] = {owned_tensor(dtype::F16, kv_row, n_ctx), owned_tensor(dtype::F16, kv_row, n_ctx)};
    for (int l = 0; l < 2; ++l) fill_random(rng, wq[l].t, 0.2f);
    fill_random(rng, x.t);  // the device's copies are made from these (the caches' rows are all written before read)
    dev_tensor dx(dev, x.t), dq(dev, q.t), dkx(dev, kx.t), dvx(dev, vx.t), datt(dev, att.t);
    std::unique_ptr<dev_tensor> dwq[2], dkc[2], dvc[2];
    for (int l = 0; l < 2; ++l) {
        dwq[l] = std::make_unique<dev_tensor>(dev, wq[l].t);
        dkc[l] = std::make_unique<dev_tensor>(dev, kc[l].t);
        dvc[l] = std::make_unique<dev_tensor>(dev, vc[l].t);
    }
    std::vector<float> got(size_t(hd * n_head));
    double worst = 0;
    for (int pos = 0; pos < n_steps; ++pos) {
        for (int l = 0; l < 2; ++l) {
            dx.refill(rng, x.t);
            dkx.refill(rng, kx.t);
            dvx.refill(rng, vx.t);
            auto step = [&](tensor* a, tensor* xx, tensor* w, tensor* qq, tensor* k, tensor* v, tensor* ck,
                            tensor* cv, std::vector<tensor>& views) {
                views = {make_tensor(dtype::F32, hd, n_head, 1, 1, qq->data)};  // q as (hd, n_head, 1)
                std::vector<op> ops = {make_op(op_type::MUL_MAT, qq, w, xx), make_op(op_type::KV_STORE, ck, k),
                                       make_op(op_type::KV_STORE, cv, v),
                                       make_op(op_type::ATTENTION, a, &views[0], ck, cv)};
                ops[1].i[0] = ops[2].i[0] = ops[3].i[0] = pos;
                ops[3].i[1] = int32_t(n_head_kv);
                ops[3].f[0] = float(1.0 / std::sqrt(double(hd)));
                return ops;
            };
            std::vector<tensor> hv, dv;
            const std::vector<op> h = step(&att.t, &x.t, &wq[l].t, &q.t, &kx.t, &vx.t, &kc[l].t, &vc[l].t, hv);
            const std::vector<op> d =
                step(&datt.t, &dx.t, &dwq[l]->t, &dq.t, &dkx.t, &dvx.t, &dkc[l]->t, &dvc[l]->t, dv);
            ref->run(h.data(), h.size());
            dev.run(d.data(), d.size());
            if (pos % 7 == 3 && l == 0) continue;  // no download: the next step's uploads and run queue behind
            dev.download(got.data(), datt.t.data, got.size() * sizeof(float));
            const double e = rel_l2(got, to_floats(att.t));
            EXPECT_LE(e, 1e-5) << "position " << pos << " layer " << l;
            worst = std::max(worst, e);
            if (e > 1e-5) return worst;  // one failure is enough
        }
    }
    return worst;
}

TEST(vk_replay, decode_steps_replay_with_positions_on_the_device) {
    profiled_vk vk(nullptr);
    if (!vk.dev) GTEST_SKIP() << vk.why;
    const double worst = decode_steps(*vk.dev, 300);
    vk.release();  // logs the profile, with the replay counters
    std::printf("decode steps (replay on): max relative L2 error %.3g\n%s", worst, captured_log.c_str());
    const replay_counts c = parse_replay_line(captured_log);
    ASSERT_TRUE(c.seen) << captured_log;
    // 600 runs of 4 keys: per layer one up to 256 rows and one from 257 rows on (ATTENTION's split-K count, part of
    // the key: 3 splits there, kernels_vk/vk_ops.cpp attention_splits); each key's first run seen once, its second
    // recorded, the rest replayed: 600 - 8.
    EXPECT_EQ(c.recorded, 4u) << captured_log;
    EXPECT_EQ(c.replayed, 592u) << captured_log;
    EXPECT_EQ(c.kept, 4u) << captured_log;
}

TEST(vk_replay, off_by_environment_gives_the_same_values) {
    profiled_vk vk("0");
    if (!vk.dev) GTEST_SKIP() << vk.why;
    const double worst = decode_steps(*vk.dev, 80);
    vk.release();
    std::printf("decode steps (TFU_VK_REPLAY=0): max relative L2 error %.3g\n%s", worst, captured_log.c_str());
    const replay_counts c = parse_replay_line(captured_log);
    ASSERT_TRUE(c.seen) << captured_log;
    EXPECT_NE(captured_log.find("vulkan: replay off"), std::string::npos) << captured_log;
    EXPECT_EQ(c.replayed, 0u);
    EXPECT_EQ(c.recorded, 0u);
}

// KV_STORE of 2 rows at first row s = 0 .. n_ctx - 2 into an f16 cache of 33-element rows (66 bytes: odd rows
// start mid-word), every run a replay of one kept buffer after the second; the cache against cpu-ref at the end
// and at some steps on the way (rows written twice, the later value wins in both).
TEST(vk_replay, kv_store_rows_starting_mid_word) {
    profiled_vk vk(nullptr);
    if (!vk.dev) GTEST_SKIP() << vk.why;
    backend& dev = *vk.dev;
    std::mt19937_64 rng(test_seed() + 42);
    const int64_t ne0 = 33, n_ctx = 64;
    std::unique_ptr<backend> ref = make_cpu_ref_backend();
    owned_tensor x(dtype::F32, ne0, 2), c(dtype::F16, ne0, n_ctx);
    fill_random(rng, c.t);  // bytes around the stored rows must stay as they are
    {
        dev_tensor dx(dev, x.t), dc(dev, c.t);
        std::vector<uint16_t> got(size_t(c.t.nbytes() / 2));
        for (int s = 0; s + 1 < n_ctx; ++s) {
            dx.refill(rng, x.t);
            op h = make_op(op_type::KV_STORE, &c.t, &x.t), d = make_op(op_type::KV_STORE, &dc.t, &dx.t);
            h.i[0] = d.i[0] = s;
            ref->run(&h, 1);
            dev.run(&d, 1);
            if (s % 5 != 4 && s + 2 < n_ctx) continue;
            dev.download(got.data(), dc.t.data, c.t.nbytes());
            ASSERT_EQ(std::memcmp(got.data(), c.t.data, c.t.nbytes()), 0) << "after first row " << s;
        }
    }
    vk.release();
    const replay_counts cnt = parse_replay_line(captured_log);
    ASSERT_TRUE(cnt.seen) << captured_log;
    EXPECT_EQ(cnt.recorded, 1u) << captured_log;
    EXPECT_EQ(cnt.replayed, uint64_t(n_ctx - 1 - 2)) << captured_log;
}

// 150 distinct keys (ADD into 150 different rows), each run three times round-robin with no download between
// rounds: more keys than the cache keeps (128), so kept runs are evicted (possibly while pending) and recorded
// again; the rows against cpu-ref at the end.
TEST(vk_replay, eviction_of_kept_runs) {
    profiled_vk vk(nullptr);
    if (!vk.dev) GTEST_SKIP() << vk.why;
    backend& dev = *vk.dev;
    std::mt19937_64 rng(test_seed() + 43);
    const int64_t ne0 = 64, n_rows = 150;
    std::unique_ptr<backend> ref = make_cpu_ref_backend();
    owned_tensor acc(dtype::F32, ne0, n_rows), b(dtype::F32, ne0);
    fill_random(rng, acc.t);
    fill_random(rng, b.t);
    {
        dev_tensor dacc(dev, acc.t), db(dev, b.t);
        for (int round = 0; round < 3; ++round)
            for (int64_t r = 0; r < n_rows; ++r) {
                tensor hr = make_tensor(dtype::F32, ne0, 1, 1, 1, acc.t.row(r));
                tensor dr = make_tensor(dtype::F32, ne0, 1, 1, 1, static_cast<char*>(dacc.t.data) + r * acc.t.nb[1]);
                const op h = make_op(op_type::ADD, &hr, &hr, &b.t), d = make_op(op_type::ADD, &dr, &dr, &db.t);
                ref->run(&h, 1);
                dev.run(&d, 1);
            }
        std::vector<float> got(size_t(ne0 * n_rows));
        dev.download(got.data(), dacc.t.data, got.size() * sizeof(float));
        EXPECT_LE(rel_l2(got, to_floats(acc.t)), 1e-6);
    }
    vk.release();
    std::printf("%s", captured_log.c_str());
    const replay_counts c = parse_replay_line(captured_log);
    ASSERT_TRUE(c.seen) << captured_log;
    EXPECT_GT(c.evicted, 0u) << captured_log;
    EXPECT_LE(c.kept, 128u) << captured_log;
    EXPECT_EQ(c.recorded - c.evicted, c.kept) << captured_log;
}

}  // namespace
}  // namespace tfu::test
