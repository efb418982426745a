// Weight decoders of mul_mat_vec.comp's fast path: a "unit" is 8 weights of one row decoded from a few 32-bit (or
// one 128-bit) loads, paired with two vec4 of x (elements e0 .. e0 + 3 and e1 .. e1 + 3). The layouts follow
// kernels_cuda/mul_mat_vec_units.cuh (the same unit numbering), the block formats core/quant.h.
//
// unit_w(row, u) gives 8 codes (wa pairs with x[e0 ..], wb with x[e1 ..]) and, for scaled types, the group
// parameters sc = (s0, s1, m0, m1): weight i = s0 * wa[i] - m0, s1 * wb[i] - m1, so the kernel forms dot(code, x)
// per group of 4 and applies the scale once per group (and the min once, times the group's sum of x).
// Codes become floats with the 2^23 trick: the float with bits 0x4B000000 | b is exactly 2^23 + b for a byte b,
// so subtracting 2^23 + offset gives b - offset with no integer-to-float conversion.
// Needs dequant.glsl (TYPE, T_*) and common.glsl (src0_w, src1_w) included first.

// The same bindings as common.glsl's src0 and src1, seen as 16-byte vectors (descriptor aliasing): used only where
// the row (or x) offset is a multiple of 16 bytes.
layout(set = 0, binding = 1) readonly buffer src0_v4_buf { uvec4 src0_v4[]; };
layout(set = 0, binding = 2) readonly buffer src1_v4_buf { vec4 src1_v4[]; };

// The types with units; others keep dq(). K-quants: k is a multiple of 256, Q4_0/Q8_0 of 32, so only the float
// types can leave a tail of k % 8 elements.
const bool UNIT_TYPE = TYPE == T_F32 || TYPE == T_F16 || TYPE == T_BF16 || TYPE == T_Q4_0 || TYPE == T_Q8_0 ||
                       TYPE == T_Q4_K || TYPE == T_Q6_K;
const bool UNIT_SCALED = TYPE == T_Q4_0 || TYPE == T_Q8_0 || TYPE == T_Q4_K || TYPE == T_Q6_K;
const bool UNIT_MIN = TYPE == T_Q4_K;

// 4 bytes of src0 at a 2-byte aligned byte offset b: two word loads (the second is the same word when b % 4 == 0,
// so no word past the 4 bytes is read) funnel-shifted without a branch.
uint w32(uint b) {
    uint i = b >> 2, sh = (b & 2u) * 8u;
    uint lo = src0_w[i], hi = src0_w[i + (sh >> 4)];
    return (lo >> sh) | ((hi << 16) << (16u - sh));
}

// Byte i of v as the float 2^23 + byte.
float magic_byte(uint v, uint i) { return uintBitsToFloat(((v >> (8u * i)) & 0xffu) | 0x4B000000u); }
// The 4 bytes of v as 2^23 + byte, minus 2^23 + off: byte - off, exact.
vec4 bytes_minus(uint v, float off) {
    return vec4(magic_byte(v, 0u), magic_byte(v, 1u), magic_byte(v, 2u), magic_byte(v, 3u)) - (8388608.0 + off);
}

// Element offsets of unit u's two groups of 4 within its row.
void unit_x(uint u, out uint e0, out uint e1) {
    if (TYPE == T_Q4_0) {  // block u / 4, s = u % 4: low nibbles of qs[4s ..] and their high nibbles
        e0 = 32u * (u >> 2) + 4u * (u & 3u);
        e1 = e0 + 16u;
    } else if (TYPE == T_Q8_0) {  // block u / 4: qs[8s .. 8s + 7]
        e0 = 32u * (u >> 2) + 8u * (u & 3u);
        e1 = e0 + 4u;
    } else if (TYPE == T_Q4_K) {  // block u / 32, r = u % 32, c = r / 8, s = r % 8: qs[32c + 4s ..], both nibbles
        uint r = u & 31u;
        e0 = 256u * (u >> 5) + 64u * (r >> 3) + 4u * (r & 7u);
        e1 = e0 + 32u;
    } else if (TYPE == T_Q6_K) {  // block u / 32, r = u % 32, h = r / 16, q = (r / 8) % 2, s = r % 8
        uint r = u & 31u;
        e0 = 256u * (u >> 5) + 128u * (r >> 4) + 32u * ((r >> 3) & 1u) + 4u * (r & 7u);
        e1 = e0 + 64u;
    } else {  // F32, F16, BF16: 8 consecutive elements
        e0 = 8u * u;
        e1 = e0 + 4u;
    }
}

// Q4_K super-block at byte bb, quarter c (sub-blocks 2c and 2c + 1): (d scale_2c, d scale_2c+1, dmin min_2c,
// dmin min_2c+1), from d, dmin and the 6-bit scales and mins (core/quant_k.cpp unpack_scale_min_k4): bytes 0..3
// scales of 0..3 (top bits: of 4..7), 4..7 mins of 0..3 (top bits: of 4..7), 8..11 low bits of 4..7.
vec4 q4k_scales(uint bb, uint c) {
    vec2 dm = unpackHalf2x16(w32(bb));
    uint s0 = w32(bb + 4u), s1 = w32(bb + 8u), s2 = w32(bb + 12u);
    uint sh = 16u * (c & 1u);  // sub-blocks 2c, 2c + 1 are bytes 2(c % 2), 2(c % 2) + 1 of their words
    uint a = (s0 >> sh) & 0xffffu, m = (s1 >> sh) & 0xffffu, l = (s2 >> sh) & 0xffffu;
    uvec2 scale, mn;
    if (c < 2u) {
        scale = uvec2(a & 63u, (a >> 8) & 63u);
        mn = uvec2(m & 63u, (m >> 8) & 63u);
    } else {
        scale = uvec2((l & 15u) | ((a >> 6) & 3u) << 4, ((l >> 8) & 15u) | ((a >> 14) & 3u) << 4);
        mn = uvec2((l >> 4) & 15u | ((m >> 6) & 3u) << 4, ((l >> 12) & 15u) | ((m >> 14) & 3u) << 4);
    }
    return vec4(dm.x * float(scale.x), dm.x * float(scale.y), dm.y * float(mn.x), dm.y * float(mn.y));
}

