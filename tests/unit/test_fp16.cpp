// Tests of core/fp16.h: every half and bfloat16 value round-trips through float exactly; float -> half rounding
// (ties to even, subnormals, overflow to inf, NaN) against the compiler's _Float16 conversion (libgcc's IEEE
// soft-float on x86, independent of our bit manipulation); float -> bf16 against a nearest-value search in double.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>

#include "core/fp16.h"

using namespace tfu;

namespace {

float bits_to_float(uint32_t b) {
    float f;
    std::memcpy(&f, &b, 4);
    return f;
}
uint32_t float_to_bits(float f) {
    uint32_t b;
    std::memcpy(&b, &f, 4);
    return b;
}

#if defined(__FLT16_MAX__)
#define TFU_HAVE_FLOAT16 1
uint16_t ref_f32_to_fp16(float f) {
    const _Float16 h = static_cast<_Float16>(f);
    uint16_t b;
    std::memcpy(&b, &h, 2);
    return b;
}
float ref_fp16_to_f32(uint16_t b) {
    _Float16 h;
    std::memcpy(&h, &b, 2);
    return static_cast<float>(h);
}
#endif

// Nearest bf16 to f by comparing distances in double; ties go to the even mantissa. The value above the largest
// finite bf16 is infinity, placed at 2^128 for the distance (IEEE overflow rounding).
uint16_t ref_f32_to_bf16(float f) {
    const uint32_t b = float_to_bits(f);
    const uint16_t sign = uint16_t((b >> 16) & 0x8000u);
    const uint16_t lo = uint16_t((b & 0x7fffffffu) >> 16);  // truncated magnitude
    const uint16_t hi = uint16_t(lo + 1);
    auto value = [](uint16_t m) {
        return m == 0x7f80u ? std::ldexp(1.0, 128) : double(bits_to_float(uint32_t(m) << 16));
    };
    const double x = std::fabs(double(f));
    const double dlo = x - value(lo), dhi = value(hi) - x;
    uint16_t m;
    if (dlo < dhi)
        m = lo;
    else if (dhi < dlo)
        m = hi;
    else
        m = (lo & 1u) ? hi : lo;
    return uint16_t(sign | m);
}

bool half_is_nan(uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0; }

}  // namespace

TEST(fp16, every_half_round_trips_through_float) {
    for (uint32_t i = 0; i < 65536; ++i) {
        const uint16_t h = uint16_t(i);
        const float f = fp16_to_f32(h);
        if (half_is_nan(h)) {
            ASSERT_TRUE(std::isnan(f)) << std::hex << i;
            const uint16_t back = f32_to_fp16(f);
            ASSERT_TRUE(half_is_nan(back)) << std::hex << i;
            ASSERT_EQ(back & 0x8000u, h & 0x8000u) << std::hex << i;
            continue;
        }
        ASSERT_EQ(f32_to_fp16(f), h) << std::hex << i;
#ifdef TFU_HAVE_FLOAT16
        ASSERT_EQ(float_to_bits(f), float_to_bits(ref_fp16_to_f32(h))) << std::hex << i;
#endif
    }
    EXPECT_EQ(fp16_to_f32(0x3c00), 1.0f);
    EXPECT_EQ(fp16_to_f32(0xc000), -2.0f);
    EXPECT_EQ(fp16_to_f32(0x7bff), 65504.0f);
    EXPECT_EQ(fp16_to_f32(0x0001), std::ldexp(1.0f, -24));
    EXPECT_EQ(fp16_to_f32(0x03ff), std::ldexp(1023.0f, -24));
    EXPECT_TRUE(std::isinf(fp16_to_f32(0xfc00)) && fp16_to_f32(0xfc00) < 0);
}

