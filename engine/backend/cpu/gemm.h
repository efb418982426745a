// Register-blocked GEMM for prefill (n > 1) on weights kept in their GGUF block format: a tile of weight rows x
// activation columns is computed per 32-element block, so each decoded weight block is reused against several
// activation blocks and each activation block against several weight rows (matmul.cpp uses it when n > 1).
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace tfu::cpu {

// dst[j][i] = w_i . a_j for i in [0, m), j in [0, n):
//   w: m weight rows of type w (row i at w + i * w_stride bytes), each k elements;
//   a: n activation rows already in vec_dot_type(w) (row j at a + j * a_stride bytes), each k elements;
//   dst: row j at dst + j * dst_stride bytes, m floats written from its start.
// k must be a multiple of the weight's block size and rows 2-byte aligned (unchecked: callers validated the op,
// GGUF rows are). Same integer block dots and per-block scales as vec_dot; only the float summation order differs.
using gemm_fn = void (*)(const void* w, size_t w_stride, const void* a, size_t a_stride, int64_t k, float* dst,
                         size_t dst_stride, int64_t m, int64_t n);

// The tile kernel for weight type w when the AVX2 path is on (vec_dot_has_avx2(): CPU has AVX2/FMA/F16C and
// TFU_CPU_SIMD is not "scalar") and one exists for w (Q4_0, Q8_0, F16); nullptr otherwise: use per-row vec_dot.
gemm_fn gemm_kernel(dtype w);

// For tests and benchmarks: the AVX2 tile kernel whatever TFU_CPU_SIMD says; nullptr where the CPU lacks
// AVX2/FMA/F16C or w has none.
gemm_fn gemm_kernel_avx2(dtype w);

namespace kernels {
gemm_fn avx2_gemm(dtype w);  // gemm_avx2.cpp: nullptr for types without a tile kernel
}  // namespace kernels

}  // namespace tfu::cpu
