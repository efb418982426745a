// The Vulkan contiguous-cache ATTENTION against cpu-ref, beyond test_ops' short contexts: attention.comp (128 rows
// per chunk, one thread per K row for the scores, teams of threads per channel pair for P.V, pipelines specialized
// per K/V dtype, head size and row alignment) and attention_lanes.comp (f16/bf16 caches with 16-byte aligned head
// rows of 8 LPR channels, LPR lanes of a subgroup per row, where the device has subgroup shuffles; on lavapipe's
// 8-lane subgroups heads of 8 .. 64; TFU_VK_SUBGROUP=0 runs everything on attention.comp):
//  - long contexts (1000 and 3000 rows, decode n = 1 and a batch of 3 queries), head sizes 8, 64, 80, 128, 256,
//    GQA groups 1 and 4, every K x V pair of f32, f16 and bf16;
//  - contexts right at the 128-row chunk boundaries (127, 128, 129, 255, 256, 257 rows seen by the last query);
//  - odd head sizes (7, 63: f16/bf16 head rows that start mid-word, the unaligned loads), caches with padded rows
//    starting 4 bytes into their allocation;
//  - a decode loop of single-op runs, which the backend keeps and replays (n_past read on the device: `dyn`);
//  - split-K (kernels_vk/vk_ops.cpp attention_splits: above 256 rows and below 256 (query, head) blocks, the rows
//    are split over min(ceil(1024 / blocks), ceil(rows / 128), 64) workgroups per (query, head), merged by
//    attention_merge.comp): contexts of 257, 300, 1000, 3000 and 4100 rows, n = 1 and 3, GQA 1 and 4, every dtype
//    pair at head size 64 and some at 8, 128, 256; that the split path is taken (its sums differ in the last bits
//    from TFU_VK_ATTN_SPLIT=0's); and decode loops (KV_STORE k, v then ATTENTION, caches NaN until stored) across
//    the split count's changes at 256/257, 384/385, 512/513 rows, kept and replayed (the key holds the split
//    count: exactly one recording per count) and with TFU_VK_REPLAY=0;
//  - attention_lanes: head sizes 8 .. 256, contexts of 1 .. 700 rows (fewer rows than subgroups, short decode,
//    split), n = 1 and 3, GQA 1 and 4, its 1, 2, 4 and 8 rows per step (TFU_VK_ATTN_ROWS), 16-byte aligned padded
//    rows (taken) and 4-byte ones (attention.comp); that it is taken where the device offers it (its sums differ in
//    the last bits from TFU_VK_ATTN_LANES=0's); 1, 2 and 4 query heads per workgroup (TFU_VK_ATTN_GQ) over GQA
//    groups 1, 2 and 4 and 1 .. 12 queries, and that prefill takes 4.
// Rows past the last query's position hold NaN: reading one would poison the output. Bounds: test_ops' ATTENTION
// bounds (relative L2 1e-5, max error 1e-4 of the reference's rms; f32 online softmax against cpu-ref's double
// two-pass softmax). Inputs random from the printed seed (test_seed()). Run under TFU_VK_VALIDATION=1 in CI.
// Skips when no Vulkan device is usable.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>

#include "ops/device_test_util.h"

namespace tfu::test {
namespace {

constexpr double k_rel_l2 = 1e-5, k_max_rms = 1e-4;  // test_ops.cpp's ATTENTION bounds

struct shape {
    int64_t hd, n_head, n_head_kv, n, n_past;
};

std::string describe(const shape& s, dtype kt, dtype vt) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "K %s V %s hd=%lld heads=%lld/%lld n=%lld n_past=%lld", dtype_name(kt),
                  dtype_name(vt), (long long)s.hd, (long long)s.n_head, (long long)s.n_head_kv, (long long)s.n,
                  (long long)s.n_past);
    return buf;
}

// rel L2 and max |error| / rms(want) of got against want; non-finite values counted.
void expect_close(const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
    ASSERT_EQ(got.size(), want.size());
    double num = 0, den = 0, max_err = 0;
    int64_t bad = 0;
    for (size_t i = 0; i < want.size(); ++i) {
        if (!std::isfinite(got[i])) {
            ++bad;
            continue;
        }
        const double e = std::fabs(double(got[i]) - want[i]);
        num += e * e;
        den += double(want[i]) * want[i];
        max_err = std::max(max_err, e);
    }
    const double rms = std::sqrt(den / double(want.size()));
    EXPECT_EQ(bad, 0) << what << ": non-finite outputs";
    EXPECT_LE(std::sqrt(num / den), k_rel_l2) << what;
    EXPECT_LE(max_err / rms, k_max_rms) << what;
}

