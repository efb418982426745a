// The session's paged KV cache as the decoder writes and reads it: a kv_sink over a block table (the host writes
// the rows between the two halves of each layer), or, in block-op mode, one kv_block_map per layer that the
// KV_STORE_BLOCKS and ATTENTION_BLOCKS ops use where the blocks are (a device pool: sessions on a GPU).
#pragma once

#include <string>
#include <vector>

#include "backend/kv_block_map.h"
#include "kv/block_table.h"
#include "model/decoder.h"

namespace tfu {

class paged_kv final : public kv_sink {
public:
    // ops: the backend that runs the block ops (block-op mode), or nullptr (the host writes the rows). In block-op
    // mode the table may hold at most max_blocks blocks (the session's context, in blocks); the block address
    // array is allocated from `ops` (freed by the destructor).
    paged_kv(kv_block_table& table, int32_t n_layer, backend* ops = nullptr, int32_t max_blocks = 0);
    ~paged_kv() override;
    paged_kv(const paged_kv&) = delete;
    paged_kv& operator=(const paged_kv&) = delete;

    // Rows hd-wide per KV head: k and v are (n_head_kv * hd, n) f32; the table must already hold the positions.
    void store(int32_t layer, const tensor& k, const tensor& v, int32_t pos0) override;
    const paged_kv_view* view(int32_t layer) override;
    // H2O: with `scores` set (one entry per cache position, sized by the caller), observe() adds to scores[t] the
    // softmax probability that each query of each head gives key t (the attention's own weights, recomputed on
    // the host from the cache rows: a second pass over the keys).
    void track_attention(std::vector<double>* scores) { scores_ = scores; }
    void observe(int32_t layer, const tensor& q, int32_t pos0) override;

    // Block-op mode: the maps ([n_layer], valid for this object's lifetime), or nullptr in the host mode.
    const kv_block_map* maps() const { return ops_ ? maps_.data() : nullptr; }
    // Block-op mode: writes the block addresses that changed since the last call (table appends, copy-on-write,
    // truncation, adoption) into the backend's array: after table.append(), before the forward pass, holding the
    // device lock (a device upload).
    void sync_blocks();

    // TFU_KV_BLOCK_OPS=1: host-backend sessions take the block-op mode too, over a pool whose memory goes through
    // the backend's alloc/copy/upload/download like a device's (tests: the device's code paths on the CPU).
    static bool host_test_mode();

    // Whether `be` runs the block ops for a cache of these layouts (a probe through backend::supports); if not,
    // *why says why.
    static bool block_ops_supported(backend& be, const kv_layout& k, const kv_layout& v, int32_t n_head_kv,
                                    std::string* why);

private:
    kv_block_table& table_;
    int32_t n_head_kv_;
    int32_t head_dim_;
    std::vector<kv_rows> k_, v_;  // [n_blocks * n_head_kv] of the layer last viewed
    paged_kv_view view_;
    std::vector<double>* scores_ = nullptr;
    // Block-op mode
    backend* ops_ = nullptr;
    std::vector<kv_block_map> maps_;  // [n_layer]
    uint64_t* blocks_mem_ = nullptr;  // [max_blocks] in ops_'s memory
    std::vector<int32_t> sent_ids_;   // the pool block each entry of blocks_mem_ holds (-1: none yet)
    std::vector<uint64_t> addr_;      // their addresses (what blocks_mem_ holds: the host's copy)
};

}  // namespace tfu
