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
// Every test runs twice: on the unit path (TFU_VK_MMV_I8=0), and with TFU_VK_MMV_I8=1, where the Q4_0, Q8_0,
// Q4_K and Q6_K launches of up to 4 columns take the int8 path (shaders/mmv_i8.glsl: x quantized to int8 per block
// of 32, packed dot products; lavapipe has the dot product, not accelerated) and the other types, and more
// columns, stay on the unit path. The backend's per-shader dispatch counts (TFU_VK_PROFILE=1) must show exactly the launches the int8
// path should have taken.
// Bounds: test_ops' MUL_MAT bounds per type, on the error relative to the size of the products' terms
// (term_rel_l2: q8 activations err in proportion to the terms, and a case of one row has too few sums for rel_l2);
// the fused SWIGLU's product rel_l2 within 2x. Weights random (seeded, printed by test_seed()). Skipped where no
// Vulkan device (or module) is present (lavapipe: TFU_VK_ALLOW_CPU=1).
#include <cmath>
#include <cstdio>
#include <map>

#include "ops/device_test_util.h"
#include "vulkan/vk_test_env.h"

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

// The two paths under test (see the top of the file).
enum class mmv_path { units, int8 };

// A Vulkan backend on one path with its profile counters on; on the int8 path, counts the launches that must take
// it (expect_int8) and checks the backend's count of mul_mat_vec_i8 dispatches against them at the end (on the
// unit path: none). Skips where there is no Vulkan device, or no int8 path on it.
class vk_mmv : public ::testing::TestWithParam<mmv_path> {
protected:
    void SetUp() override {
        std::string why;
        if (!open({}, &why)) GTEST_SKIP() << why;
    }
    // (Re)creates the backend with extra environment (the last one's profile line is logged and counted too).
    bool open(const std::vector<std::pair<const char*, const char*>>& extra, std::string* why) {
        dev_.reset();
        scoped_env env("TFU_VK_PROFILE", "1");
        env.set("TFU_VK_MMV_I8", int8() ? "1" : "0");
        for (auto [name, value] : extra) env.set(name, value);
        dev_ = backend_or_null(TFU_BACKEND_VULKAN, why);
        if (!dev_) return false;
        subgroups_ = log_.saw("reductions with subgroupAdd") && !log_.saw("subgroup arithmetic not used");
        if (int8() && log_.saw("TFU_VK_MMV_I8=1 ignored")) {
            dev_.reset();
            *why = "no int8 matrix-vector path on this device";
            return false;
        }
        return true;
    }
    void TearDown() override {
        if (!dev_) return;
        dev_.reset();  // logs the profile
        EXPECT_EQ(log_.recorded("mul_mat_vec_i8"), int8_launches_) << "launches on the int8 path";
        EXPECT_EQ(log_.recorded("rms_norm_subgroup") + log_.recorded("rms_norm"), norms_alone_)
            << "RMS_NORMs launched alone";
    }
    bool int8() const { return GetParam() == mmv_path::int8; }
    static bool int8_type(dtype t) {
        return t == dtype::Q4_0 || t == dtype::Q8_0 || t == dtype::Q4_K || t == dtype::Q6_K;
    }
    // Whether this run covers type t: the unit path every type, the int8 path its two.
    bool covers(dtype t) const { return !int8() || int8_type(t); }
    // `count` launches of type t over n columns of x: counted when they must take the int8 path.
    void launched(dtype t, int64_t n, unsigned count = 1) {
        if (int8() && int8_type(t) && n <= 4) int8_launches_ += count;
    }
    // An RMS_NORM the case runs before a launch of type t over n columns: fused into it (when fusable) on the int8
    // path, and on the unit path where the device has subgroup arithmetic; else a launch of its own.
    void norm_before(dtype t, int64_t n, bool fusable) {
        const bool int8_path = int8() && int8_type(t) && n <= 4;
        if (!(fusable && (int8_path || subgroups_))) ++norms_alone_;
    }
    backend& dev() { return *dev_; }

