// Fast CPU dot products: run-time choice between the AVX2 and scalar kernels, argument checks, activation
// conversion entry points.
#include "backend/cpu/vec_dot.h"

#include <cstdlib>
#include <cstring>
#include <string>

#include "backend/cpu/vec_dot_kernels.h"
#include "core/error.h"

namespace tfu::cpu {

namespace {

const dtype_traits& checked_traits(dtype t, int64_t n, const char* what) {
    const dtype_traits* tr = dtype_traits_of(uint32_t(t));
    if (tr == nullptr)
        fail(TFU_STATUS_UNSUPPORTED, std::string(what) + ": unknown type id " + std::to_string(uint32_t(t)));
    if (n < 0 || n % tr->block_size != 0)
        fail(TFU_STATUS_INVALID_ARGUMENT, std::string(what) + ": n = " + std::to_string(n) +
                                              " is not a multiple of the block size " +
                                              std::to_string(tr->block_size) + " of " + tr->name);
    return *tr;
}

[[noreturn]] void unsupported(dtype t, const char* what) {
    const dtype_traits* tr = dtype_traits_of(uint32_t(t));
    fail(TFU_STATUS_UNSUPPORTED,
         std::string(what) + ": no kernel for type " + (tr ? tr->name : std::to_string(uint32_t(t))));
}

bool env_forces_scalar() {
    const char* v = std::getenv("TFU_CPU_SIMD");
    return v != nullptr && std::strcmp(v, "scalar") == 0;
}

void require_avx2(const char* what) {
    if (!cpu_has_avx2_fma()) fail(TFU_STATUS_UNSUPPORTED, std::string(what) + ": this CPU lacks AVX2/FMA/F16C");
}

}  // namespace

dtype vec_dot_type(dtype w) {
    switch (w) {
        case dtype::F32: return dtype::F32;
        case dtype::F16: return dtype::F16;
        case dtype::BF16: return dtype::BF16;
        case dtype::Q4_0: case dtype::Q4_1: case dtype::Q5_0: case dtype::Q5_1: case dtype::Q8_0: return dtype::Q8_0;
        case dtype::Q2_K: case dtype::Q3_K: case dtype::Q4_K: case dtype::Q5_K: case dtype::Q6_K: return dtype::Q8_K;
        default: unsupported(w, "vec_dot_type");
    }
}

bool vec_dot_has_avx2() {
    static const bool use = cpu_has_avx2_fma() && !env_forces_scalar();
    return use;
}

bool vec_dot_has_avx2_kernel(dtype w) { return kernels::avx2_vec_dot(w) != nullptr; }

vec_dot_fn vec_dot_kernel(dtype w) {
    vec_dot_fn f = vec_dot_has_avx2() ? kernels::avx2_vec_dot(w) : nullptr;
    if (f == nullptr) f = kernels::scalar_vec_dot(w);
    if (f == nullptr) unsupported(w, "vec_dot");
    return f;
}

float vec_dot(dtype w, const void* w_row, const void* a_row, int64_t n) {
    checked_traits(w, n, "vec_dot");
    return vec_dot_kernel(w)(w_row, a_row, n);
}

float vec_dot_scalar(dtype w, const void* w_row, const void* a_row, int64_t n) {
    checked_traits(w, n, "vec_dot_scalar");
    vec_dot_fn f = kernels::scalar_vec_dot(w);
    if (f == nullptr) unsupported(w, "vec_dot_scalar");
    return f(w_row, a_row, n);
}

float vec_dot_avx2(dtype w, const void* w_row, const void* a_row, int64_t n) {
    checked_traits(w, n, "vec_dot_avx2");
    require_avx2("vec_dot_avx2");
    vec_dot_fn f = kernels::avx2_vec_dot(w);
    if (f == nullptr) f = kernels::scalar_vec_dot(w);
    if (f == nullptr) unsupported(w, "vec_dot_avx2");
    return f(w_row, a_row, n);
}

void quantize_activation(dtype act, const float* x, void* y, int64_t n) {
    checked_traits(act, n, "quantize_activation");
    kernels::quantize_fn f = vec_dot_has_avx2() ? kernels::avx2_quantize(act) : nullptr;
    if (f == nullptr) f = kernels::scalar_quantize(act);
    if (f == nullptr) unsupported(act, "quantize_activation");
    f(x, y, n);
}

void quantize_activation_scalar(dtype act, const float* x, void* y, int64_t n) {
    checked_traits(act, n, "quantize_activation_scalar");
    kernels::quantize_fn f = kernels::scalar_quantize(act);
    if (f == nullptr) unsupported(act, "quantize_activation_scalar");
    f(x, y, n);
}

void quantize_activation_avx2(dtype act, const float* x, void* y, int64_t n) {
    checked_traits(act, n, "quantize_activation_avx2");
    require_avx2("quantize_activation_avx2");
    kernels::quantize_fn f = kernels::avx2_quantize(act);
    if (f == nullptr) f = kernels::scalar_quantize(act);
    if (f == nullptr) unsupported(act, "quantize_activation_avx2");
    f(x, y, n);
}

}  // namespace tfu::cpu
