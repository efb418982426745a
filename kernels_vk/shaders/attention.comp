// ATTENTION (contiguous cache): dst (hd, n_head, n) = causal softmax(scale * q . K^T) . V, q = src0 (hd, n_head, n),
// K = src1, V = src2 (hd * n_head_kv, n_ctx; f32, f16 or bf16 each). Query j sits at position n_past + j and sees
// cache rows 0 .. n_past + j (later rows are never read); head h reads KV head h / group.
// Launch: one group of 64 per (query, head), index = j * n_head + h; the same online softmax as
// attention_paged.comp (keys in chunks of 64, one per thread; each thread accumulates channels t, t+64, ..).
// dyn != 0 (a kept run, vk_backend_replay.cpp): n_past is param_w[dyn - 1] instead of the push constant.
#version 450
#include "common.glsl"
layout(local_size_x = 64) in;
layout(push_constant) uniform pc_t {
    uint hd, n_head, n, n_past, group;
    float scale;
    uint q_off, q_s, d_off, d_s;       // words
    uint k_type, k_off, k_nb1;         // GGUF type id (0, 1, 30); bytes
    uint v_type, v_off, v_nb1;
    uint dyn;                          // 0, or the parameter-arena word holding n_past, + 1
} pc;
shared float qs[256];
shared float ps[64];

float cache_elem(bool is_k, uint b, uint type) {
    uint w = is_k ? src1_w[b >> 2] : src2_w[b >> 2];
    if (type == 0u) return uintBitsToFloat(w);
    uint h = (w >> ((b & 2u) * 8u)) & 0xffffu;
    return type == 1u ? unpackHalf2x16(h).x : uintBitsToFloat(h << 16);
}
uint esize(uint type) { return type == 0u ? 4u : 2u; }

void main() {
    uint g = group_index();
    if (g >= pc.n * pc.n_head) return;
    uint j = g / pc.n_head, h = g % pc.n_head, hk = h / pc.group;
    uint t = gl_LocalInvocationID.x;
    for (uint c = t; c < pc.hd; c += 64u) qs[c] = src0_f(pc.q_off + g * pc.q_s + c);
    barrier();
    uint n_past = pc.dyn != 0u ? param_w[pc.dyn - 1u] : pc.n_past;
    uint n_kv = n_past + j + 1u;
    uint kes = esize(pc.k_type), ves = esize(pc.v_type);
    uint kcol = pc.k_off + hk * pc.hd * kes, vcol = pc.v_off + hk * pc.hd * ves;
    const float NEG_INF = uintBitsToFloat(0xff800000u);
    float M = NEG_INF, L = 0.0;
    float acc[4] = {0.0, 0.0, 0.0, 0.0};
    for (uint t0 = 0u; t0 < n_kv; t0 += 64u) {
        uint pos = t0 + t;
        float s = NEG_INF;
        if (pos < n_kv) {
            float dot = 0.0;
            uint row = kcol + pos * pc.k_nb1;
            for (uint c = 0u; c < pc.hd; ++c) dot += qs[c] * cache_elem(true, row + c * kes, pc.k_type);
            s = dot * pc.scale;
        }
        ps[t] = s;
        barrier();
        float cmax = NEG_INF;
        for (uint u = 0u; u < 64u; ++u) cmax = max(cmax, ps[u]);
        float m_new = max(M, cmax);
        barrier();
        ps[t] = pos < n_kv ? exp(s - m_new) : 0.0;
        barrier();
        float f = exp(M - m_new);
        float sum = 0.0;
        uint n_here = min(64u, n_kv - t0);
        for (uint u = 0u; u < n_here; ++u) sum += ps[u];
        L = L * f + sum;
        [[unroll]] for (uint q = 0u; q < 4u; ++q) {
            uint c = t + 64u * q;
            if (c < pc.hd) {
                float a = acc[q] * f;
                for (uint u = 0u; u < n_here; ++u)
                    a += ps[u] * cache_elem(false, vcol + (t0 + u) * pc.v_nb1 + c * ves, pc.v_type);
                acc[q] = a;
            }
        }
        M = m_new;
        barrier();
    }
    [[unroll]] for (uint q = 0u; q < 4u; ++q) {
        uint c = t + 64u * q;
        if (c < pc.hd) dst_set(pc.d_off + g * pc.d_s + c, acc[q] / L);
    }
}
