// AVX2+FMA kernels of the fast CPU path (compiled with -mavx2 -mfma -mf16c; used only when the CPU has them).
// Integer pattern: weight levels as unsigned bytes (or |w| with the sign moved onto the activation) times
// signed Q8 activation bytes with _mm256_maddubs_epi16, pairs summed to int32 with _mm256_madd_epi16, then one
// FMA per block into float accumulators. Q2_K, Q3_K, Q5_K have no AVX2 kernel here (scalar integer path).
// Self-contained on purpose: no shared inline helpers or templates (see vec_dot_kernels.h).
#include <immintrin.h>

#include <cstring>

#include "backend/simd_avx2.h"
#include "backend/cpu/vec_dot_kernels.h"
#include "core/quant.h"

namespace tfu::cpu::kernels {

namespace {

inline float half_to_float(uint16_t h) { return _cvtsh_ss(h); }

using avx2_util::hsum;

inline __m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// 16 bytes of packed nibbles -> 32 bytes: low nibbles (elements 0..15), then high nibbles (elements 16..31).
inline __m256i nibbles_32(const uint8_t* qs) {
    const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
    const __m256i v = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0f));
}

// 32 bits (little-endian bytes) -> 32 bytes, 0xff where bit i of the word is set.
inline __m256i bits_to_bytes(const uint8_t* p) {
    uint32_t x;
    std::memcpy(&x, p, 4);
    const __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,  //
                                          2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32(int(x)), shuf);  // byte i = byte i/8 of x
    const __m256i bit = _mm256_set1_epi64x(int64_t(0x8040201008040201ULL));  // byte i -> 1 << (i % 8)
    return _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
}

// 8 int32 sums of products of adjacent signed bytes (x, y in [-128, 127], y != -128), as floats.
inline __m256 dot_i8(__m256i x, __m256i y) {
    const __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
}
// Same with unsigned x (levels up to 63).
inline __m256 dot_u8(__m256i ux, __m256i y) {
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(ux, y), _mm256_set1_epi16(1)));
}
// Sum of 32 signed bytes, as 8 int32 partial sums in float.
inline __m256 sum_i8(__m256i y) { return dot_u8(_mm256_set1_epi8(1), y); }

// ---- plain types ----------------------------------------------------------------------------------------------

float dot_f32(const void* w, const void* a, int64_t n) {
    const float* x = static_cast<const float*>(w);
    const float* y = static_cast<const float*>(a);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps(),
           acc3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), acc1);
        acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16), acc2);
        acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24), acc3);
    }
    for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), acc0);
    float s = hsum(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
    for (; i < n; ++i) s += x[i] * y[i];
    return s;
}

