// Paged KV for the decoder: per-head row writes into the block table, and the per-layer block views.
#include "runtime/paged_kv.h"

#include "core/error.h"

namespace tfu {

paged_kv::paged_kv(kv_block_table& table, int32_t n_layer)
    : table_(table), n_head_kv_(table.pool().params().n_head_kv), head_dim_(table.pool().params().head_dim) {
    TFU_CHECK(n_layer == table.pool().params().n_layer);
}

void paged_kv::store(int32_t layer, const tensor& k, const tensor& v, int32_t pos0) {
    const int32_t n = int32_t(k.nrows());
    const int64_t stride = k.ne[0];  // floats between the rows of one head
    for (int32_t h = 0; h < n_head_kv_; ++h) {
        table_.write_k(layer, h, pos0, n, k.ptr<float>() + int64_t(h) * head_dim_, stride);
        table_.write_v(layer, h, pos0, n, v.ptr<float>() + int64_t(h) * head_dim_, stride);
    }
}

const paged_kv_view* paged_kv::view(int32_t layer) {
    const int32_t nb = table_.n_blocks();
    k_.resize(size_t(nb) * size_t(n_head_kv_));
    v_.resize(k_.size());
    for (int32_t b = 0; b < nb; ++b)
        for (int32_t h = 0; h < n_head_kv_; ++h) {
            k_[size_t(b) * size_t(n_head_kv_) + size_t(h)] = table_.k_rows(b, layer, h);
            v_[size_t(b) * size_t(n_head_kv_) + size_t(h)] = table_.v_rows(b, layer, h);
        }
    view_.n_blocks = nb;
    view_.n_head_kv = n_head_kv_;
    view_.block_tokens = table_.pool().params().block_tokens;
    view_.k = k_.data();
    view_.v = v_.data();
    return &view_;
}

}  // namespace tfu
