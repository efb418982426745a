// AVX2+FMA tile GEMM kernels for prefill (gemm.h; compiled with -mavx2 -mfma -mf16c, called only when the CPU
// has them). Tile: 4 weight rows x k_nr activation columns. Per 32-element block the 4 weight blocks are decoded
// once into bytes and each Q8_0 activation block is loaded once; the 4 row dots of one column are reduced with
// horizontal adds into ONE register laid out [r0 r1 r2 r3 | r0 r1 r2 r3] (low/high 16 bytes of the block), so
// one int->float conversion and one FMA by [d_w0..3 x d_a] serve 4 row x column pairs, and the tile needs only
// k_nr float accumulators. Row tails (m % 4) repeat the last row and drop its results; column tails use the
// smaller instantiations.
//   Q4_0 x Q8_0: sum_l (q_l - 8) a_l = sum_l q_l a_l - 8 sum_l a_l with q in [0, 15] unsigned, so the unsigned x
//     signed _mm256_maddubs_epi16 needs no sign trick; its int16 pairs (<= 2 * 15 * 127) are summed 4 at a time
//     with _mm256_hadd_epi16 (<= 15240, no overflow) before _mm256_madd_epi16; 8 sum(a) per half block is formed
//     once per activation block and subtracted once for the 4 rows.
//   Q8_0 x Q8_0: |w| (unsigned, 128 allowed) times a with w's sign moved onto it (_mm256_sign_epi8), as in
//     vec_dot_avx2.cpp; int16 pairs reach 32512, so they go to int32 (_mm256_madd_epi16) before the hadds.
//   F16 x F16: see tile_f16 (3 rows x 4 columns of float accumulators).
// The per-block integers equal vec_dot_avx2's; only the float summation order differs.
// Self-contained on purpose: no inline helpers or templates shared with other files (see vec_dot_kernels.h).
#include <immintrin.h>

#include <algorithm>

#include "backend/cpu/gemm.h"
#include "core/quant.h"

namespace tfu::cpu::kernels {

namespace {

constexpr int k_mr = 4;  // weight rows per tile (fixed: the horizontal-add layout holds 4 rows)
constexpr int k_nr = 4;  // activation columns per tile

inline __m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// 16 bytes of packed nibbles -> 32 unsigned bytes: low nibbles (elements 0..15), then high nibbles (16..31).
inline __m256i nibbles_32(const uint8_t* qs) {
    const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4), t), _mm256_set1_epi8(0x0f));
}

// The 4 row scales twice, as floats: [d0 d1 d2 d3 d0 d1 d2 d3].
inline __m256 row_scales(uint16_t d0, uint16_t d1, uint16_t d2, uint16_t d3) {
    return _mm256_cvtph_ps(_mm_setr_epi16(short(d0), short(d1), short(d2), short(d3), short(d0), short(d1),
                                          short(d2), short(d3)));
}

inline __m256 broadcast_half(uint16_t d) { return _mm256_cvtph_ps(_mm_set1_epi16(short(d))); }

// acc [r0 r1 r2 r3 | r0 r1 r2 r3] -> the first rm of the 4 row sums at dst.
inline void store_rows(float* dst, __m256 acc, int rm) {
    float v[4];
    _mm_storeu_ps(v, _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1)));
    for (int r = 0; r < rm; ++r) dst[r] = v[r];
}

// One tile: wr = the 4 weight rows (repeated for a row tail), a = column 0, nb blocks of 32, dst = (column 0,
// row 0) with rows dst_stride bytes apart; writes rm rows of RN columns.
using tile_fn = void (*)(const uint8_t* const* wr, const uint8_t* a, size_t as, int64_t nb, float* dst,
                         size_t ds, int rm);

