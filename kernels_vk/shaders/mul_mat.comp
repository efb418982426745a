// MUL_MAT, tiled matrix-matrix form (n > 8 columns; prefill): dst[j][i] = w_i . x_j for weight rows i (dtype TYPE)
// and f32 columns j of x, f32 accumulation.
//
// Tile: a workgroup of 256 threads computes BM x BN outputs (BM = 64 WR rows, BN = 64 WC columns; WR, WC = 1 or 2
// by -D: variants mul_mat 64x64, mul_mat_l 128x64, mul_mat_w 64x128, mul_mat_xl 128x128), each thread 4 WR rows x
// 4 WC columns in registers (vec4 accumulators over 4 consecutive rows). k advances TK = 32 elements per step: the
// step's weight tile (BM rows x 32) is dequantized into shared memory once, 8 weights per call from the wide loads
// of mmv_units.glsl (unit_w: whole 8-weight "units" of a quant block, scale and min applied there), and the x tile
// (BN columns x the same 32 elements) is loaded as vec4. The inner loop then reads WR vec4 of weights and WC vec4
// of x per k for 16 WR WC FMAs. Types without units (Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q5_K) and the tail of float
// rows (k % 8) go through dq() element by element.
//
// The 32 elements of a step are the 4 units k0/8 .. k0/8 + 3 of every row: for the float types elements
// k0 .. k0 + 31, for quant types whatever elements those units hold (unit_x: e.g. Q4_K's units mix both nibbles
// of 64-element chunks). x is loaded at the same element positions, so the dot product over the step is the
// same sum in another order. Slot kk = 4i + q of a step holds value i (0..7) of the row's unit q (0..3); within a
// slot, vec4 v (rows 4v .. 4v + 3) is stored at v ^ 2 (kk % 4): the 32 threads of a warp storing 8 rows x 4 units
// hit 32 different banks, and the 8 vec4 a warp reads per k stay one aligned 128-byte group. No padding: the
// 128x128 tile's 32 KiB fit lavapipe's maxComputeSharedMemorySize (32768; NVIDIA 49152).
//
// Global loads for step s + 1 are issued into registers before the FMAs of step s, without a branch (one shared
// buffer, two barriers per step). Rows past m and columns past n repeat row m - 1 / column n - 1 (no branches in
// the loads) and are not stored.
//
// Launch: ceil(m / BM) * ceil(n / BN) workgroups, index = tn * tiles_m + tm; push constants as mul_mat_32.comp.
#version 450
#include "common.glsl"
#include "dequant.glsl"
#include "mmv_units.glsl"
layout(local_size_x = 256) in;
layout(push_constant) uniform pc_t {
    uint k, m, n;
    uint w_off, w_nb1;  // bytes
    uint x_off, x_s, d_off, d_s;  // words
} pc;

#ifndef WR
#define WR 1  // groups of 4 rows per thread: tile rows BM = 64 WR
#endif
#ifndef WC
#define WC 1  // groups of 4 columns per thread: tile columns BN = 64 WC
#endif
const uint BM = 64u * WR, BN = 64u * WC, TK = 32u;
const uint RV = BM / 4u, CV = BN / 4u;  // vec4 per k slot of the weight / x tile
shared vec4 ws[TK * RV];  // 8 KiB per 64 rows
shared vec4 xs[TK * CV];  // 8 KiB per 64 columns

// The vec4 index of vec4 v within k slot kk: XOR-swizzled by 2 (kk % 4) (see the top of the file).
uint swz(uint kk, uint v) { return v ^ ((kk & 3u) << 1); }

// The thread's share of the next step, held in registers while the current step's FMAs run: WR weight units and
// WC x units (values 0..3 in *_a, 4..7 in *_b).
vec4 w_a[WR], w_b[WR];
vec4 x_a[WC], x_b[WC];

// Only float rows can end inside a step (k % 32 != 0) or inside a unit (k % 8 != 0); quant rows are whole blocks
// of 32 or 256 elements, so for them the element-wise tails below are statically dead.
const bool FLOAT_TYPE = TYPE == T_F32 || TYPE == T_F16 || TYPE == T_BF16;

// Weight unit u of the row at byte `row`, dequantized (elements past k give 0: only in a float row's last step).
void load_w_unit(uint row, uint u, bool w16, out vec4 a, out vec4 b) {
    if (UNIT_TYPE && (!FLOAT_TYPE || u < pc.k / 8u)) {
        vec4 sc;
        unit_w(row, u, w16, a, b, sc);
        if (UNIT_SCALED) {
            a = sc.x * a - sc.z;
            b = sc.y * b - sc.w;
        }
        return;
    }
    // No unit here: elements 8u .. 8u + 7 in order (unit_x of the float types; the dq() types use the same).
    float v[8];
    [[unroll]] for (uint i = 0u; i < 8u; ++i) {
        uint e = 8u * u + i;
        v[i] = e < pc.k ? dq(row, e) : 0.0;
    }
    a = vec4(v[0], v[1], v[2], v[3]);
    b = vec4(v[4], v[5], v[6], v[7]);
}

// x at the element positions of unit u of column word offset `col` (0 past k).
void load_x_unit(uint col, uint u, bool x4, out vec4 a, out vec4 b) {
    uint e0, e1;
    unit_x(u, e0, e1);
    if (!FLOAT_TYPE || 8u * u + 8u <= pc.k) {
        a = x_vec4(col + e0, x4);
        b = x_vec4(col + e1, x4);
        return;
    }
    float v[8];  // a float row's last, partial unit (e0 = 8u, e1 = 8u + 4), or a unit wholly past k
    [[unroll]] for (uint i = 0u; i < 8u; ++i) {
        uint e = 8u * u + i;
        v[i] = e < pc.k ? src1_f(col + e) : 0.0;
    }
    a = vec4(v[0], v[1], v[2], v[3]);
    b = vec4(v[4], v[5], v[6], v[7]);
}

