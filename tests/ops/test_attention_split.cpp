// The CPU attention frame (backend/cpu/attention_split.h) at long contexts: split-K decode and small batches
// (n 1 and 3), GQA groups 7:1, 4:1, 16:1 and 1:1, every K x V cache format of the paged kernel and every dtype of
// the contiguous one, block sizes 16 and 32, against cpu-ref with test_ops' bounds (rel L2 1e-5, max 1e-4 of the
// rms). Each case runs with the AVX-512, AVX2 and scalar row kernels (those the CPU has), with the default plan
// and with the split forced
// on (chunks of one tile/block, so short contexts take the merge path too). Random data from a printed seed.
// TFU_ATTN_BENCH=1 also prints the op's time at 1K, 4K and 16K context (no assertion on time).
#include <chrono>
#include <cstdio>

#include "backend/cpu/attention_split.h"
#include "kv/block_table.h"
#include "ops/op_test_util.h"

namespace tfu::test {
namespace {

using cpu::attn_make_plan;
using cpu::attn_plan;
using cpu::attn_problem;
using cpu::attn_split_options;

constexpr double k_rel_l2 = 1e-5, k_max_rms = 1e-4;  // test_ops' ATTENTION / ATTENTION_PAGED bounds

struct errors {
    double rel_l2 = 0, max_rms = 0;
    int64_t non_finite = 0;
};

errors compare(const tensor& got, const tensor& want) {
    const std::vector<float> g = to_floats(got), w = to_floats(want);
    double num = 0, den = 0, mx = 0;
    errors e;
    for (size_t i = 0; i < w.size(); ++i) {
        if (!std::isfinite(g[i])) {
            ++e.non_finite;
            continue;
        }
        const double d = double(g[i]) - double(w[i]);
        num += d * d;
        den += double(w[i]) * w[i];
        mx = std::max(mx, std::fabs(d));
    }
    const double rms = std::sqrt(den / double(std::max<size_t>(1, w.size())));
    e.rel_l2 = std::sqrt(num / den);
    e.max_rms = mx / rms;
    return e;
}

// The paged cache of one layer with random rows for positions 0 .. n_pos - 1, and the op that reads it.
struct paged_case {
    std::unique_ptr<kv_block_pool> pool;
    std::unique_ptr<kv_block_table> table;
    std::vector<kv_rows> k, v;
    paged_kv_view view;
    std::unique_ptr<owned_tensor> q, dst;
    op o;
};

struct shape {
    int32_t hd, n_head, n_head_kv, n, n_past;
};

std::unique_ptr<paged_case> make_paged(std::mt19937_64& rng, const shape& s, int32_t block, kv_format kf,
                                       kv_format vf) {
    auto c = std::make_unique<paged_case>();
    kv_pool_params pp;
    pp.n_layer = 1;
    pp.n_head_kv = s.n_head_kv;
    pp.head_dim = s.hd;
    pp.block_tokens = block;
    pp.k_format = kf;
    pp.v_format = vf;
    c->pool = std::make_unique<kv_block_pool>(pp);
    c->table = std::make_unique<kv_block_table>(*c->pool);
    const int32_t n_pos = s.n_past + s.n;
    c->table->append(n_pos);
    std::vector<float> rows = random_floats(rng, size_t(n_pos) * size_t(s.hd));
    for (int32_t h = 0; h < s.n_head_kv; ++h) {
        rows = random_floats(rng, rows.size());
        c->table->write_k(0, h, 0, n_pos, rows.data(), s.hd);
        rows = random_floats(rng, rows.size());
        c->table->write_v(0, h, 0, n_pos, rows.data(), s.hd);
    }
    for (int32_t b = 0; b < c->table->n_blocks(); ++b)
        for (int32_t h = 0; h < s.n_head_kv; ++h) {
            c->k.push_back(c->table->k_rows(b, 0, h));
            c->v.push_back(c->table->v_rows(b, 0, h));
        }
    c->view.n_blocks = c->table->n_blocks();
    c->view.n_head_kv = s.n_head_kv;
    c->view.block_tokens = block;
    c->view.k = c->k.data();
    c->view.v = c->v.data();
    c->q = std::make_unique<owned_tensor>(dtype::F32, s.hd, s.n_head, s.n, "q");
    fill_random(rng, c->q->t);
    c->dst = std::make_unique<owned_tensor>(dtype::F32, s.hd, s.n_head, s.n, "dst");
    c->o.type = op_type::ATTENTION_PAGED;
    c->o.src[0] = &c->q->t;
    c->o.ext = &c->view;
    c->o.i[0] = s.n_past;
    c->o.i[1] = s.n_head_kv;
    c->o.f[0] = float(1.0 / std::sqrt(double(s.hd)));
    c->o.dst = &c->dst->t;
    return c;
}

// A contiguous-cache ATTENTION op; rows past the last query's position hold NaN (they must never be read).
struct dense_case {
    std::unique_ptr<owned_tensor> q, k, v, dst;
    op o;
};

std::unique_ptr<dense_case> make_dense(std::mt19937_64& rng, const shape& s, dtype kt, dtype vt) {
    auto c = std::make_unique<dense_case>();
    const int64_t n_ctx = s.n_past + s.n + 40;
    c->q = std::make_unique<owned_tensor>(dtype::F32, s.hd, s.n_head, s.n, "q");
    c->k = std::make_unique<owned_tensor>(kt, s.hd * s.n_head_kv, n_ctx, 1, "k");
    c->v = std::make_unique<owned_tensor>(vt, s.hd * s.n_head_kv, n_ctx, 1, "v");
    for (owned_tensor* t : {c->q.get(), c->k.get(), c->v.get()}) fill_random(rng, t->t);
    std::vector<float> nan_row(size_t(s.hd * s.n_head_kv), std::nanf(""));
    for (int64_t r = s.n_past + s.n; r < n_ctx; ++r) {
        quantize_row(kt, nan_row.data(), c->k->t.row(r), c->k->t.ne[0]);
        quantize_row(vt, nan_row.data(), c->v->t.row(r), c->v->t.ne[0]);
    }
    c->dst = std::make_unique<owned_tensor>(dtype::F32, s.hd, s.n_head, s.n, "dst");
    c->o.type = op_type::ATTENTION;
    c->o.src[0] = &c->q->t;
    c->o.src[1] = &c->k->t;
    c->o.src[2] = &c->v->t;
    c->o.i[0] = s.n_past;
    c->o.i[1] = s.n_head_kv;
    c->o.f[0] = float(1.0 / std::sqrt(double(s.hd)));
    c->o.dst = &c->dst->t;
    return c;
}

// The row kernel levels this CPU can run (whatever TFU_CPU_SIMD says): AVX-512, AVX2, scalar.
struct level {
    const char* name;
    const cpu::attn_kernels* kernels;
};
std::vector<level> levels() {
    std::vector<level> l;
    if (cpu::cpu_has_avx512_hw()) l.push_back({"avx512", &cpu::attn_kernels_avx512()});
    if (cpu::cpu_has_avx2()) l.push_back({"avx2", &cpu::attn_kernels_avx2()});
    l.push_back({"scalar", &cpu::attn_kernels_scalar()});
    return l;
}

// Runs o (dst = o.dst) with the fast kernels under each ISA and plan and compares with want.
void check_all_ways(const op& o, const tensor& want, const std::string& desc) {
    thread_pool pool(4);
    std::vector<uint8_t> scratch;
    const attn_split_options dflt{};
    attn_split_options forced;  // split every (query, head group) into one-tile chunks, even for short contexts
    forced.min_chunk_rows = 1;
    forced.tasks_per_thread = 1 << 20;
    for (const level& lv : levels()) {
        for (int way = 0; way < 2; ++way) {
            attn_split_options opt = way == 0 ? dflt : forced;
            opt.kernels = lv.kernels;
            cpu::context ctx{pool, lv.kernels != &cpu::attn_kernels_scalar(), scratch};
            std::memset(o.dst->data, 0xff, o.dst->nbytes());  // NaN: an unwritten output is caught
            if (o.type == op_type::ATTENTION) cpu::attention_with(ctx, o, opt);
            else cpu::attention_paged_with(ctx, o, opt);
            const errors e = compare(*o.dst, want);
            const std::string what = desc + " " + lv.name + (way == 0 ? " default" : " forced split");
            EXPECT_EQ(e.non_finite, 0) << what;
            EXPECT_LE(e.rel_l2, k_rel_l2) << what;
            EXPECT_LE(e.max_rms, k_max_rms) << what;
        }
    }
}

std::string describe(const shape& s) {
    return "hd=" + std::to_string(s.hd) + " heads=" + std::to_string(s.n_head) + "/" + std::to_string(s.n_head_kv) +
           " n=" + std::to_string(s.n) + " n_past=" + std::to_string(s.n_past);
}

const shape k_long[] = {
    {64, 14, 2, 1, 4093}, {64, 14, 2, 3, 3001}, {64, 8, 2, 1, 3500},  {64, 8, 2, 3, 5000},
    {128, 16, 1, 1, 3100}, {80, 4, 4, 1, 3333}, {24, 6, 2, 3, 3050},
};

TEST(attention_split, plan_splits_long_decode_only) {
    attn_problem p;
    p.hd = 64;
    p.n_head = 14;
    p.n_head_kv = 2;
    p.n = 1;
    p.tile = 32;
    p.align = 32;
    p.n_past = 16383;
    const attn_plan pl = attn_make_plan(p, 16, attn_split_options{});
    EXPECT_EQ(pl.hpt, 7);          // the GQA group stays whole: one decode of each row for 7 heads
    EXPECT_EQ(pl.n_units, 2);
    EXPECT_GE(pl.n_chunks, 16);    // enough tasks for 16 threads
    EXPECT_EQ(pl.chunk_rows % 32, 0);
    EXPECT_GE(pl.n_chunks * pl.chunk_rows, p.n_past + 1);
    p.n_past = 100;  // short: one chunk
    EXPECT_EQ(attn_make_plan(p, 16, attn_split_options{}).n_chunks, 1);
    p.n_past = 16383;
    p.n = 512;  // prefill: enough units already
    EXPECT_EQ(attn_make_plan(p, 16, attn_split_options{}).n_chunks, 1);
    p.n_head = 32;
    p.n_head_kv = 2;  // group 16: two sub-groups of 8
    EXPECT_EQ(attn_make_plan(p, 16, attn_split_options{}).hpt, 8);
    EXPECT_EQ(attn_make_plan(p, 16, attn_split_options{}).n_sub, 2);
}

TEST(attention_split, paged_long_contexts_every_format) {
    std::mt19937_64 rng(test_seed() * 7919u + 1);
    std::unique_ptr<backend> ref = make_cpu_ref_backend();
    const kv_format fmts[] = {kv_format::f16, kv_format::bf16, kv_format::q8, kv_format::q4};
    for (const shape& s : k_long)
        for (int32_t block : {16, 32})
            for (kv_format kf : fmts)
                for (kv_format vf : fmts) {
                    if (block == 16 && s.hd != 64) continue;  // keep the run short: odd head sizes at B 32 only
                    const std::string desc = describe(s) + " B=" + std::to_string(block) + " K " + kv_format_name(kf) +
                                             " V " + kv_format_name(vf);
                    SCOPED_TRACE(desc);
                    auto c = make_paged(rng, s, block, kf, vf);
                    owned_tensor want(dtype::F32, s.hd, s.n_head, s.n, "want");
                    op ro = c->o;
                    ro.dst = &want.t;
                    ref->run(&ro, 1);
                    check_all_ways(c->o, want.t, desc);
                }
}

TEST(attention_split, contiguous_long_contexts_every_dtype) {
    std::mt19937_64 rng(test_seed() * 7919u + 2);
    std::unique_ptr<backend> ref = make_cpu_ref_backend();
    struct types { dtype k, v; };
    for (const shape& s : k_long)
        for (types t : {types{dtype::F32, dtype::F32}, types{dtype::F16, dtype::F16}, types{dtype::BF16, dtype::BF16},
                        types{dtype::F16, dtype::BF16}}) {
            const std::string desc = describe(s) + " K " + dtype_name(t.k) + " V " + dtype_name(t.v);
            SCOPED_TRACE(desc);
            auto c = make_dense(rng, s, t.k, t.v);
            owned_tensor want(dtype::F32, s.hd, s.n_head, s.n, "want");
            op ro = c->o;
            ro.dst = &want.t;
            ref->run(&ro, 1);
            check_all_ways(c->o, want.t, desc);
        }
}

// Short contexts through the merge (forced split) and the smallest shapes of test_ops.
TEST(attention_split, short_contexts_forced_split) {
    std::mt19937_64 rng(test_seed() * 7919u + 3);
    std::unique_ptr<backend> ref = make_cpu_ref_backend();
    // hd 96: q4 value groups of 32, 3 per row (the AVX2 weights' scalar path); 40: keys' 16-channel blocks and an
    // 8-channel tail, value groups of 20; 48: value groups of 24 (channel order, 2 per row).
    const shape shapes[] = {{8, 8, 4, 1, 0},    {8, 8, 4, 7, 40},   {64, 14, 2, 3, 70}, {64, 8, 1, 5, 100},
                            {96, 4, 2, 3, 70},  {40, 4, 1, 2, 50},  {48, 6, 3, 1, 90}};
    for (const shape& s : shapes)
        for (kv_format f : {kv_format::f16, kv_format::q8, kv_format::q4}) {
            const std::string desc = describe(s) + " K/V " + kv_format_name(f);
            SCOPED_TRACE(desc);
            auto c = make_paged(rng, s, 16, f, f);
            owned_tensor want(dtype::F32, s.hd, s.n_head, s.n, "want");
            op ro = c->o;
            ro.dst = &want.t;
            ref->run(&ro, 1);
            check_all_ways(c->o, want.t, desc);
        }
}

// TFU_ATTN_BENCH=1: ms per paged decode op (one layer of a Qwen2.5-0.5B-shaped model: 14 heads on 2 kv heads of
// 64, B = 32) at 1K, 4K and 16K, split-K on (default) and off, 2 threads (set TFU_ATTN_BENCH_THREADS). K and V in the
// same format; TFU_ATTN_BENCH_MIXED=1 adds K q4 / V f16, K f16 / V q4 and K q8 / V q4 (labelled K/V), to time the
// score and the value kernels of a format apart; TFU_ATTN_BENCH_ONLY=<label> times that one only (profiling). The
// row kernels are those of the highest level TFU_CPU_SIMD allows (avx512, avx2, scalar), named in each line.
TEST(attention_split, bench_decode) {
    const char* on = std::getenv("TFU_ATTN_BENCH");
    if (!on || std::string(on) != "1") GTEST_SKIP() << "set TFU_ATTN_BENCH=1 to time the decode op";
    const char* th = std::getenv("TFU_ATTN_BENCH_THREADS");
    thread_pool pool(th ? std::atoi(th) : 2);
    std::vector<uint8_t> scratch;
    std::mt19937_64 rng(test_seed());
    attn_split_options no_split;
    no_split.min_chunk_rows = int64_t(1) << 40;
    struct formats { kv_format k, v; };
    std::vector<formats> fmts = {{kv_format::f16, kv_format::f16}, {kv_format::q8, kv_format::q8},
                                 {kv_format::q4, kv_format::q4}};
    const char* mixed = std::getenv("TFU_ATTN_BENCH_MIXED");
    if (mixed && std::string(mixed) == "1")
        fmts.insert(fmts.end(), {{kv_format::q4, kv_format::f16}, {kv_format::f16, kv_format::q4},
                                 {kv_format::q8, kv_format::q4}});
    for (int32_t ctx_len : {1024, 4096, 16384})
        for (const formats& f : fmts) {
            const std::string label = f.k == f.v ? std::string(kv_format_name(f.k))
                                                 : std::string(kv_format_name(f.k)) + "/" + kv_format_name(f.v);
            const char* only = std::getenv("TFU_ATTN_BENCH_ONLY");  // one label (e.g. q4/f16), for profiling
            if (only && label != only) continue;
            auto c = make_paged(rng, shape{64, 14, 2, 1, ctx_len - 1}, 32, f.k, f.v);
            for (int way = 0; way < 2; ++way) {
                cpu::context ctx{pool, cpu::cpu_has_avx2(), scratch};
                const attn_split_options opt = way == 0 ? attn_split_options{} : no_split;
                cpu::attention_paged_with(ctx, c->o, opt);  // warm-up
                const int reps = ctx_len > 8192 ? 20 : 50;
                std::vector<double> ms;
                for (int r = 0; r < reps; ++r) {
                    const auto t0 = std::chrono::steady_clock::now();
                    cpu::attention_paged_with(ctx, c->o, opt);
                    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
                }
                std::sort(ms.begin(), ms.end());
                const cpu::attn_kernels& kr = cpu::attn_kernels_for(ctx);
                const char* lv = &kr == &cpu::attn_kernels_avx512() ? "avx512"
                                 : &kr == &cpu::attn_kernels_scalar() ? "scalar" : "avx2";
                std::printf("attention_paged ctx %5d %-3s %-9s %-6s threads %d: median %.3f ms, min %.3f, max %.3f\n",
                            ctx_len, label.c_str(), way == 0 ? "split" : "no split", lv, pool.n_threads(),
                            ms[ms.size() / 2], ms.front(), ms.back());
            }
        }
}

}  // namespace
}  // namespace tfu::test
