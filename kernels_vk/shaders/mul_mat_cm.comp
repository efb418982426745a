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
// k advances TK = 32 elements per step (2 fragment depths of 16), or 64 in the _k64 variants (4 depths; k a
// multiple of 64: vk_ops.cpp cm_k64). As in mul_mat.comp the step's elements are the TK / 8 units k0/8 ..
// of mmv_units.glsl (8 weights of a block each, scale and min applied; dq() for the types without units) and x is
// loaded at the same element positions: slots 8q .. 8q + 7 of the step hold the 8 values of unit q (Q4_0 / Q8_0
// in the pair order of w_unit), for the weight row and for the x column alike, so the product over the step is the
// same sum in another order. Shared memory holds both tiles as fp16, row (column) major with TK + 8 halves per row
// (80 or 144 bytes: multiples of 16 bytes, the alignment cooperative loads need, and 8 rows of a fragment fall in
// 8 different 16-byte bank groups), declared as 16-byte vectors. Per thread per step: PW + PX units of 8 values
// (thread t: unit t % UPR of row / column t / UPR (+ RP, ..)), each one 128-bit store.
//
// Double buffered (DB = 1): the global loads of step s + 1 go to registers before the MMAs of step s, and are
// decoded and stored to the other buffer after them; one barrier per step. Single buffered (DB = 0, the _k64 tiles
// of 128 columns): the same loads, then a barrier after the MMAs before the store overwrites the buffer, and one
// after it. Q4_0, Q8_0 and 16-byte aligned F16/BF16 rows stay raw words in registers until then (the decoding would
// otherwise wait for the loads ahead of the MMAs), and Q4_0 / Q8_0 are decoded two values at a time in fp16
// arithmetic; the other types are decoded at load time. H100, 8B Q4_0 pp512: 5166 -> 5944 t/s with these two
// changes (kernels_vk/README.md). With X16 (below) x arrives already as halves in this order. Shared memory: NBUF x
// (BM + BN) x (TK + 8) halves: 20 KiB (64x64), 30 KiB (64x128), 40 KiB (128x128), 36 / 27 / 36 KiB for _k64 (NVIDIA's
// limit without the opt-in is 49152 bytes). The results go fragment by fragment through
// a per-subgroup staging area in the weight tile's memory (coopMatStoreNV, column major) and from there to dst with
// bounds (rows past m, columns past n are not stored; their loads repeat row m - 1 / column n - 1).
//
// -D CM_EMULATE=1 (variants mul_mat_cm_emu, _emu_n8, _emu_k64 (TK 64, one buffer); TFU_VK_COOPMAT=emulate, tests
// only): the same shader with the four cooperative-matrix operations done by plain f32 code over the same
// shared-memory tiles, laid out as the NV operations define them, and 32-lane "virtual subgroups" of the local
// index. It needs only shaderFloat16, so lavapipe runs everything around the tensor-core operations (decoding,
// slots, tiles, both buffering schemes, both steps of k, staging, bounds) on the 64x64 tile, the one that fits its
// 32 KiB of shared memory.
//
// Launch: ceil(m / BM) * ceil(n / BN) workgroups, index = tn * tiles_m + tm; push constants as mul_mat.comp, plus
// up to two more matrices of the same x, k and weight type (n_mat = 2 or 3: Q/K/V, gate/up; vk_ops.cpp
// record_fused_cm): the launch's rows of tiles are each matrix's ceil(m_i / BM) rows of tiles in turn.
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
    uint x_off, x_s, d_off, d_s;  // words (X16: x_off and x_s in 16-byte vectors)
    uint n_mat;                    // 0 or 1: the matrix above alone; 2, 3: also matrix 1 (and 2) below
    uint m1, w_off1, w_nb1_1, d_off1, d_s1;
    uint m2, w_off2, w_nb1_2, d_off2, d_s2;
} pc;
// The workgroup's matrix (main sets them from pc): rows, weight offset and row stride (bytes), result offset and
// column stride (words).
uint mat_m, mat_w_off, mat_w_nb1, mat_d_off, mat_d_s;
#include "cm_x.glsl"

