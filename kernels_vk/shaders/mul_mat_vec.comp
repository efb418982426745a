// MUL_MAT, matrix-vector form (x of NC = 1..8 columns), for up to 3 weight matrices that share x in one launch:
// dst_s[j][i] = w_s,i . x_j for each matrix s, row i, column j (weights of dtype TYPE: F32, F16, BF16, Q4_0,
// Q8_0, Q4_K and Q6_K decoded 8 at a time from wide loads by mmv_units.glsl, the others element by element by
// dequant.glsl's dq()). With GLU the launch takes a gate (s = 0) and an up (s = 1) matrix of the same
// shape and also writes glu[j][i] = silu(gate[j][i]) * up[j][i] (silu(g) = g / (1 + exp(-g)), as swiglu.comp):
// the MUL_MAT gate, MUL_MAT up, SWIGLU(gate, gate, up) of a feed-forward block in one dispatch. With RESID (one
// matrix) the launch also stores y[j][i] = r[j][i] + dst[j][i]: the residual ADD after an output projection.
//
// Bindings: all weights of the launch lie in one window (src0, byte offsets w_off), all results in one window
// (dst, word offsets d_off / glu_off), x is src1. The host fuses only matrices whose memory allows that
// (vk_ops.cpp); a matrix larger than one binding runs alone, one launch per row piece.
//
// Launch: workgroups of WG threads; a workgroup holds SLOTS x R rows of one matrix (with GLU: those rows of gate
// and the same of up), as SLOTS slots of R rows. Matrix s owns workgroups g_end[s-1] .. g_end[s] - 1.
//   SLOTS = 1: the WG threads split k and reduce with subgroupAdd, then across subgroups in shared memory
//     (USE_SUBGROUP), or in shared memory alone. Many lanes per row: for matrices of few rows.
//   SLOTS > 1 (USE_SUBGROUP only): each subgroup computes slots of its own (slot gl_SubgroupID, then
//     + gl_NumSubgroups, ...: any subgroup size works), its lanes splitting k, the sums reduced by subgroupAdd
//     alone: no shared memory, no barrier. For matrices of many rows (an output projection): the host picks
//     SLOTS = WG / subgroup size, one slot per subgroup.
// Lanes take units of 8 weights l, l + L, ... (L lanes; unit types, then elements past the last whole unit) or
// elements l, l + L, ... (dq() types); each load of x serves the slot's R (2R) rows. Partial sums: R * NC, or
// 2R * NC with GLU, at most 16. Rows past m repeat row m - 1 and are not stored.
// I8 (with USE_SUBGROUP; Q4_0, Q8_0, Q4_K, Q6_K, k = 32 XB): x quantized to int8 in shared memory by the whole
// workgroup first, then slots per subgroup as above, a lane taking whole items (b = l, l + L, ...) with packed int8
// dot products (mmv_i8.glsl). With NORM, x is an RMS_NORM's source, normalised in the same pass (mmv_i8.glsl).
// KS > 1 (I8 only): each slot's items are split over KS subgroups (part p takes the runs of L items p, p + KS,
// ..), so a subgroup's chain of dependent steps is KS times shorter; the parts' sums meet in shared memory after
// one barrier, and the workgroup's threads store the slots' outputs. The host then makes SLOTS = subgroups / KS.
// NORM on the unit path (USE_SUBGROUP, SLOTS = 1, every unit type, k a multiple of 8, the norm's weight g at a
// multiple of 16 bytes: vk_ops.cpp record_fused_mmv): w . xn = s (w . (x g)) with s = 1 / sqrt(sum(x^2) / k + eps),
// so the lanes multiply each unit of x by g as they load it, sum x^2 over the same units (the workgroup reads all of
// x for its slot anyway) and reduce it with the products; s scales the sums at the end. Workgroup 0 also stores
// xn = x s g (binding 5) for any later reader of the norm's result.
#version 450
#include "common.glsl"
#include "dequant.glsl"
#include "mmv_units.glsl"
#ifdef USE_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
#endif
layout(local_size_x_id = 6) in;             // WG threads (64, 128 or 256)
layout(constant_id = 1) const uint NC = 1;   // columns of x (1..8)
layout(constant_id = 2) const uint R = 1;    // rows of each matrix per slot
layout(constant_id = 3) const uint GLU = 0;  // 1: gate/up + SWIGLU
layout(constant_id = 4) const uint UG = 1;   // units per thread and step (unit types): 1, 2 or 4
layout(constant_id = 5) const uint SLOTS = 1;  // slots of R rows per workgroup (1 without USE_SUBGROUP)
layout(constant_id = 6) const uint WG = 64;    // threads per workgroup
layout(constant_id = 7) const uint RESID = 0;  // 1: one matrix, and y = r + d stored beside d (the residual ADD)
layout(constant_id = 8) const uint XB = 1;     // I8: blocks of 32 per column of x (k / 32)
layout(constant_id = 9) const uint NORM = 0;   // 1: x is an RMS_NORM's source, normalised here (see above)
layout(constant_id = 11) const uint KS = 1;    // I8: subgroups sharing one slot's items (1, 2 or 4)
#ifdef I8
const bool INT8 = true;
#else
const bool INT8 = false;
#endif
const uint MATS = GLU + 1u;                  // matrices whose rows one workgroup holds
const uint MAX_ACC = 16u;                    // the host keeps MATS * R * NC <= 16
const bool UNIT_NORM = NORM != 0u && !INT8;  // the norm on the unit path
const uint THREADS = WG;

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
    uint r_off, r_s, y_off, y_s;  // words: the residual r (src2) and the ADD's result y (binding 5) (RESID);
                                  // NORM: the norm's weight (src2, r_off) and its result xn (binding 5, y_off, y_s)
    float eps;                    // NORM
} pc;
layout(set = 0, binding = 5) buffer y_buf { uint y_w[]; };  // RESID and NORM only
layout(set = 0, binding = 3) readonly buffer src2_v4_buf { vec4 src2_v4[]; };  // UNIT_NORM: g, 16-byte aligned
#ifdef I8
#include "mmv_i8.glsl"
#endif

