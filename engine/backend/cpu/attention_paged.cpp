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

    int64_t hpt = group;
    while (hpt % 2 == 0 && n * (n_head / hpt) < 2 * int64_t(ctx.pool.n_threads())) hpt /= 2;
    const int64_t tasks_per_query = n_head / hpt;

    ctx.pool.parallel_for(n * tasks_per_query, [&](int64_t begin, int64_t end, int) {
        std::vector<float> acc(static_cast<size_t>(hpt * hd)), s(static_cast<size_t>(hpt * B));
        std::vector<float> m(static_cast<size_t>(hpt)), l(static_cast<size_t>(hpt));
        for (int64_t task = begin; task < end; ++task) {
            const int64_t j = task / tasks_per_query;
            const int64_t h0 = (task % tasks_per_query) * hpt;
            const int64_t kvh = h0 / group;
            const int64_t n_kv = n_past + j + 1;
            std::fill(acc.begin(), acc.end(), 0.0f);
            std::fill(m.begin(), m.end(), -std::numeric_limits<float>::infinity());
            std::fill(l.begin(), l.end(), 0.0f);
            for (int64_t b = 0; b * B < n_kv; ++b) {
                const kv_rows kr = kv.k[b * kv.n_head_kv + kvh];
                const kv_rows vr = kv.v[b * kv.n_head_kv + kvh];
                const int64_t tn = std::min(B, n_kv - b * B);
                for (int64_t tt = 0; tt < tn; ++tt)
                    for (int64_t hh = 0; hh < hpt; ++hh) {
                        const float* qr = static_cast<const float*>(q.row(j * n_head + h0 + hh));
                        s[size_t(hh * B + tt)] = scale * dot(*kr.layout, kr.data, int32_t(tt), qr);
                    }
                for (int64_t hh = 0; hh < hpt; ++hh)
                    online_softmax_tile(&s[size_t(hh * B)], tn, m[size_t(hh)], l[size_t(hh)], &acc[size_t(hh * hd)], hd,
                                        scal);
                for (int64_t tt = 0; tt < tn; ++tt)
                    for (int64_t hh = 0; hh < hpt; ++hh)
                        axpy(*vr.layout, vr.data, int32_t(tt), s[size_t(hh * B + tt)], &acc[size_t(hh * hd)]);
            }
            for (int64_t hh = 0; hh < hpt; ++hh) {
                float* y = static_cast<float*>(o.dst->row(j * n_head + h0 + hh));
                const float inv = 1.0f / l[size_t(hh)];
                for (int64_t i = 0; i < hd; ++i) y[i] = acc[size_t(hh * hd + i)] * inv;
            }
        }
    });
}

}  // namespace tfu::cpu
