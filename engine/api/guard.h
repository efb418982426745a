// The C boundary: the handle structs, the thread-local last error, and guard(), the one place that turns
// exceptions into tfu_status.
#pragma once

#include <cstring>
#include <memory>
#include <new>
#include <string>

#include "core/error.h"
#include "runtime/engine.h"
#include "runtime/model.h"
#include "runtime/session.h"

struct tfu_engine {
    std::unique_ptr<tfu::engine> impl;
};
struct tfu_model {
    tfu_engine* owner;
    std::unique_ptr<tfu::model> impl;
};
struct tfu_session {
    tfu_model* owner;
    std::unique_ptr<tfu::session> impl;
};

namespace tfu::api {

void set_last_error(const std::string& message);
void clear_last_error();
const char* last_error_cstr();

// Runs fn; OK on return, or the status of the exception with its message stored as this thread's last error.
template <typename Fn>
tfu_status guard(Fn&& fn) noexcept {
    try {
        clear_last_error();
        fn();
        return TFU_STATUS_OK;
    } catch (const tfu::error& e) {
        set_last_error(e.what());
        return e.status();
    } catch (const std::bad_alloc&) {
        set_last_error("out of memory");
        return TFU_STATUS_OUT_OF_MEMORY;
    } catch (const std::exception& e) {
        set_last_error(std::string("internal error: ") + e.what());
        return TFU_STATUS_INTERNAL;
    } catch (...) {
        set_last_error("internal error: unknown exception");
        return TFU_STATUS_INTERNAL;
    }
}

// Throws INVALID_ARGUMENT naming `what` if p is NULL.
template <typename T>
T* need(T* p, const char* what) {
    if (p == nullptr) fail(TFU_STATUS_INVALID_ARGUMENT, std::string(what) + " is NULL");
    return p;
}

// Copies a caller's params struct over defaults, honouring its struct_size (older callers pass smaller structs;
// fields they do not know keep their defaults).
template <typename P>
P read_params(const P* in, P defaults, const char* what) {
    if (in == nullptr) return defaults;
    if (in->struct_size < sizeof(uint32_t))
        fail(TFU_STATUS_INVALID_ARGUMENT, std::string(what) + ".struct_size is not set (use " + what + "_default())");
    std::memcpy(static_cast<void*>(&defaults), in, std::min<size_t>(in->struct_size, sizeof(P)));
    defaults.struct_size = sizeof(P);
    return defaults;
}

// The size protocol of functions that fill caller buffers: copies what fits (plus NUL when it fits), sets
// *out_len, and throws BUFFER_TOO_SMALL if the whole does not fit.
void copy_out_text(const std::string& text, char* out, size_t capacity, size_t* out_len);

}  // namespace tfu::api
