// MUL_MAT, matrix-vector form (x of NC = 1..8 columns), for up to 3 weight matrices that share x in one launch:
// dst_s[j][i] = w_s,i . x_j for each matrix s, row i, column j (weights of dtype TYPE: F32, F16, BF16, Q4_0,
// Q8_0, Q4_K and Q6_K decoded 8 at a time from wide loads by mmv_units.glsl, the others element by element by
// dequant.glsl's dq()). With GLU the launch takes a gate (s = 0) and an up (s = 1) matrix of the same
// shape and also writes glu[j][i] = silu(gate[j][i]) * up[j][i] (silu(g) = g / (1 + exp(-g)), as swiglu.comp):
// the MUL_MAT gate, MUL_MAT up, SWIGLU(gate, gate, up) of a feed-forward block in one dispatch.
//
// Bindings: all weights of the launch lie in one window (src0, byte offsets w_off), all results in one window
// (dst, word offsets d_off / glu_off), x is src1. The host fuses only matrices whose memory allows that
// (vk_ops.cpp); a matrix larger than one binding runs alone, one launch per row piece.
//
// Launch: one workgroup of 64 per R rows of one matrix (with GLU: R rows of gate and the same R rows of up).
// Matrix s owns workgroups g_end[s-1] .. g_end[s] - 1. The 64 threads split k: thread t takes units t, t + 64, ...
// of 8 weights (unit types; then elements past the last whole unit) or elements t, t + 64, ... (dq() types); each
// load of x serves the workgroup's R (2R) rows. Partial sums (R * NC, or 2R * NC with GLU, at
// most 16) are reduced with subgroupAdd then across subgroups in shared memory (USE_SUBGROUP), or in shared
// memory alone. Rows past m repeat row m - 1 and are not stored.
#version 450
#include "common.glsl"
#include "dequant.glsl"
#include "mmv_units.glsl"
#ifdef USE_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
#endif
layout(local_size_x = 64) in;
layout(constant_id = 1) const uint NC = 1;   // columns of x (1..8)
layout(constant_id = 2) const uint R = 1;    // rows of each matrix per workgroup
layout(constant_id = 3) const uint GLU = 0;  // 1: gate/up + SWIGLU
const uint MATS = GLU + 1u;                  // matrices whose rows one workgroup holds
const uint MAX_ACC = 16u;                    // the host keeps MATS * R * NC <= 16
const uint THREADS = 64u;

layout(push_constant) uniform pc_t {
    uint k, n_mat;
    uint x_off, x_s;    // words
    uint w_off[3];      // bytes into the weight window
    uint w_nb1[3];      // bytes
    uint m[3];          // rows
    uint d_off[3];      // words into the result window
    uint d_s[3];        // words
    uint g_end[3];      // workgroups of matrices 0..s
    uint glu_off, glu_s;  // words: silu(gate) * up (GLU)
} pc;

shared float partial[THREADS * MAX_ACC];
shared float total[MAX_ACC];

float silu_mul(float g, float u) { return g / (1.0 + exp(-g)) * u; }

uint rows[2 * 4];     // byte offset of each row the workgroup holds (MATS * R <= 8)
float acc[MAX_ACC];   // partial sums: row rr, column j at rr * NC + j

// The unit path (mmv_units.glsl): thread t takes units t, t + 64, ... of 8 weights of every row it holds; each
// column's two vec4 of x serve all rows. w16 / x4: 128-bit loads of weights / x (see main).
void accumulate_units(uint t, bool w16, bool x4) {
    const uint n_units = pc.k / 8u;
    for (uint u = t; u < n_units; u += THREADS) {
        uint e0, e1;
        unit_x(u, e0, e1);
        vec4 xa[8], xb[8];
        [[unroll]] for (uint j = 0u; j < NC; ++j) {
            uint xj = pc.x_off + j * pc.x_s;
            xa[j] = x_vec4(xj + e0, x4);
            xb[j] = x_vec4(xj + e1, x4);
        }
        [[unroll]] for (uint rr = 0u; rr < MATS * R; ++rr) {
            vec4 wa, wb, sc;
            unit_w(rows[rr], u, w16, wa, wb, sc);
            [[unroll]] for (uint j = 0u; j < NC; ++j) {
                float v;
                if (UNIT_SCALED) v = sc.x * dot(wa, xa[j]) + sc.y * dot(wb, xb[j]);
                else v = dot(wa, xa[j]) + dot(wb, xb[j]);
                if (UNIT_MIN) v -= sc.z * dot(xa[j], vec4(1.0)) + sc.w * dot(xb[j], vec4(1.0));
                acc[rr * NC + j] += v;
            }
        }
    }
}

