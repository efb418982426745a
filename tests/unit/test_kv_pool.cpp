// Tests of kv/block_pool.h and kv/block_table.h: allocation, byte cap, refcounts, copy-on-write, accounting,
// prefix hash hits/misses and cached prefix blocks, the q4-key residual tail, paged attention against a
// contiguous reference, and many threads allocating and sharing concurrently.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <algorithm>
#include <random>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/fp16.h"
#include "kv/block_pool.h"
#include "kv/block_table.h"

using namespace tfu;

namespace {

const uint32_t k_seed = 20250408u;

// R: the q4 keys' residual blocks; 2 unless a test says otherwise (the hand-computed expectations below use 2).
kv_pool_params small_params(kv_format kf, kv_format vf, int32_t R = 2) {
    kv_pool_params p;
    p.residual_blocks = R;
    p.n_layer = 3;
    p.n_head_kv = 2;
    p.head_dim = 16;
    p.block_tokens = 16;
    p.k_format = kf;
    p.v_format = vf;
    p.chunk_blocks = 4;
    return p;
}

tfu_status status_of(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const error& e) {
        return e.status();
    }
    return TFU_STATUS_OK;
}

// The accounting invariants that must hold at any quiet moment.
void check_accounting(const kv_block_pool& pool) {
    kv_pool_stats s = pool.stats();
    EXPECT_EQ(s.blocks_total, s.blocks_in_use + s.blocks_cached + s.blocks_free);
    EXPECT_EQ(s.bytes_in_use, size_t(s.blocks_in_use) * s.block_bytes);
    EXPECT_EQ(s.bytes_cached, size_t(s.blocks_cached) * s.block_bytes);
    EXPECT_EQ(s.bytes_reserved, size_t(s.blocks_total) * s.block_bytes);
    EXPECT_GE(s.refs, s.blocks_in_use);
    EXPECT_EQ(s.k_bytes_per_block + s.v_bytes_per_block,
              size_t(pool.params().n_layer) * (pool.layer_offset(1) - pool.layer_offset(0)));
    EXPECT_GE(s.block_bytes, s.k_bytes_per_block + s.v_bytes_per_block);
}

