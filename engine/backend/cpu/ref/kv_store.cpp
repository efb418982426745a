// ref::kv_store: cache rows i[0] .. i[0]+n-1 of dst (row, n_ctx; f32, f16 or bf16) = src0 (row, n) converted.
#include <cstring>

#include "backend/cpu/ref/ref_ops.h"
#include "core/error.h"
#include "core/fp16.h"

namespace tfu::ref {

float load_cache(dtype t, const void* row, int64_t i) {
    switch (t) {
        case dtype::F32: return static_cast<const float*>(row)[i];
        case dtype::F16: return fp16_to_f32(static_cast<const uint16_t*>(row)[i]);
        case dtype::BF16: return bf16_to_f32(static_cast<const uint16_t*>(row)[i]);
        default: fail(TFU_STATUS_UNSUPPORTED, std::string("cache dtype ") + dtype_name(t) + " is not f32/f16/bf16");
    }
}

void kv_store(const op& o) {
    const tensor& x = *o.src[0];
    tensor& c = *o.dst;
    const int64_t k = x.ne[0];
    for (int64_t j = 0; j < x.nrows(); ++j) {
        const float* xr = static_cast<const float*>(x.row(j));
        void* cr = c.row(o.i[0] + j);
        for (int64_t i = 0; i < k; ++i) {
            switch (c.type) {
                case dtype::F32: static_cast<float*>(cr)[i] = xr[i]; break;
                case dtype::F16: static_cast<uint16_t*>(cr)[i] = f32_to_fp16(xr[i]); break;
                case dtype::BF16: static_cast<uint16_t*>(cr)[i] = f32_to_bf16(xr[i]); break;
                default: fail(TFU_STATUS_UNSUPPORTED, "kv_store: cache dtype " + std::string(dtype_name(c.type)));
            }
        }
    }
}

}  // namespace tfu::ref