void main() {
    uint g = group_index();
    uint n_groups = GLU != 0u ? pc.g_end[0] : pc.g_end[pc.n_mat - 1u];
    if (g >= n_groups) return;  // the whole workgroup: no barrier is skipped by part of it
    uint s = g < pc.g_end[0] ? 0u : (g < pc.g_end[1] ? 1u : 2u);
    uint i0 = (g - (s == 0u ? 0u : pc.g_end[s - 1u])) * R;
    uint t = gl_LocalInvocationID.x;

    [[unroll]] for (uint rr = 0u; rr < MATS * R; ++rr) {
        uint sm = GLU != 0u ? rr / R : s;
        uint i = min(i0 + rr % R, pc.m[sm] - 1u);
        rows[rr] = pc.w_off[sm] + i * pc.w_nb1[sm];
    }
    [[unroll]] for (uint a = 0u; a < MAX_ACC; ++a) acc[a] = 0.0;
    if (UNIT_TYPE) {
        // 128-bit loads where every row of the workgroup (and x) sits at a multiple of 16 bytes; the branch is
        // uniform, and each call is specialised on its constant flags.
        bool w16 = true;
        [[unroll]] for (uint rr = 0u; rr < MATS * R; ++rr) w16 = w16 && (rows[rr] & 15u) == 0u;
        bool x4 = (pc.x_off & 3u) == 0u && (NC == 1u || (pc.x_s & 3u) == 0u);
        if (x4 && w16) accumulate_units(t, true, true);
        else if (x4) accumulate_units(t, false, true);
        else accumulate_units(t, false, false);
    }
    // Elements not in units: all of them for the other types, k % 8 for the float types.
    for (uint e = (UNIT_TYPE ? pc.k & ~7u : 0u) + t; e < pc.k; e += THREADS) {
        float xv[8];
        [[unroll]] for (uint j = 0u; j < NC; ++j) xv[j] = src1_f(pc.x_off + j * pc.x_s + e);
        [[unroll]] for (uint rr = 0u; rr < MATS * R; ++rr) {
            float w = dq(rows[rr], e);
            [[unroll]] for (uint j = 0u; j < NC; ++j) acc[rr * NC + j] += w * xv[j];
        }
    }

    const uint ACC = MATS * R * NC;
#ifdef USE_SUBGROUP
    [[unroll]] for (uint a = 0u; a < ACC; ++a) {
        float v = subgroupAdd(acc[a]);
        if (subgroupElect()) partial[gl_SubgroupID * MAX_ACC + a] = v;
    }
    barrier();
    if (t < ACC) {
        float v = 0.0;
        for (uint q = 0u; q < gl_NumSubgroups; ++q) v += partial[q * MAX_ACC + t];
        total[t] = v;
    }
#else
    [[unroll]] for (uint a = 0u; a < ACC; ++a) partial[t * MAX_ACC + a] = acc[a];
    barrier();
    if (t < ACC) {
        float v = 0.0;
        for (uint q = 0u; q < THREADS; ++q) v += partial[q * MAX_ACC + t];
        total[t] = v;
    }
#endif
    barrier();
    // Results: thread t stores (row r, column j) of the workgroup's rows; with GLU also up and silu(gate) * up
    // (in this order: the product may be written over gate).
    if (t >= R * NC) return;
    uint r = t / NC, j = t % NC, i = i0 + r;
    if (i >= pc.m[s]) return;
    float v = total[t];
    dst_set(pc.d_off[s] + j * pc.d_s[s] + i, v);
    if (GLU != 0u) {
        float u = total[R * NC + t];
        dst_set(pc.d_off[1] + j * pc.d_s[1] + i, u);
        dst_set(pc.glu_off + j * pc.glu_s + i, silu_mul(v, u));
    }
}
