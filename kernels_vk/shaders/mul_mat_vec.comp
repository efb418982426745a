// MUL_MAT, matrix-vector form: dst[j][i] = w_i . x_j for the rows i of one weight piece (src0, dtype TYPE,
// dequantized element by element) and each column j of src1. Launch: one group of 64 per (row, column), group
// index = j * m + i. Threads stride over k; the partial sums are reduced with subgroupAdd (USE_SUBGROUP) and then
// across subgroups in shared memory, or in shared memory alone.
#version 450
#include "common.glsl"
#include "dequant.glsl"
#ifdef USE_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
#endif
layout(local_size_x = 64) in;
layout(push_constant) uniform pc_t {
    uint k, m, n;
    uint w_off, w_nb1;  // bytes
    uint x_off, x_s, d_off, d_s;  // words; d_off already points at this piece's first row
} pc;
shared float partial[64];

void main() {
    uint g = group_index();
    if (g >= pc.m * pc.n) return;
    uint i = g % pc.m, j = g / pc.m;
    uint t = gl_LocalInvocationID.x;
    uint row = pc.w_off + i * pc.w_nb1;
    uint xr = pc.x_off + j * pc.x_s;
    float sum = 0.0;
    for (uint e = t; e < pc.k; e += 64u) sum += dq(row, e) * src1_f(xr + e);
#ifdef USE_SUBGROUP
    sum = subgroupAdd(sum);
    if (subgroupElect()) partial[gl_SubgroupID] = sum;
    barrier();
    if (t == 0u) {
        float total = 0.0;
        for (uint s = 0u; s < gl_NumSubgroups; ++s) total += partial[s];
        dst_set(pc.d_off + j * pc.d_s + i, total);
    }
#else
    partial[t] = sum;
    barrier();
    [[unroll]] for (uint s = 32u; s > 0u; s >>= 1) {
        if (t < s) partial[t] += partial[t + s];
        barrier();
    }
    if (t == 0u) dst_set(pc.d_off + j * pc.d_s + i, partial[0]);
#endif
}
