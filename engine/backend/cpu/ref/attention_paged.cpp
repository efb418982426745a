// ref::attention_paged: ref::attention over the paged cache: each K/V row is dequantized with kv_read_row into a
// (hd) buffer and used in double. ext = paged_kv_view; block b holds positions b * B .. b * B + n_rows - 1.
#include <cmath>
#include <limits>
#include <vector>

#include "backend/cpu/ref/ref_ops.h"
#include "backend/kv_format.h"

namespace tfu::ref {

void attention_paged(const op& o) {
    const tensor& q = *o.src[0];
    const paged_kv_view& kv = *static_cast<const paged_kv_view*>(o.ext);
    const int64_t hd = q.ne[0], n_head = q.ne[1], n = q.ne[2];
    const int64_t n_past = o.i[0];
    const int64_t group = n_head / o.i[1];
    const double scale = o.f[0];
    const int64_t B = kv.block_tokens;
    std::vector<double> p(static_cast<size_t>(n_past + n));
    std::vector<double> acc(static_cast<size_t>(hd));
    std::vector<float> row(static_cast<size_t>(hd));
    for (int64_t j = 0; j < n; ++j) {
        const int64_t n_kv = n_past + j + 1;  // causal: positions 0 .. n_past + j
        for (int64_t h = 0; h < n_head; ++h) {
            const float* qr = static_cast<const float*>(q.row(j * n_head + h));
            const int64_t hk = h / group;
            auto rows = [&](const kv_rows* part, int64_t pos) { return part[(pos / B) * kv.n_head_kv + hk]; };
            double mx = -std::numeric_limits<double>::infinity();
            for (int64_t t = 0; t < n_kv; ++t) {
                const kv_rows r = rows(kv.k, t);
                kv_read_row(*r.layout, r.data, int32_t(t % B), row.data());
                double s = 0;
                for (int64_t i = 0; i < hd; ++i) s += double(qr[i]) * row[size_t(i)];
                p[size_t(t)] = s * scale;
                if (p[size_t(t)] > mx) mx = p[size_t(t)];
            }
            double sum = 0;
            for (int64_t t = 0; t < n_kv; ++t) {
                p[size_t(t)] = std::exp(p[size_t(t)] - mx);
                sum += p[size_t(t)];
            }
            for (double& a : acc) a = 0;
            for (int64_t t = 0; t < n_kv; ++t) {
                const kv_rows r = rows(kv.v, t);
                kv_read_row(*r.layout, r.data, int32_t(t % B), row.data());
                for (int64_t i = 0; i < hd; ++i) acc[size_t(i)] += p[size_t(t)] * row[size_t(i)];
            }
            float* y = static_cast<float*>(o.dst->row(j * n_head + h));
            for (int64_t i = 0; i < hd; ++i) y[i] = float(acc[size_t(i)] / sum);
        }
    }
}

}  // namespace tfu::ref
