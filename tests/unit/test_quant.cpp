// Tests of core/quant.h: round-trip error per format, GGUF bit layouts on hand-built blocks (decoded by an
// independent spec decoder written here in ggml's loop order), vec_dot_f32 against dequantize + dot, bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/fp16.h"
#include "core/quant.h"

using namespace tfu;

namespace {

const uint32_t k_seed = 20240611u;

struct type_case {
    dtype type;
    double max_rel_rmse;           // bound on rms(dequant(quant(x)) - x) / rms(x): gauss, uniform, magnitudes
    double max_rel_rmse_outliers;  // the same with 1% of values 20x larger (they set the scale of their block)
};

// Bounds: about 1.3x the error measured with the seed below; for b-bit round-to-nearest with a per-block absmax
// scale the expectation is step / sqrt(12) with step = 2 absmax / 2^b (e.g. q8_0 ~0.45%, q4_0 ~9% on Gaussian
// data). The K-quants' scale search makes them better than their 32-element counterparts.
const type_case k_types[] = {
    {dtype::F32, 0.0, 0.0},       {dtype::F16, 0.0004, 0.0005},  {dtype::BF16, 0.003, 0.004},
    {dtype::Q8_0, 0.008, 0.016},  {dtype::Q8_1, 0.008, 0.016},   {dtype::Q5_0, 0.06, 0.11},
    {dtype::Q5_1, 0.05, 0.075},   {dtype::Q4_0, 0.12, 0.24},     {dtype::Q4_1, 0.11, 0.17},
    {dtype::Q8_K, 0.011, 0.045},  {dtype::Q6_K, 0.025, 0.05},    {dtype::Q5_K, 0.05, 0.07},
    {dtype::Q4_K, 0.10, 0.14},    {dtype::Q3_K, 0.20, 0.27},     {dtype::Q2_K, 0.37, 0.37},
};

enum class dist { gauss, uniform, outliers, magnitudes };
const char* dist_name(dist d) {
    switch (d) {
        case dist::gauss: return "gauss";
        case dist::uniform: return "uniform";
        case dist::outliers: return "outliers";
        default: return "magnitudes";
    }
}

// Rows of n values; "magnitudes" scales each 256-element stretch by 10^k, k in [-3, 3], which is what relative
// errors per block must survive (the RMSE is then measured per stretch and the worst is reported).
std::vector<float> make_row(dist d, int64_t n, std::mt19937& rng) {
    std::normal_distribution<float> g(0.0f, 1.0f);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::uniform_int_distribution<int> pick(0, 99), mag(-3, 3);
    std::vector<float> x(static_cast<size_t>(n));
    float scale = 1.0f;
    for (int64_t i = 0; i < n; ++i) {
        if (i % 256 == 0) scale = std::pow(10.0f, float(mag(rng)));
        switch (d) {
            case dist::gauss: x[i] = g(rng); break;
            case dist::uniform: x[i] = u(rng) + 0.3f; break;  // offset: exercises the min of Q4_1/Q5_1/K
            case dist::outliers: x[i] = pick(rng) == 0 ? 20.0f * g(rng) : g(rng); break;
            case dist::magnitudes: x[i] = scale * g(rng); break;
        }
        if (x[i] == 0.0f) x[i] = 1e-3f;  // never exact zeros
    }
    return x;
}

// Worst relative RMSE over 256-element stretches (stretches share a magnitude in the "magnitudes" rows).
double worst_rel_rmse(const std::vector<float>& x, const std::vector<float>& y) {
    double worst = 0.0;
    for (size_t s = 0; s < x.size(); s += 256) {
        double se = 0.0, sx = 0.0;
        for (size_t i = s; i < s + 256 && i < x.size(); ++i) {
            se += double(y[i] - x[i]) * double(y[i] - x[i]);
            sx += double(x[i]) * x[i];
        }
        worst = std::max(worst, std::sqrt(se / sx));
    }
    return worst;
}

std::vector<uint8_t> bytes_for(dtype t, int64_t n) { return std::vector<uint8_t>(row_size(t, n)); }

}  // namespace

