// AVX2/FMA/F16C helpers of the fast attention: q . k and acc += a * v over a cache row slice in f32, f16 (F16C
// conversion) or bf16 (shift into the high half of an f32), 8 elements a step with a scalar tail.
#include <immintrin.h>

#include "backend/cpu/cpu_ops.h"
#include "core/fp16.h"

namespace tfu::cpu::avx2 {

namespace {

template <dtype T>
inline __m256 load8(const void* p, int64_t i) {
    if constexpr (T == dtype::F32) {
        return _mm256_loadu_ps(static_cast<const float*>(p) + i);
    } else if constexpr (T == dtype::F16) {
        return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + i)));
    } else {
        __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + i));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
}

template <dtype T>
inline float load1(const void* p, int64_t i) {
    if constexpr (T == dtype::F32) return static_cast<const float*>(p)[i];
    else if constexpr (T == dtype::F16) return fp16_to_f32(static_cast<const uint16_t*>(p)[i]);
    else return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
}

inline float hsum(__m256 a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

template <dtype T>
float dot_t(const float* q, const void* k, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load8<T>(k, i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), load8<T>(k, i + 8), a1);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load8<T>(k, i), a0);
    float r = hsum(_mm256_add_ps(a0, a1));
    for (; i < n; ++i) r += q[i] * load1<T>(k, i);
    return r;
}

template <dtype T>
void axpy_t(float a, const void* v, float* acc, int64_t n) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(acc + i, _mm256_fmadd_ps(va, load8<T>(v, i), _mm256_loadu_ps(acc + i)));
    for (; i < n; ++i) acc[i] += a * load1<T>(v, i);
}

}  // namespace

float dot_cache(dtype t, const float* q, const void* k, int64_t n) {
    switch (t) {
        case dtype::F16: return dot_t<dtype::F16>(q, k, n);
        case dtype::BF16: return dot_t<dtype::BF16>(q, k, n);
        default: return dot_t<dtype::F32>(q, k, n);
    }
}

void axpy_cache(dtype t, float a, const void* v, float* acc, int64_t n) {
    switch (t) {
        case dtype::F16: axpy_t<dtype::F16>(a, v, acc, n); break;
        case dtype::BF16: axpy_t<dtype::BF16>(a, v, acc, n); break;
        default: axpy_t<dtype::F32>(a, v, acc, n); break;
    }
}

void scale(float* x, float s, int64_t n) {
    const __m256 vs = _mm256_set1_ps(s);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), vs));
    for (; i < n; ++i) x[i] *= s;
}

}  // namespace tfu::cpu::avx2
