// graph_key: the replay key of a run's ops (graph_key.h).
#include "graph_key.h"

#include <cstring>

namespace tfu::cuda {

namespace {

uint64_t bits(float f) {
    uint32_t u = 0;
    std::memcpy(&u, &f, sizeof u);
    return u;
}

void add_tensor(std::vector<uint64_t>& key, const tensor* t) {
    if (!t) {
        key.push_back(0);
        return;
    }
    key.push_back(reinterpret_cast<uintptr_t>(t->data));
    key.push_back(uint64_t(t->type));
    for (int d = 0; d < 4; ++d) key.push_back(uint64_t(t->ne[d]));
    for (int d = 0; d < 4; ++d) key.push_back(uint64_t(t->nb[d]));
}

}  // namespace

void graph_key(const context& ctx, const op* ops, size_t n_ops, std::vector<uint64_t>& key) {
    key.clear();
    // The scratch buffer's generation: a graph holding an older scratch address (split-K partials) must not run.
    key.push_back(ctx.scratch_generation());
    key.push_back(n_ops);
    for (size_t i = 0; i < n_ops; ++i) {
        const op& o = ops[i];
        key.push_back(uint64_t(o.type));
        const int64_t i0 = o.type == op_type::ATTENTION ? attention_splits(ctx, o) : reads_i0_on_device(o) ? 0 : o.i[0];
        key.push_back(uint64_t(i0));
        for (int j = 1; j < 4; ++j) key.push_back(uint64_t(uint32_t(o.i[j])));
        for (int j = 0; j < 4; ++j) key.push_back(bits(o.f[j]));
        key.push_back(reinterpret_cast<uintptr_t>(o.ext));
        add_tensor(key, o.dst);
        for (const tensor* s : o.src) add_tensor(key, s);
    }
}

}  // namespace tfu::cuda
