// The decode matrix-vector kernel for Q4_0, Q8_0, Q4_K and Q6_K weights (the default for them; mul_mat_vec.cu hands
// them over):
// dst (m, NC) f32 = W (k, m) . X (k, NC) f32 for NC <= 4, with x quantized to int8 per block of 32 (as the CPU
// backend's q8_0 activations) and each block's dot product formed by __dp4a.
//
// Why (ncu on the H100, Llama-3-8B shape, mul_mat_vec.cu's float kernels): the gate/up launch issued an
// instruction in 70% of the scheduler cycles at 1.6 TB/s (about 3.5 instructions per weight: a byte permute, a
// subtraction and an FMA each, plus the loads), and the smaller launches, with one row group per block, never
// overlapped loading with computing (0.9 TB/s). Here a weight costs about one instruction, and every warp keeps
// its next chunks in flight:
//  - A block (8 warps) first quantizes x into shared memory, once (a thread per 4 values): per block of 32,
//    d = max|x| / 127, codes round(x / d), and d sum(codes), for the types whose weights carry an offset
//    (Q4_0: w = d_w (q - 8)) or a min (Q4_K). With a fused RMS_NORM (mmv_args::norm_w) x is normalised first.
//  - Each warp then owns whole rows (with GLU the same row of gate and up), walking them in chunks of 2048
//    weights, 64 blocks of 32 (lane l: blocks 2l and 2l + 1; i8_blocks says how each type lays them out). A chunk
//    is copied into the warp's ring of k_stages stages with 16-byte cp.async while the chunks before it are
//    computed: nothing waits for a block-wide barrier, and the weights start streaming before x is ready (before
//    pdl_wait, too).
//  - x sits in shared memory in the lanes' order (per chunk: 4 x 32 uint4, lane l's 64 codes in its 4 slots, then
//    its two blocks' (d, d sum) as one float4), so that each load is 32 consecutive 16-byte words.
//  - A row's partial sums meet in warp shuffles; lane 0 stores (with GLU also silu(gate) * up; with a fused ADD
//    also r + the result). f32 accumulation of the blocks' exact integer dot products.
#include <algorithm>
#include <cstdlib>

#include "cuda_common.cuh"
#include "mul_mat_q.cuh"
#include "mul_mat_vec_args.h"

