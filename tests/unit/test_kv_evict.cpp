// kv_block_table::drop_blocks (the sliding-window eviction): for every K/V format, the kept keys equal the keys
// RoPE would give at their new positions (within the format's round-trip error), the values are unchanged,
// positions stay dense, blocks go back to the pool, and a block shared with another table is not touched.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <random>

#include "core/error.h"
#include "kv/block_table.h"

namespace tfu {
namespace {

constexpr int32_t k_layers = 2, k_heads = 2, k_B = 16;

// Normal-mode RoPE of one row at position p (pairs (2j, 2j+1), base 10000): the test's own reference.
void rope_row(float* x, int32_t d, double p) {
    for (int32_t j = 0; j < d / 2; ++j) {
        const double th = p * std::pow(10000.0, -2.0 * j / d);
        const double a = x[2 * j], b = x[2 * j + 1];
        x[2 * j] = float(a * std::cos(th) - b * std::sin(th));
        x[2 * j + 1] = float(a * std::sin(th) + b * std::cos(th));
    }
}

struct bound {
    kv_format f;
    double rel;  // relative RMS error of a kept key against the exact rotated key
};

double rel_rms(const std::vector<float>& got, const std::vector<float>& want) {
    double num = 0, den = 0;
    for (size_t i = 0; i < got.size(); ++i) {
        num += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
        den += double(want[i]) * want[i];
    }
    return std::sqrt(num / den);
}


// A table of n positions for (k_layers, k_heads) of head size d: random keys (raw, before RoPE) written after RoPE
// at their positions, random values; raw and val keep the exact inputs.
struct filled_table {
    filled_table(kv_format kf, kv_format vf, int32_t d_, int32_t n_, uint64_t seed) : d(d_), n(n_) {
        kv_pool_params pp;
        pp.n_layer = k_layers;
        pp.n_head_kv = k_heads;
        pp.head_dim = d;
        pp.block_tokens = k_B;
        pp.k_format = kf;
        pp.v_format = vf;
        pool = std::make_unique<kv_block_pool>(pp);
        t = std::make_unique<kv_block_table>(*pool);
        std::mt19937_64 rng(seed);
        std::normal_distribution<float> nd(0.f, 1.f);
        raw.resize(size_t(k_layers * k_heads) * size_t(n) * size_t(d));
        val.resize(raw.size());
        for (float& x : raw) x = nd(rng);
        for (float& x : val) x = nd(rng);
        t->append(n);
        rows.resize(size_t(n) * size_t(d));
        for (int32_t l = 0; l < k_layers; ++l)
            for (int32_t h = 0; h < k_heads; ++h) {
                for (int32_t p = 0; p < n; ++p) {
                    std::copy(at(raw, l, h, p), at(raw, l, h, p) + d, rows.data() + size_t(p) * size_t(d));
                    rope_row(rows.data() + size_t(p) * size_t(d), d, p);
                }
                t->write_k(l, h, 0, n, rows.data(), d);
                t->write_v(l, h, 0, n, at(val, l, h, 0), d);
            }
    }
    float* at(std::vector<float>& a, int32_t l, int32_t h, int32_t p) {
        return a.data() + ((size_t(l) * k_heads + size_t(h)) * size_t(n) + size_t(p)) * size_t(d);
    }
    int32_t d, n;
    std::unique_ptr<kv_block_pool> pool;
    std::unique_ptr<kv_block_table> t;
    std::vector<float> raw, val, rows;  // rows: the last (layer, head)'s keys after RoPE
};

// Two errors add up for moved keys: the first encoding and the re-encoding after the rotation.
double moved_key_bound(kv_format kf) {
    return kf == kv_format::f16 ? 1e-3 : kf == kv_format::bf16 ? 8e-3 : kf == kv_format::q8 ? 0.015 : 0.11;
}

class kv_evict : public testing::TestWithParam<std::tuple<kv_format, int32_t>> {};

TEST_P(kv_evict, dropped_blocks_shift_positions_and_rotate_keys) {
    const auto [kf, d] = GetParam();
    const double bound = moved_key_bound(kf);
    filled_table ft(kf, kv_format::q8, d, 6 * k_B + 5, 1234 + uint64_t(kf) * 7 + uint64_t(d));  // 6 full + partial
    const int32_t n = ft.n;
    kv_block_pool& pool = *ft.pool;
    kv_block_table& t = *ft.t;
    std::vector<float>& raw = ft.raw;
    std::vector<float>& val = ft.val;
    std::vector<float>& rows = ft.rows;
    auto at = [&](std::vector<float>& a, int32_t l, int32_t h, int32_t p) { return ft.at(a, l, h, p); };
    // A second table shares the first 3 blocks (the sink and two that will be dropped or moved).
    std::vector<int32_t> toks(static_cast<size_t>(n));
    for (int32_t i = 0; i < n; ++i) toks[size_t(i)] = i * 7 % 101;
    t.publish_prefix(toks.data(), n);
    kv_block_table other(pool);
    ASSERT_GE(other.adopt_prefix(toks.data(), 3 * k_B), 2 * k_B);
    std::vector<std::vector<float>> other_before;
    for (int32_t b = 0; b < other.n_blocks(); ++b) {
        std::vector<float> r(size_t(k_B) * size_t(d));
        for (int32_t i = 0; i < k_B; ++i) {
            const kv_rows kr = other.k_rows(b, 1, 1);
            kv_read_row(*kr.layout, kr.data, i, r.data() + size_t(i) * size_t(d));
        }
        other_before.push_back(r);
    }
    const kv_pool_stats before = pool.stats();
    int32_t freed = 0;  // dropped blocks that only this table held
    for (int32_t b = 1; b < 3; ++b) freed += pool.ref_count(t.blocks()[size_t(b)]) == 1 ? 1 : 0;
    int32_t copied = 0;  // moved blocks that the other table also holds get a private copy
    for (int32_t b = 3; b < t.n_blocks(); ++b) copied += pool.ref_count(t.blocks()[size_t(b)]) > 1 ? 1 : 0;

    // Keep block 0 (the sinks), drop blocks 1 and 2: positions >= 3B move down by 2B.
    const int32_t first = 1, count = 2, delta = -count * k_B;
    int32_t shifted_rows = 0;
    t.drop_blocks(first, count, [&](float* r, const int32_t* deltas, int32_t nr) {
        for (int32_t i = 0; i < nr; ++i) {
            EXPECT_EQ(deltas[i], delta);
            rope_row(r + size_t(i) * size_t(d), d, deltas[i]);
        }
        shifted_rows += nr;
    });
    EXPECT_EQ(t.n_tokens(), n - count * k_B);
    EXPECT_EQ(t.n_blocks(), 5);
    EXPECT_EQ(shifted_rows, k_layers * k_heads * (n - 3 * k_B));  // every moved key row, once
    EXPECT_EQ(pool.stats().blocks_in_use, before.blocks_in_use - freed + copied) << "accounting after the drop";
    EXPECT_EQ(t.n_shared_blocks(), 1) << "only the sink block is still shared";

    std::vector<float> got(static_cast<size_t>(d)), want(static_cast<size_t>(d));
    std::vector<float> all_got, all_want, v_got, v_want;
    for (int32_t l = 0; l < k_layers; ++l)
        for (int32_t h = 0; h < k_heads; ++h)
            for (int32_t q = 0; q < t.n_tokens(); ++q) {
                const int32_t orig = q < k_B ? q : q + count * k_B;
                const kv_rows kr = t.k_rows(q / k_B, l, h);
                ASSERT_LT(q % k_B, kr.n_rows);
                kv_read_row(*kr.layout, kr.data, q % k_B, got.data());
                std::copy(at(raw, l, h, orig), at(raw, l, h, orig) + d, want.begin());
                rope_row(want.data(), d, q);  // the key as if computed at its new position
                all_got.insert(all_got.end(), got.begin(), got.end());
                all_want.insert(all_want.end(), want.begin(), want.end());
                const kv_rows vr = t.v_rows(q / k_B, l, h);
                kv_read_row(*vr.layout, vr.data, q % k_B, got.data());
                v_got.insert(v_got.end(), got.begin(), got.end());
                std::vector<float> v_exact(at(val, l, h, orig), at(val, l, h, orig) + d);
                v_want.insert(v_want.end(), v_exact.begin(), v_exact.end());
            }
    const double e = rel_rms(all_got, all_want);
    std::printf("%s d=%d: kept keys rel. RMS error %.5f (bound %.3f), values %.5f\n", kv_format_name(kf), d, e, bound,
                rel_rms(v_got, v_want));
    EXPECT_LT(e, bound);
    EXPECT_LT(rel_rms(v_got, v_want), 0.012) << "values are q8 and do not move";

    // The other table's blocks are untouched (shared blocks are copied before a rotation writes them).
    for (int32_t b = 0; b < other.n_blocks(); ++b) {
        std::vector<float> r(size_t(k_B) * size_t(d));
        for (int32_t i = 0; i < k_B; ++i) {
            const kv_rows kr = other.k_rows(b, 1, 1);
            kv_read_row(*kr.layout, kr.data, i, r.data() + size_t(i) * size_t(d));
        }
        EXPECT_EQ(r, other_before[size_t(b)]) << "shared block " << b << " changed";
    }

    // The table goes on: appending and writing after the drop works, and the blocks all come back at the end.
    t.append(3);
    for (int32_t l = 0; l < k_layers; ++l)
        for (int32_t h = 0; h < k_heads; ++h) {
            t.write_k(l, h, t.n_tokens() - 3, 3, rows.data(), d);
            t.write_v(l, h, t.n_tokens() - 3, 3, rows.data(), d);
        }
    t.clear();
    EXPECT_EQ(t.n_blocks(), 0);
}

// compact(): kept tokens and mean-pooled groups land at dense new positions with keys rotated there.
TEST_P(kv_evict, compact_keeps_and_merges_rows) {
    const auto [kf, d] = GetParam();
    const double bound = moved_key_bound(kf);
    filled_table ft(kf, kf, d, 5 * k_B + 3, 99 + uint64_t(kf) * 7 + uint64_t(d));
    const int32_t n = ft.n;
    kv_block_pool& pool = *ft.pool;
    kv_block_table& t = *ft.t;
    std::vector<float>& raw = ft.raw;
    std::vector<float>& val = ft.val;
    auto at = [&](std::vector<float>& a, int32_t l, int32_t h, int32_t p) { return ft.at(a, l, h, p); };
    // Keep 0..3, pool [4, 12) into one slot, keep every third token of [12, n - 20), keep the last 20.
    std::vector<std::pair<int32_t, int32_t>> groups;
    for (int32_t p = 0; p < 4; ++p) groups.push_back({p, p + 1});
    groups.push_back({4, 12});
    for (int32_t p = 12; p < n - 20; p += 3) groups.push_back({p, p + 1});
    for (int32_t p = n - 20; p < n; ++p) groups.push_back({p, p + 1});
    t.compact(groups, [&](float* r, const int32_t* deltas, int32_t nr) {
        for (int32_t i = 0; i < nr; ++i) rope_row(r + size_t(i) * size_t(d), d, deltas[i]);
    });
    const int32_t n_new = int32_t(groups.size());
    ASSERT_EQ(t.n_tokens(), n_new);
    EXPECT_EQ(pool.stats().blocks_in_use, (n_new + k_B - 1) / k_B) << "the old blocks are freed";
    std::vector<float> got(static_cast<size_t>(d)), kg, kw, vg, vw;
    for (int32_t l = 0; l < k_layers; ++l)
        for (int32_t h = 0; h < k_heads; ++h)
            for (int32_t q = 0; q < n_new; ++q) {
                const auto [a, e] = groups[size_t(q)];
                std::vector<float> kmean(static_cast<size_t>(d), 0.f), vmean(static_cast<size_t>(d), 0.f);
                for (int32_t r = a; r < e; ++r)
                    for (int32_t c = 0; c < d; ++c) {
                        kmean[size_t(c)] += at(raw, l, h, r)[c] / float(e - a);
                        vmean[size_t(c)] += at(val, l, h, r)[c] / float(e - a);
                    }
                rope_row(kmean.data(), d, q);  // mean of the keys as computed at position q
                const kv_rows kr = t.k_rows(q / k_B, l, h);
                kv_read_row(*kr.layout, kr.data, q % k_B, got.data());
                kg.insert(kg.end(), got.begin(), got.end());
                kw.insert(kw.end(), kmean.begin(), kmean.end());
                const kv_rows vr = t.v_rows(q / k_B, l, h);
                kv_read_row(*vr.layout, vr.data, q % k_B, got.data());
                vg.insert(vg.end(), got.begin(), got.end());
                vw.insert(vw.end(), vmean.begin(), vmean.end());
            }
    const double ek = rel_rms(kg, kw), ev = rel_rms(vg, vw);
    std::printf("compact %s d=%d: keys rel. RMS %.5f, values %.5f (bound %.3f)\n", kv_format_name(kf), d, ek, ev, bound);
    EXPECT_LT(ek, bound);
    EXPECT_LT(ev, bound);
    // Bad groups are refused and change nothing.
    auto noop = [](float*, const int32_t*, int32_t) {};
    EXPECT_THROW(t.compact({{3, 2}}, noop), tfu::error);
    EXPECT_THROW(t.compact({{0, 2}, {1, 3}}, noop), tfu::error);
    EXPECT_THROW(t.compact({{0, n_new + 1}}, noop), tfu::error);
    EXPECT_EQ(t.n_tokens(), n_new);
}

TEST(kv_evict_args, refuses_blocks_that_are_not_final) {
    kv_pool_params pp;
    pp.n_layer = 1;
    pp.n_head_kv = 1;
    pp.head_dim = 8;
    pp.block_tokens = k_B;
    pp.k_format = kv_format::q4;
    pp.residual_blocks = 2;
    kv_block_pool pool(pp);
    kv_block_table t(pool);
    t.append(3 * k_B);  // q4 keys, 2 residual blocks: the newest full block is not final
    std::vector<float> rows(size_t(3 * k_B) * 8, 0.5f);
    t.write_k(0, 0, 0, 3 * k_B, rows.data(), 8);
    t.write_v(0, 0, 0, 3 * k_B, rows.data(), 8);
    auto noop = [](float*, const int32_t*, int32_t) {};
    EXPECT_THROW(t.drop_blocks(1, 2, noop), tfu::error);
    EXPECT_THROW(t.drop_blocks(0, 0, noop), tfu::error);
    EXPECT_THROW(t.drop_blocks(-1, 1, noop), tfu::error);
    EXPECT_NO_THROW(t.drop_blocks(1, 1, noop));
    EXPECT_EQ(t.n_tokens(), 2 * k_B);
}

std::string name(const testing::TestParamInfo<std::tuple<kv_format, int32_t>>& i) {
    return std::string(kv_format_name(std::get<0>(i.param))) + "_d" + std::to_string(std::get<1>(i.param));
}

INSTANTIATE_TEST_SUITE_P(formats, kv_evict,
                         testing::Combine(testing::Values(kv_format::f16, kv_format::bf16, kv_format::q8, kv_format::q4),
                                          testing::Values(8, 64)),
                         name);

}  // namespace
}  // namespace tfu
