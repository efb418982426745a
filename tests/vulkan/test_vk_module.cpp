// The Vulkan backend through the engine's loader (create_backend(TFU_BACKEND_VULKAN)): memory (alloc alignment,
// upload/download beyond the staging size, views at base + offset, bad ranges), large tensors split over row
// pieces (forced with TFU_VK_MAX_BINDING_BYTES), several ops in one run() call, refusals, and the
// TFU_VK_PIPELINE_STATS=1 log lines. Skipped where no Vulkan device (or module) is present. Random data from a
// fixed printed seed; bounds as in tests/ops.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "backend/backend.h"
#include "core/error.h"
#include "core/quant.h"
#include "core/tensor.h"
#include "ops/device_test_util.h"
#include "vulkan/vk_test_env.h"

namespace tfu {
namespace {

constexpr uint64_t k_seed = 4242;

std::unique_ptr<backend> make_vk() {
    try {
        return create_backend(TFU_BACKEND_VULKAN, 0);
    } catch (const error& e) {
        if (e.status() == TFU_STATUS_BACKEND_UNAVAILABLE) return nullptr;
        throw;
    }
}

#define REQUIRE_VK(be)                                                      \
    std::unique_ptr<backend> be = make_vk();                                \
    if (!be) GTEST_SKIP() << "no Vulkan backend here (module or device missing)";

using test::rel_l2;

// A tensor with host bytes and (for a device backend) a device copy; t_host / t_dev view the two.
struct pair_tensor {
    backend& be;
    std::vector<uint8_t> host;
    tensor t_host, t_dev;
    void* mem = nullptr;
    pair_tensor(backend& b, dtype type, int64_t ne0, int64_t ne1 = 1, int64_t ne2 = 1) : be(b) {
        t_host = make_tensor(type, ne0, ne1, ne2);
        host.resize(t_host.nbytes());
        t_host.data = host.data();
        t_dev = t_host;
        mem = be.alloc(host.size(), "test tensor");
        t_dev.data = mem;
    }
    ~pair_tensor() { be.free(mem); }
    void fill(std::mt19937_64& rng, float sd = 1.0f) {
        for (int64_t r = 0; r < t_host.nrows(); ++r) {
            std::vector<float> row = test::random_floats(rng, size_t(t_host.ne[0]), sd);
            quantize_row(t_host.type, row.data(), t_host.row(r), t_host.ne[0]);
        }
        push();
    }
    void push() { be.upload(mem, host.data(), host.size()); }
    std::vector<float> pull() {
        std::vector<float> v(size_t(t_host.nelements()));
        be.download(v.data(), mem, v.size() * 4);
        return v;
    }
    std::vector<float> host_floats() const {
        const float* p = static_cast<const float*>(t_host.data);
        return std::vector<float>(p, p + t_host.nelements());
    }
};

TEST(vk_module, name_and_memory_info) {
    REQUIRE_VK(be);
    EXPECT_EQ(std::string(be->name()).rfind("vulkan: ", 0), 0u) << be->name();
    EXPECT_FALSE(be->host_memory());
    uint64_t total = 0, free0 = 0;
    be->memory_info(&total, &free0);
    EXPECT_GT(total, 0u);
    EXPECT_LE(free0, total);
    void* a = be->alloc(1000, "a");
    void* b = be->alloc(1, "b");
    EXPECT_EQ(reinterpret_cast<uintptr_t>(a) % 256, 0u);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(b) % 256, 0u);
    EXPECT_NE(a, b);
    be->free(a);
    be->free(b);
    be->free(nullptr);
}

// An application that opens and closes engines one after another gets a working backend every time: 64 backends
// created, used (an upload and a download) and destroyed in turn. (On an H100 a test binary that created ~40
// backends saw vkCreateInstance fail with VK_ERROR_INCOMPATIBLE_DRIVER after about 30, 2026-11-24.)
TEST(vk_module, many_backends_one_after_another) {
    REQUIRE_VK(first);
    first.reset();
    for (int i = 0; i < 64; ++i) {
        std::unique_ptr<backend> be;
        try {
            be = create_backend(TFU_BACKEND_VULKAN, 0);
        } catch (const error& e) {
            FAIL() << "backend " << i << ": " << e.what();
        }
        const uint32_t v = 0x9e3779b9u * uint32_t(i + 1), back = 0;
        void* p = be->alloc(4, "probe");
        be->upload(p, &v, 4);
        uint32_t got = back;
        be->download(&got, p, 4);
        be->free(p);
        ASSERT_EQ(got, v) << "backend " << i;
    }
}

TEST(vk_module, upload_download_beyond_staging_and_views) {
    REQUIRE_VK(be);
    std::mt19937_64 rng(k_seed);
    const size_t n = (40u << 20) + 12;  // more than the 16 MiB staging buffer, not a multiple of it
    std::vector<uint8_t> src(n), back(n);
    for (uint8_t& x : src) x = uint8_t(rng());
    uint8_t* mem = static_cast<uint8_t*>(be->alloc(n, "big"));
    be->upload(mem, src.data(), n);
    be->download(back.data(), mem, n);
    EXPECT_TRUE(src == back);
    // A view at base + offset: write 5000 bytes at +1000, read a window around it.
    std::vector<uint8_t> patch(5000, 0x5a), win(7000);
    be->upload(mem + 1000, patch.data(), patch.size());
    be->download(win.data(), mem + 500, win.size());
    for (size_t i = 0; i < win.size(); ++i) {
        const size_t at = 500 + i;
        const uint8_t want = at >= 1000 && at < 6000 ? 0x5a : src[at];
        ASSERT_EQ(win[i], want) << "byte " << at;
    }
    // Ranges outside the allocation and host pointers are refused with INVALID_ARGUMENT.
    auto status_of = [](auto&& f) {
        try {
            f();
        } catch (const error& e) {
            return e.status();
        }
        return TFU_STATUS_OK;
    };
    EXPECT_EQ(status_of([&] { be->upload(mem + n - 4, src.data(), 512); }), TFU_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(status_of([&] { be->download(back.data(), src.data(), 16); }), TFU_STATUS_INVALID_ARGUMENT);
    be->free(mem);
    EXPECT_EQ(status_of([&] { be->download(back.data(), mem, 16); }), TFU_STATUS_INVALID_ARGUMENT);
}

// Runs `o` (device tensors) on the Vulkan backend and `o_host` on cpu-ref; compares dst.
void expect_matches_ref(backend& be, const op& o, const op& o_host, pair_tensor& dst, double bound) {
    std::string why;
    ASSERT_TRUE(be.supports(o, &why)) << why;
    be.run(&o, 1);
    std::unique_ptr<backend> ref = make_cpu_ref_backend();
    ref->run(&o_host, 1);
    const double err = rel_l2(dst.pull(), dst.host_floats());
    EXPECT_LE(err, bound) << op_name(o.type);
}

// A weight larger than one binding is bound in row pieces; with TFU_VK_MAX_BINDING_BYTES = 64 KiB the weights
// below need 2..4 pieces, on any device.
TEST(vk_module, large_weights_split_over_row_pieces) {
    // The float path of the matrix-vector kernel (its bounds are for exact products; the int8 path's row pieces:
    // test_vk_mmv_units).
    setenv("TFU_VK_MAX_BINDING_BYTES", "65536", 1);
    setenv("TFU_VK_MMV_I8", "0", 1);
    std::unique_ptr<backend> be = make_vk();
    unsetenv("TFU_VK_MAX_BINDING_BYTES");
    unsetenv("TFU_VK_MMV_I8");
    if (!be) GTEST_SKIP() << "no Vulkan backend here";
    std::mt19937_64 rng(k_seed);
    struct shape { dtype t; int64_t k, m, n; };
    for (shape s : {shape{dtype::Q4_0, 512, 300, 1}, shape{dtype::Q4_0, 512, 300, 5}, shape{dtype::F32, 256, 200, 1},
                    shape{dtype::Q6_K, 512, 200, 3}}) {
        SCOPED_TRACE(std::string(dtype_name(s.t)) + " k=" + std::to_string(s.k) + " m=" + std::to_string(s.m) +
                     " n=" + std::to_string(s.n));
        pair_tensor w(*be, s.t, s.k, s.m), x(*be, dtype::F32, s.k, s.n), d(*be, dtype::F32, s.m, s.n);
        ASSERT_GT(w.host.size(), 65536u);
        w.fill(rng, 0.05f);
        x.fill(rng);
        op o, oh;
        o.type = oh.type = op_type::MUL_MAT;
        o.src[0] = &w.t_dev, o.src[1] = &x.t_dev, o.dst = &d.t_dev;
        oh.src[0] = &w.t_host, oh.src[1] = &x.t_host, oh.dst = &d.t_host;
        expect_matches_ref(*be, o, oh, d, 1e-5);
    }
    {  // GET_ROWS over a vocabulary of 3 pieces (q8_0 rows of 1024: 1088 bytes, 150 rows: 163 KB)
        pair_tensor w(*be, dtype::Q8_0, 1024, 150), ids(*be, dtype::I32, 9), d(*be, dtype::F32, 1024, 9);
        w.fill(rng);
        for (int i = 0; i < 9; ++i) reinterpret_cast<int32_t*>(ids.host.data())[i] = int32_t((i * 17 + 3) % 150);
        ids.push();
        op o, oh;
        o.type = oh.type = op_type::GET_ROWS;
        o.src[0] = &w.t_dev, o.src[1] = &ids.t_dev, o.dst = &d.t_dev;
        oh.src[0] = &w.t_host, oh.src[1] = &ids.t_host, oh.dst = &d.t_host;
        expect_matches_ref(*be, o, oh, d, 1e-6);
    }
    {  // An activation larger than one binding is refused with a reason (only weights are split).
        tensor a = make_tensor(dtype::F32, 20000, 1, 1, 1, reinterpret_cast<void*>(uintptr_t(4096)));
        op o;
        o.type = op_type::ADD;
        o.src[0] = &a, o.src[1] = &a, o.dst = &a;
        std::string why;
        EXPECT_FALSE(be->supports(o, &why));
        EXPECT_NE(why.find("binding"), std::string::npos) << why;
    }
}

// A small layer in one run() call (one command buffer): rms_norm -> mul_mat -> add in place -> swiglu. The f32
// products (TFU_VK_MMV_I8=0: where the int8 decode path is the default, as on an H100, it quantizes x, which
// test_vk_mmv_units bounds), so that 1e-5 checks the chaining of the ops.
TEST(vk_module, several_ops_in_one_call) {
    test::scoped_env f32_products("TFU_VK_MMV_I8", "0");
    REQUIRE_VK(be);
    std::mt19937_64 rng(k_seed + 1);
    const int64_t k = 256, m = 96, n = 3;
    pair_tensor x(*be, dtype::F32, k, n), g(*be, dtype::F32, k), y(*be, dtype::F32, k, n), w(*be, dtype::Q4_K, k, m),
        z(*be, dtype::F32, m, n), bias(*be, dtype::F32, m), u(*be, dtype::F32, m, n), out(*be, dtype::F32, m, n);
    for (pair_tensor* p : {&x, &g, &bias, &u}) p->fill(rng);
    w.fill(rng, 0.05f);
    auto build = [](bool dev, std::vector<pair_tensor*> t) {
        auto pick = [&](size_t i) { return dev ? &t[i]->t_dev : &t[i]->t_host; };
        std::vector<op> ops(4);
        ops[0].type = op_type::RMS_NORM, ops[0].src[0] = pick(0), ops[0].src[1] = pick(1), ops[0].dst = pick(2);
        ops[0].f[0] = 1e-5f;
        ops[1].type = op_type::MUL_MAT, ops[1].src[0] = pick(3), ops[1].src[1] = pick(2), ops[1].dst = pick(4);
        ops[2].type = op_type::ADD, ops[2].src[0] = pick(4), ops[2].src[1] = pick(5), ops[2].dst = pick(4);
        ops[3].type = op_type::SWIGLU, ops[3].src[0] = pick(4), ops[3].src[1] = pick(6), ops[3].dst = pick(7);
        return ops;
    };
    const std::vector<pair_tensor*> all = {&x, &g, &y, &w, &z, &bias, &u, &out};
    std::vector<op> dev_ops = build(true, all), host_ops = build(false, all);
    be->run(dev_ops.data(), dev_ops.size());
    be->sync();
    make_cpu_ref_backend()->run(host_ops.data(), host_ops.size());
    EXPECT_LE(rel_l2(out.pull(), out.host_floats()), 1e-5);
    EXPECT_LE(rel_l2(z.pull(), z.host_floats()), 1e-5);
}

// TFU_VK_PIPELINE_STATS=1: a pipeline created by the backend (ADD's) gets its driver statistics logged
// (VK_KHR_pipeline_executable_properties), at least one "name=value". Skipped, with the backend's reason, where the
// device lacks the extension or its feature.
TEST(vk_module, pipeline_stats_logged) {
    test::scoped_env env("TFU_VK_PIPELINE_STATS", "1");  // read when the backend is created
    test::log_capture logs;
    REQUIRE_VK(be);
    const std::string why = logs.line("TFU_VK_PIPELINE_STATS=1 but");
    if (!why.empty()) GTEST_SKIP() << why;
    std::mt19937_64 rng(k_seed + 2);
    pair_tensor a(*be, dtype::F32, 64, 3), b(*be, dtype::F32, 64, 3), d(*be, dtype::F32, 64, 3);
    a.fill(rng);
    b.fill(rng);
    op o;
    o.type = op_type::ADD;
    o.src[0] = &a.t_dev, o.src[1] = &b.t_dev, o.dst = &d.t_dev;
    be->run(&o, 1);
    const std::vector<float> got = d.pull(), x = a.host_floats(), y = b.host_floats();
    for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], x[i] + y[i]) << i;  // statistics change no result
    const std::string stats = logs.line("vulkan: pipeline stats add [");
    ASSERT_FALSE(stats.empty()) << "no \"vulkan: pipeline stats add [...]\" line logged";
    EXPECT_EQ(stats.find("failed"), std::string::npos) << stats;
    EXPECT_NE(stats.find('='), std::string::npos) << "no statistic in: " << stats;
    std::printf("%s\n", stats.c_str());  // an example for whoever reads the test output
}