namespace tfu::cuda {

namespace {

constexpr int k_i8_warps = 8;
constexpr int k_i8_threads = k_i8_warps * k_warp;
constexpr int k_chunk_blocks = 2 * k_warp;  // weight blocks of 32 in a chunk: 2 per lane
// Chunks a warp has in its ring (2 in flight while one is computed) and resident blocks per SM at most: on the
// H100, 1B / 8B Q4_0 tg (one call, stages x cap): 3 x 2 gave 1201 / 368 t/s, the best 8B and within 1% of the best
// 1B (2 x 3: 1214 / 354); 2 stages 1156-1214 / 339-359, 4 stages 1105-1129 / 347-361; no cap 1183 / 350 (fewer
// blocks quantize x fewer times). TFU_CUDA_MMV_I8_BLOCKS=N sets the cap, for measuring.
constexpr int k_stages = 3;
constexpr int k_blocks_per_sm = 2;
constexpr int k_x_loads = 4;                // float4 loads of x a thread has in flight while quantizing
constexpr size_t k_x_chunk_bytes = 4 * k_warp * 16 + k_warp * 16;  // codes + scales of one chunk of x, one column

// A lane's share of a chunk: the weights of its two blocks of 32 (elements 64 lane .. 64 lane + 63 of the chunk),
// read from the chunk's stage st (16-byte aligned, chunk_bytes long), against their 2 x 32 x codes (x[0..7]: block
// A's elements 0..31, x[8..15]: block B's) with xs = (d_A, d_A sum(codes_A), d_B, d_B sum(codes_B)); returns the
// lane's part of the dot product. A chunk is 64 blocks of 32 (2048 weights) of every type: 8 super-blocks of the
// K-quants, 4 lanes per super-block.
template <dtype T>
struct i8_blocks;

// The lane's N consecutive words of a stage whose lanes take N words each (Q4_0: 9, Q8_0: 17: odd strides, so the
// lanes' loads hit different banks).
template <int N>
__device__ __forceinline__ void lane_words(const uint8_t* st, int lane, uint32_t (&w)[N]) {
    const uint32_t* src = reinterpret_cast<const uint32_t*>(st) + N * lane;
#pragma unroll
    for (int q = 0; q < N; ++q) w[q] = src[q];
}

// Q4_0: 18-byte blocks {f16 d, 16 bytes of nibbles}: element i < 16 is the low nibble of byte i, element 16 + i
// its high nibble; w = d (q - 8). The lane's 36 bytes are 9 words at 36 lane: block A's d = bytes 0-1, nibbles
// bytes 2..17 (unaligned: each word from two by a byte permute); block B's d = bytes 18-19, nibbles 20..35 = words
// 5..8 (odd word strides across lanes: no bank conflicts).
template <>
struct i8_blocks<dtype::Q4_0> {
    static constexpr int chunk_bytes = 64 * 18;
    __device__ static float dot(const uint8_t* st, int lane, const uint32_t (&x)[16], float4 xs) {
        uint32_t w[9];
        lane_words(st, lane, w);
        int sa = 0, sb = 0;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const uint32_t qa = __byte_perm(w[j], w[j + 1], 0x5432), qb = w[5 + j];
            sa = __dp4a(int(qa & 0x0f0f0f0fu), int(x[j]), sa);
            sa = __dp4a(int((qa >> 4) & 0x0f0f0f0fu), int(x[4 + j]), sa);
            sb = __dp4a(int(qb & 0x0f0f0f0fu), int(x[8 + j]), sb);
            sb = __dp4a(int((qb >> 4) & 0x0f0f0f0fu), int(x[12 + j]), sb);
        }
        const float da = h2f(uint16_t(w[0] & 0xffffu)), db = h2f(uint16_t(w[4] >> 16));
        return da * fmaf(xs.x, float(sa), -8.0f * xs.y) + db * fmaf(xs.z, float(sb), -8.0f * xs.w);
    }
};

// Q8_0: 34-byte blocks {f16 d, 32 int8}: w = d q. The lane's 68 bytes are 17 words at 68 lane: block A's d = bytes
// 0-1, codes bytes 2..33 (unaligned); block B's d = bytes 34-35, codes bytes 36..67 = words 9..16.
template <>
struct i8_blocks<dtype::Q8_0> {
    static constexpr int chunk_bytes = 64 * 34;
    __device__ static float dot(const uint8_t* st, int lane, const uint32_t (&x)[16], float4 xs) {
        uint32_t w[17];
        lane_words(st, lane, w);
        int sa = 0, sb = 0;
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            sa = __dp4a(int(__byte_perm(w[j], w[j + 1], 0x5432)), int(x[j]), sa);
            sb = __dp4a(int(w[9 + j]), int(x[8 + j]), sb);
        }
        const float da = h2f(uint16_t(w[0] & 0xffffu)), db = h2f(uint16_t(w[8] >> 16));
        return da * xs.x * float(sa) + db * xs.z * float(sb);
    }
};

