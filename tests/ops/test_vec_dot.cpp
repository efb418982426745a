// Tests of backend/cpu/vec_dot.h: scalar and AVX2 integer dot products against core/quant.h's vec_dot_f32,
// AVX2 against scalar, identical activation bytes from both quantizers, extreme blocks (int16 saturation), errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <vector>

#include "backend/cpu/vec_dot.h"
#include "core/error.h"
#include "core/quant.h"

using namespace tfu;

namespace {

const uint32_t k_seed = 77031u;

const dtype k_weight_types[] = {dtype::F32,  dtype::F16,  dtype::BF16, dtype::Q4_0, dtype::Q4_1,
                                dtype::Q5_0, dtype::Q5_1, dtype::Q8_0, dtype::Q2_K, dtype::Q3_K,
                                dtype::Q4_K, dtype::Q5_K, dtype::Q6_K};

std::vector<float> random_row(int64_t n, std::mt19937& rng, float outlier_scale) {
    std::normal_distribution<float> g(0.0f, 1.0f);
    std::uniform_int_distribution<int> pick(0, 99);
    std::vector<float> x(static_cast<size_t>(n));
    for (float& v : x) {
        v = g(rng) * (pick(rng) == 0 ? outlier_scale : 1.0f);
        if (v == 0.0f) v = 1e-3f;
    }
    return x;
}

std::vector<int64_t> lengths_for(dtype w) {
    if (traits(w).block_size == QK_K) return {256, 512, 1024, 2816, 4096, 8192};
    return {32, 96, 160, 256, 1024, 4128, 8192};
}

struct prepared {
    std::vector<uint8_t> w;   // weight row in its format
    std::vector<float> wd;    // its dequantized values
    std::vector<uint8_t> a;   // activation row in vec_dot_type(w)
    std::vector<float> x;     // the f32 activations
    std::vector<float> xd;    // the activations as the quantized row represents them
};

prepared prepare(dtype w, int64_t n, std::mt19937& rng, bool avx2_act) {
    prepared p;
    const std::vector<float> wf = random_row(n, rng, 8.0f);
    p.x = random_row(n, rng, 4.0f);
    p.w.resize(row_size(w, n));
    p.wd.resize(static_cast<size_t>(n));
    quantize_row(w, wf.data(), p.w.data(), n);
    dequantize_row(w, p.w.data(), p.wd.data(), n);
    const dtype act = cpu::vec_dot_type(w);
    p.a.resize(row_size(act, n));
    if (avx2_act)
        cpu::quantize_activation_avx2(act, p.x.data(), p.a.data(), n);
    else
        cpu::quantize_activation_scalar(act, p.x.data(), p.a.data(), n);
    p.xd.resize(static_cast<size_t>(n));
    dequantize_row(act, p.a.data(), p.xd.data(), n);
    return p;
}

// Checks one kernel result `got` for p:
// (1) against vec_dot_f32(w, xd), the same product computed from dequantized values (only float rounding
//     differs): within 1e-5 * sum |wd * xd|;
// (2) against vec_dot_f32(w, x) with the unquantized activations: within sum |wd| * |x - xd| (the exact
//     worst case of the activation quantization error) + 1e-5 * sum |wd * x|.
void check_against_reference(dtype w, const prepared& p, float got, const char* which) {
    const int64_t n = int64_t(p.x.size());
    double mag_q = 0.0, mag = 0.0, act_err = 0.0;
    for (size_t i = 0; i < p.x.size(); ++i) {
        mag_q += std::fabs(double(p.wd[i]) * p.xd[i]);
        mag += std::fabs(double(p.wd[i]) * p.x[i]);
        act_err += std::fabs(double(p.wd[i])) * std::fabs(double(p.x[i]) - p.xd[i]);
    }
    const double ref_q = vec_dot_f32(w, p.w.data(), p.xd.data(), n);
    const double ref = vec_dot_f32(w, p.w.data(), p.x.data(), n);
    EXPECT_LE(std::fabs(got - ref_q), 1e-5 * mag_q + 1e-30)
        << which << " " << dtype_name(w) << " n=" << n << " got " << got << " want " << ref_q;
    EXPECT_LE(std::fabs(got - ref), act_err + 1e-5 * mag + 1e-30)
        << which << " " << dtype_name(w) << " n=" << n << " got " << got << " want " << ref;
}

tfu_status status_of(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const tfu::error& e) {
        return e.status();
    }
    return TFU_STATUS_OK;
}

}  // namespace

