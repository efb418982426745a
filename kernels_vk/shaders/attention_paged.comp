// ATTENTION_PAGED: dst (hd, n_head, n) = causal softmax(scale * q . K^T) . V with K/V read from the paged cache
// (backend/kv_format.h layouts f16, bf16, q8, q4 per channel (K), q4 per token (V)), dequantized in registers.
// Query j sits at position n_past + j and sees positions 0 .. n_past + j; head h reads KV head h / group.
// Launch: one group of 64 per (query, head), index = j * n_head + h. Keys in chunks of 64 (one per thread: a full
// dot product), online softmax (running max M and sum L); each thread accumulates channels t, t+64, .. (hd <= 256).
// Table (parameter arena at tab_off): 8 layout records of 8 words (kind 0 f16, 1 bf16, 2 q8, 3 q4 per channel,
// 4 q4 per token; group; scale, min, code byte offsets; row code bytes), then per (block, KV head) 4 words:
// K window slot | layout << 8, K byte offset in the window, the same for V (vk_ops.cpp builds it).
#version 450
#include "common.glsl"
layout(set = 0, binding = 5) readonly buffer kv0_buf { uint kv0[]; };
layout(set = 0, binding = 6) readonly buffer kv1_buf { uint kv1[]; };
layout(set = 0, binding = 7) readonly buffer kv2_buf { uint kv2[]; };
layout(set = 0, binding = 8) readonly buffer kv3_buf { uint kv3[]; };
layout(local_size_x = 64) in;
layout(push_constant) uniform pc_t {
    uint hd, n_head, n, n_past, group, n_head_kv, B;
    float scale;
    uint q_off, q_s, d_off, d_s, tab_off;
} pc;
shared float qs[256];
shared float ps[64];

uint kv_word(uint slot, uint w) {
    if (slot == 0u) return kv0[w];
    if (slot == 1u) return kv1[w];
    if (slot == 2u) return kv2[w];
    return kv3[w];
}
uint kv_u8(uint slot, uint b) { return (kv_word(slot, b >> 2) >> ((b & 3u) * 8u)) & 0xffu; }
uint kv_u16(uint slot, uint b) { return (kv_word(slot, b >> 2) >> ((b & 2u) * 8u)) & 0xffffu; }
float kv_f16(uint slot, uint b) { return unpackHalf2x16(kv_u16(slot, b)).x; }

// Element c of row t of the head block at byte `base` of window `slot`, layout record at word `lay`.
float kv_elem(uint slot, uint base, uint t, uint c, uint lay) {
    uint kind = param_w[lay], g = param_w[lay + 1u], so = param_w[lay + 2u], mo = param_w[lay + 3u];
    uint row = base + param_w[lay + 4u] + t * param_w[lay + 5u];
    if (kind == 0u) return kv_f16(slot, row + 2u * c);
    if (kind == 1u) return uintBitsToFloat(kv_u16(slot, row + 2u * c) << 16);
    if (kind == 2u) return kv_f16(slot, base + so + 2u * t) * float(int(kv_u8(slot, row + c) << 24) >> 24);
    float code = float((kv_u8(slot, row + c / 2u) >> (4u * (c % 2u))) & 15u);
    uint p = kind == 3u ? c : t * (pc.hd / g) + c / g;  // per channel (K) or per (token, group) (V)
    return code * kv_f16(slot, base + so + 2u * p) + kv_f16(slot, base + mo + 2u * p);
}

void main() {
    uint g = group_index();
    if (g >= pc.n * pc.n_head) return;
    uint j = g / pc.n_head, h = g % pc.n_head, hk = h / pc.group;
    uint t = gl_LocalInvocationID.x;
    uint qrow = pc.q_off + g * pc.q_s;
    for (uint c = t; c < pc.hd; c += 64u) qs[c] = src0_f(qrow + c);
    barrier();
    uint n_kv = pc.n_past + j + 1u;
    const float NEG_INF = uintBitsToFloat(0xff800000u);
    float M = NEG_INF, L = 0.0;
    float acc[4] = {0.0, 0.0, 0.0, 0.0};
    for (uint t0 = 0u; t0 < n_kv; t0 += 64u) {
        uint pos = t0 + t;
        float s = NEG_INF;
        if (pos < n_kv) {
            uint e = pc.tab_off + 64u + ((pos / pc.B) * pc.n_head_kv + hk) * 4u;
            uint sl = param_w[e], base = param_w[e + 1u], r = pos % pc.B;
            uint lay = pc.tab_off + 8u * (sl >> 8);
            float dot = 0.0;
            for (uint c = 0u; c < pc.hd; ++c) dot += qs[c] * kv_elem(sl & 255u, base, r, c, lay);
            s = dot * pc.scale;
        }
        ps[t] = s;
        barrier();
        float cmax = NEG_INF;
        for (uint u = 0u; u < 64u; ++u) cmax = max(cmax, ps[u]);
        float m_new = max(M, cmax);  // finite: position 0 is in the first chunk
        barrier();
        ps[t] = pos < n_kv ? exp(s - m_new) : 0.0;
        barrier();
        float f = exp(M - m_new);  // 0 on the first chunk
        float sum = 0.0;
        uint n_here = min(64u, n_kv - t0);
        for (uint u = 0u; u < n_here; ++u) sum += ps[u];
        L = L * f + sum;
        [[unroll]] for (uint q = 0u; q < 4u; ++q) {
            uint c = t + 64u * q;
            if (c < pc.hd) {
                float a = acc[q] * f;
                for (uint u = 0u; u < n_here; ++u) {
                    uint p2 = t0 + u;
                    uint e = pc.tab_off + 64u + ((p2 / pc.B) * pc.n_head_kv + hk) * 4u;
                    uint sl = param_w[e + 2u];
                    a += ps[u] * kv_elem(sl & 255u, param_w[e + 3u], p2 % pc.B, c, pc.tab_off + 8u * (sl >> 8));
                }
                acc[q] = a;
            }
        }
        M = m_new;
        barrier();
    }
    uint drow = pc.d_off + g * pc.d_s;
    [[unroll]] for (uint q = 0u; q < 4u; ++q) {
        uint c = t + 64u * q;
        if (c < pc.hd) dst_set(drow + c, acc[q] / L);
    }
}