    // One launch kind on the device against cpu-ref, with x of n columns (padded by x_pad floats, x_lead bytes
    // in): a lone MUL_MAT of m rows whose weight rows are padded by w_pad bytes and start w_lead bytes in.
    void check_single(std::mt19937_64& rng, dtype t, int64_t k, int64_t m, int64_t n, size_t w_pad, size_t w_lead,
                      size_t x_pad, size_t x_lead, const std::string& what) {
        mmv_case c(dev());
        tensor* w = c.weight(rng, t, k, m, w_pad, w_lead);
        tensor* x = c.x(rng, k, n, x_pad, x_lead);
        tensor* d = c.result(m, n);
        c.run({make_op(op_type::MUL_MAT, d, w, x)});
        launched(t, n);
        EXPECT_LE(term_rel_l2(c.device_values(d), to_floats(*d), *w, *x), mul_mat_bound(t)) << what << " single";
    }
    // gate/up + SWIGLU (one GLU launch) of m rows each, gate's rows padded by g_pad bytes, up's by 16 bytes and
    // starting u_lead bytes in.
    void check_glu(std::mt19937_64& rng, dtype t, int64_t k, int64_t m, int64_t n, size_t g_pad, size_t u_lead,
                   const std::string& what) {
        mmv_case c(dev());
        tensor* x = c.x(rng, k, n, 0, 0);
        tensor* wg = c.weight(rng, t, k, m, g_pad, 0);
        tensor* wu = c.weight(rng, t, k, m, 16, u_lead);
        tensor* g = c.result(m, n);
        tensor* u = c.result(m, n);
        c.run({make_op(op_type::MUL_MAT, g, wg, x), make_op(op_type::MUL_MAT, u, wu, x),
               make_op(op_type::SWIGLU, g, g, u)});
        launched(t, n);
        EXPECT_LE(term_rel_l2(c.device_values(u), to_floats(*u), *wu, *x), mul_mat_bound(t)) << what << " up";
        EXPECT_LE(rel_l2(c.device_values(g), to_floats(*g)), 2 * mul_mat_bound(t)) << what << " glu";
    }
    // Matrices of one x in one launch (Q/K/V): rows[i] rows each (0: fewer matrices) padded by pad[i] bytes,
    // the second starting w1_lead bytes in; x padded by x_pad floats and x_lead bytes in.
    void check_shared_x(std::mt19937_64& rng, dtype t, int64_t k, const int64_t (&rows)[3], const size_t (&pad)[3],
                        size_t w1_lead, int64_t n, size_t x_pad, size_t x_lead, const std::string& what) {
        mmv_case c(dev());
        tensor* x = c.x(rng, k, n, x_pad, x_lead);
        std::vector<op> ops;
        std::vector<tensor*> ws, ds;
        for (int i = 0; i < 3 && rows[i] > 0; ++i) {
            ws.push_back(c.weight(rng, t, k, rows[i], pad[i], i == 1 ? w1_lead : 0));
            ds.push_back(c.result(rows[i], n));
            ops.push_back(make_op(op_type::MUL_MAT, ds.back(), ws.back(), x));
        }
        c.run(ops);
        launched(t, n);
        for (size_t i = 0; i < ds.size(); ++i)
            EXPECT_LE(term_rel_l2(c.device_values(ds[i]), to_floats(*ds[i]), *ws[i], *x), mul_mat_bound(t))
                << what << " matrix " << i;
    }

private:
    log_capture log_;  // before dev_: alive while the backend logs
    std::unique_ptr<backend> dev_;
    unsigned long long int8_launches_ = 0, norms_alone_ = 0;
    bool subgroups_ = false;
};

INSTANTIATE_TEST_SUITE_P(paths, vk_mmv, ::testing::Values(mmv_path::units, mmv_path::int8),
                         [](const ::testing::TestParamInfo<mmv_path>& p) {
                             return std::string(p.param == mmv_path::units ? "units" : "int8");
                         });

TEST_P(vk_mmv, single_matrix_odd_shapes) {
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
                if (!covers(ts.t)) continue;
                check_single(rng, ts.t, k, m, n, pad, w_lead, x_pad, x_lead,
                             std::string(dtype_name(ts.t)) + " k=" + std::to_string(k) + " m=" + std::to_string(m) +
                                 " n=" + std::to_string(n) + " pad=" + std::to_string(pad) +
                                 " w_lead=" + std::to_string(w_lead) + " x_lead=" + std::to_string(x_lead) +
                                 " x_pad=" + std::to_string(x_pad));
            }
    std::printf("%d single-matrix cases\n", cases);
}

