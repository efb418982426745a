// The int8 path of mul_mat_vec.comp (defined I8; Q4_0, Q8_0, Q4_K, Q6_K weights): the workgroup first quantizes x
// into shared memory, per block of 32 elements of a column: d = max|x| / 127, codes c = round(x / d) (as the CPU
// backend's q8 activations), and d * sum(c). A lane then takes whole items of a weight row (i8_block) and forms
// each block of 32's exact integer dot product with 8 packed 4 x int8 dot products (SPIR-V OpSDot,
// VK_KHR_shader_integer_dot_product), e.g.
//   Q4_0 (w = d_w (q - 8)):  d_w (d sum(q c) - 8 d sum(c));   Q8_0 (w = d_w q):  d_w d sum(q c);
//   Q4_K (w = d_w s q - m):  d_w s d sum(q c) - m d sum(c);    Q6_K: the codes q - 32 as int8, per run of 16,
// summed in f32. About one instruction per weight where the unit path (mmv_units.glsl) spends about 3.5 (a byte
// extraction, a subtraction and an FMA each): on the H100 the unit path reads Q4_0 at about 1 TB/s of its 3.35.
// The same arithmetic as kernels_cuda/mul_mat_vec_i8.cu, whose __dp4a the dot product is.
// Needs dequant.glsl (TYPE, T_*), common.glsl and mmv_units.glsl (x_vec4, w32) included first, and the constants
// NC (columns) and XB (blocks of 32 per column: k / 32) of mul_mat_vec.comp.
#extension GL_EXT_spirv_intrinsics : require
#extension GL_KHR_shader_subgroup_shuffle : enable

// OpSDot (4450) of two 32-bit words as 4 x int8 each (PackedVectorFormat4x8Bit = 0): capabilities DotProduct (6019)
// and DotProductInput4x8BitPacked (6018). glslc 2023.2 has no GL_EXT_integer_dot_product, so it is declared here.
spirv_instruction(extensions = ["SPV_KHR_integer_dot_product"], capabilities = [6019, 6018], id = 4450)
int sdot4(int a, int b, spirv_literal int packed_format);
int dot4(uint a, uint b) { return sdot4(int(a), int(b), 0); }

const uint XB_ALL = NC * XB;  // x blocks of all columns: column j's block b is j * XB + b
layout(constant_id = 10) const uint QX = 4;  // loads of x (4 elements each) a lane has in flight: 4 or 8
// Codes of block i: elements 0..15 in xq[i] (4 per word, element 4w + byte in word w), 16..31 in xq[XB_ALL + i], so
// that a subgroup's lanes reading consecutive blocks read consecutive 16-byte words. xs[i] = (d, d sum(codes)).
shared uvec4 xq[2u * XB_ALL];
shared vec2 xs[XB_ALL];

// NORM: x is the source of an RMS_NORM (weight g at src2, eps), applied here first as rms_norm.comp does, per
// column: xn = x * (1 / sqrt(sum(x^2) / k + eps)) * g, the sum of squares reduced over the workgroup (per-lane
// sums, subgroupAdd, then the subgroups' in order: the same value in every workgroup, not bit for bit
// rms_norm.comp's, whose lanes split the sum differently). Workgroup 0 also stores xn (binding 5) for any later
// reader of the norm's result.
shared float norm_part[(WG / 8u) * 4u];  // per subgroup (at most WG / 8: subgroups of >= 8) and column (NC <= 4)
float col_scale[4];

// x elements 4 part .. 4 part + 3 of block i (all columns), as quantize_x reads them.
vec4 x_quad(uint i, uint part, bool x4) {
    return x_vec4(pc.x_off + (i / XB) * pc.x_s + 32u * (i % XB) + 4u * part, x4);
}

