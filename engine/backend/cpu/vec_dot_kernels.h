// Internal to the vec_dot*.cpp files: the per-type kernel tables of the scalar and AVX2 implementations.
// vec_dot_avx2.cpp is compiled with -mavx2 -mfma -mf16c, so it uses no inline functions or templates shared
// with other files (the linker could keep its AVX2 copy for everyone); it only exports these lookups.
#pragma once

#include <cstdint>

#include "backend/cpu/vec_dot.h"

namespace tfu::cpu::kernels {

using quantize_fn = void (*)(const float* x, void* y, int64_t n);

// nullptr where the implementation has no kernel for the type.
vec_dot_fn scalar_vec_dot(dtype w);
quantize_fn scalar_quantize(dtype act);
vec_dot_fn avx2_vec_dot(dtype w);
quantize_fn avx2_quantize(dtype act);

}  // namespace tfu::cpu::kernels
