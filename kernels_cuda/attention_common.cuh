// The attention kernel shared by ATTENTION (contiguous cache) and ATTENTION_PAGED (paged, quantized cache):
// out = causal softmax(scale * q . K^T) . V for one (query j, head h) per block, with the K/V rows read through
// a reader type (contiguous f32/f16/bf16 rows, or paged head blocks dequantized in registers).
//
// Launch: grid (n_head, n), block k_attn_warps warps. Query j sits at position n_past + j and sees rows
// 0 .. n_past + j. Each warp takes a contiguous range of those rows and runs an online softmax over it
// (ref: Milakov & Gimelshein, arXiv 1805.02867): lane l holds channels l, l + 32, ... (R per lane, so head
// size <= 32 R) of q, of the rows being read and of the output accumulator; a score is a warp-shuffle sum.
// A warp reads U rows per step (attn_rows_per_step): their K and V loads are issued together and the U
// shuffle reductions interleaved, so a step costs about one memory latency instead of U. One row per step made
// decode latency-bound: a CUPTI trace of tg128 on the H100 showed 30 us per launch, 477 of a token's 1400 us.
// The warps' (max, sum, accumulator) are merged through shared memory at the end. Grouped-query attention:
// head h reads KV head h / group.
// Split-K (flash-decoding): when (n_head x n) blocks would leave most multiprocessors idle and the context is
// long, grid.z = n_split blocks share one (j, h), each taking a contiguous range of its rows; they write
// (max, sum, unnormalised accumulator) to scratch and attention_merge_kernel combines them.
// Prefill (n >= 16 queries) takes attention_prefill.cuh's tiled kernel instead, which reads each K/V row once per
// 16 queries. Decode over an f16 or bf16 contiguous cache with head size 64 or 128 and groups of 1, 2 or 4 takes
// attention_gqa.cuh's kernel instead (K/V read once per group where split, 16-byte loads). TODO(#5): the same for
// the paged cache and other head sizes, and tensor-core tiles for prefill.
#pragma once

#include <math_constants.h>

#include <algorithm>

#include "backend/attention_split.h"
#include "cuda_common.cuh"
#include "cuda_ops.h"

