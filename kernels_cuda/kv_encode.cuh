// One row of a paged-cache head block written by one warp, bit for bit as kv_write_row (backend/kv_format.cpp)
// writes it: f16/bf16 round to nearest even; q8 scale = f16(max|x| / 127), code = rint(x / scale); q4 V per group
// of g channels: min = f16(min), scale = f16((max - min') / 15), code = clamp(rint((x - min) / scale), 0, 15), two
// channels per byte (channel 2i low). The host's std::min/max NaN rules are kept (hmin/hmax), so that even a NaN
// row encodes alike. Used by KV_STORE_BLOCKS (kv_store_blocks.cu) and the ROPE + KV_STORE_BLOCKS launch
// (fused_rope_blocks.cu).
#pragma once

#include "backend/kv_block_map.h"
#include "cuda_common.cuh"
#include "cuda_ops.h"

namespace tfu::cuda {

// std::min / std::max as the host calls them (the first argument wins unless the second compares past it).
__device__ __forceinline__ float hmin(float a, float b) { return b < a ? b : a; }
__device__ __forceinline__ float hmax(float a, float b) { return a < b ? b : a; }

// A part (K or V) of one layer as the encoder writes it: head block of KV head h of table block b at
// blocks[b] + offset + h * head_bytes.
struct kv_part_dst {
    uint64_t offset;
    uint32_t head_bytes, scale_offset, min_offset, code_offset, row_code_bytes;
    int format, group;
};

inline kv_part_dst kv_part_dst_of(const kv_layout& l, uint64_t offset) {
    kv_part_dst s{};
    s.offset = offset;
    s.head_bytes = uint32_t(l.bytes);
    s.scale_offset = uint32_t(l.scale_offset);
    s.min_offset = uint32_t(l.min_offset);
    s.code_offset = uint32_t(l.code_offset);
    s.row_code_bytes = uint32_t(l.row_code_bytes);
    s.format = int(l.format);
    s.group = l.group;
    return s;
}

// The whole warp calls it: x (hd floats, any memory the warp may read) -> row t of the head block at blk.
// xw: hd floats of shared memory for this warp; cw: hd + 1 bytes of shared memory for this warp.
__device__ __forceinline__ void kv_encode_row(const float* x, int hd, const kv_part_dst& s, uint8_t* blk, int t,
                                              float* xw, uint8_t* cw, int lane) {
    uint8_t* row = blk + s.code_offset + size_t(t) * s.row_code_bytes;
    for (int c = lane; c < hd; c += k_warp) xw[c] = x[c];
    __syncwarp();
    switch (s.format) {
        case int(kv_format::f16):
            for (int c = lane; c < hd; c += k_warp) reinterpret_cast<uint16_t*>(row)[c] = f2h(xw[c]);
            break;
        case int(kv_format::bf16):
            for (int c = lane; c < hd; c += k_warp) reinterpret_cast<uint16_t*>(row)[c] = f2bf(xw[c]);
            break;
        case int(kv_format::q8): {
            float amax = 0.0f;  // in channel order, as the host: hmax keeps the first of a NaN pair
            if (lane == 0)
                for (int c = 0; c < hd; ++c) amax = hmax(amax, fabsf(xw[c]));
            amax = __shfl_sync(0xffffffffu, amax, 0);
            const uint16_t sh = f2h(hmin(amax / 127.0f, 65504.0f));
            if (lane == 0) reinterpret_cast<uint16_t*>(blk + s.scale_offset)[t] = sh;
            const float sc = h2f(sh);
            const float inv = sc > 0.0f ? 1.0f / sc : 0.0f;
            for (int c = lane; c < hd; c += k_warp)
                reinterpret_cast<int8_t*>(row)[c] = int8_t(hmax(-127.0f, hmin(rintf(xw[c] * inv), 127.0f)));
            break;
        }
        default: {  // q4 V: per token, groups of g; a lane per group
            const int g = s.group, ng = hd / g;
            for (int gi = lane; gi < ng; gi += k_warp) {
                const float* xg = xw + gi * g;
                float mn = xg[0], mx = xg[0];
                for (int i = 1; i < g; ++i) {
                    mn = hmin(mn, xg[i]);
                    mx = hmax(mx, xg[i]);
                }
                const uint16_t mh = f2h(hmax(-65504.0f, hmin(mn, 65504.0f)));
                const float m = h2f(mh);
                // The f16 min may round above the true min: the range widens by that much (codes stay in 0..15).
                const uint16_t shh = f2h(hmin((mx - hmin(m, mn)) / 15.0f, 65504.0f));
                const float sc = h2f(shh);
                const size_t pi = size_t(t) * size_t(ng) + size_t(gi);
                reinterpret_cast<uint16_t*>(blk + s.scale_offset)[pi] = shh;
                reinterpret_cast<uint16_t*>(blk + s.min_offset)[pi] = mh;
                const float inv = sc > 0.0f ? 1.0f / sc : 0.0f;
                for (int i = 0; i < g; ++i) cw[gi * g + i] = uint8_t(hmax(0.0f, hmin(15.0f, rintf((xg[i] - m) * inv))));
            }
            if (lane == 0) cw[hd] = 0;  // an odd head size leaves the last high nibble 0
            __syncwarp();
            for (int b = lane; b < int(s.row_code_bytes); b += k_warp) row[b] = uint8_t(cw[2 * b] | (cw[2 * b + 1] << 4));
            break;
        }
    }
    __syncwarp();  // xw and cw may be reused by the warp's next row
}

}  // namespace tfu::cuda
