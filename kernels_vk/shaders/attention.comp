// ATTENTION (contiguous cache): dst (hd, n_head, n) = causal softmax(scale * q . K^T) . V, q = src0 (hd, n_head, n),
// K = src1, V = src2 (hd * n_head_kv, n_ctx; f32, f16 or bf16 each). Query j sits at position n_past + j and sees
// cache rows 0 .. n_past + j (later rows are never read); head h reads KV head h / group.
// dyn != 0 (a kept run, vk_backend_replay.cpp): n_past is param_w[dyn - 1] instead of the push constant.
// Split-K (flash-decoding, n_split > 1; the count is vk_ops.cpp's attention_splits): n_split workgroups share one
// (query, head), workgroup z taking the contiguous rows [z c, min((z + 1) c, n_kv)) with c = ceil(n_kv / n_split)
// (n_kv read on the device in a kept run, so the ranges follow it), and writing (max, sum, unnormalised acc[HD])
// relative to its own max to the scratch at binding 5, words p_off + g (HD + 2) ..; an empty range writes
// (-inf, 0, 0). attention_merge.comp then combines the n_split partials of each (query, head) into dst.
//
// Launch: one workgroup of 128 per (query, head, split), index g = (j * n_head + h) * n_split + z. Rows in chunks of 128 with an online
// softmax (Milakov & Gimelshein, arXiv 1805.02867); per chunk:
//  - scores: thread t reads the whole K row t0 + t (HD / 2 channel pairs, loads unrolled in batches of 8 pairs
//    and issued before their FMAs) against q in shared memory; the chunk max by a shared-memory tree;
//  - P.V: the workgroup is TEAMS = 128 / CT teams of CT threads; thread (team, slot) owns channel pair slot
//    (2 slot, 2 slot + 1) and walks rows team, team + TEAMS, .. of the chunk, U = 8 rows at a time with their V
//    loads issued together (adjacent slots read adjacent words: one row's loads are coalesced).
//  Every thread's accumulator and its own share of the softmax sum are rescaled by the same exp(M - m_new), so
//  the teams' partial accumulators and the sums are added once, after the last chunk.
// Cache dtypes, head size and word alignment are specialization constants (one pipeline per combination, see
// vk_ops.cpp): loads are straight-line with no per-element dtype branch (the run-time branch made every load
// wait for the previous one, as in the CUDA kernel before commit 822239e), and the HD loops unroll at pipeline
// creation.
#version 450
#include "common.glsl"
layout(local_size_x = 128) in;
layout(constant_id = 0) const uint K_TYPE = 1;    // GGUF type id of K: 0 f32, 1 f16, 30 bf16
layout(constant_id = 1) const uint V_TYPE = 1;    // of V
layout(constant_id = 2) const uint HD = 64;       // head size, 1..256
layout(constant_id = 3) const uint CT = 32;       // threads per team: power of 2 >= ceil(HD / 2), <= 128
layout(constant_id = 4) const uint K_WORDS = 1;   // 1: every K head row starts 4-byte aligned (f16/bf16 pairs are words)
layout(constant_id = 5) const uint V_WORDS = 1;   // the same for V
layout(push_constant) uniform pc_t {
    uint hd, n_head, n, n_past, group;
    float scale;
    uint q_off, q_s, d_off, d_s;       // words
    uint k_type, k_off, k_nb1;         // GGUF type id (0, 1, 30); bytes
    uint v_type, v_off, v_nb1;
    uint dyn;                          // 0, or the parameter-arena word holding n_past, + 1
    uint n_split;                      // >= 1; 1: normalised rows to dst, else partials to binding 5
    uint p_off;                        // words: the partials' start in binding 5
} pc;
layout(set = 0, binding = 5) buffer part_buf { float part_f[]; };  // (n * n_head * n_split, HD + 2) partials

