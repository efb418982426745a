// graph_cache: reuse of executable CUDA graphs by cudaGraphExecUpdate (graph_cache.h).
#include "graph_cache.h"

#include <algorithm>

#include "cuda_ops.h"

namespace tfu::cuda {

graph_cache::~graph_cache() {
    for (const entry& e : entries_) cudaGraphExecDestroy(e.exec);  // launches in flight still complete
}

void graph_cache::launch(cudaGraph_t g, cudaStream_t stream) {
    entries_.reserve(k_max_entries);  // so that keeping a new instantiation below cannot throw
    size_t n_nodes = 0;
    check(cudaGraphGetNodes(g, nullptr, &n_nodes), "cudaGraphGetNodes");
    ++clock_;
    // Most recently used first: the decoder's runs come in a fixed order, so the entry used for this shape last
    // time is the likeliest to accept the update.
    std::vector<entry*> order;
    for (entry& e : entries_)
        if (e.n_nodes == n_nodes) order.push_back(&e);
    std::sort(order.begin(), order.end(), [](const entry* a, const entry* b) { return a->last_use > b->last_use; });
    for (entry* e : order) {
        cudaGraphExecUpdateResultInfo info{};
        const cudaError_t r = cudaGraphExecUpdate(e->exec, g, &info);
        if (r == cudaSuccess) {
            e->last_use = clock_;
            ++stats_.updates;
            ++stats_.launches;
            check(cudaGraphLaunch(e->exec, stream), "cudaGraphLaunch");
            return;
        }
        cudaGetLastError();  // an update that does not fit is not an error of the stream: try the next one
    }
    if (entries_.size() == k_max_entries) {
        auto lru = std::min_element(entries_.begin(), entries_.end(),
                                    [](const entry& a, const entry& b) { return a.last_use < b.last_use; });
        cudaGraphExecDestroy(lru->exec);
        entries_.erase(lru);
    }
    cudaGraphExec_t exec = nullptr;
    check(cudaGraphInstantiate(&exec, g, 0), "cudaGraphInstantiate");
    entries_.push_back({exec, n_nodes, clock_});
    ++stats_.instantiations;
    ++stats_.launches;
    check(cudaGraphLaunch(exec, stream), "cudaGraphLaunch");
}

}  // namespace tfu::cuda
