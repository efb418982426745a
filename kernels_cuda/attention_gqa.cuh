// Decode attention over the contiguous f16 or bf16 cache with one block per (KV head, query, split) that serves the
// KV head's whole group of query heads: each K and V row is read once per group instead of once per query head.
// Same result as attention_kernel (attention_common.cuh): out = causal softmax(scale * q . K^T) . V, f32 online
// softmax, split-K partials in the same layout for attention_merge_kernel.
//
// Why: at 8K context on the H100 the 1B decode step spent ~34 us per layer in attention (751 t/s at depth 8192
// against llama.cpp's 834, one call): attention_kernel gives each query head its own block, so the 4 heads of a
// group each read the same rows, and a lane reads 2-byte values (channels lane, lane + 32) with a 5-shuffle
// reduction per row and head.
//
// Launch: grid (n_head / G, n, n_split), block k_attn_warps warps; block x serves query heads G x .. G x + G - 1,
// which share KV head G x / group. G is the group (a block per KV head) where the rows are split over blocks;
// without a split (up to 256 rows) G = 1, so that the short contexts still get a block per query head (8 blocks of
// a 1B model's 8 KV heads measured 7 us per launch under ncu, more than the per-head kernel's 32).
// A row is read by LPR = hd / 8 lanes, each taking 8 consecutive channels as one 16-byte load (a warp reads
// 32 / LPR rows at once, U of them per lane group per step, their K and V loads issued together); a score is the
// group's LPR-lane shuffle sum. Each lane group keeps
// its own (max, sum, accumulator) per query head over the rows it read; they are merged across the warp's lane
// groups by shuffles, then across warps through shared memory, as attention_kernel merges its warps.
// G: query heads per block (1, 2 or 4); registers hold G x 8 of q and of the accumulators per lane.
// ROWS says where a lane's 8 channels of row t are and how they decode (the cache's layout): stage() fills the
// block's shared `staged` for the rows [s0, s1) it reads (all threads call it), at(hk, sl, ...) gives the lane's
// view, whose load_k(t) / load_v(t) issue the loads (raw words: k_raw, v_raw) and ROWS::unpack_k/_v turn them
// into floats after the loads of the step are all in flight (U of them per lane group: ROWS::k_rows_per_step).
// contiguous_rows<T> below: the contiguous f16 or
// bf16 cache (ATTENTION); attention_blocks.cu: the paged cache of a block map (ATTENTION_BLOCKS).
#pragma once

#include <math_constants.h>

#include "attention_common.cuh"
#include "cuda_common.cuh"

namespace tfu::cuda {

// 8 consecutive f16 or bf16 values as floats.
template <dtype T>
__device__ __forceinline__ void unpack8(uint4 w, float (&f)[8]) {
    const uint32_t u[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        if constexpr (T == dtype::F16) {
            f[2 * i] = h2f(uint16_t(u[i] & 0xffffu)), f[2 * i + 1] = h2f(uint16_t(u[i] >> 16));
        } else {
            f[2 * i] = bf2f(uint16_t(u[i] & 0xffffu)), f[2 * i + 1] = bf2f(uint16_t(u[i] >> 16));
        }
    }
}

// The contiguous f16 or bf16 cache: row t of KV head hk at k + t * k_stride + hk * hd * 2; a lane's 8 channels are
// one 16-byte load.
template <dtype T>
struct contiguous_rows {
    const uint8_t* k;
    const uint8_t* v;
    size_t k_stride, v_stride;
    int hd;

