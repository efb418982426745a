// AVX-512 (F, BW, VL, DQ) row kernels of the CPU attention frame (attention_split.h): the AVX2 kernels'
// structure (attention_rows_avx2.cpp) on 16-channel vectors, with 32 registers for more rows / heads at a time:
//   scores: rows outer, channels inner; R rows x G heads accumulators (R * G <= 16), reduced together by one
//           transpose-add tree over 16 vectors (about 3 ops per sum instead of a tree per row).
//   accum:  channels outer, rows inner; acc[hh][c .. c + 15] in registers across the tile, the weight broadcast
//           from memory (no shuffle uop).
// Nibbles are decoded 32 channels per 16-byte load: widened to 16 dwords, the low nibble is the even channel, the
// high nibble (after a shift) the odd one, and a vpermps from the table {0 .. 15} turns a nibble into its f32 code
// (vpermps reads only the index's low 4 bits, so no mask and no int->float convert). q4 keys take q * scale in
// that even/odd order per 32-channel block; q4 values (g % 32 == 0) keep the accumulators in it until finish().
// Quantized kinds fold their parameters out of the inner loop as the AVX2 kernels do (q8 row scales on the scores
// or the weights; q4 key scales into the query, q4 key mins into a per-head bias; q4 value scales into the
// weights, value mins into a per-group bias). The query stays f32: an int8 query for VNNI would put its 1/254
// rounding (relative) into every score, far above the 1e-5 output bound of the attention tests.
// Kinds with no AVX-512 form here (q4 values read as keys or accumulated with g % 16 != 0) use the AVX2 kernels.
// GCC 12's avx512fintrin.h makes its "undefined" vectors by self-initialisation, which -Wuninitialized reports
// once inlined (GCC bug 105593); the state of the pragma at the header's lines is what counts.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "backend/cpu/attention_split.h"
#include "core/fp16.h"

namespace tfu::cpu {

namespace {

inline __m512 zext(__m256 a) { return _mm512_zextps256_ps512(a); }

// The index that puts the lanes of the transpose-add tree of reduce16 back in order (see there).
inline __m512i reduce16_order() {
    alignas(64) int32_t idx[16];
    for (int k = 0; k < 16; ++k) {
        const int off = k & 12, base = k & 3;
        const int b = off == 0 ? 0 : off == 8 ? 1 : off == 4 ? 2 : 3;
        const int l = base == 0 ? 0 : base == 2 ? 1 : base == 1 ? 2 : 3;
        idx[k] = 4 * b + l;
    }
    return _mm512_load_si512(idx);
}

// out[i] = sum of the 16 lanes of v[i], i < N <= 16 (out has 16 slots). Four levels of shuffle + add, each
// halving the lanes per sum and the vectors: (v[i], v[i + 8]) by 256-bit halves, (w[i], w[i + 4]) by 128-bit
// blocks, then pairs and single lanes inside each block. Lane 4b + l of the last vector holds the sum of
// v[{0, 2, 1, 3}[l] + {0, 8, 4, 12}[b]]; one permute puts it in order.
template <int N>
inline void reduce16(const __m512* v, float* out) {
    static_assert(N >= 1 && N <= 16, "reduce16: 1 .. 16 vectors");
    const __m512 zero = _mm512_setzero_ps();
    auto at = [&](int i) { return i < N ? v[i] : zero; };
    __m512 w[8], z[4], u[2];
    for (int i = 0; i < 8; ++i) {
        const __m512 a = at(i), b = at(i + 8);
        w[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xee));
    }
    for (int i = 0; i < 4; ++i)
        z[i] = _mm512_add_ps(_mm512_shuffle_f32x4(w[i], w[i + 4], 0x88), _mm512_shuffle_f32x4(w[i], w[i + 4], 0xdd));
    for (int i = 0; i < 2; ++i)
        u[i] = _mm512_add_ps(_mm512_shuffle_ps(z[i], z[i + 2], 0x44), _mm512_shuffle_ps(z[i], z[i + 2], 0xee));
    const __m512 r = _mm512_add_ps(_mm512_shuffle_ps(u[0], u[1], 0x88), _mm512_shuffle_ps(u[0], u[1], 0xdd));
    _mm512_storeu_ps(out, _mm512_permutexvar_ps(reduce16_order(), r));
}

inline __m512 code_table() {  // f32 codes 0 .. 15, indexed by a nibble
    return _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}
inline float nibble1(const uint8_t* row, int64_t c) { return float((row[c / 2] >> (4 * (c % 2))) & 0xfu); }
// Channels c .. c + 7 (c even) in channel order, as f32 codes.
inline __m256 nibbles8(const uint8_t* row, int64_t c) {
    uint32_t w;
    std::memcpy(&w, row + c / 2, 4);
    const __m256i v = _mm256_srlv_epi32(_mm256_set1_epi32(int32_t(w)), _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28));
    return _mm256_cvtepi32_ps(_mm256_and_si256(v, _mm256_set1_epi32(0xf)));
}
// Channels c .. c + 15 (c even) in channel order: the 8 bytes widened to dwords, each duplicated, the odd lanes
// shifted by 4, then the table lookup.
inline __m512 nibbles16(const uint8_t* row, int64_t c) {
    const __m512i b = _mm512_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + c / 2)));
    const __m512i dup = _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7), b);
    const __m512i sh = _mm512_srlv_epi32(dup, _mm512_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4));
    return _mm512_permutexvar_ps(sh, code_table());
}
// Channels c .. c + 31 (c % 32 == 0) in even/odd order: even = c, c + 2, .., c + 30; odd = c + 1, .., c + 31.
inline void nibbles32(const uint8_t* row, int64_t c, __m512& even, __m512& odd) {
    const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + c / 2)));
    const __m512 tab = code_table();
    even = _mm512_permutexvar_ps(b, tab);
    odd = _mm512_permutexvar_ps(_mm512_srli_epi32(b, 4), tab);
}
// Channel order <-> even/odd order of a 32-channel block a = x[0 .. 15], b = x[16 .. 31].
inline void deinterleave32(__m512 a, __m512 b, __m512& even, __m512& odd) {
    const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    even = _mm512_permutex2var_ps(a, ie, b);
    odd = _mm512_permutex2var_ps(a, _mm512_add_epi32(ie, _mm512_set1_epi32(1)), b);
}
inline void interleave32(__m512 even, __m512 odd, __m512& a, __m512& b) {
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    a = _mm512_permutex2var_ps(even, lo, odd);
    b = _mm512_permutex2var_ps(even, _mm512_add_epi32(lo, _mm512_set1_epi32(8)), odd);
}

