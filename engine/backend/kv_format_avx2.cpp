// AVX2/FMA/F16C row readers of the KV formats (kv_format.h): q . x[t] and acc += w * x[t], 8 channels a step,
// dequantized in registers (f16 via F16C, bf16 by a 16-bit shift, int8 and nibbles widened to int32 -> f32).
#include <immintrin.h>

#include <cstring>

#include "backend/simd_avx2.h"
#include "core/fp16.h"
#include "backend/kv_format.h"

namespace tfu::kv_avx2 {

namespace {

using avx2_util::hsum;

inline __m256 load_f16x8(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline __m256 load_bf16x8(const uint16_t* p) {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
inline __m256 load_i8x8(const int8_t* p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
// Channels c..c+7 (c even) of a nibble row: one little-endian uint32, channel c + j in bits 4j..4j+3.
inline __m256 load_q4x8(const uint8_t* row, int32_t c) {
    uint32_t w;
    std::memcpy(&w, row + c / 2, 4);
    const __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
    __m256i v = _mm256_srlv_epi32(_mm256_set1_epi32(int32_t(w)), shifts);
    return _mm256_cvtepi32_ps(_mm256_and_si256(v, _mm256_set1_epi32(0xf)));
}
inline float nib(const uint8_t* row, int32_t c) { return float((row[c / 2] >> (4 * (c % 2))) & 0xfu); }

const uint16_t* u16(const void* block, size_t off) {
    return reinterpret_cast<const uint16_t*>(static_cast<const uint8_t*>(block) + off);
}

// DOT: returns sum q[c] x[c]; else acc[c] += w x[c]. `load(c)` gives x[c..c+7], `one(c)` gives x[c].
template <bool DOT, class L8, class L1>
inline float run(int32_t c0, int32_t c1, const float* q, float w, float* acc, L8 load, L1 one) {
    int32_t c = c0;
    if constexpr (DOT) {
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        for (; c + 16 <= c1; c += 16) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + c), load(c), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + c + 8), load(c + 8), a1);
        }
        for (; c + 8 <= c1; c += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + c), load(c), a0);
        float r = hsum(_mm256_add_ps(a0, a1));
        for (; c < c1; ++c) r += q[c] * one(c);
        return r;
    } else {
        const __m256 vw = _mm256_set1_ps(w);
        for (; c + 8 <= c1; c += 8)
            _mm256_storeu_ps(acc + c, _mm256_fmadd_ps(vw, load(c), _mm256_loadu_ps(acc + c)));
        for (; c < c1; ++c) acc[c] += w * one(c);
        return 0.0f;
    }
}

template <bool DOT>
float row_op(const kv_layout& l, const void* block, int32_t t, const float* q, float w, float* acc) {
    const int32_t d = l.head_dim;
    const uint8_t* row = static_cast<const uint8_t*>(block) + l.code_offset + size_t(t) * size_t(l.row_code_bytes);
    switch (l.format) {
        case kv_format::f16: {
            const uint16_t* r = reinterpret_cast<const uint16_t*>(row);
            return run<DOT>(0, d, q, w, acc, [&](int32_t c) { return load_f16x8(r + c); },
                            [&](int32_t c) { return fp16_to_f32(r[c]); });
        }
        case kv_format::bf16: {
            const uint16_t* r = reinterpret_cast<const uint16_t*>(row);
            return run<DOT>(0, d, q, w, acc, [&](int32_t c) { return load_bf16x8(r + c); },
                            [&](int32_t c) { return bf16_to_f32(r[c]); });
        }
        case kv_format::q8: {
            // x = s * code: the dot is s * (q . code); axpy folds s into the weight.
            const int8_t* r = reinterpret_cast<const int8_t*>(row);
            const float s = fp16_to_f32(u16(block, l.scale_offset)[t]);
            float r0 = run<DOT>(0, d, q, w * s, acc, [&](int32_t c) { return load_i8x8(r + c); },
                                [&](int32_t c) { return float(r[c]); });
            return DOT ? s * r0 : 0.0f;
        }
        case kv_format::q4:
            if (l.part == kv_part::k) {  // x = code * scale[c] + min[c], scale/min per channel
                const uint16_t* sc = u16(block, l.scale_offset);
                const uint16_t* mn = u16(block, l.min_offset);
                return run<DOT>(
                    0, d, q, w, acc,
                    [&](int32_t c) { return _mm256_fmadd_ps(load_q4x8(row, c), load_f16x8(sc + c), load_f16x8(mn + c)); },
                    [&](int32_t c) { return nib(row, c) * fp16_to_f32(sc[c]) + fp16_to_f32(mn[c]); });
            } else {  // x = code * scale[t][j] + min[t][j] for channel c in group j
                const int32_t g = l.group, ng = d / g;
                if (g % 2 != 0) return DOT ? kv_scalar::dot_row(l, block, t, q) : (kv_scalar::axpy_row(l, block, t, w, acc), 0.0f);
                const uint16_t* sc = u16(block, l.scale_offset) + size_t(t) * size_t(ng);
                const uint16_t* mn = u16(block, l.min_offset) + size_t(t) * size_t(ng);
                float sum = 0.0f;
                for (int32_t j = 0; j < ng; ++j) {
                    const float s = fp16_to_f32(sc[j]), m = fp16_to_f32(mn[j]);
                    const __m256 vs = _mm256_set1_ps(s), vm = _mm256_set1_ps(m);
                    sum += run<DOT>(j * g, (j + 1) * g, q, w, acc,
                                    [&](int32_t c) { return _mm256_fmadd_ps(load_q4x8(row, c), vs, vm); },
                                    [&](int32_t c) { return nib(row, c) * s + m; });
                }
                return sum;
            }
    }
    return 0.0f;
}

}  // namespace

float dot_row(const kv_layout& l, const void* block, int32_t t, const float* q) {
    return row_op<true>(l, block, t, q, 0.0f, nullptr);
}

void axpy_row(const kv_layout& l, const void* block, int32_t t, float w, float* acc) {
    row_op<false>(l, block, t, nullptr, w, acc);
}

}  // namespace tfu::kv_avx2
