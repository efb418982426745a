// MUL: dst (k, rows) = src0 (k, rows) * src1 (k, rows or 1). Launch: ceil(k * rows / 256) groups of 256.
#version 450
#include "common.glsl"
#define OP(a, b) ((a) * (b))
#include "binary.glsl"
