// MUL_MAT: dst (m, n) f32 = src0 (k, m; any weight dtype) . src1 (k, n) f32: dst[j][i] = w_i . x_j.
//
// Two paths:
//  - n <= k_mmv_max_cols (decode, small batches): mul_mat_vec.cu's fast kernels for the common weight types and
//    aligned tensors; else mul_mat_vec_kernel, one warp per weight row i, 4 rows per
//    block of 128 threads. Lane l decodes 8-element chunks c = l, l + 32, ... of row i in registers (w_chunk8:
//    16-byte loads for aligned f16/bf16/f32 rows, block-wise dequantization for the quantized types) and
//    multiplies them with the same chunk of every x_j (two float4 loads); the partial sums of the n columns
//    are reduced across the warp with shuffles. Weights are read once; accumulation in f32.
//  - larger n (prefill): cuBLAS GEMM with f32 accumulation. f32 weights: f32 GEMM (no TF32). f16 / bf16
//    weights: x converted to f16 / bf16 in scratch, weights used in place. Quantized weights: x converted to
//    f16 and the weights dequantized to f16 into scratch, k_gemm_chunk_bytes of rows at a time, then one GEMM
//    per chunk of rows (f16 keeps the dequantized values to 11 bits, more than bf16's 8).
// cuBLAS is column-major: W (k x m, lda = row stride) transposed times X (k x n) gives D (m x n, ldc = dst's
// row stride in floats).
#include <algorithm>

#include "cuda_ops.h"
#include "mul_mat_q.cuh"
#include "mul_mat_vec.h"

namespace tfu::cuda {

namespace {

constexpr int k_mmv_max_cols = 8;
constexpr int k_mmv_warps = 4;
constexpr size_t k_gemm_chunk_bytes = size_t(64) << 20;  // dequantized f16 weight rows per GEMM

template <dtype T, bool VEC>
__global__ void __launch_bounds__(k_mmv_warps * k_warp)
mul_mat_vec_kernel(const uint8_t* __restrict__ w, size_t w_stride, int64_t m, int64_t k, const uint8_t* __restrict__ x,
                   size_t x_stride, int n, bool x_vec, uint8_t* __restrict__ d, size_t d_stride) {
    const int lane = threadIdx.x % k_warp;
    const int64_t i = int64_t(blockIdx.x) * k_mmv_warps + threadIdx.x / k_warp;
    if (i >= m) return;
    const uint8_t* row = w + size_t(i) * w_stride;
    float acc[k_mmv_max_cols];
#pragma unroll
    for (int j = 0; j < k_mmv_max_cols; ++j) acc[j] = 0.0f;
    const int64_t n_chunks = k / 8;
    for (int64_t c = lane; c < n_chunks; c += k_warp) {
        float wv[8];
        w_chunk8<T, VEC>(row, c, wv);
#pragma unroll
        for (int j = 0; j < k_mmv_max_cols; ++j) {
            if (j >= n) break;
            const float* xj = reinterpret_cast<const float*>(x + size_t(j) * x_stride) + 8 * c;
            float xv[8];
            if (x_vec) {
                const float4 a = reinterpret_cast<const float4*>(xj)[0], b = reinterpret_cast<const float4*>(xj)[1];
                xv[0] = a.x, xv[1] = a.y, xv[2] = a.z, xv[3] = a.w, xv[4] = b.x, xv[5] = b.y, xv[6] = b.z, xv[7] = b.w;
            } else {
#pragma unroll
                for (int t = 0; t < 8; ++t) xv[t] = xj[t];
            }
#pragma unroll
            for (int t = 0; t < 8; ++t) acc[j] += wv[t] * xv[t];
        }
    }
    // Plain types only: k not a multiple of 8 leaves a tail of single elements.
    for (int64_t e = n_chunks * 8 + lane; e < k; e += k_warp) {
        const float wv = w_at<T>(row, e);
#pragma unroll
        for (int j = 0; j < k_mmv_max_cols; ++j) {
            if (j >= n) break;
            acc[j] += wv * reinterpret_cast<const float*>(x + size_t(j) * x_stride)[e];
        }
    }
#pragma unroll
    for (int j = 0; j < k_mmv_max_cols; ++j) {
        if (j >= n) break;
        const float s = warp_sum(acc[j]);
        if (lane == 0) reinterpret_cast<float*>(d + size_t(j) * d_stride)[i] = s;
    }
}

// x (k, n) f32 with row stride -> contiguous (k, n) f16 or bf16.
template <bool BF16>
__global__ void convert_x_kernel(const uint8_t* __restrict__ x, size_t x_stride, int64_t k, int64_t total,
                                 uint16_t* __restrict__ out) {
    for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
         idx += int64_t(gridDim.x) * blockDim.x) {
        const float v = reinterpret_cast<const float*>(x + size_t(idx / k) * x_stride)[idx % k];
        out[idx] = BF16 ? f2bf(v) : f2h(v);
    }
}

// Weight rows i0 .. i0 + rows - 1 -> contiguous (k, rows) f16, 8 elements (one 16-byte store) per item.
template <dtype T>
__global__ void dequant_f16_kernel(const uint8_t* __restrict__ w, size_t w_stride, int64_t k, int64_t total_chunks,
                                   uint4* __restrict__ out) {
    const int64_t chunks_per_row = k / 8;
    for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total_chunks;
         idx += int64_t(gridDim.x) * blockDim.x) {
        const int64_t r = idx / chunks_per_row, c = idx % chunks_per_row;
        float v[8];
        w_chunk8<T, false>(w + size_t(r) * w_stride, c, v);
        uint4 o;
        o.x = uint32_t(f2h(v[0])) | uint32_t(f2h(v[1])) << 16;
        o.y = uint32_t(f2h(v[2])) | uint32_t(f2h(v[3])) << 16;
        o.z = uint32_t(f2h(v[4])) | uint32_t(f2h(v[5])) << 16;
        o.w = uint32_t(f2h(v[6])) | uint32_t(f2h(v[7])) << 16;
        out[idx] = o;
    }
}

