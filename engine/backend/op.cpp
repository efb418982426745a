// Names and arities of the ops, generated from backend/ops.def.
#include "backend/op.h"

namespace tfu {

const char* op_name(op_type t) {
    switch (t) {
#define TFU_OP(NAME, name, n_src) \
    case op_type::NAME: return #name;
#include "backend/ops.def"
#undef TFU_OP
        default: return "unknown";
    }
}

int op_n_src(op_type t) {
    switch (t) {
#define TFU_OP(NAME, name, n_src) \
    case op_type::NAME: return n_src;
#include "backend/ops.def"
#undef TFU_OP
        default: return 0;
    }
}

}  // namespace tfu
