// create_backend: picks a backend by kind (auto, env TFU_BACKEND override) and makes it; the GPU kinds come from
// modules loaded at run time (backend/module.h).
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "backend/backend.h"
#include "backend/module.h"
#include "core/error.h"
#include "core/log.h"

namespace tfu {

namespace {

tfu_backend_kind kind_from_env(const char* v) {
    if (std::strcmp(v, "cpu") == 0) return TFU_BACKEND_CPU;
    if (std::strcmp(v, "cpu-ref") == 0) return TFU_BACKEND_CPU_REF;
    if (std::strcmp(v, "cuda") == 0) return TFU_BACKEND_CUDA;
    if (std::strcmp(v, "vulkan") == 0) return TFU_BACKEND_VULKAN;
    if (std::strcmp(v, "auto") == 0) return TFU_BACKEND_AUTO;
    fail(TFU_STATUS_INVALID_ARGUMENT,
         std::string("environment variable TFU_BACKEND=") + v + " is not one of cpu, cpu-ref, cuda, vulkan, auto");
}

// The module's log lines go to this library's log (core/log.h), so the user's callback sees them.
void forward_log(tfu_log_level level, const char* message, void*) { log(level, message); }

tfu_module_options module_options(int n_threads, bool allow_cpu_device) {
    tfu_module_options o{};
    o.struct_size = sizeof o;
    o.device = -1;
    if (const char* d = std::getenv("TFU_DEVICE"); d && *d) o.device = std::atoi(d);
    o.n_threads = n_threads;
    o.allow_cpu_device = allow_cpu_device;
    o.log = forward_log;
    o.log_level = TFU_LOG_DEBUG;
    o.log_user_data = nullptr;
    return o;
}

}  // namespace

std::unique_ptr<backend> create_backend(tfu_backend_kind kind, int n_threads) {
    if (kind == TFU_BACKEND_AUTO) {
        const char* env = std::getenv("TFU_BACKEND");
        if (env && *env) kind = kind_from_env(env);
    }
    switch (kind) {
        case TFU_BACKEND_AUTO:
            // CUDA, then a real Vulkan GPU; a CPU-implemented Vulkan device (lavapipe) is slower than the cpu
            // backend, so auto never picks it (ask for TFU_BACKEND=vulkan to use it).
            for (tfu_backend_kind k : {TFU_BACKEND_CUDA, TFU_BACKEND_VULKAN}) {
                try {
                    return load_module_backend(k, module_options(n_threads, false));
                } catch (const error& e) {
                    if (e.status() != TFU_STATUS_BACKEND_UNAVAILABLE) throw;
                    logf(TFU_LOG_INFO, "backend auto: %s not used: %s", k == TFU_BACKEND_CUDA ? "cuda" : "vulkan",
                         e.what());
                }
            }
            return make_cpu_backend(n_threads);
        case TFU_BACKEND_CPU: return make_cpu_backend(n_threads);
        case TFU_BACKEND_CPU_REF: return make_cpu_ref_backend();
        case TFU_BACKEND_CUDA:
        case TFU_BACKEND_VULKAN: return load_module_backend(kind, module_options(n_threads, true));
    }
    fail(TFU_STATUS_INVALID_ARGUMENT, "create_backend: unknown backend kind " + std::to_string(int(kind)));
}

}  // namespace tfu
