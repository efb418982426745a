// The scalar reference kernels, one per op of backend/ops.def (one file each: ref/<name>.cpp). Plain loops,
// one thread, dot products accumulated in double: the yardstick every other backend is tested against.
// Each takes an op that check_op() accepted (the ref backend checks before calling).
#pragma once

#include "backend/op.h"

namespace tfu::ref {

#define TFU_OP(NAME, name, n_src) void name(const op& o);
#include "backend/ops.def"
#undef TFU_OP

// A cache row element (f32, f16 or bf16) as float; shared by kv_store's test and attention.
float load_cache(dtype t, const void* row, int64_t i);

}  // namespace tfu::ref
