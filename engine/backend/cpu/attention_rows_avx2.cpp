// AVX2/FMA/F16C row kernels of the CPU attention frame (attention_split.h). Each 8-channel slice of a K/V row is
// decoded once in a register (f16 by F16C, bf16 by a shift, int8 and nibbles widened to f32) and used by all G
// heads of the sub-group, whose accumulators stay in registers:
//   scores: rows outer, channels inner; R rows at a time so that R * G independent FMA chains hide the latency;
//           G row sums reduced together by a horizontal-add tree.
//   accum:  channels outer, rows inner; acc[hh][c .. c + 7] in registers across the tile.
// Quantized kinds fold their parameters out of the inner loop, so that it is the f16 loop with another decode:
//   q8:        the scores / the weights times the row scales (8 rows a vector multiply, scales by F16C).
//   q4 keys:   q . x = (q * scale) . code + q . min (per channel), q * scale formed once per tile.
//   q4 values: acc += sum_t (p_t * scale_t,j) code_t + sum_t p_t * min_t,j for channels of group j: the weights
//              p * scale are formed once per tile, the min term is a bias added once per tile.
// Nibbles are decoded 16 channels per 8-byte load (even channels in one register, odd in the other), so q4 keys
// take q * scale in that order and q4 values keep the accumulators in it until finish().
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "backend/simd_avx2.h"
#include "backend/cpu/attention_split.h"
#include "core/fp16.h"

namespace tfu::cpu {

namespace {

using avx2_util::hsum;

// out[i] = sum of the lanes of a[i] (+ bias[i] where bias is not null), i < G (out and bias have 8 slots).
template <int G>
inline void reduce(const __m256* a, const float* bias, float* out) {
    if constexpr (G < 3) {
        for (int i = 0; i < G; ++i) out[i] = bias ? hsum(a[i]) + bias[i] : hsum(a[i]);
    } else {
        const __m256 z = _mm256_setzero_ps();
        auto at = [&](int i) { return i < G ? a[i] : z; };
        const __m256 h01 = _mm256_hadd_ps(at(0), at(1)), h23 = _mm256_hadd_ps(at(2), at(3));
        const __m256 h45 = _mm256_hadd_ps(at(4), at(5)), h67 = _mm256_hadd_ps(at(6), at(7));
        const __m256 h03 = _mm256_hadd_ps(h01, h23), h47 = _mm256_hadd_ps(h45, h67);
        // h03 = [a0 a1 a2 a3 partial sums of lanes 0-3 | the same of lanes 4-7]; h47 likewise for a4 .. a7.
        const __m256 lo = _mm256_permute2f128_ps(h03, h47, 0x20), hi = _mm256_permute2f128_ps(h03, h47, 0x31);
        const __m256 sum = _mm256_add_ps(lo, hi);
        _mm256_storeu_ps(out, bias ? _mm256_add_ps(sum, _mm256_loadu_ps(bias)) : sum);
    }
}

inline __m256 nibbles8(const uint8_t* row, int64_t c) {  // channels c .. c + 7 (c even) as f32 codes 0 .. 15
    uint32_t w;
    std::memcpy(&w, row + c / 2, 4);
    const __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
    const __m256i v = _mm256_srlv_epi32(_mm256_set1_epi32(int32_t(w)), shifts);
    return _mm256_cvtepi32_ps(_mm256_and_si256(v, _mm256_set1_epi32(0xf)));
}
inline float nibble1(const uint8_t* row, int64_t c) { return float((row[c / 2] >> (4 * (c % 2))) & 0xfu); }
// The 16 channels c0 .. c0 + 15 (c0 a multiple of 16) of a nibble row are its 8 bytes c0 / 2 ...: widened to 8
// lanes, byte & 0xf is channels c0, c0 + 2, .., c0 + 14 and byte >> 4 channels c0 + 1, .., c0 + 15 (dec_nib16).
// One load and one ALU op per 8 channels, with no broadcast and variable shift as in nibbles8, at the price of an
// "even/odd" channel order inside each 16-channel block: q (scores) is stored in that order, and accumulators are
// put back in channel order by interleave16 (accum).
// Channel order <-> even/odd order of a 16-channel block a = x[0 .. 7], b = x[8 .. 15].
inline void deinterleave16(__m256 a, __m256 b, __m256& even, __m256& odd) {
    // shuffle_ps per 128-bit lane: [a0 a2 b0 b2 | a4 a6 b4 b6]; the 64-bit permute puts the pairs in order.
    even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xd8));
    odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xdd)), 0xd8));
}
inline void interleave16(__m256 even, __m256 odd, __m256& a, __m256& b) {
    const __m256 lo = _mm256_unpacklo_ps(even, odd), hi = _mm256_unpackhi_ps(even, odd);  // [e0 o0 e1 o1 | e4 ..]
    a = _mm256_permute2f128_ps(lo, hi, 0x20);
    b = _mm256_permute2f128_ps(lo, hi, 0x31);
}

