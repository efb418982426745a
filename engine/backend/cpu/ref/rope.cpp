// ref::rope: rotary position embedding (arXiv 2104.09864). dst (hd, n_head, n) = src0 rotated at positions
// src1 (n, i32). Pair j (0 <= j < n_rot/2) is (2j, 2j+1) in mode 0 and (j, j + n_rot/2) in mode 2 (neox);
// theta_j = pos * freq_scale * freq_base^(-2j/n_rot) / factor_j (factors src2, optional); dims >= n_rot copied.
#include <cmath>

#include "backend/cpu/ref/ref_ops.h"

namespace tfu::ref {

void rope(const op& o) {
    const tensor& x = *o.src[0];
    const int32_t* pos = o.src[1]->ptr<int32_t>();
    const float* factors = o.src[2] ? o.src[2]->ptr<float>() : nullptr;
    const int64_t hd = x.ne[0], n_head = x.ne[1], n = x.ne[2];
    const int n_rot = o.i[0];
    const bool neox = o.i[1] == 2;
    const double base = o.f[0], freq_scale = o.f[1];
    for (int64_t t = 0; t < n; ++t) {
        for (int64_t h = 0; h < n_head; ++h) {
            const int64_t r = t * n_head + h;
            const float* xr = static_cast<const float*>(x.row(r));
            float* y = static_cast<float*>(o.dst->row(r));
            for (int j = 0; j < n_rot / 2; ++j) {
                double theta = double(pos[t]) * freq_scale * std::pow(base, -2.0 * j / n_rot);
                if (factors) theta /= double(factors[j]);
                const double c = std::cos(theta), s = std::sin(theta);
                const int i0 = neox ? j : 2 * j;
                const int i1 = neox ? j + n_rot / 2 : 2 * j + 1;
                const double a = xr[i0], b = xr[i1];
                y[i0] = float(a * c - b * s);
                y[i1] = float(a * s + b * c);
            }
            for (int64_t i = n_rot; i < hd; ++i) y[i] = xr[i];
        }
    }
}

}  // namespace tfu::ref
