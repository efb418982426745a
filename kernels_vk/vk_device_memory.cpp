// Device-local chunks, host-visible buffers and memory figures of the Vulkan backend (see vk_device_memory.h).
#include "vk_device_memory.h"

#include <algorithm>

#include "core/error.h"

namespace tfu::vk {

namespace {
constexpr VkBufferUsageFlags k_usage =
    VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;
constexpr uint64_t k_usual_chunk = uint64_t(128) << 20;  // 128 MiB
}  // namespace

device_memory::device_memory(context& ctx) : ctx_(ctx) {
    ctx_.vk().vkGetPhysicalDeviceMemoryProperties(ctx_.physical(), &props_);
    uint64_t best = 0;
    for (uint32_t h = 0; h < props_.memoryHeapCount; ++h)
        if ((props_.memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) && props_.memoryHeaps[h].size > best) {
            best = props_.memoryHeaps[h].size;
            device_heap_ = h;
        }
    const device_caps& caps = ctx_.caps();
    // A usual chunk can always be bound whole as one storage buffer (the paged-attention kernel binds windows of
    // chunks); larger tensors get a dedicated chunk up to maxMemoryAllocationSize and are bound in pieces.
    uint64_t max_alloc = caps.max_allocation ? caps.max_allocation : (uint64_t(1) << 31);
    chunk_size_ = align_down(std::min({k_usual_chunk, caps.max_storage_range, max_alloc}), k_alignment);
    if (chunk_size_ == 0) fail(TFU_STATUS_BACKEND_UNAVAILABLE, "vulkan: maxStorageBufferRange is below 256 bytes");
    chunk_hooks hooks;
    hooks.create = [this](uint32_t id, uint64_t bytes) { create_chunk(id, bytes); };
    hooks.destroy = [this](uint32_t id) { destroy_chunk(id); };
    sub_ = std::make_unique<suballocator>(chunk_size_, std::max(chunk_size_, align_down(max_alloc, k_alignment)), hooks);
    ctx_.log().logf(TFU_LOG_DEBUG, "vulkan: device memory: heap %u of %llu MiB, chunks of %llu MiB", device_heap_,
                    (unsigned long long)(best >> 20), (unsigned long long)(chunk_size_ >> 20));
}

device_memory::~device_memory() {
    sub_.reset();  // destroys nothing itself; the chunks are destroyed below
    for (gpu_buffer& b : chunks_) destroy(b);
}

gpu_buffer device_memory::create_buffer(uint64_t bytes, VkMemoryPropertyFlags want, VkMemoryPropertyFlags prefer,
                                        const char* what) {
    const fns& f = ctx_.vk();
    gpu_buffer b;
    b.size = bytes;
    VkBufferCreateInfo bi{};
    bi.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO;
    bi.size = bytes;
    bi.usage = k_usage;
    bi.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
    check(f.vkCreateBuffer(ctx_.device(), &bi, nullptr, &b.buffer), "vkCreateBuffer");
    try {
        VkMemoryRequirements req{};
        f.vkGetBufferMemoryRequirements(ctx_.device(), b.buffer, &req);
        // The first type with all `want` flags and the most `prefer` flags; device-local memory from the largest
        // device-local heap.
        int pick = -1, pick_score = -1;
        for (uint32_t t = 0; t < props_.memoryTypeCount; ++t) {
            const VkMemoryType& mt = props_.memoryTypes[t];
            if (!(req.memoryTypeBits & (1u << t)) || (mt.propertyFlags & want) != want) continue;
            if ((want & VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT) && mt.heapIndex != device_heap_) continue;
            const int score = __builtin_popcount(mt.propertyFlags & prefer);
            if (score > pick_score) {
                pick = int(t);
                pick_score = score;
            }
        }
        if (pick < 0) fail(TFU_STATUS_DEVICE_ERROR, std::string("vulkan: no memory type for ") + what);
        VkMemoryAllocateInfo ai{};
        ai.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO;
        ai.allocationSize = req.size;
        ai.memoryTypeIndex = uint32_t(pick);
        check(f.vkAllocateMemory(ctx_.device(), &ai, nullptr, &b.memory), "vkAllocateMemory");
        check(f.vkBindBufferMemory(ctx_.device(), b.buffer, b.memory, 0), "vkBindBufferMemory");
        const VkMemoryPropertyFlags flags = props_.memoryTypes[pick].propertyFlags;
        b.coherent = flags & VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
        if (want & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT)
            check(f.vkMapMemory(ctx_.device(), b.memory, 0, VK_WHOLE_SIZE, 0, &b.mapped), "vkMapMemory");
    } catch (...) {
        destroy(b);
        throw;
    }
    return b;
}

gpu_buffer device_memory::create_host_buffer(uint64_t bytes, bool readback, const char* what) {
    return create_buffer(bytes, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT,
                         readback ? VK_MEMORY_PROPERTY_HOST_CACHED_BIT : 0, what);
}

gpu_buffer device_memory::create_device_buffer(uint64_t bytes, const char* what) {
    return create_buffer(bytes, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, 0, what);
}

void device_memory::destroy(gpu_buffer& b) noexcept {
    const fns& f = ctx_.vk();
    if (b.mapped) f.vkUnmapMemory(ctx_.device(), b.memory);
    if (b.buffer) f.vkDestroyBuffer(ctx_.device(), b.buffer, nullptr);
    if (b.memory) f.vkFreeMemory(ctx_.device(), b.memory, nullptr);
    b = gpu_buffer{};
}

void device_memory::create_chunk(uint32_t id, uint64_t bytes) {
    if (chunks_.size() <= id) chunks_.resize(id + 1);
    chunks_[id] = create_buffer(bytes, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, 0, "device memory chunk");
    ctx_.log().logf(TFU_LOG_DEBUG, "vulkan: chunk %u: %llu bytes", id, (unsigned long long)bytes);
}

void device_memory::destroy_chunk(uint32_t id) noexcept {
    // The backend waits for in-flight work before freeing (vk_backend::free).
    if (id < chunks_.size()) destroy(chunks_[id]);
}

void device_memory::memory_info(uint64_t* total, uint64_t* free_bytes) const {
    const uint64_t heap = props_.memoryHeaps[device_heap_].size;
    const uint64_t held = sub_->chunk_bytes(), used = sub_->allocated_bytes();
    uint64_t avail = heap > held ? heap - held : 0;  // what more chunks could take
    if (ctx_.caps().memory_budget) {
        VkPhysicalDeviceMemoryBudgetPropertiesEXT budget{};
        budget.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT;
        VkPhysicalDeviceMemoryProperties2 p2{};
        p2.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2;
        p2.pNext = &budget;
        ctx_.vk().vkGetPhysicalDeviceMemoryProperties2(ctx_.physical(), &p2);
        const uint64_t b = budget.heapBudget[device_heap_], u = budget.heapUsage[device_heap_];
        if (b) avail = b > u ? b - u : 0;
    }
    *total = heap;
    *free_bytes = std::min(heap, avail + (held - used));  // plus the unused part of our own chunks
}

}  // namespace tfu::vk