// The SLOTS = 1 reduction (not on the int8 path): per thread, or per subgroup with subgroups. UNIT_NORM adds each
// column's sum of x^2 as entries MAX_ACC .. MAX_ACC + NC - 1 (per subgroup: RED entries, at most THREADS / 2
// subgroups), and total[MAX_ACC + j] becomes column j's scale s.
const uint RED = UNIT_NORM ? MAX_ACC + 8u : MAX_ACC;
shared float partial[INT8 ? (KS > 1u ? SLOTS * KS * MAX_ACC : 1u) : THREADS * MAX_ACC];
shared float total[MAX_ACC + 8u];

float silu_mul(float g, float u) { return g / (1.0 + exp(-g)) * u; }

uint rows[2 * 4];     // byte offset of each row of the slot (MATS * R <= 8)
float acc[MAX_ACC];   // partial sums: row rr, column j at rr * NC + j
float nss[8];         // UNIT_NORM: the lane's sum of x^2 per column

// The unit path (mmv_units.glsl): lane t of L takes units t, t + L, ... of 8 weights of every row of the slot, UG
// of them per step (t + L UG s .. t + L (UG s + UG - 1)); each column's two vec4 of x serve all rows. All loads of
// a step are issued before its arithmetic, so a lane keeps UG units' bytes in flight; the lanes' loads of one
// unit stay contiguous (coalesced). w16 / x4: 128-bit loads of weights / x (see compute_slot).
const uint ROWS = MATS * R;  // rows of a slot (<= 8)
void accumulate_units(uint t, uint L, bool w16, bool x4) {
    const uint n_units = pc.k / 8u;
    for (uint u0 = t; u0 < n_units; u0 += L * UG) {
        vec4 xa[UG * NC], xb[UG * NC];
        vec4 wa[UG * ROWS], wb[UG * ROWS], sc[UG * ROWS];
        vec4 ga[UG], gb[UG];  // UNIT_NORM: g at the unit's elements
        [[unroll]] for (uint q = 0u; q < UG; ++q) {
            uint u = min(u0 + q * L, n_units - 1u);  // past the row's end: a repeat, not summed below
            uint e0, e1;
            unit_x(u, e0, e1);  // multiples of 4
            if (UNIT_NORM) {
                ga[q] = src2_v4[(pc.r_off + e0) >> 2];
                gb[q] = src2_v4[(pc.r_off + e1) >> 2];
            }
            [[unroll]] for (uint j = 0u; j < NC; ++j) {
                uint xj = pc.x_off + j * pc.x_s;
                xa[q * NC + j] = x_vec4(xj + e0, x4);
                xb[q * NC + j] = x_vec4(xj + e1, x4);
            }
            [[unroll]] for (uint rr = 0u; rr < ROWS; ++rr)
                unit_w(rows[rr], u, w16, wa[q * ROWS + rr], wb[q * ROWS + rr], sc[q * ROWS + rr]);
        }
        [[unroll]] for (uint q = 0u; q < UG; ++q) {
            if (u0 + q * L >= n_units) break;
            if (UNIT_NORM) {
                [[unroll]] for (uint j = 0u; j < NC; ++j) {
                    const uint xq = q * NC + j;
                    nss[j] += dot(xa[xq], xa[xq]) + dot(xb[xq], xb[xq]);
                    xa[xq] *= ga[q];
                    xb[xq] *= gb[q];
                }
            }
            [[unroll]] for (uint rr = 0u; rr < ROWS; ++rr) {
                const uint wq = q * ROWS + rr;
                [[unroll]] for (uint j = 0u; j < NC; ++j) {
                    const uint xq = q * NC + j;
                    float v;
                    if (UNIT_SCALED) v = sc[wq].x * dot(wa[wq], xa[xq]) + sc[wq].y * dot(wb[wq], xb[xq]);
                    else v = dot(wa[wq], xa[xq]) + dot(wb[wq], xb[xq]);
                    if (UNIT_MIN) v -= sc[wq].z * dot(xa[xq], vec4(1.0)) + sc[wq].w * dot(xb[xq], vec4(1.0));
                    acc[rr * NC + j] += v;
                }
            }
        }
    }
}