inline __m512 half16(const uint16_t* h) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(h)));
}
inline __m256 half8(const uint16_t* h) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h))); }
inline float f16(uint16_t h) { return _cvtsh_ss(h); }

// Decoders: load16(t, c) = x_t[c .. c + 15], load8(t, c) = x_t[c .. c + 7], load1(t, c) = x_t[c]. Those with
// pairs = true also give load32(t, c, even, odd), a 32-channel block in even/odd order.
struct dec_f32 {
    const uint8_t* r;
    size_t st;
    const float* row(int64_t t) const { return reinterpret_cast<const float*>(r + size_t(t) * st); }
    __m512 load16(int64_t t, int64_t c) const { return _mm512_loadu_ps(row(t) + c); }
    __m256 load8(int64_t t, int64_t c) const { return _mm256_loadu_ps(row(t) + c); }
    float load1(int64_t t, int64_t c) const { return row(t)[c]; }
};
struct dec_f16 {
    const uint8_t* r;
    size_t st;
    const uint16_t* row(int64_t t) const { return reinterpret_cast<const uint16_t*>(r + size_t(t) * st); }
    __m512 load16(int64_t t, int64_t c) const { return half16(row(t) + c); }
    __m256 load8(int64_t t, int64_t c) const { return half8(row(t) + c); }
    float load1(int64_t t, int64_t c) const { return fp16_to_f32(row(t)[c]); }
};
struct dec_bf16 {
    const uint8_t* r;
    size_t st;
    const uint16_t* row(int64_t t) const { return reinterpret_cast<const uint16_t*>(r + size_t(t) * st); }
    __m512 load16(int64_t t, int64_t c) const {
        const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row(t) + c));
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    __m256 load8(int64_t t, int64_t c) const {
        const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row(t) + c));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    float load1(int64_t t, int64_t c) const { return bf16_to_f32(row(t)[c]); }
};
struct dec_i8 {  // q8 codes (the row scale is applied by the caller)
    const uint8_t* r;
    size_t st;
    const int8_t* row(int64_t t) const { return reinterpret_cast<const int8_t*>(r + size_t(t) * st); }
    __m512 load16(int64_t t, int64_t c) const {
        const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row(t) + c));
        return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b));
    }
    __m256 load8(int64_t t, int64_t c) const {
        return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row(t) + c))));
    }
    float load1(int64_t t, int64_t c) const { return float(row(t)[c]); }
};
struct dec_nib {  // q4 codes (parameters applied by the caller)
    static constexpr bool pairs = true;
    const uint8_t* r;
    size_t st;
    const uint8_t* row(int64_t t) const { return r + size_t(t) * st; }
    void load32(int64_t t, int64_t c, __m512& even, __m512& odd) const { nibbles32(row(t), c, even, odd); }
    __m512 load16(int64_t t, int64_t c) const { return nibbles16(row(t), c); }
    __m256 load8(int64_t t, int64_t c) const { return nibbles8(row(t), c); }
    float load1(int64_t t, int64_t c) const { return nibble1(row(t), c); }
};
struct dec_nib_linear {  // q4 codes in channel order (16 a step)
    const uint8_t* r;
    size_t st;
    const uint8_t* row(int64_t t) const { return r + size_t(t) * st; }
    __m512 load16(int64_t t, int64_t c) const { return nibbles16(row(t), c); }
    __m256 load8(int64_t t, int64_t c) const { return nibbles8(row(t), c); }
    float load1(int64_t t, int64_t c) const { return nibble1(row(t), c); }
};
struct dec_q4_channel {  // x = code * scale[c] + min[c] (channel order)
    const uint8_t* r;
    size_t st;
    const uint16_t* sc;
    const uint16_t* mn;
    const uint8_t* row(int64_t t) const { return r + size_t(t) * st; }
    __m512 load16(int64_t t, int64_t c) const {
        return _mm512_fmadd_ps(nibbles16(row(t), c), half16(sc + c), half16(mn + c));
    }
    __m256 load8(int64_t t, int64_t c) const {
        return _mm256_fmadd_ps(nibbles8(row(t), c), half8(sc + c), half8(mn + c));
    }
    float load1(int64_t t, int64_t c) const { return nibble1(row(t), c) * f16(sc[c]) + f16(mn[c]); }
};
struct dec_q4_group16 {  // x = code * sf[t][c / 16] + mf[t][c / 16] (f32 per row and 16-channel slice; g % 16 == 0)
    const uint8_t* r;
    size_t st;
    const float* sf;
    const float* mf;
    int64_t n16;  // hd / 16
    __m512 load16(int64_t t, int64_t c) const {
        const int64_t i = t * n16 + c / 16;
        return _mm512_fmadd_ps(nibbles16(r + size_t(t) * st, c), _mm512_set1_ps(sf[i]), _mm512_set1_ps(mf[i]));
    }
    __m256 load8(int64_t, int64_t) const { return _mm256_setzero_ps(); }  // never called: hd % 16 == 0
    float load1(int64_t, int64_t) const { return 0.0f; }                 // never called
};

