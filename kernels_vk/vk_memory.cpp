// First-fit range allocator and the chunked sub-allocator with its private address space (see vk_memory.h).
#include "vk_memory.h"

#include <iterator>

#include "core/error.h"

namespace tfu::vk {

range_allocator::range_allocator(uint64_t size) : size_(size), free_bytes_(size) {
    if (size == 0 || size % k_alignment != 0)
        fail(TFU_STATUS_INTERNAL, "vulkan: chunk size " + std::to_string(size) + " is not a positive multiple of 256");
    free_[0] = size;
}

bool range_allocator::allocate(uint64_t bytes, uint64_t* offset) {
    const uint64_t need = align_up(bytes ? bytes : 1, k_alignment);
    for (auto it = free_.begin(); it != free_.end(); ++it) {
        if (it->second < need) continue;
        *offset = it->first;
        const uint64_t rest = it->second - need;
        const uint64_t rest_at = it->first + need;
        free_.erase(it);
        if (rest) free_[rest_at] = rest;
        free_bytes_ -= need;
        return true;
    }
    return false;
}

void range_allocator::release(uint64_t offset, uint64_t bytes) {
    uint64_t size = align_up(bytes ? bytes : 1, k_alignment);
    TFU_CHECK(offset % k_alignment == 0 && offset + size <= size_);
    free_bytes_ += size;
    auto next = free_.lower_bound(offset);
    TFU_CHECK(next == free_.end() || next->first >= offset + size);  // no overlap with a free range
    if (next != free_.end() && next->first == offset + size) {  // merge with the following range
        size += next->second;
        next = free_.erase(next);
    }
    if (next != free_.begin()) {
        auto prev = std::prev(next);
        TFU_CHECK(prev->first + prev->second <= offset);
        if (prev->first + prev->second == offset) {  // merge with the preceding range
            prev->second += size;
            return;
        }
    }
    free_[offset] = size;
}

uint64_t range_allocator::largest_free() const {
    uint64_t best = 0;
    for (const auto& [off, sz] : free_) best = sz > best ? sz : best;
    return best;
}

suballocator::suballocator(uint64_t chunk_size, uint64_t max_chunk, chunk_hooks hooks)
    : chunk_size_(align_down(chunk_size, k_alignment)), max_chunk_(align_down(max_chunk, k_alignment)),
      hooks_(std::move(hooks)) {
    TFU_CHECK(chunk_size_ > 0 && max_chunk_ >= chunk_size_);
}

uint32_t suballocator::new_chunk(uint64_t bytes, bool dedicated) {
    const uint32_t id = uint32_t(chunks_.size());
    auto c = std::make_unique<chunk>(bytes);
    c->base = next_base_;
    c->dedicated = dedicated;
    hooks_.create(id, bytes);  // throws OUT_OF_MEMORY when the device refuses; nothing recorded then
    // The next chunk starts past this one with a gap of at least 1 MiB, so an address just past an allocation's end
    // never resolves into another chunk.
    next_base_ = align_up(next_base_ + bytes + (uint64_t(1) << 20), uint64_t(1) << 20);
    chunks_by_base_[c->base] = id;
    chunks_.push_back(std::move(c));
    return id;
}

void suballocator::drop_chunk(uint32_t id) {
    chunks_by_base_.erase(chunks_[id]->base);
    chunks_[id].reset();
    hooks_.destroy(id);
}

uint64_t suballocator::allocate(uint64_t bytes, const char* what) {
    const uint64_t need = align_up(bytes ? bytes : 1, k_alignment);
    if (need > max_chunk_)
        fail(TFU_STATUS_OUT_OF_MEMORY, std::string(what) + ": " + std::to_string(bytes) +
                                           " bytes is more than one Vulkan allocation may hold (" +
                                           std::to_string(max_chunk_) + ")");
    uint32_t id = UINT32_MAX;
    uint64_t offset = 0;
    if (need <= chunk_size_) {
        for (const auto& [base, cid] : chunks_by_base_)
            if (!chunks_[cid]->dedicated && chunks_[cid]->ranges.allocate(need, &offset)) {
                id = cid;
                break;
            }
    }
    if (id == UINT32_MAX) {
        const bool dedicated = need > chunk_size_;
        try {
            id = new_chunk(dedicated ? need : chunk_size_, dedicated);
        } catch (const error& e) {
            fail(e.status(), std::string(what) + ": cannot allocate " + std::to_string(bytes) + " bytes of device memory (" +
                                 e.what() + ")");
        }
        TFU_CHECK(chunks_[id]->ranges.allocate(need, &offset));
    }
    const uint64_t address = chunks_[id]->base + offset;
    allocations_[address] = allocation{id, offset, need};
    allocated_ += need;
    return address;
}

bool suballocator::release(uint64_t address) {
    auto it = allocations_.find(address);
    if (it == allocations_.end()) return false;
    const allocation a = it->second;
    allocations_.erase(it);
    allocated_ -= a.bytes;
    chunk& c = *chunks_[a.chunk];
    c.ranges.release(a.offset, a.bytes);
    if (c.ranges.empty()) {
        // Keep one empty chunk of the usual size for the next allocation; drop dedicated and surplus ones.
        bool other_usual = false;
        for (const auto& [base, cid] : chunks_by_base_)
            if (cid != a.chunk && !chunks_[cid]->dedicated) other_usual = true;
        if (c.dedicated || other_usual) drop_chunk(a.chunk);
    }
    return true;
}

bool suballocator::resolve(uint64_t address, uint64_t bytes, location* out) const {
    auto it = allocations_.upper_bound(address);
    if (it == allocations_.begin()) return false;
    --it;  // the allocation starting at or before address
    const uint64_t start = it->first;
    const allocation& a = it->second;
    if (address - start > a.bytes || bytes > a.bytes - (address - start)) return false;
    out->chunk = a.chunk;
    out->offset = a.offset + (address - start);
    out->alloc_offset = a.offset;
    out->alloc_end = a.offset + a.bytes;
    return true;
}

uint64_t suballocator::chunk_bytes() const {
    uint64_t n = 0;
    for (const auto& [base, id] : chunks_by_base_) n += chunks_[id]->ranges.size();
    return n;
}

uint64_t suballocator::chunk_size(uint32_t id) const {
    TFU_CHECK(id < chunks_.size() && chunks_[id]);
    return chunks_[id]->ranges.size();
}

}  // namespace tfu::vk
