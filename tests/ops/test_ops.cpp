// Every op of backend/ops.def on every backend create_backend can make here, against cpu-ref: random inputs
// from a printed seed (TFU_TEST_SEED), several shapes per op, every weight dtype (MUL_MAT, GET_ROWS) and cache
// dtype (KV_STORE, ATTENTION), guard bytes around outputs, sources checked unmodified, error bounds per op and
// dtype from the table below. An op or backend that is not available is a GTEST_SKIP with its reason.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <sstream>

#include "backend/kv_block_map.h"
#include "kv/block_table.h"
#include "ops/op_test_util.h"

namespace tfu::test {
namespace {

// ---- error bounds ----------------------------------------------------------------------------------------
// rel_l2 bounds ||out - ref||_2 / ||ref||_2; max_rms bounds max_i |out_i - ref_i| / rms(ref).
struct error_bound {
    op_type op;
    std::vector<dtype> types;  // the weight or cache dtype it applies to; empty = every dtype
    double rel_l2;
    double max_rms;
    const char* why;
};

const std::vector<error_bound>& bound_table() {
    static const std::vector<error_bound> table = {
        {op_type::GET_ROWS, {}, 1e-6, 1e-6, "dequantization is exact float arithmetic"},
        {op_type::RMS_NORM, {}, 1e-5, 1e-4, "f32 sum of squares vs the ref's double"},
        {op_type::MUL_MAT, {dtype::F32}, 1e-5, 1e-4, "f32 accumulation vs double"},
        {op_type::MUL_MAT, {dtype::F16}, 2e-3, 1e-2, "activations rounded to f16 (2^-11 relative)"},
        {op_type::MUL_MAT, {dtype::BF16}, 1.5e-2, 8e-2, "activations rounded to bf16 (2^-8 relative)"},
        {op_type::MUL_MAT,
         {dtype::Q4_0, dtype::Q4_1, dtype::Q5_0, dtype::Q5_1, dtype::Q8_0},
         2e-2, 1e-1,
         "activations quantized to q8_0: |err| <= max|x|/254 per block of 32 (~0.5% rms for normal data)"},
        {op_type::MUL_MAT,
         {dtype::Q2_K, dtype::Q3_K, dtype::Q4_K, dtype::Q5_K, dtype::Q6_K},
         2.5e-2, 1.2e-1,
         "activations quantized to q8_K: |err| <= max|x|/254 per block of 256 (~0.65% rms)"},
        {op_type::ADD, {}, 1e-6, 1e-6, "one f32 add per element"},
        {op_type::MUL, {}, 1e-6, 1e-6, "one f32 multiply per element"},
        {op_type::ROPE, {}, 1e-5, 1e-5, "f32 rotation with the same double-precision angles"},
        {op_type::SWIGLU, {}, 1e-5, 1e-5, "f32 exp vs double"},
        {op_type::KV_STORE, {}, 1e-6, 1e-6, "same round-to-nearest-even conversion"},
        {op_type::ATTENTION, {}, 1e-5, 1e-4, "f32 online softmax vs double two-pass softmax"},
        {op_type::ATTENTION_PAGED, {}, 1e-5, 1e-4,
         "same decoded K/V values (readers vs kv_read_row); f32 online softmax vs double"},
        {op_type::ARGMAX, {}, 0, 0, "an index: exactly the reference's (compared as integers)"},
        {op_type::KV_STORE_BLOCKS, {}, 0, 0, "kv_write_row's bytes exactly (compared as bytes)"},
        {op_type::ATTENTION_BLOCKS, {}, 1e-5, 1e-4,
         "same decoded K/V values (readers vs kv_read_row); f32 online softmax vs double"},
    };
    return table;
}

const error_bound* find_bound(op_type op, dtype t) {
    for (const error_bound& b : bound_table())
        if (b.op == op && (b.types.empty() || std::find(b.types.begin(), b.types.end(), t) != b.types.end()))
            return &b;
    return nullptr;
}

// ---- cases -----------------------------------------------------------------------------------------------
struct op_case {
    std::string desc;
    dtype bound_type = dtype::F32;  // selects the error bound
    op o;
    std::vector<std::unique_ptr<owned_tensor>> inputs;
    std::unique_ptr<owned_tensor> dst;  // the initial dst contents (copied for each run)
    std::shared_ptr<void> ext_owner;    // keeps what op.ext points to alive (ATTENTION_PAGED: pool, table, view)
    // The *_BLOCKS ops: ext is a kv_block_map whose block addresses each run makes for its own copy of the cache
    // (KV_STORE_BLOCKS: the cache is dst's bytes, compared bit for bit; ATTENTION_BLOCKS: `cache` below).
    struct block_cache* blocks = nullptr;
};

// A paged cache of n_blocks pool blocks of two layers, the op's map addressing layer 1 (so that the offsets
// matter); table block b is pool block order[b] (shuffled, so that the block array matters).
struct block_cache {
    kv_block_map map;           // blocks: set per run
    std::vector<int32_t> order;
    size_t block_bytes = 0;
    std::vector<uint8_t> cache; // ATTENTION_BLOCKS: the cache's bytes (KV_STORE_BLOCKS: dst holds them)
    // The map with block b at base + order[b] * block_bytes, its address array in `addr`.
    kv_block_map at(const uint8_t* base, std::vector<uint64_t>& addr) const {
        addr.resize(order.size());
        for (size_t b = 0; b < order.size(); ++b)
            addr[b] = uint64_t(reinterpret_cast<uintptr_t>(base + size_t(order[b]) * block_bytes));
        kv_block_map m = map;
        m.blocks = addr.data();
        return m;
    }
};

struct case_builder {
    std::mt19937_64& rng;
    std::vector<op_case> cases;

