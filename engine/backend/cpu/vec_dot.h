// Dot products of the fast CPU path directly on quantized blocks: the weight row stays in its GGUF format and
// the activation row is quantized once per matmul into the weight type's partner format (as vec_dot_type says).
// Each function picks AVX2/FMA at run time when the CPU has it, else a scalar version; both are tested against
// core/quant.h's vec_dot_f32.
//
// Integer scheme (as ggml): per block, an int32 sum of weight levels times activation levels, times the two
// scales; the minimum/offset terms of Q4_1, Q5_1, Q2_K, Q4_K, Q5_K use the activation block sums (Q8_K bsums).
// Accumulation is in float. AVX2 kernels exist for F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q6_K;
// Q2_K, Q3_K, Q5_K use the scalar integer kernels on every CPU.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace tfu::cpu {

// The activation format that weight type w is multiplied with: Q8_0 for the 32-element block types, Q8_K for
// the K-quants, F16 for F16, BF16 for BF16, F32 for F32. Throws TFU_STATUS_UNSUPPORTED for other types.
dtype vec_dot_type(dtype w);
// Quantizes/converts n f32 activations into act (= vec_dot_type(w)); n a multiple of the block size.
// Q8_0 / Q8_K: d = max|x| / 127, q = round-to-nearest-even(x / d) in [-127, 127]; Q8_K also fills bsums.
// The AVX2 and scalar versions produce identical bytes.
void quantize_activation(dtype act, const float* x, void* y, int64_t n);
// sum_i w[i] * a[i] for a weight row of type w and an activation row already in vec_dot_type(w).
// Throws TFU_STATUS_INVALID_ARGUMENT when n is not a multiple of w's block size.
float vec_dot(dtype w, const void* w_row, const void* a_row, int64_t n);
// Whether the AVX2 versions are in use on this CPU (for logs and tests); TFU_CPU_SIMD=scalar forces them off.
// Decided once, at the first call.
bool vec_dot_has_avx2();

// The kernel vec_dot would use for weight type w, for inner loops that call it per row without re-validating:
// n must be a multiple of w's block size (unchecked). Throws TFU_STATUS_UNSUPPORTED for other types.
using vec_dot_fn = float (*)(const void* w_row, const void* a_row, int64_t n);
vec_dot_fn vec_dot_kernel(dtype w);

// Explicit versions, for tests and benchmarks. The _avx2 ones throw TFU_STATUS_UNSUPPORTED when the CPU lacks
// AVX2+FMA+F16C (cpu_has_avx2_fma(), which ignores TFU_CPU_SIMD); for types without an AVX2 kernel they run the
// scalar one (vec_dot_has_avx2_kernel says which).
bool cpu_has_avx2_fma();
bool vec_dot_has_avx2_kernel(dtype w);
float vec_dot_scalar(dtype w, const void* w_row, const void* a_row, int64_t n);
float vec_dot_avx2(dtype w, const void* w_row, const void* a_row, int64_t n);
void quantize_activation_scalar(dtype act, const float* x, void* y, int64_t n);
void quantize_activation_avx2(dtype act, const float* x, void* y, int64_t n);

}  // namespace tfu::cpu
