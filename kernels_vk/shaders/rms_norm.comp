// RMS_NORM: dst (k, rows) = src0 / sqrt(mean(src0^2) + eps) * src1 (k). Launch: one group of 256 per row; the
// sum of squares is reduced in shared memory.
// ADD_NORM (variant add_rms_norm; vk_ops.cpp record_fused): ADD(y, a, b) then RMS_NORM(dst, y, src1) in one
// launch, a = src0, b = src2 (row stride 0: its one row broadcast), y at binding 5. Each thread adds its elements
// (add.comp's a + b), stores them to y and sums their squares; after the reduction it writes dst from the y values
// it stored itself. The same expressions in the same order as add.comp then rms_norm.comp: bit-identical results.
#version 450
#include "common.glsl"
layout(local_size_x = 256) in;
layout(push_constant) uniform pc_t {
    uint k, rows, x_off, x_s, w_off, d_off, d_s;
    float eps;
    uint b_off, b_s, y_off, y_s;  // ADD_NORM only: b and y (words)
} pc;
#ifdef ADD_NORM
layout(set = 0, binding = 5) buffer y_buf { uint y_w[]; };
#endif
shared float partial[256];

// Element i of row r of the normalized tensor (ADD_NORM: y, as this thread stored it).
float x_at(uint r, uint i) {
#ifdef ADD_NORM
    return uintBitsToFloat(y_w[pc.y_off + r * pc.y_s + i]);
#else
    return src0_f(pc.x_off + r * pc.x_s + i);
#endif
}

void main() {
    uint r = group_index();
    if (r >= pc.rows) return;
    uint t = gl_LocalInvocationID.x;
    float ss = 0.0;
    for (uint i = t; i < pc.k; i += 256u) {
#ifdef ADD_NORM
        float x = src0_f(pc.x_off + r * pc.x_s + i) + src2_f(pc.b_off + r * pc.b_s + i);
        y_w[pc.y_off + r * pc.y_s + i] = floatBitsToUint(x);
#else
        float x = x_at(r, i);
#endif
        ss += x * x;
    }
    partial[t] = ss;
    barrier();
    [[unroll]] for (uint s = 128u; s > 0u; s >>= 1) {
        if (t < s) partial[t] += partial[t + s];
        barrier();
    }
    float scale = 1.0 / sqrt(partial[0] / float(pc.k) + pc.eps);
    for (uint i = t; i < pc.k; i += 256u)
        dst_set(pc.d_off + r * pc.d_s + i, x_at(r, i) * scale * src1_f(pc.w_off + i));
}
