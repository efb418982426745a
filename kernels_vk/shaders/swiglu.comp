// SWIGLU: dst (k, rows) = silu(src0) * src1, silu(x) = x / (1 + exp(-x)). Launch: ceil(k * rows / 256) x 256.
#version 450
#include "common.glsl"
float swiglu(float g, float u) { return g / (1.0 + exp(-g)) * u; }
#define OP(a, b) swiglu(a, b)
#include "binary.glsl"
