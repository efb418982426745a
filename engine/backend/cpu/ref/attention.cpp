// ref::attention: dst (hd, n_head, n) = causal softmax(scale * q . K^T) . V, computed in double with the max
// subtracted before exp. q = src0 (hd, n_head, n); K = src1, V = src2 (hd * n_head_kv, n_ctx; cache dtype).
// Query j sits at position n_past + j (n_past = i[0]) and sees cache rows 0 .. n_past + j. Grouped-query
// attention: head h reads kv head h / (n_head / n_head_kv), n_head_kv = i[1]. scale = f[0].
#include <cmath>
#include <limits>
#include <vector>

#include "backend/cpu/ref/ref_ops.h"

namespace tfu::ref {

void attention(const op& o) {
    const tensor& q = *o.src[0];
    const tensor& kc = *o.src[1];
    const tensor& vc = *o.src[2];
    const int64_t hd = q.ne[0], n_head = q.ne[1], n = q.ne[2];
    const int64_t n_past = o.i[0];
    const int64_t group = n_head / o.i[1];
    const double scale = o.f[0];
    std::vector<double> p(static_cast<size_t>(n_past + n));
    std::vector<double> acc(static_cast<size_t>(hd));
    for (int64_t j = 0; j < n; ++j) {
        const int64_t n_kv = n_past + j + 1;  // causal: rows 0 .. n_past + j
        for (int64_t h = 0; h < n_head; ++h) {
            const float* qr = static_cast<const float*>(q.row(j * n_head + h));
            const int64_t off = (h / group) * hd;  // this head's slice of a cache row
            double mx = -std::numeric_limits<double>::infinity();
            for (int64_t t = 0; t < n_kv; ++t) {
                double s = 0;
                for (int64_t i = 0; i < hd; ++i) s += double(qr[i]) * load_cache(kc.type, kc.row(t), off + i);
                p[size_t(t)] = s * scale;
                if (p[size_t(t)] > mx) mx = p[size_t(t)];
            }
            double sum = 0;
            for (int64_t t = 0; t < n_kv; ++t) {
                p[size_t(t)] = std::exp(p[size_t(t)] - mx);
                sum += p[size_t(t)];
            }
            for (double& a : acc) a = 0;
            for (int64_t t = 0; t < n_kv; ++t)
                for (int64_t i = 0; i < hd; ++i) acc[size_t(i)] += p[size_t(t)] * load_cache(vc.type, vc.row(t), off + i);
            float* y = static_cast<float*>(o.dst->row(j * n_head + h));
            for (int64_t i = 0; i < hd; ++i) y[i] = float(acc[size_t(i)] / sum);
        }
    }
}

}  // namespace tfu::ref
