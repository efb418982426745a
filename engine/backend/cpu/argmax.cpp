// Fast CPU ARGMAX (backend/ops.def): per column, the sampler's own greedy pick (core/greedy_argmax.h: eight
// running maxima, then the first index holding the maximum), parallel over columns.
#include <algorithm>

#include "backend/cpu/cpu_ops.h"
#include "core/greedy_argmax.h"

namespace tfu::cpu {

void argmax(context& ctx, const op& o) {
    const tensor& x = *o.src[0];
    int32_t* out = o.dst->ptr<int32_t>();
    const int64_t k = x.ne[0];
    ctx.pool.parallel_for(
        x.nrows(),
        [&](int64_t b, int64_t e, int) {
            for (int64_t j = b; j < e; ++j) out[j] = int32_t(greedy_argmax(static_cast<const float*>(x.row(j)), k));
        },
        std::max<int64_t>(1, 65536 / std::max<int64_t>(1, k)));
}

}  // namespace tfu::cpu