// Decoders: load8(t, c) = x_t[c .. c + 7], load1(t, c) = x_t[c].
struct dec_f32 {
    const uint8_t* r;
    size_t st;
    const float* row(int64_t t) const { return reinterpret_cast<const float*>(r + size_t(t) * st); }
    __m256 load8(int64_t t, int64_t c) const { return _mm256_loadu_ps(row(t) + c); }
    float load1(int64_t t, int64_t c) const { return row(t)[c]; }
};
struct dec_f16 {
    const uint8_t* r;
    size_t st;
    const uint16_t* row(int64_t t) const { return reinterpret_cast<const uint16_t*>(r + size_t(t) * st); }
    __m256 load8(int64_t t, int64_t c) const {
        return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row(t) + c)));
    }
    float load1(int64_t t, int64_t c) const { return fp16_to_f32(row(t)[c]); }
};
struct dec_bf16 {
    const uint8_t* r;
    size_t st;
    const uint16_t* row(int64_t t) const { return reinterpret_cast<const uint16_t*>(r + size_t(t) * st); }
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
    __m256 load8(int64_t t, int64_t c) const {
        return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row(t) + c))));
    }
    float load1(int64_t t, int64_t c) const { return float(row(t)[c]); }
};
struct dec_nib {  // q4 codes (parameters applied by the caller)
    const uint8_t* r;
    size_t st;
    __m256 load8(int64_t t, int64_t c) const { return nibbles8(r + size_t(t) * st, c); }
    float load1(int64_t t, int64_t c) const { return nibble1(r + size_t(t) * st, c); }
};
struct dec_nib16 {  // q4 codes: load16 / half in the even/odd order of a 16-channel block, load8 in channel order
    static constexpr bool pairs = true;
    const uint8_t* r;
    size_t st;
    void load16(int64_t t, int64_t c, __m256& even, __m256& odd) const {  // c % 16 == 0
        const uint8_t* row = r + size_t(t) * st + c / 2;
        const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row)));
        even = _mm256_cvtepi32_ps(_mm256_and_si256(b, _mm256_set1_epi32(0xf)));
        odd = _mm256_cvtepi32_ps(_mm256_srli_epi32(b, 4));
    }
    template <bool Odd>
    __m256 half(int64_t t, int64_t c) const {  // c % 16 == 0
        const uint8_t* row = r + size_t(t) * st + c / 2;
        const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row)));
        return _mm256_cvtepi32_ps(Odd ? _mm256_srli_epi32(b, 4) : _mm256_and_si256(b, _mm256_set1_epi32(0xf)));
    }
    __m256 load8(int64_t t, int64_t c) const { return nibbles8(r + size_t(t) * st, c); }
    float load1(int64_t t, int64_t c) const { return nibble1(r + size_t(t) * st, c); }
};
// Decoders with pairs = true hand out 16-channel blocks in even/odd order (scores_rows / accum_k then take
// 16 channels a step up to hd & ~15, and 8 at a time after).
template <class D, class = void>
struct has_pairs { static constexpr bool value = false; };
template <class D>
struct has_pairs<D, std::void_t<decltype(D::pairs)>> { static constexpr bool value = D::pairs; };

