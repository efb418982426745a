// GPU time per dispatch from timestamp queries (see vk_gpu_timer.h).
#include "vk_gpu_timer.h"

#include <algorithm>
#include <cstdio>

#include "core/error.h"

namespace tfu::vk {

gpu_timer::gpu_timer(const context& ctx, size_t n_slots) : ctx_(ctx) {
    const device_caps& caps = ctx.caps();
    if (caps.timestamp_bits == 0 || caps.timestamp_period_ns <= 0)
        fail(TFU_STATUS_UNSUPPORTED, "vulkan: the compute queue of " + caps.name + " has no timestamps");
    ns_per_tick_ = double(caps.timestamp_period_ns);
    mask_ = caps.timestamp_bits >= 64 ? ~uint64_t(0) : (uint64_t(1) << caps.timestamp_bits) - 1;
    slots_.resize(n_slots);
    VkQueryPoolCreateInfo qi{};
    qi.sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO;
    qi.queryType = VK_QUERY_TYPE_TIMESTAMP;
    qi.queryCount = k_stamps;
    for (slot_state& s : slots_) {
        const VkResult r = ctx.vk().vkCreateQueryPool(ctx.device(), &qi, nullptr, &s.pool);
        if (r != VK_SUCCESS) {
            destroy_pools();  // the ones created so far (a throwing constructor runs no destructor)
            check(r, "vkCreateQueryPool");
        }
    }
}

gpu_timer::~gpu_timer() { destroy_pools(); }

void gpu_timer::destroy_pools() noexcept {
    for (slot_state& s : slots_) {
        if (s.pool) ctx_.vk().vkDestroyQueryPool(ctx_.device(), s.pool, nullptr);
        s.pool = VK_NULL_HANDLE;
    }
}

void gpu_timer::begin(VkCommandBuffer cb, size_t slot) {
    slot_state& s = slots_[slot];
    ctx_.vk().vkCmdResetQueryPool(cb, s.pool, 0, k_stamps);
    ctx_.vk().vkCmdWriteTimestamp(cb, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, s.pool, 0);
    s.labels.clear();
    s.begun = true;
}

void gpu_timer::mark(VkCommandBuffer cb, size_t slot, std::string label) {
    slot_state& s = slots_[slot];
    if (!s.begun) return;
    if (s.labels.size() + 1 >= k_stamps) {
        ++s.dropped;
        return;
    }
    s.labels.push_back(std::move(label));
    ctx_.vk().vkCmdWriteTimestamp(cb, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, s.pool, uint32_t(s.labels.size()));
}

void gpu_timer::collect(size_t slot, uint64_t serial) {
    slot_state& s = slots_[slot];
    if (!s.begun) return;
    s.begun = false;
    dropped_ += s.dropped;
    s.dropped = 0;
    const uint32_t n = uint32_t(s.labels.size()) + 1;
    std::vector<uint64_t> t(n);
    check(ctx_.vk().vkGetQueryPoolResults(ctx_.device(), s.pool, 0, n, n * sizeof(uint64_t), t.data(),
                                          sizeof(uint64_t), VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT),
          "vkGetQueryPoolResults");
    for (uint32_t i = 1; i < n; ++i) {
        total& tot = totals_[s.labels[i - 1]];
        ++tot.count;
        tot.ns += double((t[i] - t[i - 1]) & mask_) * ns_per_tick_;
    }
    spans_.push_back({serial, t[0] & mask_, t[n - 1] & mask_});
}

std::vector<std::string> gpu_timer::report() const {
    std::vector<std::string> lines;
    char buf[256];
    double all_ns = 0;
    for (const auto& [label, tot] : totals_) all_ns += tot.ns;
    std::vector<std::pair<std::string, total>> rows(totals_.begin(), totals_.end());
    std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.ns > b.second.ns; });
    std::snprintf(buf, sizeof buf, "vulkan: gpu time: %.3f ms in dispatches (%llu stamps dropped); per label:",
                  all_ns * 1e-6, (unsigned long long)dropped_);
    lines.emplace_back(buf);
    for (const auto& [label, tot] : rows) {
        std::snprintf(buf, sizeof buf, "vulkan: gpu time: %-40s %8llu x %9.2f us = %10.3f ms (%5.1f%%)",
                      label.c_str(), (unsigned long long)tot.count, tot.ns * 1e-3 / double(tot.count),
                      tot.ns * 1e-6, all_ns > 0 ? 100.0 * tot.ns / all_ns : 0.0);
        lines.emplace_back(buf);
    }
    // Idle: between submissions with consecutive serials (both timed), the GPU waiting for the host.
    std::vector<span> spans = spans_;
    std::sort(spans.begin(), spans.end(), [](const span& a, const span& b) { return a.serial < b.serial; });
    double inside_ns = 0, idle_ns = 0;
    uint64_t gaps = 0;
    for (size_t i = 0; i < spans.size(); ++i) {
        inside_ns += double((spans[i].last - spans[i].first) & mask_) * ns_per_tick_;
        if (i > 0 && spans[i].serial == spans[i - 1].serial + 1) {
            // A later submission's first stamp may precede the earlier's last only by clock noise: count as 0.
            const int64_t d = int64_t(spans[i].first - spans[i - 1].last);
            idle_ns += d > 0 ? double(d) * ns_per_tick_ : 0.0;
            ++gaps;
        }
    }
    std::snprintf(buf, sizeof buf,
                  "vulkan: gpu time: %zu timed submissions, %.3f ms inside them; %.3f ms idle across %llu gaps "
                  "between consecutive ones (%.2f us each)",
                  spans.size(), inside_ns * 1e-6, idle_ns * 1e-6, (unsigned long long)gaps,
                  gaps ? idle_ns * 1e-3 / double(gaps) : 0.0);
    lines.emplace_back(buf);
    return lines;
}

}  // namespace tfu::vk