class vk_attention : public ::testing::Test {
protected:
    void SetUp() override {
        std::string why;
        vk_ = backend_or_null(TFU_BACKEND_VULKAN, &why);
        if (!vk_) GTEST_SKIP() << why;
        rng_.seed(test_seed());
    }

    // One ATTENTION op on cpu-ref and on the device. The caches hold n_past + n rows plus `extra` NaN rows, row
    // stride padded by `pad` bytes and starting `lead` bytes into their allocation (both multiples of 4).
    // Returns the device's output.
    std::vector<float> check(const shape& s, dtype kt, dtype vt, size_t lead = 0, size_t pad = 0, int64_t extra = 24) {
        const std::string what = describe(s, kt, vt) + " lead=" + std::to_string(lead) + " pad=" + std::to_string(pad);
        SCOPED_TRACE(what);
        device_case dc(*vk_);
        const int64_t rows = s.n_past + s.n, n_ctx = rows + extra, width = s.hd * s.n_head_kv;
        tensor* q = dc.add(rng_, dtype::F32, s.hd * s.n_head, s.n, true);
        q->ne[0] = s.hd;  // (hd, n_head, n) over the same contiguous memory
        q->ne[1] = s.n_head;
        q->ne[2] = s.n;
        q->nb[1] = size_t(s.hd) * 4;
        q->nb[2] = q->nb[1] * size_t(s.n_head);
        q->nb[3] = q->nb[2] * size_t(s.n);
        tensor* k = dc.add_strided(kt, width, n_ctx, row_size(kt, width) + pad, lead, 0x7f);
        tensor* v = dc.add_strided(vt, width, n_ctx, row_size(vt, width) + pad, lead, 0x7f);
        std::vector<float> nan_row(size_t(width), std::nanf(""));
        for (int64_t r = 0; r < n_ctx; ++r) {
            std::vector<float> kr = random_floats(rng_, size_t(width)), vr = random_floats(rng_, size_t(width));
            quantize_row(kt, r < rows ? kr.data() : nan_row.data(), k->row(r), width);
            quantize_row(vt, r < rows ? vr.data() : nan_row.data(), v->row(r), width);
        }
        tensor* d = dc.add(rng_, dtype::F32, s.hd * s.n_head, s.n, false);
        d->ne[0] = s.hd;
        d->ne[1] = s.n_head;
        d->ne[2] = s.n;
        d->nb[1] = size_t(s.hd) * 4;
        d->nb[2] = d->nb[1] * size_t(s.n_head);
        d->nb[3] = d->nb[2] * size_t(s.n);
        op o = make_op(op_type::ATTENTION, d, q, k, v);
        o.i[0] = int32_t(s.n_past);
        o.i[1] = int32_t(s.n_head_kv);
        o.f[0] = float(1.0 / std::sqrt(double(s.hd)));
        std::string why;
        const bool ok = vk_->supports(o, &why);
        EXPECT_TRUE(ok) << why;
        if (!ok) return {};
        dc.run({o});
        std::vector<float> got = dc.device_values(d);
        expect_close(got, std::vector<float>(d->ptr<float>(), d->ptr<float>() + d->nelements()), what);
        return got;
    }

    // How many outputs of shape s (f16 caches) differ between a run with env `name`=0 and one without it, from the
    // same seed; both are checked against cpu-ref. (A path that sums in another order differs in some last bits.)
    size_t differ_with_env_off(const shape& s, const char* name, uint64_t seed) {
        rng_.seed(seed);
        setenv(name, "0", 1);
        const std::vector<float> off = check(s, dtype::F16, dtype::F16);
        unsetenv(name);
        rng_.seed(seed);
        const std::vector<float> on = check(s, dtype::F16, dtype::F16);
        EXPECT_EQ(off.size(), on.size());
        size_t differ = 0;
        for (size_t i = 0; i < std::min(off.size(), on.size()); ++i) differ += off[i] != on[i];
        std::printf("%s=0 against the default: %zu of %zu outputs differ\n", name, differ, on.size());
        return differ;
    }

