// The CUDA backend's fused launches (kernels_cuda/mul_mat_vec.h), against cpu-ref running the same ops one by one:
//  - gate/up + SWIGLU: MUL_MAT g, MUL_MAT u of one x, then SWIGLU(g, g, u), computed by one launch;
//  - Q/K/V: three MUL_MATs of one x with different row counts (and two, and a chain that must not be joined);
//  - cases that must not fuse (SWIGLU written over up; a MUL_MAT whose x is the previous result) and give the same
//    values through the op-by-op path;
//  - RMS_NORM and the residual ADD inside the int8 projection launches (a whole layer's run), and their lookalikes.
// Every fast weight type and a type without a fast kernel (Q5_0), 1, 2, 3 and 8 columns (gpu-check runs it once
// more with TFU_CUDA_MMV=float for the float kernels that the int8 kernel's types otherwise leave to other types),
// row counts that are not a multiple of the rows per block, rows of several chunks (Q6_K rows take the int8 kernel
// only when k is a multiple of 2048, so both of its paths show). Bounds: test_ops' MUL_MAT bounds per type (the SWIGLU of the fused launch is
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
// the float kernel); Q6_K's rows of k = 2304 and 4352 are not a multiple of 16 bytes and take the float kernel.
TEST(cuda_fusion, long_rows) {
    std::string why;
    std::unique_ptr<backend> dev = backend_or_null(TFU_BACKEND_CUDA, &why);
    if (!dev) GTEST_SKIP() << why;
    std::mt19937_64 rng(test_seed() + 14);
    for (dtype t : {dtype::Q4_0, dtype::Q8_0, dtype::Q4_K, dtype::Q6_K})
        for (int64_t k : {2304, 4352, 6144, 14336})
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

// A decoder layer's run as the decoder now cuts it (decoder.cpp): each RMS_NORM is computed inside the int8 launch
// of the projections after it (block 0 also stores its result) and each residual ADD inside the launch of the
// projection before it (in place, either operand order), then the output norm with its projection: Q4_0, Q8_0,
// Q4_K and Q6_K (the int8 kernel's types); F16 (float kernels) fuses the ADDs only, its norms run as RMS_NORM
// launches. Last, lookalikes that must not fuse: a norm in place over its source, and an ADD of a broadcast row. Bounds grow by one matrix bound per projection on the path to each value.
TEST(cuda_fusion, norm_and_residual_inside_the_projections) {
    std::string why;
    std::unique_ptr<backend> dev = backend_or_null(TFU_BACKEND_CUDA, &why);
    if (!dev) GTEST_SKIP() << why;
    std::mt19937_64 rng(test_seed() + 15);
    for (dtype t : {dtype::Q4_0, dtype::Q8_0, dtype::Q4_K, dtype::Q6_K, dtype::F16})
        for (int64_t n : {1, 2, 4}) {
            // Q6_K rows take the int8 kernel when they are a multiple of 16 bytes: k a multiple of 2048.
            const bool q6 = t == dtype::Q6_K;
            const int64_t k = q6 ? 2048 : 1024, f = q6 ? 4096 : 2304, kv = 256, vocab = 777;
            device_case c(*dev);
            tensor* h = c.add(rng, dtype::F32, k, n, true);
            tensor* g1 = c.add(rng, dtype::F32, k, 1, true);
            tensor* g2 = c.add(rng, dtype::F32, k, 1, true);
            tensor* g3 = c.add(rng, dtype::F32, k, 1, true);
            tensor* wq = c.add(rng, t, k, k, true, 0.05f);
            tensor* wk = c.add(rng, t, k, kv, true, 0.05f);
            tensor* wv = c.add(rng, t, k, kv, true, 0.05f);
            tensor* wo = c.add(rng, t, k, k, true, 0.05f);
            tensor* wg = c.add(rng, t, k, f, true, 0.05f);
            tensor* wu = c.add(rng, t, k, f, true, 0.05f);
            tensor* wd = c.add(rng, t, f, k, true, 0.05f);
            tensor* wl = c.add(rng, t, k, vocab, true, 0.05f);
            tensor* xn = c.add(rng, dtype::F32, k, n, false);
            tensor* xn2 = c.add(rng, dtype::F32, k, n, false);
            tensor* xn3 = c.add(rng, dtype::F32, k, n, false);
            tensor* q = c.add(rng, dtype::F32, k, n, false);
            tensor* kk = c.add(rng, dtype::F32, kv, n, false);
            tensor* v = c.add(rng, dtype::F32, kv, n, false);
            tensor* o = c.add(rng, dtype::F32, k, n, false);
            tensor* gt = c.add(rng, dtype::F32, f, n, false);
            tensor* up = c.add(rng, dtype::F32, f, n, false);
            tensor* d = c.add(rng, dtype::F32, k, n, false);
            tensor* lg = c.add(rng, dtype::F32, vocab, n, false);
            auto norm = [](tensor* y, tensor* x, tensor* g) {
                op r = make_op(op_type::RMS_NORM, y, x, g);
                r.f[0] = 1e-5f;
                return r;
            };
            c.run({norm(xn, h, g1), make_op(op_type::MUL_MAT, q, wq, xn), make_op(op_type::MUL_MAT, kk, wk, xn),
                   make_op(op_type::MUL_MAT, v, wv, xn), make_op(op_type::MUL_MAT, o, wo, q),
                   make_op(op_type::ADD, h, h, o), norm(xn2, h, g2), make_op(op_type::MUL_MAT, gt, wg, xn2),
                   make_op(op_type::MUL_MAT, up, wu, xn2), make_op(op_type::SWIGLU, gt, gt, up),
                   make_op(op_type::MUL_MAT, d, wd, gt), make_op(op_type::ADD, h, d, h), norm(xn3, h, g3),
                   make_op(op_type::MUL_MAT, lg, wl, xn3)});
            const std::string what = std::string(dtype_name(t)) + " n=" + std::to_string(n);
            const double b = mul_mat_bound(t);
            EXPECT_LE(rel_l2(c.device_values(xn), to_floats(*xn)), 1e-5) << what << " attention norm";
            EXPECT_LE(rel_l2(c.device_values(q), to_floats(*q)), b) << what << " q";
            EXPECT_LE(rel_l2(c.device_values(kk), to_floats(*kk)), b) << what << " k";
            EXPECT_LE(rel_l2(c.device_values(v), to_floats(*v)), b) << what << " v";
            EXPECT_LE(rel_l2(c.device_values(o), to_floats(*o)), 2 * b) << what << " o";
            EXPECT_LE(rel_l2(c.device_values(xn2), to_floats(*xn2)), 2 * b) << what << " ffn norm";
            EXPECT_LE(rel_l2(c.device_values(up), to_floats(*up)), 3 * b) << what << " up";
            EXPECT_LE(rel_l2(c.device_values(gt), to_floats(*gt)), 4 * b) << what << " silu(gate) * up";
            EXPECT_LE(rel_l2(c.device_values(d), to_floats(*d)), 5 * b) << what << " down";
            EXPECT_LE(rel_l2(c.device_values(h), to_floats(*h)), 5 * b) << what << " residual";
            EXPECT_LE(rel_l2(c.device_values(xn3), to_floats(*xn3)), 5 * b) << what << " output norm";
            EXPECT_LE(rel_l2(c.device_values(lg), to_floats(*lg)), 6 * b) << what << " logits";
        }
    for (int64_t n : {1, 3}) {
        const int64_t k = 512, m = 320;
        device_case c(*dev);
        tensor* h = c.add(rng, dtype::F32, k, n, true);
        tensor* g = c.add(rng, dtype::F32, k, 1, true);
        tensor* w = c.add(rng, dtype::Q4_0, k, m, true, 0.05f);
        tensor* w2 = c.add(rng, dtype::Q4_0, m, m, true, 0.05f);
        tensor* bias = c.add(rng, dtype::F32, m, 1, true);
        tensor* y = c.add(rng, dtype::F32, m, n, false);
        tensor* y2 = c.add(rng, dtype::F32, m, n, false);
        tensor* z = c.add(rng, dtype::F32, m, n, false);
        op nr = make_op(op_type::RMS_NORM, h, h, g);  // in place: block 0 would overwrite what others still read
        nr.f[0] = 1e-6f;
        c.run({nr, make_op(op_type::MUL_MAT, y, w, h), make_op(op_type::MUL_MAT, y2, w2, y),
               make_op(op_type::ADD, z, y2, bias)});  // a broadcast row: not the residual form
        const std::string what = "lookalikes n=" + std::to_string(n);
        EXPECT_LE(rel_l2(c.device_values(h), to_floats(*h)), 1e-5) << what << " norm in place";
        EXPECT_LE(rel_l2(c.device_values(y), to_floats(*y)), mul_mat_bound(dtype::Q4_0)) << what << " y";
        EXPECT_LE(rel_l2(c.device_values(z), to_floats(*z)), 2 * mul_mat_bound(dtype::Q4_0)) << what << " z";
    }
}

}  // namespace
}  // namespace tfu::test
