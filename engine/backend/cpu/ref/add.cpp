// ref::add: dst (k, rows) = src0 (k, rows) + src1 (k, rows or 1; broadcast over rows).
#include "backend/cpu/ref/ref_ops.h"

namespace tfu::ref {

void add(const op& o) {
    const tensor& a = *o.src[0];
    const tensor& b = *o.src[1];
    const bool bcast = b.nrows() == 1;
    for (int64_t r = 0; r < a.nrows(); ++r) {
        const float* ar = static_cast<const float*>(a.row(r));
        const float* br = static_cast<const float*>(b.row(bcast ? 0 : r));
        float* y = static_cast<float*>(o.dst->row(r));
        for (int64_t i = 0; i < a.ne[0]; ++i) y[i] = ar[i] + br[i];
    }
}

}  // namespace tfu::ref
