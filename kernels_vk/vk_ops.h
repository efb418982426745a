// Per-op support checks and recording for the Vulkan backend: which shader each op of backend/ops.def runs,
// its push constants, and how tensors larger than one storage-buffer binding are split (vk_ops.cpp).
#pragma once

#include <string>

#include "backend/op.h"
#include "vk_context.h"

namespace tfu::vk {

class vk_backend;

// Whether the module runs `o` (dtypes, shapes, sizes against max_binding); *why says why not. Does not look at
// addresses (supports() is asked about ops whose tensors may still be in host memory).
bool op_supported(const op& o, const device_caps& caps, uint64_t max_binding, std::string* why);
// Records the dispatches of one op (op_supported(o) is true).
void record_op(vk_backend& be, const op& o);

}  // namespace tfu::vk
