// The KV block pool: chunked allocation under a byte cap, free list, refcounts, cached prefix blocks (LRU), the
// prefix-hash map and accounting (see block_pool.h).
#include "kv/block_pool.h"

#include <cstring>
#include <new>
#include <string>

#include "core/error.h"

namespace tfu {

namespace {

constexpr size_t k_align = 64;
constexpr int32_t k_max_chunks = 1 << 20;

// splitmix64's finaliser (Steele, Lea, Flood 2014): a full-avalanche 64-bit mix.
uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

}  // namespace

uint64_t kv_prefix_hash(uint64_t prev, const int32_t* tokens, int32_t n) {
    uint64_t h = mix64(prev ^ (uint64_t(uint32_t(n)) << 32));
    for (int32_t i = 0; i < n; ++i) h = mix64(h + 0x9e3779b97f4a7c15ull + uint64_t(uint32_t(tokens[i])));
    return h;
}

kv_block_pool::kv_block_pool(const kv_pool_params& p) : p_(p) {
    auto bad = [](const std::string& m) { fail(TFU_STATUS_INVALID_ARGUMENT, "kv_block_pool: " + m); };
    if (p.n_layer < 1) bad("n_layer must be >= 1");
    if (p.n_head_kv < 1) bad("n_head_kv must be >= 1");
    if (p.chunk_blocks < 1) bad("chunk_blocks must be >= 1");
    if (p.residual_blocks < 2 || p.residual_blocks > 64) bad("residual_blocks must be in [2, 64]");
    k_layout_ = kv_layout_make(p.k_format, kv_part::k, p.block_tokens, p.head_dim);
    v_layout_ = kv_layout_make(p.v_format, kv_part::v, p.block_tokens, p.head_dim);
    layer_bytes_ = size_t(p.n_head_kv) * (k_layout_.bytes + v_layout_.bytes);
    block_bytes_ = (size_t(p.n_layer) * layer_bytes_ + k_align - 1) & ~(k_align - 1);
    chunk_bytes_ = block_bytes_ * size_t(p.chunk_blocks);
    if (p.max_bytes != 0 && p.max_bytes < block_bytes_)
        bad("max_bytes " + std::to_string(p.max_bytes) + " is below one block (" + std::to_string(block_bytes_) +
            " bytes)");
    size_t n = p.max_bytes == 0 ? size_t(k_max_chunks) : (p.max_bytes + chunk_bytes_ - 1) / chunk_bytes_;
    max_chunks_ = int32_t(n < size_t(k_max_chunks) ? n : size_t(k_max_chunks));
    chunks_.reset(new std::atomic<uint8_t*>[size_t(max_chunks_)]);
    for (int32_t i = 0; i < max_chunks_; ++i) chunks_[size_t(i)].store(nullptr, std::memory_order_relaxed);
    st_.block_bytes = block_bytes_;
    st_.k_bytes_per_block = size_t(p.n_layer) * size_t(p.n_head_kv) * k_layout_.bytes;
    st_.v_bytes_per_block = size_t(p.n_layer) * size_t(p.n_head_kv) * v_layout_.bytes;
}

kv_block_pool::~kv_block_pool() {
    for (int32_t i = 0; i < n_chunks_; ++i) {
        uint8_t* c = chunks_[size_t(i)].load();
        if (p_.device) p_.device->free(c);
        else ::operator delete(c, std::align_val_t(k_align));
    }
}

uint8_t* kv_block_pool::data(int32_t id) const {
    const int32_t c = id / p_.chunk_blocks;
    uint8_t* base = (id >= 0 && c < max_chunks_) ? chunks_[size_t(c)].load(std::memory_order_acquire) : nullptr;
    if (base == nullptr) fail(TFU_STATUS_INVALID_ARGUMENT, "kv_block_pool: no block " + std::to_string(id));
    return base + size_t(id % p_.chunk_blocks) * block_bytes_;
}

void kv_block_pool::check_id(int32_t id, const char* what) const {
    if (id < 0 || size_t(id) >= info_.size() || info_[size_t(id)].st != state::used)
        fail(TFU_STATUS_INVALID_ARGUMENT,
             std::string("kv_block_pool::") + what + ": block " + std::to_string(id) + " is not in use");
}

int32_t kv_block_pool::allocate_locked() {
    if (free_.empty() && n_chunks_ < max_chunks_) {
        // A new chunk, possibly partial (the last one under the cap).
        size_t n_blocks = size_t(p_.chunk_blocks);
        if (p_.max_bytes != 0) {
            size_t room = (p_.max_bytes - st_.bytes_reserved) / block_bytes_;
            if (room < n_blocks) n_blocks = room;
        }
        if (n_blocks > 0) {
            void* mem = nullptr;
            if (!p_.device) {
                mem = ::operator new(n_blocks * block_bytes_, std::align_val_t(k_align), std::nothrow);
            } else {
                try {  // 256-byte aligned (backend::alloc)
                    mem = p_.device->alloc(n_blocks * block_bytes_, "KV cache blocks");
                } catch (const error& e) {
                    if (e.status() != TFU_STATUS_OUT_OF_MEMORY) throw;
                }
            }
            if (mem != nullptr) {
                const int32_t first = n_chunks_ * p_.chunk_blocks;
                chunks_[size_t(n_chunks_)].store(static_cast<uint8_t*>(mem), std::memory_order_release);
                ++n_chunks_;
                info_.resize(size_t(first) + n_blocks);
                for (int32_t i = int32_t(n_blocks) - 1; i >= 0; --i) free_.push_back(first + i);  // lowest first
                st_.bytes_reserved += n_blocks * block_bytes_;
                st_.blocks_total += int32_t(n_blocks);
                st_.blocks_free += int32_t(n_blocks);
                st_.chunks = n_chunks_;
            }
        }
    }
    int32_t id = -1;
    if (!free_.empty()) {
        id = free_.back();
        free_.pop_back();
        --st_.blocks_free;
    } else if (!cached_lru_.empty()) {  // reclaim the least recently released cached prefix block
        id = cached_lru_.front();
        cached_lru_.pop_front();
        unkey_locked(id);
        --st_.blocks_cached;
        st_.bytes_cached -= block_bytes_;
        ++st_.cached_reclaimed;
    } else {
        return -1;
    }
    block_info& b = info_[size_t(id)];
    b.st = state::used;
    b.refs = 1;
    ++st_.blocks_in_use;
    st_.bytes_in_use += block_bytes_;
    ++st_.refs;
    return id;
}

int32_t kv_block_pool::try_allocate() {
    std::lock_guard<std::mutex> lock(mu_);
    return allocate_locked();
}

int32_t kv_block_pool::allocate() {
    int32_t id = try_allocate();
    if (id < 0)
        fail(TFU_STATUS_OUT_OF_MEMORY, "kv_block_pool: no free KV block (cap " + std::to_string(p_.max_bytes) +
                                           " bytes, " + std::to_string(block_bytes_) + " bytes per block)");
    return id;
}

void kv_block_pool::retain(int32_t id) {
    std::lock_guard<std::mutex> lock(mu_);
    check_id(id, "retain");
    ++info_[size_t(id)].refs;
    ++st_.refs;
}

void kv_block_pool::release(int32_t id) {
    std::lock_guard<std::mutex> lock(mu_);
    check_id(id, "release");
    block_info& b = info_[size_t(id)];
    --st_.refs;
    if (--b.refs > 0) return;
    --st_.blocks_in_use;
    st_.bytes_in_use -= block_bytes_;
    if (b.keyed) {
        b.st = state::cached;
        b.lru = cached_lru_.insert(cached_lru_.end(), id);
        ++st_.blocks_cached;
        st_.bytes_cached += block_bytes_;
    } else {
        b.st = state::free;
        free_.push_back(id);
        ++st_.blocks_free;
    }
}

int32_t kv_block_pool::ref_count(int32_t id) const {
    std::lock_guard<std::mutex> lock(mu_);
    if (id < 0 || size_t(id) >= info_.size()) fail(TFU_STATUS_INVALID_ARGUMENT, "kv_block_pool::ref_count: bad id");
    return info_[size_t(id)].refs;
}

void kv_block_pool::unkey_locked(int32_t id) {
    block_info& b = info_[size_t(id)];
    if (!b.keyed) return;
    auto it = prefix_.find(b.key);
    if (it != prefix_.end() && it->second == id) prefix_.erase(it);
    b.keyed = false;
}

int32_t kv_block_pool::make_writable(int32_t id) {
    int32_t copy;
    {
        std::lock_guard<std::mutex> lock(mu_);
        check_id(id, "make_writable");
        if (info_[size_t(id)].refs == 1) {
            unkey_locked(id);  // its contents are about to change: no longer the block of that prefix
            return id;
        }
        copy = allocate_locked();
        if (copy < 0)
            fail(TFU_STATUS_OUT_OF_MEMORY, "kv_block_pool: no free KV block for a copy-on-write of block " +
                                               std::to_string(id));
        ++st_.cow_copies;
    }
    // The source is shared (refcount > 1), hence immutable, and we hold a reference: copy without the lock.
    if (p_.device) p_.device->copy(data(copy), data(id), block_bytes_);
    else std::memcpy(data(copy), data(id), block_bytes_);
    release(id);
    return copy;
}

int32_t kv_block_pool::lookup_prefix(uint64_t key) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = prefix_.find(key);
    if (it == prefix_.end()) {
        ++st_.prefix_misses;
        return -1;
    }
    const int32_t id = it->second;
    block_info& b = info_[size_t(id)];
    if (b.st == state::cached) {  // revive: back in use
        cached_lru_.erase(b.lru);
        --st_.blocks_cached;
        st_.bytes_cached -= block_bytes_;
        b.st = state::used;
        ++st_.blocks_in_use;
        st_.bytes_in_use += block_bytes_;
    }
    ++b.refs;
    ++st_.refs;
    ++st_.prefix_hits;
    st_.prefix_bytes_saved += int64_t(block_bytes_);
    return id;
}

bool kv_block_pool::publish_prefix(uint64_t key, int32_t id) {
    std::lock_guard<std::mutex> lock(mu_);
    check_id(id, "publish_prefix");
    block_info& b = info_[size_t(id)];
    auto it = prefix_.find(key);
    if (it != prefix_.end()) return it->second == id;
    if (b.keyed) unkey_locked(id);  // re-keyed (should not happen for a correct caller; keep the map consistent)
    prefix_.emplace(key, id);
    b.keyed = true;
    b.key = key;
    return true;
}

kv_pool_stats kv_block_pool::stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    return st_;
}

size_t kv_block_pool::residual_bytes() const {
    if (k_layout_.per_token()) return 0;
    return size_t(p_.n_layer) * size_t(p_.n_head_kv) * size_t(p_.residual_blocks) *
           kv_bytes_per_block(kv_format::f16, kv_part::k, p_.block_tokens, p_.head_dim);
}

}  // namespace tfu
