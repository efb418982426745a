// MUL_MAT on tensor cores through GL_NV_cooperative_matrix (n > 8 columns, prefill, devices with
// VK_NV_cooperative_matrix: vk_context.h coopmat): dst[j][i] = w_i . x_j for weight rows i (dtype TYPE) and f32
// columns j of x, with the weights and x rounded to fp16 and the products summed in f32 (fp16 x fp16 -> f32
// coopMatMulAddNV). x above 65504 in magnitude becomes inf in fp16 (llama.cpp's Vulkan/CUDA fp16 paths share the
// limit); see kernels_vk/README.md.
//
// Tile: a workgroup of 256 threads (8 subgroups of 32: the host uses this shader only where the subgroup size is
// 32) computes BM x BN outputs, BM = 64 WR rows, BN = 64 WC columns (-D WR, WC = 1 or 2: variants mul_mat_cm 64x64,
// mul_mat_cm_w 64x128, mul_mat_cm_xl 128x128). The subgroups form 2 (rows) x 4 (columns); each holds the
// f32 accumulators of its 32 WR x 16 WC outputs as FR x FC fragments of 16 x CN (CN = 16 or 8 by -D: the fragment
// shape the device lists, 16x16x16 or 16x8x16). Matrix A of coopMatMulAddNV is the weight tile (rows i x k), B is
// x (k x columns j), C/D the outputs (rows i x columns j).
//
// k advances TK = 32 elements per step (2 fragment depths of 16). As in mul_mat.comp the step's 32 elements are
// the 4 units k0/8 .. k0/8 + 3 of mmv_units.glsl (8 weights of a block each, scale and min applied; dq() for the
// types without units) and x is loaded at the same element positions: slot kk = 4i + q of the step holds value i
// of unit q, for the weight row and for the x column alike, so the product over the step is the same sum in
// another order. Shared memory holds both tiles as fp16, row (column) major with TK + 8 halves per row (80 bytes:
// a multiple of 16 bytes, the alignment cooperative loads need, and 8 rows of a fragment fall in 8 different
// 16-byte bank groups). Per thread per step: WR + WC units of 8 values (thread t: unit t % 4 of row / column t / 4
// (+ 64)); a warp's 32 scalar fp16 stores of one value hit 16 words in 16 different banks.
//
// Double buffered: the global loads of step s + 1 go to registers before the MMAs of step s, and are stored to
// the other buffer after them; one barrier per step. Shared memory: 2 x (BM + BN) x 40 halves + 8 KiB of per-
// subgroup staging for the f32 results (4 KiB for 16x8 fragments): 28 KiB (64x64), 38 KiB (64x128), 48 KiB
// (128x128; NVIDIA's limit without the opt-in is 49152 bytes). The results go fragment by fragment through the
// staging (coopMatStoreNV, column major) and from there to dst with bounds (rows past m, columns past n are not
// stored; their loads repeat row m - 1 / column n - 1).
//
// -D CM_EMULATE=1 (variants mul_mat_cm_emu, _emu_n8; TFU_VK_COOPMAT=emulate, tests only): the same shader with the
// four cooperative-matrix operations done by plain f32 code over the same shared-memory tiles, laid out as the
// NV operations define them, and 32-lane "virtual subgroups" of the local index. It needs only shaderFloat16, so
// lavapipe runs everything around the tensor-core operations (decoding, slots, tiles, double buffering, staging,
// bounds) on the 64x64 tile, the one that fits its 32 KiB of shared memory.
//
// Launch: ceil(m / BM) * ceil(n / BN) workgroups, index = tn * tiles_m + tm; push constants as mul_mat.comp.
#version 450
#ifndef CM_EMULATE
#define CM_EMULATE 0
#endif
#if !CM_EMULATE
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_KHR_shader_subgroup_basic : require
#endif
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
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
#define WR 1  // tile rows BM = 64 WR
#endif
#ifndef WC
#define WC 1  // tile columns BN = 64 WC
#endif
#ifndef CN
#define CN 16  // fragment columns: 16 (16x16x16) or 8 (16x8x16)
#endif
const uint BM = 64u * WR, BN = 64u * WC, TK = 32u;
const uint SA = TK + 8u;               // halves per tile row (80 bytes)
const uint FR = 2u * WR;               // 16-row fragments per subgroup: 32 WR rows
const uint FC = (16u * WC) / CN;       // CN-column fragments per subgroup: 16 WC columns
shared float16_t ws[2u * BM * SA];     // weight tile, two buffers: row r, slot kk at r * SA + kk
shared float16_t xs[2u * BN * SA];     // x tile, two buffers: column c, slot kk at c * SA + kk
shared float cs[8u * 16u * CN];        // per subgroup: one result fragment, column major (i + 16 j)

