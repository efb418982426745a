// Recorded decode runs kept for replay (the Vulkan analogue of CUDA graphs, issue #6): where dispatches are
// recorded (cmd_target: a frame of the submission ring or a kept command buffer), the key of a run (every op
// field, tensor address, shape and stride, except KV_STORE's and ATTENTION's i[0], which the kept command buffer's
// kernels read from its parameter buffer), and a bounded LRU of kept runs. The backend (vk_backend.cpp) creates,
// submits and destroys the Vulkan objects; this file only holds and finds them.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <unordered_map>
#include <vector>

#include "backend/op.h"
#include "vk_device_memory.h"
#include "vk_pipelines.h"

namespace tfu::vk {

// The exact bindings of a dispatch's descriptor set: (buffer, offset, range) of slots 0..3 and 5..8 (slot 4, the
// target's parameter arena, is the same for every set of a target).
using set_key = std::array<uint64_t, 3 * (k_n_bindings - 1)>;
struct set_key_hash {
    size_t operator()(const set_key& k) const noexcept;
};

// Where dispatch() records: a command buffer with its descriptor pool (sets cached by their bindings) and its
// parameter arena (host-visible, binding 4: RoPE tables, paged-KV tables, and in a kept run the device-read
// positions). The handles are created and destroyed by the backend.
struct cmd_target {
    VkCommandBuffer cmd = VK_NULL_HANDLE;
    VkDescriptorPool pool = VK_NULL_HANDLE;
    uint32_t sets_used = 0;
    uint32_t max_sets = 0;
    std::unordered_map<set_key, VkDescriptorSet, set_key_hash> sets;
    gpu_buffer arena;
    uint64_t arena_used = 0;
};

// Whether op o's i[0] is read on the device in a kept run (and so left out of its key): KV_STORE's first cache
// row and ATTENTION's position. Their recorders bind and launch independently of it (vk_ops.cpp).
inline bool reads_i0_on_device(const op& o) { return o.type == op_type::KV_STORE || o.type == op_type::ATTENTION; }

// Writes the key of ops[0 .. n_ops) into `key` (old contents replaced): the op count, then per op the words of
// backend/replay_key.h (type, i[], f[], ext, and every tensor's address, dtype, ne and nb), with i[0] as 0 for
// reads_i0_on_device ops (ATTENTION: its split count instead, attention_splits in vk_ops.h: the recorded launch
// sizes depend on it). Hash with tfu::replay_key_hash (backend/replay_key.h).
void replay_key(const op* ops, size_t n_ops, std::vector<uint64_t>& key);

// One kept run: its command buffer (recorded once, without ONE_TIME_SUBMIT, opening with the same leading
// barrier as a frame's), its own descriptor pool and arena (a frame's are recycled when the ring comes back to
// it; these live as long as the entry). Words 0 .. n_dyn-1 of the arena are the device-read i[0] values, one per
// reads_i0_on_device op in op order, written by the host before each submission (never while the last submission
// is pending: the backend waits for the frame whose fence covers it).
struct kept_run {
    std::vector<uint64_t> key;
    cmd_target rec;
    uint32_t n_dyn = 0;
    uint64_t n_dispatches = 0, n_fused = 0, n_fused_ops = 0;  // what the recording held (profile counters)
    size_t frame = SIZE_MAX;  // ring slot of the last submission (its fence covers it), SIZE_MAX: never submitted
    uint64_t serial = 0;      // that submission's serial number (the slot's in_flight serial while pending)
};

// Kept runs by key, least recently used evicted first (the caller destroys what insert() hands back).
class replay_cache {
public:
    explicit replay_cache(size_t capacity) : capacity_(capacity) {}
    size_t size() const { return list_.size(); }
    size_t capacity() const { return capacity_; }
    // The run kept under `key` (marked most recently used), or nullptr.
    kept_run* find(const std::vector<uint64_t>& key);
    // Keeps `run` (most recently used); when the cache is full the least recently used run is returned to be
    // destroyed by the caller (else nullptr).
    std::unique_ptr<kept_run> insert(std::unique_ptr<kept_run> run);
    // Removes `run` and hands it back (to be destroyed).
    std::unique_ptr<kept_run> erase(kept_run* run);
    // Removes every run and hands them back.
    std::vector<std::unique_ptr<kept_run>> take_all();

private:
    struct key_hash {
        size_t operator()(const std::vector<uint64_t>& k) const noexcept;
    };
    using list_t = std::list<std::unique_ptr<kept_run>>;
    size_t capacity_;
    list_t list_;  // most recently used first
    std::unordered_map<std::vector<uint64_t>, list_t::iterator, key_hash> index_;
};

}  // namespace tfu::vk
