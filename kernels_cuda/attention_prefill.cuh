// Prefill attention, tiled: a block serves k_tile_queries queries of one head, so each K/V row is read from the
// cache once per tile instead of once per query (attention_kernel reads every visible row for every query: for
// a 512-token prompt that is ~256 reads of each row per head).
//
// Launch: grid (n_head, ceil(n / k_tile_queries)), block k_attn_warps warps; warp w takes the tile's queries
// w * k_queries_per_warp ... The visible rows (up to the tile's last query position) are walked in chunks of
// k_tile_rows = 32: the block copies the chunk's K and V rows (dequantized by the READER, as attention_kernel
// reads them) and the tile's queries into shared memory, then each warp, for its queries at once:
//   scores: lane l takes row t0 + l and sums q . K[l] over the channels (K rows padded to 32 R + 1 floats, so
//     the 32 lanes read 32 banks); rows past a query's position get -inf (causal);
//   online softmax per query over the chunk (warp max and sum), then acc[c] += p[u] * V[u][c] for the chunk's
//     rows u, lanes holding channels lane + 32 r as in attention_kernel, p read back from shared memory.
// Shared memory for R = 4 (head size <= 128): K 16.5 KiB, V 16 KiB, q 8 KiB, p 2 KiB. Larger heads keep
// attention_kernel (launch_attention decides).
#pragma once

#include <math_constants.h>

#include "cuda_common.cuh"

namespace tfu::cuda {

constexpr int k_tile_queries = 16;
constexpr int k_queries_per_warp = 4;  // k_tile_queries / k_attn_warps
constexpr int k_tile_rows = 32;        // one per lane
constexpr int k_tile_max_r = 4;        // head size <= 128

template <int R, typename READER>
__global__ void __launch_bounds__(k_attn_warps * k_warp) attention_tile_kernel(attn_params p, int n, READER kv) {
    static_assert(k_queries_per_warp * k_attn_warps == k_tile_queries, "queries per block");
    constexpr int W = R * k_warp;  // channels held per row (zero past the head size)
    __shared__ float ks[k_tile_rows][W + 1];
    __shared__ float vs[k_tile_rows][W];
    __shared__ float qs[k_tile_queries][W];
    __shared__ float ps[k_attn_warps][k_queries_per_warp][k_tile_rows];
    const int h = blockIdx.x, j0 = blockIdx.y * k_tile_queries;
    const int hk = h / p.group;
    const int warp = threadIdx.x / k_warp, lane = threadIdx.x % k_warp;
    const int n_past = p.n_past_dev ? *p.n_past_dev : p.n_past;
    const int jn = min(k_tile_queries, n - j0);  // queries in this tile
    for (int i = warp; i < k_tile_queries; i += k_attn_warps) {
        const float* qr = reinterpret_cast<const float*>(p.q + size_t((j0 + min(i, jn - 1)) * p.n_head + h) * p.q_stride);
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const int c = lane + k_warp * r;
            qs[i][c] = c < p.hd ? qr[c] : 0.0f;
        }
    }
    float m[k_queries_per_warp], l[k_queries_per_warp], acc[k_queries_per_warp][R];
#pragma unroll
    for (int i = 0; i < k_queries_per_warp; ++i) {
        m[i] = -CUDART_INF_F;
        l[i] = 0.0f;
#pragma unroll
        for (int r = 0; r < R; ++r) acc[i][r] = 0.0f;
    }
    const int n_rows = n_past + j0 + jn;  // rows visible to the tile's last query
    constexpr int rows_per_warp = k_tile_rows / k_attn_warps;
    for (int t0 = 0; t0 < n_rows; t0 += k_tile_rows) {
        __syncthreads();  // the previous chunk's rows are no longer read
        {
            float kx[rows_per_warp][R], vx[rows_per_warp][R];
#pragma unroll
            for (int u = 0; u < rows_per_warp; ++u) {
                const int t = min(t0 + warp * rows_per_warp + u, n_rows - 1);  // past the end: a repeat, masked
                kv.template load_k<R>(hk, t, lane, kx[u]);
                kv.template load_v<R>(hk, t, lane, vx[u]);
            }
#pragma unroll
            for (int u = 0; u < rows_per_warp; ++u) {
#pragma unroll
                for (int r = 0; r < R; ++r) {
                    ks[warp * rows_per_warp + u][lane + k_warp * r] = kx[u][r];
                    vs[warp * rows_per_warp + u][lane + k_warp * r] = vx[u][r];
                }
            }
        }
        __syncthreads();
        // Scores of row t0 + lane for this warp's queries.
        float s[k_queries_per_warp];
#pragma unroll
        for (int i = 0; i < k_queries_per_warp; ++i) s[i] = 0.0f;
        for (int c = 0; c < p.hd; ++c) {
            const float kc = ks[lane][c];
#pragma unroll
            for (int i = 0; i < k_queries_per_warp; ++i) s[i] += qs[warp * k_queries_per_warp + i][c] * kc;
        }
        const int t = t0 + lane;
#pragma unroll
        for (int i = 0; i < k_queries_per_warp; ++i) {
            const int qi = warp * k_queries_per_warp + i;
            const int pos = n_past + j0 + qi;  // this query sees rows 0 .. pos
            const bool live = qi < jn && t <= pos;
            const float sc = live ? s[i] * p.scale : -CUDART_INF_F;
            const float cmax = warp_max(sc);
            if (cmax == -CUDART_INF_F) {  // nothing visible in this chunk (or no such query): warp-uniform
                ps[warp][i][lane] = 0.0f;
                continue;
            }
            const float m_new = fmaxf(m[i], cmax);
            const float corr = expf(m[i] - m_new);
            const float w = expf(sc - m_new);
            l[i] = l[i] * corr + warp_sum(w);
#pragma unroll
            for (int r = 0; r < R; ++r) acc[i][r] *= corr;
            m[i] = m_new;
            ps[warp][i][lane] = w;
        }
        __syncwarp();
        for (int u = 0; u < k_tile_rows; ++u) {
            float v[R];
#pragma unroll
            for (int r = 0; r < R; ++r) v[r] = vs[u][lane + k_warp * r];
#pragma unroll
            for (int i = 0; i < k_queries_per_warp; ++i) {
                const float w = ps[warp][i][u];
#pragma unroll
                for (int r = 0; r < R; ++r) acc[i][r] += w * v[r];
            }
        }
        __syncwarp();
    }
#pragma unroll
    for (int i = 0; i < k_queries_per_warp; ++i) {
        const int qi = warp * k_queries_per_warp + i;
        if (qi >= jn) break;
        float* out = reinterpret_cast<float*>(p.dst + size_t((j0 + qi) * p.n_head + h) * p.d_stride);
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const int c = lane + k_warp * r;
            if (c < p.hd) out[c] = acc[i][r] / l[i];
        }
    }
}

}  // namespace tfu::cuda
