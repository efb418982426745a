// The KV cache of one session: per layer a K and a V tensor of n_ctx rows (one row per token position).
// This first version is contiguous; the paged, quantized cache (issue #4) replaces it behind the same views.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/tensor.h"

namespace tfu {

class kv_cache {
public:
    // type: F16 (default of sessions), BF16 or F32. Throws OUT_OF_MEMORY if the allocation fails.
    kv_cache(int32_t n_layer, int32_t n_embd_kv, int32_t n_ctx, dtype type);
    ~kv_cache();
    kv_cache(const kv_cache&) = delete;
    kv_cache& operator=(const kv_cache&) = delete;

    tensor& k(int32_t layer) { return k_[size_t(layer)]; }  // (n_embd_kv, n_ctx)
    tensor& v(int32_t layer) { return v_[size_t(layer)]; }  // (n_embd_kv, n_ctx)
    int32_t n_ctx() const { return n_ctx_; }
    dtype type() const { return type_; }
    size_t bytes() const { return bytes_; }
    // Bytes a cache with these dimensions needs (for budget checks before creating one).
    static size_t bytes_needed(int32_t n_layer, int32_t n_embd_kv, int32_t n_ctx, dtype type);

private:
    int32_t n_ctx_;
    dtype type_;
    size_t bytes_ = 0;
    void* mem_ = nullptr;
    std::vector<tensor> k_, v_;
};

}  // namespace tfu