// X16 (specialization constant 1): x as mul_mat_cm_x16.comp wrote it, fp16 in the tiles' order: unit u of column
// j is vector x_off + j x_s + u of binding 2, so a thread's share of a step's x is one 16-byte load, stored to
// shared memory as it is (half the bytes of f32 x, and no conversion).
layout(constant_id = 1) const bool X16 = false;
layout(set = 0, binding = 2) readonly buffer src1_u4_buf { uvec4 src1_u4[]; };

#ifndef WR
#define WR 1  // tile rows BM = 64 WR
#endif
#ifndef WC
#define WC 1  // tile columns BN = 64 WC
#endif
#ifndef CN
#define CN 16  // fragment columns: 16 (16x16x16) or 8 (16x8x16)
#endif
#ifndef TK
#define TK 32  // k per step: 32, or 64 (variants _k64: single buffered, k a multiple of 64, see main)
#endif
#ifndef DB
#define DB 1   // 1: two shared buffers (double buffered); 0: one
#endif
const uint BM = 64u * WR, BN = 64u * WC;
const uint NBUF = DB != 0 ? 2u : 1u;
const uint UPR = TK / 8u;              // units of 8 per tile row and step: 4 or 8
const uint RP = 256u / UPR;            // tile rows (columns) the 256 threads load per pass: 64 or 32
const uint PW = BM / RP, PX = BN / RP; // passes per step over the weight and the x tile
const uint SA = TK + 8u;               // halves per tile row (80 or 144 bytes)
const uint FR = 2u * WR;               // 16-row fragments per subgroup: 32 WR rows
const uint FC = (16u * WC) / CN;       // CN-column fragments per subgroup: 16 WC columns
// Shared tiles as 16-byte vectors of 8 halves (SV = 5 vectors = 40 halves per row): a thread writes a unit's 8
// values with one 128-bit store, and cooperative loads take element offsets and strides in vectors.
const uint SV = SA / 8u;
shared uvec4 ws[NBUF * BM * SV];      // weight tile, NBUF buffers: row r, slot kk at half 8 (r * SV) + kk
shared uvec4 xs[NBUF * BN * SV];      // x tile, NBUF buffers: column c, slot kk at half 8 (c * SV) + kk
// The results leave through ws once the loop is done: per subgroup one 16 x CN f32 fragment, column major
// (i + 16 j), at vector SG_ST sg: 8 fragments of 16 CN floats fit in the NBUF BM SV (>= 320) vectors of every tile.
const uint SG_ST = 4u * CN;

#if CM_EMULATE
// Emulated fragments. A 16 x CN f32 accumulator is spread over the 32 lanes of a virtual subgroup: lane l holds
// elements e = l + 32 s (row e % 16, column e / 16: the column-major order of the staging). An A or B fragment is
// its offset in ws / xs, in halves, and the product reads the tiles as coopMatLoadNV defines them: A row major
// (row i, k at off + i SA + k), B column major (k, column j at off + j SA + k).
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
uint load_a(uint off) { return 8u * off; }
uint load_b(uint off) { return 8u * off; }
acc_t mul_add(uint a, uint b, acc_t c) {
    [[unroll]] for (uint s = 0u; s < CN / 2u; ++s) {
        uint e = lane_id() + 32u * s, i = e & 15u, j = e >> 4;
        // The 16 halves of row i (column j) from a (b) are 2 whole vectors: a, b and SA are multiples of 8.
        uint ra = (a + i * SA) >> 3, rb = (b + j * SA) >> 3;
        float sum = c.v[s];
        [[unroll]] for (uint v = 0u; v < 2u; ++v) {
            uvec4 wa = ws[ra + v], xb = xs[rb + v];
            [[unroll]] for (uint q = 0u; q < 4u; ++q) {
                vec2 p = unpackHalf2x16(wa[q]), r = unpackHalf2x16(xb[q]);
                sum += p.x * r.x;
                sum += p.y * r.y;
            }
        }
        c.v[s] = sum;
    }
    return c;
}
void store_acc(acc_t c, uint st) {
    [[unroll]] for (uint s = 0u; s < CN / 2u; ++s) {
        uint e = lane_id() + 32u * s;
        ws[st + (e >> 2)][e & 3u] = floatBitsToUint(c.v[s]);
    }
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
    coopMatLoadNV(a, ws, off, SV, false);  // row major: (row i, k) at half 8 (off + i SV) + k
    return a;
}
B_T load_b(uint off) {
    B_T b;
    coopMatLoadNV(b, xs, off, SV, true);  // column major: (k, column j) at half 8 (off + j SV) + k
    return b;
}
ACC_T mul_add(A_T a, B_T b, ACC_T c) { return coopMatMulAddNV(a, b, c); }
void store_acc(ACC_T c, uint st) { coopMatStoreNV(c, ws, st, 4u, true); }  // (i, j): float 16 j + i from vector st
void subgroup_sync() {
    subgroupMemoryBarrierShared();
    subgroupBarrier();
}
#endif

