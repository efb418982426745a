// Small AVX2 helpers shared by the kernels compiled with -mavx2 -mfma -mf16c (files named *_avx2.cpp only: the
// instructions must never run on a CPU without them, which the run-time check in cpu/simd.cpp guards).
#pragma once

#include <immintrin.h>

namespace tfu::avx2_util {

// The sum of the 8 lanes.
inline float hsum(__m256 a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

}  // namespace tfu::avx2_util