template <class D, class = void>
struct has_pairs { static constexpr bool value = false; };
template <class D>
struct has_pairs<D, std::void_t<decltype(D::pairs)>> { static constexpr bool value = D::pairs; };

// Rows t .. t + R - 1 for G heads: s[hh * ld + t + r] = q[hh] . x_{t + r} (+ bias[hh]). Channels: 32 a step for
// pairs decoders (q in even/odd order there), then 16, then 8 (zero-extended into the same accumulators), then
// one at a time.
template <int G, int R, class D>
inline void scores_rows(const D& d, int64_t t, int64_t hd, const float* q, const float* bias, float* s, int64_t ld) {
    __m512 a[R * G];
    for (int i = 0; i < R * G; ++i) a[i] = _mm512_setzero_ps();
    int64_t c = 0;
    if constexpr (has_pairs<D>::value)
        for (; c + 32 <= hd; c += 32) {
            __m512 x0[R], x1[R];
            for (int r = 0; r < R; ++r) d.load32(t + r, c, x0[r], x1[r]);
            for (int hh = 0; hh < G; ++hh) {
                const __m512 q0 = _mm512_loadu_ps(q + hh * hd + c), q1 = _mm512_loadu_ps(q + hh * hd + c + 16);
                for (int r = 0; r < R; ++r)
                    a[r * G + hh] = _mm512_fmadd_ps(q1, x1[r], _mm512_fmadd_ps(q0, x0[r], a[r * G + hh]));
            }
        }
    for (; c + 16 <= hd; c += 16) {
        __m512 x[R];
        for (int r = 0; r < R; ++r) x[r] = d.load16(t + r, c);
        for (int hh = 0; hh < G; ++hh) {
            const __m512 qv = _mm512_loadu_ps(q + hh * hd + c);
            for (int r = 0; r < R; ++r) a[r * G + hh] = _mm512_fmadd_ps(qv, x[r], a[r * G + hh]);
        }
    }
    if (c + 8 <= hd) {
        __m512 x[R];
        for (int r = 0; r < R; ++r) x[r] = zext(d.load8(t + r, c));
        for (int hh = 0; hh < G; ++hh) {
            const __m512 qv = zext(_mm256_loadu_ps(q + hh * hd + c));
            for (int r = 0; r < R; ++r) a[r * G + hh] = _mm512_fmadd_ps(qv, x[r], a[r * G + hh]);
        }
        c += 8;
    }
    float sum[16];
    reduce16<R * G>(a, sum);
    for (int r = 0; r < R; ++r)
        for (int hh = 0; hh < G; ++hh) {
            float v = sum[r * G + hh] + (bias ? bias[hh] : 0.0f);
            for (int64_t cc = c; cc < hd; ++cc) v += q[hh * hd + cc] * d.load1(t + r, cc);
            s[hh * ld + t + r] = v;
        }
}