TEST(quant, round_trip_error_within_bounds) {
    std::printf("seed %u\n", k_seed);
    std::mt19937 rng(k_seed);
    const int64_t n = 4096;
    for (const type_case& tc : k_types) {
        for (dist d : {dist::gauss, dist::uniform, dist::outliers, dist::magnitudes}) {
            const std::vector<float> x = make_row(d, n, rng);
            std::vector<uint8_t> q = bytes_for(tc.type, n);
            std::vector<float> y(static_cast<size_t>(n));
            quantize_row(tc.type, x.data(), q.data(), n);
            dequantize_row(tc.type, q.data(), y.data(), n);
            const double e = worst_rel_rmse(x, y);
            const double bound = d == dist::outliers ? tc.max_rel_rmse_outliers : tc.max_rel_rmse;
            std::printf("  %-5s %-10s rel rmse %.5f (bound %.4f)\n", dtype_name(tc.type), dist_name(d), e, bound);
            EXPECT_LE(e, bound) << dtype_name(tc.type) << " " << dist_name(d);
        }
    }
}

TEST(quant, all_zero_rows_stay_zero) {
    const int64_t n = 512;
    std::vector<float> x(size_t(n), 0.0f), y(size_t(n), 1.0f);
    for (const type_case& tc : k_types) {
        std::vector<uint8_t> q = bytes_for(tc.type, n);
        quantize_row(tc.type, x.data(), q.data(), n);
        dequantize_row(tc.type, q.data(), y.data(), n);
        for (float v : y) ASSERT_EQ(v, 0.0f) << dtype_name(tc.type);
    }
}

// ---- literal blocks: bytes written by hand, values worked out by hand --------------------------------------

TEST(quant, literal_q4_0_q8_0_q5_0_blocks) {
    block_q4_0 b4{};
    b4.d = 0x4000;  // fp16 2.0
    b4.qs[0] = 0x21;  // element 0: 1 - 8 = -7; element 16: 2 - 8 = -6
    b4.qs[15] = 0xf0;  // element 15: 0 - 8 = -8; element 31: 15 - 8 = 7
    float y[32];
    dequantize_row(dtype::Q4_0, &b4, y, 32);
    EXPECT_EQ(y[0], -14.0f);
    EXPECT_EQ(y[16], -12.0f);
    EXPECT_EQ(y[15], -16.0f);
    EXPECT_EQ(y[31], 14.0f);
    EXPECT_EQ(y[1], -16.0f);  // qs[1] = 0 -> -8 * 2

    block_q5_0 b5{};
    b5.d = 0x3c00;   // 1.0
    b5.qh[0] = 0x01;  // bit 0 -> element 0 gets +16
    b5.qh[2] = 0x02;  // bit 17 -> element 17 gets +16
    b5.qs[0] = 0x3f;  // element 0: 15 + 16 - 16 = 15; element 16: 3 - 16 = -13
    b5.qs[1] = 0x50;  // element 1: 0 - 16 = -16; element 17: 5 + 16 - 16 = 5
    dequantize_row(dtype::Q5_0, &b5, y, 32);
    EXPECT_EQ(y[0], 15.0f);
    EXPECT_EQ(y[16], -13.0f);
    EXPECT_EQ(y[1], -16.0f);
    EXPECT_EQ(y[17], 5.0f);

    block_q8_0 b8{};
    b8.d = 0x3800;  // 0.5
    b8.qs[3] = -128;
    b8.qs[31] = 127;
    dequantize_row(dtype::Q8_0, &b8, y, 32);
    EXPECT_EQ(y[3], -64.0f);
    EXPECT_EQ(y[31], 63.5f);
    EXPECT_EQ(y[0], 0.0f);
}

TEST(quant, literal_q4_K_scale_packing) {
    block_q4_K b{};
    b.d = 0x3c00;     // 1.0
    b.dmin = 0x3800;  // 0.5
    // sub-block 1: scale = bytes[1] & 63 = 5, min = bytes[5] & 63 = 3
    b.scales[1] = 5;
    b.scales[5] = 3;
    // sub-block 6: scale = (bytes[10] & 15) | (bytes[2] >> 6) << 4 = 2 | 3 << 4 = 50,
    //              min   = (bytes[10] >> 4) | (bytes[6] >> 6) << 4 = 1 | 2 << 4 = 33
    b.scales[10] = 0x12;
    b.scales[2] = 0xc0;
    b.scales[6] = 0x80;
    // element 32 (sub-block 1) is the high nibble of qs[0]; element 192 + 7 (sub-block 6) the low nibble of qs[103]
    b.qs[0] = 0x90;
    b.qs[96 + 7] = 0x0b;
    std::vector<float> y(256);
    dequantize_row(dtype::Q4_K, &b, y.data(), 256);
    EXPECT_EQ(y[32], 5.0f * 9.0f - 0.5f * 3.0f);
    EXPECT_EQ(y[199], 50.0f * 11.0f - 0.5f * 33.0f);
    EXPECT_EQ(y[0], 0.0f);  // sub-block 0: scale = bytes[0] & 63 = 0 (its top bits belong to sub-block 4)
    EXPECT_EQ(y[128], 0.0f * 0 - 0.5f * 0.0f);
}

