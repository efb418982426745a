// MUL_MAT for decode and small batches (n <= 8 columns), the fast path: dst (m, n) f32 = W (k, m) . X (k, n) f32,
// for the weight types a decode step spends its time in (F32, F16, BF16, Q4_0, Q8_0, Q4_K, Q6_K). The other types
// and unaligned tensors take mul_mat.cu's generic kernel.
//
// Why a second kernel: the generic one (one warp per row, w_elem per element) issues a byte load per element and
// two float4 loads of x per 8 weights, and on an H100 it moved a 1B Q4_0 model's weights at ~370 GB/s (ncu,
// scripts/gpu-profile.sh), an eighth of the card's bandwidth. Here:
//  - A "unit" is 8 weights of one row that come from a few wide loads: two u16 pairs (Q4_0: 4 bytes of nibbles =
//    elements 4s..4s+3 and 16+4s..16+4s+3 of a block), four u16 (Q8_0: 8 bytes), one u32 (Q4_K), 2 + 2 u16
//    (Q6_K: ql and qh), one uint4 (F16/BF16), two float4 (F32). The 8 weights pair with two float4 of x at
//    element offsets e0 and e1 (each a multiple of 4; e1 = e0 + 4 for the plain types).
//  - Consecutive threads take consecutive units, so a warp's loads of a block are contiguous; the 4 warps of a
//    block split the units of its R rows (split-K inside the block, so small matrices such as the 512-row K/V
//    projections still fill the GPU), and x is loaded once per unit for all R rows (R = 4 for one column).
//  - Integers become floats without I2F (a quarter-rate instruction): a code c in 0..255 put into the mantissa of
//    2^23 (0x4B0000cc, one byte permute) is 2^23 + c, and one subtraction leaves c minus the type's offset.
//  - Quantized rows go through shared memory (16-byte copies, see mmv_fast_kernel), by default pipelined: resident
//    blocks loop over row groups with the next group's copy in flight (mmv_pipe_kernel).
//  - Partial sums: warp shuffles, then the 4 warps through shared memory. f32 accumulation throughout, the same
//    values as the generic kernel up to summation order.
#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "backend/fused_residual.h"
#include "cuda_ops.h"
#include "mul_mat_vec.h"
#include "mul_mat_vec_args.h"
#include "mul_mat_vec_units.cuh"