template <int G, class D>
void scores_k(const D& d, int64_t tn, int64_t hd, const float* q, const float* bias, float* s, int64_t ld) {
    constexpr int R = 16 / G;  // as many rows as fill one reduce tree
    int64_t t = 0;
    for (; t + R <= tn; t += R) scores_rows<G, R>(d, t, hd, q, bias, s, ld);
    for (; t < tn; ++t) scores_rows<G, 1>(d, t, hd, q, bias, s, ld);
}

template <class D>
void scores_g(const D& d, int G, int64_t tn, int64_t hd, const float* q, float* s, int64_t ld,
              const float* bias = nullptr) {
    switch (G) {
        case 1: scores_k<1>(d, tn, hd, q, bias, s, ld); break;
        case 2: scores_k<2>(d, tn, hd, q, bias, s, ld); break;
        case 3: scores_k<3>(d, tn, hd, q, bias, s, ld); break;
        case 4: scores_k<4>(d, tn, hd, q, bias, s, ld); break;
        case 5: scores_k<5>(d, tn, hd, q, bias, s, ld); break;
        case 6: scores_k<6>(d, tn, hd, q, bias, s, ld); break;
        case 7: scores_k<7>(d, tn, hd, q, bias, s, ld); break;
        default: scores_k<8>(d, tn, hd, q, bias, s, ld); break;
    }
}

// The weights of a channel slice: p itself (w_same: head hh, row t at p[hh * ld + t]), or per q4 value group
// (w_group: the group's scale folded in; head hh, row t, group j at w[hh * ld + t * ng + j], and a bias per group
// and head at b[j * 8 + hh]).
struct w_same {
    static constexpr int64_t ts = 1;
    const float* p;
    const float* operator()(int64_t) const { return p; }
    const float* bias(int64_t) const { return nullptr; }
};
struct w_group {
    const float* w;
    const float* b;
    int64_t group, ts;  // g, ng
    const float* operator()(int64_t c) const { return w + c / group; }
    const float* bias(int64_t c) const { return b + (c / group) * 8; }
};

// K decoded vectors per row (1: a 16-channel slice; 2: a 32-channel block's even and odd halves). For hh < G and
// k < K: acc[k * 16 + hh * hd ..] (16 floats) += bias[hh] + sum_t p[hh * ld + t * ts] * x_t[k], t < tn.
template <int G, int K, class L>
inline void accum_slice(const L& load, int64_t tn, const float* p, int64_t ld, int64_t ts, const float* bias,
                        float* acc, int64_t hd) {
    constexpr int U = G * K <= 4 ? 4 : G * K <= 8 ? 2 : 1;  // independent accumulator sets over interleaved rows
    __m512 a[U][K][G];
    for (int k = 0; k < K; ++k)
        for (int hh = 0; hh < G; ++hh) {
            a[0][k][hh] = _mm512_loadu_ps(acc + hh * hd + k * 16);
            if (bias) a[0][k][hh] = _mm512_add_ps(a[0][k][hh], _mm512_set1_ps(bias[hh]));
            for (int u = 1; u < U; ++u) a[u][k][hh] = _mm512_setzero_ps();
        }
    auto step = [&](int u, int64_t t) {
        __m512 x[K];
        load(t, x);
        for (int hh = 0; hh < G; ++hh) {
            const __m512 pw = _mm512_set1_ps(p[hh * ld + t * ts]);  // a broadcast load folded into the FMA
            for (int k = 0; k < K; ++k) a[u][k][hh] = _mm512_fmadd_ps(pw, x[k], a[u][k][hh]);
        }
    };
    int64_t t = 0;
    for (; t + U <= tn; t += U)
        for (int u = 0; u < U; ++u) step(u, t + u);
    for (; t < tn; ++t) step(0, t);
    for (int k = 0; k < K; ++k)
        for (int hh = 0; hh < G; ++hh) {
            __m512 v = a[0][k][hh];
            for (int u = 1; u < U; ++u) v = _mm512_add_ps(v, a[u][k][hh]);
            _mm512_storeu_ps(acc + hh * hd + k * 16, v);
        }
}

