// One row of a paged-cache head block (backend/kv_format.h) dequantized in registers, as the attention readers of
// ATTENTION_PAGED (a staged table of head blocks) and ATTENTION_BLOCKS (a kv_block_map) read it: lane l gets
// channels l + 32 r (r < R), 0 past the head size. f16, bf16, q8 per token (scale[t] * code), q4 V per token and
// group, q4 K per channel (code * scale[c] + min[c]).
#pragma once

#include "backend/kv_format.h"
#include "cuda_common.cuh"

namespace tfu::cuda {

// A head block's layout as the kernels take it (kv_layout's offsets, 24 bytes).
struct kv_row_format {
    uint32_t scale_offset, min_offset, code_offset;
    int32_t row_code_bytes;
    int32_t group;  // q4 V: channels per (scale, min); 0 otherwise
    uint8_t format, part, pad[2];
};
static_assert(sizeof(kv_row_format) == 24, "kv_row_format layout");

inline kv_row_format kv_row_format_of(const kv_layout& l) {
    kv_row_format f{};
    f.scale_offset = uint32_t(l.scale_offset);
    f.min_offset = uint32_t(l.min_offset);
    f.code_offset = uint32_t(l.code_offset);
    f.row_code_bytes = l.row_code_bytes;
    f.group = l.group;
    f.format = uint8_t(l.format);
    f.part = uint8_t(l.part);
    return f;
}

// Row tt of the head block at `data`.
template <int R>
__device__ __forceinline__ void kv_load_row(const kv_row_format& e, const uint8_t* data, int tt, int hd, int lane,
                                            float x[R]) {
    const uint8_t* row = data + e.code_offset + size_t(tt) * size_t(e.row_code_bytes);
    switch (e.format) {
        case uint8_t(kv_format::f16):
        case uint8_t(kv_format::bf16): {
            const bool f16 = e.format == uint8_t(kv_format::f16);
#pragma unroll
            for (int r = 0; r < R; ++r) {
                const int c = lane + k_warp * r;
                const uint16_t u = c < hd ? reinterpret_cast<const uint16_t*>(row)[c] : 0;
                x[r] = f16 ? h2f(u) : bf2f(u);
            }
            break;
        }
        case uint8_t(kv_format::q8): {  // x = scale[t] * code
            const float s = h2f(ld16(data + e.scale_offset + 2 * size_t(tt)));
#pragma unroll
            for (int r = 0; r < R; ++r) {
                const int c = lane + k_warp * r;
                x[r] = c < hd ? s * float(reinterpret_cast<const int8_t*>(row)[c]) : 0.0f;
            }
            break;
        }
        default: {  // q4: nibble c of the row; K: scale/min per channel, V: per (token, group)
            const bool per_channel = e.part == uint8_t(kv_part::k);
            const int ng = per_channel ? 0 : hd / e.group;
#pragma unroll
            for (int r = 0; r < R; ++r) {
                const int c = lane + k_warp * r;
                float v = 0.0f;
                if (c < hd) {
                    const int q = (row[c >> 1] >> (4 * (c & 1))) & 0x0f;
                    const size_t pi = per_channel ? size_t(c) : size_t(tt) * size_t(ng) + size_t(c / e.group);
                    v = float(q) * h2f(ld16(data + e.scale_offset + 2 * pi)) + h2f(ld16(data + e.min_offset + 2 * pi));
                }
                x[r] = v;
            }
            break;
        }
    }
}

}  // namespace tfu::cuda