    op_case& add(op_type type, std::string desc, dtype bound_type = dtype::F32) {
        cases.emplace_back();
        op_case& c = cases.back();
        c.o.type = type;
        c.desc = std::move(desc);
        c.bound_type = bound_type;
        return c;
    }
    tensor* input(op_case& c, int slot, dtype type, int64_t ne0, int64_t ne1 = 1, int64_t ne2 = 1,
                  float stddev = 1.0f) {
        c.inputs.push_back(std::make_unique<owned_tensor>(type, ne0, ne1, ne2, "src" + std::to_string(slot)));
        tensor* t = &c.inputs.back()->t;
        if (type != dtype::I32) fill_random(rng, *t, stddev);
        c.o.src[slot] = t;
        return t;
    }
    tensor* ids(op_case& c, int slot, int64_t n, int32_t lo, int32_t hi) {
        tensor* t = input(c, slot, dtype::I32, n);
        std::uniform_int_distribution<int32_t> d(lo, hi);
        for (int64_t i = 0; i < n; ++i) t->ptr<int32_t>()[i] = d(rng);
        return t;
    }
    // dst starts as NaN bytes (0xff) so that an output a backend forgets to write is caught.
    void output(op_case& c, dtype type, int64_t ne0, int64_t ne1 = 1, int64_t ne2 = 1) {
        c.dst = std::make_unique<owned_tensor>(type, ne0, ne1, ne2, "dst");
        std::memset(c.dst->t.data, 0xff, c.dst->t.nbytes());
    }
};

std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* f, ...) {
    char buf[256];
    va_list ap;
    va_start(ap, f);
    std::vsnprintf(buf, sizeof buf, f, ap);
    va_end(ap);
    return buf;
}

void cases_get_rows(case_builder& b) {
    struct shape { int64_t n_embd, n_vocab, n; };
    for (dtype t : weight_dtypes())
        for (shape s : {shape{256, 50, 1}, shape{512, 97, 7}, shape{256, 64, 64}}) {
            op_case& c = b.add(op_type::GET_ROWS, fmt("%s n_embd=%lld vocab=%lld n=%lld", dtype_name(t),
                                                      (long long)s.n_embd, (long long)s.n_vocab, (long long)s.n), t);
            b.input(c, 0, t, s.n_embd, s.n_vocab);
            b.ids(c, 1, s.n, 0, int32_t(s.n_vocab - 1));
            b.output(c, dtype::F32, s.n_embd, s.n);
        }
}

void cases_rms_norm(case_builder& b) {
    struct shape { int64_t k, rows; float eps; };
    for (shape s : {shape{8, 1, 1e-5f}, shape{64, 7, 1e-6f}, shape{4096, 3, 1e-5f}, shape{100, 64, 1e-6f}}) {
        op_case& c = b.add(op_type::RMS_NORM, fmt("k=%lld rows=%lld", (long long)s.k, (long long)s.rows));
        b.input(c, 0, dtype::F32, s.k, s.rows);
        b.input(c, 1, dtype::F32, s.k);
        c.o.f[0] = s.eps;
        b.output(c, dtype::F32, s.k, s.rows);
    }
}

void cases_mul_mat(case_builder& b) {
    struct shape { int64_t k, m, n; };
    for (dtype t : weight_dtypes())
        for (shape s : {shape{256, 64, 1}, shape{512, 37, 7}, shape{256, 100, 64}, shape{2048, 19, 7}}) {
            op_case& c = b.add(op_type::MUL_MAT, fmt("%s k=%lld m=%lld n=%lld", dtype_name(t), (long long)s.k,
                                                     (long long)s.m, (long long)s.n), t);
            b.input(c, 0, t, s.k, s.m, 1, 0.05f);
            b.input(c, 1, dtype::F32, s.k, s.n);
            b.output(c, dtype::F32, s.m, s.n);
        }
}

void cases_binary(case_builder& b, op_type type) {
    struct shape { int64_t k, rows; bool bcast; };
    for (shape s : {shape{4096, 1, false}, shape{33, 7, true}, shape{64, 64, false}, shape{7, 5, true}}) {
        op_case& c = b.add(type, fmt("k=%lld rows=%lld%s", (long long)s.k, (long long)s.rows, s.bcast ? " broadcast" : ""));
        b.input(c, 0, dtype::F32, s.k, s.rows);
        b.input(c, 1, dtype::F32, s.k, s.bcast ? 1 : s.rows);
        b.output(c, dtype::F32, s.k, s.rows);
    }
}

void cases_rope(case_builder& b) {
    struct shape { int64_t hd, n_head, n; int n_rot; float base, scale; int pos_max; };
    const shape shapes[] = {
        {8, 4, 7, 8, 10000.0f, 1.0f, 50},          {64, 8, 1, 64, 10000.0f, 1.0f, 5000},
        {128, 32, 7, 128, 500000.0f, 1.0f, 9000},  {64, 8, 64, 32, 10000.0f, 0.25f, 300},
        {80, 4, 3, 40, 10000.0f, 1.0f, 100},
    };
    for (const shape& s : shapes)
        for (int mode : {0, 2})
            for (bool factors : {false, true}) {
                op_case& c = b.add(op_type::ROPE, fmt("hd=%lld n_head=%lld n=%lld n_rot=%d mode=%d%s", (long long)s.hd,
                                                      (long long)s.n_head, (long long)s.n, s.n_rot, mode,
                                                      factors ? " freq_factors" : ""));
                b.input(c, 0, dtype::F32, s.hd, s.n_head, s.n);
                b.ids(c, 1, s.n, 0, s.pos_max);
                if (factors) {
                    tensor* f = b.input(c, 2, dtype::F32, s.n_rot / 2);
                    std::uniform_real_distribution<float> d(1.0f, 8.0f);
                    for (int j = 0; j < s.n_rot / 2; ++j) f->ptr<float>()[j] = d(b.rng);
                }
                c.o.i[0] = s.n_rot;
                c.o.i[1] = mode;
                c.o.f[0] = s.base;
                c.o.f[1] = s.scale;
                b.output(c, dtype::F32, s.hd, s.n_head, s.n);
            }
}

void cases_swiglu(case_builder& b) {
    struct shape { int64_t k, rows; };
    for (shape s : {shape{1024, 7}, shape{5, 3}, shape{64, 64}, shape{11, 1}}) {
        op_case& c = b.add(op_type::SWIGLU, fmt("k=%lld rows=%lld", (long long)s.k, (long long)s.rows));
        b.input(c, 0, dtype::F32, s.k, s.rows, 1, 3.0f);
        b.input(c, 1, dtype::F32, s.k, s.rows);
        b.output(c, dtype::F32, s.k, s.rows);
    }
}

const dtype k_cache_types[] = {dtype::F32, dtype::F16, dtype::BF16};

void cases_kv_store(case_builder& b) {
    struct shape { int64_t row, n, n_ctx, pos; };
    for (dtype t : k_cache_types)
        for (shape s : {shape{32, 1, 16, 5}, shape{512, 7, 64, 40}, shape{1024, 64, 128, 0}, shape{8, 3, 3, 0}}) {
            op_case& c = b.add(op_type::KV_STORE, fmt("%s row=%lld n=%lld n_ctx=%lld at %lld", dtype_name(t),
                                                      (long long)s.row, (long long)s.n, (long long)s.n_ctx,
                                                      (long long)s.pos), t);
            b.input(c, 0, dtype::F32, s.row, s.n);
            c.o.i[0] = int32_t(s.pos);
            b.output(c, t, s.row, s.n_ctx);
            fill_random(b.rng, c.dst->t);  // the rows outside the store must survive unchanged
        }
}

void cases_attention(case_builder& b) {
    struct shape { int64_t hd, n_head, n_head_kv, n, n_past, n_ctx; };
    const shape shapes[] = {
        {8, 8, 4, 1, 0, 16},   {8, 8, 4, 7, 5, 16},    {64, 8, 4, 7, 40, 64},  {128, 32, 8, 1, 100, 128},
        {64, 32, 8, 64, 30, 128}, {128, 8, 8, 7, 0, 16}, {64, 8, 1, 3, 20, 32},  {24, 6, 2, 5, 9, 20},
        // prefill-sized (>= 16 queries: CUDA's tiled kernel), partial tiles, several 32-row chunks, head size
        // 256 (not tiled)
        {8, 8, 4, 20, 0, 32},     {128, 8, 2, 37, 5, 64},  {80, 6, 3, 33, 70, 128}, {256, 4, 2, 16, 3, 24},
    };
    struct types { dtype k, v; };
    for (types tt : {types{dtype::F32, dtype::F32}, types{dtype::F16, dtype::F16}, types{dtype::BF16, dtype::BF16},
                     types{dtype::F16, dtype::BF16}})
        for (const shape& s : shapes) {
            op_case& c = b.add(op_type::ATTENTION,
                               fmt("K %s V %s hd=%lld n_head=%lld/%lld n=%lld n_past=%lld n_ctx=%lld", dtype_name(tt.k),
                                   dtype_name(tt.v), (long long)s.hd, (long long)s.n_head, (long long)s.n_head_kv,
                                   (long long)s.n, (long long)s.n_past, (long long)s.n_ctx),
                               tt.k);
            b.input(c, 0, dtype::F32, s.hd, s.n_head, s.n);
            tensor* k = b.input(c, 1, tt.k, s.hd * s.n_head_kv, s.n_ctx);
            tensor* v = b.input(c, 2, tt.v, s.hd * s.n_head_kv, s.n_ctx);
            // Rows past the last query's position must never be read: NaN there would poison the output.
            std::vector<float> nan_row(size_t(s.hd * s.n_head_kv), std::nanf(""));
            for (int64_t r = s.n_past + s.n; r < s.n_ctx; ++r) {
                quantize_row(tt.k, nan_row.data(), k->row(r), k->ne[0]);
                quantize_row(tt.v, nan_row.data(), v->row(r), v->ne[0]);
            }
            c.o.i[0] = int32_t(s.n_past);
            c.o.i[1] = int32_t(s.n_head_kv);
            c.o.f[0] = float(1.0 / std::sqrt(double(s.hd)));
            b.output(c, dtype::F32, s.hd, s.n_head, s.n);
        }
}

// The paged cache of one layer filled with random rows for positions 0 .. n_pos - 1, and its view.
struct paged_fixture {
    std::unique_ptr<kv_block_pool> pool;
    std::unique_ptr<kv_block_table> table;
    std::vector<kv_rows> k, v;
    paged_kv_view view;
};

void cases_attention_paged(case_builder& b) {
    struct shape { int32_t hd, n_head, n_head_kv, n, n_past, block; };
    const shape shapes[] = {{8, 8, 4, 1, 0, 16},    {8, 8, 4, 7, 40, 16},  {64, 8, 4, 7, 40, 32},
                            {128, 32, 8, 1, 100, 32}, {80, 8, 2, 5, 33, 16}, {64, 8, 1, 64, 30, 32},
                            {80, 8, 2, 33, 10, 16},   {8, 8, 4, 40, 0, 16}};
    for (kv_format kf : {kv_format::f16, kv_format::bf16, kv_format::q8, kv_format::q4})
        for (kv_format vf : {kv_format::f16, kv_format::q8, kv_format::q4})
            for (const shape& s : shapes) {
                op_case& c = b.add(op_type::ATTENTION_PAGED,
                                   fmt("K %s V %s hd=%d n_head=%d/%d n=%d n_past=%d B=%d", kv_format_name(kf),
                                       kv_format_name(vf), s.hd, s.n_head, s.n_head_kv, s.n, s.n_past, s.block));
                auto fx = std::make_shared<paged_fixture>();
                kv_pool_params pp;
                pp.n_layer = 1;
                pp.n_head_kv = s.n_head_kv;
                pp.head_dim = s.hd;
                pp.block_tokens = s.block;
                pp.k_format = kf;
                pp.v_format = vf;
                fx->pool = std::make_unique<kv_block_pool>(pp);
                fx->table = std::make_unique<kv_block_table>(*fx->pool);
                const int32_t n_pos = s.n_past + s.n;
                fx->table->append(n_pos);
                std::normal_distribution<float> nd(0.0f, 1.0f);
                std::vector<float> rows(size_t(n_pos) * size_t(s.hd));
                for (int32_t h = 0; h < s.n_head_kv; ++h) {
                    for (float& x : rows) x = nd(b.rng);
                    fx->table->write_k(0, h, 0, n_pos, rows.data(), s.hd);
                    for (float& x : rows) x = nd(b.rng);
                    fx->table->write_v(0, h, 0, n_pos, rows.data(), s.hd);
                }
                for (int32_t blk = 0; blk < fx->table->n_blocks(); ++blk)
                    for (int32_t h = 0; h < s.n_head_kv; ++h) {
                        fx->k.push_back(fx->table->k_rows(blk, 0, h));
                        fx->v.push_back(fx->table->v_rows(blk, 0, h));
                    }
                fx->view.n_blocks = fx->table->n_blocks();
                fx->view.n_head_kv = s.n_head_kv;
                fx->view.block_tokens = s.block;
                fx->view.k = fx->k.data();
                fx->view.v = fx->v.data();
                b.input(c, 0, dtype::F32, s.hd, s.n_head, s.n);
                c.o.ext = &fx->view;
                c.ext_owner = fx;
                c.o.i[0] = s.n_past;
                c.o.i[1] = s.n_head_kv;
                c.o.f[0] = float(1.0 / std::sqrt(double(s.hd)));
                b.output(c, dtype::F32, s.hd, s.n_head, s.n);
            }
}

// A block_cache for (K format, V format, hd, n_head_kv, B) covering n_pos positions.
std::shared_ptr<block_cache> make_block_cache(std::mt19937_64& rng, kv_format kf, kv_format vf, int32_t hd,
                                              int32_t n_head_kv, int32_t B, int32_t n_pos) {
    auto bc = std::make_shared<block_cache>();
    kv_block_map& m = bc->map;
    m.k = kv_layout_make(kf, kv_part::k, B, hd);
    m.v = kv_layout_make(vf, kv_part::v, B, hd);
    m.n_head_kv = n_head_kv;
    m.n_blocks = (n_pos + B - 1) / B + 1;  // one spare block past the positions
    const size_t layer_bytes = size_t(n_head_kv) * (m.k.bytes + m.v.bytes);
    m.k_offset = layer_bytes;  // layer 1
    m.v_offset = layer_bytes + size_t(n_head_kv) * m.k.bytes;
    bc->block_bytes = (2 * layer_bytes + 63) / 64 * 64;
    bc->order.resize(size_t(m.n_blocks));
    for (int32_t b = 0; b < m.n_blocks; ++b) bc->order[size_t(b)] = b;
    std::shuffle(bc->order.begin(), bc->order.end(), rng);
    return bc;
}

void cases_kv_store_blocks(case_builder& b) {
    struct shape { int32_t hd, n_head_kv, n, first, block; };
    const shape shapes[] = {{8, 4, 1, 0, 16},  {64, 8, 1, 37, 32}, {64, 2, 7, 30, 32},
                            {80, 2, 40, 10, 16}, {128, 8, 5, 63, 32}, {96, 1, 33, 0, 16}};
    for (kv_format kf : {kv_format::f16, kv_format::bf16, kv_format::q8})
        for (kv_format vf : {kv_format::f16, kv_format::bf16, kv_format::q8, kv_format::q4})
            for (const shape& s : shapes) {
                op_case& c = b.add(op_type::KV_STORE_BLOCKS,
                                   fmt("K %s V %s hd=%d n_head_kv=%d n=%d first=%d B=%d", kv_format_name(kf),
                                       kv_format_name(vf), s.hd, s.n_head_kv, s.n, s.first, s.block));
                auto bc = make_block_cache(b.rng, kf, vf, s.hd, s.n_head_kv, s.block, s.first + s.n);
                tensor* k = b.input(c, 0, dtype::F32, int64_t(s.hd) * s.n_head_kv, s.n, 1, 2.0f);
                b.input(c, 1, dtype::F32, int64_t(s.hd) * s.n_head_kv, s.n, 1, 2.0f);
                // An outlier channel per row (the q8 scale and a q4 group's range follow it).
                for (int64_t j = 0; j < s.n; ++j) static_cast<float*>(k->row(j))[(j * 7) % k->ne[0]] = 40.0f;
                // dst: the cache's bytes (as i32 words), random so that untouched bytes must stay as they were.
                b.output(c, dtype::I32, int64_t(size_t(bc->map.n_blocks) * bc->block_bytes / 4));
                std::uniform_int_distribution<int32_t> word(INT32_MIN, INT32_MAX);
                for (int64_t i = 0; i < c.dst->t.ne[0]; ++i) c.dst->t.ptr<int32_t>()[i] = word(b.rng);
                c.o.i[0] = s.first;
                c.blocks = bc.get();
                c.ext_owner = bc;
            }
}

void cases_attention_blocks(case_builder& b) {
    struct shape { int32_t hd, n_head, n_head_kv, n, n_past, block; };
    const shape shapes[] = {{8, 8, 4, 1, 0, 16},     {64, 8, 4, 7, 40, 32},  {64, 32, 8, 1, 300, 32},
                            {128, 32, 8, 1, 100, 32}, {80, 8, 2, 5, 33, 16},  {64, 8, 1, 64, 30, 32},
                            {64, 32, 8, 1, 4000, 32}};
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (kv_format kf : {kv_format::f16, kv_format::bf16, kv_format::q8})
        for (kv_format vf : {kv_format::f16, kv_format::q8, kv_format::q4})
            for (const shape& s : shapes) {
                op_case& c = b.add(op_type::ATTENTION_BLOCKS,
                                   fmt("K %s V %s hd=%d n_head=%d/%d n=%d n_past=%d B=%d", kv_format_name(kf),
                                       kv_format_name(vf), s.hd, s.n_head, s.n_head_kv, s.n, s.n_past, s.block));
                const int32_t n_pos = s.n_past + s.n;
                auto bc = make_block_cache(b.rng, kf, vf, s.hd, s.n_head_kv, s.block, n_pos);
                const kv_block_map& m = bc->map;
                bc->cache.assign(size_t(m.n_blocks) * bc->block_bytes, 0xff);  // unwritten rows read as NaN
                std::vector<uint64_t> addr;
                const kv_block_map host = bc->at(bc->cache.data(), addr);
                std::vector<float> row(size_t(s.hd));
                for (int32_t pos = 0; pos < n_pos; ++pos)
                    for (int32_t h = 0; h < s.n_head_kv; ++h) {
                        uint8_t* blk = reinterpret_cast<uint8_t*>(uintptr_t(host.blocks[pos / s.block]));
                        for (float& x : row) x = nd(b.rng);
                        kv_write_row(m.k, blk + m.k_offset + size_t(h) * m.k.bytes, pos % s.block, row.data());
                        for (float& x : row) x = nd(b.rng);
                        kv_write_row(m.v, blk + m.v_offset + size_t(h) * m.v.bytes, pos % s.block, row.data());
                    }
                b.input(c, 0, dtype::F32, s.hd, s.n_head, s.n);
                c.o.i[0] = s.n_past;
                c.o.i[1] = s.n_head_kv;
                c.o.f[0] = float(1.0 / std::sqrt(double(s.hd)));
                b.output(c, dtype::F32, s.hd, s.n_head, s.n);
                c.blocks = bc.get();
                c.ext_owner = bc;
            }
}

// Columns of random values with the sampler's special cases planted by column (j % 7): ties of the maximum (the
// lowest index wins), +inf next to FLT_MAX (equal under the sampler's rules), NaN and -inf only (-1), NaN and -inf
// around an ordinary maximum, -0 and +0 as the maximum (equal), two positive denormals (the larger wins), all
// values equal (index 0). Long columns (8193, 300000 and the vocabularies) take Vulkan's two-pass launch, whose
// cap of 256 workgroups per column the 300000 one reaches.
void cases_argmax(case_builder& b) {
    struct shape { int64_t k, n; };
    for (shape s : {shape{1, 1}, shape{1, 7}, shape{31, 7}, shape{32000, 7}, shape{128256, 1}, shape{128256, 9},
                    shape{1000, 70}, shape{8193, 3}, shape{300000, 2}}) {
        op_case& c = b.add(op_type::ARGMAX, fmt("k=%lld n=%lld", (long long)s.k, (long long)s.n));
        tensor* x = b.input(c, 0, dtype::F32, s.k, s.n, 1, 4.0f);
        std::uniform_int_distribution<int64_t> at(0, s.k - 1);
        for (int64_t j = 0; j < s.n; ++j) {
            float* col = static_cast<float*>(x->row(j));
            const int64_t i0 = at(b.rng), i1 = at(b.rng), i2 = at(b.rng);
            const int64_t lo = std::min(i0, i1), hi = std::max(i0, i1);
            switch (j % 7) {
                case 0:  // the maximum twice
                    col[hi] = col[lo] = 100.0f;
                    break;
                case 1:  // NaN, +inf twice, FLT_MAX once: the first of the three
                    for (int64_t i = 0; i < s.k; i += 5) col[i] = std::nanf("");
                    col[i1] = FLT_MAX;
                    col[i0] = INFINITY;
                    col[i2] = INFINITY;
                    break;
                case 2:  // nothing usable: -1
                    for (int64_t i = 0; i < s.k; ++i) col[i] = (i % 3 == 0) ? std::nanf("") : -INFINITY;
                    break;
                case 3:  // NaN (also negative NaN) and -inf around an ordinary maximum
                    for (int64_t i = 0; i < s.k; i += 3) col[i] = std::nanf("");
                    for (int64_t i = 1; i < s.k; i += 7) col[i] = -std::nanf("");
                    for (int64_t i = 2; i < s.k; i += 11) col[i] = -INFINITY;
                    col[i2] = 50.0f;
                    break;
                case 4:  // -0 and +0 tie as the maximum
                    for (int64_t i = 0; i < s.k; ++i) col[i] = -std::fabs(col[i]) - 1.0f;
                    col[hi] = 0.0f;
                    col[lo] = -0.0f;
                    break;
                case 5:  // two positive denormals above negative values
                    for (int64_t i = 0; i < s.k; ++i) col[i] = -std::fabs(col[i]) - 1.0f;
                    col[i0] = 1e-44f;
                    col[i1] = 3e-44f;
                    break;
                case 6:  // all equal (-FLT_MAX): index 0
                    for (int64_t i = 0; i < s.k; ++i) col[i] = -FLT_MAX;
                    break;
            }
        }
        b.output(c, dtype::I32, s.n);
        std::memset(c.dst->t.data, 0x5a, c.dst->t.nbytes());  // not 0xff: an unwritten index would read as -1
    }
    // The one maximum of each column at either side of a multiple of 256 (the ends and starts of the workgroups'
    // chunks in Vulkan's two-pass launch, whatever multiple of 256 a chunk is): columns 2q and 2q + 1 hold it at
    // 256 (q + 1) - 1 and 256 (q + 1).
    const int64_t k = 20000, n = 2 * (k / 256 - 1);
    op_case& c = b.add(op_type::ARGMAX, fmt("k=%lld n=%lld, maxima at chunk edges", (long long)k, (long long)n));
    tensor* x = b.input(c, 0, dtype::F32, k, n, 1, 4.0f);
    for (int64_t j = 0; j < n; ++j) static_cast<float*>(x->row(j))[256 * (j / 2 + 1) - 1 + j % 2] = 1000.0f;
    b.output(c, dtype::I32, n);
    std::memset(c.dst->t.data, 0x5a, c.dst->t.nbytes());
}

// One builder per op; the switch has no default, so a new op in ops.def without cases does not compile
// (-Wswitch is an error), and a builder that yields nothing fails the test.
std::vector<op_case> make_cases(op_type type, std::mt19937_64& rng) {
    case_builder b{rng, {}};
    switch (type) {
        case op_type::GET_ROWS: cases_get_rows(b); break;
        case op_type::RMS_NORM: cases_rms_norm(b); break;
        case op_type::MUL_MAT: cases_mul_mat(b); break;
        case op_type::ADD: cases_binary(b, op_type::ADD); break;
        case op_type::MUL: cases_binary(b, op_type::MUL); break;
        case op_type::ROPE: cases_rope(b); break;
        case op_type::SWIGLU: cases_swiglu(b); break;
        case op_type::KV_STORE: cases_kv_store(b); break;
        case op_type::ATTENTION: cases_attention(b); break;
        case op_type::ATTENTION_PAGED: cases_attention_paged(b); break;
        case op_type::ARGMAX: cases_argmax(b); break;
        case op_type::KV_STORE_BLOCKS: cases_kv_store_blocks(b); break;
        case op_type::ATTENTION_BLOCKS: cases_attention_blocks(b); break;
        case op_type::COUNT: break;
    }
    return std::move(b.cases);
}

// ---- running and comparing -------------------------------------------------------------------------------
// Runs c on a host-memory backend with a fresh copy of the initial dst; checks the guards and that sources were
// not written.
std::unique_ptr<owned_tensor> run_case_host(backend& be, const op_case& c) {
    auto dst = std::make_unique<owned_tensor>(c.dst->t.type, c.dst->t.ne[0], c.dst->t.ne[1], c.dst->t.ne[2], "dst");
    std::memcpy(dst->t.data, c.dst->t.data, c.dst->t.nbytes());
    std::vector<std::vector<uint8_t>> before;
    for (const auto& in : c.inputs) before.push_back(in->bytes());
    op o = c.o;
    o.dst = &dst->t;
    std::vector<uint64_t> addr;
    kv_block_map map;
    if (c.blocks) {  // the map of this run's copy of the cache
        const bool store = o.type == op_type::KV_STORE_BLOCKS;
        map = c.blocks->at(store ? static_cast<const uint8_t*>(dst->t.data) : c.blocks->cache.data(), addr);
        o.ext = &map;
        if (store) o.dst = nullptr;
    }
    be.run(&o, 1);
    EXPECT_TRUE(dst->buf->guards_intact()) << be.name() << " wrote outside dst: " << c.desc;
    for (size_t i = 0; i < c.inputs.size(); ++i) {
        EXPECT_TRUE(c.inputs[i]->buf->guards_intact()) << be.name() << " wrote around a source: " << c.desc;
        EXPECT_TRUE(before[i] == c.inputs[i]->bytes()) << be.name() << " modified source " << i << ": " << c.desc;
    }
    return dst;
}

// Backend memory holding a copy of host bytes between two canary regions (guard bytes on the device too).
class device_copy {
public:
    device_copy(backend& be, const void* host, size_t n) : be_(be), n_(n) {
        mem_ = static_cast<uint8_t*>(be.alloc(n + 2 * guarded_buffer::k_guard, "op test"));
        std::vector<uint8_t> img(n + 2 * guarded_buffer::k_guard, guarded_buffer::k_canary);
        std::memcpy(img.data() + guarded_buffer::k_guard, host, n);
        be.upload(mem_, img.data(), img.size());
    }
    ~device_copy() { be_.free(mem_); }
    device_copy(const device_copy&) = delete;
    device_copy& operator=(const device_copy&) = delete;
    void* data() const { return mem_ + guarded_buffer::k_guard; }
    // The payload back on the host; *guards_ok says whether the canaries survived.
    std::vector<uint8_t> read(bool* guards_ok) const {
        std::vector<uint8_t> img(n_ + 2 * guarded_buffer::k_guard);
        be_.download(img.data(), mem_, img.size());
        *guards_ok = true;
        for (size_t i = 0; i < guarded_buffer::k_guard; ++i)
            if (img[i] != guarded_buffer::k_canary || img[guarded_buffer::k_guard + n_ + i] != guarded_buffer::k_canary)
                *guards_ok = false;
        return std::vector<uint8_t>(img.begin() + guarded_buffer::k_guard, img.end() - guarded_buffer::k_guard);
    }

private:
    backend& be_;
    size_t n_;
    uint8_t* mem_;
};

// Runs c on a device backend: every tensor (and every paged-cache head block) is copied into backend memory
// through alloc/upload, the op runs there, and dst and the sources come back through download.
std::unique_ptr<owned_tensor> run_case_device(backend& be, const op_case& c) {
    std::vector<std::unique_ptr<device_copy>> mem;
    op o = c.o;
    std::vector<tensor> srcs(3);
    std::vector<size_t> src_input(3, SIZE_MAX);
    for (int i = 0; i < 3; ++i) {
        if (!o.src[i]) continue;
        srcs[size_t(i)] = *o.src[i];
        mem.push_back(std::make_unique<device_copy>(be, o.src[i]->data, o.src[i]->nbytes()));
        srcs[size_t(i)].data = mem.back()->data();
        src_input[size_t(i)] = mem.size() - 1;
        o.src[i] = &srcs[size_t(i)];
    }
    // The paged view's descriptors stay on the host; the head blocks they point at move to the device.
    paged_kv_view view;
    std::vector<kv_rows> k_rows, v_rows;
    if (o.type == op_type::ATTENTION_PAGED && o.ext) {
        view = *static_cast<const paged_kv_view*>(o.ext);
        const size_t n = size_t(view.n_blocks) * size_t(view.n_head_kv);
        for (auto [from, to] : {std::pair{view.k, &k_rows}, std::pair{view.v, &v_rows}}) {
            to->assign(from, from + n);
            for (kv_rows& r : *to) {
                mem.push_back(std::make_unique<device_copy>(be, r.data, r.layout->bytes));
                r.data = static_cast<const uint8_t*>(mem.back()->data());
            }
        }
        view.k = k_rows.data();
        view.v = v_rows.data();
        o.ext = &view;
    }
    device_copy dst_mem(be, c.dst->t.data, c.dst->t.nbytes());
    tensor dst_t = c.dst->t;
    dst_t.data = dst_mem.data();
    o.dst = &dst_t;
    // A block map: the cache (dst for KV_STORE_BLOCKS) and the block address array in backend memory.
    kv_block_map map;
    if (c.blocks) {
        const bool store = o.type == op_type::KV_STORE_BLOCKS;
        const uint8_t* base = static_cast<const uint8_t*>(dst_mem.data());
        if (!store) {
            mem.push_back(std::make_unique<device_copy>(be, c.blocks->cache.data(), c.blocks->cache.size()));
            base = static_cast<const uint8_t*>(mem.back()->data());
        }
        std::vector<uint64_t> addr;
        map = c.blocks->at(base, addr);
        mem.push_back(std::make_unique<device_copy>(be, addr.data(), addr.size() * sizeof(uint64_t)));
        map.blocks = static_cast<const uint64_t*>(mem.back()->data());
        o.ext = &map;
        if (store) o.dst = nullptr;
    }
    be.run(&o, 1);
    be.sync();

    auto dst = std::make_unique<owned_tensor>(c.dst->t.type, c.dst->t.ne[0], c.dst->t.ne[1], c.dst->t.ne[2], "dst");
    bool ok = true;
    std::vector<uint8_t> out = dst_mem.read(&ok);
    std::memcpy(dst->t.data, out.data(), out.size());
    EXPECT_TRUE(ok) << be.name() << " wrote outside dst: " << c.desc;
    for (int i = 0; i < 3; ++i) {
        if (src_input[size_t(i)] == SIZE_MAX) continue;
        const std::vector<uint8_t> after = mem[src_input[size_t(i)]]->read(&ok);
        EXPECT_TRUE(ok) << be.name() << " wrote around source " << i << ": " << c.desc;
        const uint8_t* host = static_cast<const uint8_t*>(c.o.src[i]->data);
        EXPECT_TRUE(std::equal(after.begin(), after.end(), host)) << be.name() << " modified source " << i << ": "
                                                                  << c.desc;
    }
    return dst;
}

std::unique_ptr<owned_tensor> run_case(backend& be, const op_case& c) {
    return be.host_memory() ? run_case_host(be, c) : run_case_device(be, c);
}

struct compare_result {
    double rel_l2 = 0, max_rms = 0;
    int64_t non_finite = 0, worst = -1;
};

compare_result compare(const std::vector<float>& out, const std::vector<float>& ref) {
    compare_result r;
    double num = 0, den = 0, max_err = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
        if (!std::isfinite(out[i])) {
            ++r.non_finite;
            continue;
        }
        const double e = double(out[i]) - double(ref[i]);
        num += e * e;
        den += double(ref[i]) * ref[i];
        if (std::fabs(e) > max_err) {
            max_err = std::fabs(e);
            r.worst = int64_t(i);
        }
    }
    const double rms = std::sqrt(den / double(std::max<size_t>(1, ref.size())));
    r.rel_l2 = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
    r.max_rms = rms > 0 ? max_err / rms : max_err;
    return r;
}

