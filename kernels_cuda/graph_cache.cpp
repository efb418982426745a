// graph_cache: replay of kept executable CUDA graphs by key, and reuse by cudaGraphExecUpdate (graph_cache.h).
#include "graph_cache.h"

#include <algorithm>

#include "backend/replay_key.h"
#include "cuda_ops.h"

namespace tfu::cuda {

graph_cache::~graph_cache() {
    for (const entry& e : entries_) cudaGraphExecDestroy(e.exec);  // launches in flight still complete
}

void graph_cache::run_entry(entry& e, cudaStream_t stream) {
    e.last_use = ++clock_;
    ++stats_.launches;
    check(cudaGraphLaunch(e.exec, stream), "cudaGraphLaunch");
}

bool graph_cache::replay(const std::vector<uint64_t>& key, cudaStream_t stream) {
    const uint64_t h = replay_key_hash(key);
    for (entry& e : entries_) {
        if (!e.keyed || e.hash != h || e.key != key) continue;
        ++stats_.replays;
        run_entry(e, stream);
        return true;
    }
    return false;
}

void graph_cache::instantiate(cudaGraph_t g, size_t n_nodes, cudaStream_t stream, const std::vector<uint64_t>* key) {
    entries_.reserve(k_max_entries);  // so that keeping the new instantiation below cannot throw
    if (entries_.size() == k_max_entries) {
        auto lru = std::min_element(entries_.begin(), entries_.end(),
                                    [](const entry& a, const entry& b) { return a.last_use < b.last_use; });
        cudaGraphExecDestroy(lru->exec);
        entries_.erase(lru);
    }
    cudaGraphExec_t exec = nullptr;
    check(cudaGraphInstantiate(&exec, g, 0), "cudaGraphInstantiate");
    entries_.push_back(
        {exec, n_nodes, 0, key != nullptr, key ? replay_key_hash(*key) : 0, key ? *key : std::vector<uint64_t>{}});
    ++stats_.instantiations;
    run_entry(entries_.back(), stream);
}

void graph_cache::launch(cudaGraph_t g, cudaStream_t stream, const std::vector<uint64_t>* key) {
    size_t n_nodes = 0;
    check(cudaGraphGetNodes(g, nullptr, &n_nodes), "cudaGraphGetNodes");
    const bool keyed = key != nullptr;
    if (keyed && entries_.size() < k_max_entries) return instantiate(g, n_nodes, stream, key);
    // Candidates for an update: keyed runs take the least recently used keyed graph (the others are likely to
    // be replayed soon); unkeyed ones the most recently used unkeyed graph (the decoder's runs come in a fixed
    // order, so the one used for this shape last time is the likeliest to accept).
    std::vector<entry*> order;
    for (entry& e : entries_)
        if (e.n_nodes == n_nodes && e.keyed == keyed) order.push_back(&e);
    std::sort(order.begin(), order.end(), [keyed](const entry* a, const entry* b) {
        return keyed ? a->last_use < b->last_use : a->last_use > b->last_use;
    });
    for (entry* e : order) {
        cudaGraphExecUpdateResultInfo info{};
        if (cudaGraphExecUpdate(e->exec, g, &info) != cudaSuccess) {
            cudaGetLastError();  // an update that does not fit is not an error of the stream: try the next one
            continue;
        }
        if (keyed) {  // unkeyed until the new key is in place, so that a failed copy cannot leave the old one
            e->keyed = false;
            e->key = *key;
            e->hash = replay_key_hash(*key);
            e->keyed = true;
        }
        ++stats_.updates;
        run_entry(*e, stream);
        return;
    }
    instantiate(g, n_nodes, stream, key);
}

}  // namespace tfu::cuda
