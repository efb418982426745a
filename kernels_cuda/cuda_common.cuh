// Device helpers shared by the kernels: half/bfloat16 decoding and encoding (bit-exact with core/fp16.h),
// warp reductions, byte-addressed loads, launch sizes.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

namespace tfu::cuda {

constexpr int k_warp = 32;

__device__ __forceinline__ float h2f(uint16_t h) { return __half2float(__ushort_as_half(h)); }
__device__ __forceinline__ float bf2f(uint16_t h) { return __uint_as_float(uint32_t(h) << 16); }

// Round to nearest even as core/fp16.h's f32_to_fp16 (__float2half_rn differs only in the NaN payload: the
// reference keeps the sign and sets the quiet bit 0x200).
__device__ __forceinline__ uint16_t f2h(float f) {
    if (f != f) return uint16_t(((__float_as_uint(f) >> 16) & 0x8000u) | 0x7e00u);
    return __half_as_ushort(__float2half_rn(f));
}
// core/fp16.h's f32_to_bf16: round to nearest even, NaN made quiet by bit 0x40.
__device__ __forceinline__ uint16_t f2bf(float f) {
    uint32_t x = __float_as_uint(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return uint16_t((x >> 16) | 0x40u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return uint16_t(x >> 16);
}

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
    for (int o = k_warp / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = k_warp / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Programmatic dependent launch (sm_90+; context::pdl): a kernel launched with it (mul_mat_vec.cu) may start
// while the kernel before it on the stream is still running, once every block of that one has called
// pdl_trigger; it must call pdl_wait before it reads anything an earlier kernel writes, or writes anything an
// earlier kernel reads (pdl_wait returns when the kernel before it has finished and its writes are visible).
// The decode matrix-vector kernel stages its weight rows (never written by a kernel) before pdl_wait, so the
// weights stream in while the norm or attention before it finishes. The kernels that come before it call
// pdl_trigger first thing. Both are no-ops without such a launch (and on older devices).
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// The sum of every thread's v over a block of THREADS threads (a multiple of 32), in a fixed order (warp
// shuffles, then the warps' sums in warp order), returned to every thread: the RMS norms' sum of squares, which
// fused and unfused kernels must form identically. Synchronises the block.
template <int THREADS>
__device__ __forceinline__ double block_sum(double v) {
    v = warp_sum(v);
    __shared__ double part[THREADS / k_warp];
    if (threadIdx.x % k_warp == 0) part[threadIdx.x / k_warp] = v;
    __syncthreads();
    double total = 0;
#pragma unroll
    for (int w = 0; w < THREADS / k_warp; ++w) total += part[w];
    return total;
}

// silu(g) * u as the reference computes it (double arithmetic): the SWIGLU kernel and the fused gate/up launches.
__device__ __forceinline__ float silu_mul(float g, float u) { return float(double(g) / (1.0 + exp(-double(g))) * u); }

// 16 bytes global -> shared without passing through registers (sm_80+), in commit groups: cp_async_wait<N> returns
// when at most the N newest groups of this thread are still in flight (then a barrier makes them visible to the
// other threads).
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
    const unsigned dst = unsigned(__cvta_generic_to_shared(smem));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }

// Loads at a byte address (the tensors' strides are in bytes).
template <typename T>
__device__ __forceinline__ T ld(const void* base, size_t byte_off) {
    return *reinterpret_cast<const T*>(static_cast<const uint8_t*>(base) + byte_off);
}
__device__ __forceinline__ uint16_t ld16(const uint8_t* p) { return *reinterpret_cast<const uint16_t*>(p); }

inline unsigned ceil_div(int64_t a, int64_t b) { return unsigned((a + b - 1) / b); }

}  // namespace tfu::cuda
