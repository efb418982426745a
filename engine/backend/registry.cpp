// create_backend: picks a backend by kind (auto, env TFU_BACKEND override) and makes it.
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "backend/backend.h"
#include "core/error.h"

namespace tfu {

namespace {

// The GPU backends are separate modules loaded at run time; until they are built (later issues), asking for
// one is a clear BACKEND_UNAVAILABLE, never a silent fallback.
[[noreturn]] void gpu_unavailable(const char* what, const char* module) {
    fail(TFU_STATUS_BACKEND_UNAVAILABLE, std::string("the ") + what + " backend module (" + module +
                                             ") is not built/installed in this version of tfusion; use the cpu "
                                             "backend (TFU_BACKEND=cpu)");
}

tfu_backend_kind kind_from_env(const char* v) {
    if (std::strcmp(v, "cpu") == 0) return TFU_BACKEND_CPU;
    if (std::strcmp(v, "cpu-ref") == 0) return TFU_BACKEND_CPU_REF;
    if (std::strcmp(v, "cuda") == 0) return TFU_BACKEND_CUDA;
    if (std::strcmp(v, "vulkan") == 0) return TFU_BACKEND_VULKAN;
    if (std::strcmp(v, "auto") == 0) return TFU_BACKEND_AUTO;
    fail(TFU_STATUS_INVALID_ARGUMENT,
         std::string("environment variable TFU_BACKEND=") + v + " is not one of cpu, cpu-ref, cuda, vulkan, auto");
}

}  // namespace

std::unique_ptr<backend> create_backend(tfu_backend_kind kind, int n_threads) {
    if (kind == TFU_BACKEND_AUTO) {
        const char* env = std::getenv("TFU_BACKEND");
        if (env && *env) kind = kind_from_env(env);
    }
    switch (kind) {
        case TFU_BACKEND_AUTO:  // no GPU module exists yet: CPU
        case TFU_BACKEND_CPU: return make_cpu_backend(n_threads);
        case TFU_BACKEND_CPU_REF: return make_cpu_ref_backend();
        case TFU_BACKEND_CUDA: gpu_unavailable("CUDA", "kernels_cuda, libtfusion-cuda.so");
        case TFU_BACKEND_VULKAN: gpu_unavailable("Vulkan", "kernels_vk, libtfusion-vulkan.so");
    }
    fail(TFU_STATUS_INVALID_ARGUMENT, "create_backend: unknown backend kind " + std::to_string(int(kind)));
}

}  // namespace tfu
