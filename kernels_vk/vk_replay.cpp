// Replay keys and the LRU of kept runs (vk_replay.h).
#include "vk_replay.h"

#include "backend/replay_key.h"
#include "vk_ops.h"

namespace tfu::vk {

namespace {
uint64_t mix(uint64_t h, uint64_t w) { return (h ^ w) * 1099511628211ull; }  // FNV-1a step over words

// What stands for o's i[0] in the key: ATTENTION's split count (the recorded launch sizes and the merge depend on
// it; its ranges follow the n_past read on the device), 0 for KV_STORE (read on the device), else i[0] itself.
uint64_t word_for_i0(const op& o) {
    if (o.type == op_type::ATTENTION) return attention_splits(o);
    return reads_i0_on_device(o) ? 0 : uint64_t(uint32_t(o.i[0]));
}
}  // namespace

size_t set_key_hash::operator()(const set_key& k) const noexcept {
    uint64_t h = 1469598103934665603ull;
    for (uint64_t w : k) h = mix(h, w);
    return size_t(h ^ (h >> 29));
}

void replay_key(const op* ops, size_t n_ops, std::vector<uint64_t>& key) {
    key.clear();
    key.push_back(n_ops);
    for (size_t i = 0; i < n_ops; ++i) append_op_key(key, ops[i], word_for_i0(ops[i]));
}

size_t replay_cache::key_hash::operator()(const std::vector<uint64_t>& k) const noexcept {
    return size_t(tfu::replay_key_hash(k));
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
