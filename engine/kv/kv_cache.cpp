// Contiguous per-session KV storage: one allocation, carved into per-layer K and V tensors.
#include "kv/kv_cache.h"

#include <cstdlib>
#include <cstring>
#include <string>

#include "core/error.h"

namespace tfu {

size_t kv_cache::bytes_needed(int32_t n_layer, int32_t n_embd_kv, int32_t n_ctx, dtype type) {
    return 2 * size_t(n_layer) * row_size(type, n_embd_kv) * size_t(n_ctx);
}

kv_cache::kv_cache(int32_t n_layer, int32_t n_embd_kv, int32_t n_ctx, dtype type, backend* be)
    : n_ctx_(n_ctx), type_(type) {
    if (type != dtype::F32 && type != dtype::F16 && type != dtype::BF16)
        fail(TFU_STATUS_UNSUPPORTED, std::string("KV cache type ") + dtype_name(type) + " is not supported");
    bytes_ = bytes_needed(n_layer, n_embd_kv, n_ctx, type);
    if (be && !be->host_memory()) {
        mem_ = be->alloc(bytes_, "KV cache");
        device_ = be;
    } else {
        // Zeroed so that rows never written read as 0 rather than garbage (calloc pages lazily).
        mem_ = std::calloc(1, bytes_);
        if (!mem_) fail(TFU_STATUS_OUT_OF_MEMORY, "KV cache: cannot allocate " + std::to_string(bytes_) + " bytes");
    }
    const size_t layer_bytes = row_size(type, n_embd_kv) * size_t(n_ctx);
    char* p = static_cast<char*>(mem_);
    for (int32_t l = 0; l < n_layer; ++l) {
        k_.push_back(make_tensor(type, n_embd_kv, n_ctx, 1, 1, p, "cache_k." + std::to_string(l)));
        p += layer_bytes;
        v_.push_back(make_tensor(type, n_embd_kv, n_ctx, 1, 1, p, "cache_v." + std::to_string(l)));
        p += layer_bytes;
    }
}

kv_cache::~kv_cache() {
    if (device_) device_->free(mem_);
    else std::free(mem_);
}

}  // namespace tfu