namespace tfu::cuda {

namespace {

constexpr int k_warps = 4;
constexpr int k_threads = k_warps * k_warp;

// One block: RR rows (R of one matrix; with GLU R of the gate then the same R of up), NC columns of x. Rows past m
// repeat row m - 1 and are not stored.
// STAGED: the rows (row_bytes each, a multiple of 16, 16-byte aligned) are first copied whole into shared memory
// with 16-byte loads, so that global memory sees only full, coalesced vectors whatever the block layout (18- and
// 34-byte blocks are only 2-byte aligned: direct unit loads of 2 bytes measured 1.4x slower in total), and the
// units then read the rows from shared memory.
// Where block (or row group) g of a launch starts: matrix s, first row i0, and its RR row addresses (rows past m
// repeat row m - 1 and are not stored).
template <int R, bool GLU>
__device__ __forceinline__ void mmv_group(const mmv_args& a, int64_t g, int& s, int64_t& i0,
                                          const uint8_t* (&rows)[GLU ? 2 * R : R]) {
    constexpr int RR = GLU ? 2 * R : R;
    s = 0;
    if constexpr (!GLU) {
        s = g >= a.first_block[1] ? (g >= a.first_block[2] ? 2 : 1) : 0;
        g -= a.first_block[s];
    }
    const int64_t m = a.mat[s].m;
    i0 = g * R;
#pragma unroll
    for (int r = 0; r < RR; ++r) {
        const mmv_matrix& mt = a.mat[GLU ? r / R : s];
        const int64_t i = i0 + r % R;
        rows[r] = mt.w + size_t(i < m ? i : m - 1) * mt.w_stride;
    }
}

// The dot products of one row group (rows in shared or global memory) with x, reduced over the block and stored
// (with GLU also silu(gate) * up). Every thread of the block calls it; it synchronises the block.
template <dtype T, int R, int NC, bool GLU>
__device__ __forceinline__ void mmv_rows(const mmv_args& a, int s, int64_t i0,
                                         const uint8_t* const (&rows)[GLU ? 2 * R : R]) {
    constexpr int RR = GLU ? 2 * R : R;
    const int64_t m = a.mat[s].m;
    float acc[RR][NC];
#pragma unroll
    for (int r = 0; r < RR; ++r)
#pragma unroll
        for (int j = 0; j < NC; ++j) acc[r][j] = 0.0f;
#pragma unroll 2
    for (int64_t u = threadIdx.x; u < a.n_units; u += k_threads) {
        int64_t e0, e1;
        unit<T>::x_at(u, e0, e1);
        float4 xa[NC], xb[NC];
#pragma unroll
        for (int j = 0; j < NC; ++j) {
            const float* xj = reinterpret_cast<const float*>(a.x + size_t(j) * a.x_stride);
            xa[j] = *reinterpret_cast<const float4*>(xj + e0);
            xb[j] = *reinterpret_cast<const float4*>(xj + e1);
        }
        float sx0[NC], sx1[NC];  // the groups' sums of x, for has_min
        if constexpr (unit<T>::has_min) {
#pragma unroll
            for (int j = 0; j < NC; ++j) {
                sx0[j] = (xa[j].x + xa[j].y) + (xa[j].z + xa[j].w);
                sx1[j] = (xb[j].x + xb[j].y) + (xb[j].z + xb[j].w);
            }
        }
#pragma unroll
        for (int r = 0; r < RR; ++r) {
            float c[8], sc[4];
            unit<T>::w(rows[r], u, c, sc);
#pragma unroll
            for (int j = 0; j < NC; ++j) {
                float p0 = c[0] * xa[j].x;
                p0 = fmaf(c[1], xa[j].y, p0), p0 = fmaf(c[2], xa[j].z, p0), p0 = fmaf(c[3], xa[j].w, p0);
                float p1 = c[4] * xb[j].x;
                p1 = fmaf(c[5], xb[j].y, p1), p1 = fmaf(c[6], xb[j].z, p1), p1 = fmaf(c[7], xb[j].w, p1);
                float v = acc[r][j];
                if constexpr (unit<T>::scaled) {
                    v = fmaf(sc[0], p0, v), v = fmaf(sc[1], p1, v);
                    if constexpr (unit<T>::has_min) v = fmaf(-sc[2], sx0[j], v), v = fmaf(-sc[3], sx1[j], v);
                } else {
                    v += p0 + p1;
                }
                acc[r][j] = v;
            }
        }
    }
    __shared__ float part[k_warps][RR * NC];
    const int lane = threadIdx.x % k_warp, warp = threadIdx.x / k_warp;
#pragma unroll
    for (int r = 0; r < RR; ++r)
#pragma unroll
        for (int j = 0; j < NC; ++j) {
            const float v = warp_sum(acc[r][j]);
            if (lane == 0) part[warp][r * NC + j] = v;
        }
    __syncthreads();
    if (threadIdx.x < RR * NC) {
        const int r = threadIdx.x / NC, j = threadIdx.x % NC;
        const int64_t i = i0 + r % R;
        if (i < m) {
            float v = 0.0f;
#pragma unroll
            for (int q = 0; q < k_warps; ++q) v += part[q][threadIdx.x];
            const mmv_matrix& mt = a.mat[GLU ? r / R : s];
            reinterpret_cast<float*>(mt.d + size_t(j) * mt.d_stride)[i] = v;
            if constexpr (!GLU) {
                if (a.add_y)  // the residual ADD after the projection (add_fused; elementwise.cu's one f32 add)
                    reinterpret_cast<float*>(a.add_y + size_t(j) * a.add_y_stride)[i] =
                        reinterpret_cast<const float*>(a.add_r + size_t(j) * a.add_r_stride)[i] + v;
            }
            if constexpr (GLU) {
                part[0][threadIdx.x] = v;  // the block's results, for the gate x up pass below
            }
        }
    }
    if constexpr (GLU) {
        __syncthreads();
        if (threadIdx.x < R * NC) {
            const int r = threadIdx.x / NC, j = threadIdx.x % NC;
            const int64_t i = i0 + r;
            if (i < m)
                reinterpret_cast<float*>(a.glu_d + size_t(j) * a.glu_stride)[i] =
                    silu_mul(part[0][threadIdx.x], part[0][R * NC + threadIdx.x]);
        }
    }
}

template <dtype T, int R, int NC, bool STAGED, bool GLU>
__global__ void __launch_bounds__(k_threads) mmv_fast_kernel(const mmv_args a) {
    constexpr int RR = GLU ? 2 * R : R;
    pdl_trigger();  // the next projection (down after gate/up) may start staging its weights
    int s = 0;
    int64_t i0 = 0;
    const uint8_t* rows[RR];
    mmv_group<R, GLU>(a, blockIdx.x, s, i0, rows);
    extern __shared__ uint4 stage[];
    if constexpr (STAGED) {
        const int64_t vecs = a.row_bytes / 16;
#pragma unroll
        for (int r = 0; r < RR; ++r) {
            const uint4* src = reinterpret_cast<const uint4*>(rows[r]);
#pragma unroll 4
            for (int64_t c = threadIdx.x; c < vecs; c += k_threads) stage[r * vecs + c] = src[c];
        }
        pdl_wait();  // x and the results: only once the kernel before has finished (cuda_common.cuh)
        __syncthreads();
#pragma unroll
        for (int r = 0; r < RR; ++r) rows[r] = reinterpret_cast<const uint8_t*>(stage + r * vecs);
    } else {
        pdl_wait();
    }
    mmv_rows<T, R, NC, GLU>(a, s, i0, rows);
}

// The pipelined form (the quantized types' default; mmv_mode): a grid of resident blocks, each looping over row
// groups g, g + gridDim.x, ...; while it computes one group from one half of its shared memory, the next group's
// rows are already being copied into the other half (cp.async), so every block keeps a stage of weights in
// flight the whole time instead of alternating between loading and computing.
template <dtype T, int R, int NC, bool GLU>
__global__ void __launch_bounds__(k_threads) mmv_pipe_kernel(const mmv_args a, int64_t n_groups) {
    constexpr int RR = GLU ? 2 * R : R;
    pdl_trigger();
    extern __shared__ uint4 stage[];
    const int64_t vecs = a.row_bytes / 16;
    auto issue = [&](int64_t g, int buf) {
        int s = 0;
        int64_t i0 = 0;
        const uint8_t* rows[RR];
        mmv_group<R, GLU>(a, g, s, i0, rows);
#pragma unroll
        for (int r = 0; r < RR; ++r) {
            const uint4* src = reinterpret_cast<const uint4*>(rows[r]);
            for (int64_t c = threadIdx.x; c < vecs; c += k_threads)
                cp_async16(&stage[(buf * RR + r) * vecs + c], src + c);
        }
    };
    int64_t g = blockIdx.x;
    if (g < n_groups) issue(g, 0);
    cp_async_commit();
    pdl_wait();
    for (int buf = 0; g < n_groups; g += gridDim.x, buf ^= 1) {
        if (g + gridDim.x < n_groups) issue(g + gridDim.x, buf ^ 1);
        cp_async_commit();
        cp_async_wait<1>();  // this group's copies have landed (the next group's may still fly)
        __syncthreads();
        int s = 0;
        int64_t i0 = 0;
        const uint8_t* rows[RR];
        mmv_group<R, GLU>(a, g, s, i0, rows);
#pragma unroll
        for (int r = 0; r < RR; ++r) rows[r] = reinterpret_cast<const uint8_t*>(stage + (buf * RR + r) * vecs);
        mmv_rows<T, R, NC, GLU>(a, s, i0, rows);
        __syncthreads();  // every thread is done with this half before the next iteration refills it
    }
}

constexpr size_t k_max_stage_bytes = 48 * 1024;  // the dynamic shared memory a launch gets without opting in

// Which kernels the quantized types use, chosen by TFU_CUDA_MMV for measuring one against the other:
//  - warp (the default): Q4_0, Q8_0, Q4_K and Q6_K (up to 4 columns, rows a multiple of 16 bytes) take
//    mul_mat_vec_i8.cu's kernel (x quantized to int8 in shared memory, a warp per row, __dp4a); the other types
//    and shapes take the pipelined kernel below.
//  - pipelined (also TFU_CUDA_MMV=float): mmv_pipe_kernel, float arithmetic on rows staged in shared memory with
//    the next row group's copy in flight, where two stages fit in 48 KB (else staged). On the H100 (1B, tg128,
//    one call): Q4_0 634 vs 589 t/s staged, Q8_0 534 vs 494. The float types load 16 bytes per unit directly.
//  - staged: mmv_fast_kernel, one row group per block, loaded then computed.
//  - direct: unit loads from global memory, no staging.
//  (Removed: an int8 path in these block kernels, x quantized once per launch by its own kernel: Q4_0 612 t/s
//  against the pipelined float kernel's 634, Q8_0 495 vs 534, on the H100 (1B, tg128); the warp kernel replaced it.)
enum class mmv_path { warp, staged, direct, pipelined };
mmv_path mmv_mode() {
    static const mmv_path mode = [] {
        const char* e = std::getenv("TFU_CUDA_MMV");
        if (e && std::strcmp(e, "direct") == 0) return mmv_path::direct;
        if (e && std::strcmp(e, "staged") == 0) return mmv_path::staged;
        if (e && (std::strcmp(e, "pipelined") == 0 || std::strcmp(e, "float") == 0)) return mmv_path::pipelined;
        return mmv_path::warp;
    }();
    return mode;
}

bool aligned(const void* p, size_t stride, size_t a) {
    return reinterpret_cast<uintptr_t>(p) % a == 0 && stride % a == 0;
}

// Rows per block: more rows share each load of x; fewer keep the accumulators in registers and give small
// matrices more blocks (latency hiding). One column: TFU_CUDA_MMV_ROWS=1|2|4 overrides it, for measuring.
constexpr int rows_per_block(int nc, bool glu) { return glu ? (nc == 1 ? 2 : 1) : nc == 1 ? 4 : nc <= 4 ? 2 : 1; }
int mmv_rows_override() {
    static const int rows = [] {
        const char* e = std::getenv("TFU_CUDA_MMV_ROWS");
        const int r = e ? std::atoi(e) : 0;
        return r == 1 || r == 2 || r == 4 || r == 8 ? r : 0;
    }();
    return rows;
}

// Whether a launch planned for weights of type t goes to mul_mat_vec_i8 (which may still decline on shared memory).
bool int8_path(const mmv_args& a, int n_mat, dtype t, int64_t nc) {
    if (mmv_mode() != mmv_path::warp || !mmv_i8_type(t) || nc > 4 || a.row_bytes % 16 != 0)
        return false;
    for (int s = 0; s < n_mat; ++s)
        if (!aligned(a.mat[s].w, a.mat[s].w_stride, 16)) return false;
    return true;
}

template <dtype T, int NC, bool GLU, int R_ASKED = 0>  // 0: rows_per_block
void launch_nc(context& ctx, mmv_args a, int n_mat) {
    constexpr int R = R_ASKED ? R_ASKED : rows_per_block(NC, GLU), RR = GLU ? 2 * R : R;
    int64_t blocks = 0;
    for (int s = 0; s < (GLU ? 1 : n_mat); ++s) {
        a.first_block[s] = blocks;
        blocks += ceil_div(a.mat[s].m, R);
    }
    for (int s = GLU ? 1 : n_mat; s < 4; ++s) a.first_block[s] = blocks;
    const size_t stage_bytes = size_t(RR * a.row_bytes);
    bool stageable = mmv_mode() != mmv_path::direct && a.row_bytes % 16 == 0 && stage_bytes <= k_max_stage_bytes;
    for (int s = 0; s < n_mat; ++s) stageable = stageable && aligned(a.mat[s].w, a.mat[s].w_stride, 16);
    // Staging: the quantized types only (the float types' unit loads are 16 bytes already; F16 pipelined
    // measured 490 +- 24 against 515 +- 28 t/s direct on the H100).
    // The int8 warp kernel's types: that kernel, whatever a block kernel's stage would take (it streams chunks).
    if (int8_path(a, n_mat, T, NC) && mul_mat_vec_i8(ctx, a, n_mat, GLU, T, NC)) return;
    const bool staged = traits(T).quantized && stageable;
    // The pipelined kernel where two stages fit in shared memory: a grid of resident blocks (as many as fit), each
    // with its next rows in flight.
    const bool pipelined = staged && mmv_mode() != mmv_path::staged && 2 * stage_bytes <= k_max_stage_bytes;
    auto launch_pipelined = [&](auto kernel) {
        int per_sm = 0;  // resident blocks per SM with this launch's shared memory
        if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, k_threads, 2 * stage_bytes) != cudaSuccess) {
            cudaGetLastError();
            per_sm = 1;
        }
        const int64_t grid = std::min<int64_t>(blocks, int64_t(ctx.sm_count) * std::max(per_sm, 1));
        launch_mmv(ctx, kernel, unsigned(grid), k_threads, 2 * stage_bytes, a, blocks);
        check_launch("mmv_pipe_kernel");
    };
    if (pipelined) return launch_pipelined(mmv_pipe_kernel<T, R, NC, GLU>);
    if (staged)
        launch_mmv(ctx, mmv_fast_kernel<T, R, NC, true, GLU>, unsigned(blocks), k_threads, stage_bytes, a);
    else
        launch_mmv(ctx, mmv_fast_kernel<T, R, NC, false, GLU>, unsigned(blocks), k_threads, 0, a);
    check_launch("mmv_fast_kernel");
}

