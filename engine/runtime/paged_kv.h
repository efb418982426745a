// The session's paged KV cache as the decoder writes and reads it: a kv_sink over a block table.
#pragma once

#include <vector>

#include "kv/block_table.h"
#include "model/decoder.h"

namespace tfu {

class paged_kv final : public kv_sink {
public:
    paged_kv(kv_block_table& table, int32_t n_layer);

    // Rows hd-wide per KV head: k and v are (n_head_kv * hd, n) f32; the table must already hold the positions.
    void store(int32_t layer, const tensor& k, const tensor& v, int32_t pos0) override;
    const paged_kv_view* view(int32_t layer) override;

private:
    kv_block_table& table_;
    int32_t n_head_kv_;
    int32_t head_dim_;
    std::vector<kv_rows> k_, v_;  // [n_blocks * n_head_kv] of the layer last viewed
    paged_kv_view view_;
};

}  // namespace tfu