template <int RN>
void tile_q4_0(const uint8_t* const* wr, const uint8_t* a, size_t as, int64_t nb, float* dst, size_t ds, int rm) {
    const __m256i ones = _mm256_set1_epi16(1), eight = _mm256_set1_epi8(8);
    const block_q4_0* x0 = reinterpret_cast<const block_q4_0*>(wr[0]);
    const block_q4_0* x1 = reinterpret_cast<const block_q4_0*>(wr[1]);
    const block_q4_0* x2 = reinterpret_cast<const block_q4_0*>(wr[2]);
    const block_q4_0* x3 = reinterpret_cast<const block_q4_0*>(wr[3]);
    __m256 acc[RN];
    for (int c = 0; c < RN; ++c) acc[c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
        const __m256i q0 = nibbles_32(x0[b].qs), q1 = nibbles_32(x1[b].qs), q2 = nibbles_32(x2[b].qs),
                      q3 = nibbles_32(x3[b].qs);
        const __m256 dw = row_scales(x0[b].d, x1[b].d, x2[b].d, x3[b].d);
        for (int c = 0; c < RN; ++c) {
            const block_q8_0& y = reinterpret_cast<const block_q8_0*>(a + size_t(c) * as)[b];
            const __m256i ya = load32(y.qs);
            __m256i off = _mm256_madd_epi16(_mm256_maddubs_epi16(eight, ya), ones);  // 8 sum(a), 4 lanes per half
            off = _mm256_hadd_epi32(off, off);
            off = _mm256_hadd_epi32(off, off);  // each lane: 8 sum(a) over its half block
            const __m256i p01 = _mm256_hadd_epi16(_mm256_maddubs_epi16(q0, ya), _mm256_maddubs_epi16(q1, ya));
            const __m256i p23 = _mm256_hadd_epi16(_mm256_maddubs_epi16(q2, ya), _mm256_maddubs_epi16(q3, ya));
            const __m256i s = _mm256_sub_epi32(_mm256_madd_epi16(_mm256_hadd_epi16(p01, p23), ones), off);
            acc[c] = _mm256_fmadd_ps(_mm256_mul_ps(dw, broadcast_half(y.d)), _mm256_cvtepi32_ps(s), acc[c]);
        }
    }
    for (int c = 0; c < RN; ++c)
        store_rows(reinterpret_cast<float*>(reinterpret_cast<uint8_t*>(dst) + size_t(c) * ds), acc[c], rm);
}

template <int RN>
void tile_q8_0(const uint8_t* const* wr, const uint8_t* a, size_t as, int64_t nb, float* dst, size_t ds, int rm) {
    const __m256i ones = _mm256_set1_epi16(1);
    const block_q8_0* x0 = reinterpret_cast<const block_q8_0*>(wr[0]);
    const block_q8_0* x1 = reinterpret_cast<const block_q8_0*>(wr[1]);
    const block_q8_0* x2 = reinterpret_cast<const block_q8_0*>(wr[2]);
    const block_q8_0* x3 = reinterpret_cast<const block_q8_0*>(wr[3]);
    __m256 acc[RN];
    for (int c = 0; c < RN; ++c) acc[c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
        const __m256i q0 = load32(x0[b].qs), q1 = load32(x1[b].qs), q2 = load32(x2[b].qs), q3 = load32(x3[b].qs);
        const __m256i u0 = _mm256_sign_epi8(q0, q0), u1 = _mm256_sign_epi8(q1, q1), u2 = _mm256_sign_epi8(q2, q2),
                      u3 = _mm256_sign_epi8(q3, q3);  // |w| as unsigned bytes (-128 -> 128)
        const __m256 dw = row_scales(x0[b].d, x1[b].d, x2[b].d, x3[b].d);
        for (int c = 0; c < RN; ++c) {
            const block_q8_0& y = reinterpret_cast<const block_q8_0*>(a + size_t(c) * as)[b];
            const __m256i ya = load32(y.qs);
            const __m256i s0 = _mm256_madd_epi16(_mm256_maddubs_epi16(u0, _mm256_sign_epi8(ya, q0)), ones);
            const __m256i s1 = _mm256_madd_epi16(_mm256_maddubs_epi16(u1, _mm256_sign_epi8(ya, q1)), ones);
            const __m256i s2 = _mm256_madd_epi16(_mm256_maddubs_epi16(u2, _mm256_sign_epi8(ya, q2)), ones);
            const __m256i s3 = _mm256_madd_epi16(_mm256_maddubs_epi16(u3, _mm256_sign_epi8(ya, q3)), ones);
            const __m256i s = _mm256_hadd_epi32(_mm256_hadd_epi32(s0, s1), _mm256_hadd_epi32(s2, s3));
            acc[c] = _mm256_fmadd_ps(_mm256_mul_ps(dw, broadcast_half(y.d)), _mm256_cvtepi32_ps(s), acc[c]);
        }
    }
    for (int c = 0; c < RN; ++c)
        store_rows(reinterpret_cast<float*>(reinterpret_cast<uint8_t*>(dst) + size_t(c) * ds), acc[c], rm);
}

// F16 x F16: 3 weight rows x RN (<= 4) columns of 8-lane float accumulators (12 + 3 weight registers at
// RN = 4), 8 elements per step: each converted weight vector feeds RN FMAs, each activation vector 3. The k % 8
// tail is done in scalar float.
constexpr int k_mr_f16 = 3;