template <dtype T, bool GLU>
void launch_t(context& ctx, const mmv_args& a, int n_mat, int64_t n) {
    switch (n) {
        case 1:
            switch (mmv_rows_override()) {
                case 1: launch_nc<T, 1, GLU, 1>(ctx, a, n_mat); break;
                case 2: launch_nc<T, 1, GLU, 2>(ctx, a, n_mat); break;
                case 4: launch_nc<T, 1, GLU, 4>(ctx, a, n_mat); break;
                case 8: launch_nc<T, 1, GLU, 8>(ctx, a, n_mat); break;
                default: launch_nc<T, 1, GLU>(ctx, a, n_mat); break;
            }
            break;
        case 2: launch_nc<T, 2, GLU>(ctx, a, n_mat); break;
        case 3: launch_nc<T, 3, GLU>(ctx, a, n_mat); break;
        case 4: launch_nc<T, 4, GLU>(ctx, a, n_mat); break;
        case 5: launch_nc<T, 5, GLU>(ctx, a, n_mat); break;
        case 6: launch_nc<T, 6, GLU>(ctx, a, n_mat); break;
        case 7: launch_nc<T, 7, GLU>(ctx, a, n_mat); break;
        default: launch_nc<T, 8, GLU>(ctx, a, n_mat); break;
    }
}

