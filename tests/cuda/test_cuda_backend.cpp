// The CUDA module's own contract beyond the op tests: a clear BACKEND_UNAVAILABLE without a driver, its name,
// device memory (alloc/upload/download at offsets, memory_info, out-of-memory as a status), bad ids found on
// the device reported as INVALID_ARGUMENT (and the backend still usable after), and several dependent ops
// (in place included) in one run() against cpu-ref.
#include <cstring>

#include "ops/op_test_util.h"

namespace tfu::test {
namespace {

// The CUDA backend, or a skip with create_backend's reason (which must name CUDA).
std::unique_ptr<backend> cuda_or_skip(std::string* skip) {
    try {
        return create_backend(TFU_BACKEND_CUDA, 0);
    } catch (const tfu::error& e) {
        EXPECT_EQ(e.status(), TFU_STATUS_BACKEND_UNAVAILABLE) << e.what();
        EXPECT_NE(std::string(e.what()).find("cuda"), std::string::npos) << e.what();
        *skip = e.what();
        return nullptr;
    }
}

#define CUDA_OR_SKIP(be)                        \
    std::string skip_why;                       \
    auto be = cuda_or_skip(&skip_why);          \
    if (!be) GTEST_SKIP() << skip_why;

TEST(cuda_backend, name_and_memory_info) {
    CUDA_OR_SKIP(be);
    EXPECT_EQ(std::string(be->name()).rfind("cuda: ", 0), 0u) << be->name();
    EXPECT_NE(std::string(be->name()).find("sm_"), std::string::npos) << be->name();
    EXPECT_FALSE(be->host_memory());
    uint64_t total = 0, free_b = 0;
    be->memory_info(&total, &free_b);
    EXPECT_GT(total, 0u);
    EXPECT_GT(free_b, 0u);
    EXPECT_LE(free_b, total);
}

TEST(cuda_backend, upload_download_at_offsets) {
    CUDA_OR_SKIP(be);
    std::mt19937_64 rng(test_seed());
    const size_t n = 1 << 20;
    std::vector<uint8_t> a(n), b(n, 0);
    for (auto& x : a) x = uint8_t(rng());
    uint8_t* d = static_cast<uint8_t*>(be->alloc(n + 4096, "test"));
    EXPECT_EQ(reinterpret_cast<uintptr_t>(d) % 256, 0u);
    be->upload(d + 4096, a.data(), n);  // a view inside the allocation
    be->download(b.data(), d + 4096, n);
    EXPECT_TRUE(a == b);
    be->download(b.data(), d + 4096 + 100, 1000);
    EXPECT_EQ(std::memcmp(b.data(), a.data() + 100, 1000), 0);
    be->free(d);
    be->free(nullptr);
}

TEST(cuda_backend, huge_alloc_is_out_of_memory_and_recoverable) {
    CUDA_OR_SKIP(be);
    try {
        be->alloc(size_t(1) << 50, "a petabyte");
        ADD_FAILURE() << "a 1 PiB allocation succeeded";
    } catch (const tfu::error& e) {
        EXPECT_EQ(e.status(), TFU_STATUS_OUT_OF_MEMORY) << e.what();
        EXPECT_NE(std::string(e.what()).find("a petabyte"), std::string::npos) << e.what();
    }
    void* p = be->alloc(1024, "after");  // the failure left no sticky error
    be->free(p);
}

// A host tensor's device copy for the tests below.
struct dev_tensor {
    backend& be;
    tensor t;
    dev_tensor(backend& b, const tensor& host) : be(b), t(host) {
        t.data = be.alloc(host.nbytes(), "test tensor");
        be.upload(t.data, host.data, host.nbytes());
    }
    ~dev_tensor() { be.free(t.data); }
    std::vector<uint8_t> read() const {
        std::vector<uint8_t> out(t.nbytes());
        be.download(out.data(), t.data, out.size());
        return out;
    }
};

TEST(cuda_backend, get_rows_bad_id_is_invalid_argument) {
    CUDA_OR_SKIP(be);
    std::mt19937_64 rng(test_seed());
    owned_tensor w(dtype::Q4_0, 64, 10), ids(dtype::I32, 3), out(dtype::F32, 64, 3);
    fill_random(rng, w.t);
    ids.t.ptr<int32_t>()[0] = 3;
    ids.t.ptr<int32_t>()[1] = 10;  // one past the last row
    ids.t.ptr<int32_t>()[2] = 0;
    dev_tensor dw(*be, w.t), di(*be, ids.t), dd(*be, out.t);
    op o;
    o.type = op_type::GET_ROWS;
    o.dst = &dd.t;
    o.src[0] = &dw.t;
    o.src[1] = &di.t;
    try {
        be->run(&o, 1);
        ADD_FAILURE() << "id 10 of 10 rows was accepted";
    } catch (const tfu::error& e) {
        EXPECT_EQ(e.status(), TFU_STATUS_INVALID_ARGUMENT) << e.what();
        EXPECT_NE(std::string(e.what()).find("id 10 at 1"), std::string::npos) << e.what();
    }
    ids.t.ptr<int32_t>()[1] = 9;
    be->upload(di.t.data, ids.t.data, ids.t.nbytes());
    be->run(&o, 1);  // the report was cleared
    const std::vector<uint8_t> got = dd.read();
    std::vector<float> want(64);
    dequantize_row(dtype::Q4_0, w.t.row(9), want.data(), 64);
    EXPECT_EQ(std::memcmp(got.data() + 64 * 4, want.data(), 64 * 4), 0);
}

// rms_norm -> mul_mat (q4_K) -> add in place -> swiglu, all in one run(), against cpu-ref op by op.
TEST(cuda_backend, dependent_ops_in_one_run) {
    CUDA_OR_SKIP(be);
    std::mt19937_64 rng(test_seed() + 7);
    const int64_t k = 512, m = 96, n = 5;
    owned_tensor x(dtype::F32, k, n), g(dtype::F32, k), w(dtype::Q4_K, k, m), bias(dtype::F32, m), up(dtype::F32, m, n);
    owned_tensor xn(dtype::F32, k, n), h(dtype::F32, m, n), y(dtype::F32, m, n);
    for (tensor* t : {&x.t, &g.t, &w.t, &bias.t, &up.t}) fill_random(rng, *t);
    auto ops_for = [&](tensor& txn, tensor& th, tensor& ty, const tensor& tx, const tensor& tg, const tensor& tw,
                       const tensor& tb, const tensor& tu) {
        std::vector<op> ops(4);
        ops[0].type = op_type::RMS_NORM, ops[0].dst = &txn, ops[0].src[0] = &tx, ops[0].src[1] = &tg, ops[0].f[0] = 1e-5f;
        ops[1].type = op_type::MUL_MAT, ops[1].dst = &th, ops[1].src[0] = &tw, ops[1].src[1] = &txn;
        ops[2].type = op_type::ADD, ops[2].dst = &th, ops[2].src[0] = &th, ops[2].src[1] = &tb;
        ops[3].type = op_type::SWIGLU, ops[3].dst = &ty, ops[3].src[0] = &th, ops[3].src[1] = &tu;
        return ops;
    };
    auto ref = make_cpu_ref_backend();
    std::vector<op> rops = ops_for(xn.t, h.t, y.t, x.t, g.t, w.t, bias.t, up.t);
    ref->run(rops.data(), rops.size());
    dev_tensor dx(*be, x.t), dg(*be, g.t), dw(*be, w.t), db(*be, bias.t), du(*be, up.t), dxn(*be, xn.t), dh(*be, h.t),
        dy(*be, y.t);
    std::vector<op> dops = ops_for(dxn.t, dh.t, dy.t, dx.t, dg.t, dw.t, db.t, du.t);
    be->run(dops.data(), dops.size());
    const std::vector<uint8_t> got = dy.read();
    const float* gy = reinterpret_cast<const float*>(got.data());
    double num = 0, den = 0;
    for (int64_t i = 0; i < m * n; ++i) {
        const double e = double(gy[i]) - y.t.ptr<float>()[i];
        num += e * e;
        den += double(y.t.ptr<float>()[i]) * y.t.ptr<float>()[i];
    }
    EXPECT_LE(std::sqrt(num / den), 1e-4) << "f32 dequantized weights: only rounding differs from cpu-ref";
}

}  // namespace
}  // namespace tfu::test