// Every column count for F16, Q4_0 and Q8_0 on one padded shape (each count is its own pipeline: NC is a
// specialization constant; the int8 path takes 1..4).
TEST_P(vk_mmv, every_column_count) {
    std::mt19937_64 rng(test_seed() + 1);
    for (dtype t : {dtype::F16, dtype::Q4_0, dtype::Q8_0})
        for (int64_t n = 1; n <= 8; ++n)
            if (covers(t))
                check_single(rng, t, 160, 9, n, 2, 0, 0, 0, std::string(dtype_name(t)) + " n=" + std::to_string(n));
}

// gate/up + SWIGLU (one GLU launch) and Q/K/V (three matrices of one x) with padded weights: the unit path inside
// the fused launches, with rows of different matrices at different word alignments.
TEST_P(vk_mmv, fused_launches_padded) {
    std::mt19937_64 rng(test_seed() + 2);
    for (const type_shapes& ts : k_unit_types)
        for (int64_t n : {1, 3}) {
            if (!covers(ts.t)) continue;
            const int64_t k = ts.ks.back();
            const std::string what = std::string(dtype_name(ts.t)) + " k=" + std::to_string(k) +
                                     " n=" + std::to_string(n);
            const size_t pad_a = ts.t == dtype::F32 ? 4 : 2;
            check_glu(rng, ts.t, k, 37, n, pad_a, 4, what);
            check_shared_x(rng, ts.t, k, {37, 7, 1}, {0, pad_a, 4}, 4, n, 1, 4, what);
        }
}

// Rows on 16-byte boundaries, a whole number of 16-byte words long (the 128-bit loads of the float types; model
// weights look like this), of lengths beyond one workgroup's pass: row strides padded by 0 or 16 bytes, 1 and 3
// columns, alone and in GLU and Q/K/V launches.
TEST_P(vk_mmv, aligned_long_rows) {
    std::mt19937_64 rng(test_seed() + 4);
    const type_shapes aligned[] = {
        {dtype::F32, {264, 1032}}, {dtype::F16, {264, 1032}},  {dtype::BF16, {264, 1032}}, {dtype::Q4_0, {256, 2304}},
        {dtype::Q8_0, {256, 1280}}, {dtype::Q4_K, {768, 2304}}, {dtype::Q6_K, {2048, 4096}},
    };
    for (const type_shapes& ts : aligned)
        for (int64_t k : ts.ks)
            for (int64_t n : {1, 3}) {
                if (!covers(ts.t)) continue;
                ASSERT_EQ(row_size(ts.t, k) % 16, 0u) << dtype_name(ts.t) << " k=" << k;
                const std::string what = std::string(dtype_name(ts.t)) + " k=" + std::to_string(k) +
                                         " n=" + std::to_string(n);
                check_single(rng, ts.t, k, 37, n, n == 1 ? 0 : 16, 0, 0, 0, what);
                check_glu(rng, ts.t, k, 19, n, 0, 0, what);
                check_shared_x(rng, ts.t, k, {21, 5, 5}, {0, 16, 0}, 0, n, 0, 0, what);
            }
}

