// Device memory of the Vulkan backend: device-local chunks (one VkDeviceMemory + one VkBuffer each) handed out by
// the suballocator of vk_memory.h, and host-visible buffers (staging for upload/download, the per-submission
// parameter arena). Addresses are the suballocator's virtual addresses; resolve() maps them to (VkBuffer, offset).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "vk_context.h"
#include "vk_memory.h"

namespace tfu::vk {

// A buffer with its own memory; mapped is non-null for host-visible ones (mapped for their whole life).
struct gpu_buffer {
    VkBuffer buffer = VK_NULL_HANDLE;
    VkDeviceMemory memory = VK_NULL_HANDLE;
    uint64_t size = 0;
    void* mapped = nullptr;
    bool coherent = true;
};

class device_memory {
public:
    explicit device_memory(context& ctx);
    ~device_memory();
    device_memory(const device_memory&) = delete;
    device_memory& operator=(const device_memory&) = delete;

    uint64_t allocate(uint64_t bytes, const char* what) { return sub_->allocate(bytes, what); }
    bool release(uint64_t address) { return sub_->release(address); }
    bool resolve(uint64_t address, uint64_t bytes, location* out) const { return sub_->resolve(address, bytes, out); }
    VkBuffer chunk_buffer(uint32_t chunk) const { return chunks_[chunk].buffer; }
    uint64_t chunk_size(uint32_t chunk) const { return chunks_[chunk].size; }
    void memory_info(uint64_t* total, uint64_t* free_bytes) const;
    uint64_t usual_chunk_size() const { return chunk_size_; }

    // A host-visible, host-coherent buffer of `bytes` (prefers cached memory when `readback`), usable as
    // storage buffer and transfer source/destination; throws OUT_OF_MEMORY / DEVICE_ERROR.
    gpu_buffer create_host_buffer(uint64_t bytes, bool readback, const char* what);
    // A small device-local buffer (the placeholder bound to descriptor slots an op does not use).
    gpu_buffer create_device_buffer(uint64_t bytes, const char* what);
    void destroy(gpu_buffer& b) noexcept;

private:
    gpu_buffer create_buffer(uint64_t bytes, VkMemoryPropertyFlags want, VkMemoryPropertyFlags prefer, const char* what);
    void create_chunk(uint32_t id, uint64_t bytes);
    void destroy_chunk(uint32_t id) noexcept;

    context& ctx_;
    VkPhysicalDeviceMemoryProperties props_{};
    uint32_t device_heap_ = 0;        // the largest device-local heap
    uint64_t chunk_size_ = 0;
    std::vector<gpu_buffer> chunks_;  // by suballocator chunk id
    std::unique_ptr<suballocator> sub_;
};

}  // namespace tfu::vk
