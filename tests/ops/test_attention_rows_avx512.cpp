// The row kernels of the CPU attention frame (backend/cpu/attention_split.h) one by one: every kernel (scores,
// accum + finish, max, exp_sum, scale) of the AVX-512 and AVX2 levels against the scalar level, on random tiles of
// every tile kind (q4 values with groups of 32, 16, 8 and the cache's own g), head sizes 8 .. 128 (tails of 16,
// 8 and single channels), 1 .. 8 heads and 1 .. 64 rows. Random data from a printed seed; a level the CPU lacks
// is skipped with the reason.
//
// Bounds: a dot product or weighted sum of n f32 terms differs from another summation order by at most about
// n * 2^-24 * (sum of |terms|) each way, so scores and accumulators are held to
//   |got - want| <= 2 (n + 2) 2^-24 A,
// A = the sum of the terms' magnitudes with the quantized parameters kept apart (q4: |q code scale| + |q min|, as
// the kernels fold them). max and scale are exact; exp_sum is held to 1e-6 relative (the polynomial's ~1e-7).
#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/attention_split.h"
#include "backend/kv_format.h"
#include "ops/op_test_util.h"

namespace tfu::test {
namespace {

using cpu::attn_kernels;
using cpu::kv_tile;
using cpu::tile_kind;

const char* kind_name(tile_kind k) {
    switch (k) {
        case tile_kind::f32: return "f32";
        case tile_kind::f16: return "f16";
        case tile_kind::bf16: return "bf16";
        case tile_kind::q8: return "q8";
        case tile_kind::q4_channel: return "q4_channel";
        case tile_kind::q4_group: return "q4_group";
    }
    return "?";
}

// A random tile of tn rows of hd channels and its terms: x_t[c] = a(t, c) + b(t, c), where b is the q4 min (0
// otherwise), for the bound's magnitudes.
struct tile_data {
    std::vector<uint8_t> rows;
    std::vector<uint16_t> scale, min;
    kv_tile x;
    std::vector<float> a, b;  // (tn, hd)
};

uint16_t random_half(std::mt19937_64& rng, float lo, float hi) {
    return f32_to_fp16(std::uniform_real_distribution<float>(lo, hi)(rng));
}

tile_data make_tile(std::mt19937_64& rng, tile_kind kind, int64_t tn, int64_t hd, int32_t group) {
    tile_data d;
    std::uniform_int_distribution<int> byte(0, 255);
    const size_t elem = kind == tile_kind::f32 ? 4 : kind == tile_kind::f16 || kind == tile_kind::bf16 ? 2 : 1;
    const size_t stride = kind == tile_kind::q4_channel || kind == tile_kind::q4_group ? size_t(hd + 1) / 2 + 3
                                                                                      : size_t(hd) * elem + 8;
    d.rows.resize(stride * size_t(tn));
    d.a.assign(size_t(tn * hd), 0.0f);
    d.b.assign(size_t(tn * hd), 0.0f);
    d.x.kind = kind;
    d.x.stride = stride;
    const int64_t ng = kind == tile_kind::q4_group ? hd / group : 0;
    if (kind == tile_kind::q8) d.scale.resize(size_t(tn));
    if (kind == tile_kind::q4_channel) d.scale.resize(size_t(hd)), d.min.resize(size_t(hd));
    if (kind == tile_kind::q4_group) d.scale.resize(size_t(tn * ng)), d.min.resize(size_t(tn * ng));
    for (uint16_t& s : d.scale) s = random_half(rng, 0.01f, 0.3f);
    for (uint16_t& m : d.min) m = random_half(rng, -2.0f, 1.0f);
    for (uint8_t& v : d.rows) v = uint8_t(byte(rng));  // codes; f32/f16/bf16 rows are overwritten below
    const std::vector<float> vals = random_floats(rng, size_t(tn * hd));
    for (int64_t t = 0; t < tn; ++t) {
        uint8_t* row = d.rows.data() + size_t(t) * stride;
        for (int64_t c = 0; c < hd; ++c) {
            const float v = vals[size_t(t * hd + c)];
            float& a = d.a[size_t(t * hd + c)];
            float& b = d.b[size_t(t * hd + c)];
            switch (kind) {
                case tile_kind::f32: reinterpret_cast<float*>(row)[c] = a = v; break;
                case tile_kind::f16:
                    reinterpret_cast<uint16_t*>(row)[c] = f32_to_fp16(v);
                    a = fp16_to_f32(f32_to_fp16(v));
                    break;
                case tile_kind::bf16:
                    reinterpret_cast<uint16_t*>(row)[c] = f32_to_bf16(v);
                    a = bf16_to_f32(f32_to_bf16(v));
                    break;
                case tile_kind::q8: {
                    int8_t& code = reinterpret_cast<int8_t*>(row)[c];
                    if (code == -128) code = -127;
                    a = fp16_to_f32(d.scale[size_t(t)]) * float(code);
                    break;
                }
                case tile_kind::q4_channel:
                case tile_kind::q4_group: {
                    const float code = float((row[c / 2] >> (4 * (c % 2))) & 0xf);
                    const size_t i = kind == tile_kind::q4_channel ? size_t(c) : size_t(t * ng + c / group);
                    a = code * fp16_to_f32(d.scale[i]);
                    b = fp16_to_f32(d.min[i]);
                    break;
                }
            }
        }
    }
    d.x.rows = d.rows.data();
    d.x.scale = d.scale.empty() ? nullptr : d.scale.data();
    d.x.min = d.min.empty() ? nullptr : d.min.data();
    d.x.group = group;
    return d;
}

constexpr double k_ulp = 1.0 / (1 << 24);

// scores and accum (+ finish) of `kr` against the scalar kernels for one tile shape (the first few elements out
// of bounds are reported).
void check_rows(const attn_kernels& kr, const char* level, std::mt19937_64& rng, tile_kind kind, int64_t tn,
                int64_t hd, int G, int32_t group) {
    const attn_kernels& ref = cpu::attn_kernels_scalar();
    const std::string what = std::string(level) + " " + kind_name(kind) + " hd=" + std::to_string(hd) +
                             " tn=" + std::to_string(tn) + " G=" + std::to_string(G) +
                             (kind == tile_kind::q4_group ? " g=" + std::to_string(group) : "");
    SCOPED_TRACE(what);
    const int64_t ld = (tn + 7) & ~int64_t(7);  // the frame's tile: a multiple of 8, >= tn
    // Two tiles: accum runs twice before finish, as over a task's tiles (acc may be in another order between).
    tile_data d0 = make_tile(rng, kind, tn, hd, group), d1 = make_tile(rng, kind, tn, hd, group);
    const std::vector<float> q = random_floats(rng, size_t(G * hd));
    // work exactly as large as the frame makes it for this tile, one float off 64-byte alignment.
    std::vector<float> work_buf(size_t(cpu::attn_work_floats(ld, hd)) + 1);
    float* work = work_buf.data() + 1;

    // scores
    std::vector<float> s_got(size_t(G * ld), 0.0f), s_want(size_t(G * ld), 0.0f);
    kr.scores(d0.x, tn, hd, G, q.data(), s_got.data(), ld, work);
    ref.scores(d0.x, tn, hd, G, q.data(), s_want.data(), ld, work);
    int bad = 0;
    for (int hh = 0; hh < G; ++hh)
        for (int64_t t = 0; t < tn; ++t) {
            double mag = 0;
            for (int64_t c = 0; c < hd; ++c) {
                const double qc = std::fabs(q[size_t(hh * hd + c)]);
                mag += qc * (std::fabs(d0.a[size_t(t * hd + c)]) + std::fabs(d0.b[size_t(t * hd + c)]));
            }
            const double bound = 2.0 * double(hd + 2) * k_ulp * mag + 1e-30;
            const double got = s_got[size_t(hh * ld + t)], want = s_want[size_t(hh * ld + t)];
            if (!(std::fabs(got - want) <= bound) && bad++ < 3)
                ADD_FAILURE() << "score head " << hh << " row " << t << ": " << got << " vs " << want << " (bound "
                              << bound << ")";
        }

    // accum + finish over the two tiles as a task runs them: acc from 0, weights in (0, 1), acc rescaled in
    // between (a new running max: order-free, so it may see acc in the kernel's own order).
    std::uniform_real_distribution<float> u01(0.01f, 1.0f);
    std::vector<float> p0(size_t(G * ld)), p1(size_t(G * ld));
    for (float& v : p0) v = u01(rng);
    for (float& v : p1) v = u01(rng);
    constexpr float k_rescale = 0.625f;
    std::vector<float> a_got(size_t(G * hd), 0.0f), a_want(size_t(G * hd), 0.0f);
    std::vector<float> pg = p0, pw = p0;  // accum may change p
    kr.accum(d0.x, tn, hd, G, pg.data(), ld, a_got.data(), work);
    ref.accum(d0.x, tn, hd, G, pw.data(), ld, a_want.data(), work);
    for (int hh = 0; hh < G; ++hh) {
        kr.scale(a_got.data() + hh * hd, k_rescale, hd);
        ref.scale(a_want.data() + hh * hd, k_rescale, hd);
    }
    pg = p1;
    pw = p1;
    kr.accum(d1.x, tn, hd, G, pg.data(), ld, a_got.data(), work);
    ref.accum(d1.x, tn, hd, G, pw.data(), ld, a_want.data(), work);
    kr.finish(d1.x, hd, G, a_got.data());
    ref.finish(d1.x, hd, G, a_want.data());
    bad = 0;
    for (int hh = 0; hh < G; ++hh)
        for (int64_t c = 0; c < hd; ++c) {
            double mag = 0;
            for (int64_t t = 0; t < tn; ++t) {
                const size_t i = size_t(t * hd + c);
                mag += k_rescale * p0[size_t(hh * ld + t)] * (std::fabs(d0.a[i]) + std::fabs(d0.b[i]));
                mag += p1[size_t(hh * ld + t)] * (std::fabs(d1.a[i]) + std::fabs(d1.b[i]));
            }
            const double bound = 2.0 * double(2 * tn + 4) * k_ulp * mag + 1e-30;
            const double got = a_got[size_t(hh * hd + c)], want = a_want[size_t(hh * hd + c)];
            if (!(std::fabs(got - want) <= bound) && bad++ < 3)
                ADD_FAILURE() << "acc head " << hh << " channel " << c << ": " << got << " vs " << want << " (bound "
                              << bound << ")";
        }
}

void check_level(const attn_kernels& kr, const char* level) {
    std::mt19937_64 rng(test_seed() * 7919u + 11);
    const tile_kind kinds[] = {tile_kind::f32, tile_kind::f16, tile_kind::bf16, tile_kind::q8, tile_kind::q4_channel,
                               tile_kind::q4_group};
    for (int64_t hd : {8, 24, 40, 48, 64, 80, 96, 128})
        for (tile_kind kind : kinds) {
            std::vector<int32_t> groups = {0};
            if (kind == tile_kind::q4_group) {
                groups = {kv_q4_group(int32_t(hd))};
                for (int32_t g : {8, 16, 32})
                    if (hd % g == 0 && g != groups[0]) groups.push_back(g);
            }
            for (int32_t g : groups)
                for (int64_t tn : {1, 5, 16, 31, 32, 64})
                    for (int G = 1; G <= 8; ++G) {
                        if (tn == 31 && G % 2 == 0) continue;  // keep the run short
                        check_rows(kr, level, rng, kind, tn, hd, G, g);
                        if (::testing::Test::HasFailure()) return;  // the first failing shape is enough
                    }
        }

    // max, exp_sum, scale over lengths 1 .. 70 (vector bodies and tails)
    const attn_kernels& ref = cpu::attn_kernels_scalar();
    for (int64_t n = 1; n <= 70; ++n) {
        SCOPED_TRACE(std::string(level) + " n=" + std::to_string(n));
        const std::vector<float> s = random_floats(rng, size_t(n), 3.0f);
        EXPECT_EQ(kr.max(s.data(), n), ref.max(s.data(), n));
        const float m = ref.max(s.data(), n);
        std::vector<float> eg = s, ew = s;
        const float sg = kr.exp_sum(eg.data(), n, m), sw = ref.exp_sum(ew.data(), n, m);
        EXPECT_NEAR(sg, sw, 1e-6 * std::fabs(sw));
        for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(eg[size_t(i)], ew[size_t(i)], 1e-6 * std::fabs(ew[size_t(i)]));
        std::vector<float> xg = s, xw = s;
        kr.scale(xg.data(), 0.37f, n);
        ref.scale(xw.data(), 0.37f, n);
        EXPECT_EQ(xg, xw);
    }
}

TEST(attention_rows, avx512_matches_scalar) {
    if (!cpu::cpu_has_avx512_hw()) GTEST_SKIP() << "this CPU (or OS) lacks AVX-512 F/BW/VL/DQ/VNNI";
    check_level(cpu::attn_kernels_avx512(), "avx512");
}

TEST(attention_rows, avx2_matches_scalar) {
    if (!cpu::cpu_has_avx2()) GTEST_SKIP() << "this CPU lacks AVX2/FMA/F16C (or TFU_CPU_SIMD=scalar)";
    check_level(cpu::attn_kernels_avx2(), "avx2");
}

// TFU_CPU_SIMD caps the level: avx2 and scalar turn AVX-512 off; without it the CPU decides.
TEST(attention_rows, simd_env_caps_the_level) {
    const char* old = std::getenv("TFU_CPU_SIMD");
    const std::string saved = old ? old : "";
    setenv("TFU_CPU_SIMD", "avx2", 1);
    EXPECT_FALSE(cpu::cpu_has_avx512());
    setenv("TFU_CPU_SIMD", "scalar", 1);
    EXPECT_FALSE(cpu::cpu_has_avx512());
    EXPECT_FALSE(cpu::cpu_has_avx2());
    setenv("TFU_CPU_SIMD", "avx512", 1);
    EXPECT_EQ(cpu::cpu_has_avx512(), cpu::cpu_has_avx512_hw());
    if (old) setenv("TFU_CPU_SIMD", saved.c_str(), 1);
    else unsetenv("TFU_CPU_SIMD");
}

}  // namespace
}  // namespace tfu::test