// Whether w (with x) has a fast kernel: the type, k and the alignments its unit loads need.
bool eligible(const tensor& w, const tensor& x) {
    const int64_t k = w.ne[0], n = x.nrows();
    if (n < 1 || n > k_mmv_fast_max_cols || !aligned(x.data, x.nb[1], 16)) return false;
    switch (w.type) {
        case dtype::F32:
        case dtype::F16:
        case dtype::BF16: return k % 8 == 0 && aligned(w.data, w.nb[1], 16);
        case dtype::Q4_0:
        case dtype::Q8_0:
        case dtype::Q6_K: return true;  // whole blocks; 2-byte loads
        case dtype::Q4_K: return aligned(w.data, w.nb[1], 4);
        default: return false;
    }
}

template <bool GLU>
void dispatch(context& ctx, dtype type, const mmv_args& a, int n_mat, int64_t n) {
    switch (type) {
        case dtype::F32: launch_t<dtype::F32, GLU>(ctx, a, n_mat, n); break;
        case dtype::F16: launch_t<dtype::F16, GLU>(ctx, a, n_mat, n); break;
        case dtype::BF16: launch_t<dtype::BF16, GLU>(ctx, a, n_mat, n); break;
        case dtype::Q4_0: launch_t<dtype::Q4_0, GLU>(ctx, a, n_mat, n); break;
        case dtype::Q8_0: launch_t<dtype::Q8_0, GLU>(ctx, a, n_mat, n); break;
        case dtype::Q4_K: launch_t<dtype::Q4_K, GLU>(ctx, a, n_mat, n); break;
        case dtype::Q6_K: launch_t<dtype::Q6_K, GLU>(ctx, a, n_mat, n); break;
        default: fail(TFU_STATUS_INTERNAL, "mul_mat_vec_fast: no kernel for this dtype");
    }
}

