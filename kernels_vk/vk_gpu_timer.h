// GPU time per dispatch, from timestamp queries (env TFU_VK_PROFILE=gpu): where a decode step's device time goes,
// which the host-side profile (TFU_VK_PROFILE=1) cannot say. Each frame of the submission ring gets a query pool;
// its command buffer writes a stamp when it starts (after the leading barrier: every earlier submission is done)
// and one after each dispatch's trailing barrier (the dispatch and everything before it are done). The interval
// between two stamps is the dispatch's time on the GPU, its launch and the barrier's drain included (the
// dispatches of one command buffer run one after another: a global barrier follows each). The interval between
// the last stamp of one submission and the first of the next is time the GPU waited for the host (idle). Labels
// are the shader's name and the workgroup count, so the q/k/v launch and the lm_head's show apart.
//
// Costs a stamp per dispatch and a read-back per frame: only for measuring. The backend turns kept command
// buffers off while it runs (their stamps would need a pool per kept run), so replay's host savings do not show
// in the idle time.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "vk_context.h"

namespace tfu::vk {

class gpu_timer {
public:
    // n_slots query pools of k_stamps queries. Throws UNSUPPORTED when the compute queue has no timestamps.
    gpu_timer(const context& ctx, size_t n_slots);
    ~gpu_timer();
    gpu_timer(const gpu_timer&) = delete;
    gpu_timer& operator=(const gpu_timer&) = delete;

    // Recording into slot `slot`'s command buffer cb, right after its leading barrier: resets the slot's queries
    // and writes its first stamp.
    void begin(VkCommandBuffer cb, size_t slot);
    // After a dispatch and its barrier: a stamp for `label` (dropped, and counted, past k_stamps per slot).
    void mark(VkCommandBuffer cb, size_t slot, std::string label);
    // After the slot's submission (number `serial`) completed: reads its stamps and adds each interval to its
    // label. A slot that began nothing since its last collect is skipped.
    void collect(size_t slot, uint64_t serial);
    // The table: per label, count, total ms, mean us and share of the dispatch time; then the submissions, the
    // GPU time inside them and the idle time between consecutive ones.
    std::vector<std::string> report() const;

private:
    void destroy_pools() noexcept;

    static constexpr uint32_t k_stamps = 4096;
    struct slot_state {
        VkQueryPool pool = VK_NULL_HANDLE;
        std::vector<std::string> labels;  // labels[i]: the interval ending at stamp i + 1
        bool begun = false;
        uint32_t dropped = 0;
    };
    struct total {
        uint64_t count = 0;
        double ns = 0;
    };
    const context& ctx_;
    double ns_per_tick_;
    uint64_t mask_;
    std::vector<slot_state> slots_;
    std::map<std::string, total> totals_;
    uint64_t dropped_ = 0;
    // Per completed submission: serial, first and last stamp (ticks); idle time is computed between serials n, n+1.
    struct span {
        uint64_t serial, first, last;
    };
    std::vector<span> spans_;
};

}  // namespace tfu::vk
