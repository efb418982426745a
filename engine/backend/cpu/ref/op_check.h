// The shape and dtype contract of every op (backend/ops.def), checked in one place so that every backend's
// supports() and run() agree with each other and with the reference.
#pragma once

#include <string>

#include "backend/op.h"

namespace tfu {

// Whether `o` is well formed per ops.def: source count, dtypes, shapes, strides (rows of ne[0] elements,
// nb[0] = element size, evenly strided rows), parameters (n_rot, mode, n_head_kv, positions in range).
// If not, *why (if given) names the op, the tensor and the shapes at fault.
bool check_op(const op& o, std::string* why);

// check_op, throwing tfu::error(TFU_STATUS_UNSUPPORTED, "<backend>: <why>") when it fails.
void require_op(const char* backend_name, const op& o);

// "name (ne0, ne1, ne2, ne3) dtype" for messages.
std::string describe_tensor(const tensor* t);

}  // namespace tfu