mmv_matrix matrix_of(const op& o) {
    return {static_cast<const uint8_t*>(o.src[0]->data), o.src[0]->nb[1], o.src[0]->ne[1],
            static_cast<uint8_t*>(o.dst->data), o.dst->nb[1]};
}

bool overlaps(const tensor& a, const tensor& b) { return tensors_overlap(a, b); }

// ops[i] is a MUL_MAT that can join ops[0]'s launch: the same x (same memory and shape), the same weight type and
// k, and a result that overlaps neither x nor an earlier result of the launch (so running them together is the
// same as running them in order).
bool joins(const op* ops, size_t i) {
    const op& a = ops[0];
    const op& b = ops[i];
    if (b.type != op_type::MUL_MAT) return false;
    const tensor& x = *a.src[1];
    const tensor& y = *b.src[1];
    if (y.data != x.data || y.nb[1] != x.nb[1] || y.ne[0] != x.ne[0] || y.nrows() != x.nrows()) return false;
    if (b.src[0]->type != a.src[0]->type || b.src[0]->ne[0] != a.src[0]->ne[0] || !eligible(*b.src[0], y)) return false;
    if (overlaps(*b.dst, x)) return false;
    for (size_t j = 0; j < i; ++j)
        if (overlaps(*b.dst, *ops[j].dst)) return false;
    return true;
}