// Q4_K: 144-byte super-blocks {f16 d, f16 dmin, 12 bytes of 6-bit scales and mins (scale_min_k4), 128 bytes of
// nibbles}: sub-block j of 32 has w = d sc_j q - dmin m_j; nibble group g (bytes 16 + 32 g ..) holds sub-block 2 g
// in its low nibbles and 2 g + 1 in its high ones (element i of each at byte i). Lane l takes super-block l / 4,
// group g = l % 4: its blocks A, B are sub-blocks 2 g, 2 g + 1 (8 words of nibbles, 16-byte aligned: 144 = 9 x 16).
template <>
struct i8_blocks<dtype::Q4_K> {
    static constexpr int chunk_bytes = 8 * 144;
    __device__ static float dot(const uint8_t* st, int lane, const uint32_t (&x)[16], float4 xs) {
        const uint8_t* b = st + 144 * (lane >> 2);
        const int g = lane & 3;
        const uint4* qs = reinterpret_cast<const uint4*>(b + 16 + 32 * g);
        const uint4 q0 = qs[0], q1 = qs[1];
        const uint32_t w[8] = {q0.x, q0.y, q0.z, q0.w, q1.x, q1.y, q1.z, q1.w};
        int sa = 0, sb = 0;
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            sa = __dp4a(int(w[j] & 0x0f0f0f0fu), int(x[j]), sa);
            sb = __dp4a(int((w[j] >> 4) & 0x0f0f0f0fu), int(x[8 + j]), sb);
        }
        const uint32_t dd = *reinterpret_cast<const uint32_t*>(b);
        const float d = h2f(uint16_t(dd & 0xffffu)), dmin = h2f(uint16_t(dd >> 16));
        int sca, ma, scb, mb;
        scale_min_k4(b + 4, 2 * g, &sca, &ma);
        scale_min_k4(b + 4, 2 * g + 1, &scb, &mb);
        return d * (float(sca) * xs.x * float(sa) + float(scb) * xs.z * float(sb)) -
               dmin * (float(ma) * xs.y + float(mb) * xs.w);
    }
};

// Q6_K: 210-byte super-blocks {ql[128], qh[64], int8 scales[16], f16 d}: element e of half h (128 each) is
// q = 4 bits of ql[64 h + e % 64] (low nibble for e < 64) | 2 bits of qh[32 h + e % 32] (bits 2 (e / 32) ..) << 4,
// w = d scales[8 h + e / 16] (q - 32). Lane l takes super-block l / 4, quarter Q = l % 4 (half h = Q / 2, elements
// 64 (Q % 2) .. of it): block A from ql[64 h ..] and qh bits 4 (Q % 2), block B from ql[64 h + 32 ..] and qh bits
// 4 (Q % 2) + 2; codes q - 32 as signed bytes, each 16 with its own scale. Super-blocks start 2-byte aligned
// (210 = 2 mod 4): the lane reads aligned words and shifts them by a byte permute whose selector is its offset.
template <>
struct i8_blocks<dtype::Q6_K> {
    static constexpr int chunk_bytes = 8 * 210;
    __device__ static float dot(const uint8_t* st, int lane, const uint32_t (&x)[16], float4 xs) {
        const int sb = lane >> 2, Q = lane & 3, h = Q >> 1, odd = Q & 1;
        const uint8_t* b = st + 210 * sb;
        const unsigned sel = (210 * sb) & 2 ? 0x5432u : 0x3210u;  // bytes 2.. of (lo, hi), or lo itself
        const uint32_t* ql = reinterpret_cast<const uint32_t*>(st + ((210 * sb + 64 * h) & ~3));
        const uint32_t* qh = reinterpret_cast<const uint32_t*>(st + ((210 * sb + 128 + 32 * h) & ~3));
        const uint32_t* scw = reinterpret_cast<const uint32_t*>(st + ((210 * sb + 192 + 8 * h + 4 * odd) & ~3));
        const int ns = 4 * odd;  // nibble shift; qh shift 4 odd (A) and 4 odd + 2 (B)
        int s[4] = {0, 0, 0, 0};  // A's elements 0-15, 16-31, B's 0-15, 16-31
        uint32_t hprev = qh[0], lprev = ql[0], bprev = ql[8];
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const uint32_t hn = qh[j + 1], ln = ql[j + 1], bn = ql[9 + j];
            const uint32_t hw = __byte_perm(hprev, hn, sel), la = __byte_perm(lprev, ln, sel), lb = __byte_perm(bprev, bn, sel);
            hprev = hn, lprev = ln, bprev = bn;
            const uint32_t va = ((la >> ns) & 0x0f0f0f0fu) | ((hw >> ns) & 0x03030303u) << 4;
            const uint32_t vb = ((lb >> ns) & 0x0f0f0f0fu) | ((hw >> (ns + 2)) & 0x03030303u) << 4;
            s[j >> 2] = __dp4a(int(__vsub4(va, 0x20202020u)), int(x[j]), s[j >> 2]);
            s[2 + (j >> 2)] = __dp4a(int(__vsub4(vb, 0x20202020u)), int(x[8 + j]), s[2 + (j >> 2)]);
        }
        const uint32_t sc4 = __byte_perm(scw[0], scw[1], sel);  // scales[8 h + 4 odd + 0 .. 3]
        const int sc0 = int(int8_t(sc4 & 0xffu)), sc1 = int(int8_t((sc4 >> 8) & 0xffu));
        const int sc2 = int(int8_t((sc4 >> 16) & 0xffu)), sc3 = int(int8_t(sc4 >> 24));
        const float d = h2f(*reinterpret_cast<const uint16_t*>(b + 208));
        return d * (xs.x * float(sc0 * s[0] + sc1 * s[1]) + xs.z * float(sc2 * s[2] + sc3 * s[3]));
    }
};

