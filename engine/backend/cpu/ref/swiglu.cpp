// ref::swiglu: dst (k, rows) = silu(src0) * src1, silu(x) = x / (1 + exp(-x)).
#include <cmath>

#include "backend/cpu/ref/ref_ops.h"

namespace tfu::ref {

void swiglu(const op& o) {
    const tensor& g = *o.src[0];
    const tensor& u = *o.src[1];
    for (int64_t r = 0; r < g.nrows(); ++r) {
        const float* gr = static_cast<const float*>(g.row(r));
        const float* ur = static_cast<const float*>(u.row(r));
        float* y = static_cast<float*>(o.dst->row(r));
        for (int64_t i = 0; i < g.ne[0]; ++i) {
            const double x = gr[i];
            y[i] = float(x / (1.0 + std::exp(-x)) * ur[i]);
        }
    }
}

}  // namespace tfu::ref
