// The module's one exported symbol (backend/module.h): creates the Vulkan backend, turning every failure into a
// status and a message (never throws, aborts or prints across the boundary).
#include <cstdio>
#include <cstring>
#include <new>

#include "backend/module.h"
#include "core/error.h"
#include "vk_backend.h"

namespace {

int report(int status, const char* text, char* msg, size_t cap) {
    if (msg && cap) std::snprintf(msg, cap, "%s", text);
    return status;
}

}  // namespace

extern "C" __attribute__((visibility("default"))) int tfu_module_create(uint32_t abi_version,
                                                                        const tfu_module_options* options,
                                                                        tfu::backend** out, char* msg, size_t cap) {
    if (out) *out = nullptr;
    if (abi_version != TFU_MODULE_ABI_VERSION) {
        char buf[160];
        std::snprintf(buf, sizeof buf, "vulkan module built for module ABI %d, the library has %u", TFU_MODULE_ABI_VERSION,
                      abi_version);
        return report(TFU_STATUS_BACKEND_UNAVAILABLE, buf, msg, cap);
    }
    if (!options || !out || options->struct_size < sizeof(tfu_module_options))
        return report(TFU_STATUS_INVALID_ARGUMENT, "tfu_module_create: options or out is NULL, or options too old", msg, cap);
    try {
        tfu::vk::logger log;
        log.callback = options->log;
        log.min_level = options->log_level;
        log.user_data = options->log_user_data;
        *out = new tfu::vk::vk_backend(*options, log);
        return TFU_STATUS_OK;
    } catch (const tfu::error& e) {
        return report(e.status(), e.what(), msg, cap);
    } catch (const std::bad_alloc&) {
        return report(TFU_STATUS_OUT_OF_MEMORY, "vulkan: out of host memory", msg, cap);
    } catch (const std::exception& e) {
        return report(TFU_STATUS_DEVICE_ERROR, e.what(), msg, cap);
    } catch (...) {
        return report(TFU_STATUS_INTERNAL, "vulkan: unknown exception while creating the backend", msg, cap);
    }
}