// Global loads of the step starting at element k0 into the registers. Thread t takes unit q = t % 4 of weight rows
// t / 4 (+ 64 for WR = 2) and of columns t / 4 (+ 64 for WC = 2): 4 neighbouring threads read one row's (one
// column's) 32 elements of the step.
void load_step(uint t, uint k0, uint tm, uint tn, bool w16, bool x4) {
    uint q = t & 3u, u = k0 / 8u + q;
    [[unroll]] for (uint p = 0u; p < WR; ++p) {
        uint r = min(tm * BM + 64u * p + (t >> 2), pc.m - 1u);
        load_w_unit(pc.w_off + r * pc.w_nb1, u, w16, w_a[p], w_b[p]);
    }
    [[unroll]] for (uint p = 0u; p < WC; ++p) {
        uint c = min(tn * BN + 64u * p + (t >> 2), pc.n - 1u);
        load_x_unit(pc.x_off + c * pc.x_s, u, x4, x_a[p], x_b[p]);
    }
}

// Registers -> shared tiles: value i of unit q of row (column) r goes to slot kk = 4i + q, vec4 swz(kk, r / 4),
// component r % 4.
void store_step(uint t) {
    uint q = t & 3u, r4 = (t >> 2) >> 2, rc = (t >> 2) & 3u;
    [[unroll]] for (uint i = 0u; i < 8u; ++i) {
        uint kk = 4u * i + q;
        [[unroll]] for (uint p = 0u; p < WR; ++p)
            ws[kk * RV + swz(kk, 16u * p + r4)][rc] = i < 4u ? w_a[p][i & 3u] : w_b[p][i & 3u];
        [[unroll]] for (uint p = 0u; p < WC; ++p)
            xs[kk * CV + swz(kk, 16u * p + r4)][rc] = i < 4u ? x_a[p][i & 3u] : x_b[p][i & 3u];
    }
}

void main() {
    uint tiles_m = (pc.m + BM - 1u) / BM;
    uint g = group_index();
    uint tm = g % tiles_m, tn = g / tiles_m;
    if (tn * BN >= pc.n) return;  // surplus workgroups of a 2-D launch: the whole group leaves
    uint t = gl_LocalInvocationID.x;
    // Outputs: rows 4 (tr + 16a) + 0..3, columns 4 (tc + 16b) + 0..3. 32 neighbouring threads (a warp or half an
    // AMD wave) take 8 tr x 4 tc: per k and (a, b) they read 8 weight vec4 (128 bytes of one aligned 8-vec4 group,
    // swizzled) and 4 x vec4, where 16 tr x 2 tc would read 16 + 2: fewer shared-memory wavefronts per FMA.
    uint tr = (t & 7u) | (((t >> 5) & 1u) << 3), tc = ((t >> 3) & 3u) | ((t >> 6) << 2);
    // 128-bit weight loads (float types) where every row starts at a multiple of 16 bytes; vec4 x loads where
    // every column starts at a multiple of 4 words. Uniform branches inside the loads.
    bool w16 = (pc.w_off & 15u) == 0u && (pc.w_nb1 & 15u) == 0u;
    bool x4 = (pc.x_off & 3u) == 0u && (pc.x_s & 3u) == 0u;

    // acc[4 (WC a + b) + j]: column 4 (tc + 16b) + j, rows 4 (tr + 16a) + 0..3
    vec4 acc[WR * WC * 4u];
    [[unroll]] for (uint a = 0u; a < WR * WC * 4u; ++a) acc[a] = vec4(0.0);

    // The last step loads itself again rather than branch: without the branch the compiler may interleave the
    // loads and their decoding with the FMAs below.
    uint k_last = ((pc.k - 1u) / TK) * TK;
    load_step(t, 0u, tm, tn, w16, x4);
    for (uint k0 = 0u; k0 < pc.k; k0 += TK) {
        store_step(t);
        barrier();
        load_step(t, min(k0 + TK, k_last), tm, tn, w16, x4);
        [[unroll]] for (uint kk = 0u; kk < TK; ++kk) {
            vec4 wv[WR], xv[WC];
            [[unroll]] for (uint a = 0u; a < WR; ++a) wv[a] = ws[kk * RV + swz(kk, 16u * a + tr)];
            [[unroll]] for (uint b = 0u; b < WC; ++b) xv[b] = xs[kk * CV + swz(kk, 16u * b + tc)];
            [[unroll]] for (uint a = 0u; a < WR; ++a)
                [[unroll]] for (uint b = 0u; b < WC; ++b) {
                    uint o = 4u * (WC * a + b);
                    acc[o + 0u] += wv[a] * xv[b].x;
                    acc[o + 1u] += wv[a] * xv[b].y;
                    acc[o + 2u] += wv[a] * xv[b].z;
                    acc[o + 3u] += wv[a] * xv[b].w;
                }
        }
        barrier();
    }

    [[unroll]] for (uint a = 0u; a < WR; ++a)
        [[unroll]] for (uint b = 0u; b < WC; ++b)
            [[unroll]] for (uint j = 0u; j < 4u; ++j) {
                uint col = tn * BN + 4u * (tc + 16u * b) + j, i0 = tm * BM + 4u * (tr + 16u * a);
                if (col >= pc.n) continue;
                uint d = pc.d_off + col * pc.d_s;
                [[unroll]] for (uint c = 0u; c < 4u; ++c)
                    if (i0 + c < pc.m) dst_set(d + i0 + c, acc[4u * (WC * a + b) + j][c]);
            }
}
