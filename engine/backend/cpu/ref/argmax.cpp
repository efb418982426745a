// ref::argmax: dst (n, i32) = for each column of src0 (k, n) f32 the index of its largest value, with the sampler's
// greedy rules (backend/ops.def): NaN as -inf, +inf as FLT_MAX, ties to the lowest index, -1 if nothing is finite
// or +inf. Written as the plain loop the sampler's greedy_argmax documents itself to equal.
#include <cfloat>
#include <cmath>

#include "backend/cpu/ref/ref_ops.h"

namespace tfu::ref {

namespace {

// The sampler's sanitize(): NaN -> -inf (never chosen), +inf -> FLT_MAX.
float sanitize(float x) {
    if (std::isnan(x)) return -INFINITY;
    if (x == INFINITY) return FLT_MAX;
    return x;
}

}  // namespace

void argmax(const op& o) {
    const tensor& x = *o.src[0];
    int32_t* out = o.dst->ptr<int32_t>();
    const int64_t k = x.ne[0];
    for (int64_t j = 0; j < x.nrows(); ++j) {
        const float* col = static_cast<const float*>(x.row(j));
        int64_t best = 0;
        for (int64_t i = 1; i < k; ++i)
            if (sanitize(col[i]) > sanitize(col[best])) best = i;  // strict: ties keep the lowest index
        out[j] = sanitize(col[best]) == -INFINITY ? -1 : int32_t(best);
    }
}

}  // namespace tfu::ref