// acc in channel order, or (pairs decoders) in even/odd order per 32-channel block below hd & ~31. An 8-channel
// tail uses masked 16-lane loads and stores of acc.
template <int G, class D, class W>
void accum_k(const D& d, int64_t tn, int64_t hd, const W& wt, int64_t ld, float* acc) {
    int64_t c = 0;
    if constexpr (has_pairs<D>::value)
        for (; c + 32 <= hd; c += 32)
            accum_slice<G, 2>([&](int64_t t, __m512* x) { d.load32(t, c, x[0], x[1]); }, tn, wt(c), ld, wt.ts,
                              wt.bias(c), acc + c, hd);
    for (; c + 16 <= hd; c += 16)
        accum_slice<G, 1>([&](int64_t t, __m512* x) { x[0] = d.load16(t, c); }, tn, wt(c), ld, wt.ts, wt.bias(c),
                          acc + c, hd);
    for (; c < hd; ++c) {
        const float* p = wt(c);
        const float* b = wt.bias(c);
        for (int64_t t = 0; t < tn; ++t) {
            const float v = d.load1(t, c);
            for (int hh = 0; hh < G; ++hh) acc[hh * hd + c] += p[hh * ld + t * wt.ts] * v;
        }
        if (b)
            for (int hh = 0; hh < G; ++hh) acc[hh * hd + c] += b[hh];
    }
}

template <class D, class W>
void accum_g(const D& d, int G, int64_t tn, int64_t hd, const W& p, int64_t ld, float* acc) {
    switch (G) {
        case 1: accum_k<1>(d, tn, hd, p, ld, acc); break;
        case 2: accum_k<2>(d, tn, hd, p, ld, acc); break;
        case 3: accum_k<3>(d, tn, hd, p, ld, acc); break;
        case 4: accum_k<4>(d, tn, hd, p, ld, acc); break;
        case 5: accum_k<5>(d, tn, hd, p, ld, acc); break;
        case 6: accum_k<6>(d, tn, hd, p, ld, acc); break;
        case 7: accum_k<7>(d, tn, hd, p, ld, acc); break;
        default: accum_k<8>(d, tn, hd, p, ld, acc); break;
    }
}

// dst[i] = h[i] as f32, i < n.
void f16_to_f32(const uint16_t* h, int64_t n, float* dst) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, half16(h + i));
    for (; i < n; ++i) dst[i] = f16(h[i]);
}

// x[hh * ld + t] *= sc[t] (f16) for hh < G, t < tn: the q8 row scales, on the scores or on the weights.
void scale_rows(float* x, int64_t ld, int G, int64_t tn, const uint16_t* sc) {
    for (int64_t t = 0; t < tn; t += 16) {
        const __mmask16 m = tn - t >= 16 ? __mmask16(0xffff) : __mmask16((1u << (tn - t)) - 1);
        const __m512 v = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, sc + t));
        for (int hh = 0; hh < G; ++hh) {
            float* y = x + hh * ld + t;
            _mm512_mask_storeu_ps(y, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, y), v));
        }
    }
}