// Grid: up to (resident blocks) of k_i8_threads; warp gw of G = gridDim.x * k_i8_warps owns row groups gw, gw + G,
// ... of n_groups (plain: the rows of mat[0], then mat[1], mat[2], numbered through first_block; GLU: row i of gate
// and of up). Dynamic shared memory: NC * n_chunks * k_x_chunk_bytes of x, then k_i8_warps * k_stages * RG chunks.
template <dtype T, bool GLU, int NC>
__global__ void __launch_bounds__(k_i8_threads) mmv_i8_kernel(const mmv_args a, int64_t n_groups, int n_chunks) {
    using Q = i8_blocks<T>;
    constexpr int RG = GLU ? 2 : 1;
    constexpr int chunk_bytes = Q::chunk_bytes;  // a multiple of 16
    pdl_trigger();
    extern __shared__ uint4 smem[];
    const int lane = threadIdx.x % k_warp, warp = threadIdx.x / k_warp;
    uint4* const xcodes = smem;                                                  // [NC][n_chunks][4][32]
    float4* const xscale = reinterpret_cast<float4*>(smem + NC * n_chunks * 4 * k_warp);  // [NC][n_chunks][32]
    uint8_t* const ring =
        reinterpret_cast<uint8_t*>(xscale + NC * n_chunks * k_warp) + size_t(warp) * k_stages * RG * chunk_bytes;
    const int64_t nb = a.n_units / 4;  // weight blocks per row
    const int64_t G = int64_t(gridDim.x) * k_i8_warps, gw = int64_t(blockIdx.x) * k_i8_warps + warp;
    const int64_t n_tasks = (gw < n_groups ? (n_groups - 1 - gw) / G + 1 : 0) * n_chunks;

    // Row group g's matrix s and row i.
    auto locate = [&](int64_t g, int& s, int64_t& i) {
        s = 0;
        if constexpr (!GLU) s = g >= a.first_block[1] ? (g >= a.first_block[2] ? 2 : 1) : 0;
        i = g - a.first_block[s];
    };
    // The warp's tasks, in order: chunks 0 .. n_chunks - 1 of its groups gw, gw + G, ...; task t goes through ring
    // stage t % k_stages. Counters instead of divisions (64-bit division is a long subroutine on the GPU).
    int64_t iss_t = 0, iss_g = gw;
    int iss_c = 0, iss_stage = 0;
    auto issue_next = [&] {  // copies the next task's chunk (if any) as one commit group
        if (iss_t < n_tasks) {
            int s;
            int64_t i;
            locate(iss_g, s, i);
            const int64_t left = a.row_bytes - int64_t(iss_c) * chunk_bytes;
            const int vecs = int((left < chunk_bytes ? left : chunk_bytes) / 16);
            uint8_t* st = ring + iss_stage * RG * chunk_bytes;
#pragma unroll
            for (int r = 0; r < RG; ++r) {
                const mmv_matrix& mt = a.mat[GLU ? r : s];
                const uint4* src =
                    reinterpret_cast<const uint4*>(mt.w + size_t(i) * mt.w_stride + size_t(iss_c) * chunk_bytes);
                for (int v = lane; v < vecs; v += k_warp) cp_async16(st + r * chunk_bytes + 16 * v, src + v);
            }
        }
        cp_async_commit();
        ++iss_t;
        if (++iss_c == n_chunks) iss_c = 0, iss_g += G;
        if (++iss_stage == k_stages) iss_stage = 0;
    };
#pragma unroll
    for (int t = 0; t < k_stages - 1; ++t) issue_next();

    pdl_wait();  // x: only once the kernel before has finished (cuda_common.cuh)
    // With norm_w, x's columns are first normalised (rms_norm.cu's arithmetic and reduction order: thread t sums
    // elements t, t + 256, ... in double, block_sum<256>, so the values equal its output bit for bit).
    const int64_t k = a.n_units * 8;
    double scale[NC];
#pragma unroll
    for (int j = 0; j < NC; ++j) {
        scale[j] = 1.0;
        if (a.norm_w) {
            const float* xj = reinterpret_cast<const float*>(a.x + size_t(j) * a.x_stride);
            double ss = 0;
            for (int64_t i = threadIdx.x; i < k; i += k_i8_threads) ss += double(xj[i]) * xj[i];
            const double total = block_sum<k_i8_threads>(ss);
            scale[j] = 1.0 / sqrt(total / double(k) + double(a.norm_eps));
            __syncthreads();  // block_sum's slots are reused by the next column
        }
    }
    // x -> codes and scales: a thread per 4 values (8 threads per block of 32: max and sum by 3 shuffles each),
    // its k_x_loads float4 loads issued together (a chain of dependent L2 round trips per warp measured 15 us for
    // k = 14336 in the first version). k is a multiple of 256, so a warp's lanes are all in range or all out.
    const int k4 = int(k / 4);  // float4s per column
    const bool store_norm = a.norm_w && a.norm_dst && blockIdx.x == 0;
    for (int j = 0; j < NC; ++j) {
        const float4* xj = reinterpret_cast<const float4*>(a.x + size_t(j) * a.x_stride);
        for (int base = threadIdx.x; base < k4; base += k_i8_threads * k_x_loads) {
            float4 f[k_x_loads];
#pragma unroll
            for (int u = 0; u < k_x_loads; ++u)
                if (base + u * k_i8_threads < k4) f[u] = xj[base + u * k_i8_threads];
            if (a.norm_w) {
                const float4* g4 = reinterpret_cast<const float4*>(a.norm_w);
                float4* out = reinterpret_cast<float4*>(a.norm_dst + size_t(j) * a.norm_dst_stride);
#pragma unroll
                for (int u = 0; u < k_x_loads; ++u) {
                    const int e4 = base + u * k_i8_threads;
                    if (e4 >= k4) break;
                    const float4 g = g4[e4];
                    const double sc = scale[j];
                    f[u] = make_float4(float(f[u].x * sc * g.x), float(f[u].y * sc * g.y), float(f[u].z * sc * g.z),
                                       float(f[u].w * sc * g.w));
                    if (store_norm) out[e4] = f[u];
                }
            }
#pragma unroll
            for (int u = 0; u < k_x_loads; ++u) {
                const int e4 = base + u * k_i8_threads;
                if (e4 >= k4) break;
                float amax = fmaxf(fmaxf(fabsf(f[u].x), fabsf(f[u].y)), fmaxf(fabsf(f[u].z), fabsf(f[u].w)));
#pragma unroll
                for (int o = 1; o < 8; o <<= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
                const float d = amax / 127.0f, id = amax > 0.0f ? 127.0f / amax : 0.0f;
                const int q0 = __float2int_rn(f[u].x * id), q1 = __float2int_rn(f[u].y * id);
                const int q2 = __float2int_rn(f[u].z * id), q3 = __float2int_rn(f[u].w * id);
                int sum = q0 + q1 + q2 + q3;
#pragma unroll
                for (int o = 1; o < 8; o <<= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
                const int gb = e4 / 8, t8 = e4 % 8;  // block of 32, and which 4 of it
                const int c = gb / k_chunk_blocks, slot = (gb % k_chunk_blocks) / 2, half = gb % 2;
                const int byte = 32 * half + 4 * t8, cj = j * n_chunks + c;
                reinterpret_cast<uint32_t*>(xcodes + (cj * 4 + byte / 16) * k_warp + slot)[(byte % 16) / 4] =
                    (uint32_t(q0) & 0xffu) | (uint32_t(q1) & 0xffu) << 8 | (uint32_t(q2) & 0xffu) << 16 | uint32_t(q3) << 24;
                if (t8 == 0) {
                    float* sc = reinterpret_cast<float*>(xscale + cj * k_warp + slot) + 2 * half;
                    sc[0] = d;
                    sc[1] = d * float(sum);
                }
            }
        }
    }
    __syncthreads();

    float acc[RG][NC];
#pragma unroll
    for (int r = 0; r < RG; ++r)
#pragma unroll
        for (int j = 0; j < NC; ++j) acc[r][j] = 0.0f;
    int64_t g = gw;
    int c = 0, stage = 0;
    for (int64_t t = 0; t < n_tasks; ++t) {
        issue_next();
        cp_async_wait<k_stages - 1>();  // task t's copies have landed (the newer ones may still fly)
        __syncwarp();
        if (2 * lane < nb - int64_t(c) * k_chunk_blocks) {  // lanes past a row's last blocks sit the last chunk out
            const uint8_t* st = ring + stage * RG * chunk_bytes;
#pragma unroll
            for (int j = 0; j < NC; ++j) {
                const int cj = j * n_chunks + c;
                uint32_t x[16];
#pragma unroll
                for (int qq = 0; qq < 4; ++qq) {
                    const uint4 v = xcodes[(cj * 4 + qq) * k_warp + lane];
                    x[4 * qq] = v.x, x[4 * qq + 1] = v.y, x[4 * qq + 2] = v.z, x[4 * qq + 3] = v.w;
                }
                const float4 xs = xscale[cj * k_warp + lane];
#pragma unroll
                for (int r = 0; r < RG; ++r) acc[r][j] += Q::dot(st + r * chunk_bytes, lane, x, xs);
            }
        }
        __syncwarp();  // every lane is done with this stage before a later issue refills it
        if (c == n_chunks - 1) {
            int s;
            int64_t i;
            locate(g, s, i);
            float v[RG][NC];
#pragma unroll
            for (int r = 0; r < RG; ++r)
#pragma unroll
                for (int j = 0; j < NC; ++j) v[r][j] = warp_sum(acc[r][j]), acc[r][j] = 0.0f;
            if (lane == 0) {
#pragma unroll
                for (int r = 0; r < RG; ++r) {
                    const mmv_matrix& mt = a.mat[GLU ? r : s];
#pragma unroll
                    for (int j = 0; j < NC; ++j) reinterpret_cast<float*>(mt.d + size_t(j) * mt.d_stride)[i] = v[r][j];
                }
                if (a.add_y) {  // the ADD after the projection (elementwise.cu's one f32 add)
#pragma unroll
                    for (int j = 0; j < NC; ++j)
                        reinterpret_cast<float*>(a.add_y + size_t(j) * a.add_y_stride)[i] =
                            reinterpret_cast<const float*>(a.add_r + size_t(j) * a.add_r_stride)[i] + v[0][j];
                }
                if constexpr (GLU) {
#pragma unroll
                    for (int j = 0; j < NC; ++j)
                        reinterpret_cast<float*>(a.glu_d + size_t(j) * a.glu_stride)[i] = silu_mul(v[0][j], v[RG - 1][j]);
                }
            }
        }
        if (++c == n_chunks) c = 0, g += G;
        if (++stage == k_stages) stage = 0;
    }
}

// Resident blocks per SM of `kernel` with `smem` bytes; the caller keeps the last answer (a decode step asks the
// same few sizes every time), one cache per kernel.
template <typename K>
int blocks_per_sm(K kernel, size_t smem, size_t& cached_smem, int& cached) {
    if (smem != cached_smem) {
        int n = 0;
        if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, k_i8_threads, smem) != cudaSuccess) {
            cudaGetLastError();
            n = 0;
        }
        cached_smem = smem, cached = n;
    }
    return cached;
}

