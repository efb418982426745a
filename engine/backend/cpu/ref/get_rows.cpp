// ref::get_rows: dst (n_embd, n) = src0 (n_embd, n_vocab; any weight dtype) rows at ids src1 (n, i32).
#include <string>

#include "backend/cpu/ref/ref_ops.h"
#include "core/error.h"
#include "core/quant.h"

namespace tfu::ref {

void get_rows(const op& o) {
    const tensor& w = *o.src[0];
    const int32_t* ids = o.src[1]->ptr<int32_t>();
    const int64_t n = o.src[1]->nelements();
    for (int64_t j = 0; j < n; ++j) {
        if (ids[j] < 0 || ids[j] >= w.ne[1])
            fail(TFU_STATUS_INVALID_ARGUMENT, "get_rows: id " + std::to_string(ids[j]) + " at " + std::to_string(j) +
                                                  " is outside " + std::to_string(w.ne[1]) + " rows of " + w.name);
        dequantize_row(w.type, w.row(ids[j]), static_cast<float*>(o.dst->row(j)), w.ne[0]);
    }
}

}  // namespace tfu::ref
