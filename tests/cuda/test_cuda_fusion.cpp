// The CUDA backend's fused launches (kernels_cuda/mul_mat_vec.h), against cpu-ref running the same ops one by one:
//  - gate/up + SWIGLU: MUL_MAT g, MUL_MAT u of one x, then SWIGLU(g, g, u), computed by one launch;
//  - Q/K/V: three MUL_MATs of one x with different row counts (and two, and a chain that must not be joined);
//  - cases that must not fuse (SWIGLU written over up; a MUL_MAT whose x is the previous result) and give the same
//    values through the op-by-op path.
// Every fast weight type and a type without a fast kernel (Q5_0), 1, 2 (the int8 path), 3 and 8 columns, row counts that are not a
// multiple of the rows per block. Bounds: test_ops' MUL_MAT bounds per type (the SWIGLU of the fused launch is
// the reference's double arithmetic on those values). Skips with the reason when no CUDA device is usable.
#include <cmath>

#include "ops/op_test_util.h"

namespace tfu::test {
namespace {

std::unique_ptr<backend> cuda_or_null(std::string* why) {
    try {
        return create_backend(TFU_BACKEND_CUDA, 0);
    } catch (const tfu::error& e) {
        if (e.status() != TFU_STATUS_BACKEND_UNAVAILABLE) throw;
        *why = e.what();
        return nullptr;
    }
}

double rel_l2(const std::vector<float>& got, const std::vector<float>& want) {
    double num = 0, den = 0;
    for (size_t i = 0; i < want.size(); ++i) {
        if (!std::isfinite(got[i])) return INFINITY;
        num += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
        den += double(want[i]) * want[i];
    }
    return std::sqrt(num / den);
}

double bound_of(dtype t) {  // test_ops' rel L2 bounds for MUL_MAT
    switch (t) {
        case dtype::F32: return 1e-5;
        case dtype::F16: return 2e-3;
        case dtype::BF16: return 1.5e-2;
        case dtype::Q2_K: case dtype::Q3_K: case dtype::Q4_K: case dtype::Q5_K: case dtype::Q6_K: return 2.5e-2;
        default: return 2e-2;
    }
}

// Host tensors of one case and their device copies; ops are written against host tensors, then mapped.
class bench_case {
public:
    bench_case(backend& dev) : dev_(dev) {}
    ~bench_case() {
        for (void* p : allocs_) dev_.free(p);
    }
    tensor* add(std::mt19937_64& rng, dtype type, int64_t ne0, int64_t ne1, bool random, float sd = 1.0f) {
        host_.push_back(std::make_unique<owned_tensor>(type, ne0, ne1));
        tensor& t = host_.back()->t;
        if (random) fill_random(rng, t, sd);
        else std::memset(t.data, 0, t.nbytes());
        return &t;
    }
    // Runs ops on cpu-ref (host tensors) and, mapped to device copies, on dev in one run(); returns nothing,
    // results are read with device_values / host tensors.
    void run(const std::vector<op>& ops) {
        std::unique_ptr<backend> ref = make_cpu_ref_backend();
        std::map<const tensor*, tensor*> to_dev;
        for (auto& h : host_) {
            dev_t_.push_back(std::make_unique<tensor>(h->t));
            void* d = dev_.alloc(h->t.nbytes(), "fusion test");
            allocs_.push_back(d);
            dev_.upload(d, h->t.data, h->t.nbytes());
            dev_t_.back()->data = d;
            to_dev[&h->t] = dev_t_.back().get();
        }
        std::vector<op> dops = ops;
        for (op& o : dops) {
            o.dst = to_dev.at(o.dst);
            for (auto& s : o.src)
                if (s) s = to_dev.at(s);
        }
        ref->run(ops.data(), ops.size());
        dev_.run(dops.data(), dops.size());
        dev_.sync();
        map_ = to_dev;
    }
    std::vector<float> device_values(const tensor* host_t) {
        const tensor* d = map_.at(host_t);
        std::vector<float> v(size_t(host_t->nelements()));
        dev_.download(v.data(), d->data, v.size() * sizeof(float));
        return v;
    }

private:
    backend& dev_;
    std::vector<std::unique_ptr<owned_tensor>> host_;
    std::vector<std::unique_ptr<tensor>> dev_t_;
    std::vector<void*> allocs_;
    std::map<const tensor*, tensor*> map_;
};

op make_op(op_type type, tensor* dst, const tensor* a, const tensor* b) {
    op o;
    o.type = type;
    o.dst = dst;
    o.src[0] = a;
    o.src[1] = b;
    return o;
}

const dtype k_types[] = {dtype::F32, dtype::F16, dtype::BF16, dtype::Q4_0, dtype::Q8_0,
                         dtype::Q4_K, dtype::Q6_K, dtype::Q5_0};

TEST(cuda_fusion, gate_up_swiglu) {
    std::string why;
    std::unique_ptr<backend> dev = cuda_or_null(&why);
    if (!dev) GTEST_SKIP() << why;
    std::mt19937_64 rng(test_seed() + 11);
    for (dtype t : k_types)
        for (int64_t n : {1, 2, 3, 8}) {
            const int64_t k = 512, m = 301;
            bench_case c(*dev);
            tensor* x = c.add(rng, dtype::F32, k, n, true);
            tensor* wg = c.add(rng, t, k, m, true, 0.05f);
            tensor* wu = c.add(rng, t, k, m, true, 0.05f);
            tensor* g = c.add(rng, dtype::F32, m, n, false);
            tensor* u = c.add(rng, dtype::F32, m, n, false);
            c.run({make_op(op_type::MUL_MAT, g, wg, x), make_op(op_type::MUL_MAT, u, wu, x),
                   make_op(op_type::SWIGLU, g, g, u)});
            const std::string what = std::string(dtype_name(t)) + " n=" + std::to_string(n);
            EXPECT_LE(rel_l2(c.device_values(u), to_floats(*u)), bound_of(t)) << what << " up";
            EXPECT_LE(rel_l2(c.device_values(g), to_floats(*g)), 2 * bound_of(t)) << what << " silu(gate) * up";
        }
}

TEST(cuda_fusion, qkv_share_one_launch) {
    std::string why;
    std::unique_ptr<backend> dev = cuda_or_null(&why);
    if (!dev) GTEST_SKIP() << why;
    std::mt19937_64 rng(test_seed() + 12);
    for (dtype t : k_types)
        for (int64_t n : {1, 2, 3, 8}) {
            const int64_t k = 256;
            bench_case c(*dev);
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
            EXPECT_LE(rel_l2(c.device_values(q), to_floats(*q)), bound_of(t)) << what << " q";
            EXPECT_LE(rel_l2(c.device_values(kk), to_floats(*kk)), bound_of(t)) << what << " k";
            EXPECT_LE(rel_l2(c.device_values(v), to_floats(*v)), bound_of(t)) << what << " v";
        }
}

// Sequences that look alike but must run op by op: SWIGLU written over up (the fused launch writes the product
// where gate was), and a MUL_MAT that reads the previous one's result.
TEST(cuda_fusion, lookalikes_run_op_by_op) {
    std::string why;
    std::unique_ptr<backend> dev = cuda_or_null(&why);
    if (!dev) GTEST_SKIP() << why;
    std::mt19937_64 rng(test_seed() + 13);
    for (dtype t : {dtype::Q4_0, dtype::F16}) {
        const int64_t k = 256, m = 256;
        bench_case c(*dev);
        tensor* x = c.add(rng, dtype::F32, k, 1, true);
        tensor* wg = c.add(rng, t, k, m, true, 0.05f);
        tensor* wu = c.add(rng, t, k, m, true, 0.05f);
        tensor* w2 = c.add(rng, t, m, m, true, 0.05f);
        tensor* g = c.add(rng, dtype::F32, m, 1, false);
        tensor* u = c.add(rng, dtype::F32, m, 1, false);
        tensor* y = c.add(rng, dtype::F32, m, 1, false);
        tensor* z = c.add(rng, dtype::F32, m, 1, false);
        c.run({make_op(op_type::MUL_MAT, g, wg, x), make_op(op_type::MUL_MAT, u, wu, x),
               make_op(op_type::SWIGLU, u, g, u),            // into up: not the fused form
               make_op(op_type::MUL_MAT, y, w2, u),          // x = the previous result: a chain
               make_op(op_type::MUL_MAT, z, w2, y)});
        const std::string what = dtype_name(t);
        EXPECT_LE(rel_l2(c.device_values(g), to_floats(*g)), bound_of(t)) << what << " gate";
        EXPECT_LE(rel_l2(c.device_values(u), to_floats(*u)), 2 * bound_of(t)) << what << " swiglu into up";
        EXPECT_LE(rel_l2(c.device_values(y), to_floats(*y)), 3 * bound_of(t)) << what << " chain 1";
        EXPECT_LE(rel_l2(c.device_values(z), to_floats(*z)), 4 * bound_of(t)) << what << " chain 2";
    }
}

}  // namespace
}  // namespace tfu::test