// q4 keys (per channel): q . x_t = (q * scale) . code_t + q . min. qs = q * scale is formed once per tile, its
// channels below hd & ~31 in the even/odd order of nibbles32; bias[hh] = q[hh] . min is added to the scores.
void scores_q4_channel(const kv_tile& x, int64_t tn, int64_t hd, int G, const float* q, float* s, int64_t ld,
                       float* work) {
    const int64_t n32 = hd & ~int64_t(31);
    float* qs = work;             // (G, hd)
    float* bias = work + 8 * hd;  // (16)
    __m512 bv[16];
    for (int hh = 0; hh < 16; ++hh) bv[hh] = _mm512_setzero_ps();
    int64_t c = 0;
    for (; c < n32; c += 32) {
        const __m512 s0 = half16(x.scale + c), s1 = half16(x.scale + c + 16);
        const __m512 m0 = half16(x.min + c), m1 = half16(x.min + c + 16);
        for (int hh = 0; hh < G; ++hh) {
            const __m512 q0 = _mm512_loadu_ps(q + hh * hd + c), q1 = _mm512_loadu_ps(q + hh * hd + c + 16);
            bv[hh] = _mm512_fmadd_ps(q1, m1, _mm512_fmadd_ps(q0, m0, bv[hh]));
            __m512 even, odd;
            deinterleave32(_mm512_mul_ps(q0, s0), _mm512_mul_ps(q1, s1), even, odd);
            _mm512_storeu_ps(qs + hh * hd + c, even);
            _mm512_storeu_ps(qs + hh * hd + c + 16, odd);
        }
    }
    for (; c + 16 <= hd; c += 16) {
        const __m512 s0 = half16(x.scale + c), m0 = half16(x.min + c);
        for (int hh = 0; hh < G; ++hh) {
            const __m512 q0 = _mm512_loadu_ps(q + hh * hd + c);
            bv[hh] = _mm512_fmadd_ps(q0, m0, bv[hh]);
            _mm512_storeu_ps(qs + hh * hd + c, _mm512_mul_ps(q0, s0));
        }
    }
    reduce16<8>(bv, bias);  // lanes hh >= G are 0
    for (; c < hd; ++c) {
        const float sc = f16(x.scale[c]), mn = f16(x.min[c]);
        for (int hh = 0; hh < G; ++hh) {
            qs[hh * hd + c] = q[hh * hd + c] * sc;
            bias[hh] += q[hh * hd + c] * mn;
        }
    }
    scores_g(dec_nib{x.rows, x.stride}, G, tn, hd, qs, s, ld, bias);  // the bias added in each row's reduce
}

// q4 values read as keys, g % 16 == 0: per row and 16-channel slice f32 parameters in work.
dec_q4_group16 q4_group_params(const kv_tile& x, int64_t tn, int64_t hd, float* work) {
    const int64_t n16 = hd / 16, ng = hd / x.group;
    float* sf = work;
    float* mf = work + tn * n16;
    for (int64_t t = 0; t < tn; ++t)
        for (int64_t i = 0; i < n16; ++i) {
            const size_t k = size_t(t * ng + (i * 16) / x.group);
            sf[t * n16 + i] = f16(x.scale[k]);
            mf[t * n16 + i] = f16(x.min[k]);
        }
    return dec_q4_group16{x.rows, x.stride, sf, mf, n16};
}

