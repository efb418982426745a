// ATTENTION over the contiguous f16/bf16 cache, read by lane groups (vk_ops.cpp record_attention takes it where
// the device has subgroup shuffles and head rows are 16-byte aligned): the same op as attention.comp, dst (hd,
// n_head, n) = causal softmax(scale * q . K^T) . V, query j at position n_past + j seeing rows 0 .. n_past + j, head
// h reading KV head h / group; n_past from param_w[dyn - 1] when dyn != 0 (a kept run); split-K partials to binding
// 5 in attention.comp's layout for attention_merge.comp (an empty range writes (-inf, 0, 0)).
// Why: attention.comp gives each thread a whole K row, so the 32 lanes of a load instruction touch 32 rows (one
// cache line each) and a 64-wide f16 head takes 32 such loads per row; P.V walks its rows 8 at a time, a latency
// each. At 64..192 rows on an H100 the launch took 8.2 us against 3.4 for an 8-workgroup ADD.
// Launch: one workgroup of 128 per (query, GQ heads, split), g = (j (n_head / GQ) + h / GQ) n_split + z: with GQ = 1
// as attention.comp. GQ > 1 (prefill, vk_ops.cpp attention_heads_per_group): the GQ query heads h .. h + GQ - 1
// share a KV head (GQ divides the group), and each K and V row the workgroup loads serves all of them (on the 8B
// model's prefill the rows were read once per head, from L2, at about 8 TB/s). A head
// row (HD = 8 LPR channels) is read by LPR lanes of a subgroup, 8 channels each as one 16-byte load; a subgroup reads
// SG / LPR rows at once, U of them per lane group per step with their K and V loads issued together; a score is its
// LPR lanes' xor-shuffle sum. The workgroup's rows [s0, s1) are cut into one contiguous range per subgroup. Each
// lane group keeps its own (max, sum, 8 accumulators) over the rows it read (online softmax, Milakov & Gimelshein,
// arXiv 1805.02867); they are merged across the subgroup's lane groups by shuffles, then across subgroups through
// shared memory. As CUDA's attention_gqa_kernel (kernels_cuda/attention_gqa.cuh) with one query head per block.
// Needs subgroups of at least LPR lanes and at least 4 (MAX_SG, at most 32 per workgroup: the shared arrays).
#version 450
#include "common.glsl"
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_shuffle : enable
layout(local_size_x = 128) in;
layout(constant_id = 0) const uint K_TYPE = 1;  // GGUF type id of K: 1 f16, 30 bf16
layout(constant_id = 1) const uint V_TYPE = 1;  // of V
layout(constant_id = 2) const uint HD = 64;     // head size: 8 LPR, LPR a power of 2
layout(constant_id = 3) const uint U = 4;       // rows per lane group per step, 1..8
layout(constant_id = 4) const uint GQ = 1;      // query heads per workgroup: 1, 2 or 4
layout(constant_id = 5) const uint MAX_SG = 32; // 128 / the narrowest subgroup size: the most subgroups there are
layout(push_constant) uniform pc_t {
    uint hd, n_head, n, n_past, group;
    float scale;
    uint q_off, q_s, d_off, d_s;       // words
    uint k_type, k_off, k_nb1;         // GGUF type id; bytes (k_off, k_nb1: multiples of 16)
    uint v_type, v_off, v_nb1;
    uint dyn;                          // 0, or the parameter-arena word holding n_past, + 1
    uint n_split;                      // >= 1; 1: normalised rows to dst, else partials to binding 5
    uint p_off;                        // words: the partials' start in binding 5
} pc;
layout(set = 0, binding = 2) readonly buffer k4_buf { uvec4 k4[]; };  // K and V as 16-byte words
layout(set = 0, binding = 3) readonly buffer v4_buf { uvec4 v4[]; };
layout(set = 0, binding = 5) buffer part_buf { float part_f[]; };    // (n * n_head * n_split, HD + 2) partials

const uint LPR = HD / 8u;
shared float sm_m[MAX_SG * GQ], sm_l[MAX_SG * GQ];  // subgroup w, head i at w GQ + i
shared float sm_acc[MAX_SG * GQ * HD];              // at (w GQ + i) HD + channel