inline __m256 load_f16x8(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
inline __m256 load_bf16x8(const uint16_t* p) {
    const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

float dot_f16(const void* w, const void* a, int64_t n) {
    const uint16_t* x = static_cast<const uint16_t*>(w);
    const uint16_t* y = static_cast<const uint16_t*>(a);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps(),
           acc3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        acc0 = _mm256_fmadd_ps(load_f16x8(x + i), load_f16x8(y + i), acc0);
        acc1 = _mm256_fmadd_ps(load_f16x8(x + i + 8), load_f16x8(y + i + 8), acc1);
        acc2 = _mm256_fmadd_ps(load_f16x8(x + i + 16), load_f16x8(y + i + 16), acc2);
        acc3 = _mm256_fmadd_ps(load_f16x8(x + i + 24), load_f16x8(y + i + 24), acc3);
    }
    for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(load_f16x8(x + i), load_f16x8(y + i), acc0);
    float s = hsum(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
    for (; i < n; ++i) s += half_to_float(x[i]) * half_to_float(y[i]);
    return s;
}

float dot_bf16(const void* w, const void* a, int64_t n) {
    const uint16_t* x = static_cast<const uint16_t*>(w);
    const uint16_t* y = static_cast<const uint16_t*>(a);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(load_bf16x8(x + i), load_bf16x8(y + i), acc0);
        acc1 = _mm256_fmadd_ps(load_bf16x8(x + i + 8), load_bf16x8(y + i + 8), acc1);
    }
    for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(load_bf16x8(x + i), load_bf16x8(y + i), acc0);
    float s = hsum(_mm256_add_ps(acc0, acc1));
    for (; i < n; ++i) {
        const uint32_t bx = uint32_t(x[i]) << 16, by = uint32_t(y[i]) << 16;
        float fx, fy;
        std::memcpy(&fx, &bx, 4);
        std::memcpy(&fy, &by, 4);
        s += fx * fy;
    }
    return s;
}

// ---- 32-element weight blocks x Q8_0 ----------------------------------------------------------------------------

float dot_q4_0(const void* w, const void* a, int64_t n) {
    const block_q4_0* x = static_cast<const block_q4_0*>(w);
    const block_q8_0* y = static_cast<const block_q8_0*>(a);
    const __m256i off = _mm256_set1_epi8(8);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    const int64_t nb = n / 32;
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {  // two blocks per step: independent accumulators hide FMA latency
        const __m256i q0 = _mm256_sub_epi8(nibbles_32(x[i].qs), off);
        const __m256i q1 = _mm256_sub_epi8(nibbles_32(x[i + 1].qs), off);
        const __m256 d0 = _mm256_set1_ps(half_to_float(x[i].d) * half_to_float(y[i].d));
        const __m256 d1 = _mm256_set1_ps(half_to_float(x[i + 1].d) * half_to_float(y[i + 1].d));
        acc0 = _mm256_fmadd_ps(d0, dot_i8(q0, load32(y[i].qs)), acc0);
        acc1 = _mm256_fmadd_ps(d1, dot_i8(q1, load32(y[i + 1].qs)), acc1);
    }
    for (; i < nb; ++i) {
        const __m256i q = _mm256_sub_epi8(nibbles_32(x[i].qs), off);
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(half_to_float(x[i].d) * half_to_float(y[i].d)),
                               dot_i8(q, load32(y[i].qs)), acc0);
    }
    return hsum(_mm256_add_ps(acc0, acc1));
}

// x = d q + m: sum = d da sum(q a) + m da sum(a).
float dot_q4_1(const void* w, const void* a, int64_t n) {
    const block_q4_1* x = static_cast<const block_q4_1*>(w);
    const block_q8_0* y = static_cast<const block_q8_0*>(a);
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / 32; ++i) {
        const float da = half_to_float(y[i].d);
        const __m256i ya = load32(y[i].qs);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(half_to_float(x[i].d) * da), dot_u8(nibbles_32(x[i].qs), ya), acc);
        accm = _mm256_fmadd_ps(_mm256_set1_ps(half_to_float(x[i].m) * da), sum_i8(ya), accm);
    }
    return hsum(_mm256_add_ps(acc, accm));
}

// Q5_0 level - 16 as a signed byte: low nibble | 0xf0 where bit 4 is clear (= nibble - 16), else the nibble.
float dot_q5_0(const void* w, const void* a, int64_t n) {
    const block_q5_0* x = static_cast<const block_q5_0*>(w);
    const block_q8_0* y = static_cast<const block_q8_0*>(a);
    const __m256i hi_mask = _mm256_set1_epi8(char(0xf0));
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / 32; ++i) {
        const __m256i q = _mm256_or_si256(nibbles_32(x[i].qs), _mm256_andnot_si256(bits_to_bytes(x[i].qh), hi_mask));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(half_to_float(x[i].d) * half_to_float(y[i].d)), dot_i8(q, load32(y[i].qs)),
                              acc);
    }
    return hsum(acc);
}

float dot_q5_1(const void* w, const void* a, int64_t n) {
    const block_q5_1* x = static_cast<const block_q5_1*>(w);
    const block_q8_0* y = static_cast<const block_q8_0*>(a);
    const __m256i bit4 = _mm256_set1_epi8(0x10);
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / 32; ++i) {
        const float da = half_to_float(y[i].d);
        const __m256i ya = load32(y[i].qs);
        const __m256i q = _mm256_or_si256(nibbles_32(x[i].qs), _mm256_and_si256(bits_to_bytes(x[i].qh), bit4));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(half_to_float(x[i].d) * da), dot_u8(q, ya), acc);
        accm = _mm256_fmadd_ps(_mm256_set1_ps(half_to_float(x[i].m) * da), sum_i8(ya), accm);
    }
    return hsum(_mm256_add_ps(acc, accm));
}