struct dec_q4_channel {  // x = code * scale[c] + min[c]
    const uint8_t* r;
    size_t st;
    const uint16_t* sc;
    const uint16_t* mn;
    __m256 load8(int64_t t, int64_t c) const {
        const __m256 s = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sc + c)));
        const __m256 m = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(mn + c)));
        return _mm256_fmadd_ps(nibbles8(r + size_t(t) * st, c), s, m);
    }
    float load1(int64_t t, int64_t c) const {
        return nibble1(r + size_t(t) * st, c) * fp16_to_f32(sc[c]) + fp16_to_f32(mn[c]);
    }
};
struct dec_q4_group8 {  // x = code * sf[t][c / 8] + mf[t][c / 8] (f32 per row and 8-channel slice; g % 8 == 0)
    const uint8_t* r;
    size_t st;
    const float* sf;
    const float* mf;
    int64_t n8;  // hd / 8
    __m256 load8(int64_t t, int64_t c) const {
        const int64_t i = t * n8 + c / 8;
        return _mm256_fmadd_ps(nibbles8(r + size_t(t) * st, c), _mm256_broadcast_ss(sf + i), _mm256_broadcast_ss(mf + i));
    }
    float load1(int64_t, int64_t) const { return 0.0f; }  // never called: hd is a multiple of g, so of 8
};

template <int G, int R, class D>
inline void scores_rows(const D& d, int64_t t, int64_t hd, const float* q, const float* bias, float* s, int64_t ld) {
    __m256 a[R][G];
    for (int r = 0; r < R; ++r)
        for (int hh = 0; hh < G; ++hh) a[r][hh] = _mm256_setzero_ps();
    int64_t c = 0;
    if constexpr (has_pairs<D>::value)
        for (; c + 16 <= hd; c += 16) {  // q is in even/odd order here
            __m256 x0[R], x1[R];
            for (int r = 0; r < R; ++r) d.load16(t + r, c, x0[r], x1[r]);
            for (int hh = 0; hh < G; ++hh) {
                const __m256 q0 = _mm256_loadu_ps(q + hh * hd + c), q1 = _mm256_loadu_ps(q + hh * hd + c + 8);
                for (int r = 0; r < R; ++r) a[r][hh] = _mm256_fmadd_ps(q1, x1[r], _mm256_fmadd_ps(q0, x0[r], a[r][hh]));
            }
        }
    for (; c + 8 <= hd; c += 8) {
        __m256 x[R];
        for (int r = 0; r < R; ++r) x[r] = d.load8(t + r, c);
        for (int hh = 0; hh < G; ++hh) {
            const __m256 qv = _mm256_loadu_ps(q + hh * hd + c);
            for (int r = 0; r < R; ++r) a[r][hh] = _mm256_fmadd_ps(qv, x[r], a[r][hh]);
        }
    }
    for (int r = 0; r < R; ++r) {
        float sum[8];
        reduce<G>(a[r], bias, sum);
        for (int64_t cc = c; cc < hd; ++cc) {
            const float v = d.load1(t + r, cc);
            for (int hh = 0; hh < G; ++hh) sum[hh] += q[hh * hd + cc] * v;
        }
        for (int hh = 0; hh < G; ++hh) s[hh * ld + t + r] = sum[hh];
    }
}

template <int G, class D>
void scores_k(const D& d, int64_t tn, int64_t hd, const float* q, const float* bias, float* s, int64_t ld) {
    constexpr int R = G <= 2 ? 4 : G <= 4 ? 2 : 1;
    int64_t t = 0;
    for (; t + R <= tn; t += R) scores_rows<G, R>(d, t, hd, q, bias, s, ld);
    for (; t < tn; ++t) scores_rows<G, 1>(d, t, hd, q, bias, s, ld);
}