// Whether the step's global loads stay raw in registers until after the step's MMAs (Q4_0, Q8_0, F16/BF16 rows on
// 16-byte boundaries): the decoding would otherwise wait for the loads before the MMAs could be issued. Other types
// and unaligned float rows are decoded (rounded to halves) at load time.
const bool LATE = PAIRED || TYPE == T_F16 || TYPE == T_BF16;

// Weight unit u of the row at byte `row`, dequantized to f32 (elements past k give 0: only in a float row's last
// step). The same decoding as mul_mat.comp's.
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

// Bits sh (0 or 16) .. sh + 31 of the word pair (lo, hi): 4 bytes at a 2-byte aligned offset (as w32()).
uint funnel(uint lo, uint hi, uint sh) { return (lo >> sh) | ((hi << 16) << (16u - sh)); }

// A weight unit's global loads (raw), for w_unit after the MMAs; `done` marks a unit decoded here (the types and
// rows that are not LATE, and a float row's tail): raw then holds its halves.
//   Q4_0: raw = (word holding d, the words holding the 4 code bytes, -), sh = d's shift | codes' shift << 8;
//   Q8_0: raw = (word holding d, the words holding the 8 code bytes), sh as Q4_0;
//   F16 / BF16: raw = the 8 values' 16 bytes.
void load_w_raw(uint row, uint u, bool w16, out uvec4 raw, out uint sh, out bool done) {
    done = false;
    sh = 0u;
    if (TYPE == T_Q4_0 || TYPE == T_Q8_0) {
        uint bb = row + (u >> 2) * (TYPE == T_Q4_0 ? 18u : 34u);
        uint qb = bb + 2u + (TYPE == T_Q4_0 ? 4u : 8u) * (u & 3u);
        uint i = qb >> 2, sq = (qb & 2u) * 8u;
        sh = (bb & 2u) * 8u | sq << 8;
        // No word past the codes is read: where they start on a word, the last load repeats the one before it.
        raw.x = src0_w[bb >> 2];
        raw.y = src0_w[i];
        if (TYPE == T_Q4_0) {
            raw.z = src0_w[i + (sq >> 4)];
            raw.w = 0u;
        } else {
            raw.z = src0_w[i + 1u];
            raw.w = src0_w[i + 1u + (sq >> 4)];
        }
        return;
    }
    if ((TYPE == T_F16 || TYPE == T_BF16) && w16 && u < pc.k / 8u) {
        raw = src0_v4[(row >> 4) + u];
        return;
    }
    vec4 a, b;
    load_w_unit(row, u, w16, a, b);
    raw = pack_unit(a, b);
    done = true;
}

// Codes 1024 + c as two halves from the 16-bit lanes of v (c < 1024): the fp16 with bits 0x6400 | c is exactly
// 1024 + c, so subtracting 1024 + offset gives c - offset exactly (as bytes_minus in f32).
f16vec2 codes_minus(uint v, float16_t off) { return unpackFloat2x16(v | 0x64006400u) - f16vec2(1024.0hf + off); }

