// ref::rms_norm: dst (k, rows) = src0 / sqrt(mean(src0^2) + eps) * src1 (k), eps = f[0].
#include <cmath>

#include "backend/cpu/ref/ref_ops.h"

namespace tfu::ref {

void rms_norm(const op& o) {
    const tensor& x = *o.src[0];
    const float* g = o.src[1]->ptr<float>();
    const int64_t k = x.ne[0];
    for (int64_t r = 0; r < x.nrows(); ++r) {
        const float* xr = static_cast<const float*>(x.row(r));
        float* y = static_cast<float*>(o.dst->row(r));
        double ss = 0;
        for (int64_t i = 0; i < k; ++i) ss += double(xr[i]) * xr[i];
        const double scale = 1.0 / std::sqrt(ss / double(k) + double(o.f[0]));
        for (int64_t i = 0; i < k; ++i) y[i] = float(xr[i] * scale * g[i]);
    }
}

}  // namespace tfu::ref
