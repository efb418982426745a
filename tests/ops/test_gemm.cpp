// Tests of backend/cpu/gemm.h: the register-blocked prefill tile kernels (Q4_0, Q8_0 weights x Q8_0 activations,
// F16 x F16) against per-row cpu::vec_dot (AVX2 and scalar) on the same quantized activations, for odd m and n
// (row and column tails of the 4 x 4 / 3 x 4 tiles), k from 32 to 4096 (F16 also k % 8 != 0), padded strides
// with guard values, and full-range bytes (Q8_0 weights holding -128, activations at +-127: int16 limits).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <random>
#include <vector>

#include "backend/cpu/gemm.h"
#include "backend/cpu/vec_dot.h"
#include "core/fp16.h"
#include "core/quant.h"

using namespace tfu;

namespace {

const uint32_t k_seed = 51731u;
const float k_guard = -12345.0f;

// m rows of type t, k elements each, every byte random (full level range), scales random normal-ish halves.
std::vector<uint8_t> random_blocks(dtype t, int64_t rows, int64_t k, size_t stride, std::mt19937& rng) {
    std::vector<uint8_t> buf(stride * size_t(rows));
    if (t == dtype::F16) {  // random normal values rounded to f16
        std::normal_distribution<float> g(0.0f, 1.0f);
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t l = 0; l < k; ++l) {
                const uint16_t h = f32_to_fp16(g(rng));
                std::memcpy(buf.data() + size_t(r) * stride + size_t(l) * 2, &h, 2);
            }
        return buf;
    }
    std::uniform_int_distribution<int> byte(0, 255);
    std::uniform_real_distribution<float> scale(0.001f, 0.1f);
    std::uniform_int_distribution<int> sign(0, 1);
    const size_t bs = traits(t).type_size;  // 18 for q4_0, 34 for q8_0; the scale is the first 2 bytes
    for (int64_t r = 0; r < rows; ++r) {
        uint8_t* row = buf.data() + size_t(r) * stride;
        for (size_t i = 0; i < stride; ++i) row[i] = uint8_t(byte(rng));
        for (int64_t b = 0; b < k / 32; ++b) {
            const uint16_t d = f32_to_fp16(scale(rng) * (sign(rng) ? 1.0f : -1.0f));
            std::memcpy(row + size_t(b) * bs, &d, 2);
        }
    }
    return buf;
}

// n activation rows quantized from random normal floats with outliers, into rows of a_stride bytes.
std::vector<uint8_t> random_activations(dtype act, int64_t n, int64_t k, size_t a_stride, std::mt19937& rng) {
    std::vector<uint8_t> buf(a_stride * size_t(n), 0xA5);
    std::normal_distribution<float> g(0.0f, 1.0f);
    std::uniform_int_distribution<int> pick(0, 99);
    std::vector<float> x(static_cast<size_t>(k));
    for (int64_t j = 0; j < n; ++j) {
        for (float& v : x) {
            v = g(rng) * (pick(rng) == 0 ? 6.0f : 1.0f);
            if (v == 0.0f) v = 1e-3f;
        }
        cpu::quantize_activation_scalar(act, x.data(), buf.data() + size_t(j) * a_stride, k);
    }
    return buf;
}

// sum_l |w_l a_l| from the dequantized rows: bounds the float reordering error of a dot product.
double abs_dot(dtype t, const uint8_t* w, const uint8_t* a, int64_t k) {
    std::vector<float> wd(static_cast<size_t>(k)), ad(static_cast<size_t>(k));
    dequantize_row(t, w, wd.data(), k);
    dequantize_row(cpu::vec_dot_type(t), a, ad.data(), k);
    double s = 0.0;
    for (int64_t l = 0; l < k; ++l) s += std::fabs(double(wd[size_t(l)]) * double(ad[size_t(l)]));
    return s;
}

void check_gemm(dtype t, int64_t m, int64_t n, int64_t k, std::mt19937& rng) {
    const cpu::gemm_fn gemm = cpu::gemm_kernel_avx2(t);
    ASSERT_NE(gemm, nullptr);
    const size_t w_stride = row_size(t, k) + 6;  // padded; rows keep the 2-byte alignment of the f16 scales
    const dtype act = cpu::vec_dot_type(t);
    const size_t a_stride = row_size(act, k) + 2;
    const int64_t d_cols = m + 5;                           // dst rows padded with guard values
    const std::vector<uint8_t> w = random_blocks(t, m, k, w_stride, rng);
    const std::vector<uint8_t> a = random_activations(act, n, k, a_stride, rng);
    std::vector<float> dst(size_t(d_cols * n), k_guard);
    gemm(w.data(), w_stride, a.data(), a_stride, k, dst.data(), size_t(d_cols) * sizeof(float), m, n);

    // Same integer block dots and per-block float scales as vec_dot; only the order of the float sums differs:
    // |err| <= (nb + 8) * 2^-24 * sum |w_l a_l| per output, bounded here by 1e-5 relative to sum |w_l a_l|.
    for (int64_t j = 0; j < n; ++j) {
        const uint8_t* aj = a.data() + size_t(j) * a_stride;
        for (int64_t i = 0; i < m; ++i) {
            const uint8_t* wi = w.data() + size_t(i) * w_stride;
            const float got = dst[size_t(j * d_cols + i)];
            const double tol = 1e-5 * abs_dot(t, wi, aj, k);
            const float ref_avx2 = cpu::vec_dot_avx2(t, wi, aj, k);
            const float ref_scalar = cpu::vec_dot_scalar(t, wi, aj, k);
            ASSERT_NEAR(got, ref_avx2, tol) << "m " << m << " n " << n << " k " << k << " at (" << i << ", " << j << ")";
            ASSERT_NEAR(got, ref_scalar, tol) << "m " << m << " n " << n << " k " << k << " at (" << i << ", " << j << ")";
        }
        for (int64_t i = m; i < d_cols; ++i)
            ASSERT_EQ(dst[size_t(j * d_cols + i)], k_guard) << "wrote past row " << m << " in column " << j;
    }
}