#ifdef I8
// The int8 path: lane t of L takes items (mmv_i8.glsl: blocks of 32, or quarters of a k-quant super-block) t,
// t + L, ... of every row of the slot, UG of them per step; each item meets every column's x. The loads run one
// step ahead of the arithmetic (ld_p / ld_q hold the next step's items while this step's are computed); main
// issues a subgroup's first slot's first step (i8_loads) before x is quantized, so the weights stream while the
// workgroup quantizes. With KS > 1 a step's items are SI = KS L apart (t already holds the part's offset).
const uint I8_SI = KS;  // the items of a step are I8_SI L apart
vec4 ld_p[UG * ROWS];
uint ld_q[UG * ROWS][16];
void i8_loads(uint b0, uint L) {
    [[unroll]] for (uint u = 0u; u < UG; ++u) {
        uint b = min(b0 + u * I8_SI * L, I8_ITEMS - 1u);  // past the row's end: a repeat, not summed below
        [[unroll]] for (uint rr = 0u; rr < ROWS; ++rr)
            i8_block(rows[rr], b, ld_p[u * ROWS + rr], ld_q[u * ROWS + rr]);
    }
}
void accumulate_i8(uint t, uint L) {
    const uint step = I8_SI * L * UG;
    for (uint b0 = t; b0 < I8_ITEMS; b0 += step) {
        vec4 p[UG * ROWS];
        uint q[UG * ROWS][16];
        [[unroll]] for (uint a = 0u; a < UG * ROWS; ++a) {
            p[a] = ld_p[a];
            [[unroll]] for (uint w = 0u; w < 16u; ++w) q[a][w] = w < I8_WORDS ? ld_q[a][w] : 0u;
        }
        if (b0 + step < I8_ITEMS) i8_loads(b0 + step, L);
        [[unroll]] for (uint u = 0u; u < UG; ++u) {
            if (b0 + u * I8_SI * L >= I8_ITEMS) break;
            [[unroll]] for (uint rr = 0u; rr < ROWS; ++rr)
                [[unroll]] for (uint j = 0u; j < NC; ++j)
                    acc[rr * NC + j] += i8_dot(p[u * ROWS + rr], q[u * ROWS + rr], j, b0 + u * I8_SI * L);
        }
    }
}
#endif

// Whether every column of x starts at a multiple of 4 words (x_vec4's 128-bit loads).
bool x_aligned() { return (pc.x_off & 3u) == 0u && (NC == 1u || (pc.x_s & 3u) == 0u); }

// rows = the byte offsets of the rows of the slot whose first row of matrix s is i0.
void slot_rows(uint s, uint i0) {
    [[unroll]] for (uint rr = 0u; rr < ROWS; ++rr) {
        uint sm = GLU != 0u ? rr / R : s;
        uint i = min(i0 + rr % R, pc.m[sm] - 1u);
        rows[rr] = pc.w_off[sm] + i * pc.w_nb1[sm];
    }
}

