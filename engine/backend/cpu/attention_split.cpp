// The shared CPU attention frame (attention_split.h): the split plan, the per-task online softmax over tiles of a
// key chunk, and the log-sum-exp merge of the chunks' partial states.
#include "backend/cpu/attention_split.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace tfu::cpu {

namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Per-thread state, in floats: q (hpt, hd) scaled, acc (hpt, hd), scores (hpt, tile), m (hpt), l (hpt), work.
struct thread_layout {
    int64_t q, acc, s, m, l, work, total;
    thread_layout(int64_t hpt, int64_t hd, int64_t tile) {
        q = 0;
        acc = q + hpt * hd;
        s = acc + hpt * hd;
        m = s + hpt * tile;
        l = m + hpt;
        work = l + hpt;
        total = (work + attn_work_floats(tile, hd) + 15) & ~int64_t(15);  // 64-byte steps between threads
    }
};

}  // namespace

attn_plan attn_make_plan(const attn_problem& p, int n_threads, const attn_split_options& opt) {
    attn_plan pl;
    pl.group = p.n_head / p.n_head_kv;
    pl.n_sub = ceil_div(pl.group, 8);  // the kernels keep up to 8 heads' accumulators in registers
    pl.hpt = ceil_div(pl.group, pl.n_sub);
    pl.n_units = p.n * p.n_head_kv * pl.n_sub;
    const int64_t n_kv_max = p.n_past + p.n;
    const int64_t min_chunk = std::max(p.align, ceil_div(std::max<int64_t>(1, opt.min_chunk_rows), p.align) * p.align);
    const int64_t want_tasks = std::max<int64_t>(1, opt.tasks_per_thread) * std::max(1, n_threads);
    int64_t n_chunks = 1;
    if (pl.n_units < want_tasks) n_chunks = std::min(ceil_div(want_tasks, pl.n_units), n_kv_max / min_chunk);
    n_chunks = std::max<int64_t>(1, n_chunks);
    pl.chunk_rows = ceil_div(ceil_div(n_kv_max, n_chunks), p.align) * p.align;
    pl.n_chunks = ceil_div(n_kv_max, pl.chunk_rows);
    return pl;
}

const attn_kernels& attn_kernels_for(const context& ctx) {
    if (!ctx.avx2) return attn_kernels_scalar();
    return cpu_has_avx512() ? attn_kernels_avx512() : attn_kernels_avx2();
}

