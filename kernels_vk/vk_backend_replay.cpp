// The Vulkan backend's kept command buffers (vk_replay.h): which runs may be kept, recording one the second time
// its key is seen, re-submitting it with the run's KV_STORE/ATTENTION i[0] values written to its parameter
// buffer, and destroying kept runs.
//
// A decode step issues one run() per layer with the same ops every step but for KV_STORE's and ATTENTION's i[0]
// (the position). Recording such a run costs the host a pipeline bind, a descriptor-set lookup, push constants and
// a barrier per dispatch (about 1 us each on lavapipe, ~20 per layer); re-submitting a kept command buffer costs
// one vkQueueSubmit. The kept buffer is the frame's recording made independent of i[0]: KV_STORE launches
// workgroups for the largest word span of its rows at any first row, ATTENTION binds the whole caches, and both
// read i[0] from word `dyn - 1` of binding 4 (the run's own parameter buffer) when their push constant `dyn` is
// not 0. The buffer opens with the same leading barrier as a frame's, so it is ordered like any frame; it is
// submitted in a frame's slot (that frame's queued small uploads first, in the same batch, under its fence).
// The host writes the i[0] words only when the last submission of that buffer has completed (the fence of the
// slot that carried it, if that slot still holds it), so one copy per key suffices: in a decode loop the same
// layer's run comes back a whole step later, after the logits download has waited for everything.
#include <algorithm>
#include <cstring>

#include "backend/replay_key.h"
#include "core/error.h"
#include "vk_backend.h"
#include "vk_ops.h"