#if CM_EMULATE
// Emulated fragments. A 16 x CN f32 accumulator is spread over the 32 lanes of a virtual subgroup: lane l holds
// elements e = l + 32 s (row e % 16, column e / 16: the column-major order of the staging). An A or B fragment is
// its offset in ws / xs, and the product reads the tiles as coopMatLoadNV defines them: A row major (row i, k at
// off + i SA + k), B column major (k, column j at off + j SA + k).
struct acc_t {
    float v[CN / 2u];
};
#define ACC_T acc_t
#define A_T uint
#define B_T uint
uint lane_id() { return gl_LocalInvocationID.x & 31u; }
uint subgroup_id() { return gl_LocalInvocationID.x >> 5; }
acc_t acc_zero() {
    acc_t c;
    [[unroll]] for (uint s = 0u; s < CN / 2u; ++s) c.v[s] = 0.0;
    return c;
}
uint load_a(uint off) { return off; }
uint load_b(uint off) { return off; }
acc_t mul_add(uint a, uint b, acc_t c) {
    [[unroll]] for (uint s = 0u; s < CN / 2u; ++s) {
        uint e = lane_id() + 32u * s, i = e & 15u, j = e >> 4;
        float sum = c.v[s];
        for (uint k = 0u; k < 16u; ++k) sum += float(ws[a + i * SA + k]) * float(xs[b + j * SA + k]);
        c.v[s] = sum;
    }
    return c;
}
void store_acc(acc_t c, uint st) {
    [[unroll]] for (uint s = 0u; s < CN / 2u; ++s) cs[st + lane_id() + 32u * s] = c.v[s];
}
void subgroup_sync() { barrier(); }  // uniform control flow: every virtual subgroup passes it together
#else
#define ACC_T fcoopmatNV<32, gl_ScopeSubgroup, 16, CN>
#define A_T fcoopmatNV<16, gl_ScopeSubgroup, 16, 16>
#define B_T fcoopmatNV<16, gl_ScopeSubgroup, 16, CN>
uint lane_id() { return gl_SubgroupInvocationID; }
uint subgroup_id() { return gl_SubgroupID; }
ACC_T acc_zero() { return ACC_T(0.0); }
A_T load_a(uint off) {
    A_T a;
    coopMatLoadNV(a, ws, off, SA, false);  // row major: (row i, k) at off + i SA + k
    return a;
}
B_T load_b(uint off) {
    B_T b;
    coopMatLoadNV(b, xs, off, SA, true);  // column major: (k, column j) at off + j SA + k
    return b;
}
ACC_T mul_add(A_T a, B_T b, ACC_T c) { return coopMatMulAddNV(a, b, c); }
void store_acc(ACC_T c, uint st) { coopMatStoreNV(c, cs, st, 16u, true); }  // (i, j) at st + 16 j + i
void subgroup_sync() {
    subgroupMemoryBarrierShared();
    subgroupBarrier();
}
#endif

// The thread's share of the next step, in registers while the current step's MMAs run: WR weight units and WC x
// units (values 0..3 in *_a, 4..7 in *_b).
vec4 w_a[WR], w_b[WR];
vec4 x_a[WC], x_b[WC];

// Only float rows can end inside a step (k % 32 != 0) or inside a unit (k % 8 != 0).
const bool FLOAT_TYPE = TYPE == T_F32 || TYPE == T_F16 || TYPE == T_BF16;

// Weight unit u of the row at byte `row`, dequantized (elements past k give 0: only in a float row's last step).
// The same decoding as mul_mat.comp's.
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
    float v[8];  // no unit: elements 8u .. 8u + 7 in order (unit_x of the float and dq() types)
    [[unroll]] for (uint i = 0u; i < 8u; ++i) {
        uint e = 8u * u + i;
        v[i] = e < pc.k ? dq(row, e) : 0.0;
    }
    a = vec4(v[0], v[1], v[2], v[3]);
    b = vec4(v[4], v[5], v[6], v[7]);
}

// x at the element positions of unit u of the column at word `col` (0 past k).
void load_x_unit(uint col, uint u, bool x4, out vec4 a, out vec4 b) {
    uint e0, e1;
    unit_x(u, e0, e1);
    if (!FLOAT_TYPE || 8u * u + 8u <= pc.k) {
        a = x_vec4(col + e0, x4);
        b = x_vec4(col + e1, x4);
        return;
    }
    float v[8];
    [[unroll]] for (uint i = 0u; i < 8u; ++i) {
        uint e = 8u * u + i;
        v[i] = e < pc.k ? src1_f(col + e) : 0.0;
    }
    a = vec4(v[0], v[1], v[2], v[3]);
    b = vec4(v[4], v[5], v[6], v[7]);
}

