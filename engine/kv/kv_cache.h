// The contiguous KV cache of one session: per layer a K and a V tensor of n_ctx rows (one row per token
// position). Sessions use the paged cache (kv/block_table.h) on the CPU; this one is the exact f32 reference in
// tests and, in f16/bf16, the cache of sessions on a GPU backend until the paged cache lives in device memory.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "core/tensor.h"

namespace tfu {

class kv_cache {
public:
    // type: F16, BF16 or F32. Throws OUT_OF_MEMORY if the allocation fails. With a device backend `be`, the
    // memory is the backend's (rows never written are then undefined: attention reads only written rows).
    kv_cache(int32_t n_layer, int32_t n_embd_kv, int32_t n_ctx, dtype type, backend* be = nullptr);
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
    backend* device_ = nullptr;  // owner of mem_ when it is device memory
    std::vector<tensor> k_, v_;
};

}  // namespace tfu