// col_scale[c] = 1 / sqrt(sum(x_c^2) / k + eps) for each column c, in every lane (one barrier inside).
void norm_scales(bool x4) {
    const uint lane = gl_SubgroupID * gl_SubgroupSize + gl_SubgroupInvocationID;
    const uint lanes = gl_NumSubgroups * gl_SubgroupSize, n = 8u * XB_ALL;
    float ss[4] = float[4](0.0, 0.0, 0.0, 0.0);
    for (uint v0 = lane; v0 < n; v0 += QX * lanes) {  // QX loads in flight, as quantize_x
        vec4 x[QX];
        [[unroll]] for (uint r = 0u; r < QX; ++r) {
            const uint v = min(v0 + r * lanes, n - 1u);
            x[r] = x_quad(v >> 3, v & 7u, x4);
        }
        [[unroll]] for (uint r = 0u; r < QX; ++r) {
            const uint v = v0 + r * lanes, j = (v >> 3) / XB;
            if (v >= n) break;
            [[unroll]] for (uint c = 0u; c < NC; ++c)
                if (c == j) ss[c] += x[r].x * x[r].x + x[r].y * x[r].y + x[r].z * x[r].z + x[r].w * x[r].w;
        }
    }
    [[unroll]] for (uint c = 0u; c < NC; ++c) {
        const float t = subgroupAdd(ss[c]);
        if (subgroupElect()) norm_part[gl_SubgroupID * 4u + c] = t;
    }
    barrier();
    [[unroll]] for (uint c = 0u; c < NC; ++c) {
        float total = 0.0;
        for (uint q = 0u; q < gl_NumSubgroups; ++q) total += norm_part[q * 4u + c];
        col_scale[c] = 1.0 / sqrt(total / float(pc.k) + pc.eps);
    }
}

// All of the workgroup: 8 lanes per block, 4 elements each, the block's max|x| and code sum over the 8 lanes by
// shuffles (lane groups of 8 sit inside one subgroup: the host takes this path only for subgroups of >= 8; the
// lane index is formed from the subgroup's, so it holds whatever order the driver gives invocations). A lane
// issues QX loads of x before it quantizes them (one round trip, not QX). Ends in the barrier that makes xq / xs
// visible.
void quantize_x(bool x4) {
    const uint lane = gl_SubgroupID * gl_SubgroupSize + gl_SubgroupInvocationID;
    const uint lanes = gl_NumSubgroups * gl_SubgroupSize, n = 8u * XB_ALL;
    if (NORM != 0u) norm_scales(x4);
    const bool store_xn = NORM != 0u && group_index() == 0u;
    for (uint v0 = lane; v0 < n; v0 += QX * lanes) {
        vec4 x[QX];
        [[unroll]] for (uint r = 0u; r < QX; ++r) {
            const uint v = min(v0 + r * lanes, n - 1u);
            x[r] = x_quad(v >> 3, v & 7u, x4);
        }
        [[unroll]] for (uint r = 0u; r < QX; ++r) {
            const uint v = v0 + r * lanes, i = v >> 3, part = v & 7u;
            if (v >= n) break;  // n and lanes are multiples of 8: a lane group stays whole
            if (NORM != 0u) {
                const uint j = i / XB, e = 32u * (i % XB) + 4u * part;  // column, element
                float sc = col_scale[0];
                [[unroll]] for (uint c = 1u; c < NC; ++c) sc = c == j ? col_scale[c] : sc;
                const uint g = pc.r_off + e;
                x[r] = x[r] * sc * vec4(src2_f(g), src2_f(g + 1u), src2_f(g + 2u), src2_f(g + 3u));
                if (store_xn) {
                    const uint o = pc.y_off + j * pc.y_s + e;
                    y_w[o] = floatBitsToUint(x[r].x);
                    y_w[o + 1u] = floatBitsToUint(x[r].y);
                    y_w[o + 2u] = floatBitsToUint(x[r].z);
                    y_w[o + 3u] = floatBitsToUint(x[r].w);
                }
            }
            float amax = max(max(abs(x[r].x), abs(x[r].y)), max(abs(x[r].z), abs(x[r].w)));
            amax = max(amax, subgroupShuffleXor(amax, 1u));
            amax = max(amax, subgroupShuffleXor(amax, 2u));
            amax = max(amax, subgroupShuffleXor(amax, 4u));
            const float d = amax / 127.0, id = amax > 0.0 ? 127.0 / amax : 0.0;
            const ivec4 c = ivec4(round(x[r] * id));
            const uint packed = uint(c.x & 0xff) | uint(c.y & 0xff) << 8 | uint(c.z & 0xff) << 16 |
                                uint(c.w & 0xff) << 24;
            int sum = c.x + c.y + c.z + c.w;
            sum += subgroupShuffleXor(sum, 1u);
            sum += subgroupShuffleXor(sum, 2u);
            sum += subgroupShuffleXor(sum, 4u);
            if (part < 4u) xq[i][part] = packed;
            else xq[XB_ALL + i][part - 4u] = packed;
            if (part == 0u) xs[i] = vec2(d, d * float(sum));
        }
    }
    barrier();
}