const uint WG = 128u;
const uint TEAMS = WG / CT;
const uint U = 8u;  // V rows per step of a thread
shared float qs[258];          // q, zero past HD (an odd HD's last pair multiplies a 0)
shared float ps[WG];           // the chunk's weights exp(s - m_new), 0 past the last row
shared float red[WG];          // tree reductions
shared vec2 part[WG];          // the teams' accumulators at the end

// A 16-bit value (f16 or bf16 by `type`) in the low half of h as f32.
float half_to_f(uint h, uint type) { return type == 1u ? unpackHalf2x16(h).x : uintBitsToFloat(h << 16); }
// Both halves of word w: channel c in the low half, c + 1 in the high half (little-endian).
vec2 word_to_f2(uint w, uint type) {
    return type == 1u ? unpackHalf2x16(w) : vec2(uintBitsToFloat(w << 16), uintBitsToFloat(w & 0xffff0000u));
}

// Channels (c, c + 1) of the head row at byte `row` (c even; when c + 1 == HD, an odd head size, the second is 0 and
// channel c is read again instead: never a byte past the row). TYPE, WORDS and HD are constants: each dtype is
// one straight-line path. f32: two words; 16-bit aligned: one word; 16-bit unaligned: the two halves apart.
#define CACHE_PAIR(NAME, BUF, TYPE, WORDS)                                                              \
    vec2 NAME(uint row, uint c) {                                                                        \
        bool two = c + 1u < HD;                                                                          \
        if (TYPE == 0u) {                                                                                \
            uint i = (row >> 2) + c;                                                                     \
            float b = uintBitsToFloat(BUF[two ? i + 1u : i]);                                            \
            return vec2(uintBitsToFloat(BUF[i]), two ? b : 0.0);                                         \
        }                                                                                                \
        if (WORDS != 0u) return word_to_f2(BUF[(row >> 2) + (c >> 1)], TYPE);                           \
        uint b0 = row + 2u * c, b1 = two ? b0 + 2u : b0;                                                 \
        float y = half_to_f((BUF[b1 >> 2] >> ((b1 & 2u) * 8u)) & 0xffffu, TYPE);                        \
        return vec2(half_to_f((BUF[b0 >> 2] >> ((b0 & 2u) * 8u)) & 0xffffu, TYPE), two ? y : 0.0);       \
    }
CACHE_PAIR(k_pair, src1_w, K_TYPE, K_WORDS)
CACHE_PAIR(v_pair, src2_w, V_TYPE, V_WORDS)

uint esize(uint type) { return type == 0u ? 4u : 2u; }