// Weights may hold -128 (files from other writers): |w| = 128 still fits maddubs' unsigned operand, and the
// activations are in [-127, 127] by construction.
float dot_q8_0(const void* w, const void* a, int64_t n) {
    const block_q8_0* x = static_cast<const block_q8_0*>(w);
    const block_q8_0* y = static_cast<const block_q8_0*>(a);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    const int64_t nb = n / 32;
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(half_to_float(x[i].d) * half_to_float(y[i].d)),
                               dot_i8(load32(x[i].qs), load32(y[i].qs)), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(half_to_float(x[i + 1].d) * half_to_float(y[i + 1].d)),
                               dot_i8(load32(x[i + 1].qs), load32(y[i + 1].qs)), acc1);
    }
    for (; i < nb; ++i)
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(half_to_float(x[i].d) * half_to_float(y[i].d)),
                               dot_i8(load32(x[i].qs), load32(y[i].qs)), acc0);
    return hsum(_mm256_add_ps(acc0, acc1));
}

// ---- K-quants x Q8_K ------------------------------------------------------------------------------------------

// Q4_K: per 64 elements c, one 32-byte load of qs gives sub-block 2c (low nibbles) and 2c+1 (high nibbles).
// Int16 products are at most 15 * 127 * 2; int32 lanes stay below 8 * 2 * 63 * 3810.
float dot_q4_K(const void* w, const void* a, int64_t n) {
    const block_q4_K* x = static_cast<const block_q4_K*>(w);
    const block_q8_K* y = static_cast<const block_q8_K*>(a);
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256 acc = _mm256_setzero_ps();
    float mins = 0.0f;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const uint8_t* s = x[i].scales;
        int sc[8], m[8];
        for (int j = 0; j < 4; ++j) {
            sc[j] = s[j] & 63;
            m[j] = s[j + 4] & 63;
            sc[j + 4] = (s[j + 8] & 0x0f) | (s[j] >> 6) << 4;
            m[j + 4] = (s[j + 8] >> 4) | (s[j + 4] >> 6) << 4;
        }
        int sm = 0;
        for (int j = 0; j < 8; ++j) sm += m[j] * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
        mins += y[i].d * half_to_float(x[i].dmin) * float(sm);

        __m256i sumi = _mm256_setzero_si256();
        for (int c = 0; c < 4; ++c) {
            const __m256i q = load32(x[i].qs + 32 * c);
            const __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            const __m256i p0 = _mm256_maddubs_epi16(lo, load32(y[i].qs + 64 * c));
            const __m256i p1 = _mm256_maddubs_epi16(hi, load32(y[i].qs + 64 * c + 32));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p0, _mm256_set1_epi16(int16_t(sc[2 * c]))));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p1, _mm256_set1_epi16(int16_t(sc[2 * c + 1]))));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * half_to_float(x[i].d)), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum(acc) - mins;
}

// Q6_K: per half h, loads ql[64h..+63] and qh[32h..+31] and builds the four 32-element level vectors (0..63);
// the -32 offset is applied afterwards through the activation sums: sum sc*(u-32)*a = sum sc*u*a - 32 sum sc*bsum.
// Within a 32-byte vector, bytes 0..15 and 16..31 belong to consecutive sub-blocks (scales sc[j], sc[j+1]).
float dot_q6_K(const void* w, const void* a, int64_t n) {
    const block_q6_K* x = static_cast<const block_q6_K*>(w);
    const block_q8_K* y = static_cast<const block_q8_K*>(a);
    const __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(0x03);
    __m256 acc = _mm256_setzero_ps();
    float offs = 0.0f;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const int8_t* sc = x[i].scales;
        int sb = 0;
        for (int j = 0; j < 16; ++j) sb += sc[j] * y[i].bsums[j];
        const float d = y[i].d * half_to_float(x[i].d);
        offs += 32.0f * d * float(sb);

        __m256i sumi = _mm256_setzero_si256();
        for (int h = 0; h < 2; ++h) {
            const __m256i ql0 = load32(x[i].ql + 64 * h), ql1 = load32(x[i].ql + 64 * h + 32);
            const __m256i qh = load32(x[i].qh + 32 * h);
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4));
            q[1] = _mm256_or_si256(_mm256_and_si256(ql1, m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m2), 4));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m2), 4));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m2), 4));
            for (int k = 0; k < 4; ++k) {
                const int j = 8 * h + 2 * k;
                const __m256i p = _mm256_maddubs_epi16(q[k], load32(y[i].qs + 128 * h + 32 * k));
                const __m256i s = _mm256_set_m128i(_mm_set1_epi16(sc[j + 1]), _mm_set1_epi16(sc[j]));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, s));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum(acc) - offs;
}

