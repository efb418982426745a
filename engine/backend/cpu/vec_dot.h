// Dot products of the fast CPU path directly on quantized blocks: the weight row stays in its GGUF format and
// the activation row is quantized once per matmul into the weight type's partner format (as vec_dot_type says).
// Each function picks AVX2/FMA at run time when the CPU has it, else a scalar version; both are tested against
// core/quant.h's vec_dot_f32.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace tfu::cpu {

// The activation format that weight type w is multiplied with: Q8_0 for the 32-element block types, Q8_K for
// the K-quants, F16 for F16, BF16 for BF16, F32 for F32.
dtype vec_dot_type(dtype w);
// Quantizes/converts n f32 activations into act (= vec_dot_type(w)); n a multiple of the block size.
void quantize_activation(dtype act, const float* x, void* y, int64_t n);
// sum_i w[i] * a[i] for a weight row of type w and an activation row already in vec_dot_type(w).
float vec_dot(dtype w, const void* w_row, const void* a_row, int64_t n);
// Whether the AVX2 versions are in use on this CPU (for logs and tests); TFU_CPU_SIMD=scalar forces them off.
bool vec_dot_has_avx2();

}  // namespace tfu::cpu