bool aligned16(const void* p, size_t stride) { return reinterpret_cast<uintptr_t>(p) % 16 == 0 && stride % 16 == 0; }

unsigned grid_for(const context& ctx, int64_t items) {
    return unsigned(std::max<int64_t>(1, std::min<int64_t>(ceil_div(items, 256), int64_t(ctx.sm_count) * 16)));
}

template <dtype T>
void mul_mat_vec(context& ctx, const tensor& w, const tensor& x, tensor& d) {
    const int64_t k = w.ne[0], m = w.ne[1];
    const int n = int(x.nrows());
    const bool x_vec = aligned16(x.data, x.nb[1]);
    const bool w_vec = !traits(T).quantized && k % 8 == 0 && aligned16(w.data, w.nb[1]);
    const unsigned blocks = ceil_div(m, k_mmv_warps);
    const auto* wp = static_cast<const uint8_t*>(w.data);
    const auto* xp = static_cast<const uint8_t*>(x.data);
    auto* dp = static_cast<uint8_t*>(d.data);
    if constexpr (T == dtype::F32 || T == dtype::F16 || T == dtype::BF16) {
        if (w_vec) {
            mul_mat_vec_kernel<T, true><<<blocks, k_mmv_warps * k_warp, 0, ctx.stream>>>(wp, w.nb[1], m, k, xp, x.nb[1],
                                                                                         n, x_vec, dp, d.nb[1]);
            check_launch("mul_mat_vec_kernel");
            return;
        }
    }
    mul_mat_vec_kernel<T, false><<<blocks, k_mmv_warps * k_warp, 0, ctx.stream>>>(wp, w.nb[1], m, k, xp, x.nb[1], n,
                                                                                  x_vec, dp, d.nb[1]);
    check_launch("mul_mat_vec_kernel");
}