    static constexpr int k_rows_per_step = 2;
    using k_raw = uint4;
    using v_raw = uint4;
    struct staged {};  // nothing: a row's address is arithmetic
    __device__ __forceinline__ void stage(staged&, int, int) const {}
    struct lane_view {
        const uint8_t* kb;
        const uint8_t* vb;
        size_t k_stride, v_stride;
        __device__ __forceinline__ uint4 load_k(int t) const {
            return *reinterpret_cast<const uint4*>(kb + size_t(t) * k_stride);
        }
        __device__ __forceinline__ uint4 load_v(int t) const {
            return *reinterpret_cast<const uint4*>(vb + size_t(t) * v_stride);
        }
    };
    __device__ __forceinline__ lane_view at(int hk, int sl, const staged&, int, int) const {
        const size_t off = size_t(hk) * size_t(hd) * 2 + 16 * size_t(sl);
        return {k + off, v + off, k_stride, v_stride};
    }
    __device__ static __forceinline__ void unpack_k(const uint4& w, float (&f)[8]) { unpack8<T>(w, f); }
    __device__ static __forceinline__ void unpack_v(const uint4& w, float (&f)[8]) { unpack8<T>(w, f); }
};

// (m, l, acc) of one lane absorbs another's (a lane group with no rows has m = -inf, l = 0, acc = 0).
__device__ __forceinline__ void softmax_merge(float& m, float& l, float (&acc)[8], float mo, float lo,
                                              const float (&ao)[8]) {
    const float mn = fmaxf(m, mo);
    const float fa = m == -CUDART_INF_F ? 0.0f : expf(m - mn), fb = mo == -CUDART_INF_F ? 0.0f : expf(mo - mn);
    l = l * fa + lo * fb;
#pragma unroll
    for (int c = 0; c < 8; ++c) acc[c] = acc[c] * fa + ao[c] * fb;
    m = mn;
}

template <int LPR, int G, typename ROWS>
__global__ void __launch_bounds__(k_attn_warps * k_warp) attention_gqa_kernel(attn_params p, ROWS rows) {
    constexpr int RPW = k_warp / LPR;  // rows a warp reads at once
    constexpr int U = ROWS::k_rows_per_step;  // rows per lane group per step
    constexpr int hd = 8 * LPR;
    pdl_trigger();
    const int h0 = blockIdx.x * G, hk = h0 / p.group, j = blockIdx.y, z = blockIdx.z, n_split = gridDim.z;
    const int warp = threadIdx.x / k_warp, lane = threadIdx.x % k_warp;
    const int rg = lane / LPR, sl = lane % LPR;  // row slot of the lane group, channel slice 8 sl .. 8 sl + 7
    const int n_kv = (p.n_past_dev ? *p.n_past_dev : p.n_past) + j + 1;
    float q[G][8];
#pragma unroll
    for (int g = 0; g < G; ++g) {
        const float4* qr =
            reinterpret_cast<const float4*>(p.q + size_t(j * p.n_head + h0 + g) * p.q_stride) + 2 * sl;
        const float4 a = qr[0], b = qr[1];
        q[g][0] = a.x, q[g][1] = a.y, q[g][2] = a.z, q[g][3] = a.w;
        q[g][4] = b.x, q[g][5] = b.y, q[g][6] = b.z, q[g][7] = b.w;
    }
    const int chunk = (n_kv + n_split - 1) / n_split;
    const int s0 = min(n_kv, z * chunk), s1 = min(n_kv, s0 + chunk);
    const int per = (s1 - s0 + k_attn_warps - 1) / k_attn_warps;
    const int t0 = s0 + warp * per, t1 = min(s1, t0 + per);
    // What the rows of [s0, s1) need in shared memory (block maps: their blocks' addresses), then the lane's view.
    __shared__ typename ROWS::staged staged;
    rows.stage(staged, s0, s1);
    const typename ROWS::lane_view lv = rows.at(hk, sl, staged, s0, s1);
    float m[G], l[G], acc[G][8];
#pragma unroll
    for (int g = 0; g < G; ++g) {
        m[g] = -CUDART_INF_F, l[g] = 0.0f;
#pragma unroll
        for (int c = 0; c < 8; ++c) acc[g][c] = 0.0f;
    }
    for (int t = t0; t < t1; t += RPW * U) {
        // Rows past t1 read row t (always valid) and get weight 0: no branch around the loads.
        typename ROWS::k_raw kw[U];
        typename ROWS::v_raw vw[U];
        bool ok[U];
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int tu = t + u * RPW + rg;
            ok[u] = tu < t1;
            const int tr = ok[u] ? tu : t;
            kw[u] = lv.load_k(tr);
            vw[u] = lv.load_v(tr);
        }
        float s[U][G];
#pragma unroll
        for (int u = 0; u < U; ++u) {
            float kf[8];
            ROWS::unpack_k(kw[u], kf);
#pragma unroll
            for (int g = 0; g < G; ++g) {
                float d = 0.0f;
#pragma unroll
                for (int c = 0; c < 8; ++c) d = fmaf(q[g][c], kf[c], d);
                s[u][g] = d;
            }
        }
#pragma unroll
        for (int off = LPR / 2; off > 0; off /= 2)
#pragma unroll
            for (int u = 0; u < U; ++u)
#pragma unroll
                for (int g = 0; g < G; ++g) s[u][g] += __shfl_xor_sync(0xffffffffu, s[u][g], off);
        float vf[U][8];
#pragma unroll
        for (int u = 0; u < U; ++u) ROWS::unpack_v(vw[u], vf[u]);
#pragma unroll
        for (int g = 0; g < G; ++g) {
            float mx = m[g];
#pragma unroll
            for (int u = 0; u < U; ++u) {
                s[u][g] = ok[u] ? s[u][g] * p.scale : -CUDART_INF_F;
                mx = fmaxf(mx, s[u][g]);
            }
            if (mx == -CUDART_INF_F) continue;  // no row of this lane group yet
            const float corr = expf(m[g] - mx);
            l[g] *= corr;
#pragma unroll
            for (int c = 0; c < 8; ++c) acc[g][c] *= corr;
#pragma unroll
            for (int u = 0; u < U; ++u) {
                const float w = expf(s[u][g] - mx);
                l[g] += w;
#pragma unroll
                for (int c = 0; c < 8; ++c) acc[g][c] = fmaf(w, vf[u][c], acc[g][c]);
            }
            m[g] = mx;
        }
    }
    // The warp's lane groups (lanes sl, sl + LPR, ...) into lane group 0.
#pragma unroll
    for (int off = LPR; off < k_warp; off *= 2)
#pragma unroll
        for (int g = 0; g < G; ++g) {
            const float mo = __shfl_xor_sync(0xffffffffu, m[g], off), lo = __shfl_xor_sync(0xffffffffu, l[g], off);
            float ao[8];
#pragma unroll
            for (int c = 0; c < 8; ++c) ao[c] = __shfl_xor_sync(0xffffffffu, acc[g][c], off);
            softmax_merge(m[g], l[g], acc[g], mo, lo, ao);
        }
    __shared__ float sm_m[k_attn_warps][G], sm_l[k_attn_warps][G];
    __shared__ float sm_acc[k_attn_warps][G][hd];
    if (rg == 0) {
#pragma unroll
        for (int g = 0; g < G; ++g) {
            if (sl == 0) sm_m[warp][g] = m[g], sm_l[warp][g] = l[g];
#pragma unroll
            for (int c = 0; c < 8; ++c) sm_acc[warp][g][8 * sl + c] = acc[g][c];
        }
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < G * hd; idx += blockDim.x) {
        const int g = idx / hd, c = idx % hd;
        float mx = -CUDART_INF_F;
#pragma unroll
        for (int w = 0; w < k_attn_warps; ++w) mx = fmaxf(mx, sm_m[w][g]);
        float sum = 0.0f, o = 0.0f;
#pragma unroll
        for (int w = 0; w < k_attn_warps; ++w) {
            const float f = sm_m[w][g] == -CUDART_INF_F ? 0.0f : expf(sm_m[w][g] - mx);
            sum += f * sm_l[w][g];
            o += f * sm_acc[w][g][c];
        }
        const size_t row = size_t(j * p.n_head + h0 + g);
        if (!p.partial) {
            reinterpret_cast<float*>(p.dst + row * p.d_stride)[c] = o / sum;
        } else {  // this block's share, relative to its own max (an empty range: max -inf, sum 0, acc 0)
            float* part = p.partial + (row * n_split + z) * size_t(hd + 2);
            if (c == 0) part[0] = mx, part[1] = sum;
            part[2 + c] = o;
        }
    }
}

