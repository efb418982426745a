// RMS_NORM: dst (k, rows) = src0 / sqrt(mean(src0^2) + eps) * src1 (k). Launch: one group of 256 per row; the
// sum of squares is reduced in shared memory.
#version 450
#include "common.glsl"
layout(local_size_x = 256) in;
layout(push_constant) uniform pc_t {
    uint k, rows, x_off, x_s, w_off, d_off, d_s;
    float eps;
} pc;
shared float partial[256];

void main() {
    uint r = group_index();
    if (r >= pc.rows) return;
    uint t = gl_LocalInvocationID.x;
    float ss = 0.0;
    for (uint i = t; i < pc.k; i += 256u) {
        float x = src0_f(pc.x_off + r * pc.x_s + i);
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
        dst_set(pc.d_off + r * pc.d_s + i, src0_f(pc.x_off + r * pc.x_s + i) * scale * src1_f(pc.w_off + i));
}
