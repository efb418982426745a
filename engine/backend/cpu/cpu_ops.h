// The fast CPU kernels (one file per op family: matmul.cpp, attention.cpp, elementwise.cpp, rope.cpp) and
// their AVX2 row helpers (*_avx2.cpp, compiled with -mavx2 -mfma -mf16c, called only when the CPU has them).
#pragma once

#include <cstdint>
#include <vector>

#include "backend/op.h"
#include "core/threads.h"

namespace tfu::cpu {

// What a kernel may use: the backend's pool, whether the AVX2 helpers may run, and per-backend scratch
// memory (grown on demand, reused across calls; the backend serialises run() so one op uses it at a time).
struct context {
    thread_pool& pool;
    bool avx2;
    std::vector<uint8_t>& scratch;
};

// Kernels take an op that check_op() accepted.
#define TFU_OP(NAME, name, n_src) void name(context& ctx, const op& o);
#include "backend/ops.def"
#undef TFU_OP

void scale_scalar(float* x, float s, int64_t n);

// AVX2 + FMA + F16C present and not disabled by TFU_CPU_SIMD=scalar (read at each call: backends made after
// setenv see it).
bool cpu_has_avx2();

namespace avx2 {
float sum_squares(const float* x, int64_t n);                               // sum x^2
void scale_mul(const float* x, float s, const float* g, float* y, int64_t n);  // y = x * s * g
void add(const float* a, const float* b, float* y, int64_t n);               // y = a + b
void mul(const float* a, const float* b, float* y, int64_t n);               // y = a * b
void f32_to_f16(const float* x, uint16_t* y, int64_t n);                    // round to nearest even
}  // namespace avx2

}  // namespace tfu::cpu