#ifdef TFU_HAVE_FLOAT16
TEST(fp16, float_to_half_rounding_matches_ieee) {
    // (1) every midpoint between adjacent halves and its float neighbours: ties to even and the boundaries
    for (uint32_t i = 0; i < 0x7c00u; ++i) {
        const double a = double(fp16_to_f32(uint16_t(i)));
        const double b = i + 1 == 0x7c00u ? 65536.0 : double(fp16_to_f32(uint16_t(i + 1)));
        const float mid = float((a + b) / 2);  // exact in float (halves have 11 significant bits)
        for (float f : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, INFINITY)}) {
            ASSERT_EQ(f32_to_fp16(f), ref_f32_to_fp16(f)) << f;
            ASSERT_EQ(f32_to_fp16(-f), ref_f32_to_fp16(-f)) << -f;
        }
    }
    // (2) random float bit patterns of every exponent
    const uint32_t seed = 5150u;
    std::printf("seed %u\n", seed);
    std::mt19937 rng(seed);
    for (int k = 0; k < 2000000; ++k) {
        const float f = bits_to_float(uint32_t(rng()));
        if (std::isnan(f)) {
            ASSERT_TRUE(half_is_nan(f32_to_fp16(f)));
            continue;
        }
        ASSERT_EQ(f32_to_fp16(f), ref_f32_to_fp16(f)) << f << " bits " << std::hex << float_to_bits(f);
    }
    // (3) named cases
    EXPECT_EQ(f32_to_fp16(65504.0f), 0x7bff);
    EXPECT_EQ(f32_to_fp16(65519.99f), 0x7bff);
    EXPECT_EQ(f32_to_fp16(65520.0f), 0x7c00);  // halfway to 65536: ties to even -> inf
    EXPECT_EQ(f32_to_fp16(1e10f), 0x7c00);
    EXPECT_EQ(f32_to_fp16(-INFINITY), 0xfc00);
    EXPECT_EQ(f32_to_fp16(std::ldexp(1.0f, -25)), 0x0000);                // half of the smallest subnormal: even
    EXPECT_EQ(f32_to_fp16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001);
    EXPECT_EQ(f32_to_fp16(std::ldexp(3.0f, -25)), 0x0002);                // 1.5 ulp -> 2 (even)
    EXPECT_EQ(f32_to_fp16(-0.0f), 0x8000);
    EXPECT_TRUE(half_is_nan(f32_to_fp16(std::nanf(""))));
    EXPECT_TRUE(half_is_nan(f32_to_fp16(bits_to_float(0x7f800001u))));  // a NaN whose payload is below half's
}
#else
TEST(fp16, float_to_half_rounding_matches_ieee) { GTEST_SKIP() << "compiler has no _Float16 to compare against"; }
#endif

TEST(bf16, every_bf16_round_trips_and_rounding_is_nearest_even) {
    for (uint32_t i = 0; i < 65536; ++i) {
        const uint16_t h = uint16_t(i);
        const float f = bf16_to_f32(h);
        ASSERT_EQ(float_to_bits(f), uint32_t(h) << 16);
        if (std::isnan(f)) {
            ASSERT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(f))));
            continue;
        }
        ASSERT_EQ(f32_to_bf16(f), h) << std::hex << i;
    }
    const uint32_t seed = 6160u;
    std::printf("seed %u\n", seed);
    std::mt19937 rng(seed);
    for (int k = 0; k < 2000000; ++k) {
        // half the draws sit exactly on a midpoint (low 16 bits 0x8000) to exercise ties
        uint32_t b = uint32_t(rng());
        if (k % 2) b = (b & 0xffff0000u) | 0x8000u;
        const float f = bits_to_float(b);
        if (std::isnan(f)) {
            ASSERT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(f))));
            ASSERT_EQ(f32_to_bf16(f) & 0x8000u, (b >> 16) & 0x8000u);
            continue;
        }
        ASSERT_EQ(f32_to_bf16(f), ref_f32_to_bf16(f)) << std::hex << b;
    }
    EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
    EXPECT_EQ(f32_to_bf16(bits_to_float(0x3f808000u)), 0x3f80);  // tie, even stays
    EXPECT_EQ(f32_to_bf16(bits_to_float(0x3f818000u)), 0x3f82);  // tie, odd rounds up
    EXPECT_EQ(f32_to_bf16(bits_to_float(0x7f7fffffu)), 0x7f80);  // FLT_MAX overflows to inf
    EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(bits_to_float(0x7f800001u)))));  // payload only in low bits
}