int env_int(const char* name, int def) {
    const char* e = std::getenv(name);
    return e && *e ? std::atoi(e) : def;
}

template <dtype T, bool GLU, int NC>
bool launch(context& ctx, const mmv_args& a, int64_t n_groups, int n_chunks) {
    constexpr int RG = GLU ? 2 : 1;
    const size_t smem = size_t(NC) * n_chunks * k_x_chunk_bytes +
                        size_t(k_i8_warps) * k_stages * RG * i8_blocks<T>::chunk_bytes;
    auto kernel = mmv_i8_kernel<T, GLU, NC>;
    // Above 48 KB a launch must opt in (per kernel; the H100 allows 227 KB per block).
    if (smem > 48 * 1024 && cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    static const int cap = env_int("TFU_CUDA_MMV_I8_BLOCKS", k_blocks_per_sm);
    thread_local size_t cached_smem = 0;  // per instantiation: kernels differ in registers, hence in occupancy
    thread_local int cached = 0;
    int per_sm = blocks_per_sm(kernel, smem, cached_smem, cached);
    if (per_sm < 1) return false;
    if (cap > 0) per_sm = std::min(per_sm, cap);
    const int64_t grid = std::min<int64_t>(ceil_div(n_groups, k_i8_warps), int64_t(ctx.sm_count) * per_sm);
    launch_mmv(ctx, kernel, unsigned(grid), k_i8_threads, smem, a, n_groups, n_chunks);
    check_launch("mmv_i8_kernel");
    return true;
}

template <dtype T, bool GLU>
bool launch_nc(context& ctx, const mmv_args& a, int64_t n_groups, int n_chunks, int nc) {
    switch (nc) {
        case 1: return launch<T, GLU, 1>(ctx, a, n_groups, n_chunks);
        case 2: return launch<T, GLU, 2>(ctx, a, n_groups, n_chunks);
        case 3: return launch<T, GLU, 3>(ctx, a, n_groups, n_chunks);
        case 4: return launch<T, GLU, 4>(ctx, a, n_groups, n_chunks);
        default: return false;
    }
}

}  // namespace

