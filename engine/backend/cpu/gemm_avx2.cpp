// AVX2+FMA tile GEMM kernels for prefill (gemm.h; compiled with -mavx2 -mfma -mf16c, called only when the CPU
// has them). Tile: k_mr = 4 weight rows x k_nr = 3 activation columns, 12 float accumulators (8 lanes each) in
// ymm registers; per 32-element block the k_mr weight blocks are decoded once into int8 and each of the k_nr
// Q8_0 activation blocks is loaded once, then all k_mr x k_nr int32 block dots are formed and scaled by
// d_w * d_a into the accumulators with one FMA each. Tails (m % 4, n % 3) use the smaller instantiations.
//   Q4_0 x Q8_0: sum_l (q_l - 8) a_l = sum_l q_l a_l - 8 sum_l a_l with q in [0, 15] unsigned, so the unsigned x
//     signed _mm256_maddubs_epi16 needs no sign trick; 8 sum(a) (per int32 lane) is formed once per activation
//     block and reused for all k_mr rows. Lane sums are the same integers as vec_dot_avx2's dot_q4_0.
//   Q8_0 x Q8_0: |w| (unsigned, 128 allowed) times a with w's sign moved onto it (_mm256_sign_epi8), as in
//     vec_dot_avx2.cpp; |w| is formed once per weight block.
// Self-contained on purpose: no inline helpers or templates shared with other files (see vec_dot_kernels.h).
#include <immintrin.h>

#include <algorithm>

#include "backend/cpu/gemm.h"
#include "core/quant.h"

namespace tfu::cpu::kernels {

namespace {

constexpr int k_mr = 4;  // weight rows per tile
constexpr int k_nr = 3;  // activation columns per tile

inline float half_to_float(uint16_t h) { return _cvtsh_ss(h); }

inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

inline __m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// 16 bytes of packed nibbles -> 32 unsigned bytes: low nibbles (elements 0..15), then high nibbles (16..31).
inline __m256i nibbles_32(const uint8_t* qs) {
    const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4), t), _mm256_set1_epi8(0x0f));
}

// One tile: w points at row 0 of the tile, a at column 0; nb blocks of 32; dst at (column 0, row 0).
using tile_fn = void (*)(const uint8_t* w, size_t ws, const uint8_t* a, size_t as, int64_t nb, float* dst,
                         size_t ds);

inline void store_tile_row(float* dst, size_t ds, int c, int r, float v) {
    reinterpret_cast<float*>(reinterpret_cast<uint8_t*>(dst) + size_t(c) * ds)[r] = v;
}

template <int RM, int RN>
void tile_q4_0(const uint8_t* w, size_t ws, const uint8_t* a, size_t as, int64_t nb, float* dst, size_t ds) {
    const __m256i ones = _mm256_set1_epi16(1), eight = _mm256_set1_epi8(8);
    __m256 acc[RM][RN];
    for (int r = 0; r < RM; ++r)
        for (int c = 0; c < RN; ++c) acc[r][c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
        __m256i q[RM];  // weight levels 0..15 of block b of each row
        float dw[RM];
        for (int r = 0; r < RM; ++r) {
            const block_q4_0& x = reinterpret_cast<const block_q4_0*>(w + size_t(r) * ws)[b];
            q[r] = nibbles_32(x.qs);
            dw[r] = half_to_float(x.d);
        }
        for (int c = 0; c < RN; ++c) {
            const block_q8_0& y = reinterpret_cast<const block_q8_0*>(a + size_t(c) * as)[b];
            const __m256i ya = load32(y.qs);
            const __m256i off = _mm256_madd_epi16(_mm256_maddubs_epi16(eight, ya), ones);  // 8 sum(a) per lane
            const float da = half_to_float(y.d);
            for (int r = 0; r < RM; ++r) {
                const __m256i s = _mm256_sub_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(q[r], ya), ones), off);
                acc[r][c] = _mm256_fmadd_ps(_mm256_set1_ps(dw[r] * da), _mm256_cvtepi32_ps(s), acc[r][c]);
            }
        }
    }
    for (int c = 0; c < RN; ++c)
        for (int r = 0; r < RM; ++r) store_tile_row(dst, ds, c, r, hsum(acc[r][c]));
}