// The unit's 8 halves from its raw loads, in the type's order. Q4_0 / Q8_0: (c - offset) * d in fp16, one rounding
// of the exact product, the same value as rounding f32 d * (c - offset) to fp16.
uvec4 w_unit(uvec4 raw, uint sh, bool done) {
    if (done || !LATE) return raw;
    if (TYPE == T_F16) return raw;
    if (TYPE == T_BF16) {
        vec4 a = uintBitsToFloat(uvec4(raw.x << 16, raw.x & 0xffff0000u, raw.y << 16, raw.y & 0xffff0000u));
        vec4 b = uintBitsToFloat(uvec4(raw.z << 16, raw.z & 0xffff0000u, raw.w << 16, raw.w & 0xffff0000u));
        return pack_unit(a, b);
    }
    f16vec2 d = f16vec2(unpackFloat2x16(raw.x >> (sh & 31u)).x);
    uint sq = sh >> 8;
    if (TYPE == T_Q4_0) {  // byte j: low nibble value j, high nibble value 4 + j
        uint q = funnel(raw.y, raw.z, sq);
        return uvec4(packFloat2x16(codes_minus(q & 0x000f000fu, 8.0hf) * d),
                     packFloat2x16(codes_minus((q >> 8) & 0x000f000fu, 8.0hf) * d),
                     packFloat2x16(codes_minus((q >> 4) & 0x000f000fu, 8.0hf) * d),
                     packFloat2x16(codes_minus((q >> 12) & 0x000f000fu, 8.0hf) * d));
    }
    // Q8_0: byte j is value j, int8; q ^ 0x80 is q + 128 as an unsigned byte
    uint q0 = funnel(raw.y, raw.z, sq) ^ 0x80808080u, q1 = funnel(raw.z, raw.w, sq) ^ 0x80808080u;
    return uvec4(packFloat2x16(codes_minus(q0 & 0x00ff00ffu, 128.0hf) * d),
                 packFloat2x16(codes_minus((q0 >> 8) & 0x00ff00ffu, 128.0hf) * d),
                 packFloat2x16(codes_minus(q1 & 0x00ff00ffu, 128.0hf) * d),
                 packFloat2x16(codes_minus((q1 >> 8) & 0x00ff00ffu, 128.0hf) * d));
}

// The thread's share of the next step, in registers while the current step's MMAs run: WR weight units (raw, see
// load_w_raw) and WC x units (f32, values 0..3 in x_a, 4..7 in x_b; X16: the unit's halves in x_h).
uvec4 w_raw[PW];
uint w_sh[PW];
bool w_done[PW];
vec4 x_a[PX], x_b[PX];
uvec4 x_h[PX];

// Global loads of the step at element k0 into the registers: thread t takes unit t % UPR of weight rows t / UPR
// (+ RP, ..) and of columns t / UPR (+ RP, ..), clamped to the last row / column.
void load_step(uint t, uint k0, uint tm, uint tn, bool w16, bool x4) {
    uint u = k0 / 8u + t % UPR;
    [[unroll]] for (uint p = 0u; p < PW; ++p) {
        uint r = min(tm * BM + RP * p + t / UPR, mat_m - 1u);
        load_w_raw(mat_w_off + r * mat_w_nb1, u, w16, w_raw[p], w_sh[p], w_done[p]);
    }
    [[unroll]] for (uint p = 0u; p < PX; ++p) {
        uint c = min(tn * BN + RP * p + t / UPR, pc.n - 1u);
        if (X16) x_h[p] = src1_u4[pc.x_off + c * pc.x_s + u];
        else load_x_unit(pc.x_off + c * pc.x_s, u, x4, x_a[p], x_b[p]);
    }
}

// Registers -> buffer `buf` as halves: unit q of row (column) r goes to slots 8q .. 8q + 7, one 128-bit store.
void store_step(uint t, uint buf) {
    uint q = t % UPR, r = t / UPR;
    [[unroll]] for (uint p = 0u; p < PW; ++p)
        ws[(buf * BM + RP * p + r) * SV + q] = w_unit(w_raw[p], w_sh[p], w_done[p]);
    [[unroll]] for (uint p = 0u; p < PX; ++p)
        xs[(buf * BN + RP * p + r) * SV + q] = X16 ? x_h[p] : pack_unit(x_a[p], x_b[p]);
}

