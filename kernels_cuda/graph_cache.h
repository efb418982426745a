// Executable CUDA graphs kept for reuse: run() captures a decode-sized run's launches into a graph, and this cache
// turns it into a launch of an executable graph it already has (cudaGraphExecUpdate: same kernels and topology,
// new parameters, e.g. the next layer's weights or the next position) or instantiates a new one.
//
// Why: a decode step of a 1B model is ~200 small kernels; launched one by one, the host's ~4 us per launch is
// longer than most kernels run, so the GPU waits for the host. Captured, the kernels of one run() reach the GPU
// as one graph launch and run back to back.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace tfu::cuda {

class graph_cache {
public:
    graph_cache() = default;
    ~graph_cache();
    graph_cache(const graph_cache&) = delete;
    graph_cache& operator=(const graph_cache&) = delete;

    // Launches `g` (a captured graph; the caller still owns and destroys it) on `stream` through a cached
    // executable graph: the most recently used one with as many nodes that cudaGraphExecUpdate accepts, else a new
    // instantiation (the least recently used of k_max_entries is dropped). Throws tfu::error on failure.
    void launch(cudaGraph_t g, cudaStream_t stream);

    struct counters {
        uint64_t launches = 0, updates = 0, instantiations = 0;
    };
    const counters& stats() const { return stats_; }

private:
    struct entry {
        cudaGraphExec_t exec;
        size_t n_nodes;
        uint64_t last_use;
    };
    static constexpr size_t k_max_entries = 16;
    std::vector<entry> entries_;
    uint64_t clock_ = 0;
    counters stats_;
};

}  // namespace tfu::cuda