// Rows of 8192 weights and more (a feed-forward down projection's): on the int8 path two subgroups share each
// slot's blocks (vk_ops.cpp mmv_i8_ksplit; the shader's KS), each taking every other run of a subgroup's width of
// blocks, their sums meeting in shared memory: k = 8192 and 8224 (257 blocks: the parts get unequal runs), 1 and 2
// columns, alone, in GLU and in Q/K/V launches, and after a fused RMS_NORM.
TEST_P(vk_mmv, rows_split_over_subgroups) {
    std::mt19937_64 rng(test_seed() + 9);
    const double norm_bound = 1e-5;
    for (dtype t : {dtype::Q4_0, dtype::Q8_0})
        for (int64_t k : {8192, 8224})
            for (int64_t n : {1, 2}) {
                const std::string what = std::string(dtype_name(t)) + " k=" + std::to_string(k) +
                                         " n=" + std::to_string(n);
                check_single(rng, t, k, 37, n, 2, 0, 0, 0, what);
                check_glu(rng, t, k, 19, n, 0, 0, what);
                check_shared_x(rng, t, k, {21, 5, 5}, {0, 2, 0}, 0, n, 0, 0, what);
                mmv_case c(dev());
                tensor* src = c.x(rng, k, n, 0, 0);
                tensor* g = c.x(rng, k, 1, 0, 0);
                tensor* xn = c.result(k, n);
                tensor* w = c.weight(rng, t, k, 33, 0, 0);
                tensor* d = c.result(33, n);
                op nrm = make_op(op_type::RMS_NORM, xn, src, g);
                nrm.f[0] = 1e-5f;
                c.run({nrm, make_op(op_type::MUL_MAT, d, w, xn)});
                norm_before(t, n, true);
                launched(t, n);
                EXPECT_LE(rel_l2(c.device_values(xn), to_floats(*xn)), norm_bound) << what << " xn";
                EXPECT_LE(term_rel_l2(c.device_values(d), to_floats(*d), *w, *xn), mul_mat_bound(t)) << what << " norm";
            }
}

// A projection and the residual ADD of its result (one launch stores both: backend/fused_residual.h): in place
// (ADD(r, r, d), the decoder's) and into a separate y, the ADD's operands in both orders, 1 and 3 columns. d
// against cpu-ref within the type's bound; y exactly the f32 sum of r and the device's own d (the launch's add
// is add.comp's, on the value it stored). Also a look-alike whose y overlaps x (the ops then run one by one).
TEST_P(vk_mmv, projection_with_residual_add) {
    std::mt19937_64 rng(test_seed() + 5);
    for (dtype t : {dtype::F16, dtype::Q4_0, dtype::Q8_0, dtype::Q4_K})
        for (int64_t n : {1, 3})
            for (int form = 0; form < 3; ++form) {  // 0: ADD(r, r, d); 1: ADD(y, d, r); 2: ADD(y, r, d)
                if (!covers(t)) continue;
                const int64_t k = 256, m = 37;
                const std::string what = std::string(dtype_name(t)) + " n=" + std::to_string(n) +
                                         " form=" + std::to_string(form);
                mmv_case c(dev());
                tensor* w = c.weight(rng, t, k, m, 0, 0);
                tensor* x = c.x(rng, k, n, 0, 0);
                tensor* d = c.result(m, n);
                tensor* r = c.x(rng, m, n, 0, 0);
                tensor* y = form == 0 ? r : c.result(m, n);
                const std::vector<float> r0 = to_floats(*r);
                c.run({make_op(op_type::MUL_MAT, d, w, x),
                       form == 1 ? make_op(op_type::ADD, y, d, r) : make_op(op_type::ADD, y, r, d)});
                launched(t, n);
                const std::vector<float> dv = c.device_values(d), yv = c.device_values(y);
                EXPECT_LE(term_rel_l2(dv, to_floats(*d), *w, *x), mul_mat_bound(t)) << what;
                size_t differ = 0;
                for (size_t i = 0; i < yv.size(); ++i) differ += yv[i] != r0[i] + dv[i];
                EXPECT_EQ(differ, 0u) << what << ": y is not r + d";
            }
    {  // y overlapping x: not fused (x is still read while y is written); the ops' results one by one
        mmv_case c(dev());
        const int64_t k = 64, m = 64;
        tensor* w = c.weight(rng, dtype::Q8_0, k, m, 0, 0);
        tensor* x = c.x(rng, k, 1, 0, 0);
        tensor* d = c.result(m, 1);
        c.run({make_op(op_type::MUL_MAT, d, w, x), make_op(op_type::ADD, x, x, d)});
        launched(dtype::Q8_0, 1);
        EXPECT_LE(rel_l2(c.device_values(x), to_floats(*x)), mul_mat_bound(dtype::Q8_0)) << "y == x";
    }
}