// 8 consecutive f16 or bf16 values (channel 8 sl + c in lane slice sl) as floats.
void unpack8(uvec4 w, uint type, out float f[8]) {
    uint u[4] = uint[4](w.x, w.y, w.z, w.w);
    [[unroll]] for (uint i = 0u; i < 4u; ++i) {
        vec2 p = type == 1u ? unpackHalf2x16(u[i])
                            : vec2(uintBitsToFloat(u[i] << 16), uintBitsToFloat(u[i] & 0xffff0000u));
        f[2u * i] = p.x;
        f[2u * i + 1u] = p.y;
    }
}

// (m, l, acc) absorbs another lane group's (mo, lo, ao); a group with no rows has m = -inf, l = 0, acc = 0.
void softmax_merge(inout float m, inout float l, inout float acc[8], float mo, float lo, float ao[8]) {
    const float NEG_INF = uintBitsToFloat(0xff800000u);
    float mn = max(m, mo);
    float fa = m == NEG_INF ? 0.0 : exp(m - mn), fb = mo == NEG_INF ? 0.0 : exp(mo - mn);
    l = l * fa + lo * fb;
    [[unroll]] for (uint c = 0u; c < 8u; ++c) acc[c] = acc[c] * fa + ao[c] * fb;
    m = mn;
}