// q4 values (per token, groups of g channels, g % 16 == 0): for c in group j,
//   acc[hh][c] += sum_t p[hh][t] (code_t[c] s_t[j] + m_t[j]) = sum_t w[hh][t][j] code_t[c] + b[hh][j],
// w[hh][t][j] = p[hh][t] s_t[j], b[hh][j] = sum_t p[hh][t] m_t[j] (as in the AVX2 kernels). When ng divides 16,
// 16 (t, j) pairs a vector: rows i / ng .. i / ng + 16 / ng - 1 of p loaded (masked, so only rows < tn) and
// expanded by a lane permute (lane l takes row i / ng + l / ng). The bias accumulator's lane l sums group l % ng;
// the lanes of a group are folded together at the end.
template <int G>
void q4_group_weights(const float* p, int64_t ld, const float* sf, const float* mf, int64_t n, int64_t ng,
                      int64_t lw, float* w, float* b) {
    int64_t i0 = 0;  // the (t, j) pairs below i0 are done by vectors
    if (16 % ng == 0) {
        alignas(64) int32_t lane_row[16];
        for (int l = 0; l < 16; ++l) lane_row[l] = int32_t(l / ng);
        const __m512i vidx = _mm512_load_si512(lane_row);
        const __mmask16 rows_mask = __mmask16((1u << (16 / ng)) - 1);
        i0 = n & ~int64_t(15);
        __m512 bacc[G];
        for (int hh = 0; hh < G; ++hh) bacc[hh] = _mm512_setzero_ps();
        for (int64_t i = 0; i < i0; i += 16) {  // the parameters loaded once for the G heads
            const __m512 sv = _mm512_loadu_ps(sf + i), mv = _mm512_loadu_ps(mf + i);
            for (int hh = 0; hh < G; ++hh) {
                const __m512 pr = _mm512_maskz_loadu_ps(rows_mask, p + hh * ld + i / ng);
                const __m512 pe = _mm512_permutexvar_ps(vidx, pr);
                _mm512_storeu_ps(w + hh * lw + i, _mm512_mul_ps(pe, sv));
                bacc[hh] = _mm512_fmadd_ps(pe, mv, bacc[hh]);
            }
        }
        for (int hh = 0; hh < G; ++hh) {
            __m512 v = bacc[hh];
            if (ng <= 8) v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0x4e));  // lanes l, l + 8
            if (ng <= 4) v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0xb1));  // l, l + 4
            if (ng <= 2) v = _mm512_add_ps(v, _mm512_permute_ps(v, 0x4e));        // l, l + 2
            if (ng <= 1) v = _mm512_add_ps(v, _mm512_permute_ps(v, 0xb1));        // l, l + 1
            alignas(64) float bl[16];
            _mm512_store_ps(bl, v);
            for (int64_t j = 0; j < ng; ++j) b[j * 8 + hh] = bl[j];
        }
    } else {
        for (int64_t j = 0; j < ng; ++j)
            for (int hh = 0; hh < G; ++hh) b[j * 8 + hh] = 0.0f;
    }
    for (int hh = 0; hh < G; ++hh)
        for (int64_t i = i0; i < n; ++i) {
            const float pt = p[hh * ld + i / ng];
            w[hh * lw + i] = pt * sf[i];
            b[(i % ng) * 8 + hh] += pt * mf[i];
        }
}

// Work: scales and mins (2, lw) + weights (G, lw) + biases (ng, 8), lw = tn * ng rounded up to 8: the size the
// AVX2 kernel uses, within attn_work_floats().
void accum_q4_group(const kv_tile& x, int64_t tn, int64_t hd, int G, const float* p, int64_t ld, float* acc,
                    float* work) {
    const int64_t g = x.group, ng = hd / g, n = tn * ng, lw = (n + 7) & ~int64_t(7);
    float* sf = work;       // (tn, ng) scales as f32
    float* mf = sf + lw;    // (tn, ng) mins
    float* w = mf + lw;     // (G, lw)
    float* b = w + G * lw;  // (ng, 8)
    f16_to_f32(x.scale, n, sf);
    f16_to_f32(x.min, n, mf);
    switch (G) {
        case 1: q4_group_weights<1>(p, ld, sf, mf, n, ng, lw, w, b); break;
        case 2: q4_group_weights<2>(p, ld, sf, mf, n, ng, lw, w, b); break;
        case 3: q4_group_weights<3>(p, ld, sf, mf, n, ng, lw, w, b); break;
        case 4: q4_group_weights<4>(p, ld, sf, mf, n, ng, lw, w, b); break;
        case 5: q4_group_weights<5>(p, ld, sf, mf, n, ng, lw, w, b); break;
        case 6: q4_group_weights<6>(p, ld, sf, mf, n, ng, lw, w, b); break;
        case 7: q4_group_weights<7>(p, ld, sf, mf, n, ng, lw, w, b); break;
        default: q4_group_weights<8>(p, ld, sf, mf, n, ng, lw, w, b); break;
    }
    const w_group wg{w, b, g, ng};
    if (g % 32 == 0) accum_g(dec_nib{x.rows, x.stride}, G, tn, hd, wg, lw, acc);  // 32-channel blocks even/odd
    else accum_g(dec_nib_linear{x.rows, x.stride}, G, tn, hd, wg, lw, acc);
}

// After the accum calls of a task: q4 values with g % 32 == 0 left acc in even/odd order per 32-channel block.
// (q4 values with g % 16 != 0 went to the AVX2 accum, which leaves acc in channel order for them.)
void finish(const kv_tile& v, int64_t hd, int G, float* acc) {
    if (v.kind != tile_kind::q4_group || v.group % 32 != 0) return;
    for (int hh = 0; hh < G; ++hh)
        for (int64_t c = 0; c + 32 <= hd; c += 32) {
            float* y = acc + hh * hd + c;
            __m512 a0, a1;
            interleave32(_mm512_loadu_ps(y), _mm512_loadu_ps(y + 16), a0, a1);
            _mm512_storeu_ps(y, a0);
            _mm512_storeu_ps(y + 16, a1);
        }
}

