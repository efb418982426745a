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
    // H2O: with `scores` set (one entry per cache position, sized by the caller), observe() adds to scores[t] the
    // softmax probability that each query of each head gives key t (the attention's own weights, recomputed on
    // the host from the cache rows: a second pass over the keys).
    void track_attention(std::vector<double>* scores) { scores_ = scores; }
    void observe(int32_t layer, const tensor& q, int32_t pos0) override;

private:
    kv_block_table& table_;
    int32_t n_head_kv_;
    int32_t head_dim_;
    std::vector<kv_rows> k_, v_;  // [n_blocks * n_head_kv] of the layer last viewed
    paged_kv_view view_;
    std::vector<double>* scores_ = nullptr;
};

}  // namespace tfu