    std::unique_ptr<backend> vk_;
    std::mt19937_64 rng_;
};

const dtype k_types[] = {dtype::F32, dtype::F16, dtype::BF16};

TEST_F(vk_attention, long_contexts_every_dtype_pair) {
    const shape shapes[] = {
        {64, 8, 2, 1, 999},  {128, 4, 4, 1, 2999}, {80, 4, 1, 3, 997}, {8, 8, 2, 1, 2999},
        {64, 4, 1, 1, 2999}, {256, 2, 2, 1, 999},  {128, 8, 2, 3, 2998},
    };
    int i = 0;
    for (const shape& s : shapes)
        for (dtype kt : k_types)
            for (dtype vt : k_types)
                if ((i++ % 3) == 0 || s.hd == 64) check(s, kt, vt);  // every pair on hd 64, a third elsewhere
}

TEST_F(vk_attention, chunk_boundaries) {
    for (int64_t n_kv : {1, 2, 127, 128, 129, 255, 256, 257, 384, 385})
        for (int64_t n : {1, 2}) {
            if (n_kv - n < 0) continue;
            check({64, 8, 2, n, n_kv - n}, dtype::F16, dtype::F16);
            check({80, 4, 4, n, n_kv - n}, dtype::BF16, dtype::F32);
        }
}

TEST_F(vk_attention, head_sizes_and_groups) {
    for (int64_t hd : {1, 2, 7, 8, 24, 64, 80, 96, 128, 200, 256})
        for (int64_t group : {1, 4}) {
            const shape s{hd, group == 1 ? 4 : 8, group == 1 ? 4 : 2, 2, 300};
            check(s, dtype::F16, dtype::BF16);
            check(s, dtype::F32, dtype::F16);
        }
}

// Head rows that start mid-word: an odd head size of a 16-bit cache (KV head 1 starts at byte 2 mod 4), also with
// padded rows starting 4 bytes into their allocation. (The backend binds only 4-byte aligned tensors.)
TEST_F(vk_attention, unaligned_rows) {
    for (dtype kt : {dtype::F16, dtype::BF16})
        for (dtype vt : {dtype::F16, dtype::BF16, dtype::F32}) {
            check({7, 4, 2, 3, 200}, kt, vt);
            check({63, 4, 2, 1, 500}, kt, vt);
            check({7, 4, 4, 2, 130}, kt, vt, 4, 4);
        }
}

// A decode loop: the same single-op run with n_past growing. From the second sight the backend keeps the run's
// command buffer and replays it, reading n_past from its parameter buffer; every step must match cpu-ref.
TEST_F(vk_attention, kept_run_decode_loop) {
    for (dtype kt : {dtype::F16, dtype::F32}) {
        const shape s{64, 8, 2, 1, 0};
        device_case dc(*vk_);
        const int64_t n_ctx = 400, width = s.hd * s.n_head_kv;
        tensor* q = dc.add(rng_, dtype::F32, s.hd * s.n_head, 1, true);
        q->ne[0] = s.hd;
        q->ne[1] = s.n_head;
        q->nb[1] = size_t(s.hd) * 4;
        tensor* k = dc.add(rng_, kt, width, n_ctx, true);
        tensor* v = dc.add(rng_, dtype::BF16, width, n_ctx, true);
        tensor* d = dc.add(rng_, dtype::F32, s.hd * s.n_head, 1, false);
        d->ne[0] = s.hd;
        d->ne[1] = s.n_head;
        d->nb[1] = size_t(s.hd) * 4;
        op o = make_op(op_type::ATTENTION, d, q, k, v);
        o.i[1] = int32_t(s.n_head_kv);
        o.f[0] = 0.125f;
        for (int32_t n_past : {5, 126, 127, 128, 200, 255, 256, 300, 399}) {
            o.i[0] = n_past;
            dc.run({o});
            expect_close(dc.device_values(d), std::vector<float>(d->ptr<float>(), d->ptr<float>() + d->nelements()),
                         std::string("kept run ") + dtype_name(kt) + " n_past=" + std::to_string(n_past));
        }
    }
}