// acc = the partial sums of lane t of L over the slot whose rows slot_rows has set (I8: and whose first step
// i8_loads has issued).
void compute_slot(uint t, uint L) {
    [[unroll]] for (uint a = 0u; a < MAX_ACC; ++a) acc[a] = 0.0;
    [[unroll]] for (uint j = 0u; j < 8u; ++j) nss[j] = 0.0;
#ifdef I8
    accumulate_i8(t, L);
    return;
#endif
    if (UNIT_TYPE) {
        // 128-bit loads where every row of the slot (and x) sits at a multiple of 16 bytes; the branch is
        // uniform, and each call is specialised on its constant flags.
        bool w16 = true;
        [[unroll]] for (uint rr = 0u; rr < ROWS; ++rr) w16 = w16 && (rows[rr] & 15u) == 0u;
        bool x4 = x_aligned();
        if (x4 && w16) accumulate_units(t, L, true, true);
        else if (x4) accumulate_units(t, L, false, true);
        else accumulate_units(t, L, false, false);
    }
    // Elements not in units: all of them for the other types, k % 8 for the float types.
    for (uint e = (UNIT_TYPE ? pc.k & ~7u : 0u) + t; e < pc.k; e += L) {
        float xv[8];
        [[unroll]] for (uint j = 0u; j < NC; ++j) xv[j] = src1_f(pc.x_off + j * pc.x_s + e);
        [[unroll]] for (uint rr = 0u; rr < ROWS; ++rr) {
            float w = dq(rows[rr], e);
            [[unroll]] for (uint j = 0u; j < NC; ++j) acc[rr * NC + j] += w * xv[j];
        }
    }
}

// Output a = r * NC + j of the slot (row i0 + r, column j): v (matrix s), with GLU also up = u and silu(v) * u
// (in this order: the product may be written over gate), with RESID also y = residual + v (add.comp's one add on
// the value just stored: the ADD after the projection bit for bit; y may be the residual itself).
void store(uint s, uint i0, uint a, float v, float u) {
    uint r = a / NC, j = a % NC, i = i0 + r;
    if (i >= pc.m[s]) return;
    dst_set(pc.d_off[s] + j * pc.d_s[s] + i, v);
    if (RESID != 0u) y_w[pc.y_off + j * pc.y_s + i] = floatBitsToUint(src2_f(pc.r_off + j * pc.r_s + i) + v);
    if (GLU != 0u) {
        dst_set(pc.d_off[1] + j * pc.d_s[1] + i, u);
        dst_set(pc.glu_off + j * pc.glu_s + i, silu_mul(v, u));
    }
}