namespace tfu::cuda {

constexpr int k_attn_warps = 4;

// Rows a warp reads per step for R channels per lane: 2 U R floats of K and V in registers (32 at most).
constexpr __host__ __device__ int attn_rows_per_step(int r) { return r <= 2 ? 8 : r <= 4 ? 4 : 2; }

struct attn_params {
    const uint8_t* q;  // (hd, n_head, n) f32, row (j * n_head + h) at q + row * q_stride
    size_t q_stride;
    uint8_t* dst;      // same shape as q
    size_t d_stride;
    int hd, n_head, group, n_past;
    const int32_t* n_past_dev;  // when set, n_past is read here (context::dyn_at: replayed graphs)
    float scale;
    float* partial;    // split-K: (n * n_head, n_split, hd + 2) floats = (max, sum, acc[hd]); nullptr: no split
};

// The parameters every attention op shares (ops.def: q = src0 (hd, n_head, n), dst alike, i[0] = position of
// query 0, read on the device in replayed graphs: context::dyn_at; i[1] = n_head_kv; f[0] = scale).
inline attn_params attn_params_of(const context& ctx, const op& o) {
    const tensor& q = *o.src[0];
    attn_params p{};
    p.q = static_cast<const uint8_t*>(q.data);
    p.q_stride = q.nb[1];
    p.dst = static_cast<uint8_t*>(o.dst->data);
    p.d_stride = o.dst->nb[1];
    p.hd = int(q.ne[0]);
    p.n_head = int(q.ne[1]);
    p.group = int(q.ne[1] / o.i[1]);
    p.n_past = o.i[0];
    p.n_past_dev = ctx.dyn_at();
    p.scale = o.f[0];
    return p;
}

// READER: template <int R> __device__ void load_k(int hk, int t, int lane, float x[R]) const, and load_v: channels
// lane + 32 r of row t of KV head hk, 0 past the head size.
template <int R, typename READER>
__global__ void __launch_bounds__(k_attn_warps * k_warp) attention_kernel(attn_params p, READER kv) {
    pdl_trigger();  // the output projection after it may start staging its weights
    const int h = blockIdx.x, j = blockIdx.y;
    const int hk = h / p.group;
    const int warp = threadIdx.x / k_warp, lane = threadIdx.x % k_warp;
    const int n_kv = (p.n_past_dev ? *p.n_past_dev : p.n_past) + j + 1;
    const float* qr = reinterpret_cast<const float*>(p.q + size_t(j * p.n_head + h) * p.q_stride);
    float qv[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
        const int c = lane + k_warp * r;
        qv[r] = c < p.hd ? qr[c] : 0.0f;
    }
    const int n_split = gridDim.z, z = blockIdx.z;
    const int chunk = (n_kv + n_split - 1) / n_split;
    const int s0 = min(n_kv, z * chunk), s1 = min(n_kv, s0 + chunk);
    const int per = (s1 - s0 + k_attn_warps - 1) / k_attn_warps;
    const int t0 = s0 + warp * per, t1 = min(s1, t0 + per);
    constexpr int U = attn_rows_per_step(R);
    float m = -CUDART_INF_F, l = 0.0f, acc[R];
#pragma unroll
    for (int r = 0; r < R; ++r) acc[r] = 0.0f;
    for (int t = t0; t < t1; t += U) {
        // Rows past t1 repeat row t (always valid) and get weight 0: no branch around the loads.
        float kx[U][R], vx[U][R], s[U];
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int tu = t + u < t1 ? t + u : t;
            kv.template load_k<R>(hk, tu, lane, kx[u]);
            kv.template load_v<R>(hk, tu, lane, vx[u]);
        }
#pragma unroll
        for (int u = 0; u < U; ++u) {
            s[u] = 0.0f;
#pragma unroll
            for (int r = 0; r < R; ++r) s[u] += qv[r] * kx[u][r];
        }
#pragma unroll
        for (int off = k_warp / 2; off > 0; off /= 2) {
#pragma unroll
            for (int u = 0; u < U; ++u) s[u] += __shfl_xor_sync(0xffffffffu, s[u], off);
        }
        float m_new = m;
#pragma unroll
        for (int u = 0; u < U; ++u) {
            s[u] = t + u < t1 ? s[u] * p.scale : -CUDART_INF_F;
            m_new = fmaxf(m_new, s[u]);
        }
        const float corr = expf(m - m_new);  // m_new is finite: row t is always in range
        l *= corr;
#pragma unroll
        for (int r = 0; r < R; ++r) acc[r] *= corr;
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const float w = expf(s[u] - m_new);
            l += w;
#pragma unroll
            for (int r = 0; r < R; ++r) acc[r] += w * vx[u][r];
        }
        m = m_new;
    }
    __shared__ float sm_m[k_attn_warps], sm_l[k_attn_warps];
    __shared__ float sm_acc[k_attn_warps][R * k_warp];
    if (lane == 0) {
        sm_m[warp] = m;
        sm_l[warp] = l;
    }
#pragma unroll
    for (int r = 0; r < R; ++r) sm_acc[warp][lane + k_warp * r] = acc[r];
    __syncthreads();
    float mx = -CUDART_INF_F;
#pragma unroll
    for (int w = 0; w < k_attn_warps; ++w) mx = fmaxf(mx, sm_m[w]);
    float f[k_attn_warps], sum = 0.0f;  // a warp with no rows has m = -inf: factor 0
#pragma unroll
    for (int w = 0; w < k_attn_warps; ++w) {
        f[w] = sm_m[w] == -CUDART_INF_F ? 0.0f : expf(sm_m[w] - mx);
        sum += f[w] * sm_l[w];
    }
    if (!p.partial) {
        float* out = reinterpret_cast<float*>(p.dst + size_t(j * p.n_head + h) * p.d_stride);
        for (int c = threadIdx.x; c < p.hd; c += blockDim.x) {
            float o = 0.0f;
#pragma unroll
            for (int w = 0; w < k_attn_warps; ++w) o += f[w] * sm_acc[w][c];
            out[c] = o / sum;
        }
        return;
    }
    // Split-K: this block's share, relative to its own max (an empty range leaves max -inf, sum 0, acc 0).
    float* part = p.partial + (size_t(j * p.n_head + h) * n_split + z) * size_t(p.hd + 2);
    if (threadIdx.x == 0) {
        part[0] = mx;
        part[1] = sum;
    }
    for (int c = threadIdx.x; c < p.hd; c += blockDim.x) {
        float o = 0.0f;
#pragma unroll
        for (int w = 0; w < k_attn_warps; ++w) o += f[w] * sm_acc[w][c];
        part[2 + c] = o;
    }
}

}  // namespace tfu::cuda

#include "attention_prefill.cuh"