// Split-K: every context splits (rows > 256, blocks = n_head x n <= 24 < 256): e.g. 4100 rows, 8 heads, n = 1:
// min(128, 33, 64) = 33 splits of 125 rows; 257 rows: 3 splits of 86.
TEST_F(vk_attention, split_contexts_every_dtype_pair) {
    for (int64_t rows : {257, 300, 1000, 3000, 4100})
        for (int64_t n : {1, 3})
            for (int64_t group : {1, 4}) {
                const shape s{64, group == 1 ? 4 : 8, group == 1 ? 4 : 2, n, rows - n};
                for (dtype kt : k_types)
                    for (dtype vt : k_types) check(s, kt, vt);
            }
    for (int64_t rows : {300, 4100})
        for (int64_t n : {1, 3}) {
            check({8, 8, 2, n, rows - n}, dtype::F16, dtype::F16);
            check({128, 4, 1, n, rows - n}, dtype::BF16, dtype::F32);
            check({256, 2, 2, n, rows - n}, dtype::F32, dtype::BF16);
            check({63, 4, 2, n, rows - n}, dtype::F16, dtype::BF16);  // unaligned 16-bit head rows
        }
    check({64, 32, 8, 1, 4095}, dtype::F16, dtype::F16);  // a 1B Llama's decode step at 4K: 32 splits of 128 rows
    check({64, 100, 100, 3, 997}, dtype::F16, dtype::F32);  // 300 blocks: no split (the device is full)
}

// The split path is really taken: the same case with TFU_VK_ATTN_SPLIT=0 (one workgroup per (query, head)) sums
// in another order, so some output differs in its last bits; both match cpu-ref.
TEST_F(vk_attention, split_path_is_taken) {
    EXPECT_GT(differ_with_env_off({64, 8, 2, 1, 2999}, "TFU_VK_ATTN_SPLIT", test_seed() + 7), 0u);
}

// attention_lanes.comp's shapes: heads of 8 LPR channels (lavapipe's 8-lane subgroups take up to 64, wider
// subgroups all of them), contexts shorter than the workgroup's subgroups, a decode step's 64 .. 256 rows, split
// contexts; rows per step 1, 2, 4, 8; caches whose rows are 16-byte aligned with padding and a lead (lanes) and
// only 4-byte aligned (attention.comp).
TEST_F(vk_attention, lanes_shapes_and_rows_per_step) {
    for (const char* rows : {"1", "2", "4", "8"}) {
        setenv("TFU_VK_ATTN_ROWS", rows, 1);
        SCOPED_TRACE(std::string("rows per step ") + rows);
        for (int64_t hd : {8, 16, 32, 64, 128, 256})
            for (int64_t n_kv : {1, 3, 37, 192, 256, 700}) {
                if (hd >= 128 && n_kv == 37) continue;
                const int64_t n = n_kv == 37 || n_kv == 700 ? 3 : 1;
                check({hd, 8, 2, n, n_kv - n}, dtype::F16, dtype::F16);
                check({hd, 4, 4, n, n_kv - n}, dtype::BF16, dtype::F16, 16, 16);  // 16-byte aligned padded rows
            }
        check({64, 8, 2, 1, 150}, dtype::F16, dtype::BF16, 4, 4);  // 4-byte aligned rows: attention.comp
        if (HasFailure()) break;
    }
    unsetenv("TFU_VK_ATTN_ROWS");
}

// Whether the device offers attention_lanes: the features log line says "shuffle yes" (subgroup arithmetic and
// shuffles in compute) and TFU_VK_SUBGROUP is not 0.
bool lanes_offered() {
    if (const char* e = std::getenv("TFU_VK_SUBGROUP"); e && std::strcmp(e, "0") == 0) return false;
    start_log_capture();
    std::string why;
    std::unique_ptr<backend> dev = backend_or_null(TFU_BACKEND_VULKAN, &why);
    stop_log_capture();
    return dev && captured_log.find("shuffle yes") != std::string::npos;
}

// attention_lanes is really taken where offered: the same decode-sized case with TFU_VK_ATTN_LANES=0
// (attention.comp) sums in another order, so some output differs in its last bits; both match cpu-ref.
TEST_F(vk_attention, lanes_path_is_taken) {
    if (!lanes_offered()) GTEST_SKIP() << "no subgroup shuffles (or TFU_VK_SUBGROUP=0): attention.comp only";
    EXPECT_GT(differ_with_env_off({64, 32, 8, 1, 150}, "TFU_VK_ATTN_LANES", test_seed() + 8), 0u);
}