class gemm_types : public ::testing::TestWithParam<dtype> {};

TEST_P(gemm_types, matches_vec_dot_on_odd_shapes) {
    if (!cpu::cpu_has_avx2_fma()) GTEST_SKIP() << "CPU lacks AVX2/FMA/F16C";
    std::printf("seed %u\n", k_seed);
    std::mt19937 rng(k_seed + uint32_t(GetParam()));
    std::vector<int64_t> ks = {32, 64, 96, 160, 1024, 4096};
    if (GetParam() == dtype::F16) ks.insert(ks.end(), {1, 7, 33, 100});  // element tails of the 8-wide loop
    for (int64_t k : ks)
        for (int64_t m : {1, 3, 4, 5, 7, 13})
            for (int64_t n : {1, 2, 3, 4, 5, 7, 11}) {
                check_gemm(GetParam(), m, n, k, rng);
                if (HasFatalFailure()) return;
            }
}

class gemm_q8_types : public ::testing::TestWithParam<dtype> {};

TEST_P(gemm_q8_types, saturating_blocks) {
    // All weight levels at the extreme (q4_0 nibble 0 -> -8, q8_0 byte -128) against activations of +-127: the
    // int16 pair sums reach 2 * 128 * 127 = 32512 without saturating, as in vec_dot.
    if (!cpu::cpu_has_avx2_fma()) GTEST_SKIP() << "CPU lacks AVX2/FMA/F16C";
    const dtype t = GetParam();
    const int64_t m = 5, n = 4, k = 256;
    const size_t ws = row_size(t, k), as = row_size(dtype::Q8_0, k);
    std::vector<uint8_t> w(ws * m), a(as * n);
    const size_t bs = traits(t).type_size;
    for (int64_t r = 0; r < m; ++r)
        for (int64_t b = 0; b < k / 32; ++b) {
            uint8_t* blk = w.data() + size_t(r) * ws + size_t(b) * bs;
            const uint16_t d = f32_to_fp16(0.01f * float(r + 1));
            std::memcpy(blk, &d, 2);
            std::memset(blk + 2, t == dtype::Q8_0 ? 0x80 : 0x00, bs - 2);
        }
    for (int64_t j = 0; j < n; ++j)
        for (int64_t b = 0; b < k / 32; ++b) {
            block_q8_0 y;
            y.d = f32_to_fp16(0.5f);
            for (int l = 0; l < 32; ++l) y.qs[l] = int8_t((j + l) % 2 ? 127 : -127);
            if (j == 0) std::memset(y.qs, 127, 32);
            std::memcpy(a.data() + size_t(j) * as + size_t(b) * sizeof(block_q8_0), &y, sizeof y);
        }
    std::vector<float> dst(size_t(m * n));
    cpu::gemm_kernel_avx2(t)(w.data(), ws, a.data(), as, k, dst.data(), size_t(m) * sizeof(float), m, n);
    for (int64_t j = 0; j < n; ++j)
        for (int64_t i = 0; i < m; ++i) {
            const float ref = cpu::vec_dot_scalar(t, w.data() + size_t(i) * ws, a.data() + size_t(j) * as, k);
            EXPECT_NEAR(dst[size_t(j * m + i)], ref, 1e-5 * std::fabs(ref) + 1e-6) << i << ", " << j;
        }
    // Column 0 (all +127): w = -8 or -128 per level, so the dot is exactly -levels * 127 * k * d_w * 0.5.
    const double level = t == dtype::Q8_0 ? 128.0 : 8.0;
    EXPECT_NEAR(dst[0], -level * 127.0 * k * double(fp16_to_f32(f32_to_fp16(0.01f))) * 0.5, 1e-2);
}

std::string type_name(const ::testing::TestParamInfo<dtype>& p) { return traits(p.param).name; }
INSTANTIATE_TEST_SUITE_P(cpu, gemm_types, ::testing::Values(dtype::Q4_0, dtype::Q8_0, dtype::F16), type_name);
INSTANTIATE_TEST_SUITE_P(cpu, gemm_q8_types, ::testing::Values(dtype::Q4_0, dtype::Q8_0), type_name);

TEST(gemm, no_kernel_for_other_types) {
    for (dtype t : {dtype::F32, dtype::BF16, dtype::Q4_1, dtype::Q5_0, dtype::Q4_K, dtype::Q6_K}) {
        EXPECT_EQ(cpu::gemm_kernel(t), nullptr);
        EXPECT_EQ(cpu::gemm_kernel_avx2(t), nullptr);
    }
    // gemm_kernel follows vec_dot's choice (TFU_CPU_SIMD=scalar turns both off).
    EXPECT_EQ(cpu::gemm_kernel(dtype::Q4_0) != nullptr, cpu::vec_dot_has_avx2());
}

}  // namespace