// The launch that ops[0] (a MUL_MAT) starts: fills a, n_mat and glu and returns how many ops it computes (3: gate,
// up, SWIGLU; 1-3: MUL_MATs of one x), or 0 when ops[0] has no fast kernel.
size_t plan(const op* ops, size_t n_ops, mmv_args& a, int& n_mat, bool& glu) {
    if (n_ops == 0 || ops[0].type != op_type::MUL_MAT) return 0;
    const tensor& w = *ops[0].src[0];
    const tensor& x = *ops[0].src[1];
    if (!eligible(w, x) || overlaps(*ops[0].dst, x)) return 0;
    a = mmv_args{};
    a.x = static_cast<const uint8_t*>(x.data);
    a.x_stride = x.nb[1];
    a.row_bytes = w.ne[0] / int64_t(traits(w.type).block_size) * int64_t(traits(w.type).type_size);
    a.n_units = w.ne[0] / 8;
    a.mat[0] = matrix_of(ops[0]);
    glu = false;
    // gate, up, SWIGLU(gate, gate, up): dst = silu(gate) * up, written by the launch (up is written too).
    if (n_ops >= 3 && joins(ops, 1) && ops[1].src[0]->ne[1] == w.ne[1] && ops[2].type == op_type::SWIGLU) {
        const op& g = ops[2];
        const tensor& gd = *ops[0].dst;
        const tensor& ud = *ops[1].dst;
        const bool same_shape = g.src[0]->data == gd.data && g.src[1]->data == ud.data && g.src[0]->nb[1] == gd.nb[1] &&
                                g.src[1]->nb[1] == ud.nb[1] && g.src[0]->ne[0] == gd.ne[0] &&
                                g.src[0]->nrows() == gd.nrows() && g.src[1]->nrows() == gd.nrows();
        // dst of SWIGLU: exactly gate's memory (each block overwrites only its own rows of gate), or memory that
        // touches none of x, gate and up (a partial overlap with gate would let one block's product land on
        // another block's gate rows).
        const bool in_place = g.dst->data == gd.data && g.dst->nb[1] == gd.nb[1];
        const bool apart = !overlaps(*g.dst, gd);
        if (same_shape && !overlaps(*g.dst, x) && !overlaps(*g.dst, ud) && (in_place || apart)) {
            a.mat[1] = matrix_of(ops[1]);
            a.glu_d = static_cast<uint8_t*>(g.dst->data);
            a.glu_stride = g.dst->nb[1];
            n_mat = 2;
            glu = true;
            return 3;
        }
    }
    n_mat = 1;
    while (n_mat < 3 && size_t(n_mat) < n_ops && joins(ops, size_t(n_mat))) {
        a.mat[n_mat] = matrix_of(ops[n_mat]);
        ++n_mat;
    }
    return size_t(n_mat);
}

