// Fast CPU ARGMAX (backend/ops.def): per column, eight running maxima (independent max instructions the compiler
// vectorises; NaN never wins a `>`), then the first index holding the maximum; +inf and FLT_MAX are equal under
// the sampler's rules, so when either is the maximum the first of both wins. Parallel over columns.
#include <algorithm>
#include <cfloat>
#include <cmath>

#include "backend/cpu/cpu_ops.h"

namespace tfu::cpu {

namespace {

float sanitize(float x) {
    if (std::isnan(x)) return -INFINITY;
    if (x == INFINITY) return FLT_MAX;
    return x;
}

int32_t argmax_column(const float* l, int64_t n) {
    float acc[8];
    for (float& a : acc) a = -INFINITY;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; ++j) acc[j] = l[i + j] > acc[j] ? l[i + j] : acc[j];
    float m = -INFINITY;
    for (; i < n; ++i) m = l[i] > m ? l[i] : m;
    for (float a : acc) m = a > m ? a : m;
    if (m == -INFINITY) return -1;  // every value NaN or -inf
    if (m != INFINITY && m != FLT_MAX) {
        for (int64_t k = 0; k < n; ++k)
            if (l[k] == m) return int32_t(k);  // == also matches -0 against +0: the lowest index, as the ref
    }
    const float sm = sanitize(m);
    for (int64_t k = 0; k < n; ++k)
        if (sanitize(l[k]) == sm) return int32_t(k);
    return -1;
}

}  // namespace

void argmax(context& ctx, const op& o) {
    const tensor& x = *o.src[0];
    int32_t* out = o.dst->ptr<int32_t>();
    const int64_t k = x.ne[0];
    ctx.pool.parallel_for(
        x.nrows(),
        [&](int64_t b, int64_t e, int) {
            for (int64_t j = b; j < e; ++j) out[j] = argmax_column(static_cast<const float*>(x.row(j)), k);
        },
        std::max<int64_t>(1, 65536 / std::max<int64_t>(1, k)));
}

}  // namespace tfu::cpu
