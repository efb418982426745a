// cpu::attention_paged: cpu::attention's online softmax over the paged, possibly quantized cache: one tile per
// cache block (B rows), each K/V row dequantized in registers by the kv_format readers (backend/kv_format.h).
// dst (hd, n_head, n); q = src0 (hd, n_head, n); ext = paged_kv_view; query j sees positions 0 .. i[0] + j.
// Work: one task = one query and a group of heads that share a kv head (each K/V row is decoded once per group).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "backend/cpu/cpu_ops.h"
#include "backend/kv_format.h"

namespace tfu::cpu {

void attention_paged(context& ctx, const op& o) {
    const tensor& q = *o.src[0];
    const paged_kv_view& kv = *static_cast<const paged_kv_view*>(o.ext);
    const int64_t hd = q.ne[0], n_head = q.ne[1], n = q.ne[2];
    const int64_t n_past = o.i[0];
    const int64_t group = n_head / o.i[1];
    const float scale = o.f[0];
    const int64_t B = kv.block_tokens;
    // Picked once per op: the readers' own dispatch reads the environment on every call.
    auto dot = ctx.avx2 ? kv_avx2::dot_row : kv_scalar::dot_row;
    auto axpy = ctx.avx2 ? kv_avx2::axpy_row : kv_scalar::axpy_row;
    auto scal = ctx.avx2 ? avx2::scale : scale_scalar;

    const attention_task split(n, n_head, group, ctx.pool.n_threads(), hd, B);
    ctx.pool.parallel_for(split.n_tasks(), [&](int64_t begin, int64_t end, int) {
        attention_task t = split;  // per-thread state
        const int64_t hpt = t.heads();
        for (int64_t task = begin; task < end; ++task) {
            t.start(task, n_past);
            for (int64_t b = 0; b * B < t.n_kv; ++b) {
                const kv_rows kr = kv.k[b * kv.n_head_kv + t.kvh];
                const kv_rows vr = kv.v[b * kv.n_head_kv + t.kvh];
                const int64_t tn = std::min(B, t.n_kv - b * B);
                for (int64_t tt = 0; tt < tn; ++tt)
                    for (int64_t hh = 0; hh < hpt; ++hh) {
                        const float* qr = static_cast<const float*>(q.row(t.j * n_head + t.h0 + hh));
                        t.scores(hh)[tt] = scale * dot(*kr.layout, kr.data, int32_t(tt), qr);
                    }
                t.softmax_tile(tn, scal);
                for (int64_t tt = 0; tt < tn; ++tt)
                    for (int64_t hh = 0; hh < hpt; ++hh) axpy(*vr.layout, vr.data, int32_t(tt), t.scores(hh)[tt], t.acc(hh));
            }
            t.finish(*o.dst, n_head);
        }
    });
}

}  // namespace tfu::cpu