namespace tfu::cuda {

// Split-K merge: one block per (j, h) row of dst; out = sum_s e^(m_s - M) acc_s / sum_s e^(m_s - M) l_s.
static __global__ void attention_merge_kernel(attn_params p, int n_split) {
    pdl_trigger();  // the output projection after it may start staging its weights
    const size_t row = blockIdx.x;
    const float* part = p.partial + row * n_split * size_t(p.hd + 2);
    float mx = -CUDART_INF_F;
    for (int s = 0; s < n_split; ++s) mx = fmaxf(mx, part[s * (p.hd + 2)]);
    float sum = 0.0f;
    for (int s = 0; s < n_split; ++s) {
        const float m = part[s * (p.hd + 2)];
        sum += m == -CUDART_INF_F ? 0.0f : expf(m - mx) * part[s * (p.hd + 2) + 1];
    }
    float* out = reinterpret_cast<float*>(p.dst + row * p.d_stride);
    for (int c = threadIdx.x; c < p.hd; c += blockDim.x) {
        float o = 0.0f;
        for (int s = 0; s < n_split; ++s) {
            const float m = part[s * (p.hd + 2)];
            if (m != -CUDART_INF_F) o += expf(m - mx) * part[s * (p.hd + 2) + 2 + c];
        }
        out[c] = o / sum;
    }
}

// Split-K blocks per (query, head) for `blocks` = n_head x n blocks over at most max_n_kv rows: the shared rule
// (backend/attention_split.h) with a target of 8 blocks per multiprocessor. A replayed graph keeps its split count,
// so run() keys its graphs by this too (attention_splits).
inline int attention_split_count(const context& ctx, int64_t blocks, int max_n_kv) {
    return tfu::attention_split_count(blocks, max_n_kv, 8 * int64_t(ctx.sm_count));
}

// Prefill-sized ops (at least a tile of queries, head size <= 128) take attention_tile_kernel, never split.
inline bool attention_tiled(int n, int hd) {
    return n >= k_tile_queries && (hd + k_warp - 1) / k_warp <= k_tile_max_r;
}

// Launches attention_tile_kernel for prefill (attention_tiled), else attention_kernel with the smallest R that
// covers the head size (hd <= 32 R), split over the sequence (attention_split_count) when n_head x n blocks would
// not fill the device twice over and the context is long. TFU_CUDA_ATTN_TILES=0 keeps attention_kernel for
// prefill too.
template <typename READER>
void launch_attention(context& ctx, attn_params p, int n, const READER& kv, const char* what) {
    const int r = (p.hd + k_warp - 1) / k_warp;
    if (ctx.attn_tiles && attention_tiled(n, p.hd)) {
        p.partial = nullptr;
        const dim3 grid(unsigned(p.n_head), unsigned((n + k_tile_queries - 1) / k_tile_queries));
        if (r <= 1) attention_tile_kernel<1><<<grid, k_attn_warps * k_warp, 0, ctx.stream>>>(p, n, kv);
        else if (r <= 2) attention_tile_kernel<2><<<grid, k_attn_warps * k_warp, 0, ctx.stream>>>(p, n, kv);
        else attention_tile_kernel<4><<<grid, k_attn_warps * k_warp, 0, ctx.stream>>>(p, n, kv);
        check_launch(what);
        return;
    }
    const int64_t blocks = int64_t(p.n_head) * n;
    const int n_split = attention_split_count(ctx, blocks, p.n_past + n);
    p.partial = n_split > 1 ? static_cast<float*>(ctx.scratch(size_t(blocks) * n_split * size_t(p.hd + 2) * sizeof(float)))
                            : nullptr;  // attention_scratch_bytes: the same size
    const dim3 grid(unsigned(p.n_head), unsigned(n), unsigned(n_split));
    if (r <= 1) attention_kernel<1><<<grid, k_attn_warps * k_warp, 0, ctx.stream>>>(p, kv);
    else if (r <= 2) attention_kernel<2><<<grid, k_attn_warps * k_warp, 0, ctx.stream>>>(p, kv);
    else if (r <= 4) attention_kernel<4><<<grid, k_attn_warps * k_warp, 0, ctx.stream>>>(p, kv);
    else attention_kernel<8><<<grid, k_attn_warps * k_warp, 0, ctx.stream>>>(p, kv);
    check_launch(what);
    if (n_split > 1) {
        attention_merge_kernel<<<unsigned(blocks), 128, 0, ctx.stream>>>(p, n_split);
        check_launch("attention_merge_kernel");
    }
}

}  // namespace tfu::cuda
