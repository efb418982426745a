// ARGMAX: dst (n, i32) = index of the largest value of each column of src0 (k, n) f32, with the sampler's greedy
// rules (backend/ops.def): NaN as -inf, +inf as FLT_MAX, -0 as +0, ties to the lowest index, -1 when nothing is
// above -inf. Greedy decoding downloads these 4 bytes instead of the logits (model/decoder.h).
// Launches: argmax_part_kernel, a grid of (B, n) blocks of 256 threads, block b of a column taking float4s b, b + B,
// ... (scalar loads where the column is not 16-byte aligned) and writing its best to scratch; then
// argmax_final_kernel, a warp per column over its B partial bests. (One block of 1024 threads per column took
// 19.8 us of a 1B decode step on the H100 for a 128K vocabulary: one SM cannot read 512 KB faster.) Each value
// becomes an order-preserving 32-bit key (ukey below: integer comparisons, so the result does not depend on how
// the device compares floats - denormals, flush-to-zero - and equals the reference's float comparisons exactly),
// packed with the inverted index into one 64-bit word whose maximum is the answer (max is associative: any split
// gives the same word): warp shuffles, then the warps' maxima through shared memory. No host work: capturable in
// a CUDA graph (run() reserves the scratch first, argmax_scratch_bytes).
#include <algorithm>

#include "cuda_common.cuh"
#include "cuda_ops.h"

namespace tfu::cuda {

namespace {

constexpr int k_threads = 256;
constexpr int64_t k_max_parts = 64;  // blocks per column at most (B)

// B for a column of k values: about 2 float4s per thread, at most k_max_parts.
int64_t parts_for(int64_t k) { return std::max<int64_t>(1, std::min<int64_t>(k_max_parts, int64_t(ceil_div(k, 8 * k_threads)))); }

// The value as an unsigned key with the order of the sampler's sanitize(x) under float `<`: NaN -> -inf,
// +inf -> FLT_MAX, -0 -> +0; then the usual sign flip (positive floats above negative ones, negative floats in
// reverse bit order).
__device__ __forceinline__ uint32_t ukey(float x) {
    uint32_t u = __float_as_uint(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) u = 0xff800000u;  // NaN -> -inf
    else if (u == 0x7f800000u) u = 0x7f7fffffu;             // +inf -> FLT_MAX
    else if (u == 0x80000000u) u = 0u;                      // -0 -> +0
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
constexpr uint32_t k_ukey_neg_inf = 0x007fffffu;  // ukey(-inf): a column whose best is this has no usable value

// (key, lowest index first) as one word whose unsigned maximum is the best; 0 is below every element.
__device__ __forceinline__ unsigned long long pack(float x, uint32_t i) {
    return (static_cast<unsigned long long>(ukey(x)) << 32) | static_cast<unsigned long long>(~i);
}
__device__ __forceinline__ unsigned long long umax(unsigned long long a, unsigned long long b) { return a > b ? a : b; }

__device__ __forceinline__ unsigned long long warp_umax(unsigned long long v) {
    for (int off = 16; off > 0; off >>= 1) v = umax(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}

__global__ void argmax_part_kernel(const float* __restrict__ x, size_t x_stride, int64_t k,
                                   unsigned long long* __restrict__ part) {
    const float* col = reinterpret_cast<const float*>(reinterpret_cast<const uint8_t*>(x) + blockIdx.y * x_stride);
    const int64_t B = gridDim.x, stride = B * k_threads, first = int64_t(blockIdx.x) * k_threads + threadIdx.x;
    unsigned long long best = 0;
    int64_t done = 0;
    if ((reinterpret_cast<uintptr_t>(col) & 15u) == 0) {
        const float4* c4 = reinterpret_cast<const float4*>(col);
        const int64_t n4 = k / 4;
        for (int64_t q = first; q < n4; q += stride) {
            const float4 v = c4[q];
            const uint32_t i = uint32_t(q * 4);
            best = umax(best, umax(umax(pack(v.x, i), pack(v.y, i + 1)), umax(pack(v.z, i + 2), pack(v.w, i + 3))));
        }
        done = n4 * 4;
    }
    for (int64_t i = done + first; i < k; i += stride) best = umax(best, pack(col[i], uint32_t(i)));
    best = warp_umax(best);
    __shared__ unsigned long long warp_best[k_threads / 32];
    const uint32_t t = threadIdx.x;
    if ((t & 31u) == 0) warp_best[t >> 5] = best;
    __syncthreads();
    if (t < 32) {
        best = warp_umax(t < k_threads / 32 ? warp_best[t] : 0ull);
        if (t == 0) part[int64_t(blockIdx.y) * B + blockIdx.x] = best;
    }
}

// One warp per column: the best of its B partial words, as the index (-1 when nothing is above -inf).
__global__ void argmax_final_kernel(const unsigned long long* __restrict__ part, int64_t B, int32_t* __restrict__ dst) {
    unsigned long long best = 0;
    for (int64_t b = threadIdx.x; b < B; b += 32) best = umax(best, part[int64_t(blockIdx.x) * B + b]);
    best = warp_umax(best);
    if (threadIdx.x == 0) {
        const uint32_t key = uint32_t(best >> 32);
        dst[blockIdx.x] = key <= k_ukey_neg_inf ? -1 : int32_t(~uint32_t(best));
    }
}

}  // namespace

size_t argmax_scratch_bytes(const op& o) {
    return size_t(parts_for(o.src[0]->ne[0]) * o.src[0]->nrows()) * sizeof(unsigned long long);
}

void argmax(context& ctx, const op& o) {
    const tensor& x = *o.src[0];
    const int64_t B = parts_for(x.ne[0]), n = x.nrows();
    auto* part = static_cast<unsigned long long*>(ctx.scratch(argmax_scratch_bytes(o)));
    argmax_part_kernel<<<dim3(unsigned(B), unsigned(n)), k_threads, 0, ctx.stream>>>(static_cast<const float*>(x.data),
                                                                                    x.nb[1], x.ne[0], part);
    check_launch("argmax_part_kernel");
    argmax_final_kernel<<<unsigned(n), 32, 0, ctx.stream>>>(part, B, static_cast<int32_t*>(o.dst->data));
    check_launch("argmax_final_kernel");
}

}  // namespace tfu::cuda