template <int RM, int RN>
void tile_q8_0(const uint8_t* w, size_t ws, const uint8_t* a, size_t as, int64_t nb, float* dst, size_t ds) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[RM][RN];
    for (int r = 0; r < RM; ++r)
        for (int c = 0; c < RN; ++c) acc[r][c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
        __m256i q[RM], aq[RM];  // weight bytes and their absolute values (as unsigned: -128 -> 128)
        float dw[RM];
        for (int r = 0; r < RM; ++r) {
            const block_q8_0& x = reinterpret_cast<const block_q8_0*>(w + size_t(r) * ws)[b];
            q[r] = load32(x.qs);
            aq[r] = _mm256_sign_epi8(q[r], q[r]);
            dw[r] = half_to_float(x.d);
        }
        for (int c = 0; c < RN; ++c) {
            const block_q8_0& y = reinterpret_cast<const block_q8_0*>(a + size_t(c) * as)[b];
            const __m256i ya = load32(y.qs);
            const float da = half_to_float(y.d);
            for (int r = 0; r < RM; ++r) {
                const __m256i p = _mm256_maddubs_epi16(aq[r], _mm256_sign_epi8(ya, q[r]));
                acc[r][c] = _mm256_fmadd_ps(_mm256_set1_ps(dw[r] * da), _mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones)),
                                            acc[r][c]);
            }
        }
    }
    for (int c = 0; c < RN; ++c)
        for (int r = 0; r < RM; ++r) store_tile_row(dst, ds, c, r, hsum(acc[r][c]));
}

// [rows - 1][cols - 1] -> the tile instantiation.
#define TFU_TILE_ROW(T, R) {T<R, 1>, T<R, 2>, T<R, 3>}
#define TFU_TILE_TABLE(T) {TFU_TILE_ROW(T, 1), TFU_TILE_ROW(T, 2), TFU_TILE_ROW(T, 3), TFU_TILE_ROW(T, 4)}
static_assert(k_mr == 4 && k_nr == 3, "the tile tables below list 4 x 3 instantiations");
const tile_fn tiles_q4_0[k_mr][k_nr] = TFU_TILE_TABLE(tile_q4_0);
const tile_fn tiles_q8_0[k_mr][k_nr] = TFU_TILE_TABLE(tile_q8_0);
#undef TFU_TILE_TABLE
#undef TFU_TILE_ROW

// Row tiles outer, column tiles inner: a tile's k_mr weight rows stay in L1/L2 while all n columns stream by.
void run_tiles(const tile_fn (*tab)[k_nr], const void* w, size_t ws, const void* a, size_t as, int64_t k,
               float* dst, size_t ds, int64_t m, int64_t n) {
    const uint8_t* wb = static_cast<const uint8_t*>(w);
    const uint8_t* ab = static_cast<const uint8_t*>(a);
    const int64_t nb = k / 32;
    for (int64_t i = 0; i < m; i += k_mr) {
        const int64_t rm = std::min<int64_t>(k_mr, m - i);
        for (int64_t j = 0; j < n; j += k_nr) {
            const int64_t rn = std::min<int64_t>(k_nr, n - j);
            float* d = reinterpret_cast<float*>(reinterpret_cast<uint8_t*>(dst) + size_t(j) * ds) + i;
            tab[rm - 1][rn - 1](wb + size_t(i) * ws, ws, ab + size_t(j) * as, as, nb, d, ds);
        }
    }
}

void gemm_q4_0(const void* w, size_t ws, const void* a, size_t as, int64_t k, float* dst, size_t ds, int64_t m,
               int64_t n) {
    run_tiles(tiles_q4_0, w, ws, a, as, k, dst, ds, m, n);
}

void gemm_q8_0(const void* w, size_t ws, const void* a, size_t as, int64_t k, float* dst, size_t ds, int64_t m,
               int64_t n) {
    run_tiles(tiles_q8_0, w, ws, a, as, k, dst, ds, m, n);
}

}  // namespace

gemm_fn avx2_gemm(dtype w) {
    switch (w) {
        case dtype::Q4_0: return gemm_q4_0;
        case dtype::Q8_0: return gemm_q8_0;
        default: return nullptr;
    }
}

}  // namespace tfu::cpu::kernels