// attention_lanes with GQ query heads of one KV head per workgroup (TFU_VK_ATTN_GQ; prefill, more than 8 queries,
// takes 4 by default): asked for 1, 2, 4 and by default, over groups 1, 2 and 4 (a count that does not divide the
// group falls back to the largest power of 2 that does), 1, 3 and 12 queries, head sizes 8, 64, 128, contexts of
// 1 .. 612 rows (600 with one query: split), against cpu-ref. Then that 12 queries of group 4 launched
// n x n_head / 4 workgroups (the profile's per-launch label, TFU_VK_PROFILE=gpu).
TEST_F(vk_attention, lanes_heads_per_workgroup) {
    if (!lanes_offered()) GTEST_SKIP() << "no subgroup shuffles (or TFU_VK_SUBGROUP=0): attention.comp only";
    for (const char* gq : {"1", "2", "4", ""}) {
        setenv("TFU_VK_ATTN_GQ", gq, 1);
        SCOPED_TRACE(std::string("TFU_VK_ATTN_GQ=") + gq);
        for (int64_t hd : {8, 64, 128})
            for (int64_t group : {1, 2, 4})
                for (int64_t n : {1, 3, 12})
                    for (int64_t n_past : {0, 40, 600}) {
                        if (hd == 128 && n_past == 600 && n > 1) continue;  // the long contexts once per size
                        check({hd, 2 * group, 2, n, n_past}, group == 2 ? dtype::BF16 : dtype::F16, dtype::F16);
                    }
        if (HasFailure()) break;
    }
    unsetenv("TFU_VK_ATTN_GQ");
    setenv("TFU_VK_PROFILE", "gpu", 1);
    std::string why;
    vk_ = backend_or_null(TFU_BACKEND_VULKAN, &why);
    ASSERT_TRUE(vk_) << why;
    check({64, 8, 2, 12, 20}, dtype::F16, dtype::F16);
    start_log_capture();
    vk_.reset();  // logs the profile
    stop_log_capture();
    unsetenv("TFU_VK_PROFILE");
    EXPECT_NE(captured_log.find("attention_lanes x24 "), std::string::npos) << captured_log;
}

// Decode steps at n_past = first .. last on `dev`: KV_STORE the step's random k and v rows at n_past (caches NaN
// from row `first` on until stored), ATTENTION over rows 0 .. n_past, each step against cpu-ref. `mid` (if set)
// runs after step mid_at's run() is submitted, before its result is downloaded.
void split_decode_loop(backend& dev, dtype kt, dtype vt, int first, int last, std::mt19937_64& rng,
                       const std::function<void()>& mid = {}, int mid_at = -1) {
    const int64_t hd = 64, n_head = 8, n_head_kv = 2, n_ctx = last + 8, width = hd * n_head_kv;
    std::unique_ptr<backend> ref = make_cpu_ref_backend();
    owned_tensor q(dtype::F32, hd, n_head, 1), kx(dtype::F32, width), vx(dtype::F32, width), att(dtype::F32, hd, n_head, 1);
    owned_tensor kc(kt, width, n_ctx), vc(vt, width, n_ctx);
    std::vector<float> nan_row(size_t(width), std::nanf(""));
    for (int64_t r = 0; r < n_ctx; ++r) {
        std::vector<float> kr = random_floats(rng, size_t(width)), vr = random_floats(rng, size_t(width));
        quantize_row(kt, r < first ? kr.data() : nan_row.data(), kc.t.row(r), width);
        quantize_row(vt, r < first ? vr.data() : nan_row.data(), vc.t.row(r), width);
    }
    fill_random(rng, q.t);
    dev_tensor dq(dev, q.t), dkx(dev, kx.t), dvx(dev, vx.t), datt(dev, att.t), dkc(dev, kc.t), dvc(dev, vc.t);
    auto step = [&](tensor* a, tensor* qq, tensor* k, tensor* v, tensor* ck, tensor* cv, int pos) {
        std::vector<op> ops = {make_op(op_type::KV_STORE, ck, k), make_op(op_type::KV_STORE, cv, v),
                               make_op(op_type::ATTENTION, a, qq, ck, cv)};
        ops[0].i[0] = ops[1].i[0] = ops[2].i[0] = pos;
        ops[2].i[1] = int32_t(n_head_kv);
        ops[2].f[0] = 0.125f;
        return ops;
    };
    std::vector<float> got(size_t(hd * n_head));
    for (int pos = first; pos <= last; ++pos) {
        dq.refill(rng, q.t);
        dkx.refill(rng, kx.t);
        dvx.refill(rng, vx.t);
        const std::vector<op> h = step(&att.t, &q.t, &kx.t, &vx.t, &kc.t, &vc.t, pos);
        const std::vector<op> d = step(&datt.t, &dq.t, &dkx.t, &dvx.t, &dkc.t, &dvc.t, pos);
        ref->run(h.data(), h.size());
        dev.run(d.data(), d.size());
        if (pos == mid_at && mid) mid();
        dev.download(got.data(), datt.t.data, got.size() * sizeof(float));
        const std::vector<float> want = to_floats(att.t);
        SCOPED_TRACE(std::string("decode K ") + dtype_name(kt) + " V " + dtype_name(vt) + " n_past=" + std::to_string(pos));
        expect_close(got, want, "decode step");
        if (::testing::Test::HasFailure()) return;  // one failing step is enough
    }
}