void scores(const kv_tile& x, int64_t tn, int64_t hd, int G, const float* q, float* s, int64_t ld, float* work) {
    switch (x.kind) {
        case tile_kind::f32: scores_g(dec_f32{x.rows, x.stride}, G, tn, hd, q, s, ld); break;
        case tile_kind::f16: scores_g(dec_f16{x.rows, x.stride}, G, tn, hd, q, s, ld); break;
        case tile_kind::bf16: scores_g(dec_bf16{x.rows, x.stride}, G, tn, hd, q, s, ld); break;
        case tile_kind::q8:  // q . (scale_t code_t) = scale_t (q . code_t)
            scores_g(dec_i8{x.rows, x.stride}, G, tn, hd, q, s, ld);
            scale_rows(s, ld, G, tn, x.scale);
            break;
        case tile_kind::q4_channel: scores_q4_channel(x, tn, hd, G, q, s, ld, work); break;
        case tile_kind::q4_group:
            if (x.group % 16 == 0) scores_g(q4_group_params(x, tn, hd, work), G, tn, hd, q, s, ld);
            else attn_kernels_avx2().scores(x, tn, hd, G, q, s, ld, work);
            break;
    }
}

void accum(const kv_tile& x, int64_t tn, int64_t hd, int G, float* p, int64_t ld, float* acc, float* work) {
    const w_same ps{p};
    switch (x.kind) {
        case tile_kind::f32: accum_g(dec_f32{x.rows, x.stride}, G, tn, hd, ps, ld, acc); break;
        case tile_kind::f16: accum_g(dec_f16{x.rows, x.stride}, G, tn, hd, ps, ld, acc); break;
        case tile_kind::bf16: accum_g(dec_bf16{x.rows, x.stride}, G, tn, hd, ps, ld, acc); break;
        case tile_kind::q8:  // p * (scale_t code_t) = (p * scale_t) code_t
            scale_rows(p, ld, G, tn, x.scale);
            accum_g(dec_i8{x.rows, x.stride}, G, tn, hd, ps, ld, acc);
            break;
        case tile_kind::q4_channel:
            accum_g(dec_q4_channel{x.rows, x.stride, x.scale, x.min}, G, tn, hd, ps, ld, acc);
            break;
        case tile_kind::q4_group:
            if (x.group % 16 == 0) accum_q4_group(x, tn, hd, G, p, ld, acc, work);
            else attn_kernels_avx2().accum(x, tn, hd, G, p, ld, acc, work);
            break;
    }
}

float max_of(const float* s, int64_t n) {
    __m512 v = _mm512_set1_ps(s[0]);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1);
        v = _mm512_mask_max_ps(v, m, v, _mm512_maskz_loadu_ps(m, s + i));
    }
    return _mm512_reduce_max_ps(v);
}

// exp(x) for x <= 0 .. 88, as exp8 of attention_rows_avx2.cpp: x = n ln2 + r, |r| <= ln2 / 2, e^r by the
// degree-7 polynomial of Cephes' expf (relative error about 1e-7), 2^n put into the exponent bits.
inline __m512 exp16(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.3f));
    x = _mm512_min_ps(x, _mm512_set1_ps(88.3f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);  // ln2 split in two (Cody-Waite)
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 y = _mm512_set1_ps(1.9875691500e-4f);
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.3981999507e-3f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(8.3334519073e-3f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(4.1665795894e-2f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.6666665459e-1f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(5.0000001201e-1f));
    y = _mm512_fmadd_ps(y, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(y, _mm512_castsi512_ps(e));
}

float exp_sum(float* s, int64_t n, float m) {
    const __m512 vm = _mm512_set1_ps(m);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1);
        const __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, s + i), vm));
        _mm512_mask_storeu_ps(s + i, k, e);
        acc = _mm512_mask_add_ps(acc, k, acc, e);
    }
    return _mm512_reduce_add_ps(acc);
}

void scale(float* x, float a, int64_t n) {
    const __m512 va = _mm512_set1_ps(a);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(x + i, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + i), va));
    }
}

}  // namespace

const attn_kernels& attn_kernels_avx512() {
    static const attn_kernels k{scores, accum, finish, max_of, exp_sum, scale};
    return k;
}

}  // namespace tfu::cpu