// RMS_NORM(xn, src, g) followed by a launch that reads xn: one int8 launch that normalises src itself (block 0
// also stores xn). Its writes must not reach what other blocks still read: xn and the launch's results stay
// apart from src and g. Returns the ops computed, 0 when it does not apply (nothing enqueued).
size_t norm_fused(context& ctx, const op* ops, size_t n_ops) {
    const op& nrm = ops[0];
    if (n_ops < 2 || ops[1].type != op_type::MUL_MAT) return 0;
    const tensor& xn = *nrm.dst;
    const tensor& src = *nrm.src[0];
    const tensor& g = *nrm.src[1];
    if (!same_rows(*ops[1].src[1], xn)) return 0;
    mmv_args a{};
    int n_mat = 0;
    bool glu = false;
    const size_t used = plan(ops + 1, n_ops - 1, a, n_mat, glu);
    const dtype t = ops[1].src[0]->type;
    if (!used || !int8_path(a, n_mat, t, xn.nrows())) return 0;
    if (!aligned(src.data, src.nb[1], 16) || !aligned(xn.data, xn.nb[1], 16) || !aligned(g.data, 16, 16)) return 0;
    if (overlaps(xn, src) || overlaps(xn, g)) return 0;
    for (size_t i = 1; i <= used; ++i)
        if (overlaps(*ops[i].dst, src) || overlaps(*ops[i].dst, g)) return 0;
    a.x = static_cast<const uint8_t*>(src.data);
    a.x_stride = src.nb[1];
    a.norm_w = static_cast<const float*>(g.data);
    a.norm_eps = nrm.f[0];
    a.norm_dst = static_cast<uint8_t*>(xn.data);
    a.norm_dst_stride = xn.nb[1];
    return mul_mat_vec_i8(ctx, a, n_mat, glu, t, int(xn.nrows())) ? 1 + used : 0;
}

// A single projection d = W x followed by ADD(y, r, d) (or ADD(y, d, r)), r of d's shape: the launch (int8 or
// float) stores y[i] = r[i] + d[i] beside d[i], from the thread that stores d[i] (so y may be r itself); the
// aliasing rules are backend/fused_residual.h's. Every weight type with a fast kernel: with the decoder's run
// per layer ending in the residual ADD, this keeps the launch that ADD + RMS_NORM (fused_rows.h) shared before.
// Returns the ops computed (the launch's plus the ADD), 0 when it does not apply (nothing enqueued).
size_t add_fused(context& ctx, const op* ops, size_t n_ops, size_t used, mmv_args a, int n_mat, bool glu) {
    if (glu || n_mat != 1 || used >= n_ops) return 0;
    const op& ad = ops[used];
    const tensor* r = projection_residual(ops[0], ad);  // backend/fused_residual.h
    if (!r) return 0;
    const tensor& x = *ops[0].src[1];
    const tensor& w = *ops[0].src[0];
    const tensor& y = *ad.dst;
    a.add_r = static_cast<const uint8_t*>(r->data);
    a.add_r_stride = r->nb[1];
    a.add_y = static_cast<uint8_t*>(y.data);
    a.add_y_stride = y.nb[1];
    dispatch<false>(ctx, w.type, a, n_mat, x.nrows());  // the int8 launch where it takes the type
    return used + 1;
}

}  // namespace

size_t mul_mat_vec_fused(context& ctx, const op* ops, size_t n_ops) {
    if (n_ops == 0) return 0;
    if (ops[0].type == op_type::RMS_NORM) return norm_fused(ctx, ops, n_ops);
    mmv_args a{};
    int n_mat = 0;
    bool glu = false;
    const size_t used = plan(ops, n_ops, a, n_mat, glu);
    if (!used) return 0;
    if (const size_t with_add = add_fused(ctx, ops, n_ops, used, a, n_mat, glu)) return with_add;
    const tensor& w = *ops[0].src[0];
    const int64_t n = ops[0].src[1]->nrows();
    if (glu) dispatch<true>(ctx, w.type, a, n_mat, n);
    else dispatch<false>(ctx, w.type, a, n_mat, n);
    return used;
}

}  // namespace tfu::cuda
