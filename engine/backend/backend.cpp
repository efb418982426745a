// The host-memory defaults of the backend memory interface (cpu, cpu-ref).
#include "backend/backend.h"

#include <cstdlib>
#include <cstring>

#include "core/error.h"

namespace tfu {

void* backend::alloc(size_t bytes, const char* what) {
    const size_t rounded = (bytes + 255) / 256 * 256;
    void* p = std::aligned_alloc(256, rounded ? rounded : 256);
    if (!p) fail(TFU_STATUS_OUT_OF_MEMORY, std::string(what) + ": cannot allocate " + std::to_string(bytes) + " bytes");
    return p;
}

void backend::free(void* p) noexcept { std::free(p); }

void backend::upload(void* dst, const void* src_host, size_t bytes) {
    if (bytes) std::memcpy(dst, src_host, bytes);
}

void backend::download(void* dst_host, const void* src, size_t bytes) {
    if (bytes) std::memcpy(dst_host, src, bytes);
}

void backend::copy(void* dst, const void* src, size_t bytes) {
    if (bytes) std::memcpy(dst, src, bytes);
}

}  // namespace tfu
