// Executable CUDA graphs kept for reuse. run() captures a decode-sized run's launches into a graph; this cache
// turns it into a launch of an executable graph: one whose key (the run's ops, graph_key.h) equals the run's is
// launched as it is, without capturing anything (a replay); otherwise a captured graph updates a kept one
// (cudaGraphExecUpdate: same kernels and topology, new parameters) or is instantiated.
//
// Why: a decode step of a 1B model is ~200 small kernels; launched one by one, the host's ~4 us per launch is
// longer than most kernels run, so the GPU waits for the host. Captured, the kernels of one run() reach the GPU
// as one graph launch and run back to back; replayed, the host spends a few microseconds per run() instead of
// a capture and an update per kernel. A decode step's runs (one per layer) differ only in weights and in the
// position, which their kernels read on the device (context::dyn_at), so each layer's run has its own kept graph
// and replays it every step.
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

    // Launches the kept graph whose key equals `key` on `stream` and returns true; false (nothing launched)
    // when none has it.
    bool replay(const std::vector<uint64_t>& key, cudaStream_t stream);

    // Launches `g` (a captured graph; the caller still owns and destroys it) on `stream` through a kept
    // executable graph. With a key: a new instantiation while fewer than k_max_entries are kept, else the least
    // recently used keyed graph that cudaGraphExecUpdate accepts; the key goes with it for replay(). Without one:
    // the most recently used unkeyed graph with as many nodes that accepts the update (runs in a fixed order
    // repeat their shapes), else an instantiation. At capacity the least recently used is dropped. Throws
    // tfu::error on failure.
    void launch(cudaGraph_t g, cudaStream_t stream, const std::vector<uint64_t>* key = nullptr);

    struct counters {
        uint64_t launches = 0, replays = 0, updates = 0, instantiations = 0;
    };
    const counters& stats() const { return stats_; }

    // Most kept executable graphs: a decode step of a 32-layer model keeps one per layer plus the ends.
    static constexpr size_t k_max_entries = 80;

private:
    struct entry {
        cudaGraphExec_t exec;
        size_t n_nodes;
        uint64_t last_use;
        bool keyed;
        uint64_t hash;  // of key
        std::vector<uint64_t> key;
    };
    void run_entry(entry& e, cudaStream_t stream);
    void instantiate(cudaGraph_t g, size_t n_nodes, cudaStream_t stream, const std::vector<uint64_t>* key);

    std::vector<entry> entries_;
    uint64_t clock_ = 0;
    counters stats_;
};

}  // namespace tfu::cuda