// G query heads per block: the group where the rows are split over blocks (n_split > 1), else 1.
template <int LPR, int G, typename ROWS>
void launch_gqa_grid(context& ctx, attn_params p, int n, int n_split, const ROWS& rows) {
    p.partial = n_split > 1 ? static_cast<float*>(ctx.scratch(size_t(p.n_head) * size_t(n) * size_t(n_split) *
                                                              size_t(p.hd + 2) * sizeof(float)))
                            : nullptr;  // attention_scratch_bytes: the same size
    const dim3 grid{unsigned(p.n_head / G), unsigned(n), unsigned(n_split)};
    attention_gqa_kernel<LPR, G, ROWS><<<grid, k_attn_warps * k_warp, 0, ctx.stream>>>(p, rows);
    check_launch("attention_gqa_kernel");
    if (n_split > 1) {
        attention_merge_kernel<<<unsigned(p.n_head) * unsigned(n), 128, 0, ctx.stream>>>(p, n_split);
        check_launch("attention_merge_kernel");
    }
}

template <int LPR, typename ROWS>
void launch_gqa_g(context& ctx, const attn_params& p, int n, int n_head_kv, const ROWS& rows) {
    const int n_split = attention_split_count(ctx, int64_t(n_head_kv) * n, p.n_past + n);
    if (n_split == 1) return launch_gqa_grid<LPR, 1>(ctx, p, n, 1, rows);
    switch (p.group) {
        case 1: return launch_gqa_grid<LPR, 1>(ctx, p, n, n_split, rows);
        case 2: return launch_gqa_grid<LPR, 2>(ctx, p, n, n_split, rows);
        default: return launch_gqa_grid<LPR, 4>(ctx, p, n, n_split, rows);
    }
}

// The group kernel for head size 64 or 128 (attention_gqa_shape checked the rest).
template <typename ROWS>
void launch_gqa(context& ctx, const attn_params& p, int n, int n_head_kv, const ROWS& rows) {
    if (p.hd == 64) launch_gqa_g<8>(ctx, p, n, n_head_kv, rows);
    else launch_gqa_g<16>(ctx, p, n, n_head_kv, rows);
}

}  // namespace tfu::cuda