// Global loads of the step at element k0 into the registers: thread t takes unit t % 4 of weight rows t / 4
// (+ 64) and of columns t / 4 (+ 64), clamped to the last row / column.
void load_step(uint t, uint k0, uint tm, uint tn, bool w16, bool x4) {
    uint u = k0 / 8u + (t & 3u);
    [[unroll]] for (uint p = 0u; p < WR; ++p) {
        uint r = min(tm * BM + 64u * p + (t >> 2), pc.m - 1u);
        load_w_unit(pc.w_off + r * pc.w_nb1, u, w16, w_a[p], w_b[p]);
    }
    [[unroll]] for (uint p = 0u; p < WC; ++p) {
        uint c = min(tn * BN + 64u * p + (t >> 2), pc.n - 1u);
        load_x_unit(pc.x_off + c * pc.x_s, u, x4, x_a[p], x_b[p]);
    }
}

// Registers -> buffer `buf` as fp16: value i of unit q of row (column) r goes to slot 4i + q.
void store_step(uint t, uint buf) {
    uint q = t & 3u, r = t >> 2;
    [[unroll]] for (uint i = 0u; i < 8u; ++i) {
        uint kk = 4u * i + q;
        [[unroll]] for (uint p = 0u; p < WR; ++p)
            ws[(buf * BM + 64u * p + r) * SA + kk] = float16_t(i < 4u ? w_a[p][i & 3u] : w_b[p][i & 3u]);
        [[unroll]] for (uint p = 0u; p < WC; ++p)
            xs[(buf * BN + 64u * p + r) * SA + kk] = float16_t(i < 4u ? x_a[p][i & 3u] : x_b[p][i & 3u]);
    }
}

void main() {
    uint tiles_m = (pc.m + BM - 1u) / BM;
    uint g = group_index();
    uint tm = g % tiles_m, tn = g / tiles_m;
    if (tn * BN >= pc.n) return;  // surplus workgroups of a 2-D launch: the whole group leaves
    uint t = gl_LocalInvocationID.x;
    // Subgroup s computes rows 32 WR (s % 2) .. + 32 WR and columns 16 WC (s / 2) .. + 16 WC of the tile.
    uint sg = subgroup_id();
    uint r0 = 32u * WR * (sg & 1u), c0 = 16u * WC * (sg >> 1);
    bool w16 = (pc.w_off & 15u) == 0u && (pc.w_nb1 & 15u) == 0u;
    bool x4 = (pc.x_off & 3u) == 0u && (pc.x_s & 3u) == 0u;

    ACC_T acc[FR * FC];
    [[unroll]] for (uint f = 0u; f < FR * FC; ++f) acc[f] = acc_zero();

    uint k_last = ((pc.k - 1u) / TK) * TK;
    load_step(t, 0u, tm, tn, w16, x4);
    store_step(t, 0u);
    barrier();
    uint buf = 0u;
    for (uint k0 = 0u; k0 < pc.k; k0 += TK) {
        // The next step's global loads (the last step reloads itself: no branch around the loads).
        load_step(t, min(k0 + TK, k_last), tm, tn, w16, x4);
        [[unroll]] for (uint h = 0u; h < TK; h += 16u) {
            A_T a[FR];
            B_T b[FC];
            [[unroll]] for (uint i = 0u; i < FR; ++i) a[i] = load_a((buf * BM + r0 + 16u * i) * SA + h);
            [[unroll]] for (uint j = 0u; j < FC; ++j) b[j] = load_b((buf * BN + c0 + CN * j) * SA + h);
            [[unroll]] for (uint i = 0u; i < FR; ++i)
                [[unroll]] for (uint j = 0u; j < FC; ++j) acc[i * FC + j] = mul_add(a[i], b[j], acc[i * FC + j]);
        }
        // The other buffer was last read in the previous step, before the barrier that ended it.
        if (k0 + TK < pc.k) store_step(t, buf ^ 1u);
        barrier();
        buf ^= 1u;
    }

    // Results: each fragment through the subgroup's staging (column major, 16 x CN) to dst with bounds.
    uint lane = lane_id();
    uint st = sg * 16u * CN;
    [[unroll]] for (uint i = 0u; i < FR; ++i)
        [[unroll]] for (uint j = 0u; j < FC; ++j) {
            store_acc(acc[i * FC + j], st);
            subgroup_sync();
            uint row0 = tm * BM + r0 + 16u * i, col0 = tn * BN + c0 + CN * j;
            [[unroll]] for (uint s = 0u; s < CN / 2u; ++s) {  // 16 CN values, 32 lanes
                uint e = lane + 32u * s, row = row0 + (e & 15u), col = col0 + (e >> 4);
                if (row < pc.m && col < pc.n) dst_set(pc.d_off + col * pc.d_s + row, cs[st + e]);
            }
            subgroup_sync();  // every lane has read the staging before the next fragment overwrites it
        }
}