TEST(vk_module, refusals) {
    REQUIRE_VK(be);
    // A head size above 256 is valid for the op contract but not for this kernel: supports() false with a reason,
    // run() UNSUPPORTED.
    pair_tensor q(*be, dtype::F32, 320, 2, 1), kc(*be, dtype::F16, 320, 4), d(*be, dtype::F32, 320, 2, 1);
    op o;
    o.type = op_type::ATTENTION;
    o.src[0] = &q.t_dev, o.src[1] = &kc.t_dev, o.src[2] = &kc.t_dev, o.dst = &d.t_dev;
    o.i[1] = 1;
    o.f[0] = 0.3f;
    std::string why;
    EXPECT_FALSE(be->supports(o, &why));
    EXPECT_NE(why.find("head size"), std::string::npos) << why;
    try {
        be->run(&o, 1);
        FAIL() << "no error";
    } catch (const error& e) {
        EXPECT_EQ(e.status(), TFU_STATUS_UNSUPPORTED) << e.what();
    }
    // A tensor in host memory is refused with INVALID_ARGUMENT (the device cannot read it).
    std::vector<float> host(16, 1.0f);
    tensor h = make_tensor(dtype::F32, 8, 2, 1, 1, host.data());
    pair_tensor d8(*be, dtype::F32, 8, 2);
    op a;
    a.type = op_type::ADD;
    a.src[0] = &h, a.src[1] = &h, a.dst = &d8.t_dev;
    try {
        be->run(&a, 1);
        FAIL() << "no error";
    } catch (const error& e) {
        EXPECT_EQ(e.status(), TFU_STATUS_INVALID_ARGUMENT) << e.what();
    }
}

}  // namespace
}  // namespace tfu