// ---- random blocks decoded by an independent spec decoder ---------------------------------------------------
// The decoders below follow the structure of ggml's reference loops (pointers that advance per 128/64/32
// elements, scale indices that count up), not the element-index formulas of core/quant*.cpp.

namespace {

float h2f(const uint8_t* p) { return fp16_to_f32(uint16_t(p[0] | p[1] << 8)); }

void spec_q2_K(const uint8_t* blk, float* y) {
    const uint8_t* scales = blk;
    const uint8_t* q = blk + 16;
    const float d = h2f(blk + 80), dmin = h2f(blk + 82);
    int is = 0;
    for (int n = 0; n < 256; n += 128) {
        for (int shift = 0; shift < 8; shift += 2) {
            for (int half = 0; half < 2; ++half) {
                const uint8_t sc = scales[is++];
                for (int l = 0; l < 16; ++l) *y++ = d * (sc & 0xf) * ((q[l + 16 * half] >> shift) & 3) - dmin * (sc >> 4);
            }
        }
        q += 32;
    }
}

void spec_q3_K(const uint8_t* blk, float* y) {
    const uint8_t* hm = blk;
    const uint8_t* q = blk + 32;
    const uint8_t* sb = blk + 96;
    const float d = h2f(blk + 108);
    // scales via 32-bit words and the masks 0x03030303 / 0x0f0f0f0f, as ggml describes the packing
    uint32_t aux[4];
    std::memcpy(aux, sb, 12);
    const uint32_t tmp = aux[2];
    aux[2] = ((aux[0] >> 4) & 0x0f0f0f0fu) | (((tmp >> 4) & 0x03030303u) << 4);
    aux[3] = ((aux[1] >> 4) & 0x0f0f0f0fu) | (((tmp >> 6) & 0x03030303u) << 4);
    aux[0] = (aux[0] & 0x0f0f0f0fu) | (((tmp >> 0) & 0x03030303u) << 4);
    aux[1] = (aux[1] & 0x0f0f0f0fu) | (((tmp >> 2) & 0x03030303u) << 4);
    int8_t sc[16];
    std::memcpy(sc, aux, 16);
    int is = 0;
    uint8_t m = 1;
    for (int n = 0; n < 256; n += 128) {
        for (int shift = 0; shift < 8; shift += 2) {
            for (int half = 0; half < 2; ++half) {
                const float dl = d * float(sc[is++] - 32);
                for (int l = 16 * half; l < 16 * half + 16; ++l)
                    *y++ = dl * float(((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
            }
            m = uint8_t(m << 1);
        }
        q += 32;
    }
}

void scale_min_k4(int j, const uint8_t* q, int* d, int* m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
    }
}

void spec_q45_K(const uint8_t* blk, bool five, float* y) {
    const float d = h2f(blk), dmin = h2f(blk + 2);
    const uint8_t* scales = blk + 4;
    const uint8_t* qh = blk + 16;
    const uint8_t* ql = blk + (five ? 48 : 16);
    int is = 0;
    uint8_t u1 = 1, u2 = 2;
    for (int j = 0; j < 256; j += 64) {
        int sc, m;
        scale_min_k4(is + 0, scales, &sc, &m);
        const float d1 = d * sc, m1 = dmin * m;
        scale_min_k4(is + 1, scales, &sc, &m);
        const float d2 = d * sc, m2 = dmin * m;
        for (int l = 0; l < 32; ++l) *y++ = d1 * float((ql[l] & 0xf) + (five && (qh[l] & u1) ? 16 : 0)) - m1;
        for (int l = 0; l < 32; ++l) *y++ = d2 * float((ql[l] >> 4) + (five && (qh[l] & u2) ? 16 : 0)) - m2;
        ql += 32;
        is += 2;
        u1 = uint8_t(u1 << 2);
        u2 = uint8_t(u2 << 2);
    }
}

void spec_q6_K(const uint8_t* blk, float* y) {
    const uint8_t* ql = blk;
    const uint8_t* qh = blk + 128;
    const int8_t* sc = reinterpret_cast<const int8_t*>(blk + 192);
    const float d = h2f(blk + 208);
    for (int n = 0; n < 256; n += 128) {
        for (int l = 0; l < 32; ++l) {
            const int is = l / 16;
            const int q1 = int((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int q2 = int((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int q3 = int((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int q4 = int((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * sc[is] * q1;
            y[l + 32] = d * sc[is + 2] * q2;
            y[l + 64] = d * sc[is + 4] * q3;
            y[l + 96] = d * sc[is + 6] * q4;
        }
        y += 128;
        ql += 64;
        qh += 32;
        sc += 8;
    }
}

void spec_small(dtype t, const uint8_t* blk, float* y) {
    const float d = h2f(blk);
    switch (t) {
        case dtype::Q4_0:
        case dtype::Q4_1: {
            const bool one = t == dtype::Q4_1;
            const uint8_t* qs = blk + (one ? 4 : 2);
            for (int j = 0; j < 16; ++j) {
                y[j] = one ? d * (qs[j] & 0xf) + h2f(blk + 2) : d * ((qs[j] & 0xf) - 8);
                y[j + 16] = one ? d * (qs[j] >> 4) + h2f(blk + 2) : d * ((qs[j] >> 4) - 8);
            }
            break;
        }
        case dtype::Q5_0:
        case dtype::Q5_1: {
            const bool one = t == dtype::Q5_1;
            uint32_t qh;
            std::memcpy(&qh, blk + (one ? 4 : 2), 4);
            const uint8_t* qs = blk + (one ? 8 : 6);
            for (int j = 0; j < 16; ++j) {
                const int x0 = (qs[j] & 0xf) | int(((qh >> j) << 4) & 0x10);
                const int x1 = (qs[j] >> 4) | int((qh >> (j + 12)) & 0x10);
                y[j] = one ? d * x0 + h2f(blk + 2) : d * (x0 - 16);
                y[j + 16] = one ? d * x1 + h2f(blk + 2) : d * (x1 - 16);
            }
            break;
        }
        case dtype::Q8_0:
        case dtype::Q8_1: {
            const int8_t* qs = reinterpret_cast<const int8_t*>(blk + (t == dtype::Q8_1 ? 4 : 2));
            for (int j = 0; j < 32; ++j) y[j] = d * qs[j];
            break;
        }
        default: FAIL();
    }
}

}  // namespace

TEST(quant, random_blocks_match_spec_decoder) {
    std::printf("seed %u\n", k_seed + 1);
    std::mt19937 rng(k_seed + 1);
    std::uniform_int_distribution<int> byte(0, 255);
    const dtype types[] = {dtype::Q4_0, dtype::Q4_1, dtype::Q5_0, dtype::Q5_1, dtype::Q8_0, dtype::Q8_1,
                           dtype::Q2_K, dtype::Q3_K, dtype::Q4_K, dtype::Q5_K, dtype::Q6_K};
    for (dtype t : types) {
        const dtype_traits& tr = traits(t);
        for (int rep = 0; rep < 20; ++rep) {
            std::vector<uint8_t> blk(tr.type_size);
            for (uint8_t& b : blk) b = uint8_t(byte(rng));
            // fp16 scale fields: keep them finite (exponent bits not all ones) so values compare exactly
            auto sane_half = [&](size_t off) { blk[off + 1] = uint8_t(blk[off + 1] & 0x3b); };
            switch (t) {
                case dtype::Q2_K: sane_half(80); sane_half(82); break;
                case dtype::Q3_K: sane_half(108); break;
                case dtype::Q4_K: case dtype::Q5_K: sane_half(0); sane_half(2); break;
                case dtype::Q6_K: sane_half(208); break;
                case dtype::Q4_1: case dtype::Q5_1: case dtype::Q8_1: sane_half(0); sane_half(2); break;
                default: sane_half(0); break;
            }
            std::vector<float> got(static_cast<size_t>(tr.block_size)), want(static_cast<size_t>(tr.block_size));
            dequantize_row(t, blk.data(), got.data(), tr.block_size);
            switch (t) {
                case dtype::Q2_K: spec_q2_K(blk.data(), want.data()); break;
                case dtype::Q3_K: spec_q3_K(blk.data(), want.data()); break;
                case dtype::Q4_K: spec_q45_K(blk.data(), false, want.data()); break;
                case dtype::Q5_K: spec_q45_K(blk.data(), true, want.data()); break;
                case dtype::Q6_K: spec_q6_K(blk.data(), want.data()); break;
                default: spec_small(t, blk.data(), want.data()); break;
            }
            for (int64_t e = 0; e < tr.block_size; ++e)
                ASSERT_FLOAT_EQ(got[size_t(e)], want[size_t(e)]) << tr.name << " element " << e << " rep " << rep;
        }
    }
}

// Quantizing what a block decodes to must give back values that decode the same (levels are exactly
// representable), a check that quantizers and dequantizers agree on the layout.
TEST(quant, requantize_of_dequantized_is_stable) {
    std::mt19937 rng(k_seed + 2);
    const int64_t n = 1024;
    for (const type_case& tc : k_types) {
        const std::vector<float> x = make_row(dist::gauss, n, rng);
        std::vector<uint8_t> q = bytes_for(tc.type, n), q2 = bytes_for(tc.type, n);
        std::vector<float> y(static_cast<size_t>(n)), y2(static_cast<size_t>(n));
        quantize_row(tc.type, x.data(), q.data(), n);
        dequantize_row(tc.type, q.data(), y.data(), n);
        quantize_row(tc.type, y.data(), q2.data(), n);
        dequantize_row(tc.type, q2.data(), y2.data(), n);
        const double e = worst_rel_rmse(y, y2);
        EXPECT_LE(e, tc.max_rel_rmse / 2) << dtype_name(tc.type);
    }
}

TEST(quant, vec_dot_f32_matches_dequantize_then_dot) {
    std::mt19937 rng(k_seed + 3);
    for (const type_case& tc : k_types) {
        for (int64_t n : {256, 512, 4096}) {
            const std::vector<float> w = make_row(dist::outliers, n, rng), x = make_row(dist::gauss, n, rng);
            std::vector<uint8_t> q = bytes_for(tc.type, n);
            std::vector<float> wd(static_cast<size_t>(n));
            quantize_row(tc.type, w.data(), q.data(), n);
            dequantize_row(tc.type, q.data(), wd.data(), n);
            double want = 0.0, mag = 0.0;
            for (int64_t i = 0; i < n; ++i) {
                want += double(wd[i]) * x[i];
                mag += std::fabs(double(wd[i]) * x[i]);
            }
            const float got = vec_dot_f32(tc.type, q.data(), x.data(), n);
            EXPECT_LE(std::fabs(got - want), 1e-5 * mag) << dtype_name(tc.type) << " n=" << n;
        }
    }
}

TEST(quant, bad_arguments_throw) {
    std::vector<float> x(300, 1.0f);
    std::vector<uint8_t> q(4096);
    auto status_of = [](auto&& fn) {
        try {
            fn();
        } catch (const tfu::error& e) {
            return e.status();
        }
        return TFU_STATUS_OK;
    };
    EXPECT_EQ(status_of([&] { quantize_row(dtype::Q4_0, x.data(), q.data(), 33); }), TFU_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(status_of([&] { dequantize_row(dtype::Q4_K, q.data(), x.data(), 128); }), TFU_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(status_of([&] { vec_dot_f32(dtype::Q6_K, q.data(), x.data(), 257); }), TFU_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(status_of([&] { quantize_row(dtype::Q8_0, x.data(), q.data(), -32); }), TFU_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(status_of([&] { quantize_row(dtype::I32, x.data(), q.data(), 4); }), TFU_STATUS_UNSUPPORTED);
    EXPECT_EQ(status_of([&] { dequantize_row(dtype(99), q.data(), x.data(), 4); }), TFU_STATUS_UNSUPPORTED);
    EXPECT_EQ(status_of([&] { vec_dot_f32(dtype::F64, q.data(), x.data(), 4); }), TFU_STATUS_UNSUPPORTED);
    EXPECT_EQ(status_of([&] { quantize_row(dtype::F16, x.data(), q.data(), 7); }), TFU_STATUS_OK);  // block size 1
}
