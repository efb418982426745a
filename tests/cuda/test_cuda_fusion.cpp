// The CUDA backend's fused launches (kernels_cuda/mul_mat_vec.h), against cpu-ref running the same ops one by one:
//  - gate/up + SWIGLU: MUL_MAT g, MUL_MAT u of one x, then SWIGLU(g, g, u), computed by one launch;
//  - Q/K/V: three MUL_MATs of one x with different row counts (and two, and a chain that must not be joined);
//  - cases that must not fuse (SWIGLU written over up; a MUL_MAT whose x is the previous result) and give the same
//    values through the op-by-op path.
// Every fast weight type and a type without a fast kernel (Q5_0), 1, 2, 3 and 8 columns (gpu-check runs it once
// more with TFU_CUDA_MMV=float for the float kernels that Q4_0 and Q8_0 otherwise leave to other types, and with
// TFU_CUDA_MMV=i8), row counts that are not a multiple of the rows per block, rows of several chunks. Bounds: test_ops' MUL_MAT bounds per type (the SWIGLU of the fused launch is
// the reference's double arithmetic on those values). Skips with the reason when no CUDA device is usable.
#include <cmath>

#include "ops/device_test_util.h"

namespace tfu::test {
namespace {

const dtype k_types[] = {dtype::F32, dtype::F16, dtype::BF16, dtype::Q4_0, dtype::Q8_0,
                         dtype::Q4_K, dtype::Q6_K, dtype::Q5_0};

TEST(cuda_fusion, gate_up_swiglu) {
    std::string why;
    std::unique_ptr<backend> dev = backend_or_null(TFU_BACKEND_CUDA, &why);
    if (!dev) GTEST_SKIP() << why;
    std::mt19937_64 rng(test_seed() + 11);
    for (dtype t : k_types)
        for (int64_t n : {1, 2, 3, 8}) {
            const int64_t k = 512, m = 301;
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
}

TEST(cuda_fusion, qkv_share_one_launch) {
    std::string why;
    std::unique_ptr<backend> dev = backend_or_null(TFU_BACKEND_CUDA, &why);
    if (!dev) GTEST_SKIP() << why;
    std::mt19937_64 rng(test_seed() + 12);
    for (dtype t : k_types)
        for (int64_t n : {1, 2, 3, 8}) {
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
}

// Sequences that look alike but must run op by op: SWIGLU written over up (the fused launch writes the product
// where gate was), and a MUL_MAT that reads the previous one's result.
TEST(cuda_fusion, lookalikes_run_op_by_op) {
    std::string why;
    std::unique_ptr<backend> dev = backend_or_null(TFU_BACKEND_CUDA, &why);
    if (!dev) GTEST_SKIP() << why;
    std::mt19937_64 rng(test_seed() + 13);
    for (dtype t : {dtype::Q4_0, dtype::F16}) {
        const int64_t k = 256, m = 256;
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
               make_op(op_type::SWIGLU, u, g, u),            // into up: not the fused form
               make_op(op_type::MUL_MAT, y, w2, u),          // x = the previous result: a chain
               make_op(op_type::MUL_MAT, z, w2, y)});
        const std::string what = dtype_name(t);
        EXPECT_LE(rel_l2(c.device_values(g), to_floats(*g)), mul_mat_bound(t)) << what << " gate";
        EXPECT_LE(rel_l2(c.device_values(u), to_floats(*u)), 2 * mul_mat_bound(t)) << what << " swiglu into up";
        EXPECT_LE(rel_l2(c.device_values(y), to_floats(*y)), 3 * mul_mat_bound(t)) << what << " chain 1";
        EXPECT_LE(rel_l2(c.device_values(z), to_floats(*z)), 4 * mul_mat_bound(t)) << what << " chain 2";
    }
}

// Rows longer than one chunk of mul_mat_vec_i8.cu (64 weight blocks): several chunks, a last chunk that is partly
// used (k = 2304: 64 + 8 blocks), the 8B down projection's k, with GLU, three matrices, and 1-5 columns (5 takes
// the float kernel); Q4_K shows the path of a type without the int8 kernel at the same shapes.
TEST(cuda_fusion, long_rows) {
    std::string why;
    std::unique_ptr<backend> dev = backend_or_null(TFU_BACKEND_CUDA, &why);
    if (!dev) GTEST_SKIP() << why;
    std::mt19937_64 rng(test_seed() + 14);
    for (dtype t : {dtype::Q4_0, dtype::Q8_0, dtype::Q4_K})
        for (int64_t k : {2304, 4352, 14336})
            for (int64_t n : {1, 2, 4, 5}) {
                const int64_t m = 45;
                device_case c(*dev);
                tensor* x = c.add(rng, dtype::F32, k, n, true);
                tensor* wg = c.add(rng, t, k, m, true, 0.05f);
                tensor* wu = c.add(rng, t, k, m, true, 0.05f);
                tensor* wv = c.add(rng, t, k, 9, true, 0.05f);
                tensor* g = c.add(rng, dtype::F32, m, n, false);
                tensor* u = c.add(rng, dtype::F32, m, n, false);
                tensor* q = c.add(rng, dtype::F32, m, n, false);
                tensor* kk = c.add(rng, dtype::F32, m, n, false);
                tensor* v = c.add(rng, dtype::F32, 9, n, false);
                c.run({make_op(op_type::MUL_MAT, g, wg, x), make_op(op_type::MUL_MAT, u, wu, x),
                       make_op(op_type::SWIGLU, g, g, u), make_op(op_type::MUL_MAT, q, wg, x),
                       make_op(op_type::MUL_MAT, kk, wu, x), make_op(op_type::MUL_MAT, v, wv, x)});
                const std::string what = std::string(dtype_name(t)) + " k=" + std::to_string(k) + " n=" + std::to_string(n);
                EXPECT_LE(rel_l2(c.device_values(u), to_floats(*u)), mul_mat_bound(t)) << what << " up";
                EXPECT_LE(rel_l2(c.device_values(g), to_floats(*g)), 2 * mul_mat_bound(t)) << what << " silu(gate) * up";
                EXPECT_LE(rel_l2(c.device_values(q), to_floats(*q)), mul_mat_bound(t)) << what << " q";
                EXPECT_LE(rel_l2(c.device_values(kk), to_floats(*kk)), mul_mat_bound(t)) << what << " k";
                EXPECT_LE(rel_l2(c.device_values(v), to_floats(*v)), mul_mat_bound(t)) << what << " v";
            }
}

}  // namespace
}  // namespace tfu::test
