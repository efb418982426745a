// tfu::op: one step of a forward pass as a backend receives it (the op list is in backend/ops.def).
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace tfu {

enum class op_type : uint32_t {
#define TFU_OP(NAME, name, n_src) NAME,
#include "backend/ops.def"
#undef TFU_OP
    COUNT
};

const char* op_name(op_type t);  // "rms_norm", ...
int op_n_src(op_type t);

// Sources are read-only; dst is written (KV_STORE_BLOCKS has none: it writes its ext's cache). Integer and float
// parameters as ops.def documents per op.
struct op {
    op_type type = op_type::COUNT;
    tensor* dst = nullptr;
    const tensor* src[3] = {nullptr, nullptr, nullptr};
    int32_t i[4] = {0, 0, 0, 0};
    float f[4] = {0, 0, 0, 0};
    const void* ext = nullptr;  // op-specific descriptor (ATTENTION_PAGED: const paged_kv_view*; the *_BLOCKS ops:
                                // const kv_block_map*)
};

}  // namespace tfu
