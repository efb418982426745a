// The key under which a run's captured graph is kept for replay (graph_cache.h): backend/replay_key.h's words of
// every op, except what the kernels read on the device in a replay (context::dyn_at: KV_STORE's and
// KV_STORE_BLOCKS' first row, ATTENTION's and ATTENTION_BLOCKS' position), in place of which the key holds the
// launch shape that depends on it (the attentions' split-K count), plus the scratch buffer's generation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "cuda_ops.h"

namespace tfu::cuda {

// Writes the key of ops[0 .. n_ops) into `key` (its old contents are replaced).
void graph_key(const context& ctx, const op* ops, size_t n_ops, std::vector<uint64_t>& key);

// Whether op `o`'s i[0] is read on the device in a replayed graph (and so left out of the key).
inline bool reads_i0_on_device(const op& o) {
    switch (o.type) {
        case op_type::KV_STORE:
        case op_type::ATTENTION:
        case op_type::KV_STORE_BLOCKS:
        case op_type::ATTENTION_BLOCKS: return true;
        default: return false;
    }
}

}  // namespace tfu::cuda