// The counters of the profile line "vulkan: replay on|off: R runs replayed, C recorded, ..." (TFU_VK_PROFILE=1).
bool parse_replay(const std::string& log, unsigned long long* replayed, unsigned long long* recorded) {
    const size_t at = log.find("vulkan: replay ");
    if (at == std::string::npos) return false;
    const size_t colon = log.find(": ", at + 15);
    return colon != std::string::npos &&
           std::sscanf(log.c_str() + colon + 2, "%llu runs replayed, %llu recorded", replayed, recorded) == 2;
}

// n_past 250 .. 530 (rows 251 .. 531): split counts 1 (<= 256 rows), 3 (257 .. 384), 4 (385 .. 512), 5 (513 ..):
// four keys, each seen once, recorded at its second step and replayed after: 281 - 8 = 273 replays.
TEST_F(vk_attention, split_decode_loop_kept_and_replayed) {
    for (dtype kt : {dtype::F16, dtype::BF16}) {
        setenv("TFU_VK_PROFILE", "1", 1);
        start_log_capture();
        std::string why;
        std::unique_ptr<backend> dev = backend_or_null(TFU_BACKEND_VULKAN, &why);
        unsetenv("TFU_VK_PROFILE");
        ASSERT_TRUE(dev) << why;
        split_decode_loop(*dev, kt, dtype::F16, 250, 530, rng_);
        dev.reset();  // logs the profile
        stop_log_capture();
        unsigned long long replayed = 0, recorded = 0;
        ASSERT_TRUE(parse_replay(captured_log, &replayed, &recorded)) << captured_log;
        EXPECT_EQ(recorded, 4u) << captured_log;
        EXPECT_EQ(replayed, 273u) << captured_log;
    }
}

TEST_F(vk_attention, split_decode_loop_replay_off) {
    setenv("TFU_VK_REPLAY", "0", 1);
    std::string why;
    std::unique_ptr<backend> dev = backend_or_null(TFU_BACKEND_VULKAN, &why);
    unsetenv("TFU_VK_REPLAY");
    ASSERT_TRUE(dev) << why;
    split_decode_loop(*dev, dtype::F16, dtype::BF16, 250, 530, rng_);
}

// The scratch grows in the middle of a kept decode loop (a 4100-row, 24-block op at head size 256 needs 817 KiB,
// more than the first 256 KiB) while that loop's step is still in flight: the growth waits for it, drops the kept
// runs and cached sets that bind the old buffer, and the loop goes on (re-recorded) with correct values. Under
// TFU_VK_VALIDATION=1 any use of the destroyed buffer is an error.
TEST_F(vk_attention, scratch_grows_during_a_kept_decode_loop) {
    bool grown = false;
    split_decode_loop(*vk_, dtype::F16, dtype::F16, 250, 420, rng_,
                      [&] {
                          check({256, 8, 2, 3, 4097}, dtype::F16, dtype::BF16);
                          grown = true;
                      },
                      300);
    EXPECT_TRUE(grown);
}

}  // namespace
}  // namespace tfu::test
