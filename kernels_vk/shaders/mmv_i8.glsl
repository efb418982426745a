// The int8 path of mul_mat_vec.comp (defined I8; Q4_0 and Q8_0 weights): the workgroup first quantizes x into
// shared memory, per block of 32 elements of a column: d = max|x| / 127, codes c = round(x / d) (as the CPU
// backend's q8 activations), and d * sum(c). A lane then takes whole weight blocks of 32 and forms each block's
// exact integer dot product with 8 packed 4 x int8 dot products (SPIR-V OpSDot, VK_KHR_shader_integer_dot_product):
//   Q4_0 (w = d_w (q - 8)):  d_w (d sum(q c) - 8 d sum(c));   Q8_0 (w = d_w q):  d_w d sum(q c),
// summed in f32. About one instruction per weight where the unit path (mmv_units.glsl) spends about 3.5 (a byte
// extraction, a subtraction and an FMA each): on the H100 the unit path reads Q4_0 at about 1 TB/s of its 3.35.
// The same arithmetic as kernels_cuda/mul_mat_vec_i8.cu, whose __dp4a the dot product is.
// Needs dequant.glsl (TYPE, T_*), common.glsl and mmv_units.glsl (x_vec4) included first, and the constants NC
// (columns) and XB (blocks of 32 per column: k / 32) of mul_mat_vec.comp.
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

// Weight block b of the row at byte `row`: its scale and its codes as words (Q4_0: 4 words of 8 nibbles, byte i =
// elements i (low) and 16 + i (high); Q8_0: 8 words of int8). Blocks are 18 / 34 bytes, 2-byte aligned: the words
// w[0 ..] from the block's first byte rounded down to 4 hold the scale in their first or second half and the
// codes from byte 2 or 4 on; each word read holds bytes of the block (none past it).
const uint I8_WORDS = TYPE == T_Q8_0 ? 8u : 4u;
void i8_block(uint row, uint b, out float d, out uint q[8]) {
    const uint bb = row + b * (TYPE == T_Q8_0 ? 34u : 18u), i = bb >> 2;
    const bool odd = (bb & 2u) != 0u;  // the scale is the first word's high half, the codes start word-aligned
    uint w[9];
    [[unroll]] for (uint k = 0u; k <= I8_WORDS; ++k) w[k] = src0_w[i + k];
    d = unpackHalf2x16(odd ? w[0] >> 16 : w[0]).x;
    [[unroll]] for (uint k = 0u; k < I8_WORDS; ++k) q[k] = odd ? w[k + 1u] : (w[k] >> 16) | (w[k + 1u] << 16);
    [[unroll]] for (uint k = I8_WORDS; k < 8u; ++k) q[k] = 0u;
}

// The weight block (d, q) against x block i: its share of the row's dot product.
float i8_dot(float d, uint q[8], uint i) {
    const uvec4 lo = xq[i], hi = xq[XB_ALL + i];
    const vec2 s = xs[i];
    int sum = 0;
    if (TYPE == T_Q8_0) {
        [[unroll]] for (uint k = 0u; k < 4u; ++k) sum += dot4(q[k], lo[k]) + dot4(q[4u + k], hi[k]);
        return d * (s.x * float(sum));
    }
    [[unroll]] for (uint k = 0u; k < 4u; ++k)
        sum += dot4(q[k] & 0x0f0f0f0fu, lo[k]) + dot4((q[k] >> 4) & 0x0f0f0f0fu, hi[k]);
    return d * (s.x * float(sum) - 8.0 * s.y);
}