TEST(vec_dot, scalar_matches_reference) {
    std::printf("seed %u\n", k_seed);
    std::mt19937 rng(k_seed);
    for (dtype w : k_weight_types)
        for (int64_t n : lengths_for(w)) {
            const prepared p = prepare(w, n, rng, false);
            check_against_reference(w, p, cpu::vec_dot_scalar(w, p.w.data(), p.a.data(), n), "scalar");
        }
}

TEST(vec_dot, avx2_matches_reference_and_scalar) {
    if (!cpu::cpu_has_avx2_fma()) GTEST_SKIP() << "this CPU lacks AVX2/FMA/F16C: AVX2 kernels not tested";
    std::printf("seed %u\n", k_seed + 1);
    std::mt19937 rng(k_seed + 1);
    for (dtype w : k_weight_types) {
        if (!cpu::vec_dot_has_avx2_kernel(w)) std::printf("  %s: no AVX2 kernel (scalar integer path)\n", dtype_name(w));
        for (int64_t n : lengths_for(w)) {
            const prepared p = prepare(w, n, rng, true);
            const float got = cpu::vec_dot_avx2(w, p.w.data(), p.a.data(), n);
            check_against_reference(w, p, got, "avx2");
            const float sc = cpu::vec_dot_scalar(w, p.w.data(), p.a.data(), n);
            double mag_q = 0.0;
            for (size_t i = 0; i < p.x.size(); ++i) mag_q += std::fabs(double(p.wd[i]) * p.xd[i]);
            EXPECT_LE(std::fabs(got - sc), 1e-5 * mag_q) << "avx2 vs scalar " << dtype_name(w) << " n=" << n;
        }
    }
}

TEST(vec_dot, avx2_activation_bytes_equal_scalar) {
    if (!cpu::cpu_has_avx2_fma()) GTEST_SKIP() << "this CPU lacks AVX2/FMA/F16C: AVX2 kernels not tested";
    std::mt19937 rng(k_seed + 2);
    for (dtype act : {dtype::Q8_0, dtype::Q8_K, dtype::F16, dtype::BF16, dtype::F32}) {
        for (int64_t n : {256, 4096}) {
            std::vector<float> x = random_row(n, rng, 30.0f);
            for (size_t i = 0; i < 32; ++i) x[i] = 0.0f;  // an all-zero block: the d = 0 path
            // a block with d = 1 exactly and halfway values: both versions must round ties to even
            for (size_t i = 32; i < 64; ++i) x[i] = float(int(i) - 48) + 0.5f;
            x[32] = 127.0f;
            std::vector<uint8_t> s(row_size(act, n)), v(row_size(act, n));
            cpu::quantize_activation_scalar(act, x.data(), s.data(), n);
            cpu::quantize_activation_avx2(act, x.data(), v.data(), n);
            EXPECT_EQ(s, v) << dtype_name(act) << " n=" << n;
        }
    }
}