// RMS_NORM(xn, src, g) and the launch that reads xn: Q/K/V (three matrices), gate/up + SWIGLU and one matrix (the
// output projection), 1 and 3 columns. The launch normalises src itself (vk_ops.cpp record_fused_norm_mmv; the
// int8 path as it quantizes x, the unit path as it loads x, with subgroup arithmetic) and its workgroup 0 stores
// xn: xn against cpu-ref within rms_norm's bound, the results within the type's. Look-alikes that must keep the
// norm apart: the norm in place (xn over src, which the other workgroups still read) and a result written over the
// norm's weight; a matrix of 16384 rows or more (an output projection), before which the norm stays apart by
// choice; and, on the unit path (16-byte loads of it), a norm weight 4 bytes past a 16-byte boundary.
TEST_P(vk_mmv, rms_norm_then_projections) {
    std::mt19937_64 rng(test_seed() + 6);
    const double norm_bound = 1e-5;
    for (dtype t : {dtype::F16, dtype::Q4_0, dtype::Q8_0})
        for (int64_t n : {1, 3})
            for (int form = 0; form < 3; ++form) {  // 0: Q/K/V; 1: gate/up + SWIGLU; 2: one matrix
                if (!covers(t)) continue;
                const int64_t k = 512;
                const std::string what = std::string(dtype_name(t)) + " n=" + std::to_string(n) +
                                         " form=" + std::to_string(form);
                mmv_case c(dev());
                tensor* src = c.x(rng, k, n, n == 3 ? 1 : 0, 0);  // 3 columns: src rows padded, xn's not
                tensor* g = c.x(rng, k, 1, 0, 0);
                tensor* xn = c.result(k, n);
                op nrm = make_op(op_type::RMS_NORM, xn, src, g);
                nrm.f[0] = 1e-5f;
                std::vector<op> ops = {nrm};
                std::vector<tensor*> ws, ds;
                const int64_t rows[3] = {37, 9, form == 0 ? 9 : 0};
                for (int i = 0; i < (form == 2 ? 1 : 2) + (form == 0); ++i) {
                    ws.push_back(c.weight(rng, t, k, form == 1 ? 37 : rows[i], i == 1 ? 2 : 0, 0));
                    ds.push_back(c.result(ws.back()->ne[1], n));
                    ops.push_back(make_op(op_type::MUL_MAT, ds.back(), ws.back(), xn));
                }
                if (form == 1) ops.push_back(make_op(op_type::SWIGLU, ds[0], ds[0], ds[1]));
                c.run(ops);
                norm_before(t, n, true);
                launched(t, n);
                EXPECT_LE(rel_l2(c.device_values(xn), to_floats(*xn)), norm_bound) << what << " xn";
                for (size_t i = 0; i < ds.size(); ++i)
                    EXPECT_LE(term_rel_l2(c.device_values(ds[i]), to_floats(*ds[i]), *ws[i], *xn),
                              (form == 1 && i == 0 ? 2 : 1) * mul_mat_bound(t))
                        << what << " matrix " << i;
            }
    for (dtype t : {dtype::Q4_0, dtype::Q8_0})
        for (int form = 0; form < 4; ++form) {  // 0: the norm in place; 1: the result over the norm's weight; 2: rows;
            if (!covers(t)) continue;           // 3: the norm's weight unaligned
            const int64_t k = 256, m = form == 2 ? 16384 + 5 : 37;
            mmv_case c(dev());
            tensor* src = c.x(rng, k, 1, 0, 0);
            tensor* g = c.x(rng, k, 1, 0, form == 3 ? 4 : 0);
            tensor* w = c.weight(rng, t, k, form == 1 ? k : m, 0, 0);
            tensor* xn = form == 0 ? src : c.result(k, 1);
            tensor* d = form == 1 ? g : c.result(m, 1);
            op nrm = make_op(op_type::RMS_NORM, xn, src, g);
            nrm.f[0] = 1e-5f;
            c.run({nrm, make_op(op_type::MUL_MAT, d, w, xn)});
            norm_before(t, 1, form == 3 && int8() && int8_type(t));  // the int8 path loads g a word at a time
            launched(t, 1);
            EXPECT_LE(rel_l2(c.device_values(xn), to_floats(*xn)), norm_bound) << dtype_name(t) << " form " << form;
            EXPECT_LE(rel_l2(c.device_values(d), to_floats(*d)), mul_mat_bound(t)) << dtype_name(t) << " form " << form;
        }
}

