// A pool of fixed-size KV blocks for one model and one (K format, V format) pair: chunked allocation up to a
// byte cap, free list, reference counts for copy-on-write prefix sharing, a prefix-hash map, and accounting.
//
// One block holds B consecutive token positions for ALL layers and KV heads of the model:
//   block = [layer 0: K part | V part][layer 1: K part | V part] ...
//   K part = [head 0 | head 1 | ...], each a K head block (kv_layout of k_format, kv_part::k)
//   V part = the same with v_format, kv_part::v
// so pool.k_head(id, layer, head) is a pointer to a head block that the kv_format.h readers take. Head blocks are
// 16-byte multiples; blocks are 64-byte aligned (chunks are allocated 64-byte aligned). A GPU backend mirrors the
// same layout with the offsets from layer_offset() / k_layout() / v_layout().
//
// Memory: host memory, or a device backend's (kv_pool_params::device: the paged cache of sessions on a GPU,
// written and read by the KV_STORE_BLOCKS and ATTENTION_BLOCKS ops through a kv_block_map).
// Lifetimes: blocks are carved out of chunks of `chunk_blocks` blocks, allocated when the free list is empty and
// the cap allows; chunks are kept until the pool is destroyed (a freed block goes to the free list), so data(id)
// stays valid for the pool's lifetime and may be read without the lock.
//
// Sharing (copy-on-write): allocate() returns a block with refcount 1; retain() adds a holder (a second session
// adopting a shared prefix); release() drops one, and at 0 the block is free, or, when it carries a prefix key,
// "cached": kept with its contents and key so that a later session can adopt it, and reclaimed (key dropped,
// least recently released first) only when allocate() finds no free block and the cap forbids a new chunk.
// A holder must never write into a block whose refcount is > 1: make_writable() copies it first.
//
// Prefix keys: a full block is keyed by kv_prefix_hash of ALL tokens from position 0 to its end (chained block by
// block), so equal keys mean an equal prefix, hence equal K/V contents (same model, same formats, positions
// from 0). publish_prefix() records key -> block; lookup_prefix() returns the block retained (a hit) or -1.
// A keyed block is immutable: make_writable() on it unkeys it (refcount 1) or copies it (refcount > 1).
//
// Thread safety: every member function may be called concurrently from several threads (sessions of one model
// on different threads); a mutex serialises the bookkeeping. data()/k_head()/v_head() take no lock. Writing a
// block's bytes is the holder's business: only a holder with refcount 1 may write it.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "backend/backend.h"
#include "backend/kv_format.h"

namespace tfu {

struct kv_pool_params {
    int32_t n_layer = 0;
    int32_t n_head_kv = 0;
    int32_t head_dim = 0;
    int32_t block_tokens = 32;      // B: power of two >= 16
    kv_format k_format = kv_format::f16;
    kv_format v_format = kv_format::f16;
    int32_t chunk_blocks = 16;      // blocks per chunk allocation (>= 1)
    // q4 keys: how many of a session's newest blocks keep their keys in f16 (the newest R-1 full blocks and the
    // partial one; KIVI keeps about 128 recent tokens in full precision, arXiv 2402.02750 sec. 3.3). >= 2.
    int32_t residual_blocks = 4;
    size_t max_bytes = 0;           // cap on reserved bytes (whole chunks; the last chunk may be partial); 0 = none
    // Where the blocks live: this backend's memory (a device's: data() is then an address for its kernels, never
    // dereferenced on the host, and make_writable() copies through backend::copy), or host memory (nullptr).
    backend* device = nullptr;
};

struct kv_pool_stats {
    size_t block_bytes = 0;         // bytes of one block (all layers, K + V)
    size_t k_bytes_per_block = 0;   // of which K (all layers and heads)
    size_t v_bytes_per_block = 0;   // of which V
    size_t bytes_reserved = 0;      // chunk memory allocated from the system
    size_t bytes_in_use = 0;        // blocks with refcount > 0, times block_bytes
    size_t bytes_cached = 0;        // keyed blocks with refcount 0 (reclaimable)
    int32_t blocks_total = 0;       // carved out of chunks
    int32_t blocks_in_use = 0;
    int32_t blocks_cached = 0;
    int32_t blocks_free = 0;        // total - in use - cached
    int32_t chunks = 0;
    int64_t refs = 0;               // sum of refcounts (holders); refs - blocks_in_use = shared extra holders
    int64_t prefix_hits = 0;
    int64_t prefix_misses = 0;
    int64_t prefix_bytes_saved = 0; // block_bytes per hit (memory and prefill not spent)
    int64_t cow_copies = 0;         // make_writable() copies
    int64_t cached_reclaimed = 0;   // cached blocks reused for new allocations
};

// 64-bit chained hash of a block's tokens: prev = the hash of the previous full block (kv_prefix_seed for the
// first block). Not cryptographic: a collision would share a wrong block; 64 bits make that negligible for
// caches of millions of blocks (and the lead may also compare stored tokens).
constexpr uint64_t kv_prefix_seed = 0x9e3779b97f4a7c15ull;
uint64_t kv_prefix_hash(uint64_t prev, const int32_t* tokens, int32_t n);

class kv_block_pool {
public:
    // Validates the params (INVALID_ARGUMENT naming the field); allocates nothing yet.
    explicit kv_block_pool(const kv_pool_params& p);
    ~kv_block_pool();
    kv_block_pool(const kv_block_pool&) = delete;
    kv_block_pool& operator=(const kv_block_pool&) = delete;

