// Replay keys of the GPU backends (replay_key.h).
#include "backend/replay_key.h"

#include <cstring>

#include "backend/kv_block_map.h"

namespace tfu {

namespace {

uint64_t float_bits(float f) {
    uint32_t u = 0;
    std::memcpy(&u, &f, sizeof u);
    return u;
}

void append_tensor(std::vector<uint64_t>& key, const tensor* t) {
    if (!t) {
        key.push_back(0);
        return;
    }
    key.push_back(uint64_t(reinterpret_cast<uintptr_t>(t->data)));
    key.push_back(uint64_t(t->type));
    for (int d = 0; d < 4; ++d) key.push_back(uint64_t(t->ne[d]));
    for (int d = 0; d < 4; ++d) key.push_back(uint64_t(t->nb[d]));
}

}  // namespace

void append_op_key(std::vector<uint64_t>& key, const op& o, uint64_t i0_word) {
    key.push_back(uint64_t(o.type));
    key.push_back(i0_word);
    for (int j = 1; j < 4; ++j) key.push_back(uint64_t(uint32_t(o.i[j])));
    for (int j = 0; j < 4; ++j) key.push_back(float_bits(o.f[j]));
    key.push_back(uint64_t(reinterpret_cast<uintptr_t>(o.ext)));
    // A block map's contents are what the recorded commands take from it (the runtime keeps one map per layer at
    // one address, but a key must not depend on that).
    if ((o.type == op_type::KV_STORE_BLOCKS || o.type == op_type::ATTENTION_BLOCKS) && o.ext) {
        const kv_block_map& m = *static_cast<const kv_block_map*>(o.ext);
        key.push_back(uint64_t(m.k.format) | uint64_t(m.v.format) << 8 | uint64_t(uint32_t(m.k.block_tokens)) << 16 |
                      uint64_t(uint32_t(m.k.head_dim)) << 40);
        key.push_back(uint64_t(uint32_t(m.n_head_kv)) | uint64_t(uint32_t(m.n_blocks)) << 32);
        key.push_back(m.k_offset);
        key.push_back(m.v_offset);
        key.push_back(uint64_t(reinterpret_cast<uintptr_t>(m.blocks)));
    }
    append_tensor(key, o.dst);
    for (const tensor* s : o.src) append_tensor(key, s);
}

uint64_t replay_key_hash(const std::vector<uint64_t>& key) {
    uint64_t h = 1469598103934665603ull;
    for (uint64_t w : key) h = (h ^ w) * 1099511628211ull;
    return h;
}

}  // namespace tfu