// A lane's item of a row: Q4_0 / Q8_0 one block of 32 (I8_ITEMS = XB per row); Q4_K and Q6_K 64 weights of a
// 256-weight super-block (I8_ITEMS = XB / 2: item t is super-block t / 4, quarter t % 4), two x blocks of 32.
const bool KQ = TYPE == T_Q4_K || TYPE == T_Q6_K;
const uint I8_ITEMS = KQ ? XB / 2u : XB;
const uint I8_WORDS = TYPE == T_Q6_K ? 16u : TYPE == T_Q4_0 ? 4u : 8u;  // code words an item loads

// Item t of the row at byte `row`: its scales p and its code words q.
//  - Q4_0 / Q8_0 (18 / 34-byte blocks, 2-byte aligned): p.x = d, q = 4 words of 8 nibbles (byte i = elements i
//    and 16 + i) / 8 words of int8. The words from the block's first byte rounded down to 4 hold the scale in
//    their first or second half and the codes from byte 2 or 4 on; each word read holds bytes of the block.
//  - Q4_K (144 bytes: d, dmin, 12 bytes of 6-bit scales and mins, qs[128]): quarter c = 32 bytes of qs, whose low
//    nibbles are sub-block 2c and high nibbles 2c + 1 (w = d scale_j q - dmin min_j); p = (d scale_2c,
//    d scale_2c+1, dmin min_2c, dmin min_2c+1), q = the 8 words.
//  - Q6_K (210 bytes: ql[128], qh[64], int8 scales[16], d): quarter r = half h = r / 2, part u = r % 2; its 32
//    bytes ql[64h + 32u ..] give the low 4 bits of elements 128h + 32u + l (low nibbles) and 128h + 64 + 32u + l
//    (high nibbles), qh[32h + l] their top 2 bits at bits 2u and 4 + 2u (w = d scale[e / 16] (q - 32)); q = ql's
//    8 words then qh's, p = d times the scales of those 4 runs of 16.
// Words through w32 (2-byte aligned rows, as mmv_units.glsl) for the k-quants.
void i8_block(uint row, uint t, out vec4 p, out uint q[16]) {
    if (TYPE == T_Q4_K) {
        const uint bb = row + (t >> 2) * 144u, c = t & 3u;
        p = q4k_scales(bb, c);  // mmv_units.glsl
        [[unroll]] for (uint k = 0u; k < 8u; ++k) q[k] = w32(bb + 16u + 32u * c + 4u * k);
        [[unroll]] for (uint k = 8u; k < 16u; ++k) q[k] = 0u;
        return;
    }
    if (TYPE == T_Q6_K) {
        const uint bb = row + (t >> 2) * 210u, h = (t >> 1) & 1u, u = t & 1u;
        [[unroll]] for (uint k = 0u; k < 8u; ++k) {
            q[k] = w32(bb + 64u * h + 32u * u + 4u * k);
            q[8u + k] = w32(bb + 128u + 32u * h + 4u * k);
        }
        const float d = src0_f16(bb + 208u);
        const uint si = bb + 192u + 8u * h + 2u * u;  // the low nibbles' two runs; the high ones' 4 further
        p = d * vec4(float(src0_i8(si)), float(src0_i8(si + 1u)), float(src0_i8(si + 4u)), float(src0_i8(si + 5u)));
        return;
    }
    const uint bb = row + t * (TYPE == T_Q8_0 ? 34u : 18u), i = bb >> 2;
    const bool odd = (bb & 2u) != 0u;  // the scale is the first word's high half, the codes start word-aligned
    uint w[9];
    [[unroll]] for (uint k = 0u; k <= I8_WORDS; ++k) w[k] = src0_w[i + k];
    p = vec4(unpackHalf2x16(odd ? w[0] >> 16 : w[0]).x, 0.0, 0.0, 0.0);
    [[unroll]] for (uint k = 0u; k < I8_WORDS; ++k) q[k] = odd ? w[k + 1u] : (w[k] >> 16) | (w[k + 1u] << 16);
    [[unroll]] for (uint k = I8_WORDS; k < 16u; ++k) q[k] = 0u;
}