    const kv_pool_params& params() const { return p_; }
    const kv_layout& k_layout() const { return k_layout_; }
    const kv_layout& v_layout() const { return v_layout_; }
    size_t block_bytes() const { return block_bytes_; }
    // Bytes of each table's f16 key tail: q4 keys keep residual_blocks f16 head blocks per layer and KV head
    // (kv/block_table.h); 0 for the other key formats. The session budget and the table both use this.
    size_t residual_bytes() const;
    // Byte offset of a layer's K part in a block; its V part follows at + n_head_kv * k_layout().bytes.
    size_t layer_offset(int32_t layer) const { return size_t(layer) * layer_bytes_; }

    // A block with refcount 1 (contents undefined). Throws OUT_OF_MEMORY when no block is free, none is
    // cached, and another chunk would exceed max_bytes (or the system allocation fails).
    int32_t allocate();
    // Like allocate() but returns -1 instead of throwing OUT_OF_MEMORY.
    int32_t try_allocate();
    void retain(int32_t id);   // refcount + 1; the block must be in use
    void release(int32_t id);  // refcount - 1; at 0: free, or cached if keyed
    int32_t ref_count(int32_t id) const;

    // Returns a block the caller may write: `id` itself if its refcount is 1 (its prefix key, if any, is dropped),
    // else a fresh copy (the caller's reference moves from id to the copy). Throws OUT_OF_MEMORY like allocate.
    int32_t make_writable(int32_t id);

    // Prefix map. lookup: a hit retains the block (the caller now holds it) and returns it; a miss returns -1.
    // publish: keys a block the caller holds (full, final contents); if the key is already mapped to another
    // block, nothing changes and false is returned (the caller keeps its own copy).
    int32_t lookup_prefix(uint64_t key);
    bool publish_prefix(uint64_t key, int32_t id);

    // Block memory, valid for the pool's lifetime; no lock. With params().device, device addresses.
    uint8_t* data(int32_t id) const;
    uint8_t* k_head(int32_t id, int32_t layer, int32_t head) const {
        return data(id) + layer_offset(layer) + size_t(head) * k_layout_.bytes;
    }
    uint8_t* v_head(int32_t id, int32_t layer, int32_t head) const {
        return data(id) + layer_offset(layer) + size_t(p_.n_head_kv) * k_layout_.bytes + size_t(head) * v_layout_.bytes;
    }

    kv_pool_stats stats() const;

private:
    enum class state : uint8_t { free, used, cached };
    struct block_info {
        int32_t refs = 0;
        state st = state::free;
        bool keyed = false;
        uint64_t key = 0;
        std::list<int32_t>::iterator lru;  // valid while cached
    };

    int32_t allocate_locked();  // -1 if none can be had
    void unkey_locked(int32_t id);
    void check_id(int32_t id, const char* what) const;  // under the lock

    kv_pool_params p_;
    kv_layout k_layout_, v_layout_;
    size_t layer_bytes_ = 0, block_bytes_ = 0, chunk_bytes_ = 0;
    int32_t max_chunks_ = 0;

    mutable std::mutex mu_;
    // Chunk base pointers: a fixed table so that data() can read it without the lock while chunks are added.
    std::unique_ptr<std::atomic<uint8_t*>[]> chunks_;
    int32_t n_chunks_ = 0;
    std::vector<block_info> info_;
    std::vector<int32_t> free_;
    std::list<int32_t> cached_lru_;  // front = least recently released
    std::unordered_map<uint64_t, int32_t> prefix_;
    kv_pool_stats st_;
};

}  // namespace tfu