// Unit u of the row at byte `row`; w16: the row starts at a multiple of 16 bytes (float types load 128 bits).
void unit_w(uint row, uint u, bool w16, out vec4 wa, out vec4 wb, out vec4 sc) {
    sc = vec4(1.0, 1.0, 0.0, 0.0);
    if (TYPE == T_F32) {
        if (w16) {
            wa = uintBitsToFloat(src0_v4[(row >> 4) + 2u * u]);
            wb = uintBitsToFloat(src0_v4[(row >> 4) + 2u * u + 1u]);
        } else {
            uint i = (row >> 2) + 8u * u;
            wa = vec4(src0_f(i), src0_f(i + 1u), src0_f(i + 2u), src0_f(i + 3u));
            wb = vec4(src0_f(i + 4u), src0_f(i + 5u), src0_f(i + 6u), src0_f(i + 7u));
        }
    } else if (TYPE == T_F16 || TYPE == T_BF16) {
        uvec4 v;
        if (w16) {
            v = src0_v4[(row >> 4) + u];
        } else {
            uint b = row + 16u * u;
            v = uvec4(w32(b), w32(b + 4u), w32(b + 8u), w32(b + 12u));
        }
        if (TYPE == T_F16) {
            wa = vec4(unpackHalf2x16(v.x), unpackHalf2x16(v.y));
            wb = vec4(unpackHalf2x16(v.z), unpackHalf2x16(v.w));
        } else {
            wa = uintBitsToFloat(uvec4(v.x << 16, v.x & 0xffff0000u, v.y << 16, v.y & 0xffff0000u));
            wb = uintBitsToFloat(uvec4(v.z << 16, v.z & 0xffff0000u, v.w << 16, v.w & 0xffff0000u));
        }
    } else if (TYPE == T_Q4_0) {  // d qs[16]: w = d * (q - 8)
        uint bb = row + (u >> 2) * 18u;
        float d = src0_f16(bb);
        uint q = w32(bb + 2u + 4u * (u & 3u));
        wa = bytes_minus(q & 0x0f0f0f0fu, 8.0);
        wb = bytes_minus((q >> 4) & 0x0f0f0f0fu, 8.0);
        sc = vec4(d, d, 0.0, 0.0);
    } else if (TYPE == T_Q8_0) {  // d qs[32] (int8): w = d * q; q ^ 0x80 = q + 128 as an unsigned byte
        uint bb = row + (u >> 2) * 34u;
        float d = src0_f16(bb);
        uint qs = bb + 2u + 8u * (u & 3u);
        wa = bytes_minus(w32(qs) ^ 0x80808080u, 128.0);
        wb = bytes_minus(w32(qs + 4u) ^ 0x80808080u, 128.0);
        sc = vec4(d, d, 0.0, 0.0);
    } else if (TYPE == T_Q4_K) {  // d dmin scales[12] qs[128]: w = d * scale_j * q - dmin * min_j
        uint bb = row + (u >> 5) * 144u;
        uint r = u & 31u, c = r >> 3, s = r & 7u;
        uint q = w32(bb + 16u + 32u * c + 4u * s);
        wa = bytes_minus(q & 0x0f0f0f0fu, 0.0);
        wb = bytes_minus((q >> 4) & 0x0f0f0f0fu, 0.0);
        sc = q4k_scales(bb, c);
    } else if (TYPE == T_Q6_K) {  // ql[128] qh[64] scales[16] (int8) d: w = d * scale[e / 16] * (q - 32)
        uint bb = row + (u >> 5) * 210u;
        uint r = u & 31u, h = r >> 4, k = (r >> 3) & 1u, s = r & 7u;
        uint ql = w32(bb + 64u * h + 32u * k + 4u * s);
        uint qh = w32(bb + 128u + 32u * h + 4u * s);
        float d = src0_f16(bb + 208u);
        uint si = bb + 192u + 8u * h + 2u * k + s / 4u;
        sc = vec4(d * float(src0_i8(si)), d * float(src0_i8(si + 4u)), 0.0, 0.0);
        wa = bytes_minus((ql & 0x0f0f0f0fu) | ((qh >> (2u * k)) & 0x03030303u) << 4, 32.0);
        wb = bytes_minus(((ql >> 4) & 0x0f0f0f0fu) | ((qh >> (2u * k + 4u)) & 0x03030303u) << 4, 32.0);
    } else {
        wa = wb = vec4(uintBitsToFloat(0x7fc00000u));  // not a unit type: never called
    }
}

// 4 elements of x from word w (a multiple of 4); x4: the window offset and column stride are multiples of 4 words.
vec4 x_vec4(uint w, bool x4) {
    if (x4) return src1_v4[w >> 2];
    return vec4(src1_f(w), src1_f(w + 1u), src1_f(w + 2u), src1_f(w + 3u));
}
