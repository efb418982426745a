// KV_STORE: cache rows i0 .. i0+n-1 of dst (row, n_ctx; f32, f16 or bf16) = src0 (row, n) converted with
// round-to-nearest-even exactly as core/fp16.h (kv_half.glsl). One thread per 32-bit word of the stored byte range
// [start, end) of dst: a 16-bit cache word holds two elements (possibly of two rows, or one element next to bytes
// this op must not touch), so the thread that owns the word writes both halves.
// Launch: ceil(words / 256) groups of 256. dyn != 0 (a kept run, vk_backend_replay.cpp): i0 is param_w[dyn - 1],
// start/end are given for i0 = 0 and the launch covers span / 4 + 2 words (threads past the range return).
// PAIR (variant kv_store_pair; vk_ops.cpp record_fused): KV_STORE k then KV_STORE v into caches of one dtype in
// one launch: groups [0, groups0) store part 0 (src0 -> dst) as above, the rest part 1 (binding 6 -> binding 5),
// each part with its own words, rows and dyn slot; each word is written as by the op alone.
#version 450
#include "common.glsl"
#include "kv_half.glsl"
layout(local_size_x = 256) in;
struct part_t {
    uint k;                 // elements per row
    uint start, end, d_nb1; // bytes within the cache binding: first byte of row i0, one past the last stored byte
    uint x_off, x_s;        // words
    uint dyn;               // 0, or the parameter-arena word holding i0, + 1
};
layout(push_constant) uniform pc_t {
    uint ctype;             // 0 f32, 1 f16, 30 bf16 (GGUF ids)
    uint groups0;           // PAIR: the workgroups of part 0
    part_t p[2];
} pc;
#ifdef PAIR
layout(set = 0, binding = 5) buffer cv_buf { uint cv_w[]; };
layout(set = 0, binding = 6) readonly buffer xv_buf { uint xv_w[]; };
#endif
bool second = false;        // PAIR: this workgroup stores part 1
part_t g_p;                 // this workgroup's part
uint g_start, g_end;        // its start/end moved to row i0 (when it is read on the device)

uint x_word(uint i) {
#ifdef PAIR
    if (second) return xv_w[i];
#endif
    return src0_w[i];
}
uint c_word(uint w) {
#ifdef PAIR
    if (second) return cv_w[w];
#endif
    return dst_w[w];
}
void c_set(uint w, uint v) {
#ifdef PAIR
    if (second) {
        cv_w[w] = v;
        return;
    }
#endif
    dst_w[w] = v;
}

// The new 16-bit value for dst byte b (even), or 0x10000 to keep what is there.
uint half_for(uint b) {
    if (b < g_start || b >= g_end) return 0x10000u;
    uint rel = b - g_start, r = rel / g_p.d_nb1, e = (rel % g_p.d_nb1) / 2u;
    if (e >= g_p.k) return 0x10000u;  // row padding
    float v = uintBitsToFloat(x_word(g_p.x_off + r * g_p.x_s + e));
    return f32_to_half(v, pc.ctype);
}

void main() {
    uint g = group_index();
#ifdef PAIR
    second = g >= pc.groups0;
    if (second) g -= pc.groups0;
#endif
    g_p = pc.p[second ? 1 : 0];
    uint shift = g_p.dyn != 0u ? param_w[g_p.dyn - 1u] * g_p.d_nb1 : 0u;
    g_start = g_p.start + shift;
    g_end = g_p.end + shift;
    uint w = g_start / 4u + g * 256u + gl_LocalInvocationID.x;
    if (4u * w >= g_end) return;
    if (pc.ctype == 0u) {  // f32: rows are 4-byte strided
        uint rel = 4u * w - g_start, r = rel / g_p.d_nb1, e = (rel % g_p.d_nb1) / 4u;
        if (e < g_p.k) c_set(w, x_word(g_p.x_off + r * g_p.x_s + e));
        return;
    }
    uint lo = half_for(4u * w), hi = half_for(4u * w + 2u);
    if (lo == 0x10000u && hi == 0x10000u) return;
    uint old = (lo == 0x10000u || hi == 0x10000u) ? c_word(w) : 0u;
    c_set(w, (lo == 0x10000u ? (old & 0xffffu) : lo) | ((hi == 0x10000u ? (old >> 16) : hi) << 16));
}
