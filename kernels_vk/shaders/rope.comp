// ROPE: dst (hd, n_head, n) = src0 rotated at positions src1 (n, i32); optional src2 (n_rot/2) frequency factors.
// theta_j = pos * freq_j / factor_j with freq_j = freq_scale * base^(-2j/n_rot) from the host in double as a float
// pair (hi, lo) in the parameter arena at tab_off. Pairs (2j, 2j+1) (mode 0) or (j, j + n_rot/2) (neox).
// The angle is formed as a float-float product (exact two-product by Veltkamp splitting: correctly rounded
// add/mul only, no reliance on fma), reduced modulo pi/2 with pi/2 as a float pair, and sin/cos are polynomials on
// [-pi/4, pi/4]: accurate to about 1e-7 for positions in the tens of thousands, where a plain f32 angle would be
// off by 1e-3 and builtin sin/cos may carry 2^-11 absolute error (the Vulkan minimum).
// Launch: one thread per slot of each (token, head) row, slot < n_rot/2: a pair, else a copied dim >= n_rot;
// ceil(slots * rows / 64) groups of 64.
// PAIR (variant rope_pair; vk_ops.cpp record_fused): ROPE q then ROPE k with the same positions, factors and
// parameters in one launch: groups [0, groups0) rotate q (part 0: src0 -> dst) as above, the rest k (part 1:
// binding 6 -> binding 5), each thread the same arithmetic as alone: bit-identical results.
// STORE (variant rope_store, with PAIR; vk_ops.cpp record_fused): ROPE q, ROPE k, then KV_STORE k of the rotated k
// and KV_STORE v, in one launch. Groups [0, groups0) rotate q as PAIR's part 0. Groups [groups0, groups1) take one
// (token t, KV head h) row of k each: its threads rotate the row's slots (part 1's arithmetic, written to dk as
// PAIR does and kept in shared memory), then after a barrier store the row into cache row i0 + t at channel h hd
// (binding 7). The other groups store v's (t, h) rows (words v_off + t v_s + h hd of binding 6, which holds k and
// v; cache at binding 8). A store is one thread per 32-bit cache word with kv_store.comp's conversion; the host
// admits only head rows that are whole words (f32 caches, or an even hd and 4-byte aligned cache rows), so each
// word holds what KV_STORE's own thread for it writes. i0: each store's push-constant start, or param_w[dyn - 1]
// in a kept run (the two stores' own slots, as two KV_STOREs take them).
#version 450
#include "common.glsl"
#ifdef STORE
#include "kv_half.glsl"
#endif
layout(local_size_x = 64) in;
struct rows_t {
    uint hd, n_head, x_off, x_s, d_off, d_s;  // one rotated tensor: shape, word offsets and row strides
};
layout(push_constant) uniform pc_t {
    uint n, n_rot, neox, has_factors, pos_off, f_off, tab_off;
    uint groups0;  // PAIR: the workgroups of part 0
    rows_t p[2];
    // STORE only:
    uint groups1;                    // the workgroups of q and k
    uint ctype;                      // cache dtype (GGUF id): 0 f32, 1 f16, 30 bf16
    uint ks_start, ks_nb1, ks_dyn;   // k cache: byte of row i0 (of row 0 when dyn != 0), row stride, slot + 1
    uint vs_start, vs_nb1, vs_dyn;   // v cache
    uint v_off, v_s;                 // v's rows in binding 6 (words)
} pc;
#ifdef PAIR
layout(set = 0, binding = 5) buffer dk_buf { uint dk_w[]; };
layout(set = 0, binding = 6) readonly buffer k_buf { uint k_w[]; };
#endif
#ifdef STORE
layout(set = 0, binding = 7) buffer ck_buf { uint ck_w[]; };
layout(set = 0, binding = 8) buffer cv_buf { uint cv_w[]; };
shared uint kept_row[256];  // the group's rotated k row (bits), hd <= 256
bool keep = false;          // this group stores the k row it rotates
#endif
bool second = false;  // PAIR: this workgroup rotates part 1

float x_at(uint i) {
#ifdef PAIR
    if (second) return uintBitsToFloat(k_w[i]);
#endif
    return src0_f(i);
}
void y_set(uint i, float v) {
#ifdef PAIR
    if (second) {
        dk_w[i] = floatBitsToUint(v);
        return;
    }
#endif
    dst_set(i, v);
}
// Element i of the row that starts at word yr of the result.
void put(uint yr, uint i, float v) {
    y_set(yr + i, v);
#ifdef STORE
    if (keep) kept_row[i] = floatBitsToUint(v);
#endif
}

// a * b = p + e exactly (Dekker): split each factor into 12-bit halves.
void two_prod(float a, float b, out float p, out float e) {
    precise float pp = a * b;
    precise float ca = 4097.0 * a;
    precise float ah = ca - (ca - a);
    precise float al = a - ah;
    precise float cb = 4097.0 * b;
    precise float bh = cb - (cb - b);
    precise float bl = b - bh;
    precise float ee = ((ah * bh - pp) + ah * bl + al * bh) + al * bl;
    p = pp;
    e = ee;
}

// sin and cos of |r| <= pi/4 (+ a little): Taylor series to x^13 / x^14 (truncation < 1e-11).
float sin_poly(float x) {
    float x2 = x * x;
    return x * (1.0 + x2 * (-1.0 / 6.0 + x2 * (1.0 / 120.0 + x2 * (-1.0 / 5040.0 + x2 * (1.0 / 362880.0 +
               x2 * (-1.0 / 39916800.0 + x2 * (1.0 / 6227020800.0)))))));
}
float cos_poly(float x) {
    float x2 = x * x;
    return 1.0 + x2 * (-0.5 + x2 * (1.0 / 24.0 + x2 * (-1.0 / 720.0 + x2 * (1.0 / 40320.0 + x2 * (-1.0 / 3628800.0 +
               x2 * (1.0 / 479001600.0 + x2 * (-1.0 / 87178291200.0)))))));
}

