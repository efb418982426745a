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

// Row tt of the head block at `data`, its format F (and part P: q4 keys are per channel) known at compile time:
// no branch between a lane's loads, so they are all in flight together (a reader whose format is a template
// parameter: ATTENTION_BLOCKS).
template <kv_format F, kv_part P, int R>
__device__ __forceinline__ void kv_load_row_as(const kv_row_format& e, const uint8_t* data, int tt, int hd, int lane,
                                               float x[R]) {
    const uint8_t* row = data + e.code_offset + size_t(tt) * size_t(e.row_code_bytes);
    if constexpr (F == kv_format::f16 || F == kv_format::bf16) {
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const int c = lane + k_warp * r;
            const uint16_t u = c < hd ? reinterpret_cast<const uint16_t*>(row)[c] : 0;
            x[r] = F == kv_format::f16 ? h2f(u) : bf2f(u);
        }
    } else if constexpr (F == kv_format::q8) {  // x = scale[t] * code
        const float s = h2f(ld16(data + e.scale_offset + 2 * size_t(tt)));
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const int c = lane + k_warp * r;
            x[r] = c < hd ? s * float(reinterpret_cast<const int8_t*>(row)[c]) : 0.0f;
        }
    } else {  // q4: nibble c of the row; K: scale/min per channel, V: per (token, group)
        constexpr bool per_channel = P == kv_part::k;
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
    }
}

// The same with the format read from e at run time (ATTENTION_PAGED: each block may have its own layout).
template <int R>
__device__ __forceinline__ void kv_load_row(const kv_row_format& e, const uint8_t* data, int tt, int hd, int lane,
                                            float x[R]) {
    switch (e.format) {
        case uint8_t(kv_format::f16): return kv_load_row_as<kv_format::f16, kv_part::k, R>(e, data, tt, hd, lane, x);
        case uint8_t(kv_format::bf16): return kv_load_row_as<kv_format::bf16, kv_part::k, R>(e, data, tt, hd, lane, x);
        case uint8_t(kv_format::q8): return kv_load_row_as<kv_format::q8, kv_part::k, R>(e, data, tt, hd, lane, x);
        default:
            if (e.part == uint8_t(kv_part::k)) return kv_load_row_as<kv_format::q4, kv_part::k, R>(e, data, tt, hd, lane, x);
            return kv_load_row_as<kv_format::q4, kv_part::v, R>(e, data, tt, hd, lane, x);
    }
}

}  // namespace tfu::cuda
