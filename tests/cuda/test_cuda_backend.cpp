// The CUDA module's own contract beyond the op tests: a clear BACKEND_UNAVAILABLE without a driver, its name,
// device memory (alloc/upload/download at offsets, memory_info, out-of-memory as a status), bad ids found on
// the device reported as INVALID_ARGUMENT by the next sync() or download() (run() does not wait; the backend
// is still usable after), small uploads that do not wait kept in stream order, and several dependent ops (in
// place included) in one run() against cpu-ref.
#include <cstring>

#include "ops/device_test_util.h"

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

// A GET_ROWS op with one bad id (10 of 10 rows, at position 1) and its device tensors.
struct bad_get_rows {
    owned_tensor w{dtype::Q4_0, 64, 10, 1, "tok_embd"}, ids{dtype::I32, 3}, out{dtype::F32, 64, 3};
    dev_tensor dw, di, dd;
    op o;
    bad_get_rows(backend& be, std::mt19937_64& rng) : dw(be, fill(rng)), di(be, ids.t), dd(be, out.t) {
        o.type = op_type::GET_ROWS;
        o.dst = &dd.t;
        o.src[0] = &dw.t;
        o.src[1] = &di.t;
    }
    const tensor& fill(std::mt19937_64& rng) {
        fill_random(rng, w.t);
        fill_random(rng, out.t);
        ids.t.ptr<int32_t>()[0] = 3;
        ids.t.ptr<int32_t>()[1] = 10;  // one past the last row
        ids.t.ptr<int32_t>()[2] = 0;
        return w.t;
    }
};

// run() only enqueues: the bad id is seen on the device and reported by the next sync(), with the op and the
// run() that found it; a free() in between does not lose it; it is reported once; the backend works after.
TEST(cuda_backend, get_rows_bad_id_is_reported_by_the_next_sync) {
    CUDA_OR_SKIP(be);
    std::mt19937_64 rng(test_seed());
    bad_get_rows g(*be, rng);
    EXPECT_NO_THROW(be->run(&g.o, 1)) << "run() is not meant to wait for the device";
    be->free(be->alloc(4096, "unrelated"));
    try {
        be->sync();
        ADD_FAILURE() << "id 10 of 10 rows was accepted";
    } catch (const tfu::error& e) {
        const std::string m = e.what();
        EXPECT_EQ(e.status(), TFU_STATUS_INVALID_ARGUMENT) << m;
        EXPECT_NE(m.find("id 10 at 1 is outside 10 rows of tok_embd"), std::string::npos) << m;
        EXPECT_NE(m.find("op 0 of run()"), std::string::npos) << m;
        EXPECT_NE(m.find("sync()"), std::string::npos) << m;
    }
    EXPECT_NO_THROW(be->sync()) << "the report was cleared";
    g.ids.t.ptr<int32_t>()[1] = 9;
    be->upload(g.di.t.data, g.ids.t.data, g.ids.t.nbytes());
    be->run(&g.o, 1);
    const std::vector<uint8_t> got = g.dd.read();
    std::vector<float> want(64 * 3);
    for (int j = 0; j < 3; ++j)
        dequantize_row(dtype::Q4_0, g.w.t.row(g.ids.t.ptr<int32_t>()[j]), want.data() + 64 * j, 64);
    EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size() * 4), 0);
}

// A bad id in op 1 of one run(), then two more dependent runs, none waited for: the download() after them
// (of a tensor the bad op does not touch) writes its bytes, then throws naming op 1 of the first run; the next
// download() does not report it again.
TEST(cuda_backend, get_rows_bad_id_is_reported_by_a_later_download) {
    CUDA_OR_SKIP(be);
    std::mt19937_64 rng(test_seed() + 3);
    bad_get_rows g(*be, rng);
    owned_tensor x(dtype::F32, 64, 4), y(dtype::F32, 64, 4), b(dtype::F32, 64);
    for (tensor* t : {&x.t, &y.t, &b.t}) fill_random(rng, *t);
    dev_tensor dx(*be, x.t), dy(*be, y.t), db(*be, b.t);
    op add_xb;  // y = x + b
    add_xb.type = op_type::ADD, add_xb.dst = &dy.t, add_xb.src[0] = &dx.t, add_xb.src[1] = &db.t;
    op add_yy;  // y = y + b, twice: each reads the run before
    add_yy.type = op_type::ADD, add_yy.dst = &dy.t, add_yy.src[0] = &dy.t, add_yy.src[1] = &db.t;
    const op first[2] = {add_xb, g.o};
    be->run(first, 2);
    be->run(&add_yy, 1);
    be->run(&add_yy, 1);
    std::vector<float> want(64 * 4);
    for (int64_t i = 0; i < 64 * 4; ++i) want[size_t(i)] = ((x.t.ptr<float>()[i] + b.t.ptr<float>()[i % 64]) + b.t.ptr<float>()[i % 64]) + b.t.ptr<float>()[i % 64];
    std::vector<float> got(64 * 4, -1.0f);
    try {
        be->download(got.data(), dy.t.data, got.size() * 4);
        ADD_FAILURE() << "id 10 of 10 rows was accepted";
    } catch (const tfu::error& e) {
        const std::string m = e.what();
        EXPECT_EQ(e.status(), TFU_STATUS_INVALID_ARGUMENT) << m;
        EXPECT_NE(m.find("id 10 at 1 is outside 10 rows of tok_embd"), std::string::npos) << m;
        EXPECT_NE(m.find("op 1 of run()"), std::string::npos) << m;
        EXPECT_NE(m.find("download()"), std::string::npos) << m;
    }
    EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size() * 4), 0) << "the downloaded bytes were written first";
    std::fill(got.begin(), got.end(), -1.0f);
    EXPECT_NO_THROW(be->download(got.data(), dy.t.data, got.size() * 4)) << "reported once";
    EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size() * 4), 0);
}

// Small uploads do not wait for the device (they go through the staging ring): 600 of them into one buffer,
// each followed by a run() that adds it to an accumulator, from one host vector rewritten after every upload
// (so upload() must have taken the bytes when it returns), 600 x 4 KiB going round the 1 MiB ring twice. Each
// run must see its own upload, after the previous run read the one before.
TEST(cuda_backend, small_uploads_between_runs_keep_stream_order) {
    CUDA_OR_SKIP(be);
    std::mt19937_64 rng(test_seed() + 5);
    const int64_t k = 1024, steps = 600;
    owned_tensor acc(dtype::F32, k), x(dtype::F32, k);
    fill_random(rng, acc.t);
    fill_random(rng, x.t);
    dev_tensor dacc(*be, acc.t), dx(*be, x.t);
    op add;  // acc = acc + x
    add.type = op_type::ADD, add.dst = &dacc.t, add.src[0] = &dacc.t, add.src[1] = &dx.t;
    std::vector<float> want(acc.t.ptr<float>(), acc.t.ptr<float>() + k);
    std::vector<float> src(static_cast<size_t>(k));
    for (int64_t s = 0; s < steps; ++s) {
        for (float& v : src) v = std::uniform_real_distribution<float>(-1.0f, 1.0f)(rng);
        be->upload(dx.t.data, src.data(), src.size() * sizeof(float));
        for (int64_t i = 0; i < k; ++i) want[size_t(i)] += src[size_t(i)];
        be->run(&add, 1);
    }
    const std::vector<uint8_t> got = dacc.read();
    EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size() * 4), 0) << "f32 adds in the same order are exact";
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
