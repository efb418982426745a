// ARGMAX: dst (n, i32) = index of the largest value of each column of src0 (k, n) f32, with the sampler's greedy
// rules (backend/ops.def): NaN as -inf, +inf as FLT_MAX, -0 as +0, ties to the lowest index, -1 when nothing is
// above -inf. Greedy decoding downloads these 4 bytes instead of the logits (model/decoder.h).
// Launch: one block of 1024 threads per column; float4 loads where the column is 16-byte aligned. Each value
// becomes an order-preserving 32-bit key (ukey below: integer comparisons, so the result does not depend on how
// the device compares floats - denormals, flush-to-zero - and equals the reference's float comparisons exactly),
// packed with the inverted index into one 64-bit word whose maximum is the answer: warp shuffles, then the
// warps' maxima through shared memory. No host work: capturable in a CUDA graph.
#include "cuda_ops.h"

namespace tfu::cuda {

namespace {

constexpr int k_threads = 1024;

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

__global__ void argmax_kernel(const float* __restrict__ x, size_t x_stride, int64_t k, int32_t* __restrict__ dst) {
    const float* col = reinterpret_cast<const float*>(reinterpret_cast<const uint8_t*>(x) + blockIdx.x * x_stride);
    const uint32_t t = threadIdx.x;
    unsigned long long best = 0;
    int64_t done = 0;
    if ((reinterpret_cast<uintptr_t>(col) & 15u) == 0) {
        const float4* c4 = reinterpret_cast<const float4*>(col);
        const int64_t n4 = k / 4;
        for (int64_t q = t; q < n4; q += k_threads) {
            const float4 v = c4[q];
            const uint32_t i = uint32_t(q * 4);
            best = umax(best, umax(umax(pack(v.x, i), pack(v.y, i + 1)), umax(pack(v.z, i + 2), pack(v.w, i + 3))));
        }
        done = n4 * 4;
    }
    for (int64_t i = done + t; i < k; i += k_threads) best = umax(best, pack(col[i], uint32_t(i)));

    for (int off = 16; off > 0; off >>= 1) best = umax(best, __shfl_xor_sync(0xffffffffu, best, off));
    __shared__ unsigned long long warp_best[k_threads / 32];
    if ((t & 31u) == 0) warp_best[t >> 5] = best;
    __syncthreads();
    if (t < 32) {
        best = warp_best[t];
        for (int off = 16; off > 0; off >>= 1) best = umax(best, __shfl_xor_sync(0xffffffffu, best, off));
        if (t == 0) {
            const uint32_t key = uint32_t(best >> 32);
            dst[blockIdx.x] = key <= k_ukey_neg_inf ? -1 : int32_t(~uint32_t(best));
        }
    }
}

}  // namespace

void argmax(context& ctx, const op& o) {
    const tensor& x = *o.src[0];
    argmax_kernel<<<unsigned(x.nrows()), k_threads, 0, ctx.stream>>>(static_cast<const float*>(x.data), x.nb[1],
                                                                      x.ne[0], static_cast<int32_t*>(o.dst->data));
    check_launch("argmax_kernel");
}

}  // namespace tfu::cuda
