// The module's device-memory bookkeeping, free of Vulkan calls (tested alone in tests/vulkan/test_vk_memory.cpp):
//   range_allocator: first-fit over one chunk [0, size), free list ordered by offset, neighbours coalesced on
//                    release, every range a multiple of 256 bytes at a 256-byte aligned offset;
//   suballocator:    chunks (each one VkDeviceMemory + one VkBuffer in the backend, made through hooks), each
//                    given its own range of a private 64-bit virtual address space starting at 1 << 44, so that an
//                    allocation's address supports pointer arithmetic (base + offset) and resolves back to
//                    (chunk, offset) through an ordered map. The host never dereferences these addresses.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace tfu::vk {

constexpr uint64_t k_alignment = 256;
inline uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }
inline uint64_t align_down(uint64_t x, uint64_t a) { return x / a * a; }

class range_allocator {
public:
    explicit range_allocator(uint64_t size);  // size: a multiple of k_alignment
    // First fit of align_up(bytes, 256) (bytes 0 counts as 256); false if no free range is large enough.
    bool allocate(uint64_t bytes, uint64_t* offset);
    // Gives back a range from allocate (same bytes); merges it with free neighbours.
    void release(uint64_t offset, uint64_t bytes);
    uint64_t size() const { return size_; }
    uint64_t free_bytes() const { return free_bytes_; }
    uint64_t largest_free() const;
    size_t n_free_ranges() const { return free_.size(); }
    bool empty() const { return free_bytes_ == size_; }

private:
    uint64_t size_;
    uint64_t free_bytes_;
    std::map<uint64_t, uint64_t> free_;  // offset -> size, disjoint and never adjacent
};

// Where an address lies: chunk `chunk`, byte `offset` inside it; the allocation spans [alloc_offset, alloc_end).
struct location {
    uint32_t chunk = 0;
    uint64_t offset = 0;
    uint64_t alloc_offset = 0;
    uint64_t alloc_end = 0;
};

// Creates / destroys the device side of a chunk of `bytes` (the backend: VkDeviceMemory + VkBuffer); the id is
// the suballocator's. create throws (OUT_OF_MEMORY) when the device refuses.
struct chunk_hooks {
    std::function<void(uint32_t id, uint64_t bytes)> create;
    std::function<void(uint32_t id)> destroy;
};

class suballocator {
public:
    static constexpr uint64_t k_base_address = uint64_t(1) << 44;
    // chunk_size: the usual chunk (a multiple of 256); a larger request gets a chunk of its own, up to max_chunk.
    suballocator(uint64_t chunk_size, uint64_t max_chunk, chunk_hooks hooks);
    // An address for >= bytes (256-aligned). Throws TFU_STATUS_OUT_OF_MEMORY naming `what` (larger than a
    // device allocation may be, or the device is full).
    uint64_t allocate(uint64_t bytes, const char* what);
    // Frees what allocate returned; false (nothing done) for any other address. Empty chunks are destroyed,
    // except one of the usual size (kept for the next allocation).
    bool release(uint64_t address);
    // Resolves [address, address + bytes) to its chunk; false unless the whole range lies in one live allocation.
    bool resolve(uint64_t address, uint64_t bytes, location* out) const;
    uint64_t chunk_bytes() const;      // device memory held in chunks
    uint64_t allocated_bytes() const { return allocated_; }
    size_t n_chunks() const { return chunks_by_base_.size(); }
    uint64_t chunk_size(uint32_t id) const;

private:
    struct chunk {
        uint64_t base = 0;  // virtual address of offset 0
        bool dedicated = false;
        range_allocator ranges;
        explicit chunk(uint64_t size) : ranges(size) {}
    };
    struct allocation {
        uint32_t chunk;
        uint64_t offset, bytes;
    };
    uint32_t new_chunk(uint64_t bytes, bool dedicated);
    void drop_chunk(uint32_t id);

    uint64_t chunk_size_, max_chunk_;
    chunk_hooks hooks_;
    std::vector<std::unique_ptr<chunk>> chunks_;       // by id; null once destroyed (ids are not reused)
    std::map<uint64_t, uint32_t> chunks_by_base_;      // virtual base -> id
    std::map<uint64_t, allocation> allocations_;       // virtual address -> allocation
    uint64_t next_base_ = k_base_address;
    uint64_t allocated_ = 0;
};

}  // namespace tfu::vk