void main() {
    uint t0 = (pc.m + BM - 1u) / BM, t1 = pc.n_mat >= 2u ? (pc.m1 + BM - 1u) / BM : 0u;
    uint tiles_m = t0 + t1 + (pc.n_mat >= 3u ? (pc.m2 + BM - 1u) / BM : 0u);
    uint g = group_index();
    uint tm = g % tiles_m, tn = g / tiles_m;
    mat_m = pc.m, mat_w_off = pc.w_off, mat_w_nb1 = pc.w_nb1, mat_d_off = pc.d_off, mat_d_s = pc.d_s;
    if (tm >= t0 + t1) {
        tm -= t0 + t1;
        mat_m = pc.m2, mat_w_off = pc.w_off2, mat_w_nb1 = pc.w_nb1_2, mat_d_off = pc.d_off2, mat_d_s = pc.d_s2;
    } else if (tm >= t0) {
        tm -= t0;
        mat_m = pc.m1, mat_w_off = pc.w_off1, mat_w_nb1 = pc.w_nb1_1, mat_d_off = pc.d_off1, mat_d_s = pc.d_s1;
    }
    if (tn * BN >= pc.n) return;  // surplus workgroups of a 2-D launch: the whole group leaves
    uint t = gl_LocalInvocationID.x;
    // Subgroup s computes rows 32 WR (s % 2) .. + 32 WR and columns 16 WC (s / 2) .. + 16 WC of the tile.
    uint sg = subgroup_id();
    uint r0 = 32u * WR * (sg & 1u), c0 = 16u * WC * (sg >> 1);
    bool w16 = (mat_w_off & 15u) == 0u && (mat_w_nb1 & 15u) == 0u;
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
        [[unroll]] for (uint h = 0u; h < TK; h += 16u) {  // fragment depth h: vector h / 8 of each row
            A_T a[FR];
            B_T b[FC];
            [[unroll]] for (uint i = 0u; i < FR; ++i) a[i] = load_a((buf * BM + r0 + 16u * i) * SV + h / 8u);
            [[unroll]] for (uint j = 0u; j < FC; ++j) b[j] = load_b((buf * BN + c0 + CN * j) * SV + h / 8u);
            [[unroll]] for (uint i = 0u; i < FR; ++i)
                [[unroll]] for (uint j = 0u; j < FC; ++j) acc[i * FC + j] = mul_add(a[i], b[j], acc[i * FC + j]);
        }
        if (DB != 0) {
            // The other buffer was last read in the previous step, before the barrier that ended it.
            if (k0 + TK < pc.k) store_step(t, buf ^ 1u);
            barrier();
            buf ^= 1u;
        } else {  // one buffer: every subgroup has read it before it is overwritten
            barrier();
            if (k0 + TK < pc.k) store_step(t, 0u);
            barrier();
        }
    }

    // Results: each fragment through the subgroup's staging (column major, 16 x CN, in ws: every subgroup has
    // passed the loop's last barrier, so no tile is read any more) to dst with bounds.
    uint lane = lane_id();
    uint st = sg * SG_ST;
    [[unroll]] for (uint i = 0u; i < FR; ++i)
        [[unroll]] for (uint j = 0u; j < FC; ++j) {
            store_acc(acc[i * FC + j], st);
            subgroup_sync();
            uint row0 = tm * BM + r0 + 16u * i, col0 = tn * BN + c0 + CN * j;
            [[unroll]] for (uint s = 0u; s < CN / 2u; ++s) {  // 16 CN values, 32 lanes
                uint e = lane + 32u * s, row = row0 + (e & 15u), col = col0 + (e >> 4);
                if (row < mat_m && col < pc.n)
                    dst_set(mat_d_off + col * mat_d_s + row, uintBitsToFloat(ws[st + (e >> 2)][e & 3u]));
            }
            subgroup_sync();  // every lane has read the staging before the next fragment overwrites it
        }
}
