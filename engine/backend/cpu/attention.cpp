// cpu::attention: causal grouped-query attention with a one-pass online softmax (Milakov & Gimelshein 2018,
// arXiv 1805.02867; as in FlashAttention, arXiv 2205.14135) over tiles of cache rows.
// dst (hd, n_head, n) = softmax(scale * q . K^T) . V; q = src0 (hd, n_head, n), K = src1, V = src2
// (hd * n_head_kv, n_ctx; f32/f16/bf16). Query j sees cache rows 0 .. n_past + j (n_past = i[0]).
// Work: one task = one query and a group of heads that share a kv head, so each K/V row slice is loaded once
// for the whole group (GQA) and reused from L1; groups are split when there are too few tasks for the threads.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "backend/cpu/cpu_ops.h"
#include "core/fp16.h"

namespace tfu::cpu {

namespace {

constexpr int64_t k_tile = 32;  // cache rows per online-softmax step

float dot_generic(dtype t, const float* q, const void* k, int64_t n) {
    float s = 0;
    if (t == dtype::F32) {
        const float* kf = static_cast<const float*>(k);
        for (int64_t i = 0; i < n; ++i) s += q[i] * kf[i];
    } else {
        const uint16_t* kh = static_cast<const uint16_t*>(k);
        if (t == dtype::F16)
            for (int64_t i = 0; i < n; ++i) s += q[i] * fp16_to_f32(kh[i]);
        else
            for (int64_t i = 0; i < n; ++i) s += q[i] * bf16_to_f32(kh[i]);
    }
    return s;
}

void axpy_generic(dtype t, float a, const void* v, float* acc, int64_t n) {
    if (t == dtype::F32) {
        const float* vf = static_cast<const float*>(v);
        for (int64_t i = 0; i < n; ++i) acc[i] += a * vf[i];
    } else {
        const uint16_t* vh = static_cast<const uint16_t*>(v);
        if (t == dtype::F16)
            for (int64_t i = 0; i < n; ++i) acc[i] += a * fp16_to_f32(vh[i]);
        else
            for (int64_t i = 0; i < n; ++i) acc[i] += a * bf16_to_f32(vh[i]);
    }
}

}  // namespace

void scale_scalar(float* x, float s, int64_t n) {
    for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

attention_task::attention_task(int64_t n, int64_t n_head, int64_t group, int n_threads, int64_t hd,
                               int64_t tile_rows)
    : n_(n), group_(group), hpt_(group), hd_(hd), tile_(tile_rows) {
    while (hpt_ % 2 == 0 && n * (n_head / hpt_) < 2 * int64_t(n_threads)) hpt_ /= 2;
    tasks_per_query_ = n_head / hpt_;
    acc_.resize(size_t(hpt_ * hd));
    s_.resize(size_t(hpt_ * tile_rows));
    m_.resize(size_t(hpt_));
    l_.resize(size_t(hpt_));
}

void attention_task::start(int64_t task, int64_t n_past) {
    j = task / tasks_per_query_;
    h0 = (task % tasks_per_query_) * hpt_;
    kvh = h0 / group_;
    n_kv = n_past + j + 1;  // causal: rows 0 .. n_past + j
    std::fill(acc_.begin(), acc_.end(), 0.0f);
    std::fill(m_.begin(), m_.end(), -std::numeric_limits<float>::infinity());
    std::fill(l_.begin(), l_.end(), 0.0f);
}

void attention_task::softmax_tile(int64_t tn, void (*scale)(float*, float, int64_t)) {
    for (int64_t hh = 0; hh < hpt_; ++hh) {
        float* s = scores(hh);
        float& m = m_[size_t(hh)];
        float& l = l_[size_t(hh)];
        const float bm = *std::max_element(s, s + tn);
        if (bm > m) {  // new running max: rescale what was accumulated so far
            const float corr = std::exp(m - bm);  // exp(-inf) = 0 on the first tile
            scale(acc(hh), corr, hd_);
            l *= corr;
            m = bm;
        }
        float sum = 0;
        for (int64_t t = 0; t < tn; ++t) {
            s[t] = std::exp(s[t] - m);
            sum += s[t];
        }
        l += sum;
    }
}

void attention_task::finish(const tensor& dst, int64_t n_head) const {
    for (int64_t hh = 0; hh < hpt_; ++hh) {
        float* y = static_cast<float*>(dst.row(j * n_head + h0 + hh));
        const float inv = 1.0f / l_[size_t(hh)];
        for (int64_t i = 0; i < hd_; ++i) y[i] = acc_[size_t(hh * hd_ + i)] * inv;
    }
}

void attention(context& ctx, const op& o) {
    const tensor& q = *o.src[0];
    const tensor& kc = *o.src[1];
    const tensor& vc = *o.src[2];
    const int64_t hd = q.ne[0], n_head = q.ne[1], n = q.ne[2];
    const int64_t n_past = o.i[0];
    const int64_t group = n_head / o.i[1];
    const float scale = o.f[0];
    const size_t k_off_bytes = size_t(hd) * traits(kc.type).type_size;  // bytes per kv head in a K row
    const size_t v_off_bytes = size_t(hd) * traits(vc.type).type_size;

    auto dot = ctx.avx2 ? avx2::dot_cache : dot_generic;
    auto axpy = ctx.avx2 ? avx2::axpy_cache : axpy_generic;
    auto scal = ctx.avx2 ? avx2::scale : scale_scalar;

    const attention_task split(n, n_head, group, ctx.pool.n_threads(), hd, k_tile);
    ctx.pool.parallel_for(split.n_tasks(), [&](int64_t begin, int64_t end, int) {
        attention_task t = split;  // per-thread state
        const int64_t hpt = t.heads();
        for (int64_t task = begin; task < end; ++task) {
            t.start(task, n_past);
            for (int64_t t0 = 0; t0 < t.n_kv; t0 += k_tile) {
                const int64_t tn = std::min(k_tile, t.n_kv - t0);
                for (int64_t tt = 0; tt < tn; ++tt) {
                    const void* kr = static_cast<const char*>(kc.row(t0 + tt)) + size_t(t.kvh) * k_off_bytes;
                    for (int64_t hh = 0; hh < hpt; ++hh) {
                        const float* qr = static_cast<const float*>(q.row(t.j * n_head + t.h0 + hh));
                        t.scores(hh)[tt] = scale * dot(kc.type, qr, kr, hd);
                    }
                }
                t.softmax_tile(tn, scal);
                for (int64_t tt = 0; tt < tn; ++tt) {
                    const void* vr = static_cast<const char*>(vc.row(t0 + tt)) + size_t(t.kvh) * v_off_bytes;
                    for (int64_t hh = 0; hh < hpt; ++hh) axpy(vc.type, t.scores(hh)[tt], vr, t.acc(hh), hd);
                }
            }
            t.finish(*o.dst, n_head);
        }
    });
}

}  // namespace tfu::cpu
