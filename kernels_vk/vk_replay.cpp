// Replay keys and the LRU of kept runs (vk_replay.h).
#include "vk_replay.h"

#include <cstring>
#include <iterator>

namespace tfu::vk {

namespace {

uint64_t fbits(float f) {
    uint32_t u = 0;
    std::memcpy(&u, &f, sizeof u);
    return u;
}

void add_tensor(std::vector<uint64_t>& key, const tensor* t) {
    if (!t) {
        key.push_back(0);
        return;
    }
    key.push_back(uint64_t(reinterpret_cast<uintptr_t>(t->data)));
    key.push_back(uint64_t(t->type));
    for (int d = 0; d < 4; ++d) key.push_back(uint64_t(t->ne[d]));
    for (int d = 0; d < 4; ++d) key.push_back(uint64_t(t->nb[d]));
}

uint64_t mix(uint64_t h, uint64_t w) { return (h ^ w) * 1099511628211ull; }  // FNV-1a step over words

}  // namespace

size_t set_key_hash::operator()(const set_key& k) const noexcept {
    uint64_t h = 1469598103934665603ull;
    for (uint64_t w : k) h = mix(h, w);
    return size_t(h ^ (h >> 29));
}

void replay_key(const op* ops, size_t n_ops, std::vector<uint64_t>& key) {
    key.clear();
    key.push_back(n_ops);
    for (size_t i = 0; i < n_ops; ++i) {
        const op& o = ops[i];
        key.push_back(uint64_t(o.type));
        key.push_back(reads_i0_on_device(o) ? 0 : uint64_t(uint32_t(o.i[0])));
        for (int j = 1; j < 4; ++j) key.push_back(uint64_t(uint32_t(o.i[j])));
        for (int j = 0; j < 4; ++j) key.push_back(fbits(o.f[j]));
        key.push_back(uint64_t(reinterpret_cast<uintptr_t>(o.ext)));
        add_tensor(key, o.dst);
        for (const tensor* s : o.src) add_tensor(key, s);
    }
}

uint64_t replay_key_hash(const std::vector<uint64_t>& key) noexcept {
    uint64_t h = 1469598103934665603ull;
    for (uint64_t w : key) h = mix(h, w);
    return h ^ (h >> 29);
}

kept_run* replay_cache::find(const std::vector<uint64_t>& key) {
    const auto it = index_.find(key);
    if (it == index_.end()) return nullptr;
    list_.splice(list_.begin(), list_, it->second);  // iterators stay valid
    return list_.front().get();
}

std::unique_ptr<kept_run> replay_cache::insert(std::unique_ptr<kept_run> run) {
    std::unique_ptr<kept_run> evicted;
    if (list_.size() >= capacity_ && !list_.empty()) evicted = erase(list_.back().get());
    list_.push_front(std::move(run));
    index_[list_.front()->key] = list_.begin();
    return evicted;
}

std::unique_ptr<kept_run> replay_cache::erase(kept_run* run) {
    const auto it = index_.find(run->key);
    if (it == index_.end()) return nullptr;
    std::unique_ptr<kept_run> out = std::move(*it->second);
    list_.erase(it->second);
    index_.erase(it);
    return out;
}

std::vector<std::unique_ptr<kept_run>> replay_cache::take_all() {
    std::vector<std::unique_ptr<kept_run>> out;
    out.reserve(list_.size());
    for (auto& r : list_) out.push_back(std::move(r));
    list_.clear();
    index_.clear();
    return out;
}

}  // namespace tfu::vk