bool mul_mat_vec_i8(context& ctx, const mmv_args& in, int n_mat, bool glu, dtype type, int nc) {
    if (!mmv_i8_type(type) || nc < 1 || nc > 4 || in.row_bytes % 16 != 0) return false;
    mmv_args a = in;
    int64_t n_groups = 0;  // plain: rows of every matrix, numbered in order; GLU: rows of gate (= of up)
    for (int s = 0; s < (glu ? 1 : n_mat); ++s) {
        a.first_block[s] = n_groups;
        n_groups += a.mat[s].m;
    }
    for (int s = glu ? 1 : n_mat; s < 4; ++s) a.first_block[s] = n_groups;
    const int n_chunks = int(ceil_div(a.n_units / 4, k_chunk_blocks));
    switch (type) {
        case dtype::Q4_0: return glu ? launch_nc<dtype::Q4_0, true>(ctx, a, n_groups, n_chunks, nc)
                                     : launch_nc<dtype::Q4_0, false>(ctx, a, n_groups, n_chunks, nc);
        case dtype::Q8_0: return glu ? launch_nc<dtype::Q8_0, true>(ctx, a, n_groups, n_chunks, nc)
                                     : launch_nc<dtype::Q8_0, false>(ctx, a, n_groups, n_chunks, nc);
        case dtype::Q4_K: return glu ? launch_nc<dtype::Q4_K, true>(ctx, a, n_groups, n_chunks, nc)
                                     : launch_nc<dtype::Q4_K, false>(ctx, a, n_groups, n_chunks, nc);
        default: return glu ? launch_nc<dtype::Q6_K, true>(ctx, a, n_groups, n_chunks, nc)
                            : launch_nc<dtype::Q6_K, false>(ctx, a, n_groups, n_chunks, nc);
    }
}

}  // namespace tfu::cuda