// The weights of channel c: p itself (w_same: head hh, row t at p[hh * ld + t]), or per q4 value group (w_group:
// the group's scale folded in; head hh, row t, group j at w[hh * ld + t * ng + j], and a bias per group and head).
struct w_same {
    static constexpr int64_t ts = 1;
    const float* p;
    const float* operator()(int64_t) const { return p; }
    const float* bias(int64_t) const { return nullptr; }
};
struct w_group {
    const float* w;
    const float* b;  // (ng, 8): b[j * 8 + hh]
    int64_t group, ts;  // g, ng
    const float* operator()(int64_t c) const { return w + c / group; }
    const float* bias(int64_t c) const { return b + (c / group) * 8; }
};

// acc[hh][0 .. 7] (hh stride hd) += bias[hh] + sum_t p[hh * ld + t * ts] * load(t), t < tn (bias may be null).
template <int G, class L>
inline void accum_slice(const L& load, int64_t tn, const float* p, int64_t ld, int64_t ts, const float* bias,
                        float* acc, int64_t hd) {
    constexpr int U = G <= 2 ? 4 : G <= 4 ? 2 : 1;  // independent accumulator sets over interleaved rows
    __m256 a[U][G];
    for (int hh = 0; hh < G; ++hh) {
        a[0][hh] = _mm256_loadu_ps(acc + hh * hd);
        if (bias) a[0][hh] = _mm256_add_ps(a[0][hh], _mm256_set1_ps(bias[hh]));
        for (int u = 1; u < U; ++u) a[u][hh] = _mm256_setzero_ps();
    }
    int64_t t = 0;
    for (; t + U <= tn; t += U)
        for (int u = 0; u < U; ++u) {
            const __m256 x = load(t + u);
            for (int hh = 0; hh < G; ++hh)
                a[u][hh] = _mm256_fmadd_ps(_mm256_broadcast_ss(p + hh * ld + (t + u) * ts), x, a[u][hh]);
        }
    for (; t < tn; ++t) {
        const __m256 x = load(t);
        for (int hh = 0; hh < G; ++hh)
            a[0][hh] = _mm256_fmadd_ps(_mm256_broadcast_ss(p + hh * ld + t * ts), x, a[0][hh]);
    }
    for (int hh = 0; hh < G; ++hh) {
        __m256 v = a[0][hh];
        for (int u = 1; u < U; ++u) v = _mm256_add_ps(v, a[u][hh]);
        _mm256_storeu_ps(acc + hh * hd, v);
    }
}

// acc in channel order, or (pairs decoders) in even/odd order per 16-channel block below hd & ~15.
template <int G, class D, class W>
void accum_k(const D& d, int64_t tn, int64_t hd, const W& wt, int64_t ld, float* acc) {
    int64_t c = 0;
    if constexpr (has_pairs<D>::value)
        for (; c + 16 <= hd; c += 16) {
            accum_slice<G>([&](int64_t t) { return d.template half<false>(t, c); }, tn, wt(c), ld, wt.ts, wt.bias(c),
                           acc + c, hd);
            accum_slice<G>([&](int64_t t) { return d.template half<true>(t, c); }, tn, wt(c + 8), ld, wt.ts,
                           wt.bias(c + 8), acc + c + 8, hd);
        }
    for (; c + 8 <= hd; c += 8)
        accum_slice<G>([&](int64_t t) { return d.load8(t, c); }, tn, wt(c), ld, wt.ts, wt.bias(c), acc + c, hd);
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

inline float f16(uint16_t h) { return _cvtsh_ss(h); }

// dst[i] = h[i] as f32, i < n (F16C, 8 at a time).
void f16_to_f32(const uint16_t* h, int64_t n, float* dst) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i))));
    for (; i < n; ++i) dst[i] = f16(h[i]);
}