void main() {
    uint g = group_index();
    if (g >= pc.n * pc.n_head * pc.n_split) return;  // the whole workgroup: no barrier is skipped by part of it
    uint row = g / pc.n_split, z = g % pc.n_split;     // row = j * n_head + h of q and dst
    uint j = row / pc.n_head, h = row % pc.n_head, hk = h / pc.group;
    uint t = gl_LocalInvocationID.x;
    for (uint c = t; c < 258u; c += WG) qs[c] = c < HD ? src0_f(pc.q_off + row * pc.q_s + c) : 0.0;
    barrier();
    uint n_past = pc.dyn != 0u ? param_w[pc.dyn - 1u] : pc.n_past;
    uint n_kv = n_past + j + 1u;
    // This workgroup's rows [s0, s1): all of them without a split.
    uint per = (n_kv + pc.n_split - 1u) / pc.n_split;
    uint s0 = min(n_kv, z * per), s1 = min(n_kv, s0 + per);
    uint kcol = pc.k_off + hk * HD * esize(K_TYPE), vcol = pc.v_off + hk * HD * esize(V_TYPE);
    uint team = t / CT, slot = t % CT, c2 = 2u * slot;
    bool owns = c2 < HD;  // CT may exceed HD / 2: those slots compute nothing
    const float NEG_INF = uintBitsToFloat(0xff800000u);
    float M = NEG_INF;     // running max, the same in every thread
    float lsum = 0.0;      // this thread's rows' weights (scores phase indexing)
    vec2 acc = vec2(0.0);  // channels c2, c2 + 1 over this team's rows
    for (uint t0 = s0; t0 < s1; t0 += WG) {
        uint n_here = min(WG, s1 - t0);
        // Scores: row t0 + t (clamped to the range's last row: loads are unconditional, the score is discarded).
        uint pos = min(t0 + t, s1 - 1u);
        uint krow = kcol + pos * pc.k_nb1;
        float s = 0.0;
        [[unroll]] for (uint c0 = 0u; c0 < HD; c0 += 2u * U) {
            vec2 kx[U];
            [[unroll]] for (uint u = 0u; u < U; ++u)
                if (c0 + 2u * u < HD) kx[u] = k_pair(krow, c0 + 2u * u);
            [[unroll]] for (uint u = 0u; u < U; ++u)
                if (c0 + 2u * u < HD) s += qs[c0 + 2u * u] * kx[u].x + qs[c0 + 2u * u + 1u] * kx[u].y;
        }
        s = t < n_here ? s * pc.scale : NEG_INF;
        red[t] = s;
        barrier();
        [[unroll]] for (uint off = WG / 2u; off > 0u; off >>= 1u) {
            if (t < off) red[t] = max(red[t], red[t + off]);
            barrier();
        }
        float m_new = max(M, red[0]);  // finite: row t0 is always in range (t0 < s1)
        float f = exp(M - m_new);      // 0 on the first chunk (M = -inf)
        float p = t < n_here ? exp(s - m_new) : 0.0;
        lsum = lsum * f + p;
        ps[t] = p;
        barrier();
        // P.V: this team's rows team, team + TEAMS, .., U at a time; rows past n_here repeat the last row, weight 0.
        acc *= f;
        if (owns) {
            for (uint u0 = team; u0 < n_here; u0 += U * TEAMS) {
                vec2 vx[U];
                float w[U];
                [[unroll]] for (uint u = 0u; u < U; ++u) {
                    uint r = u0 + u * TEAMS;
                    vx[u] = v_pair(vcol + (t0 + min(r, n_here - 1u)) * pc.v_nb1, c2);
                    w[u] = ps[min(r, WG - 1u)];
                    w[u] = r < n_here ? w[u] : 0.0;
                }
                [[unroll]] for (uint u = 0u; u < U; ++u) acc += w[u] * vx[u];
            }
        }
        M = m_new;
        barrier();  // red and ps are rewritten by the next chunk
    }
    // L = the sum of every thread's lsum; each channel pair = the sum of its slot's team accumulators.
    red[t] = lsum;
    part[t] = acc;
    barrier();
    [[unroll]] for (uint off = WG / 2u; off > 0u; off >>= 1u) {
        if (t < off) red[t] += red[t + off];
        barrier();
    }
    if (pc.n_split > 1u) {  // split-K: this range's (max, sum, acc) relative to M; (-inf, 0, 0) when empty
        uint p = pc.p_off + g * (HD + 2u);
        if (t == 0u) {
            part_f[p] = M;
            part_f[p + 1u] = red[0];
        }
        if (team == 0u && owns) {
            vec2 a = part[slot];
            for (uint k = 1u; k < TEAMS; ++k) a += part[k * CT + slot];
            part_f[p + 2u + c2] = a.x;
            if (c2 + 1u < HD) part_f[p + 3u + c2] = a.y;
        }
        return;
    }
    if (team == 0u && owns) {
        vec2 a = part[slot];
        for (uint k = 1u; k < TEAMS; ++k) a += part[k * CT + slot];
        float inv = 1.0 / red[0];
        uint d = pc.d_off + row * pc.d_s + c2;
        dst_set(d, a.x * inv);
        if (c2 + 1u < HD) dst_set(d + 1u, a.y * inv);
    }
}