struct param {
    size_t backend_index;
    op_type op;
};

void PrintTo(const param& p, std::ostream* os) {
    *os << backends_under_test()[p.backend_index].label << " " << op_name(p.op);
}

std::string param_name(const testing::TestParamInfo<param>& info) {
    return backends_under_test()[info.param.backend_index].label + "_" + op_name(info.param.op);
}

std::vector<param> all_params() {
    std::vector<param> out;
    for (size_t b = 0; b < backends_under_test().size(); ++b)
        for (uint32_t t = 0; t < uint32_t(op_type::COUNT); ++t) out.push_back({b, op_type(t)});
    return out;
}

class op_vs_ref : public testing::TestWithParam<param> {};

TEST_P(op_vs_ref, matches_reference) {
    const param p = GetParam();
    const backend_entry entry = backends_under_test()[p.backend_index];  // a copy: the list is a temporary
    std::unique_ptr<backend> be;
    try {
        be = entry.make();
    } catch (const tfu::error& e) {
        if (e.status() == TFU_STATUS_BACKEND_UNAVAILABLE) GTEST_SKIP() << entry.label << ": " << e.what();
        throw;
    }
    std::unique_ptr<backend> ref = make_cpu_ref_backend();
    std::mt19937_64 rng(test_seed() * 1000003u + uint64_t(p.op));
    std::vector<op_case> cases = make_cases(p.op, rng);
    ASSERT_FALSE(cases.empty()) << "no test cases for op " << op_name(p.op) << ": add them to test_ops.cpp";

    std::vector<std::string> skipped;
    for (const op_case& c : cases) {
        SCOPED_TRACE(std::string(op_name(p.op)) + " " + c.desc);
        op probe = c.o;
        probe.dst = &c.dst->t;
        std::vector<uint64_t> probe_addr;
        kv_block_map probe_map;
        if (c.blocks) {
            probe_map = c.blocks->at(static_cast<const uint8_t*>(c.dst->t.data), probe_addr);
            probe.ext = &probe_map;
            if (c.o.type == op_type::KV_STORE_BLOCKS) probe.dst = nullptr;
        }
        std::string why;
        ASSERT_TRUE(ref->supports(probe, &why)) << "cpu-ref rejects its own test case: " << why;
        if (!be->supports(probe, &why)) {
            skipped.push_back(c.desc + ": " + why);
            continue;
        }
        const error_bound* bound = find_bound(p.op, c.bound_type);
        ASSERT_NE(bound, nullptr) << "no error bound for " << op_name(p.op) << " " << dtype_name(c.bound_type);

        std::unique_ptr<owned_tensor> want = run_case(*ref, c);
        std::unique_ptr<owned_tensor> got = run_case(*be, c);
        if (c.dst->t.type == dtype::I32) {  // indices (ARGMAX), cache bytes (KV_STORE_BLOCKS): exactly the reference's
            const int32_t* w = want->t.ptr<int32_t>();
            const int32_t* g = got->t.ptr<int32_t>();
            for (int64_t i = 0; i < want->t.nelements(); ++i)
                EXPECT_EQ(g[i], w[i]) << entry.label << ": element " << i;
            continue;
        }
        const std::vector<float> wv = to_floats(want->t), gv = to_floats(got->t);
        for (float x : wv) ASSERT_TRUE(std::isfinite(x)) << "cpu-ref produced a non-finite value";
        compare_result r = compare(gv, wv);
        EXPECT_EQ(r.non_finite, 0) << entry.label << ": non-finite outputs (unwritten or NaN)";
        EXPECT_LE(r.rel_l2, bound->rel_l2) << entry.label << ": relative L2 error (" << bound->why << ")";
        EXPECT_LE(r.max_rms, bound->max_rms)
            << entry.label << ": max error / rms at element " << r.worst << ": got "
            << (r.worst >= 0 ? gv[size_t(r.worst)] : 0.f) << " want " << (r.worst >= 0 ? wv[size_t(r.worst)] : 0.f);
    }
    if (!skipped.empty()) {
        std::ostringstream s;
        s << entry.label << " does not support " << skipped.size() << " of " << cases.size() << " cases:";
        for (const std::string& w : skipped) s << "\n  " << w;
        GTEST_SKIP() << s.str();
    }
}

INSTANTIATE_TEST_SUITE_P(ops, op_vs_ref, testing::ValuesIn(all_params()), param_name);

}  // namespace
}  // namespace tfu::test