// x[hh * ld + t] *= sc[t] (f16) for hh < G, t < tn: the q8 row scales, on the scores or on the weights.
void scale_rows(float* x, int64_t ld, int G, int64_t tn, const uint16_t* sc) {
    int64_t t = 0;
    for (; t + 8 <= tn; t += 8) {
        const __m256 v = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sc + t)));
        for (int hh = 0; hh < G; ++hh) _mm256_storeu_ps(x + hh * ld + t, _mm256_mul_ps(_mm256_loadu_ps(x + hh * ld + t), v));
    }
    for (; t < tn; ++t) {
        const float v = f16(sc[t]);
        for (int hh = 0; hh < G; ++hh) x[hh * ld + t] *= v;
    }
}

// q4 values: per row and 8-channel slice f32 parameters in work (g % 8 == 0); returns the decoder. Only for
// scores over a per-token q4 tile (the cache never stores keys that way; accum folds the parameters instead).
dec_q4_group8 q4_group_params(const kv_tile& x, int64_t tn, int64_t hd, float* work) {
    const int64_t n8 = hd / 8, ng = hd / x.group;
    float* sf = work;
    float* mf = work + tn * n8;
    for (int64_t t = 0; t < tn; ++t)
        for (int64_t i = 0; i < n8; ++i) {
            const size_t k = size_t(t * ng + (i * 8) / x.group);
            sf[t * n8 + i] = f16(x.scale[k]);
            mf[t * n8 + i] = f16(x.min[k]);
        }
    return dec_q4_group8{x.rows, x.stride, sf, mf, n8};
}

// q4 values with a group that is not a multiple of 8 (head sizes like 80 -> g 20): the tile's rows decoded to f32
// in work (tn * hd floats, at most one tile: the cache itself is never copied).
dec_f32 q4_group_decoded(const kv_tile& x, int64_t tn, int64_t hd, float* work) {
    const int64_t ng = hd / x.group;
    for (int64_t t = 0; t < tn; ++t) {
        const uint8_t* row = x.rows + size_t(t) * x.stride;
        for (int64_t j = 0; j < ng; ++j) {
            const float s = f16(x.scale[t * ng + j]), m = f16(x.min[t * ng + j]);
            for (int64_t c = j * x.group; c < (j + 1) * x.group; ++c) work[t * hd + c] = nibble1(row, c) * s + m;
        }
    }
    return dec_f32{reinterpret_cast<const uint8_t*>(work), size_t(hd) * sizeof(float)};
}

// q4 keys (per channel): q . x_t = (q * scale) . code_t + q . min. qs = q * scale is formed once per tile, its
// channels below hd & ~15 in the even/odd order of dec_nib16; bias[hh] = q[hh] . min is added to the scores.
void scores_q4_channel(const kv_tile& x, int64_t tn, int64_t hd, int G, const float* q, float* s, int64_t ld,
                       float* work) {
    const int64_t n16 = hd & ~int64_t(15);
    float* qs = work;              // (G, hd)
    float* bias = work + 8 * hd;   // (8)
    __m256 bv[8];
    for (int hh = 0; hh < 8; ++hh) bv[hh] = _mm256_setzero_ps();
    auto half = [](const uint16_t* h) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h))); };
    int64_t c = 0;
    for (; c < n16; c += 16) {
        const __m256 s0 = half(x.scale + c), s1 = half(x.scale + c + 8);
        const __m256 m0 = half(x.min + c), m1 = half(x.min + c + 8);
        for (int hh = 0; hh < G; ++hh) {
            const __m256 q0 = _mm256_loadu_ps(q + hh * hd + c), q1 = _mm256_loadu_ps(q + hh * hd + c + 8);
            bv[hh] = _mm256_fmadd_ps(q1, m1, _mm256_fmadd_ps(q0, m0, bv[hh]));
            __m256 even, odd;
            deinterleave16(_mm256_mul_ps(q0, s0), _mm256_mul_ps(q1, s1), even, odd);
            _mm256_storeu_ps(qs + hh * hd + c, even);
            _mm256_storeu_ps(qs + hh * hd + c + 8, odd);
        }
    }
    for (; c + 8 <= hd; c += 8) {
        const __m256 s0 = half(x.scale + c), m0 = half(x.min + c);
        for (int hh = 0; hh < G; ++hh) {
            const __m256 q0 = _mm256_loadu_ps(q + hh * hd + c);
            bv[hh] = _mm256_fmadd_ps(q0, m0, bv[hh]);
            _mm256_storeu_ps(qs + hh * hd + c, _mm256_mul_ps(q0, s0));
        }
    }
    reduce<8>(bv, nullptr, bias);  // lanes hh >= G are 0
    for (; c < hd; ++c) {
        const float sc = f16(x.scale[c]), mn = f16(x.min[c]);
        for (int hh = 0; hh < G; ++hh) {
            qs[hh * hd + c] = q[hh * hd + c] * sc;
            bias[hh] += q[hh * hd + c] * mn;
        }
    }
    scores_g(dec_nib16{x.rows, x.stride}, G, tn, hd, qs, s, ld, bias);  // the bias added in each row's reduce
}

