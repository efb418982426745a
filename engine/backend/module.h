// The contract between libtfusion and a backend module loaded at run time: kernels_cuda/ builds
// libtfusion-cuda.so, kernels_vk/ builds libtfusion-vulkan.so. One build of the library then runs on machines
// with and without a GPU driver: the module (and through it the driver: libcuda.so.1, libvulkan.so.1) is only
// opened when a backend of its kind is asked for (backend/module_loader.cpp).
//
// A module exports one C function, `tfu_module_create` (type tfu_module_create_fn), built with the same compiler
// and headers as the library: it returns a tfu::backend (backend/backend.h) that the library owns and deletes.
// The module links its own copy of engine/core and engine/backend (hidden symbols), so it must not rely on the
// library's globals: logging goes through the callback in the options.
//
// Where the loader looks: only $TFU_MODULE_DIR when it is set; else the folder of the file that holds libtfusion's code (the
// installed layout: lib/libtfusion.so beside lib/libtfusion-cuda.so), then the build tree's modules/ folder.
#pragma once

#include <cstddef>
#include <cstdint>

#include "backend/backend.h"
#include "tfusion/tfusion.h"

// Bumped whenever backend.h, op.h, ops.def, tensor.h or kv_format.h change in a way a module would notice; a
// module built against another version is refused with a message naming both numbers.
#define TFU_MODULE_ABI_VERSION 2

struct tfu_module_options {
    uint32_t struct_size;
    int32_t device;          // device index, or -1: the module's best device
    int32_t n_threads;       // host threads the module may use (0: all cores)
    bool allow_cpu_device;   // Vulkan: accept a CPU implementation (lavapipe) when it is the only device
    tfu_log_callback log;    // where the module's log lines go (never stdout/stderr)
    tfu_log_level log_level;
    void* log_user_data;
};

// Returns TFU_STATUS_OK and *out, or a status with a message in msg (capacity msg_cap, NUL-terminated):
// TFU_STATUS_BACKEND_UNAVAILABLE when the driver or a device is missing. Never throws, aborts or prints.
typedef int (*tfu_module_create_fn)(uint32_t abi_version, const tfu_module_options* options, tfu::backend** out,
                                    char* msg, size_t msg_cap);

#define TFU_MODULE_CREATE_SYMBOL "tfu_module_create"

namespace tfu {

// Opens the module for `kind` (TFU_BACKEND_CUDA or TFU_BACKEND_VULKAN) and creates its backend; throws
// TFU_STATUS_BACKEND_UNAVAILABLE with every place it looked and why each failed. The module stays loaded for
// the life of the process (a backend's code must outlive it).
std::unique_ptr<backend> load_module_backend(tfu_backend_kind kind, const tfu_module_options& options);

}  // namespace tfu
