// ATTENTION split-K merge (after attention.comp with n_split > 1): per (query, head) row g = j * n_head + h, the
// n_split partials (m_s, l_s, acc_s[hd]) at src0 words p_off + (g * n_split + s) (hd + 2), each relative to its own
// max m_s, give dst row g = sum_s e^(m_s - M) acc_s / sum_s e^(m_s - M) l_s with M = max_s m_s. A split whose
// range was empty has m_s = -inf and is skipped (M is finite: split 0 always holds row 0).
// Launch: one workgroup of 64 per row g; thread t computes channels t, t + 64, .. (every thread reads the same
// n_split maxima and sums: at most 64 words, broadcast from the cache). As CUDA's attention_merge_kernel.
#version 450
#include "common.glsl"
layout(local_size_x = 64) in;
layout(push_constant) uniform pc_t {
    uint hd, rows, n_split;
    uint p_off;        // words, into src0 (the scratch)
    uint d_off, d_s;   // words
} pc;

void main() {
    uint g = group_index();
    if (g >= pc.rows) return;
    uint stride = pc.hd + 2u;
    uint base = pc.p_off + g * pc.n_split * stride;
    const float NEG_INF = uintBitsToFloat(0xff800000u);
    float mx = NEG_INF;
    for (uint s = 0u; s < pc.n_split; ++s) mx = max(mx, src0_f(base + s * stride));
    float sum = 0.0;
    for (uint s = 0u; s < pc.n_split; ++s) {
        float m = src0_f(base + s * stride);
        sum += m == NEG_INF ? 0.0 : exp(m - mx) * src0_f(base + s * stride + 1u);
    }
    float inv = 1.0 / sum;
    for (uint c = gl_LocalInvocationID.x; c < pc.hd; c += 64u) {
        float o = 0.0;
        for (uint s = 0u; s < pc.n_split; ++s) {
            float m = src0_f(base + s * stride);
            if (m != NEG_INF) o += exp(m - mx) * src0_f(base + s * stride + 2u + c);
        }
        dst_set(pc.d_off + g * pc.d_s + c, o * inv);
    }
}