template <int RN>
void tile_f16(const uint8_t* const* wr, const uint8_t* a, size_t as, int64_t k, float* dst, size_t ds, int rm) {
    const uint16_t* x0 = reinterpret_cast<const uint16_t*>(wr[0]);
    const uint16_t* x1 = reinterpret_cast<const uint16_t*>(wr[1]);
    const uint16_t* x2 = reinterpret_cast<const uint16_t*>(wr[2]);
    const uint16_t* y[RN];
    for (int c = 0; c < RN; ++c) y[c] = reinterpret_cast<const uint16_t*>(a + size_t(c) * as);
    __m256 acc[k_mr_f16][RN];
    for (int r = 0; r < k_mr_f16; ++r)
        for (int c = 0; c < RN; ++c) acc[r][c] = _mm256_setzero_ps();
    int64_t l = 0;
    for (; l + 8 <= k; l += 8) {
        const __m256 w0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x0 + l)));
        const __m256 w1 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x1 + l)));
        const __m256 w2 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x2 + l)));
        for (int c = 0; c < RN; ++c) {
            const __m256 v = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(y[c] + l)));
            acc[0][c] = _mm256_fmadd_ps(w0, v, acc[0][c]);
            acc[1][c] = _mm256_fmadd_ps(w1, v, acc[1][c]);
            acc[2][c] = _mm256_fmadd_ps(w2, v, acc[2][c]);
        }
    }
    const uint16_t* xs[k_mr_f16] = {x0, x1, x2};
    for (int c = 0; c < RN; ++c) {
        float* d = reinterpret_cast<float*>(reinterpret_cast<uint8_t*>(dst) + size_t(c) * ds);
        for (int r = 0; r < rm; ++r) {
            const __m256 v = acc[r][c];
            __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
            h = _mm_add_ps(h, _mm_movehl_ps(h, h));
            h = _mm_add_ss(h, _mm_movehdup_ps(h));
            float s = _mm_cvtss_f32(h);
            for (int64_t t = l; t < k; ++t) s += _cvtsh_ss(xs[r][t]) * _cvtsh_ss(y[c][t]);
            d[r] = s;
        }
    }
}

static_assert(k_nr == 4, "the tile tables below list 4 column counts");
const tile_fn tiles_q4_0[k_nr] = {tile_q4_0<1>, tile_q4_0<2>, tile_q4_0<3>, tile_q4_0<4>};
const tile_fn tiles_q8_0[k_nr] = {tile_q8_0<1>, tile_q8_0<2>, tile_q8_0<3>, tile_q8_0<4>};
const tile_fn tiles_f16[k_nr] = {tile_f16<1>, tile_f16<2>, tile_f16<3>, tile_f16<4>};

// Row tiles of mr rows outer, column tiles inner: a tile's weight rows stay in L1/L2 while all n columns stream
// by. steps is what the tile loops over (blocks of 32 for the quantized types, elements for F16).
void run_tiles(const tile_fn* tab, int mr, const void* w, size_t ws, const void* a, size_t as, int64_t steps,
               float* dst, size_t ds, int64_t m, int64_t n) {
    const uint8_t* wb = static_cast<const uint8_t*>(w);
    const uint8_t* ab = static_cast<const uint8_t*>(a);
    const int64_t nb = steps;
    for (int64_t i = 0; i < m; i += mr) {
        const int rm = int(std::min<int64_t>(mr, m - i));
        const uint8_t* wr[k_mr];
        for (int r = 0; r < mr; ++r) wr[r] = wb + size_t(i + std::min(r, rm - 1)) * ws;
        for (int64_t j = 0; j < n; j += k_nr) {
            const int64_t rn = std::min<int64_t>(k_nr, n - j);
            float* d = reinterpret_cast<float*>(reinterpret_cast<uint8_t*>(dst) + size_t(j) * ds) + i;
            tab[rn - 1](wr, ab + size_t(j) * as, as, nb, d, ds, rm);
        }
    }
}

void gemm_q4_0(const void* w, size_t ws, const void* a, size_t as, int64_t k, float* dst, size_t ds, int64_t m,
               int64_t n) {
    run_tiles(tiles_q4_0, k_mr, w, ws, a, as, k / 32, dst, ds, m, n);
}

void gemm_q8_0(const void* w, size_t ws, const void* a, size_t as, int64_t k, float* dst, size_t ds, int64_t m,
               int64_t n) {
    run_tiles(tiles_q8_0, k_mr, w, ws, a, as, k / 32, dst, ds, m, n);
}

void gemm_f16(const void* w, size_t ws, const void* a, size_t as, int64_t k, float* dst, size_t ds, int64_t m,
              int64_t n) {
    run_tiles(tiles_f16, k_mr_f16, w, ws, a, as, k, dst, ds, m, n);
}

}  // namespace

gemm_fn avx2_gemm(dtype w) {
    switch (w) {
        case dtype::Q4_0: return gemm_q4_0;
        case dtype::Q8_0: return gemm_q8_0;
        case dtype::F16: return gemm_f16;
        default: return nullptr;
    }
}

}  // namespace tfu::cpu::kernels
