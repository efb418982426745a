// The backend contract beyond numerics: bad ops are refused by supports() and run() alike (UNSUPPORTED, no
// crash), bad ids are INVALID_ARGUMENT, create_backend's kinds and env override, concurrent backends, and the
// reference kernels against hand-computed values (so cpu-ref is not only checked against itself).
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "ops/op_test_util.h"

namespace tfu::test {
namespace {

std::vector<std::unique_ptr<backend>> cpu_backends() {
    std::vector<std::unique_ptr<backend>> out;
    out.push_back(make_cpu_ref_backend());
    out.push_back(make_cpu_backend(3));
    return out;
}

// supports() says no with a reason, and run() throws UNSUPPORTED naming the op.
void expect_refused(const op& o, const char* what) {
    for (auto& be : cpu_backends()) {
        std::string why;
        EXPECT_FALSE(be->supports(o, &why)) << be->name() << " accepted " << what;
        EXPECT_NE(why.find(op_name(o.type)), std::string::npos) << why;
        try {
            be->run(&o, 1);
            ADD_FAILURE() << be->name() << " ran " << what;
        } catch (const tfu::error& e) {
            EXPECT_EQ(e.status(), TFU_STATUS_UNSUPPORTED) << e.what();
            EXPECT_NE(std::string(e.what()).find(op_name(o.type)), std::string::npos) << e.what();
        }
    }
}

TEST(op_contract, bad_shapes_and_dtypes_are_refused) {
    std::mt19937_64 rng(test_seed());
    owned_tensor a(dtype::F32, 64, 4), b(dtype::F32, 32, 4), d(dtype::F32, 64, 4), g(dtype::F32, 64);
    fill_random(rng, a.t);
    fill_random(rng, b.t);
    op o;
    o.type = op_type::ADD;
    o.dst = &d.t;
    o.src[0] = &a.t;
    o.src[1] = &b.t;
    expect_refused(o, "add with mismatched rows");
    o.src[1] = nullptr;
    expect_refused(o, "add with a missing source");

    o.type = op_type::RMS_NORM;
    o.src[1] = &a.t;  // weight must be (k)
    expect_refused(o, "rms_norm with a 2-D weight");

    owned_tensor w(dtype::Q4_0, 64, 8), x(dtype::F32, 64, 3), y(dtype::F32, 7, 3);
    o = op{};
    o.type = op_type::MUL_MAT;
    o.dst = &y.t;
    o.src[0] = &w.t;
    o.src[1] = &x.t;
    expect_refused(o, "mul_mat with a dst of the wrong width");

    owned_tensor q(dtype::F32, 8, 6, 2), kc(dtype::F16, 32, 16), dq(dtype::F32, 8, 6, 2);
    o = op{};
    o.type = op_type::ATTENTION;
    o.dst = &dq.t;
    o.src[0] = &q.t;
    o.src[1] = &kc.t;
    o.src[2] = &kc.t;
    o.i[1] = 4;  // 6 heads are not a multiple of 4 kv heads
    expect_refused(o, "attention with n_head % n_head_kv != 0");
    o.i[1] = 2;  // 2 * 8 = 16 != 32: K rows do not match
    expect_refused(o, "attention with mismatched cache rows");

    owned_tensor cache(dtype::Q8_0, 32, 16), kv(dtype::F32, 32, 3);
    o = op{};
    o.type = op_type::KV_STORE;
    o.dst = &cache.t;
    o.src[0] = &kv.t;
    expect_refused(o, "kv_store into a q8_0 cache");
    owned_tensor cache16(dtype::F16, 32, 16);
    o.dst = &cache16.t;
    o.i[0] = 14;  // rows 14..16 do not fit 16
    expect_refused(o, "kv_store past the end of the cache");

    owned_tensor rx(dtype::F32, 8, 2, 3), rp(dtype::I32, 3), rd(dtype::F32, 8, 2, 3);
    o = op{};
    o.type = op_type::ROPE;
    o.dst = &rd.t;
    o.src[0] = &rx.t;
    o.src[1] = &rp.t;
    o.i[0] = 7;
    o.f[0] = 10000.0f;
    expect_refused(o, "rope with an odd n_rot");
    o.i[0] = 8;
    o.i[1] = 1;
    expect_refused(o, "rope with an unknown mode");
}

TEST(op_contract, get_rows_bad_id_is_invalid_argument) {
    owned_tensor w(dtype::F32, 32, 10), ids(dtype::I32, 2), d(dtype::F32, 32, 2);
    std::mt19937_64 rng(test_seed());
    fill_random(rng, w.t);
    ids.t.ptr<int32_t>()[0] = 3;
    ids.t.ptr<int32_t>()[1] = 10;
    op o;
    o.type = op_type::GET_ROWS;
    o.dst = &d.t;
    o.src[0] = &w.t;
    o.src[1] = &ids.t;
    for (auto& be : cpu_backends()) {
        try {
            be->run(&o, 1);
            ADD_FAILURE() << be->name() << " accepted id 10 of 10 rows";
        } catch (const tfu::error& e) {
            EXPECT_EQ(e.status(), TFU_STATUS_INVALID_ARGUMENT) << e.what();
        }
    }
}

TEST(op_contract, create_backend_kinds_and_env) {
    EXPECT_STREQ(create_backend(TFU_BACKEND_CPU_REF, 0)->name(), "cpu-ref");
    EXPECT_NE(std::string(create_backend(TFU_BACKEND_CPU, 2)->name()).find("cpu"), std::string::npos);
    // A GPU kind whose module is absent, or not a loadable library, is BACKEND_UNAVAILABLE naming where it looked.
    char dir[] = "/tmp/tfu_modules_XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    setenv("TFU_MODULE_DIR", dir, 1);
    for (tfu_backend_kind k : {TFU_BACKEND_CUDA, TFU_BACKEND_VULKAN}) {
        try {
            create_backend(k, 0);
            ADD_FAILURE() << "a GPU backend was created without its module";
        } catch (const tfu::error& e) {
            EXPECT_EQ(e.status(), TFU_STATUS_BACKEND_UNAVAILABLE);
            EXPECT_NE(std::string(e.what()).find(dir), std::string::npos) << e.what();
        }
    }
    const std::string fake = std::string(dir) + "/libtfusion-cuda.so";
    FILE* f = std::fopen(fake.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    std::fputs("not an ELF file", f);
    std::fclose(f);
    try {
        create_backend(TFU_BACKEND_CUDA, 0);
        ADD_FAILURE() << "a garbage module was loaded";
    } catch (const tfu::error& e) {
        EXPECT_EQ(e.status(), TFU_STATUS_BACKEND_UNAVAILABLE);
        EXPECT_NE(std::string(e.what()).find(fake), std::string::npos) << e.what();
    }
    // auto falls back to the cpu backend when no module can be used.
    EXPECT_NE(std::string(create_backend(TFU_BACKEND_AUTO, 1)->name()).find("cpu"), std::string::npos);
    std::remove(fake.c_str());
    rmdir(dir);
    unsetenv("TFU_MODULE_DIR");
    setenv("TFU_BACKEND", "cpu-ref", 1);
    EXPECT_STREQ(create_backend(TFU_BACKEND_AUTO, 0)->name(), "cpu-ref");
    setenv("TFU_BACKEND", "tpu", 1);
    try {
        create_backend(TFU_BACKEND_AUTO, 0);
        ADD_FAILURE() << "TFU_BACKEND=tpu accepted";
    } catch (const tfu::error& e) {
        EXPECT_EQ(e.status(), TFU_STATUS_INVALID_ARGUMENT);
    }
    unsetenv("TFU_BACKEND");
    // auto: CUDA where its module and a GPU are there, else a real Vulkan GPU, else cpu (never lavapipe).
    const std::string name = create_backend(TFU_BACKEND_AUTO, 1)->name();
    EXPECT_TRUE(name.rfind("cuda", 0) == 0 || (name.rfind("vulkan", 0) == 0 && name.find("llvmpipe") == std::string::npos) ||
                name.rfind("cpu", 0) == 0)
        << name;
}

// Several cpu backends, each driven by its own thread, give the same bytes as one run alone.
TEST(op_contract, concurrent_backends_agree) {
    std::mt19937_64 rng(test_seed() + 1);
    owned_tensor w(dtype::Q4_K, 512, 96), x(dtype::F32, 512, 9);
    fill_random(rng, w.t, 0.05f);
    fill_random(rng, x.t);
    auto run_once = [&](backend& be) {
        owned_tensor y(dtype::F32, 96, 9);
        op o;
        o.type = op_type::MUL_MAT;
        o.dst = &y.t;
        o.src[0] = &w.t;
        o.src[1] = &x.t;
        for (int rep = 0; rep < 20; ++rep) be.run(&o, 1);
        return y.bytes();
    };
    auto solo = make_cpu_backend(2);
    const std::vector<uint8_t> want = run_once(*solo);
    std::vector<std::vector<uint8_t>> got(4);
    std::vector<std::thread> threads;
    for (size_t t = 0; t < got.size(); ++t)
        threads.emplace_back([&, t] {
            auto be = make_cpu_backend(2);
            got[t] = run_once(*be);
        });
    for (auto& th : threads) th.join();
    for (const auto& g : got) EXPECT_TRUE(g == want);
}

// ---- the reference against values computed by hand ---------------------------------------------------
TEST(ref_kernels, hand_computed_values) {
    auto ref = make_cpu_ref_backend();
    // rms_norm of (3, 4) with eps 0: rms = sqrt(12.5); times weight (1, 2).
    owned_tensor x(dtype::F32, 2), g(dtype::F32, 2), y(dtype::F32, 2);
    x.t.ptr<float>()[0] = 3;
    x.t.ptr<float>()[1] = 4;
    g.t.ptr<float>()[0] = 1;
    g.t.ptr<float>()[1] = 2;
    op o;
    o.type = op_type::RMS_NORM;
    o.dst = &y.t;
    o.src[0] = &x.t;
    o.src[1] = &g.t;
    ref->run(&o, 1);
    EXPECT_NEAR(y.t.ptr<float>()[0], 3 / std::sqrt(12.5), 1e-6);
    EXPECT_NEAR(y.t.ptr<float>()[1], 8 / std::sqrt(12.5), 1e-6);

    // rope mode 0, n_rot 2, position 1, base 10000: theta = 1 rad; (1, 0) -> (cos 1, sin 1); dim 2 copied.
    owned_tensor rx(dtype::F32, 4, 1, 1), rp(dtype::I32, 1), ry(dtype::F32, 4, 1, 1);
    float* r = rx.t.ptr<float>();
    r[0] = 1, r[1] = 0, r[2] = 5, r[3] = 6;
    rp.t.ptr<int32_t>()[0] = 1;
    o = op{};
    o.type = op_type::ROPE;
    o.dst = &ry.t;
    o.src[0] = &rx.t;
    o.src[1] = &rp.t;
    o.i[0] = 2;
    o.f[0] = 10000.0f;
    o.f[1] = 1.0f;
    ref->run(&o, 1);
    EXPECT_NEAR(ry.t.ptr<float>()[0], std::cos(1.0), 1e-6);
    EXPECT_NEAR(ry.t.ptr<float>()[1], std::sin(1.0), 1e-6);
    EXPECT_EQ(ry.t.ptr<float>()[2], 5.0f);
    EXPECT_EQ(ry.t.ptr<float>()[3], 6.0f);

    // attention, one head, hd 1: q = 1, keys (0, ln 3) -> weights (1/4, 3/4); values (4, 8) -> 7. A second
    // query at n_past 0 sees only the first row -> 4 (causality).
    owned_tensor q(dtype::F32, 1, 1, 2), kc(dtype::F32, 1, 2), vc(dtype::F32, 1, 2), ao(dtype::F32, 1, 1, 2);
    q.t.ptr<float>()[0] = 1;
    q.t.ptr<float>()[1] = 1;
    kc.t.ptr<float>()[0] = 0;
    kc.t.ptr<float>()[1] = float(std::log(3.0));
    vc.t.ptr<float>()[0] = 4;
    vc.t.ptr<float>()[1] = 8;
    o = op{};
    o.type = op_type::ATTENTION;
    o.dst = &ao.t;
    o.src[0] = &q.t;
    o.src[1] = &kc.t;
    o.src[2] = &vc.t;
    o.i[1] = 1;
    o.f[0] = 1.0f;
    ref->run(&o, 1);
    EXPECT_NEAR(ao.t.ptr<float>()[0], 4.0, 1e-6);  // query 0 at position 0
    EXPECT_NEAR(ao.t.ptr<float>()[1], 7.0, 1e-6);  // query 1 at position 1

    // mul_mat f32: (2, 2) . (2, 1): w rows (1, 2), (3, 4); x (5, 6) -> (17, 39).
    owned_tensor w(dtype::F32, 2, 2), xv(dtype::F32, 2, 1), mv(dtype::F32, 2, 1);
    float* wp = w.t.ptr<float>();
    wp[0] = 1, wp[1] = 2, wp[2] = 3, wp[3] = 4;
    xv.t.ptr<float>()[0] = 5;
    xv.t.ptr<float>()[1] = 6;
    o = op{};
    o.type = op_type::MUL_MAT;
    o.dst = &mv.t;
    o.src[0] = &w.t;
    o.src[1] = &xv.t;
    ref->run(&o, 1);
    EXPECT_EQ(mv.t.ptr<float>()[0], 17.0f);
    EXPECT_EQ(mv.t.ptr<float>()[1], 39.0f);

    // swiglu: silu(1) * 2 = 2 / (1 + e^-1).
    owned_tensor s0(dtype::F32, 1), s1(dtype::F32, 1), sy(dtype::F32, 1);
    s0.t.ptr<float>()[0] = 1;
    s1.t.ptr<float>()[0] = 2;
    o = op{};
    o.type = op_type::SWIGLU;
    o.dst = &sy.t;
    o.src[0] = &s0.t;
    o.src[1] = &s1.t;
    ref->run(&o, 1);
    EXPECT_NEAR(sy.t.ptr<float>()[0], 2.0 / (1.0 + std::exp(-1.0)), 1e-6);
}

}  // namespace
}  // namespace tfu::test