void gemm(context& ctx, cudaDataType type, const void* a, int64_t lda, const void* b, int64_t ldb, float* c,
          int64_t ldc, int64_t m, int64_t n, int64_t k) {
    const float alpha = 1.0f, beta = 0.0f;
    check_cublas(cublasGemmEx(ctx.cublas, CUBLAS_OP_T, CUBLAS_OP_N, int(m), int(n), int(k), &alpha, a, type, int(lda),
                              b, type, int(ldb), &beta, c, CUDA_R_32F, int(ldc), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                 "cublasGemmEx (mul_mat)");
}

template <dtype T>
void mul_mat_gemm(context& ctx, const tensor& w, const tensor& x, tensor& d) {
    const int64_t k = w.ne[0], m = w.ne[1], n = x.nrows();
    float* dp = static_cast<float*>(d.data);
    const int64_t ldc = int64_t(d.nb[1] / sizeof(float));
    if constexpr (T == dtype::F32) {
        gemm(ctx, CUDA_R_32F, w.data, int64_t(w.nb[1] / 4), x.data, int64_t(x.nb[1] / 4), dp, ldc, m, n, k);
        return;
    }
    const size_t x_bytes = (size_t(k * n) * 2 + 255) & ~size_t(255);
    constexpr bool plain16 = T == dtype::F16 || T == dtype::BF16;
    const int64_t chunk_rows = plain16 ? 0 : std::max<int64_t>(1, std::min<int64_t>(m, int64_t(k_gemm_chunk_bytes / size_t(2 * k))));
    uint8_t* scratch = static_cast<uint8_t*>(ctx.scratch(x_bytes + size_t(chunk_rows * k) * 2));
    uint16_t* x16 = reinterpret_cast<uint16_t*>(scratch);
    convert_x_kernel<T == dtype::BF16><<<grid_for(ctx, k * n), 256, 0, ctx.stream>>>(
        static_cast<const uint8_t*>(x.data), x.nb[1], k, k * n, x16);
    check_launch("convert_x_kernel");
    if constexpr (plain16) {
        gemm(ctx, T == dtype::F16 ? CUDA_R_16F : CUDA_R_16BF, w.data, int64_t(w.nb[1] / 2), x16, k, dp, ldc, m, n, k);
    } else {
        uint4* w16 = reinterpret_cast<uint4*>(scratch + x_bytes);
        for (int64_t i0 = 0; i0 < m; i0 += chunk_rows) {
            const int64_t rows = std::min(chunk_rows, m - i0);
            const int64_t chunks = rows * (k / 8);
            dequant_f16_kernel<T><<<grid_for(ctx, chunks), 256, 0, ctx.stream>>>(
                static_cast<const uint8_t*>(w.data) + size_t(i0) * w.nb[1], w.nb[1], k, chunks, w16);
            check_launch("dequant_f16_kernel");
            gemm(ctx, CUDA_R_16F, w16, k, x16, k, dp + i0, ldc, rows, n, k);
        }
    }
}

}  // namespace

void mul_mat(context& ctx, const op& o) {
    const tensor& w = *o.src[0];
    const tensor& x = *o.src[1];
    tensor& d = *o.dst;
    const bool vec = x.nrows() <= k_mmv_max_cols;
    switch (w.type) {
#define TFU_CASE(T)                                     \
    case dtype::T:                                      \
        if (vec) {                                      \
            if (!mul_mat_vec_fused(ctx, &o, 1))         \
                mul_mat_vec<dtype::T>(ctx, w, x, d);    \
        }                                               \
        else mul_mat_gemm<dtype::T>(ctx, w, x, d);      \
        break;
        TFU_CUDA_WEIGHT_TYPES(TFU_CASE)
#undef TFU_CASE
        default: fail(TFU_STATUS_UNSUPPORTED, std::string("cuda mul_mat: weight dtype ") + dtype_name(w.type));
    }
}

}  // namespace tfu::cuda
