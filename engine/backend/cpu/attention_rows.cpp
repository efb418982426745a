// Scalar row kernels of the CPU attention frame (attention_split.h): scores and weighted sums over a tile of K/V
// rows of any storage kind, each element decoded once and used by the G heads of a sub-group. The fallback when
// the CPU lacks AVX2 (or TFU_CPU_SIMD=scalar).
#include <algorithm>
#include <cmath>

#include "backend/cpu/attention_split.h"
#include "core/fp16.h"

namespace tfu::cpu {

namespace {

// x_t[c] of a tile of kind K (hd = the row length, for the q4_group parameter index).
template <tile_kind K>
inline float elem(const kv_tile& x, int64_t hd, int64_t t, int64_t c) {
    const uint8_t* row = x.rows + size_t(t) * x.stride;
    if constexpr (K == tile_kind::f32) {
        return reinterpret_cast<const float*>(row)[c];
    } else if constexpr (K == tile_kind::f16) {
        return fp16_to_f32(reinterpret_cast<const uint16_t*>(row)[c]);
    } else if constexpr (K == tile_kind::bf16) {
        return bf16_to_f32(reinterpret_cast<const uint16_t*>(row)[c]);
    } else if constexpr (K == tile_kind::q8) {
        return fp16_to_f32(x.scale[t]) * float(reinterpret_cast<const int8_t*>(row)[c]);
    } else {
        const float code = float((row[c / 2] >> (4 * (c % 2))) & 0xfu);
        if constexpr (K == tile_kind::q4_channel) {
            return code * fp16_to_f32(x.scale[c]) + fp16_to_f32(x.min[c]);
        } else {
            const size_t i = size_t(t * (hd / x.group) + c / x.group);
            return code * fp16_to_f32(x.scale[i]) + fp16_to_f32(x.min[i]);
        }
    }
}

template <tile_kind K>
void scores_t(const kv_tile& x, int64_t tn, int64_t hd, int G, const float* q, float* s, int64_t ld) {
    float sum[8];
    for (int64_t t = 0; t < tn; ++t) {
        std::fill(sum, sum + G, 0.0f);
        for (int64_t c = 0; c < hd; ++c) {
            const float v = elem<K>(x, hd, t, c);
            for (int hh = 0; hh < G; ++hh) sum[hh] += q[hh * hd + c] * v;
        }
        for (int hh = 0; hh < G; ++hh) s[hh * ld + t] = sum[hh];
    }
}

template <tile_kind K>
void accum_t(const kv_tile& x, int64_t tn, int64_t hd, int G, const float* p, int64_t ld, float* acc) {
    for (int64_t t = 0; t < tn; ++t)
        for (int64_t c = 0; c < hd; ++c) {
            const float v = elem<K>(x, hd, t, c);
            for (int hh = 0; hh < G; ++hh) acc[hh * hd + c] += p[hh * ld + t] * v;
        }
}

void scores(const kv_tile& x, int64_t tn, int64_t hd, int G, const float* q, float* s, int64_t ld, float*) {
    switch (x.kind) {
        case tile_kind::f32: scores_t<tile_kind::f32>(x, tn, hd, G, q, s, ld); break;
        case tile_kind::f16: scores_t<tile_kind::f16>(x, tn, hd, G, q, s, ld); break;
        case tile_kind::bf16: scores_t<tile_kind::bf16>(x, tn, hd, G, q, s, ld); break;
        case tile_kind::q8: scores_t<tile_kind::q8>(x, tn, hd, G, q, s, ld); break;
        case tile_kind::q4_channel: scores_t<tile_kind::q4_channel>(x, tn, hd, G, q, s, ld); break;
        case tile_kind::q4_group: scores_t<tile_kind::q4_group>(x, tn, hd, G, q, s, ld); break;
    }
}

void accum(const kv_tile& x, int64_t tn, int64_t hd, int G, float* p, int64_t ld, float* acc, float*) {
    switch (x.kind) {
        case tile_kind::f32: accum_t<tile_kind::f32>(x, tn, hd, G, p, ld, acc); break;
        case tile_kind::f16: accum_t<tile_kind::f16>(x, tn, hd, G, p, ld, acc); break;
        case tile_kind::bf16: accum_t<tile_kind::bf16>(x, tn, hd, G, p, ld, acc); break;
        case tile_kind::q8: accum_t<tile_kind::q8>(x, tn, hd, G, p, ld, acc); break;
        case tile_kind::q4_channel: accum_t<tile_kind::q4_channel>(x, tn, hd, G, p, ld, acc); break;
        case tile_kind::q4_group: accum_t<tile_kind::q4_group>(x, tn, hd, G, p, ld, acc); break;
    }
}

void finish(const kv_tile&, int64_t, int, float*) {}  // acc is always in channel order here

float max_of(const float* s, int64_t n) { return *std::max_element(s, s + n); }

float exp_sum(float* s, int64_t n, float m) {
    float sum = 0.0f;
    for (int64_t i = 0; i < n; ++i) {
        s[i] = std::exp(s[i] - m);
        sum += s[i];
    }
    return sum;
}

}  // namespace

const attn_kernels& attn_kernels_scalar() {
    static const attn_kernels k{scores, accum, finish, max_of, exp_sum, scale_scalar};
    return k;
}

int64_t attn_work_floats(int64_t tile, int64_t hd) {
    // The largest of the AVX2 kernels' needs (attention_rows_avx2.cpp): q4 keys: q * scale (8, hd) + bias (8);
    // q4 values (accum, g % 8 == 0): scales and mins (2, n8) + weights (8, n8) + biases (ng, 8), with
    // n8 = tile * ng rounded up to 8 and ng <= hd / 8; q4 values read as keys: 2 * (tile, hd / 8); q4 values with
    // g % 8 != 0: a decoded tile (tile, hd).
    const int64_t ng = hd / 8 + 1, n8 = (tile * ng + 7) / 8 * 8;
    const int64_t q4_keys = 8 * hd + 8;
    const int64_t q4_values = 10 * n8 + 8 * ng;
    const int64_t q4_values_scored = 2 * tile * ng;
    const int64_t decoded = tile * hd;
    return std::max(std::max(q4_keys, q4_values), std::max(q4_values_scored, decoded)) + 16;
}

}  // namespace tfu::cpu