void main() {
    uint g = group_index();
    uint n_groups = GLU != 0u ? pc.g_end[0] : pc.g_end[pc.n_mat - 1u];
    if (g >= n_groups) return;  // the whole workgroup: no barrier is skipped by part of it
    uint s = g < pc.g_end[0] ? 0u : (g < pc.g_end[1] ? 1u : 2u);
    uint base = (g - (s == 0u ? 0u : pc.g_end[s - 1u])) * SLOTS * R;
    const uint OUT = R * NC;  // outputs of a slot per matrix
    uint t = gl_LocalInvocationID.x;
#ifdef I8
    // Work p = gl_SubgroupID, + gl_NumSubgroups, ..: slot p % SLOTS, part p / SLOTS (KS = 1: the slot alone).
    const uint L8 = gl_SubgroupSize, lane8 = gl_SubgroupInvocationID;
    if (gl_SubgroupID < SLOTS * KS) {  // the subgroup's first work: its first loads in flight while x is quantized
        slot_rows(s, base + (gl_SubgroupID % SLOTS) * R);
        i8_loads(lane8 + (gl_SubgroupID / SLOTS) * L8, L8);
    }
    if (x_aligned()) quantize_x(true);  // the branch is uniform: each call specialised on its flag
    else quantize_x(false);
    if (KS > 1u) {
        for (uint p = gl_SubgroupID; p < SLOTS * KS; p += gl_NumSubgroups) {
            const uint slot = p % SLOTS, part = p / SLOTS;
            if (p != gl_SubgroupID) {
                slot_rows(s, base + slot * R);
                i8_loads(lane8 + part * L8, L8);
            }
            compute_slot(lane8 + part * L8, L8);
            [[unroll]] for (uint a = 0u; a < MATS * OUT; ++a) {
                const float v = subgroupAdd(acc[a]);
                if (subgroupElect()) partial[(slot * KS + part) * MAX_ACC + a] = v;
            }
        }
        barrier();
        for (uint e = t; e < SLOTS * OUT; e += THREADS) {  // output a of slot e / OUT: its parts summed in order
            const uint slot = e / OUT, a = e % OUT;
            float v = 0.0, u = 0.0;
            for (uint part = 0u; part < KS; ++part) {
                v += partial[(slot * KS + part) * MAX_ACC + a];
                if (GLU != 0u) u += partial[(slot * KS + part) * MAX_ACC + OUT + a];
            }
            store(s, base + slot * R, a, v, u);
        }
        return;
    }
#endif
#ifdef USE_SUBGROUP
    if (SLOTS > 1u || INT8) {
        const uint L = gl_SubgroupSize, lane = gl_SubgroupInvocationID;
        for (uint slot = gl_SubgroupID; slot < SLOTS; slot += gl_NumSubgroups) {
            uint i0 = base + slot * R;
            if (!INT8 || slot != gl_SubgroupID) {
                slot_rows(s, i0);
#ifdef I8
                i8_loads(lane, L);
#endif
            }
            compute_slot(lane, L);
            float tot[MAX_ACC];
            [[unroll]] for (uint a = 0u; a < MATS * OUT; ++a) tot[a] = subgroupAdd(acc[a]);
            [[unroll]] for (uint a = 0u; a < OUT; ++a)
                if (lane == a % L) store(s, i0, a, tot[a], GLU != 0u ? tot[min(OUT + a, MAX_ACC - 1u)] : 0.0);
        }
        return;
    }
    slot_rows(s, base);
    compute_slot(t, THREADS);
    [[unroll]] for (uint a = 0u; a < MATS * OUT; ++a) {
        float v = subgroupAdd(acc[a]);
        if (subgroupElect()) partial[gl_SubgroupID * RED + a] = v;
    }
    if (UNIT_NORM) {
        [[unroll]] for (uint j = 0u; j < NC; ++j) {
            float v = subgroupAdd(nss[j]);
            if (subgroupElect()) partial[gl_SubgroupID * RED + MAX_ACC + j] = v;
        }
    }
    barrier();
    if (t < MATS * OUT) {
        float v = 0.0;
        for (uint q = 0u; q < gl_NumSubgroups; ++q) v += partial[q * RED + t];
        total[t] = v;
    }
    if (UNIT_NORM && t >= MAX_ACC && t < MAX_ACC + NC) {  // THREADS >= 64 > MAX_ACC + 8
        float v = 0.0;
        for (uint q = 0u; q < gl_NumSubgroups; ++q) v += partial[q * RED + t];
        total[t] = 1.0 / sqrt(v / float(pc.k) + pc.eps);
    }
#else
    slot_rows(s, base);
    compute_slot(t, THREADS);
    [[unroll]] for (uint a = 0u; a < MATS * OUT; ++a) partial[t * MAX_ACC + a] = acc[a];
    barrier();
    if (t < MATS * OUT) {
        float v = 0.0;
        for (uint q = 0u; q < THREADS; ++q) v += partial[q * MAX_ACC + t];
        total[t] = v;
    }
#endif
    barrier();
    if (UNIT_NORM) {
        if (t < OUT) {
            const float sc = total[MAX_ACC + t % NC];
            store(s, base, t, total[t] * sc, GLU != 0u ? total[min(OUT + t, MAX_ACC - 1u)] * sc : 0.0);
        }
        if (g == 0u) {  // xn = x s g, as rms_norm.comp multiplies
            for (uint e = t; e < pc.k; e += THREADS)
                [[unroll]] for (uint j = 0u; j < NC; ++j)
                    y_w[pc.y_off + j * pc.y_s + e] =
                        floatBitsToUint(src1_f(pc.x_off + j * pc.x_s + e) * total[MAX_ACC + j] * src2_f(pc.r_off + e));
        }
        return;
    }
    if (t < OUT) store(s, base, t, total[t], GLU != 0u ? total[min(OUT + t, MAX_ACC - 1u)] : 0.0);
}