// Slot s of row `row` of tensor t: the rotated pair j = s (s < n_rot / 2), or the copied dim n_rot + s - n_rot / 2.
void rope_slot(rows_t t, uint row, uint s) {
    uint half_rot = pc.n_rot / 2u;
    uint xr = t.x_off + row * t.x_s, yr = t.d_off + row * t.d_s;
    if (s >= half_rot) {  // dims past n_rot are copied
        uint i = pc.n_rot + (s - half_rot);
        put(yr, i, x_at(xr + i));
        return;
    }
    uint j = s;
    float pos = float(int(src1_w[pc.pos_off + row / t.n_head]));  // exact below 2^24
    precise float w_hi = uintBitsToFloat(param_w[pc.tab_off + 2u * j]);
    precise float w_lo = uintBitsToFloat(param_w[pc.tab_off + 2u * j + 1u]);
    if (pc.has_factors != 0u) {  // (w_hi + w_lo) / f as a float pair: q + (remainder + w_lo) / f
        float f = src2_f(pc.f_off + j);
        precise float q = w_hi / f;
        float p, e;
        two_prod(q, f, p, e);
        precise float rem = (w_hi - p) - e;
        w_lo = (rem + w_lo) / f;
        w_hi = q;
    }
    // theta = pos * (w_hi + w_lo) = th + te
    float th, te;
    two_prod(pos, w_hi, th, te);
    precise float te2 = te + pos * w_lo;
    // r = theta - k pi/2, with pi/2 = PIO2_HI + PIO2_LO
    const float PIO2_HI = 1.57079637050628662109375;
    const float PIO2_LO = -4.37113882867379e-08;
    float k = roundEven(th / PIO2_HI);
    float kp, ke;
    two_prod(k, PIO2_HI, kp, ke);
    precise float r = ((th - kp) - ke) + (te2 - k * PIO2_LO);
    float sr = sin_poly(r), cr = cos_poly(r);
    int quadrant = int(k - 4.0 * floor(k / 4.0));
    float sn = quadrant == 0 ? sr : quadrant == 1 ? cr : quadrant == 2 ? -sr : -cr;
    float cs = quadrant == 0 ? cr : quadrant == 1 ? -sr : quadrant == 2 ? -cr : sr;
    uint i0 = pc.neox != 0u ? j : 2u * j;
    uint i1 = pc.neox != 0u ? j + half_rot : 2u * j + 1u;
    float a = x_at(xr + i0), b = x_at(xr + i1);
    put(yr, i0, a * cs - b * sn);
    put(yr, i1, a * sn + b * cs);
}

#ifdef STORE
// Stores (token, head) row `row` of k (is_k: the rotated row in kept_row) or of v into its cache, one thread per
// 32-bit word: f32 caches the bits as they are, 16-bit ones two converted halves (kv_store.comp's words).
void store_row(bool is_k, uint row) {
    rows_t t = pc.p[1];
    uint tok = row / t.n_head, h = row % t.n_head;
    uint dyn = is_k ? pc.ks_dyn : pc.vs_dyn, nb1 = is_k ? pc.ks_nb1 : pc.vs_nb1;
    uint shift = dyn != 0u ? param_w[dyn - 1u] * nb1 : 0u;
    uint esz = pc.ctype == 0u ? 4u : 2u;
    uint w0 = ((is_k ? pc.ks_start : pc.vs_start) + shift + tok * nb1 + h * t.hd * esz) / 4u;
    uint src = pc.v_off + tok * pc.v_s + h * t.hd;  // v's row (words of binding 6)
    uint words = pc.ctype == 0u ? t.hd : t.hd / 2u;
    for (uint w = gl_LocalInvocationID.x; w < words; w += 64u) {
        uint word;
        if (pc.ctype == 0u) {
            word = is_k ? kept_row[w] : k_w[src + w];
        } else {
            uint lo = is_k ? kept_row[2u * w] : k_w[src + 2u * w];
            uint hi = is_k ? kept_row[2u * w + 1u] : k_w[src + 2u * w + 1u];
            word = f32_to_half(uintBitsToFloat(lo), pc.ctype) | (f32_to_half(uintBitsToFloat(hi), pc.ctype) << 16);
        }
        if (is_k) ck_w[w0 + w] = word;
        else cv_w[w0 + w] = word;
    }
}
#endif

void main() {
    uint g = group_index();
#ifdef STORE
    if (g >= pc.groups0) {
        bool is_k = g < pc.groups1;
        uint row = g - (is_k ? pc.groups0 : pc.groups1);  // token * n_head_kv + head
        rows_t t = pc.p[1];
        if (row >= t.n_head * pc.n) return;  // the whole group: no barrier is skipped by part of it
        if (is_k) {
            second = true;
            keep = true;
            uint slots = pc.n_rot / 2u + (t.hd - pc.n_rot);
            for (uint s = gl_LocalInvocationID.x; s < slots; s += 64u) rope_slot(t, row, s);
            barrier();  // kept_row is whole
        }
        store_row(is_k, row);
        return;
    }
#endif
#ifdef PAIR
    second = g >= pc.groups0;
    if (second) g -= pc.groups0;
#endif
    rows_t t = pc.p[second ? 1 : 0];
    uint slots = pc.n_rot / 2u + (t.hd - pc.n_rot);
    uint gid = g * 64u + gl_LocalInvocationID.x;
    if (gid >= slots * t.n_head * pc.n) return;
    rope_slot(t, gid / slots, gid % slots);
}