// Weights larger than one binding (TFU_VK_MAX_BINDING_BYTES=64768): one launch per row piece, each its own
// window. Piece rows = (binding - storage offset alignment) / row bytes, the same for any alignment of 1..256 bytes
// (Vulkan's largest) with these rows: Q4_0 k = 512 (288 bytes) 224 rows, Q8_0 k = 480 (510 bytes) 126 rows; so
// 300 rows are 2 and 3 pieces.
TEST_P(vk_mmv, row_pieces) {
    std::string why;
    if (!open({{"TFU_VK_MAX_BINDING_BYTES", "64768"}}, &why)) GTEST_SKIP() << why;
    std::mt19937_64 rng(test_seed() + 7);
    for (dtype t : {dtype::Q4_0, dtype::Q8_0})
        for (int64_t n : {1, 3}) {
            const int64_t k = t == dtype::Q4_0 ? 512 : 480, m = 300;
            mmv_case c(dev());
            tensor* w = c.weight(rng, t, k, m, 0, 0);
            tensor* x = c.x(rng, k, n, 0, 0);
            tensor* d = c.result(m, n);
            ASSERT_GT(uint64_t(w->nb[1]) * uint64_t(m), 64768u);
            c.run({make_op(op_type::MUL_MAT, d, w, x)});
            launched(t, n, t == dtype::Q4_0 ? 2 : 3);
            EXPECT_LE(term_rel_l2(c.device_values(d), to_floats(*d), *w, *x), mul_mat_bound(t))
                << dtype_name(t) << " n=" << n;
        }
}

// Matrices of many rows (at least vk_ops.cpp's k_mmv_slot_rows, 16384) take the launch shape with one row slot per
// subgroup (mul_mat_vec.comp SLOTS > 1): an output projection of an odd row count (the last workgroup's slots run
// past m), a Q/K/V launch whose first matrix is that large (all three take the shape), and a gate/up + SWIGLU of
// that size; 1 and 3 columns; F16, Q4_0 and Q8_0 (the slots change the row loop, not the decoders; quantizing 16K
// rows of a k-quant in the test fill takes most of a minute); and two slots per subgroup on the int8 path.
TEST_P(vk_mmv, many_rows_slot_per_subgroup) {
    std::mt19937_64 rng(test_seed() + 3);
    const int64_t big = 16384 + 37;
    for (const type_shapes& ts : k_unit_types) {
        if (ts.t != dtype::F16 && ts.t != dtype::Q4_0 && ts.t != dtype::Q8_0) continue;  // k-quants: slow to fill
        for (int64_t n : {1, 3}) {
            if (!covers(ts.t)) continue;
            const int64_t k = ts.ks.front();
            const std::string what = std::string(dtype_name(ts.t)) + " k=" + std::to_string(k) +
                                     " n=" + std::to_string(n);
            check_single(rng, ts.t, k, big, n, 2, 0, 1, 4, what);
            check_shared_x(rng, ts.t, k, {big, 7, 0}, {0, 16, 0}, 0, n, 0, 0, what);
            check_glu(rng, ts.t, k, big, n, 0, 0, what);
        }
    }
    // On the int8 path, launches of at least 400 workgroups at one slot per subgroup take two
    // (vk_ops.cpp mmv_i8_slots_per_subgroup): 52037 rows make 407 of them even with lavapipe's 64 subgroups of 8
    // lanes and 2 rows a slot.
    const int64_t huge = 52000 + 37;
    for (dtype t : {dtype::Q4_0, dtype::Q8_0}) {
        const std::string what = std::string(dtype_name(t)) + " k=32 n=1, two slots per subgroup";
        check_single(rng, t, 32, huge, 1, 2, 0, 0, 0, what);
        check_glu(rng, t, 32, huge, 1, 0, 0, what);
    }
}

}  // namespace
}  // namespace tfu::test