// Q6_K: 4 bytes of 6-bit codes q as the int8 bytes q - 32 (each byte's borrow kept inside it by its top bit).
uint minus32(uint v) { return ((v | 0x80808080u) - 0x20202020u) ^ 0x80808080u; }

// x block i's 32 codes against 8 code words c: the sum of products over elements 0..15 (.x) and 16..31 (.y).
ivec2 dot_block(uint c[8], uint i) {
    const uvec4 lo = xq[i], hi = xq[XB_ALL + i];
    ivec2 s = ivec2(0);
    [[unroll]] for (uint k = 0u; k < 4u; ++k) {
        s.x += dot4(c[k], lo[k]);
        s.y += dot4(c[4u + k], hi[k]);
    }
    return s;
}

// Item t (p, q) of a row against column j of x: its share of that column's dot product.
float i8_dot(vec4 p, uint q[16], uint j, uint t) {
    uint c[8];
    if (TYPE == T_Q4_K) {  // sub-blocks 2c, 2c + 1 = x blocks i0, i0 + 1
        const uint i0 = j * XB + 8u * (t >> 2) + 2u * (t & 3u);
        [[unroll]] for (uint k = 0u; k < 8u; ++k) c[k] = q[k] & 0x0f0f0f0fu;
        const ivec2 s0 = dot_block(c, i0);
        [[unroll]] for (uint k = 0u; k < 8u; ++k) c[k] = (q[k] >> 4) & 0x0f0f0f0fu;
        const ivec2 s1 = dot_block(c, i0 + 1u);
        const vec2 x0 = xs[i0], x1 = xs[i0 + 1u];
        return p.x * x0.x * float(s0.x + s0.y) + p.y * x1.x * float(s1.x + s1.y) - p.z * x0.y - p.w * x1.y;
    }
    if (TYPE == T_Q6_K) {  // elements 32u + .. of the half = x block i0, 64 + 32u + .. = i0 + 2
        const uint h = (t >> 1) & 1u, u = t & 1u, i0 = j * XB + 8u * (t >> 2) + 4u * h + u;
        [[unroll]] for (uint k = 0u; k < 8u; ++k)
            c[k] = minus32((q[k] & 0x0f0f0f0fu) | ((q[8u + k] >> (2u * u)) & 0x03030303u) << 4);
        const ivec2 s0 = dot_block(c, i0);
        [[unroll]] for (uint k = 0u; k < 8u; ++k)
            c[k] = minus32(((q[k] >> 4) & 0x0f0f0f0fu) | ((q[8u + k] >> (4u + 2u * u)) & 0x03030303u) << 4);
        const ivec2 s1 = dot_block(c, i0 + 2u);
        return xs[i0].x * (p.x * float(s0.x) + p.y * float(s0.y)) +
               xs[i0 + 2u].x * (p.z * float(s1.x) + p.w * float(s1.y));
    }
    // Q4_0 / Q8_0: block i = j XB + t (the arithmetic of the first int8 kernel, as it ran on the H100).
    const uint i = j * XB + t;
    const uvec4 lo = xq[i], hi = xq[XB_ALL + i];
    const vec2 sx = xs[i];
    int sum = 0;
    if (TYPE == T_Q8_0) {
        [[unroll]] for (uint k = 0u; k < 4u; ++k) sum += dot4(q[k], lo[k]) + dot4(q[4u + k], hi[k]);
        return p.x * (sx.x * float(sum));
    }
    [[unroll]] for (uint k = 0u; k < 4u; ++k)
        sum += dot4(q[k] & 0x0f0f0f0fu, lo[k]) + dot4((q[k] >> 4) & 0x0f0f0f0fu, hi[k]);
    return p.x * (sx.x * float(sum) - 8.0 * sx.y);
}
