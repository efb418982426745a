// The Vulkan backend's submission without host stalls (kernels_vk/vk_backend.h): many run() calls in flight (more
// than the ring of frames) interleaved with small uploads that change inputs between runs and large uploads that
// replace a weight, checked against cpu-ref after one download; an upload's host source overwritten as soon as
// upload() returns; free() while work that uses the memory is queued (also of a dedicated chunk, whose VkBuffer
// cached descriptor sets must forget); the same with synchronization validation on; the chain again with GPU
// timestamps (TFU_VK_PROFILE=gpu): the same results, and a stamp for every dispatch. Also prints the host time per
// dispatch (a figure, never asserted). Skipped where no Vulkan device (or module) is present.
#include <gtest/gtest.h>

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/error.h"
#include "core/log.h"
#include "core/tensor.h"
#include "ops/device_test_util.h"

namespace tfu {
namespace {

constexpr uint64_t k_seed = 6061;

// validation: "" (as the environment says), "1" or "sync" (TFU_VK_VALIDATION for this backend only).
std::unique_ptr<backend> make_vk(const char* validation = "") {
    const char* old = std::getenv("TFU_VK_VALIDATION");
    const std::string saved = old ? old : "";
    if (*validation) setenv("TFU_VK_VALIDATION", validation, 1);
    std::unique_ptr<backend> be;
    try {
        be = create_backend(TFU_BACKEND_VULKAN, 0);
    } catch (const error& e) {
        if (e.status() != TFU_STATUS_BACKEND_UNAVAILABLE) throw;
    }
    if (*validation) {
        if (old) setenv("TFU_VK_VALIDATION", saved.c_str(), 1);
        else unsetenv("TFU_VK_VALIDATION");
    }
    return be;
}

#define REQUIRE_VK(be, validation)                                                                   \
    std::unique_ptr<backend> be = make_vk(validation);                                               \
    if (!be) GTEST_SKIP() << "no Vulkan backend here (module, device or validation layer missing)";

using test::rel_l2;

// An f32 tensor with a host copy (the reference's operand) and a device copy at `mem` (owned unless given).
struct twin {
    backend& be;
    std::vector<float> host;
    tensor t_host, t_dev;
    void* mem = nullptr;
    bool owned = true;
    twin(backend& b, int64_t ne0, int64_t ne1 = 1, void* at = nullptr) : be(b) {
        t_host = make_tensor(dtype::F32, ne0, ne1);
        host.resize(size_t(t_host.nelements()));
        t_host.data = host.data();
        t_dev = t_host;
        owned = at == nullptr;
        mem = owned ? be.alloc(host.size() * 4, "test tensor") : at;
        t_dev.data = mem;
    }
    ~twin() {
        if (owned) be.free(mem);
    }
    // Sets host values and uploads them from a scratch vector that is scribbled over as soon as upload()
    // returns (the backend must have taken its own copy by then).
    void set(const std::vector<float>& v) {
        host = v;
        std::vector<float> scratch = v;
        be.upload(mem, scratch.data(), scratch.size() * 4);
        std::fill(scratch.begin(), scratch.end(), NAN);
    }
    std::vector<float> pull() const {
        std::vector<float> v(host.size());
        be.download(v.data(), mem, v.size() * 4);
        return v;
    }
    // The tensor of row r (a view at base + r * row bytes).
    tensor row(bool dev, int64_t r) const {
        const tensor& t = dev ? t_dev : t_host;
        return make_tensor(dtype::F32, t.ne[0], 1, 1, 1, static_cast<char*>(t.data) + r * int64_t(t.nb[1]));
    }
};

// One "decode step": t = x + a; x = rms_norm(t) * g; z[s] = W x (a row view that moves every step).
std::vector<op> step_ops(bool dev, twin& x, twin& a, twin& t, twin& g, twin& w, tensor& z_row) {
    auto pick = [dev](twin& p) { return dev ? &p.t_dev : &p.t_host; };
    std::vector<op> ops(3);
    ops[0].type = op_type::ADD, ops[0].src[0] = pick(x), ops[0].src[1] = pick(a), ops[0].dst = pick(t);
    ops[1].type = op_type::RMS_NORM, ops[1].src[0] = pick(t), ops[1].src[1] = pick(g), ops[1].dst = pick(x);
    ops[1].f[0] = 1e-5f;
    ops[2].type = op_type::MUL_MAT, ops[2].src[0] = pick(w), ops[2].src[1] = pick(x), ops[2].dst = &z_row;
    return ops;
}

// n_steps runs without a sync in between (several times the ring of frames), each after a small upload of new
// inputs; a large upload replaces the weight half way. One download at the end; cpu-ref does the same on host
// memory. Bound: f32 kernels, 1e-5 relative L2 per op, a little growth over the chain.
void chained_runs(backend& be) {
    const uint64_t seed = k_seed;
    std::printf("seed %llu\n", (unsigned long long)seed);
    std::mt19937_64 rng(seed);
    const int64_t k = 512, m = 64, n_steps = 23;
    twin x(be, k), a(be, k), t(be, k), g(be, k), w(be, k, m), z(be, m, n_steps);
    ASSERT_GT(w.host.size() * 4, size_t(64) << 10) << "the weight upload takes the large (waited) path";
    x.set(test::random_floats(rng, size_t(k)));
    g.set(test::random_floats(rng, size_t(k)));
    w.set(test::random_floats(rng, w.host.size(), 0.05f));
    std::unique_ptr<backend> ref = make_cpu_ref_backend();
    for (int64_t s = 0; s < n_steps; ++s) {
        if (s == n_steps / 2) w.set(test::random_floats(rng, w.host.size(), 0.05f));
        a.set(test::random_floats(rng, size_t(k)));
        tensor z_dev = z.row(true, s), z_host = z.row(false, s);
        std::vector<op> dev = step_ops(true, x, a, t, g, w, z_dev), host = step_ops(false, x, a, t, g, w, z_host);
        be.run(dev.data(), dev.size());
        ref->run(host.data(), host.size());
    }
    EXPECT_LE(rel_l2(z.pull(), z.host), 1e-4);
    EXPECT_LE(rel_l2(x.pull(), x.host), 1e-4);
}

TEST(vk_submission, chained_runs_with_small_uploads_match_reference) {
    REQUIRE_VK(be, "");
    chained_runs(*be);
}

// Same with TFU_VK_VALIDATION=sync: core and synchronization validation find no error (a message would make
// the next call throw DEVICE_ERROR).
TEST(vk_submission, chained_runs_under_synchronization_validation) {
    REQUIRE_VK(be, "sync");
    chained_runs(*be);
    be->sync();
}

// Small uploads queue copies; several to the same bytes keep their order, overlapping ones too, and the host
// source may be changed right after each upload() returns. Also under synchronization validation (which sees
// hazards between copies recorded into one command buffer).
void queued_uploads(backend& be) {
    std::mt19937_64 rng(k_seed + 1);
    std::vector<float> v1 = test::random_floats(rng, 300), v2 = test::random_floats(rng, 300), v3 = test::random_floats(rng, 100);
    float* mem = static_cast<float*>(be.alloc(300 * 4, "dst"));
    float* other = static_cast<float*>(be.alloc(300 * 4, "other"));
    std::vector<float> src = v1;
    be.upload(mem, src.data(), 300 * 4);
    src = v2;  // the same host buffer, new contents: the first upload must still deliver v1
    be.upload(other, src.data(), 300 * 4);
    be.upload(mem + 50, v3.data(), 100 * 4);  // then v3 over [50, 150) of mem: after v1
    be.upload(other + 200, v3.data(), 100 * 4);
    be.upload(other + 200, src.data() + 200, 100 * 4);  // and v2 back over it: the last one wins
    std::fill(src.begin(), src.end(), NAN);
    std::vector<float> got(300), got_other(300);
    be.download(got.data(), mem, 300 * 4);
    be.download(got_other.data(), other, 300 * 4);
    for (size_t i = 0; i < 300; ++i) {
        ASSERT_EQ(got[i], i >= 50 && i < 150 ? v3[i - 50] : v1[i]) << "element " << i;
        ASSERT_EQ(got_other[i], v2[i]) << "element " << i;
    }
    be.free(mem);
    be.free(other);
}

TEST(vk_submission, queued_uploads_keep_order_and_copy_the_source) {
    REQUIRE_VK(be, "");
    queued_uploads(*be);
}

TEST(vk_submission, queued_uploads_under_synchronization_validation) {
    REQUIRE_VK(be, "sync");
    queued_uploads(*be);
    be->sync();
}

// More small uploads than one frame's staging slice holds, with no run in between: they spill into further
// frames, in order.
TEST(vk_submission, many_small_uploads_without_runs) {
    REQUIRE_VK(be, "");
    std::mt19937_64 rng(k_seed + 2);
    const size_t n = 16000;  // 64000 bytes per upload: at most 4 per 256 KiB slice
    float* mem = static_cast<float*>(be->alloc(n * 4 * 12, "dst"));
    std::vector<float> want(n * 12);
    for (int rep = 0; rep < 3; ++rep)
        for (size_t i = 0; i < 12; ++i) {
            std::vector<float> v = test::random_floats(rng, n);
            std::copy(v.begin(), v.end(), want.begin() + long(i * n));
            be->upload(mem + i * n, v.data(), n * 4);
        }
    std::vector<float> got(want.size());
    be->download(got.data(), mem, got.size() * 4);
    EXPECT_TRUE(got == want);
    be->free(mem);
}

// free() while runs that read the memory are queued: the runs see the old contents, and memory handed out again
// (same range) and refilled is only written after them. Also for a dedicated chunk (larger than the usual
// 128 MiB chunk), which free() destroys: cached descriptor sets naming its VkBuffer must not be used again.
TEST(vk_submission, free_while_work_is_queued) {
    REQUIRE_VK(be, "");
    std::mt19937_64 rng(k_seed + 3);
    const int64_t k = 256, m = 32;
    std::unique_ptr<backend> ref = make_cpu_ref_backend();
    twin x(*be, k), out1(*be, m), out2(*be, m);
    x.set(test::random_floats(rng, size_t(k)));
    auto mul = [&](bool dev, twin& w, twin& d) {
        op o;
        o.type = op_type::MUL_MAT;
        o.src[0] = dev ? &w.t_dev : &w.t_host, o.src[1] = dev ? &x.t_dev : &x.t_host, o.dst = dev ? &d.t_dev : &d.t_host;
        return o;
    };
    for (size_t big : {size_t(0), size_t(129) << 20}) {
        SCOPED_TRACE(big ? "weight in a dedicated chunk" : "weight in the usual chunk");
        for (int round = 0; round < 2; ++round) {
            void* mem = be->alloc(big ? big : size_t(k * m * 4), "weight");
            twin w(*be, k, m, mem);
            w.set(test::random_floats(rng, w.host.size(), 0.1f));
            twin& d = round == 0 ? out1 : out2;
            for (int rep = 0; rep < 9; ++rep) {  // more runs than frames, all queued
                op o = mul(true, w, d), oh = mul(false, w, d);
                be->run(&o, 1);
                if (rep == 0) ref->run(&oh, 1);
            }
            be->free(mem);  // with the runs queued
        }
        EXPECT_LE(rel_l2(out1.pull(), out1.host), 1e-5);
        EXPECT_LE(rel_l2(out2.pull(), out2.host), 1e-5);
    }
}

// One run() with more dispatches of distinct bindings than a frame's descriptor pool holds (1024 sets): it is
// submitted in pieces over several frames; run three times, so later calls meet cached sets and pools reset at
// a frame's start. Row r of x gains b[r] per call (f32 adds, the same on both sides: exact comparison).
TEST(vk_submission, one_run_larger_than_a_frame) {
    REQUIRE_VK(be, "");
    std::mt19937_64 rng(k_seed + 4);
    const int64_t n = 64, rows = 1300;
    twin x(*be, n, rows), b(*be, n, rows);
    x.set(test::random_floats(rng, x.host.size()));
    b.set(test::random_floats(rng, b.host.size()));
    std::vector<tensor> xr, br;
    for (int64_t r = 0; r < rows; ++r) xr.push_back(x.row(true, r)), br.push_back(b.row(true, r));
    std::vector<op> ops(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) {
        op& o = ops[size_t(r)];
        o.type = op_type::ADD, o.src[0] = &xr[size_t(r)], o.src[1] = &br[size_t(r)], o.dst = &xr[size_t(r)];
    }
    std::vector<float> want = x.host;
    for (int call = 0; call < 3; ++call) {
        be->run(ops.data(), ops.size());
        for (size_t i = 0; i < want.size(); ++i) want[i] += b.host[i];
    }
    EXPECT_TRUE(x.pull() == want);
}

double thread_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

// A decode-shaped loop: per step a small upload, n_runs run() calls of n_per_run small dispatches each, one
// download. Prints the calling thread's CPU time per dispatch (recording + submission; the device's work runs on
// other threads or the GPU). Checks the result: x gains 1 per ADD, so it ends at an exact count.
// TFU_VK_PROFILE=gpu (kernels_vk/vk_gpu_timer.h): the chain's results are unchanged, and the per-label counts of
// the GPU-time table add up to the dispatches the host profile counted (no stamp lost or doubled).
TEST(vk_submission, gpu_time_profile_stamps_every_dispatch) {
    std::vector<std::string> lines;
    log_set_callback([](tfu_log_level, const char* m, void* u) { static_cast<std::vector<std::string>*>(u)->push_back(m); },
                     TFU_LOG_INFO, &lines);
    setenv("TFU_VK_PROFILE", "gpu", 1);
    {
        std::unique_ptr<backend> be = make_vk();
        unsetenv("TFU_VK_PROFILE");
        if (!be) {
            log_set_callback(nullptr, TFU_LOG_WARN, nullptr);
            GTEST_SKIP() << "no Vulkan backend here";
        }
        chained_runs(*be);
    }  // the tables are logged on destruction
    log_set_callback(nullptr, TFU_LOG_WARN, nullptr);
    unsigned long long dispatches = 0, stamped = 0, submissions = 0;
    bool counted = false, timed = false;
    for (const std::string& l : lines) {
        unsigned long long runs = 0, ops = 0, d = 0, n = 0;
        char label[128];
        if (std::sscanf(l.c_str(), "vulkan: profile: %llu run() calls, %llu ops, %llu dispatches", &runs, &ops, &d) == 3) {
            dispatches = d;
            counted = true;
        } else if (std::sscanf(l.c_str(), "vulkan: gpu time: %127s x%*u %llu x", label, &n) == 2) {
            stamped += n;
        } else if (std::sscanf(l.c_str(), "vulkan: gpu time: %llu timed submissions", &n) == 1) {
            submissions = n;
            timed = true;
        }
    }
    ASSERT_TRUE(counted && timed) << "the profile tables were not logged";
    EXPECT_GT(dispatches, 0u);
    EXPECT_EQ(stamped, dispatches);
    EXPECT_GT(submissions, 0u);
}

TEST(vk_submission, host_time_per_dispatch) {
    REQUIRE_VK(be, "");
    const int64_t n = 256, n_steps = 100, n_runs = 8, n_per_run = 14;
    twin x(*be, n), one(*be, n), pos(*be, 4);
    x.set(std::vector<float>(size_t(n), 0.0f));
    one.set(std::vector<float>(size_t(n), 1.0f));
    std::vector<op> ops(static_cast<size_t>(n_per_run));
    for (op& o : ops) o.type = op_type::ADD, o.src[0] = &x.t_dev, o.src[1] = &one.t_dev, o.dst = &x.t_dev;
    std::vector<float> probe(4);
    be->run(ops.data(), ops.size());  // pipelines created outside the timing
    be->sync();
    std::vector<double> per_step, wall;  // host CPU seconds per dispatch; wall seconds per step
    for (int64_t s = 0; s < n_steps; ++s) {
        std::vector<float> p(4, float(s));
        const auto w0 = std::chrono::steady_clock::now();
        const double t0 = thread_seconds();
        be->upload(pos.mem, p.data(), p.size() * 4);
        for (int64_t r = 0; r < n_runs; ++r) be->run(ops.data(), ops.size());
        per_step.push_back((thread_seconds() - t0) / double(n_runs * n_per_run));
        be->download(probe.data(), x.mem, probe.size() * 4);
        wall.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count());
    }
    std::sort(per_step.begin(), per_step.end());
    std::sort(wall.begin(), wall.end());
    std::printf("host CPU time per dispatch: median %.2f us, best %.2f us; wall time per step: median %.1f us "
                "(%lld steps of %lld dispatches in %lld runs, a small upload and a download)\n",
                per_step[per_step.size() / 2] * 1e6, per_step[0] * 1e6, wall[wall.size() / 2] * 1e6,
                (long long)n_steps, (long long)(n_runs * n_per_run), (long long)n_runs);
    const float want = float((n_steps * n_runs + 1) * n_per_run);
    for (float v : x.pull()) ASSERT_EQ(v, want);
    EXPECT_EQ(probe[0], want);
}

}  // namespace
}  // namespace tfu
