// RMS_NORM: dst (k, rows) = src0 / sqrt(mean(src0^2) + eps) * src1 (k). Launch: one group of 256 per row.
// Thread t takes elements t, t + 256, .. in order, U = 8 at a time with their loads issued together (a row of up
// to 2048: all of them at once, kept in registers with their weights for the output pass, so that nothing is
// read twice and no load waits for the one before). The per-thread sums of squares are reduced with subgroupAdd,
// then across subgroups through shared memory (USE_SUBGROUP: one barrier), or by a shared-memory tree (8 barriers).
// ADD_NORM (variant add_rms_norm; vk_ops.cpp record_fused): ADD(y, a, b) then RMS_NORM(dst, y, src1) in one
// launch, a = src0, b = src2 (row stride 0: its one row broadcast), y at binding 5. Each thread adds its elements
// (add.comp's a + b), stores them to y and sums their squares; after the reduction it writes dst from the y values
// it stored itself. The same expressions in the same order as add.comp then rms_norm.comp: bit-identical results.
// Every element is read and written by one thread, loads before stores: y == a and dst == y in place are fine.
#version 450
#include "common.glsl"
#ifdef USE_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
#endif
layout(local_size_x = 256) in;
layout(push_constant) uniform pc_t {
    uint k, rows, x_off, x_s, w_off, d_off, d_s;
    float eps;
    uint b_off, b_s, y_off, y_s;  // ADD_NORM only: b and y (words)
} pc;
#ifdef ADD_NORM
layout(set = 0, binding = 5) buffer y_buf { uint y_w[]; };
#endif
const uint WG = 256u;
const uint U = 8u;  // elements of a thread per step
shared float partial[WG];

// Element i of row r of the normalized tensor (ADD_NORM: y, as this thread stored it).
float x_at(uint r, uint i) {
#ifdef ADD_NORM
    return uintBitsToFloat(y_w[pc.y_off + r * pc.y_s + i]);
#else
    return src0_f(pc.x_off + r * pc.x_s + i);
#endif
}

// The row's sum of squares from each thread's share, the same value in every thread.
float row_sum(float ss) {
    uint t = gl_LocalInvocationID.x;
#ifdef USE_SUBGROUP
    float s = subgroupAdd(ss);
    if (subgroupElect()) partial[gl_SubgroupID] = s;
    barrier();
    float total = 0.0;
    for (uint q = gl_SubgroupInvocationID; q < gl_NumSubgroups; q += gl_SubgroupSize) total += partial[q];
    return subgroupAdd(total);
#else
    partial[t] = ss;
    barrier();
    [[unroll]] for (uint s = WG / 2u; s > 0u; s >>= 1) {
        if (t < s) partial[t] += partial[t + s];
        barrier();
    }
    return partial[0];
#endif
}

void main() {
    uint r = group_index();
    if (r >= pc.rows) return;
    uint t = gl_LocalInvocationID.x;
    bool whole = pc.k <= WG * U;  // the thread's elements (and weights) stay in registers for the output pass
    float v[U], w[U];
    float ss = 0.0;
    for (uint i0 = t; i0 < pc.k; i0 += WG * U) {
        [[unroll]] for (uint u = 0u; u < U; ++u) {
            uint i = min(i0 + u * WG, pc.k - 1u);  // past the row: a valid element, never used
#ifdef ADD_NORM
            v[u] = src0_f(pc.x_off + r * pc.x_s + i) + src2_f(pc.b_off + r * pc.b_s + i);
#else
            v[u] = src0_f(pc.x_off + r * pc.x_s + i);
#endif
            if (whole) w[u] = src1_f(pc.w_off + i);
        }
        [[unroll]] for (uint u = 0u; u < U; ++u) {
            uint i = i0 + u * WG;
            if (i < pc.k) {
#ifdef ADD_NORM
                y_w[pc.y_off + r * pc.y_s + i] = floatBitsToUint(v[u]);
#endif
                ss += v[u] * v[u];
            }
        }
    }
    float scale = 1.0 / sqrt(row_sum(ss) / float(pc.k) + pc.eps);
    if (whole) {
        [[unroll]] for (uint u = 0u; u < U; ++u) {
            uint i = t + u * WG;
            if (i < pc.k) dst_set(pc.d_off + r * pc.d_s + i, v[u] * scale * w[u]);
        }
        return;
    }
    for (uint i0 = t; i0 < pc.k; i0 += WG * U) {
        [[unroll]] for (uint u = 0u; u < U; ++u) {
            uint i = min(i0 + u * WG, pc.k - 1u);
            v[u] = x_at(r, i);
            w[u] = src1_f(pc.w_off + i);
        }
        [[unroll]] for (uint u = 0u; u < U; ++u) {
            uint i = i0 + u * WG;
            if (i < pc.k) dst_set(pc.d_off + r * pc.d_s + i, v[u] * scale * w[u]);
        }
    }
}
