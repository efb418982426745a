// ARGMAX: dst (n, i32) = index of the largest value of each column of src0 (k, n) f32, with the sampler's greedy
// rules (backend/ops.def): NaN as -inf, +inf as FLT_MAX, -0 as +0, ties to the lowest index, -1 when nothing is
// above -inf. Values are compared as order-preserving integer keys (ukey), never as floats, so denormals and the
// device's float comparison rules cannot change the pick. Each thread keeps its best (key, inverted index), then
// the group reduces them: subgroupMax of the key and of the index among the lanes holding it, then across
// subgroups in shared memory (USE_SUBGROUP), or a tree in shared memory. Groups of 256.
// Launch (vk_ops.cpp record_argmax): one group per column for short columns. Long ones (a vocabulary) in two
// passes, since one group walking 128K values is latency-bound (~175 us on an H100):
//   PART:  `parts` groups per column, group p of column j covers elements [p * chunk, (p + 1) * chunk) and writes
//          its (key, inverted index) pair to dst words 2 (j * parts + p) and + 1 (the scratch);
//   FINAL: one group per column reduces the column's `parts` pairs (src0 = the scratch) to the index.
// The pairs carry the exact comparison, so both launches pick what one pass would.
#version 450
#include "common.glsl"
#ifdef USE_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
#endif
layout(local_size_x = 256) in;
layout(push_constant) uniform pc_t {
    uint k, n, x_off, x_s, d_off;  // words
    uint parts, chunk;             // PART, FINAL: groups per column, elements per group (PART)
} pc;
shared uint s_key[256];
shared uint s_inv[256];

const uint NEG_INF_KEY = 0x007fffffu;  // ukey(-inf)

// The value's bits as an unsigned key in the order of sanitize(x) (NaN -> -inf, +inf -> FLT_MAX, -0 -> +0).
uint ukey(uint u) {
    if ((u & 0x7fffffffu) > 0x7f800000u) u = 0xff800000u;
    else if (u == 0x7f800000u) u = 0x7f7fffffu;
    else if (u == 0x80000000u) u = 0u;
    return (u & 0x80000000u) != 0u ? ~u : (u | 0x80000000u);
}
// (key, ~index) pairs: a beats b on a larger key, or the same key and a lower index.
bool beats(uint ak, uint ai, uint bk, uint bi) { return ak > bk || (ak == bk && ai > bi); }

void main() {
#ifdef PART
    uint g = group_index();
    uint j = g / pc.parts, p = g % pc.parts;
#else
    uint j = group_index();
#endif
    if (j >= pc.n) return;
    uint t = gl_LocalInvocationID.x;
    uint bk = 0u, bi = 0u;  // below every element: ukey >= NEG_INF_KEY > 0
#if defined(FINAL)
    for (uint q = t; q < pc.parts; q += 256u) {  // the column's pairs, in the scratch
        uint w = 2u * (j * pc.parts + q);
        uint key = src0_w[w], inv = src0_w[w + 1u];
        if (beats(key, inv, bk, bi)) {
            bk = key;
            bi = inv;
        }
    }
#else
    uint base = pc.x_off + j * pc.x_s;
#ifdef PART
    uint i0 = p * pc.chunk, i1 = min(pc.k, i0 + pc.chunk);
#else
    uint i0 = 0u, i1 = pc.k;
#endif
    for (uint i = i0 + t; i < i1; i += 256u) {
        uint key = ukey(src0_w[base + i]);
        if (beats(key, ~i, bk, bi)) {
            bk = key;
            bi = ~i;
        }
    }
#endif
#ifdef USE_SUBGROUP
    uint mk = subgroupMax(bk);
    uint mi = subgroupMax(bk == mk ? bi : 0u);
    if (subgroupElect()) {
        s_key[gl_SubgroupID] = mk;
        s_inv[gl_SubgroupID] = mi;
    }
    barrier();
    if (t == 0u) {
        bk = s_key[0];
        bi = s_inv[0];
        for (uint q = 1u; q < gl_NumSubgroups; ++q)
            if (beats(s_key[q], s_inv[q], bk, bi)) {
                bk = s_key[q];
                bi = s_inv[q];
            }
    }
#else
    s_key[t] = bk;
    s_inv[t] = bi;
    barrier();
    [[unroll]] for (uint s = 128u; s > 0u; s >>= 1) {
        if (t < s && beats(s_key[t + s], s_inv[t + s], s_key[t], s_inv[t])) {
            s_key[t] = s_key[t + s];
            s_inv[t] = s_inv[t + s];
        }
        barrier();
    }
    bk = s_key[0];
    bi = s_inv[0];
#endif
#ifdef PART
    if (t == 0u) {
        dst_w[2u * g] = bk;
        dst_w[2u * g + 1u] = bi;
    }
#else
    if (t == 0u) dst_w[pc.d_off + j] = bk <= NEG_INF_KEY ? 0xffffffffu : ~bi;
#endif
}