// Random bytes as weights (every level, every scale, including Q8_0's -128 and Q6_K's -128 scale) against
// activations at +-127: catches int16 saturation and sign tricks that only hold for quantizer-made blocks.
TEST(vec_dot, random_byte_weights_extreme_activations) {
    std::mt19937 rng(k_seed + 3);
    std::uniform_int_distribution<int> byte(0, 255), sign(0, 1);
    for (dtype w : k_weight_types) {
        if (!traits(w).quantized) continue;
        const int64_t n = 1024;
        const dtype act = cpu::vec_dot_type(w);
        std::vector<uint8_t> wb(row_size(w, n));
        for (uint8_t& b : wb) b = uint8_t(byte(rng));
        // overwrite the fp16 scales with small finite values (offsets of d/dmin per block type)
        const size_t ts = traits(w).type_size;
        std::vector<size_t> half_offsets;
        switch (w) {
            case dtype::Q2_K: half_offsets = {80, 82}; break;
            case dtype::Q3_K: half_offsets = {108}; break;
            case dtype::Q4_K: case dtype::Q5_K: case dtype::Q4_1: case dtype::Q5_1: half_offsets = {0, 2}; break;
            case dtype::Q6_K: half_offsets = {208}; break;
            default: half_offsets = {0}; break;
        }
        for (size_t blk = 0; blk < wb.size(); blk += ts)
            for (size_t off : half_offsets) {
                wb[blk + off] = uint8_t(byte(rng));
                wb[blk + off + 1] = uint8_t(0x20 | (byte(rng) & 0x07));  // |d| in [2^-7, 2^-4)
            }
        std::vector<float> x(static_cast<size_t>(n));
        for (float& v : x) v = sign(rng) ? 1.0f : -1.0f;  // every activation level is +-127
        std::vector<uint8_t> a(row_size(act, n));
        cpu::quantize_activation_scalar(act, x.data(), a.data(), n);
        std::vector<float> xd(static_cast<size_t>(n)), wd(static_cast<size_t>(n));
        dequantize_row(act, a.data(), xd.data(), n);
        dequantize_row(w, wb.data(), wd.data(), n);
        double mag = 0.0;
        for (size_t i = 0; i < xd.size(); ++i) mag += std::fabs(double(wd[i]) * xd[i]);
        const double ref = vec_dot_f32(w, wb.data(), xd.data(), n);
        EXPECT_LE(std::fabs(cpu::vec_dot_scalar(w, wb.data(), a.data(), n) - ref), 1e-5 * mag) << dtype_name(w);
        if (cpu::cpu_has_avx2_fma()) {
            EXPECT_LE(std::fabs(cpu::vec_dot_avx2(w, wb.data(), a.data(), n) - ref), 1e-5 * mag) << dtype_name(w);
        }
    }
}

TEST(vec_dot, dispatch_and_errors) {
    std::printf("AVX2 in use: %s (TFU_CPU_SIMD=%s)\n", cpu::vec_dot_has_avx2() ? "yes" : "no",
                std::getenv("TFU_CPU_SIMD") ? std::getenv("TFU_CPU_SIMD") : "unset");
    EXPECT_EQ(cpu::vec_dot_type(dtype::Q4_0), dtype::Q8_0);
    EXPECT_EQ(cpu::vec_dot_type(dtype::Q5_1), dtype::Q8_0);
    EXPECT_EQ(cpu::vec_dot_type(dtype::Q4_K), dtype::Q8_K);
    EXPECT_EQ(cpu::vec_dot_type(dtype::F16), dtype::F16);
    EXPECT_EQ(cpu::vec_dot_type(dtype::BF16), dtype::BF16);
    EXPECT_EQ(status_of([] { cpu::vec_dot_type(dtype::I8); }), TFU_STATUS_UNSUPPORTED);

    std::mt19937 rng(k_seed + 4);
    const prepared p = prepare(dtype::Q4_K, 512, rng, false);
    const float via_dispatch = cpu::vec_dot(dtype::Q4_K, p.w.data(), p.a.data(), 512);
    const float direct = cpu::vec_dot_has_avx2() ? cpu::vec_dot_avx2(dtype::Q4_K, p.w.data(), p.a.data(), 512)
                                                 : cpu::vec_dot_scalar(dtype::Q4_K, p.w.data(), p.a.data(), 512);
    EXPECT_EQ(via_dispatch, direct);
    EXPECT_EQ(cpu::vec_dot_kernel(dtype::Q4_K)(p.w.data(), p.a.data(), 512), direct);

    std::vector<uint8_t> buf(8192);
    std::vector<float> x(1024, 1.0f);
    EXPECT_EQ(status_of([&] { cpu::vec_dot(dtype::Q4_K, buf.data(), buf.data(), 300); }), TFU_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(status_of([&] { cpu::vec_dot(dtype::Q8_0, buf.data(), buf.data(), 33); }), TFU_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(status_of([&] { cpu::vec_dot(dtype::Q8_K, buf.data(), buf.data(), 256); }), TFU_STATUS_UNSUPPORTED);
    EXPECT_EQ(status_of([&] { cpu::quantize_activation(dtype::Q8_0, x.data(), buf.data(), 48); }),
              TFU_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(status_of([&] { cpu::quantize_activation(dtype::Q4_0, x.data(), buf.data(), 64); }),
              TFU_STATUS_UNSUPPORTED);
    EXPECT_EQ(cpu::vec_dot(dtype::Q8_0, buf.data(), buf.data(), 0), 0.0f);
}