namespace tfu::vk {

namespace {
constexpr size_t k_max_kept_ops = 64;  // longer runs are never kept (a decode layer's run is about 20 ops)
constexpr size_t k_seen_keys = 256;    // hashes of keys seen once, remembered for the "seen twice" rule
}  // namespace

bool vk_backend::keepable(const op* ops, size_t n_ops) const {
    if (n_ops > k_max_kept_ops) return false;
    for (size_t i = 0; i < n_ops; ++i)
        if (!replay_safe(*this, ops[i])) return false;
    return true;
}

uint32_t vk_backend::dyn_slot() {
    if (!kept_) return 0;
    TFU_CHECK(dyn_taken_ < kept_->n_dyn);
    return ++dyn_taken_;  // word dyn_taken_ - 1 of the arena, + 1 (0 means "not device-read")
}

// The kept run of this key; recorded now (and kept) when the key was seen once before: a run seen only once
// (a test's op, a prompt's last chunk) is not worth a command buffer, descriptor pool and parameter buffer.
kept_run* vk_backend::kept_for(const op* ops, size_t n_ops) {
    replay_key(ops, n_ops, key_);
    if (kept_run* r = kept_runs_.find(key_)) return r;
    const uint64_t h = tfu::replay_key_hash(key_);
    if (std::find(seen_.begin(), seen_.end(), h) == seen_.end()) {
        if (seen_.size() < k_seen_keys) {
            seen_.push_back(h);
        } else {
            seen_[seen_next_] = h;
            seen_next_ = (seen_next_ + 1) % k_seen_keys;
        }
        return nullptr;
    }
    const fns& f = ctx_->vk();
    VkDevice dev = ctx_->device();
    auto run = std::make_unique<kept_run>();
    run->key = key_;
    uint64_t param_bytes = 0;
    for (size_t i = 0; i < n_ops; ++i) {
        if (reads_i0_on_device(ops[i])) ++run->n_dyn;
        param_bytes += replay_param_bytes(ops[i]);
    }
    const uint64_t dyn_bytes = align_up(uint64_t(run->n_dyn) * 4, 16);
    try {
        VkCommandBufferAllocateInfo ca{};
        ca.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO;
        ca.commandPool = cmd_pool_;
        ca.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
        ca.commandBufferCount = 1;
        check(f.vkAllocateCommandBuffers(dev, &ca, &run->rec.cmd), "vkAllocateCommandBuffers (kept run)");
        // At most max_dispatches(op) per op (replay_safe: no row pieces; a split ATTENTION adds its merge), so
        // that many sets always suffice.
        run->rec.max_sets = 0;
        for (size_t i = 0; i < n_ops; ++i) run->rec.max_sets += max_dispatches(*this, ops[i]);
        VkDescriptorPoolSize ps{};
        ps.type = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
        ps.descriptorCount = run->rec.max_sets * k_n_bindings;
        VkDescriptorPoolCreateInfo dp{};
        dp.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO;
        dp.maxSets = run->rec.max_sets;
        dp.poolSizeCount = 1;
        dp.pPoolSizes = &ps;
        check(f.vkCreateDescriptorPool(dev, &dp, nullptr, &run->rec.pool), "vkCreateDescriptorPool (kept run)");
        run->rec.arena = mem_->create_host_buffer(std::max<uint64_t>(dyn_bytes + param_bytes, 256), false,
                                                  "kept run parameters");
        run->rec.arena_used = dyn_bytes;
        std::memset(run->rec.arena.mapped, 0, size_t(dyn_bytes));
        begin_with_barrier(f, run->rec.cmd, true);
        kept_ = run.get();
        dyn_taken_ = 0;
        const uint64_t d0 = prof_.dispatches, fu0 = prof_.fused, fo0 = prof_.fused_ops;
        record_ops(ops, n_ops);
        kept_ = nullptr;
        TFU_CHECK(dyn_taken_ == run->n_dyn);
        check(f.vkEndCommandBuffer(run->rec.cmd), "vkEndCommandBuffer (kept run)");
        run->n_dispatches = prof_.dispatches - d0;
        run->n_fused = prof_.fused - fu0;
        run->n_fused_ops = prof_.fused_ops - fo0;
    } catch (...) {
        if (kept_) ctx_->vk().vkEndCommandBuffer(run->rec.cmd);  // freed in the recording state otherwise
        kept_ = nullptr;
        destroy_kept(std::move(run));
        throw;
    }
    ++prof_.recorded;
    kept_run* out = run.get();
    if (std::unique_ptr<kept_run> evicted = kept_runs_.insert(std::move(run))) {
        ++prof_.evicted;
        destroy_kept(std::move(evicted));
    }
    return out;
}

void vk_backend::submit_kept(kept_run& run, const op* ops, size_t n_ops) {
    // Its last submission must be complete before the i[0] words change (and before it is submitted again):
    // that is the fence of the slot that carried it, unless the slot has been reused since (then waited for).
    if (run.frame != SIZE_MAX) {
        frame& last = frames_[run.frame];
        if (last.in_flight && last.serial == run.serial) wait_frame(last);
    }
    auto* words = static_cast<uint32_t*>(run.rec.arena.mapped);
    uint32_t k = 0;
    for (size_t i = 0; i < n_ops; ++i)
        if (reads_i0_on_device(ops[i])) words[k++] = uint32_t(ops[i].i[0]);
    TFU_CHECK(k == run.n_dyn);
    open_frame();
    if (run.frame != SIZE_MAX) {  // a replay: count what the recording held
        ++prof_.replayed;
        prof_.dispatches += run.n_dispatches;
        prof_.fused += run.n_fused;
        prof_.fused_ops += run.n_fused_ops;
    }
    submit_frame(&run);
}

void vk_backend::destroy_kept(std::unique_ptr<kept_run> run) noexcept {
    if (!run) return;
    const fns& f = ctx_->vk();
    VkDevice dev = ctx_->device();
    if (run->frame != SIZE_MAX) {
        frame& last = frames_[run->frame];
        try {
            if (last.in_flight && last.serial == run->serial) wait_frame(last);
        } catch (const std::exception& e) {
            log_.logf(TFU_LOG_ERROR, "vulkan: waiting for a kept run before destroying it: %s", e.what());
        }
    }
    if (run->rec.cmd) f.vkFreeCommandBuffers(dev, cmd_pool_, 1, &run->rec.cmd);
    if (run->rec.pool) f.vkDestroyDescriptorPool(dev, run->rec.pool, nullptr);
    mem_->destroy(run->rec.arena);
}

void vk_backend::drop_kept() noexcept {
    for (std::unique_ptr<kept_run>& r : kept_runs_.take_all()) destroy_kept(std::move(r));
    seen_.clear();
    seen_next_ = 0;
}

}  // namespace tfu::vk
