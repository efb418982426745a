// Block formats of the quantized weight types (GGUF layouts, bit for bit) and their scalar reference
// conversions: quantize, dequantize and dot product against f32, one row at a time.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace tfu {

// d, m: fp16 scale and minimum. x = d * q (+ m). Sizes are checked against dtype.cpp by static_asserts.
struct block_q4_0 { uint16_t d; uint8_t qs[QK4_0 / 2]; };                      // x = d * (q - 8)
struct block_q4_1 { uint16_t d, m; uint8_t qs[QK4_1 / 2]; };                   // x = d * q + m
struct block_q5_0 { uint16_t d; uint8_t qh[4]; uint8_t qs[QK5_0 / 2]; };       // x = d * (q - 16)
struct block_q5_1 { uint16_t d, m; uint8_t qh[4]; uint8_t qs[QK5_1 / 2]; };    // x = d * q + m
struct block_q8_0 { uint16_t d; int8_t qs[QK8_0]; };                           // x = d * q
struct block_q8_1 { uint16_t d, s; int8_t qs[QK8_1]; };                        // s = d * sum(q)
struct block_q2_K { uint8_t scales[QK_K / 16]; uint8_t qs[QK_K / 4]; uint16_t d, dmin; };
struct block_q3_K { uint8_t hmask[QK_K / 8]; uint8_t qs[QK_K / 4]; uint8_t scales[12]; uint16_t d; };
struct block_q4_K { uint16_t d, dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qs[QK_K / 2]; };
struct block_q5_K { uint16_t d, dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2]; };
struct block_q6_K { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; uint16_t d; };
struct block_q8_K { float d; int8_t qs[QK_K]; int16_t bsums[QK_K / 16]; };

static_assert(sizeof(block_q4_0) == 18 && sizeof(block_q4_1) == 20 && sizeof(block_q5_0) == 22 &&
              sizeof(block_q5_1) == 24 && sizeof(block_q8_0) == 34 && sizeof(block_q8_1) == 36 &&
              sizeof(block_q2_K) == 84 && sizeof(block_q3_K) == 110 && sizeof(block_q4_K) == 144 &&
              sizeof(block_q5_K) == 176 && sizeof(block_q6_K) == 210 && sizeof(block_q8_K) == 292,
              "block layouts must match GGUF");

// All functions take n = elements, a multiple of the type's block size; they work for every type whose
// dtype_traits::weight_type is true, plus Q8_1 and Q8_K (used for activations by the fast CPU path).
void quantize_row(dtype type, const float* x, void* y, int64_t n);
void dequantize_row(dtype type, const void* x, float* y, int64_t n);
// sum_i w[i] * x[i] for one weight row w of `type` and f32 x; dequantizes one block at a time (no row copy).
float vec_dot_f32(dtype type, const void* w, const float* x, int64_t n);

}  // namespace tfu
