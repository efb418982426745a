// The Vulkan decode matrix-vector kernel's unit path (kernels_vk/shaders/mmv_units.glsl: F32, F16, BF16, Q4_0, Q8_0,
// Q4_K, Q6_K decoded 8 weights at a time) on odd shapes, against cpu-ref:
//  - k not a multiple of 256 (Q4_0/Q8_0: whole 32-blocks; float types: also k % 8 != 0, a tail of single elements,
//    and k < 8, no unit at all);
//  - weight rows with padded strides (nb[1] = row bytes + 2, 4 or 16: blocks straddle 32-bit words differently
//    per row; 16-byte aligned rows take the 128-bit loads, others not), weights starting 4 bytes into their
//    allocation;
//  - x with padded column strides (not a multiple of 4 floats: scalar x loads) and x starting 4 bytes in;
//  - m of 1, 7, 37; 1..8 columns; one MUL_MAT, gate/up + SWIGLU (GLU launch) and three matrices of one x (Q/K/V
//    launch) with padded weights;
//  - m of 16421 (a row slot per subgroup) for each launch kind;
//  - 16-byte aligned rows of whole 16-byte words, up to 4096 long;
//  - a projection with the residual ADD of its result in the same launch.
// Bounds: test_ops' MUL_MAT rel-L2 bounds per type (the fused SWIGLU's product 2x). Weights random (seeded, printed
// by test_seed()). Skipped where no Vulkan device (or module) is present (lavapipe: TFU_VK_ALLOW_CPU=1).
#include <cmath>
#include <cstdio>
#include <map>

#include "ops/device_test_util.h"

