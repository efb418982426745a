// Scalar reference conversions of the K-quant formats (256-element super-blocks), used by core/quant.cpp's
// dispatch; n is a multiple of QK_K (checked by the caller).
#pragma once

#include <cstdint>

namespace tfu::quant_k {

void quantize_q2_K(const float* x, void* y, int64_t n);
void dequantize_q2_K(const void* x, float* y, int64_t n);
void quantize_q3_K(const float* x, void* y, int64_t n);
void dequantize_q3_K(const void* x, float* y, int64_t n);
void quantize_q4_K(const float* x, void* y, int64_t n);
void dequantize_q4_K(const void* x, float* y, int64_t n);
void quantize_q5_K(const float* x, void* y, int64_t n);
void dequantize_q5_K(const void* x, float* y, int64_t n);
void quantize_q6_K(const float* x, void* y, int64_t n);
void dequantize_q6_K(const void* x, float* y, int64_t n);
void quantize_q8_K(const float* x, void* y, int64_t n);
void dequantize_q8_K(const void* x, float* y, int64_t n);

// Scale/min j (0..7) of a Q4_K/Q5_K block from its 12 packed bytes: j < 4: 6 low bits of bytes j and j+4;
// j >= 4: low nibble / high nibble of byte j+4, with the 2 high bits from bits 6-7 of bytes j-4 / j.
void unpack_scale_min_k4(const uint8_t* scales, int j, int* sc, int* m);
// The 16 signed 6-bit scales of a Q3_K block (already minus 32): scale i has its low 4 bits in the low (i < 8)
// or high (i >= 8) nibble of byte i % 8, and its high 2 bits at bits 2*(i/4) of byte 8 + i % 4.
void unpack_scales_q3_K(const uint8_t* scales, int out[16]);

}  // namespace tfu::quant_k
