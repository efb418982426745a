// graph_key: the replay key of a run's ops (graph_key.h), from backend/replay_key.h's words per op.
#include "graph_key.h"

#include "backend/replay_key.h"

namespace tfu::cuda {

void graph_key(const context& ctx, const op* ops, size_t n_ops, std::vector<uint64_t>& key) {
    key.clear();
    // The scratch buffer's generation: a graph holding an older scratch address (split-K partials) must not run.
    key.push_back(ctx.scratch_generation());
    key.push_back(n_ops);
    for (size_t i = 0; i < n_ops; ++i) {
        const op& o = ops[i];
        const bool split = o.type == op_type::ATTENTION || o.type == op_type::ATTENTION_BLOCKS;
        const int64_t i0 = split ? attention_splits(ctx, o) : reads_i0_on_device(o) ? 0 : o.i[0];
        append_op_key(key, o, uint64_t(i0));
    }
}

}  // namespace tfu::cuda
