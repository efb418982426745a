// What a decode matrix-vector launch computes (mul_mat_vec.cu builds it from the ops; mul_mat_vec.cu's kernels and
// mul_mat_vec_i8.cu's read it), how both launch their kernels, and the int8-activation launch that mul_mat_vec.cu
// hands Q4_0, Q8_0, Q4_K and Q6_K to. For .cu files only (it launches with <<< >>>).
#pragma once

#include <cstddef>
#include <cstdint>

#include "cuda_ops.h"

namespace tfu::cuda {

// Up to 3 matrices that share x (the Q, K and V projections of one normed input), or with GLU the gate and up
// projections in lockstep (mat[0] gate, mat[1] up), so that one block or warp holds the same rows of both and
// writes silu(gate) * up itself (the SWIGLU op that follows them, fused: the intermediate never leaves the chip
// before it is final). Every matrix has the same weight type and k.
struct mmv_matrix {
    const uint8_t* w;
    size_t w_stride;
    int64_t m;
    uint8_t* d;
    size_t d_stride;
};
struct mmv_args {
    mmv_matrix mat[3];
    int64_t first_block[4];  // matrix s owns blocks (i8: rows) first_block[s] .. first_block[s + 1] - 1 (plain)
    const uint8_t* x;        // (k, NC) f32, rows x_stride bytes apart
    size_t x_stride;
    int64_t n_units, row_bytes;  // k / 8; bytes of one weight row
    uint8_t* glu_d;              // GLU: where silu(gate) * up goes
    size_t glu_stride;
    // Fused ops (mul_mat_vec.cu's norm_fused / add_fused decide when, and check the aliasing):
    //  - with norm_w (the int8 launch only): the RMS_NORM before the projections, inside the launch: x is the
    //    norm's source, every block normalises it as rms_norm.cu does (bit-identical) before quantizing it, and
    //    block 0 also stores the normalised x at norm_dst (for any later reader of the norm's result);
    //  - with add_y (every launch of a single matrix): the ADD after the projection: the thread that stores dst[i]
    //    also stores add_y[i] = add_r[i] + dst[i].
    const float* norm_w;
    float norm_eps;
    uint8_t* norm_dst;
    size_t norm_dst_stride;
    const uint8_t* add_r;
    size_t add_r_stride;
    uint8_t* add_y;
    size_t add_y_stride;
};

// Launches a decode matrix-vector kernel on ctx.stream, with programmatic dependent launch where the context asks
// for it (context::pdl): the kernel stages its weights while the one before it finishes (cuda_common.cuh,
// pdl_wait). A failure shows in the caller's check_launch.
template <typename... P, typename... A>
void launch_mmv(const context& ctx, void (*kernel)(P...), unsigned blocks, unsigned threads, size_t smem,
                const A&... args) {
    if (!ctx.pdl) {
        kernel<<<blocks, threads, smem, ctx.stream>>>(args...);
        return;
    }
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = dim3(blocks);
    cfg.blockDim = dim3(threads);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = ctx.stream;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    cudaLaunchKernelEx(&cfg, kernel, args...);
}

// The weight types mul_mat_vec_i8.cu has a kernel for.
inline bool mmv_i8_type(dtype t) {
    return t == dtype::Q4_0 || t == dtype::Q8_0 || t == dtype::Q4_K || t == dtype::Q6_K;
}

// Enqueues mul_mat_vec_i8.cu's launch for a (weights of an mmv_i8_type with 16-byte aligned rows whose bytes are a
// multiple of 16, x of nc <= 4 columns with 16-byte aligned rows, and with norm_w the norm's weight and result
// 16-byte aligned too; first_block is ignored) and returns true; false (nothing enqueued) when the type, nc or
// the shared memory it would need rule it out.
bool mul_mat_vec_i8(context& ctx, const mmv_args& a, int n_mat, bool glu, dtype type, int nc);

}  // namespace tfu::cuda
