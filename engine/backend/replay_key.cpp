// Replay keys of the GPU backends (replay_key.h).
#include "backend/replay_key.h"

#include <cstring>

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
    append_tensor(key, o.dst);
    for (const tensor* s : o.src) append_tensor(key, s);
}

uint64_t replay_key_hash(const std::vector<uint64_t>& key) {
    uint64_t h = 1469598103934665603ull;
    for (uint64_t w : key) h = (h ^ w) * 1099511628211ull;
    return h;
}

}  // namespace tfu
