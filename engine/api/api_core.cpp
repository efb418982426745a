// C ABI: version, status strings, last error and logging.
#include <algorithm>

#include "api/guard.h"
#include "core/log.h"

namespace tfu::api {
namespace {
thread_local std::string t_last_error;
}
void set_last_error(const std::string& message) { t_last_error = message; }
const char* last_error_cstr() { return t_last_error.c_str(); }
void clear_last_error() { t_last_error.clear(); }

void copy_out_text(const std::string& text, char* out, size_t capacity, size_t* out_len) {
    if (out_len) *out_len = text.size();
    if (capacity > 0 && out == nullptr) fail(TFU_STATUS_INVALID_ARGUMENT, "output buffer is NULL");
    if (text.size() > capacity)
        fail(TFU_STATUS_BUFFER_TOO_SMALL, "output needs " + std::to_string(text.size()) + " bytes, buffer has " +
                                              std::to_string(capacity));
    if (!text.empty()) std::memcpy(out, text.data(), text.size());
    if (text.size() < capacity) out[text.size()] = '\0';
}
}  // namespace tfu::api

extern "C" {

TFU_API int32_t tfu_version(void) { return TFU_VERSION_NUMBER; }
TFU_API const char* tfu_version_string(void) { return TFU_VERSION_STRING; }

TFU_API const char* tfu_status_string(tfu_status status) {
    switch (status) {
        case TFU_STATUS_OK: return "TFU_STATUS_OK";
        case TFU_STATUS_INVALID_ARGUMENT: return "TFU_STATUS_INVALID_ARGUMENT";
        case TFU_STATUS_NOT_FOUND: return "TFU_STATUS_NOT_FOUND";
        case TFU_STATUS_IO_ERROR: return "TFU_STATUS_IO_ERROR";
        case TFU_STATUS_INVALID_FILE: return "TFU_STATUS_INVALID_FILE";
        case TFU_STATUS_UNSUPPORTED: return "TFU_STATUS_UNSUPPORTED";
        case TFU_STATUS_OUT_OF_MEMORY: return "TFU_STATUS_OUT_OF_MEMORY";
        case TFU_STATUS_CONTEXT_FULL: return "TFU_STATUS_CONTEXT_FULL";
        case TFU_STATUS_CANCELLED: return "TFU_STATUS_CANCELLED";
        case TFU_STATUS_TEMPLATE_ERROR: return "TFU_STATUS_TEMPLATE_ERROR";
        case TFU_STATUS_INVALID_UTF8: return "TFU_STATUS_INVALID_UTF8";
        case TFU_STATUS_BUSY: return "TFU_STATUS_BUSY";
        case TFU_STATUS_BACKEND_UNAVAILABLE: return "TFU_STATUS_BACKEND_UNAVAILABLE";
        case TFU_STATUS_BUFFER_TOO_SMALL: return "TFU_STATUS_BUFFER_TOO_SMALL";
        case TFU_STATUS_INTERNAL: return "TFU_STATUS_INTERNAL";
        case TFU_STATUS_DEVICE_ERROR: return "TFU_STATUS_DEVICE_ERROR";
    }
    return "TFU_STATUS_UNKNOWN";
}

TFU_API const char* tfu_last_error(void) { return tfu::api::last_error_cstr(); }

TFU_API void tfu_set_log_callback(tfu_log_callback callback, tfu_log_level min_level, void* user_data) {
    tfu::log_set_callback(callback, min_level, user_data);
}

}  // extern "C"