// q4 values (per token, groups of g channels, g % 8 == 0): for c in group j,
//   acc[hh][c] += sum_t p[hh][t] (code_t[c] s_t[j] + m_t[j]) = sum_t w[hh][t][j] code_t[c] + b[hh][j],
// w[hh][t][j] = p[hh][t] s_t[j], b[hh][j] = sum_t p[hh][t] m_t[j]: the scale is folded into the weights, so the
// inner loop is the plain code accumulation of the other kinds. The parameters are stored (t, j), so w is built in
// that order, 8 (t, j) pairs a vector when ng divides 8 (p expanded by a lane permute). With g % 16 == 0 the codes
// are decoded 16 channels a load (dec_nib16) and acc stays in even/odd order until finish().
// The folded weights and biases of accum_q4_group for G heads (a template, so that the G bias accumulators and
// the head loop live in registers): w[hh * lw + i] = p[hh][i / ng] * sf[i], b[j * 8 + hh] = sum_t p[hh][t] mf[t, j]
// over the n = tn * ng (row, group) pairs i = t * ng + j.
template <int G>
void q4_group_weights(const float* p, int64_t ld, const float* sf, const float* mf, int64_t n, int64_t ng,
                      int64_t lw, float* w, float* b) {
    int64_t i0 = 0;  // the (t, j) pairs below i0 are done by vectors
    if (8 % ng == 0) {
        const __m256i lane_row = _mm256_setr_epi32(0, int32_t(1 / ng), int32_t(2 / ng), int32_t(3 / ng),
                                                   int32_t(4 / ng), int32_t(5 / ng), int32_t(6 / ng), int32_t(7 / ng));
        i0 = n & ~int64_t(7);
        __m256 bacc[G];
        for (int hh = 0; hh < G; ++hh) bacc[hh] = _mm256_setzero_ps();
        // Vector i holds the pairs of rows i / ng .. i / ng + 8 / ng - 1, which lie in the 8 rows from
        // r8 = (i / ng) & ~7: p[hh][r8 .. r8 + 7] is loaded whole (as exp_sum stored it: a store-forwarded load)
        // and expanded by a lane permute, lane l taking row (i / ng - r8) + l / ng. Rows up to r8 + 7 < ld are
        // read (ld, the tile, is a multiple of 8); lanes of rows >= tn are never used (vector i is below i0).
        for (int64_t i = 0; i < i0; i += 8) {  // the parameters loaded once for the G heads
            const __m256 sv = _mm256_loadu_ps(sf + i), mv = _mm256_loadu_ps(mf + i);
            const int64_t r = i / ng, r8 = r & ~int64_t(7);
            const __m256i vidx = _mm256_add_epi32(_mm256_set1_epi32(int32_t(r - r8)), lane_row);
            for (int hh = 0; hh < G; ++hh) {
                const __m256 pe = _mm256_permutevar8x32_ps(_mm256_loadu_ps(p + hh * ld + r8), vidx);
                _mm256_storeu_ps(w + hh * lw + i, _mm256_mul_ps(pe, sv));
                bacc[hh] = _mm256_fmadd_ps(pe, mv, bacc[hh]);
            }
        }
        // Lane l of bacc[hh] sums group l % ng: fold the lanes of a group together (ng divides 8), so that lanes
        // 0 .. ng - 1 hold the groups' sums.
        for (int hh = 0; hh < G; ++hh) {
            __m256 v = bacc[hh];
            if (ng <= 4) v = _mm256_add_ps(v, _mm256_permute2f128_ps(v, v, 0x01));  // lanes l, l + 4
            __m128 h = _mm256_castps256_ps128(v);
            if (ng <= 2) h = _mm_add_ps(h, _mm_movehl_ps(h, h));  // l, l + 2
            if (ng <= 1) h = _mm_add_ss(h, _mm_movehdup_ps(h));   // l, l + 1
            alignas(32) float bl[8];
            if (ng <= 4) _mm_store_ps(bl, h);
            else _mm256_store_ps(bl, v);
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
    if (g % 16 == 0) accum_g(dec_nib16{x.rows, x.stride}, G, tn, hd, wg, lw, acc);
    else accum_g(dec_nib{x.rows, x.stride}, G, tn, hd, wg, lw, acc);  // channel order
}

// After the accum calls of a task: q4 values with g % 16 == 0 left acc in even/odd order (accum_q4_group).
void finish(const kv_tile& v, int64_t hd, int G, float* acc) {
    if (v.kind != tile_kind::q4_group || v.group % 16 != 0) return;
    for (int hh = 0; hh < G; ++hh)
        for (int64_t c = 0; c + 16 <= hd; c += 16) {
            float* y = acc + hh * hd + c;
            __m256 a0, a1;
            interleave16(_mm256_loadu_ps(y), _mm256_loadu_ps(y + 8), a0, a1);
            _mm256_storeu_ps(y, a0);
            _mm256_storeu_ps(y + 8, a1);
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
            if (x.group % 8 == 0) scores_g(q4_group_params(x, tn, hd, work), G, tn, hd, q, s, ld);
            else scores_g(q4_group_decoded(x, tn, hd, work), G, tn, hd, q, s, ld);
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
            if (x.group % 8 == 0) accum_q4_group(x, tn, hd, G, p, ld, acc, work);
            else accum_g(q4_group_decoded(x, tn, hd, work), G, tn, hd, ps, ld, acc);
            break;
    }
}

float max_of(const float* s, int64_t n) {
    int64_t i = 0;
    float m = s[0];
    if (n >= 8) {
        __m256 v = _mm256_loadu_ps(s);
        for (i = 8; i + 8 <= n; i += 8) v = _mm256_max_ps(v, _mm256_loadu_ps(s + i));
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        m = _mm_cvtss_f32(h);
    }
    for (; i < n; ++i) m = std::max(m, s[i]);
    return m;
}

// exp(x) for x <= 0 .. 88: x = n ln2 + r, |r| <= ln2 / 2, e^r by the degree-7 polynomial of Cephes' expf
// (relative error about 1e-7), 2^n put into the exponent bits. Inputs below -87.3 give about 1e-38 (not 0).
inline __m256 exp8(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.3f));
    x = _mm256_min_ps(x, _mm256_set1_ps(88.3f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);  // ln2 split in two (Cody-Waite)
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

float exp_sum(float* s, int64_t n, float m) {
    const __m256 vm = _mm256_set1_ps(m);
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + i), vm));
        _mm256_storeu_ps(s + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    float sum = hsum(acc);
    for (; i < n; ++i) {
        s[i] = std::exp(s[i] - m);
        sum += s[i];
    }
    return sum;
}

void scale(float* x, float a, int64_t n) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), va));
    for (; i < n; ++i) x[i] *= a;
}

}  // namespace

const attn_kernels& attn_kernels_avx2() {
    static const attn_kernels k{scores, accum, finish, max_of, exp_sum, scale};
    return k;
}

}  // namespace tfu::cpu