void main() {
    uint g = group_index();
    const uint n_hb = pc.n_head / GQ;  // workgroups per query and split
    if (g >= pc.n * n_hb * pc.n_split) return;  // the whole workgroup: no barrier is skipped by part of it
    uint blk = g / pc.n_split, z = g % pc.n_split;
    uint j = blk / n_hb, h0 = (blk % n_hb) * GQ, hk = h0 / pc.group;
    uint row0 = j * pc.n_head + h0;  // row of q and dst of head h0 + i: row0 + i
    uint lane = gl_SubgroupInvocationID, sg = gl_SubgroupID, nsg = gl_NumSubgroups;
    uint rg = lane / LPR, sl = lane % LPR;  // row slot of the lane group, channels 8 sl .. 8 sl + 7
    uint rpw = gl_SubgroupSize / LPR;       // rows a subgroup reads at once
    const float NEG_INF = uintBitsToFloat(0xff800000u);
    float q[GQ][8];
    [[unroll]] for (uint i = 0u; i < GQ; ++i)
        [[unroll]] for (uint c = 0u; c < 8u; ++c) q[i][c] = src0_f(pc.q_off + (row0 + i) * pc.q_s + 8u * sl + c);
    uint n_past = pc.dyn != 0u ? param_w[pc.dyn - 1u] : pc.n_past;
    uint n_kv = n_past + j + 1u;
    uint per = (n_kv + pc.n_split - 1u) / pc.n_split;
    uint s0 = min(n_kv, z * per), s1 = min(n_kv, s0 + per);
    uint wper = (s1 - s0 + nsg - 1u) / nsg;
    uint t0 = min(s1, s0 + sg * wper), t1 = min(s1, t0 + wper);
    uint kb = (pc.k_off + hk * HD * 2u) / 16u + sl, ks = pc.k_nb1 / 16u;  // the lane's 16 bytes of row t: kb + t ks
    uint vb = (pc.v_off + hk * HD * 2u) / 16u + sl, vs = pc.v_nb1 / 16u;
    float m[GQ], l[GQ], acc[GQ][8];
    [[unroll]] for (uint i = 0u; i < GQ; ++i) {
        m[i] = NEG_INF;
        l[i] = 0.0;
        [[unroll]] for (uint c = 0u; c < 8u; ++c) acc[i][c] = 0.0;
    }
    for (uint t = t0; t < t1; t += rpw * U) {
        // Rows past t1 read row t (always valid) and get weight 0: no branch around the loads.
        uvec4 kw[8], vw[8];
        bool ok[8];
        [[unroll]] for (uint u = 0u; u < U; ++u) {
            uint tu = t + u * rpw + rg;
            ok[u] = tu < t1;
            uint tr = ok[u] ? tu : t;
            kw[u] = k4[kb + tr * ks];
            vw[u] = v4[vb + tr * vs];
        }
        float s[8][GQ];
        [[unroll]] for (uint u = 0u; u < U; ++u) {
            float kf[8];
            unpack8(kw[u], K_TYPE, kf);
            [[unroll]] for (uint i = 0u; i < GQ; ++i) {
                float d = 0.0;
                [[unroll]] for (uint c = 0u; c < 8u; ++c) d += q[i][c] * kf[c];
                s[u][i] = d;
            }
        }
        [[unroll]] for (uint off = LPR / 2u; off > 0u; off >>= 1u)
            [[unroll]] for (uint u = 0u; u < U; ++u)
                [[unroll]] for (uint i = 0u; i < GQ; ++i) s[u][i] += subgroupShuffleXor(s[u][i], off);
        float vf[8][8];
        [[unroll]] for (uint u = 0u; u < U; ++u) unpack8(vw[u], V_TYPE, vf[u]);
        [[unroll]] for (uint i = 0u; i < GQ; ++i) {
            float mx = m[i];
            [[unroll]] for (uint u = 0u; u < U; ++u) {
                s[u][i] = ok[u] ? s[u][i] * pc.scale : NEG_INF;
                mx = max(mx, s[u][i]);
            }
            if (mx != NEG_INF) {  // else no row of this lane group yet
                float corr = exp(m[i] - mx);  // 0 while m = -inf
                l[i] *= corr;
                [[unroll]] for (uint c = 0u; c < 8u; ++c) acc[i][c] *= corr;
                [[unroll]] for (uint u = 0u; u < U; ++u) {
                    float w = exp(s[u][i] - mx);  // 0 for the rows past t1
                    l[i] += w;
                    [[unroll]] for (uint c = 0u; c < 8u; ++c) acc[i][c] += w * vf[u][c];
                }
                m[i] = mx;
            }
        }
    }
    // Per head, the subgroup's lane groups (lanes sl, sl + LPR, ..) into lane group 0.
    [[unroll]] for (uint i = 0u; i < GQ; ++i) {
        for (uint off = LPR; off < gl_SubgroupSize; off *= 2u) {
            float mo = subgroupShuffleXor(m[i], off), lo = subgroupShuffleXor(l[i], off);
            float ao[8];
            [[unroll]] for (uint c = 0u; c < 8u; ++c) ao[c] = subgroupShuffleXor(acc[i][c], off);
            softmax_merge(m[i], l[i], acc[i], mo, lo, ao);
        }
        if (rg == 0u) {
            if (sl == 0u) {
                sm_m[sg * GQ + i] = m[i];
                sm_l[sg * GQ + i] = l[i];
            }
            [[unroll]] for (uint c = 0u; c < 8u; ++c) sm_acc[(sg * GQ + i) * HD + 8u * sl + c] = acc[i][c];
        }
    }
    barrier();
    for (uint e = gl_LocalInvocationID.x; e < GQ * HD; e += gl_WorkGroupSize.x) {
        uint i = e / HD, c = e % HD, row = row0 + i;
        float mw = NEG_INF;
        for (uint w = 0u; w < nsg; ++w) mw = max(mw, sm_m[w * GQ + i]);
        float sum = 0.0, o = 0.0;
        for (uint w = 0u; w < nsg; ++w) {
            float f = sm_m[w * GQ + i] == NEG_INF ? 0.0 : exp(sm_m[w * GQ + i] - mw);
            sum += f * sm_l[w * GQ + i];
            o += f * sm_acc[(w * GQ + i) * HD + c];
        }
        if (pc.n_split == 1u) {
            dst_set(pc.d_off + row * pc.d_s + c, o / sum);
        } else {  // this range's share, relative to its own max (an empty range: max -inf, sum 0, acc 0)
            uint p = pc.p_off + (row * pc.n_split + z) * (HD + 2u);  // attention.comp's partial of (row, z)
            if (c == 0u) {
                part_f[p] = mw;
                part_f[p + 1u] = sum;
            }
            part_f[p + 2u + c] = o;
        }
    }
}
