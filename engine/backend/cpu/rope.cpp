// cpu::rope: rotary position embedding (arXiv 2104.09864) on dst (hd, n_head, n) at positions src1 (n, i32).
// The cos/sin table (n, n_rot/2) is computed once per call in double (theta grows with the position, so float
// would lose accuracy at long contexts), then every (token, head) row is rotated in parallel.
// Pairs: mode 0 (2j, 2j+1), mode 2 neox (j, j + n_rot/2); dims >= n_rot are copied.
#include <cmath>
#include <vector>

#include "backend/cpu/cpu_ops.h"

namespace tfu::cpu {

void rope(context& ctx, const op& o) {
    const tensor& x = *o.src[0];
    const int32_t* pos = o.src[1]->ptr<int32_t>();
    const float* factors = o.src[2] ? o.src[2]->ptr<float>() : nullptr;
    const int64_t hd = x.ne[0], n_head = x.ne[1], n = x.ne[2];
    const int64_t half = o.i[0] / 2;
    const int64_t n_rot = o.i[0];
    const bool neox = o.i[1] == 2;
    const double base = o.f[0], freq_scale = o.f[1];

    std::vector<double> inv_freq(static_cast<size_t>(half));  // freq_base^(-2j/n_rot)
    for (int64_t j = 0; j < half; ++j) {
        inv_freq[size_t(j)] = std::pow(base, -2.0 * double(j) / double(n_rot));
    }
    std::vector<float> cs(static_cast<size_t>(n * half * 2));  // (n, n_rot/2) pairs of (cos, sin)
    ctx.pool.parallel_for(n, [&](int64_t b, int64_t e, int) {
        for (int64_t t = b; t < e; ++t)
            for (int64_t j = 0; j < half; ++j) {
                double theta = double(pos[t]) * freq_scale * inv_freq[size_t(j)];
                if (factors) theta /= double(factors[j]);
                cs[size_t((t * half + j) * 2)] = float(std::cos(theta));
                cs[size_t((t * half + j) * 2 + 1)] = float(std::sin(theta));
            }
    });

    ctx.pool.parallel_for(n * n_head, [&](int64_t b, int64_t e, int) {
        for (int64_t r = b; r < e; ++r) {
            const float* c = &cs[size_t((r / n_head) * half * 2)];
            const float* xr = static_cast<const float*>(x.row(r));
            float* y = static_cast<float*>(o.dst->row(r));
            if (neox) {
                for (int64_t j = 0; j < half; ++j) {
                    const float a = xr[j], bb = xr[j + half];
                    y[j] = a * c[2 * j] - bb * c[2 * j + 1];
                    y[j + half] = a * c[2 * j + 1] + bb * c[2 * j];
                }
            } else {
                for (int64_t j = 0; j < half; ++j) {
                    const float a = xr[2 * j], bb = xr[2 * j + 1];
                    y[2 * j] = a * c[2 * j] - bb * c[2 * j + 1];
                    y[2 * j + 1] = a * c[2 * j + 1] + bb * c[2 * j];
                }
            }
            for (int64_t i = n_rot; i < hd; ++i) y[i] = xr[i];
        }
    }, std::max<int64_t>(1, 4096 / hd));
}

}  // namespace tfu::cpu