// ---- activation conversions (same float arithmetic as the scalar versions, so identical bytes) -----------------

inline float hmax(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

// 32 floats times id, rounded to nearest even, packed to 32 int8 in element order.
inline void round_pack_32(const float* x, __m256 id, int8_t* out) {
    const int mode = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    const __m256i i0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x), id), mode));
    const __m256i i1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 8), id), mode));
    const __m256i i2 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 16), id), mode));
    const __m256i i3 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 24), id), mode));
    // packs work per 128-bit lane: the result holds dwords in order 0,4,1,5,2,6,3,7; undo with a permute
    const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out),
                        _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
}

inline __m256 abs_max_32(const float* x, __m256 m) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int k = 0; k < 32; k += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + k)));
    return m;
}

void quantize_q8_0_act(const float* x, void* y, int64_t n) {
    block_q8_0* b = static_cast<block_q8_0*>(y);
    for (int64_t i = 0; i < n / 32; ++i, x += 32) {
        const float amax = hmax(abs_max_32(x, _mm256_setzero_ps()));
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = _cvtss_sh(d, 0);  // round to nearest even
        round_pack_32(x, _mm256_set1_ps(id), b[i].qs);
    }
}

void quantize_q8_K_act(const float* x, void* y, int64_t n) {
    block_q8_K* b = static_cast<block_q8_K*>(y);
    for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
        __m256 m = _mm256_setzero_ps();
        for (int k = 0; k < QK_K; k += 32) m = abs_max_32(x + k, m);
        const float amax = hmax(m);
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = d;
        for (int k = 0; k < QK_K; k += 32) round_pack_32(x + k, _mm256_set1_ps(id), b[i].qs + k);
        for (int j = 0; j < 16; ++j) {  // 16-byte sums: widen to int16 and add pairs
            const __m256i v = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b[i].qs + 16 * j)));
            const __m256i s32 = _mm256_madd_epi16(v, _mm256_set1_epi16(1));
            __m128i s = _mm_add_epi32(_mm256_castsi256_si128(s32), _mm256_extracti128_si256(s32, 1));
            s = _mm_hadd_epi32(s, s);
            s = _mm_hadd_epi32(s, s);
            b[i].bsums[j] = int16_t(_mm_cvtsi128_si32(s));
        }
    }
}

void convert_f16(const float* x, void* y, int64_t n) {
    uint16_t* out = static_cast<uint16_t*>(y);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), 0));
    for (; i < n; ++i) out[i] = _cvtss_sh(x[i], 0);
}

}  // namespace

vec_dot_fn avx2_vec_dot(dtype w) {
    switch (w) {
        case dtype::F32: return dot_f32;
        case dtype::F16: return dot_f16;
        case dtype::BF16: return dot_bf16;
        case dtype::Q4_0: return dot_q4_0;
        case dtype::Q4_1: return dot_q4_1;
        case dtype::Q5_0: return dot_q5_0;
        case dtype::Q5_1: return dot_q5_1;
        case dtype::Q8_0: return dot_q8_0;
        case dtype::Q4_K: return dot_q4_K;
        case dtype::Q6_K: return dot_q6_K;
        default: return nullptr;  // Q2_K, Q3_K, Q5_K: scalar integer kernels
    }
}

quantize_fn avx2_quantize(dtype act) {
    switch (act) {
        case dtype::Q8_0: return quantize_q8_0_act;
        case dtype::Q8_K: return quantize_q8_K_act;
        case dtype::F16: return convert_f16;
        default: return nullptr;  // F32, BF16: scalar conversion
    }
}

}  // namespace tfu::cpu::kernels