TEST(kv_pool, layout_and_sizes) {
    kv_block_pool pool(small_params(kv_format::q8, kv_format::q4));
    // per layer: 2 heads x (q8 K 16*2 + 16*16 = 288) + 2 x (q4 V: 16 tokens x 1 group x 4 = 64 + 16 x 8 = 192)
    EXPECT_EQ(pool.k_layout().bytes, 288u);
    EXPECT_EQ(pool.v_layout().bytes, 192u);
    EXPECT_EQ(pool.layer_offset(1), 2u * 288u + 2u * 192u);
    EXPECT_EQ(pool.block_bytes(), (3u * 960u + 63u) / 64u * 64u);
    const int32_t id = pool.allocate();
    EXPECT_EQ(reinterpret_cast<uintptr_t>(pool.data(id)) % 64, 0u);
    EXPECT_EQ(pool.v_head(id, 2, 1) + 192, pool.data(id) + 3 * 960);
    EXPECT_EQ(pool.k_head(id, 1, 0), pool.data(id) + 960);
    pool.release(id);
    EXPECT_EQ(status_of([] { kv_pool_params p = small_params(kv_format::f16, kv_format::f16); p.n_layer = 0; kv_block_pool x(p); }),
              TFU_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(status_of([] { kv_pool_params p = small_params(kv_format::f16, kv_format::f16); p.block_tokens = 20; kv_block_pool x(p); }),
              TFU_STATUS_INVALID_ARGUMENT);
}

TEST(kv_pool, allocate_release_cap_accounting) {
    kv_pool_params p = small_params(kv_format::f16, kv_format::f16);
    kv_block_pool probe(p);
    p.max_bytes = probe.block_bytes() * 10 + 5;  // 2 chunks of 4 and a partial chunk of 2
    kv_block_pool pool(p);
    std::vector<int32_t> ids;
    for (int i = 0; i < 10; ++i) ids.push_back(pool.allocate());
    EXPECT_EQ(pool.try_allocate(), -1);
    EXPECT_EQ(status_of([&] { pool.allocate(); }), TFU_STATUS_OUT_OF_MEMORY);
    kv_pool_stats s = pool.stats();
    EXPECT_EQ(s.chunks, 3);
    EXPECT_EQ(s.blocks_total, 10);
    EXPECT_EQ(s.blocks_in_use, 10);
    EXPECT_LE(s.bytes_reserved, p.max_bytes);
    check_accounting(pool);
    // distinct, non-overlapping blocks: fill each with its id and read back
    for (int32_t id : ids) std::memset(pool.data(id), id + 1, pool.block_bytes());
    for (int32_t id : ids)
        for (size_t i = 0; i < pool.block_bytes(); i += 97) ASSERT_EQ(pool.data(id)[i], uint8_t(id + 1));
    pool.release(ids[3]);
    pool.release(ids[7]);
    EXPECT_EQ(pool.stats().blocks_free, 2);
    check_accounting(pool);
    int32_t a = pool.allocate(), b = pool.allocate();
    EXPECT_TRUE((a == ids[3] && b == ids[7]) || (a == ids[7] && b == ids[3]));
    EXPECT_EQ(pool.stats().chunks, 3);  // reused, no new chunk
    EXPECT_EQ(status_of([&] { pool.release(-1); }), TFU_STATUS_INVALID_ARGUMENT);
    for (int32_t id : ids) pool.release(id);
    EXPECT_EQ(status_of([&] { pool.release(ids[0]); }), TFU_STATUS_INVALID_ARGUMENT);  // double release
    s = pool.stats();
    EXPECT_EQ(s.blocks_in_use, 0);
    EXPECT_EQ(s.bytes_in_use, 0u);
    EXPECT_EQ(s.refs, 0);
    check_accounting(pool);
}

TEST(kv_pool, refcount_and_copy_on_write) {
    kv_block_pool pool(small_params(kv_format::q8, kv_format::q8));
    const int32_t a = pool.allocate();
    for (size_t i = 0; i < pool.block_bytes(); ++i) pool.data(a)[i] = uint8_t(i * 7 + 3);
    EXPECT_EQ(pool.make_writable(a), a);  // sole holder: in place
    pool.retain(a);
    EXPECT_EQ(pool.ref_count(a), 2);
    EXPECT_EQ(pool.stats().refs, 2);
    const int32_t c = pool.make_writable(a);  // shared: copied, our reference moves to the copy
    EXPECT_NE(c, a);
    EXPECT_EQ(pool.ref_count(a), 1);
    EXPECT_EQ(pool.ref_count(c), 1);
    EXPECT_EQ(std::memcmp(pool.data(a), pool.data(c), pool.block_bytes()), 0);
    pool.data(c)[0] ^= 0xff;  // writing the copy leaves the original alone
    EXPECT_EQ(pool.data(a)[0], uint8_t(3));
    EXPECT_EQ(pool.stats().cow_copies, 1);
    check_accounting(pool);
    pool.release(a);
    pool.release(c);
    EXPECT_EQ(pool.stats().blocks_in_use, 0);
}

// Writes deterministic K/V rows for positions [p0, p0 + n) of every layer and head; values depend on the token
// at the position and on the position, like a real forward pass (same prefix -> same contents). Rounded to f16
// so that residual-tail and direct quantization of q4 keys see identical inputs.
void write_tokens(kv_block_table& t, const std::vector<int32_t>& tokens, int32_t p0, int32_t n) {
    const kv_pool_params& p = t.pool().params();
    std::vector<float> k(size_t(n) * size_t(p.head_dim)), v(k.size());
    for (int32_t l = 0; l < p.n_layer; ++l)
        for (int32_t h = 0; h < p.n_head_kv; ++h) {
            for (int32_t i = 0; i < n; ++i)
                for (int32_t c = 0; c < p.head_dim; ++c) {
                    const int32_t pos = p0 + i;
                    float x = std::sin(0.37f * float(tokens[size_t(pos)]) + 0.11f * float(c) + 0.05f * float(pos) +
                                       float(l) - 0.5f * float(h));
                    if (c == 3) x = 8.0f * x + 5.0f;  // an outlier channel
                    k[size_t(i) * size_t(p.head_dim) + size_t(c)] = fp16_to_f32(f32_to_fp16(x));
                    v[size_t(i) * size_t(p.head_dim) + size_t(c)] = fp16_to_f32(f32_to_fp16(0.5f * x - 0.25f));
                }
            t.write_k(l, h, p0, n, k.data(), p.head_dim);
            t.write_v(l, h, p0, n, v.data(), p.head_dim);
        }
}

void read_all(const kv_block_table& t, int32_t layer, int32_t head, std::vector<float>& k, std::vector<float>& v) {
    const int32_t d = t.pool().params().head_dim;
    k.assign(size_t(t.n_tokens()) * size_t(d), 0.0f);
    v.assign(k.size(), 0.0f);
    int32_t pos = 0;
    for (int32_t b = 0; b < t.n_blocks(); ++b) {
        kv_rows kr = t.k_rows(b, layer, head), vr = t.v_rows(b, layer, head);
        EXPECT_EQ(kr.n_rows, vr.n_rows);
        for (int32_t r = 0; r < kr.n_rows; ++r, ++pos) {
            kv_read_row(*kr.layout, kr.data, r, k.data() + size_t(pos) * size_t(d));
            kv_read_row(*vr.layout, vr.data, r, v.data() + size_t(pos) * size_t(d));
        }
    }
    EXPECT_EQ(pos, t.n_tokens());
}

std::vector<int32_t> random_tokens(int32_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (int32_t& x : t) x = int32_t(rng() % 30000u);
    return t;
}

const kv_format k_formats[] = {kv_format::f16, kv_format::bf16, kv_format::q8, kv_format::q4};

// Writing in uneven pieces (through the residual tail for q4 keys) gives the same cache as writing all at once,
// and what is read back is close to what was written.
TEST(kv_table, piecewise_writes_equal_one_shot) {
    std::printf("seed %u\n", k_seed);
    for (int32_t R : {2, 3, 4})
    for (kv_format kf : k_formats)
        for (kv_format vf : {kv_format::q8, kv_format::q4}) {
            SCOPED_TRACE("residual blocks " + std::to_string(R));
            kv_block_pool pool(small_params(kf, vf, R));
            const std::vector<int32_t> tokens = random_tokens(75, k_seed);
            kv_block_table one(pool), piece(pool);
            one.append(75);
            write_tokens(one, tokens, 0, 75);
            int32_t pos = 0;
            for (int32_t n : {1, 5, 10, 3, 20, 16, 1, 19}) {
                piece.append(n);
                write_tokens(piece, tokens, pos, n);
                pos += n;
            }
            ASSERT_EQ(pos, 75);
            EXPECT_EQ(one.n_blocks(), 5);
            for (int32_t l = 0; l < 3; ++l)
                for (int32_t h = 0; h < 2; ++h) {
                    std::vector<float> k1, v1, k2, v2;
                    read_all(one, l, h, k1, v1);
                    read_all(piece, l, h, k2, v2);
                    ASSERT_EQ(k1, k2) << kv_format_name(kf) << " layer " << l;
                    ASSERT_EQ(v1, v2) << kv_format_name(vf) << " layer " << l;
                }
            // the last partial block of q4 keys is read from the f16 residual: exact
            kv_rows tail = one.k_rows(4, 1, 1);
            EXPECT_EQ(tail.n_rows, 75 - 64);
            if (kf == kv_format::q4) {
                EXPECT_EQ(tail.layout->format, kv_format::f16);
            }
            check_accounting(pool);
        }
}

// Paged attention read through the table (dot + softmax + axpy with the row readers) equals attention over the
// contiguous dequantized rows.
TEST(kv_table, paged_attention_matches_contiguous) {
    for (kv_format kf : k_formats)
        for (kv_format vf : k_formats) {
            kv_block_pool pool(small_params(kf, vf));
            const std::vector<int32_t> tokens = random_tokens(53, k_seed + 1);
            kv_block_table t(pool);
            t.append(53);
            write_tokens(t, tokens, 0, 53);
            std::vector<float> kc, vc;
            read_all(t, 2, 1, kc, vc);
            const int32_t d = 16;
            std::mt19937 rng(k_seed + 2);
            std::normal_distribution<float> nd(0.0f, 0.5f);
            std::vector<float> q(static_cast<size_t>(d));
            for (float& x : q) x = nd(rng);
            std::vector<float> s;  // paged scores
            for (int32_t b = 0; b < t.n_blocks(); ++b) {
                kv_rows kr = t.k_rows(b, 2, 1);
                for (int32_t r = 0; r < kr.n_rows; ++r) s.push_back(kv_dot_row(*kr.layout, kr.data, r, q.data()));
            }
            ASSERT_EQ(s.size(), 53u);
            float mx = *std::max_element(s.begin(), s.end()), sum = 0;
            for (float& x : s) sum += (x = std::exp(x - mx));
            std::vector<float> out(static_cast<size_t>(d), 0.0f), ref(static_cast<size_t>(d), 0.0f);
            int32_t pos = 0;
            for (int32_t b = 0; b < t.n_blocks(); ++b) {
                kv_rows vr = t.v_rows(b, 2, 1);
                for (int32_t r = 0; r < vr.n_rows; ++r, ++pos) kv_axpy_row(*vr.layout, vr.data, r, s[size_t(pos)] / sum, out.data());
            }
            // reference on the contiguous dequantized copy (a test-only copy), in double
            std::vector<double> sr(53);
            double mr = -1e30, sumr = 0;
            for (int32_t i = 0; i < 53; ++i) {
                double a = 0;
                for (int32_t c = 0; c < d; ++c) a += double(q[size_t(c)]) * kc[size_t(i) * size_t(d) + size_t(c)];
                sr[size_t(i)] = a;
                mr = std::max(mr, a);
            }
            for (double& x : sr) sumr += (x = std::exp(x - mr));
            for (int32_t i = 0; i < 53; ++i)
                for (int32_t c = 0; c < d; ++c) ref[size_t(c)] += float(sr[size_t(i)] / sumr * vc[size_t(i) * size_t(d) + size_t(c)]);
            for (int32_t c = 0; c < d; ++c)
                ASSERT_NEAR(out[size_t(c)], ref[size_t(c)], 1e-5 + 1e-4 * std::fabs(ref[size_t(c)]))
                    << kv_format_name(kf) << "/" << kv_format_name(vf) << " c=" << c;
        }
}

// q4 keys: the newest full block stays in the f16 residual (read back exactly) until the next block fills;
// then it reads as the per-channel q4 of its rows, bit for bit what quantizing the block on its own gives.
TEST(kv_table, newest_full_block_stays_f16_until_next_fills) {
  for (int32_t R : {2, 3, 4}) {
    SCOPED_TRACE("residual blocks " + std::to_string(R));
    kv_block_pool pool(small_params(kv_format::q4, kv_format::q8, R));
    const int32_t B = 16, d = 16, n_total = 70;
    const std::vector<int32_t> tokens = random_tokens(n_total, k_seed + 7);
    kv_block_table ref(pool);  // the exact (f16-rounded) rows, via a per-token f16 reference read below
    ref.append(n_total);
    write_tokens(ref, tokens, 0, n_total);
    kv_pool_params fp = small_params(kv_format::f16, kv_format::q8);
    kv_block_pool f16_pool(fp);
    kv_block_table exact(f16_pool);
    exact.append(n_total);
    write_tokens(exact, tokens, 0, n_total);
    std::vector<float> kx, vx;
    read_all(exact, 2, 1, kx, vx);  // f16 K: exactly the written rows (they are f16-representable)
    kv_block_table t(pool);
    int32_t pos = 0;
    for (int32_t n : {1, 14, 1, 1, 15, 1, 3, 13, 17, 4}) {
        t.append(n);
        write_tokens(t, tokens, pos, n);
        pos += n;
        EXPECT_EQ(t.n_final_blocks(), std::max(0, pos / B - (R - 1))) << "n_tokens " << pos;
        for (int32_t b = 0; b < t.n_blocks(); ++b) {
            kv_rows kr = t.k_rows(b, 2, 1);
            ASSERT_EQ(kr.n_rows, std::min(B, pos - b * B));
            std::vector<float> row(static_cast<size_t>(d));
            if (b >= t.n_final_blocks()) {  // residual: exact
                ASSERT_EQ(kr.layout->format, kv_format::f16) << "block " << b << " at n_tokens " << pos;
                for (int32_t r = 0; r < kr.n_rows; ++r) {
                    kv_read_row(*kr.layout, kr.data, r, row.data());
                    for (int32_t c = 0; c < d; ++c)
                        ASSERT_EQ(row[size_t(c)], kx[size_t(b * B + r) * size_t(d) + size_t(c)]) << "block " << b;
                }
            } else {  // quantized: the q4 of the block's rows, as quantizing them directly gives
                ASSERT_EQ(kr.layout->format, kv_format::q4) << "block " << b << " at n_tokens " << pos;
                std::vector<uint8_t> q(pool.k_layout().bytes);
                kv_quantize_block_k(pool.k_layout(), q.data(), kx.data() + size_t(b * B) * size_t(d), d);
                ASSERT_EQ(std::memcmp(q.data(), kr.data, q.size()), 0) << "block " << b << " at n_tokens " << pos;
            }
        }
    }
    ASSERT_EQ(pos, n_total);
    // the one-shot table (blocks 0..2 quantized straight from the input) reads the same
    std::vector<float> k1, v1, k2, v2;
    read_all(t, 2, 1, k1, v1);
    read_all(ref, 2, 1, k2, v2);
    EXPECT_EQ(k1, k2);
    EXPECT_EQ(v1, v2);
    EXPECT_EQ(t.bytes(), 5 * pool.block_bytes() + size_t(3 * 2 * R * B * d * 2));  // the tail: R blocks of f16
    check_accounting(pool);
  }
}

TEST(kv_table, truncate_and_clear) {
    for (kv_format kf : k_formats) {
        kv_block_pool pool(small_params(kf, kv_format::q4));
        const std::vector<int32_t> tokens = random_tokens(60, k_seed + 3);
        kv_block_table t(pool);
        t.append(60);
        write_tokens(t, tokens, 0, 60);
        std::vector<float> k60, v60;
        read_all(t, 0, 0, k60, v60);
        // into the partial block (52), then into the newest full block (40): q4 keys keep their f16 rows, so
        // every format reads back exactly what it held
        for (int32_t keep : {52, 40}) {
            t.truncate(keep);
            EXPECT_EQ(t.n_tokens(), keep);
            EXPECT_EQ(pool.stats().blocks_in_use, (keep + 15) / 16);
            std::vector<float> k, v;
            read_all(t, 0, 0, k, v);
            ASSERT_TRUE(std::equal(k.begin(), k.end(), k60.begin())) << kv_format_name(kf) << " keep " << keep;
            ASSERT_TRUE(std::equal(v.begin(), v.end(), v60.begin())) << kv_format_name(kf) << " keep " << keep;
        }
        if (kf == kv_format::q4) {
            EXPECT_EQ(t.k_rows(2, 0, 0).layout->format, kv_format::f16);
        }
        t.truncate(21);  // into the second block, which is final (q4 keys: dequantized back into the residual)
        EXPECT_EQ(t.n_tokens(), 21);
        EXPECT_EQ(t.n_blocks(), 2);
        EXPECT_EQ(pool.stats().blocks_in_use, 2);
        std::vector<float> k21, v21;
        read_all(t, 0, 0, k21, v21);
        for (size_t i = 0; i < k21.size(); ++i) {  // the kept rows read back as before (f16 of the q4 values)
            ASSERT_NEAR(k21[i], k60[i], 1e-3 * (1 + std::fabs(k60[i])));
            ASSERT_EQ(v21[i], v60[i]);
        }
        t.append(39);  // regrow, writing the rest
        write_tokens(t, tokens, 21, 39);
        EXPECT_EQ(t.n_blocks(), 4);
        EXPECT_EQ(t.bytes(), 4 * pool.block_bytes() + (kf == kv_format::q4 ? size_t(3 * 2 * 2 * 16 * 16 * 2) : 0u));
        std::vector<float> k2, v2;
        read_all(t, 0, 0, k2, v2);
        // rows from 32 on were written fresh: the residual blocks 2 and 3 read exactly as before
        EXPECT_TRUE(std::equal(k2.begin() + 32 * 16, k2.end(), k60.begin() + 32 * 16)) << kv_format_name(kf);
        EXPECT_EQ(v2, v60);
        check_accounting(pool);
        t.clear();
        EXPECT_EQ(t.n_tokens(), 0);
        EXPECT_EQ(pool.stats().blocks_in_use, 0);
        EXPECT_EQ(status_of([&] { t.truncate(1); }), TFU_STATUS_INVALID_ARGUMENT);
        EXPECT_EQ(status_of([&] { t.locate(0); }), TFU_STATUS_INVALID_ARGUMENT);
        std::vector<float> row(16, 1.0f);
        EXPECT_EQ(status_of([&] { t.write_v(0, 0, 0, 1, row.data(), 16); }), TFU_STATUS_INVALID_ARGUMENT);
    }
}

// A pass that stops part-way (cancel or error after some layers wrote their rows) is undone with truncate(pos0),
// as the runtime does: layers that had quantized residual blocks get them back (dequantized), the others keep
// their exact f16 rows (their pool data for those blocks was never written).
TEST(kv_table, truncate_after_partial_pass) {
    kv_block_pool pool(small_params(kv_format::q4, kv_format::q8));
    const std::vector<int32_t> tokens = random_tokens(100, k_seed + 8);
    kv_block_table t(pool);
    t.append(40);  // blocks 0 (q4), 1 (full, f16), 2 (partial, f16)
    write_tokens(t, tokens, 0, 40);
    std::vector<std::vector<float>> k_before(3), v_before(3);
    for (int32_t l = 0; l < 3; ++l) read_all(t, l, 1, k_before[size_t(l)], v_before[size_t(l)]);
    t.append(60);
    {  // only layer 0 is written (blocks 1..4 quantized there), then the pass stops
        const kv_pool_params& p = pool.params();
        std::vector<float> k(size_t(60) * size_t(p.head_dim), 0.25f);
        for (size_t i = 0; i < k.size(); ++i) k[i] = float(i % 7) * 0.5f - 1.0f;
        for (int32_t h = 0; h < p.n_head_kv; ++h) {
            t.write_k(0, h, 40, 60, k.data(), p.head_dim);
            t.write_v(0, h, 40, 60, k.data(), p.head_dim);
        }
    }
    t.truncate(40);
    EXPECT_EQ(t.n_final_blocks(), 1);
    for (int32_t l = 0; l < 3; ++l) {
        std::vector<float> k, v;
        read_all(t, l, 1, k, v);
        EXPECT_EQ(v, v_before[size_t(l)]);
        if (l > 0) {
            EXPECT_EQ(k, k_before[size_t(l)]) << "layer " << l;  // never written in the pass: exact
        } else {  // blocks 1, 2 were quantized in the pass: back as their q4 values, within half a q4 step of a
                  // channel's range over the block (channel 3: 16, so 0.53; the others: <= 3 with the pass's
                  // rows in block 2, so 0.1)
            for (size_t i = 0; i < k.size(); ++i)
                ASSERT_NEAR(k[i], k_before[0][i], i % 16 == 3 ? 0.6 : 0.12) << "row " << i / 16;
        }
    }
    // the table goes on as usual: regrow and rewrite every layer; rows from 48 on (block 3 on) read as one-shot
    t.append(60);
    write_tokens(t, tokens, 40, 60);
    kv_block_table one(pool);
    one.append(100);
    write_tokens(one, tokens, 0, 100);
    for (int32_t l = 1; l < 3; ++l) {
        std::vector<float> k1, v1, k2, v2;
        read_all(t, l, 1, k1, v1);
        read_all(one, l, 1, k2, v2);
        EXPECT_EQ(k1, k2) << "layer " << l;
        EXPECT_EQ(v1, v2) << "layer " << l;
    }
    check_accounting(pool);
}

TEST(kv_table, prefix_sharing) {
    kv_block_pool pool(small_params(kv_format::q4, kv_format::q8));
    const int32_t B = 16;
    const std::vector<int32_t> prompt = random_tokens(70, k_seed + 4);
    auto a = std::make_unique<kv_block_table>(pool);
    a->append(70);
    write_tokens(*a, prompt, 0, 70);
    // 4 full blocks, but q4 keys keep the newest full one (block 3) in the f16 residual: its pool data is not
    // final, so only blocks 0..2 are keyed
    a->publish_prefix(prompt.data(), 70);
    EXPECT_EQ(a->n_final_blocks(), 3);

    // Same prompt: 3 blocks adopted (pass n - 1 to keep a token to evaluate).
    kv_block_table b(pool);
    EXPECT_EQ(b.adopt_prefix(prompt.data(), 69), 3 * B);
    EXPECT_EQ(b.n_final_blocks(), 3);
    kv_pool_stats s = pool.stats();
    EXPECT_EQ(s.prefix_hits, 3);
    EXPECT_EQ(s.prefix_misses, 1);  // block 3 was not published
    EXPECT_EQ(s.prefix_bytes_saved, int64_t(3 * pool.block_bytes()));
    for (int32_t i = 0; i < 3; ++i) EXPECT_EQ(b.blocks()[size_t(i)], a->blocks()[size_t(i)]);
    EXPECT_EQ(b.n_shared_blocks(), 3);
    EXPECT_EQ(s.blocks_in_use, 5);
    b.append(22);  // block 3 fills but stays f16 (block 4 is partial), as in a
    write_tokens(b, prompt, 48, 22);
    EXPECT_EQ(b.k_rows(3, 1, 1).layout->format, kv_format::f16);
    std::vector<float> ka, va, kb, vb;
    read_all(*a, 1, 1, ka, va);
    read_all(b, 1, 1, kb, vb);
    EXPECT_EQ(ka, kb);  // identical contents with and without sharing
    EXPECT_EQ(va, vb);

    // A prompt that differs at position 40 (third block): 2 hits, then a miss.
    std::vector<int32_t> other = prompt;
    other[40] += 1;
    kv_block_table c(pool);
    EXPECT_EQ(c.adopt_prefix(other.data(), 70), 2 * B);
    s = pool.stats();
    EXPECT_EQ(s.prefix_hits, 5);
    EXPECT_EQ(s.prefix_misses, 2);
    // A different first token: miss at once.
    std::vector<int32_t> third = prompt;
    third[0] += 1;
    kv_block_table d(pool);
    EXPECT_EQ(d.adopt_prefix(third.data(), 70), 0);
    EXPECT_EQ(pool.stats().prefix_misses, 3);

    // Copy-on-write through the table: c truncates into its shared second block and writes: it gets a copy.
    const int32_t shared = c.blocks()[1];
    const int32_t refs_before = pool.ref_count(shared);
    c.truncate(20);
    c.append(1);
    EXPECT_NE(c.blocks()[1], shared);
    EXPECT_EQ(pool.ref_count(shared), refs_before - 1);
    write_tokens(c, other, 20, 1);
    std::vector<float> ka2, va2;
    read_all(*a, 1, 1, ka2, va2);
    EXPECT_EQ(ka, ka2);  // a's cache untouched
    EXPECT_EQ(va, va2);
    EXPECT_GE(pool.stats().cow_copies, 1);
    // c's dequantized block 1 is quantized again (into its own copy) once block 2 fills; the shared one is intact
    c.append(27);
    write_tokens(c, other, 21, 27);
    EXPECT_EQ(c.n_final_blocks(), 2);
    read_all(*a, 1, 1, ka2, va2);
    EXPECT_EQ(ka, ka2);

    // a grows past block 4: block 3 is quantized and now published; q4 from then on for a later adopter
    a->append(10);
    std::vector<int32_t> longer = prompt;
    longer.resize(80, 7);
    write_tokens(*a, longer, 70, 10);
    a->publish_prefix(longer.data(), 80);
    EXPECT_EQ(a->k_rows(3, 1, 1).layout->format, kv_format::q4);
    read_all(*a, 1, 1, ka, va);

    // a leaves: its keyed blocks stay alive through b (shared) or become cached; a new session still hits.
    a.reset();
    b.clear();
    c.clear();
    s = pool.stats();
    EXPECT_EQ(s.blocks_in_use, 0);
    EXPECT_EQ(s.blocks_cached, 4);
    check_accounting(pool);
    kv_block_table e(pool);
    EXPECT_EQ(e.adopt_prefix(longer.data(), 80), 4 * B);
    s = pool.stats();
    EXPECT_EQ(s.blocks_cached, 0);
    EXPECT_EQ(s.blocks_in_use, 4);
    std::vector<float> ke, ve;
    read_all(e, 1, 1, ke, ve);
    EXPECT_EQ(std::vector<float>(ka.begin(), ka.begin() + 64 * 16), ke);
    EXPECT_EQ(e.k_rows(3, 1, 1).layout->format, kv_format::q4);
    check_accounting(pool);
}

// Cached (unheld, keyed) blocks are reclaimed when the cap leaves no free block; their keys then miss.
TEST(kv_table, cached_blocks_reclaimed_under_cap) {
    kv_pool_params p = small_params(kv_format::f16, kv_format::f16);
    kv_block_pool probe(p);
    p.max_bytes = probe.block_bytes() * 4;
    kv_block_pool pool(p);
    const std::vector<int32_t> prompt = random_tokens(64, k_seed + 5);
    {
        kv_block_table a(pool);
        a.append(64);
        write_tokens(a, prompt, 0, 64);
        a.publish_prefix(prompt.data(), 64);
    }
    EXPECT_EQ(pool.stats().blocks_cached, 4);
    kv_block_table b(pool);
    b.append(40);  // 3 blocks: reclaims 3 cached ones (least recently released first)
    kv_pool_stats s = pool.stats();
    EXPECT_EQ(s.cached_reclaimed, 3);
    EXPECT_EQ(s.blocks_cached, 1);
    check_accounting(pool);
    kv_block_table c(pool);
    EXPECT_LT(c.adopt_prefix(prompt.data(), 64), 64);  // some of the prefix is gone
    EXPECT_EQ(status_of([&] { b.append(64); }), TFU_STATUS_OUT_OF_MEMORY);
    EXPECT_EQ(b.n_tokens(), 40);  // nothing added on failure
    check_accounting(pool);
}

// Many sessions on many threads: allocate, write a per-thread pattern, share prefixes, copy-on-write, free.
// A block handed out twice, or freed while held, shows up as a corrupted pattern (and under ASan/TSan-like runs
// as an error).
TEST(kv_pool, concurrent_sessions) {
    kv_pool_params p = small_params(kv_format::q8, kv_format::q4);
    p.chunk_blocks = 3;
    kv_block_pool pool(p);
    const std::vector<int32_t> shared_prompt = random_tokens(48, k_seed + 6);
    {  // publish a prefix that the threads adopt
        kv_block_table a(pool);
        a.append(48);
        write_tokens(a, shared_prompt, 0, 48);
        a.publish_prefix(shared_prompt.data(), 48);
    }
    std::vector<float> k_ref, v_ref;
    {
        kv_block_table r(pool);
        r.adopt_prefix(shared_prompt.data(), 48);
        read_all(r, 2, 0, k_ref, v_ref);
    }
    const int n_threads = 8, n_iter = 300;
    std::atomic<int> failures{0};
    std::vector<std::thread> th;
    for (int ti = 0; ti < n_threads; ++ti)
        th.emplace_back([&, ti] {
            std::mt19937 rng(k_seed + 100 + uint32_t(ti));
            std::vector<int32_t> mine;
            for (int it = 0; it < n_iter; ++it) {
                const uint32_t op = rng() % 4;
                if (op == 0 || mine.empty()) {
                    int32_t id = pool.allocate();
                    std::memset(pool.data(id), ti + 1, pool.block_bytes());
                    mine.push_back(id);
                } else if (op == 1) {
                    size_t i = rng() % mine.size();
                    for (size_t j = 0; j < pool.block_bytes(); j += 61)
                        if (pool.data(mine[i])[j] != uint8_t(ti + 1)) ++failures;
                    pool.release(mine[i]);
                    mine.erase(mine.begin() + int64_t(i));
                } else if (op == 2) {  // share with ourselves, then write: must copy
                    size_t i = rng() % mine.size();
                    pool.retain(mine[i]);
                    int32_t w = pool.make_writable(mine[i]);
                    if (w == mine[i]) ++failures;
                    for (size_t j = 0; j < pool.block_bytes(); j += 61)
                        if (pool.data(w)[j] != uint8_t(ti + 1)) ++failures;
                    mine.push_back(w);
                } else {  // a session adopting the shared prefix and appending its own tokens
                    kv_block_table t(pool);
                    if (t.adopt_prefix(shared_prompt.data(), 48) != 48) ++failures;
                    std::vector<int32_t> toks = shared_prompt;
                    toks.resize(60, int32_t(ti));
                    t.append(12);
                    write_tokens(t, toks, 48, 12);
                    std::vector<float> k, v;
                    read_all(t, 2, 0, k, v);
                    if (!std::equal(k_ref.begin(), k_ref.end(), k.begin()) ||
                        !std::equal(v_ref.begin(), v_ref.end(), v.begin()))
                        ++failures;
                }
            }
            for (int32_t id : mine) pool.release(id);
        });
    for (auto& t : th) t.join();
    EXPECT_EQ(failures.load(), 0);
    kv_pool_stats s = pool.stats();
    EXPECT_EQ(s.blocks_in_use, 0);
    EXPECT_EQ(s.refs, 0);
    EXPECT_EQ(s.blocks_cached, 3);  // the published prefix, unheld
    EXPECT_GT(s.prefix_hits, 3);
    check_accounting(pool);
    std::printf("threads %d: %d chunks, %d blocks, %lld cow copies, %lld prefix hits\n", n_threads, s.chunks,
                s.blocks_total, (long long)s.cow_copies, (long long)s.prefix_hits);
}

}  // namespace