namespace tfu::test {
namespace {

// The tensors of one case, on the host (run by cpu-ref) and on the device (same layout, same lead): padded
// weights and x whose padding bytes stay garbage (the kernel must not read them).
class mmv_case {
public:
    explicit mmv_case(backend& dev) : c_(dev) {}
    tensor* weight(std::mt19937_64& rng, dtype type, int64_t k, int64_t m, size_t pad, size_t lead) {
        tensor* t = c_.add_strided(type, k, m, row_size(type, k) + pad, lead, 0xA5);
        fill_random(rng, *t, 0.05f);
        return t;
    }
    tensor* x(std::mt19937_64& rng, int64_t k, int64_t n, size_t pad_floats, size_t lead) {
        tensor* t = c_.add_strided(dtype::F32, k, n, sizeof(float) * size_t(k + int64_t(pad_floats)), lead, 0xA5);
        fill_random(rng, *t, 1.0f);
        return t;
    }
    tensor* result(int64_t m, int64_t n) { return c_.add_strided(dtype::F32, m, n, sizeof(float) * size_t(m), 0, 0); }
    void run(const std::vector<op>& ops) { c_.run(ops); }
    std::vector<float> device_values(const tensor* host_t) { return c_.device_values(host_t); }

private:
    device_case c_;
};

// The unit types and row lengths that exercise them (none a multiple of 256 where the type allows).
struct type_shapes {
    dtype t;
    std::vector<int64_t> ks;
};
const type_shapes k_unit_types[] = {
    {dtype::F32, {5, 13, 264, 1003}},   {dtype::F16, {7, 8, 13, 264, 1003}}, {dtype::BF16, {3, 13, 264, 1003}},
    {dtype::Q4_0, {32, 96, 1056}},      {dtype::Q8_0, {32, 96, 1056}},      {dtype::Q4_K, {256, 768}},
    {dtype::Q6_K, {256, 768}},
};

// Row padding in bytes: 2 shifts 2-byte aligned blocks across word boundaries row by row; F32 rows are read as
// whole words (the backend accepts 2-byte strided weights, but the F32 dequantizer needs 4), so not for F32.
std::vector<size_t> pads_of(dtype t) {
    if (t == dtype::F32) return {0, 4, 16};
    return {0, 2, 4, 16};
}

// One launch kind on the device against cpu-ref, with x of n columns (padded by x_pad floats, x_lead bytes in):
// a lone MUL_MAT of m rows whose weight rows are padded by w_pad bytes.
void check_single(backend& dev, std::mt19937_64& rng, dtype t, int64_t k, int64_t m, int64_t n, size_t w_pad,
                  size_t x_pad, size_t x_lead, const std::string& what) {
    mmv_case c(dev);
    tensor* w = c.weight(rng, t, k, m, w_pad, 0);
    tensor* x = c.x(rng, k, n, x_pad, x_lead);
    tensor* d = c.result(m, n);
    c.run({make_op(op_type::MUL_MAT, d, w, x)});
    EXPECT_LE(rel_l2(c.device_values(d), to_floats(*d)), mul_mat_bound(t)) << what << " single";
}
// gate/up + SWIGLU (one GLU launch) of m rows each, up's rows padded by 16 bytes.
void check_glu(backend& dev, std::mt19937_64& rng, dtype t, int64_t k, int64_t m, int64_t n,
               const std::string& what) {
    mmv_case c(dev);
    tensor* x = c.x(rng, k, n, 0, 0);
    tensor* wg = c.weight(rng, t, k, m, 0, 0);
    tensor* wu = c.weight(rng, t, k, m, 16, 0);
    tensor* g = c.result(m, n);
    tensor* u = c.result(m, n);
    c.run({make_op(op_type::MUL_MAT, g, wg, x), make_op(op_type::MUL_MAT, u, wu, x), make_op(op_type::SWIGLU, g, g, u)});
    EXPECT_LE(rel_l2(c.device_values(u), to_floats(*u)), mul_mat_bound(t)) << what << " up";
    EXPECT_LE(rel_l2(c.device_values(g), to_floats(*g)), 2 * mul_mat_bound(t)) << what << " glu";
}
// Matrices of one x in one launch (Q/K/V): rows[i] rows each (0: fewer matrices), the second padded by 16 bytes.
void check_shared_x(backend& dev, std::mt19937_64& rng, dtype t, int64_t k, const int64_t (&rows)[3], int64_t n,
                    const std::string& what) {
    mmv_case c(dev);
    tensor* x = c.x(rng, k, n, 0, 0);
    std::vector<op> ops;
    std::vector<tensor*> ds;
    for (int i = 0; i < 3 && rows[i] > 0; ++i) {
        tensor* w = c.weight(rng, t, k, rows[i], i == 1 ? 16 : 0, 0);
        ds.push_back(c.result(rows[i], n));
        ops.push_back(make_op(op_type::MUL_MAT, ds.back(), w, x));
    }
    c.run(ops);
    for (size_t i = 0; i < ds.size(); ++i)
        EXPECT_LE(rel_l2(c.device_values(ds[i]), to_floats(*ds[i])), mul_mat_bound(t)) << what << " matrix " << i;
}

TEST(vk_mmv_units, single_matrix_odd_shapes) {
    std::string why;
    std::unique_ptr<backend> dev = backend_or_null(TFU_BACKEND_VULKAN, &why);
    if (!dev) GTEST_SKIP() << why;
    std::mt19937_64 rng(test_seed());
    int cases = 0;
    for (const type_shapes& ts : k_unit_types)
        for (int64_t k : ts.ks)
            for (size_t pad : pads_of(ts.t)) {
                // Columns 1..8 spread over the cases (every count for every type), m of 1, 7, 37; x and weights
                // 4 bytes into their allocations and x padded by one float on alternate cases.
                const int64_t n = 1 + (cases % 8);
                const int64_t m = (cases % 3 == 0) ? 1 : (cases % 3 == 1 ? 7 : 37);
                const size_t w_lead = (cases % 2) * 4, x_lead = ((cases / 2) % 2) * 4, x_pad = (cases / 4) % 2;
                ++cases;
                mmv_case c(*dev);
                tensor* w = c.weight(rng, ts.t, k, m, pad, w_lead);
                tensor* x = c.x(rng, k, n, x_pad, x_lead);
                tensor* d = c.result(m, n);
                c.run({make_op(op_type::MUL_MAT, d, w, x)});
                EXPECT_LE(rel_l2(c.device_values(d), to_floats(*d)), mul_mat_bound(ts.t))
                    << dtype_name(ts.t) << " k=" << k << " m=" << m << " n=" << n << " pad=" << pad
                    << " w_lead=" << w_lead << " x_lead=" << x_lead << " x_pad=" << x_pad;
            }
    std::printf("%d single-matrix cases\n", cases);
}

// Every column count for F16 and Q4_0 on one padded shape (each count is its own pipeline: NC is a specialization
// constant).
TEST(vk_mmv_units, every_column_count) {
    std::string why;
    std::unique_ptr<backend> dev = backend_or_null(TFU_BACKEND_VULKAN, &why);
    if (!dev) GTEST_SKIP() << why;
    std::mt19937_64 rng(test_seed() + 1);
    for (dtype t : {dtype::F16, dtype::Q4_0, dtype::Q8_0})
        for (int64_t n = 1; n <= 8; ++n) {
            const int64_t k = 160, m = 9;
            mmv_case c(*dev);
            tensor* w = c.weight(rng, t, k, m, 2, 0);
            tensor* x = c.x(rng, k, n, 0, 0);
            tensor* d = c.result(m, n);
            c.run({make_op(op_type::MUL_MAT, d, w, x)});
            EXPECT_LE(rel_l2(c.device_values(d), to_floats(*d)), mul_mat_bound(t)) << dtype_name(t) << " n=" << n;
        }
}

// gate/up + SWIGLU (one GLU launch) and Q/K/V (three matrices of one x) with padded weights: the unit path inside
// the fused launches, with rows of different matrices at different word alignments.
TEST(vk_mmv_units, fused_launches_padded) {
    std::string why;
    std::unique_ptr<backend> dev = backend_or_null(TFU_BACKEND_VULKAN, &why);
    if (!dev) GTEST_SKIP() << why;
    std::mt19937_64 rng(test_seed() + 2);
    for (const type_shapes& ts : k_unit_types)
        for (int64_t n : {1, 3}) {
            const int64_t k = ts.ks.back();
            const std::string what = std::string(dtype_name(ts.t)) + " k=" + std::to_string(k) +
                                     " n=" + std::to_string(n);
            const size_t pad_a = ts.t == dtype::F32 ? 4 : 2;
            {
                mmv_case c(*dev);
                const int64_t m = 37;
                tensor* x = c.x(rng, k, n, 0, 0);
                tensor* wg = c.weight(rng, ts.t, k, m, pad_a, 0);
                tensor* wu = c.weight(rng, ts.t, k, m, 16, 4);
                tensor* g = c.result(m, n);
                tensor* u = c.result(m, n);
                c.run({make_op(op_type::MUL_MAT, g, wg, x), make_op(op_type::MUL_MAT, u, wu, x),
                       make_op(op_type::SWIGLU, g, g, u)});
                EXPECT_LE(rel_l2(c.device_values(u), to_floats(*u)), mul_mat_bound(ts.t)) << what << " up";
                EXPECT_LE(rel_l2(c.device_values(g), to_floats(*g)), 2 * mul_mat_bound(ts.t)) << what << " glu";
            }
            {
                mmv_case c(*dev);
                tensor* x = c.x(rng, k, n, 1, 4);
                tensor* wq = c.weight(rng, ts.t, k, 37, 0, 0);
                tensor* wk = c.weight(rng, ts.t, k, 7, pad_a, 4);
                tensor* wv = c.weight(rng, ts.t, k, 1, 4, 0);
                tensor* q = c.result(37, n);
                tensor* kk = c.result(7, n);
                tensor* v = c.result(1, n);
                c.run({make_op(op_type::MUL_MAT, q, wq, x), make_op(op_type::MUL_MAT, kk, wk, x),
                       make_op(op_type::MUL_MAT, v, wv, x)});
                EXPECT_LE(rel_l2(c.device_values(q), to_floats(*q)), mul_mat_bound(ts.t)) << what << " q";
                EXPECT_LE(rel_l2(c.device_values(kk), to_floats(*kk)), mul_mat_bound(ts.t)) << what << " k";
                EXPECT_LE(rel_l2(c.device_values(v), to_floats(*v)), mul_mat_bound(ts.t)) << what << " v";
            }
        }
}

// Rows on 16-byte boundaries, a whole number of 16-byte words long (the 128-bit loads of the float types; model
// weights look like this), of lengths beyond one workgroup's pass: row strides padded by 0 or 16 bytes, 1 and 3
// columns, alone and in GLU and Q/K/V launches.
TEST(vk_mmv_units, aligned_long_rows) {
    std::string why;
    std::unique_ptr<backend> dev = backend_or_null(TFU_BACKEND_VULKAN, &why);
    if (!dev) GTEST_SKIP() << why;
    std::mt19937_64 rng(test_seed() + 4);
    const type_shapes aligned[] = {
        {dtype::F32, {264, 1032}}, {dtype::F16, {264, 1032}},  {dtype::BF16, {264, 1032}}, {dtype::Q4_0, {256, 2304}},
        {dtype::Q8_0, {256, 1280}}, {dtype::Q4_K, {768, 2304}}, {dtype::Q6_K, {2048, 4096}},
    };
    for (const type_shapes& ts : aligned)
        for (int64_t k : ts.ks)
            for (int64_t n : {1, 3}) {
                ASSERT_EQ(row_size(ts.t, k) % 16, 0u) << dtype_name(ts.t) << " k=" << k;
                const std::string what = std::string(dtype_name(ts.t)) + " k=" + std::to_string(k) +
                                         " n=" + std::to_string(n);
                check_single(*dev, rng, ts.t, k, 37, n, n == 1 ? 0 : 16, 0, 0, what);
                check_glu(*dev, rng, ts.t, k, 19, n, what);
                check_shared_x(*dev, rng, ts.t, k, {21, 5, 5}, n, what);
            }
}

// A projection and the residual ADD of its result (one launch stores both: backend/fused_residual.h): in place
// (ADD(r, r, d), the decoder's) and into a separate y, the ADD's operands in both orders, 1 and 3 columns. d
// against cpu-ref within the type's bound; y exactly the f32 sum of r and the device's own d (the launch's add
// is add.comp's, on the value it stored). Also a look-alike whose y overlaps x (the ops then run one by one).
TEST(vk_mmv_units, projection_with_residual_add) {
    std::string why;
    std::unique_ptr<backend> dev = backend_or_null(TFU_BACKEND_VULKAN, &why);
    if (!dev) GTEST_SKIP() << why;
    std::mt19937_64 rng(test_seed() + 5);
    for (dtype t : {dtype::F16, dtype::Q4_0, dtype::Q8_0, dtype::Q4_K})
        for (int64_t n : {1, 3})
            for (int form = 0; form < 3; ++form) {  // 0: ADD(r, r, d); 1: ADD(y, d, r); 2: ADD(y, r, d)
                const int64_t k = 256, m = 37;
                const std::string what = std::string(dtype_name(t)) + " n=" + std::to_string(n) +
                                         " form=" + std::to_string(form);
                mmv_case c(*dev);
                tensor* w = c.weight(rng, t, k, m, 0, 0);
                tensor* x = c.x(rng, k, n, 0, 0);
                tensor* d = c.result(m, n);
                tensor* r = c.x(rng, m, n, 0, 0);
                tensor* y = form == 0 ? r : c.result(m, n);
                const std::vector<float> r0 = to_floats(*r);
                c.run({make_op(op_type::MUL_MAT, d, w, x),
                       form == 1 ? make_op(op_type::ADD, y, d, r) : make_op(op_type::ADD, y, r, d)});
                const std::vector<float> dv = c.device_values(d), yv = c.device_values(y);
                EXPECT_LE(rel_l2(dv, to_floats(*d)), mul_mat_bound(t)) << what;
                size_t differ = 0;
                for (size_t i = 0; i < yv.size(); ++i) differ += yv[i] != r0[i] + dv[i];
                EXPECT_EQ(differ, 0u) << what << ": y is not r + d";
            }
    {  // y overlapping x: not fused (x is still read while y is written); the ops' results one by one
        mmv_case c(*dev);
        const int64_t k = 64, m = 64;
        tensor* w = c.weight(rng, dtype::Q8_0, k, m, 0, 0);
        tensor* x = c.x(rng, k, 1, 0, 0);
        tensor* d = c.result(m, 1);
        c.run({make_op(op_type::MUL_MAT, d, w, x), make_op(op_type::ADD, x, x, d)});
        EXPECT_LE(rel_l2(c.device_values(x), to_floats(*x)), mul_mat_bound(dtype::Q8_0)) << "y == x";
    }
}

// Matrices of many rows (at least vk_ops.cpp's k_mmv_slot_rows, 16384) take the launch shape with one row slot per
// subgroup (mul_mat_vec.comp SLOTS > 1): an output projection of an odd row count (the last workgroup's slots run
// past m), a Q/K/V launch whose first matrix is that large (all three take the shape), and a gate/up + SWIGLU of
// that size; 1 and 3 columns; F16, Q4_0 and Q8_0 (the slots change the row loop, not the decoders; quantizing 16K
// rows of a k-quant in the test fill takes most of a minute).
TEST(vk_mmv_units, many_rows_slot_per_subgroup) {
    std::string why;
    std::unique_ptr<backend> dev = backend_or_null(TFU_BACKEND_VULKAN, &why);
    if (!dev) GTEST_SKIP() << why;
    std::mt19937_64 rng(test_seed() + 3);
    const int64_t big = 16384 + 37;
    for (const type_shapes& ts : k_unit_types) {
        if (ts.t != dtype::F16 && ts.t != dtype::Q4_0 && ts.t != dtype::Q8_0) continue;  // k-quants: slow to fill
        for (int64_t n : {1, 3}) {
            const int64_t k = ts.ks.front();
            const std::string what = std::string(dtype_name(ts.t)) + " k=" + std::to_string(k) +
                                     " n=" + std::to_string(n);
            check_single(*dev, rng, ts.t, k, big, n, 2, 1, 4, what);
            check_shared_x(*dev, rng, ts.t, k, {big, 7, 0}, n, what);
            check_glu(*dev, rng, ts.t, k, big, n, what);
        }
    }
}

}  // namespace
}  // namespace tfu::test
