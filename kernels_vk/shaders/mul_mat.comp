// MUL_MAT, tiled matrix-matrix form (n > 8 columns; prefill): dst[j][i] = w_i . x_j for weight rows i (dtype TYPE)
// and f32 columns j of x, f32 accumulation.
//
// Tile: a workgroup of 256 threads computes BM x 64 outputs (BM = 64 rows, or 128 with -DWR=2), each thread 4*WR
// rows x 4 columns in registers (vec4 accumulators over 4 consecutive rows). k advances TK = 32 elements per step:
// the step's weight tile (BM rows x 32) is dequantized into shared memory once, 8 weights per thread call from the
// wide loads of mmv_units.glsl (unit_w: whole 8-weight "units" of a quant block, scale and min applied there), and
// the x tile (64 columns x the same 32 elements) is loaded as vec4. The inner loop then reads one vec4 of weights
// (per 4 rows) and one vec4 of x per k for 16 (32) FMAs: shared-memory traffic per FMA is a quarter of a
// 1-output-per-load kernel. Types without units (Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q5_K) and the tail of float rows
// (k % 8) go through dq() element by element.
//
// The 32 elements of a step are the 4 units k0/8 .. k0/8 + 3 of every row: for the float types elements
// k0 .. k0 + 31, for quant types whatever elements those units hold (unit_x: e.g. Q4_K's units mix both nibbles
// of 64-element chunks). x is loaded at the same element positions, so the dot product over the step is the
// same sum in another order. Slot kk = 4 * i + q of a step holds value i (0..7) of the row's unit q (0..3): with a
// row stride of BM + 8 floats, the 32 threads of a warp storing (8 rows x 4 units) hit 32 different banks.
//
// Global loads for step s + 1 are issued into registers before the FMAs of step s (one shared buffer, two
// barriers per step). Rows past m and columns past n repeat row m - 1 / column n - 1 (no branches in the loads)
// and are not stored.
//
// Launch: ceil(m / BM) * ceil(n / 64) workgroups, index = tn * tiles_m + tm; push constants as mul_mat_32.comp.
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
#define WR 1
#endif
const uint BM = 64u * WR, BN = 64u, TK = 32u;
const uint RV = BM / 4u + 2u;  // vec4 per k slot of the weight tile (2 of padding: see above)
const uint CV = BN / 4u + 2u;  // vec4 per k slot of the x tile
shared vec4 ws[TK * RV];
shared vec4 xs[TK * CV];

// The thread's share of the next step, held in registers while the current step's FMAs run: WR weight units and
// one x unit (values 0..3 in *_a, 4..7 in *_b).
vec4 w_a[WR], w_b[WR];
vec4 x_a, x_b;

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
// t / 4 (+ 64 for WR = 2) and of column t / 4: 4 neighbouring threads read one row's 32 elements of the step.
void load_step(uint t, uint k0, uint tm, uint tn, bool w16, bool x4) {
    uint q = t & 3u, u = k0 / 8u + q;
    [[unroll]] for (uint p = 0u; p < WR; ++p) {
        uint r = min(tm * BM + 64u * p + (t >> 2), pc.m - 1u);
        load_w_unit(pc.w_off + r * pc.w_nb1, u, w16, w_a[p], w_b[p]);
    }
    uint c = min(tn * BN + (t >> 2), pc.n - 1u);
    load_x_unit(pc.x_off + c * pc.x_s, u, x4, x_a, x_b);
}

// Registers -> shared tiles: value i of unit q of row r goes to slot 4i + q, vec4 r / 4, component r % 4.
void store_step(uint t) {
    uint q = t & 3u, r4 = (t >> 2) >> 2, rc = (t >> 2) & 3u;
    [[unroll]] for (uint p = 0u; p < WR; ++p)
        [[unroll]] for (uint i = 0u; i < 4u; ++i) {
            ws[(4u * i + q) * RV + 16u * p + r4][rc] = w_a[p][i];
            ws[(4u * (i + 4u) + q) * RV + 16u * p + r4][rc] = w_b[p][i];
        }
    [[unroll]] for (uint i = 0u; i < 4u; ++i) {
        xs[(4u * i + q) * CV + r4][rc] = x_a[i];
        xs[(4u * (i + 4u) + q) * CV + r4][rc] = x_b[i];
    }
}

void main() {
    uint tiles_m = (pc.m + BM - 1u) / BM;
    uint g = group_index();
    uint tm = g % tiles_m, tn = g / tiles_m;
    if (tn * BN >= pc.n) return;  // surplus workgroups of a 2-D launch: the whole group leaves
    uint t = gl_LocalInvocationID.x;
    // Outputs: rows 4 (tr + 16p) + 0..3, columns 4 tc + 0..3. 32 neighbouring threads (a warp or half an AMD
    // wave) take 8 tr x 4 tc: per k they read 8 weight vec4 (128 contiguous bytes) and 4 x vec4, 192 bytes of
    // shared memory for 512 (1024) FMAs, where 16 tr x 2 tc would read 288.
    uint tr = (t & 7u) | (((t >> 5) & 1u) << 3), tc = ((t >> 3) & 3u) | ((t >> 6) << 2);
    // 128-bit weight loads (float types) where every row starts at a multiple of 16 bytes; vec4 x loads where
    // every column starts at a multiple of 4 words. Uniform branches inside the loads.
    bool w16 = (pc.w_off & 15u) == 0u && (pc.w_nb1 & 15u) == 0u;
    bool x4 = (pc.x_off & 3u) == 0u && (pc.x_s & 3u) == 0u;

    vec4 acc[WR * 4u];  // acc[4p + j]: column 4 tc + j, rows 4 (tr + 16p) + 0..3
    [[unroll]] for (uint a = 0u; a < WR * 4u; ++a) acc[a] = vec4(0.0);

    load_step(t, 0u, tm, tn, w16, x4);
    for (uint k0 = 0u; k0 < pc.k; k0 += TK) {
        store_step(t);
        barrier();
        if (k0 + TK < pc.k) load_step(t, k0 + TK, tm, tn, w16, x4);
        [[unroll]] for (uint kk = 0u; kk < TK; ++kk) {
            vec4 xv = xs[kk * CV + tc];
            [[unroll]] for (uint p = 0u; p < WR; ++p) {
                vec4 wv = ws[kk * RV + 16u * p + tr];
                acc[4u * p + 0u] += wv * xv.x;
                acc[4u * p + 1u] += wv * xv.y;
                acc[4u * p + 2u] += wv * xv.z;
                acc[4u * p + 3u] += wv * xv.w;
            }
        }
        barrier();
    }

    [[unroll]] for (uint p = 0u; p < WR; ++p)
        [[unroll]] for (uint j = 0u; j < 4u; ++j) {
            uint col = tn * BN + 4u * tc + j, i0 = tm * BM + 4u * (tr + 16u * p);
            if (col >= pc.n) continue;
            uint d = pc.d_off + col * pc.d_s;
            [[unroll]] for (uint c = 0u; c < 4u; ++c)
                if (i0 + c < pc.m) dst_set(d + i0 + c, acc[4u * p + j][c]);
        }
}
