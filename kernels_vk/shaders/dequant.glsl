// dq(row, e): element e of a weight row of src0 starting at byte `row`, for the weight dtype TYPE (GGUF type id,
// a specialization constant): the same arithmetic, in the same order, as core/quant.cpp and core/quant_k.cpp
// (block layouts in core/quant.h). One element at a time, so any kernel can take any element.
layout(constant_id = 0) const uint TYPE = 0;

const uint T_F32 = 0, T_F16 = 1, T_Q4_0 = 2, T_Q4_1 = 3, T_Q5_0 = 6, T_Q5_1 = 7, T_Q8_0 = 8, T_Q2_K = 10,
           T_Q3_K = 11, T_Q4_K = 12, T_Q5_K = 13, T_Q6_K = 14, T_BF16 = 30;

// Q4_0..Q5_1: element j of a 32-block is the low (j < 16) or high nibble of qs[j % 16].
uint nibble32(uint qs, uint j) { return (src0_u8(qs + (j & 15u)) >> (j < 16u ? 0u : 4u)) & 15u; }
// Q5: bit j of the little-endian 32-bit qh (2-byte aligned only).
uint q5_high(uint qh, uint j) { return ((src0_u16(qh) | (src0_u16(qh + 2u) << 16)) >> j) & 1u; }

// Q4_K / Q5_K 6-bit scale and min of sub-block s (core/quant_k.cpp unpack_scale_min_k4).
void scale_min_k4(uint sc, uint s, out uint scale, out uint mn) {
    if (s < 4u) {
        scale = src0_u8(sc + s) & 63u;
        mn = src0_u8(sc + s + 4u) & 63u;
    } else {
        scale = (src0_u8(sc + s + 4u) & 15u) | ((src0_u8(sc + s - 4u) >> 6) << 4);
        mn = (src0_u8(sc + s + 4u) >> 4) | ((src0_u8(sc + s) >> 6) << 4);
    }
}

float dq(uint row, uint e) {
    if (TYPE == T_F32) return src0_f((row >> 2) + e);
    if (TYPE == T_F16) return src0_f16(row + 2u * e);
    if (TYPE == T_BF16) return uintBitsToFloat(src0_u16(row + 2u * e) << 16);
    if (TYPE == T_Q4_0) {
        uint bb = row + (e / 32u) * 18u, j = e % 32u;
        return src0_f16(bb) * float(int(nibble32(bb + 2u, j)) - 8);
    }
    if (TYPE == T_Q4_1) {
        uint bb = row + (e / 32u) * 20u, j = e % 32u;
        return src0_f16(bb) * float(nibble32(bb + 4u, j)) + src0_f16(bb + 2u);
    }
    if (TYPE == T_Q5_0) {
        uint bb = row + (e / 32u) * 22u, j = e % 32u;
        uint q = nibble32(bb + 6u, j) | (q5_high(bb + 2u, j) << 4);
        return src0_f16(bb) * float(int(q) - 16);
    }
    if (TYPE == T_Q5_1) {
        uint bb = row + (e / 32u) * 24u, j = e % 32u;
        uint q = nibble32(bb + 8u, j) | (q5_high(bb + 4u, j) << 4);
        return src0_f16(bb) * float(q) + src0_f16(bb + 2u);
    }
    if (TYPE == T_Q8_0) {
        uint bb = row + (e / 32u) * 34u, j = e % 32u;
        return src0_f16(bb) * float(src0_i8(bb + 2u + j));
    }
    // K-quants: 256-element super-blocks; j = element in the block.
    uint j = e % 256u;
    if (TYPE == T_Q2_K) {  // scales[16] qs[64] d dmin
        uint bb = row + (e / 256u) * 84u;
        uint q = (src0_u8(bb + 16u + 32u * (j / 128u) + j % 32u) >> (2u * ((j % 128u) / 32u))) & 3u;
        uint sm = src0_u8(bb + j / 16u);
        return src0_f16(bb + 80u) * float(sm & 15u) * float(q) - src0_f16(bb + 82u) * float(sm >> 4);
    }
    if (TYPE == T_Q3_K) {  // hmask[32] qs[64] scales[12] d
        uint bb = row + (e / 256u) * 110u;
        uint i = j / 16u;
        uint lo = i < 8u ? (src0_u8(bb + 96u + i) & 15u) : (src0_u8(bb + 96u + i - 8u) >> 4);
        uint hi = (src0_u8(bb + 104u + i % 4u) >> (2u * (i / 4u))) & 3u;
        int sc = int(lo | (hi << 4)) - 32;
        uint low2 = (src0_u8(bb + 32u + 32u * (j / 128u) + j % 32u) >> (2u * ((j % 128u) / 32u))) & 3u;
        int q = int(low2) - (((src0_u8(bb + j % 32u) >> (j / 32u)) & 1u) != 0u ? 0 : 4);
        return src0_f16(bb + 108u) * float(sc) * float(q);
    }
    if (TYPE == T_Q4_K || TYPE == T_Q5_K) {  // d dmin scales[12] (qh[32]) qs[128]
        uint bb = row + (e / 256u) * (TYPE == T_Q4_K ? 144u : 176u);
        uint s = j / 32u, scale, mn;
        scale_min_k4(bb + 4u, s, scale, mn);
        uint qs = bb + (TYPE == T_Q4_K ? 16u : 48u);
        uint q = (src0_u8(qs + 32u * (j / 64u) + j % 32u) >> (4u * (s % 2u))) & 15u;
        if (TYPE == T_Q5_K) q |= ((src0_u8(bb + 16u + j % 32u) >> s) & 1u) << 4;
        float ds = src0_f16(bb) * float(scale), dm = src0_f16(bb + 2u) * float(mn);
        return ds * float(q) - dm;
    }
    if (TYPE == T_Q6_K) {  // ql[128] qh[64] scales[16] (int8) d
        uint bb = row + (e / 256u) * 210u;
        uint k = (j % 128u) / 32u;
        uint lo = (src0_u8(bb + 64u * (j / 128u) + 32u * (k % 2u) + j % 32u) >> (k < 2u ? 0u : 4u)) & 15u;
        uint hi = (src0_u8(bb + 128u + 32u * (j / 128u) + j % 32u) >> (2u * k)) & 3u;
        return src0_f16(bb + 208u) * float(src0_i8(bb + 192u + j / 16u)) * float(int(lo | (hi << 4)) - 32);
    }
    return uintBitsToFloat(0x7fc00000u);  // unknown type: NaN (the host never builds such a pipeline)
}