void attn_run(context& ctx, const attn_problem& p, const attn_split_options& opt) {
    const attn_kernels& kr = opt.kernels ? *opt.kernels : attn_kernels_for(ctx);
    const int n_threads = ctx.pool.n_threads();
    const attn_plan pl = attn_make_plan(p, n_threads, opt);
    const int64_t hd = p.hd, hpt = pl.hpt, tile = p.tile;
    const thread_layout tl(hpt, hd, tile);
    // A partial state per task: m (hpt), l (hpt), acc (hpt, hd).
    const int64_t part_floats = hpt * (hd + 2);
    const int64_t n_tasks = pl.n_units * pl.n_chunks;
    const int64_t part_total = pl.n_chunks > 1 ? n_tasks * part_floats : 0;
    const size_t need = size_t(tl.total * n_threads + part_total) * sizeof(float) + 64;
    if (ctx.scratch.size() < need) ctx.scratch.resize(need);
    float* base = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(ctx.scratch.data()) + 63) & ~uintptr_t(63));
    float* partials = base + tl.total * n_threads;
    const float neg_inf = -std::numeric_limits<float>::infinity();

    ctx.pool.parallel_for(n_tasks, [&](int64_t begin, int64_t end, int thread_id) {
        float* st = base + tl.total * thread_id;
        float* qb = st + tl.q;
        float* acc = st + tl.acc;
        float* s = st + tl.s;
        float* m = st + tl.m;
        float* l = st + tl.l;
        float* work = st + tl.work;
        for (int64_t task = begin; task < end; ++task) {
            const int64_t unit = task / pl.n_chunks, chunk = task % pl.n_chunks;
            const int64_t j = unit / (p.n_head_kv * pl.n_sub);
            const int64_t kvh = (unit / pl.n_sub) % p.n_head_kv;
            const int64_t sub = unit % pl.n_sub;
            const int64_t h0 = kvh * pl.group + sub * hpt;
            const int64_t G = std::min(hpt, pl.group - sub * hpt);
            const int64_t n_kv = p.n_past + j + 1;  // causal: rows 0 .. n_past + j
            const int64_t r0 = chunk * pl.chunk_rows, r1 = std::min(n_kv, r0 + pl.chunk_rows);
            for (int64_t hh = 0; hh < G; ++hh) {
                m[hh] = neg_inf;
                l[hh] = 0.0f;
            }
            std::fill(acc, acc + G * hd, 0.0f);
            if (r0 < r1) {
                for (int64_t hh = 0; hh < G; ++hh) {
                    const float* qr = static_cast<const float*>(p.q->row(j * p.n_head + h0 + hh));
                    for (int64_t c = 0; c < hd; ++c) qb[hh * hd + c] = p.scale * qr[c];
                }
                for (int64_t t0 = r0; t0 < r1; t0 += tile) {
                    const int64_t tn = std::min(tile, r1 - t0);
                    kr.scores(p.tile_at(0, kvh, t0), tn, hd, int(G), qb, s, tile, work);
                    for (int64_t hh = 0; hh < G; ++hh) {
                        float* sh = s + hh * tile;
                        const float bm = kr.max(sh, tn);
                        if (bm > m[hh]) {  // a new running max: rescale what was accumulated so far
                            const float corr = std::exp(m[hh] - bm);  // exp(-inf) = 0 on the first tile
                            kr.scale(acc + hh * hd, corr, hd);
                            l[hh] *= corr;
                            m[hh] = bm;
                        }
                        l[hh] += kr.exp_sum(sh, tn, m[hh]);
                    }
                    kr.accum(p.tile_at(1, kvh, t0), tn, hd, int(G), s, tile, acc, work);
                }
                kr.finish(p.tile_at(1, kvh, r0), hd, int(G), acc);
            }
            if (pl.n_chunks == 1) {
                for (int64_t hh = 0; hh < G; ++hh) {
                    float* y = static_cast<float*>(p.dst->row(j * p.n_head + h0 + hh));
                    const float inv = 1.0f / l[hh];
                    for (int64_t c = 0; c < hd; ++c) y[c] = acc[hh * hd + c] * inv;
                }
            } else {
                float* pt = partials + task * part_floats;
                std::memcpy(pt, m, size_t(G) * sizeof(float));
                std::memcpy(pt + hpt, l, size_t(G) * sizeof(float));
                std::memcpy(pt + 2 * hpt, acc, size_t(G * hd) * sizeof(float));
            }
        }
    });
    if (pl.n_chunks == 1) return;

    // Merge: per unit and head, out = sum_c exp(m_c - M) acc_c / sum_c exp(m_c - M) l_c over the chunks that saw
    // rows (m_c finite; chunk 0 always does). Small (n_units * hpt * n_chunks * hd), so one thread per unit.
    ctx.pool.parallel_for(pl.n_units, [&](int64_t begin, int64_t end, int) {
        for (int64_t unit = begin; unit < end; ++unit) {
            const int64_t j = unit / (p.n_head_kv * pl.n_sub);
            const int64_t kvh = (unit / pl.n_sub) % p.n_head_kv;
            const int64_t sub = unit % pl.n_sub;
            const int64_t h0 = kvh * pl.group + sub * hpt;
            const int64_t G = std::min(hpt, pl.group - sub * hpt);
            const float* pu = partials + unit * pl.n_chunks * part_floats;
            for (int64_t hh = 0; hh < G; ++hh) {
                float mx = neg_inf;
                for (int64_t c = 0; c < pl.n_chunks; ++c) mx = std::max(mx, pu[c * part_floats + hh]);
                float* y = static_cast<float*>(p.dst->row(j * p.n_head + h0 + hh));
                std::fill(y, y + hd, 0.0f);
                float lsum = 0.0f;
                for (int64_t c = 0; c < pl.n_chunks; ++c) {
                    const float* pc = pu + c * part_floats;
                    if (pc[hpt + hh] == 0.0f) continue;  // an empty chunk (past this query's last row)
                    const float w = std::exp(pc[hh] - mx);
                    lsum += w * pc[hpt + hh];
                    const float* a = pc + 2 * hpt + hh * hd;
                    for (int64_t i = 0; i < hd; ++i) y[i] += w * a[i];
                }
                const float inv = 1.0f / lsum;
                for (int64_t i = 0; i < hd; ++i) y[i] *= inv;
            }
        }
    });
}

attn_problem attn_problem_of(const op& o) {
    const tensor& q = *o.src[0];
    attn_problem p;
    p.q = &q;
    p.dst = o.dst;
    p.hd = q.ne[0];
    p.n_head = q.ne[1];
    p.n = q.ne[2];
    p.n_past = o.i[0];
    p.n_head_kv = o.i[1];
    p.scale = o.f[0];
    return p;
}

}  // namespace tfu::cpu
