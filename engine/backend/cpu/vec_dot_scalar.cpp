// Scalar kernels of the fast CPU path (portable fallback, and the integer reference for the AVX2 kernels):
// per-block int32 sums of weight levels times Q8_0/Q8_K activation levels, times the two scales, in float.
#include <cmath>
#include <cstring>

#include "backend/cpu/vec_dot_kernels.h"
#include "core/fp16.h"
#include "core/quant.h"
#include "core/quant_k.h"

namespace tfu::cpu::kernels {

namespace {

// ---- plain types ----------------------------------------------------------------------------------------------

float dot_f32(const void* w, const void* a, int64_t n) {
    const float* x = static_cast<const float*>(w);
    const float* y = static_cast<const float*>(a);
    float s = 0.0f;
    for (int64_t i = 0; i < n; ++i) s += x[i] * y[i];
    return s;
}

float dot_f16(const void* w, const void* a, int64_t n) {
    const uint16_t* x = static_cast<const uint16_t*>(w);
    const uint16_t* y = static_cast<const uint16_t*>(a);
    float s = 0.0f;
    for (int64_t i = 0; i < n; ++i) s += fp16_to_f32(x[i]) * fp16_to_f32(y[i]);
    return s;
}

float dot_bf16(const void* w, const void* a, int64_t n) {
    const uint16_t* x = static_cast<const uint16_t*>(w);
    const uint16_t* y = static_cast<const uint16_t*>(a);
    float s = 0.0f;
    for (int64_t i = 0; i < n; ++i) s += bf16_to_f32(x[i]) * bf16_to_f32(y[i]);
    return s;
}

// ---- 32-element weight blocks x Q8_0 ----------------------------------------------------------------------------

// Levels of one Q4/Q5 block in element order (see core/quant.cpp): q[j] without offset.
void levels_q4(const uint8_t* qs, int* q) {
    for (int j = 0; j < 16; ++j) {
        q[j] = qs[j] & 0x0f;
        q[j + 16] = qs[j] >> 4;
    }
}
void levels_q5(const uint8_t* qs, const uint8_t* qh, int* q) {
    const uint32_t h = uint32_t(qh[0]) | uint32_t(qh[1]) << 8 | uint32_t(qh[2]) << 16 | uint32_t(qh[3]) << 24;
    levels_q4(qs, q);
    for (int j = 0; j < 32; ++j) q[j] |= int((h >> j) & 1) << 4;
}

int dot_levels(const int* q, const int8_t* a, int offset, int* asum) {
    int s = 0, sa = 0;
    for (int j = 0; j < 32; ++j) {
        s += (q[j] - offset) * a[j];
        sa += a[j];
    }
    *asum = sa;
    return s;
}

float dot_q4_0(const void* w, const void* a, int64_t n) {
    const block_q4_0* x = static_cast<const block_q4_0*>(w);
    const block_q8_0* y = static_cast<const block_q8_0*>(a);
    float s = 0.0f;
    for (int64_t i = 0; i < n / 32; ++i) {
        int q[32], sa;
        levels_q4(x[i].qs, q);
        s += fp16_to_f32(x[i].d) * fp16_to_f32(y[i].d) * float(dot_levels(q, y[i].qs, 8, &sa));
    }
    return s;
}

float dot_q4_1(const void* w, const void* a, int64_t n) {
    const block_q4_1* x = static_cast<const block_q4_1*>(w);
    const block_q8_0* y = static_cast<const block_q8_0*>(a);
    float s = 0.0f;
    for (int64_t i = 0; i < n / 32; ++i) {
        int q[32], sa;
        levels_q4(x[i].qs, q);
        const int sq = dot_levels(q, y[i].qs, 0, &sa);
        const float da = fp16_to_f32(y[i].d);
        s += fp16_to_f32(x[i].d) * da * float(sq) + fp16_to_f32(x[i].m) * da * float(sa);
    }
    return s;
}

float dot_q5_0(const void* w, const void* a, int64_t n) {
    const block_q5_0* x = static_cast<const block_q5_0*>(w);
    const block_q8_0* y = static_cast<const block_q8_0*>(a);
    float s = 0.0f;
    for (int64_t i = 0; i < n / 32; ++i) {
        int q[32], sa;
        levels_q5(x[i].qs, x[i].qh, q);
        s += fp16_to_f32(x[i].d) * fp16_to_f32(y[i].d) * float(dot_levels(q, y[i].qs, 16, &sa));
    }
    return s;
}

float dot_q5_1(const void* w, const void* a, int64_t n) {
    const block_q5_1* x = static_cast<const block_q5_1*>(w);
    const block_q8_0* y = static_cast<const block_q8_0*>(a);
    float s = 0.0f;
    for (int64_t i = 0; i < n / 32; ++i) {
        int q[32], sa;
        levels_q5(x[i].qs, x[i].qh, q);
        const int sq = dot_levels(q, y[i].qs, 0, &sa);
        const float da = fp16_to_f32(y[i].d);
        s += fp16_to_f32(x[i].d) * da * float(sq) + fp16_to_f32(x[i].m) * da * float(sa);
    }
    return s;
}

float dot_q8_0(const void* w, const void* a, int64_t n) {
    const block_q8_0* x = static_cast<const block_q8_0*>(w);
    const block_q8_0* y = static_cast<const block_q8_0*>(a);
    float s = 0.0f;
    for (int64_t i = 0; i < n / 32; ++i) {
        int sq = 0;
        for (int j = 0; j < 32; ++j) sq += x[i].qs[j] * y[i].qs[j];
        s += fp16_to_f32(x[i].d) * fp16_to_f32(y[i].d) * float(sq);
    }
    return s;
}

// ---- K-quants x Q8_K (element orders as in core/quant_k.cpp) --------------------------------------------------

float dot_q2_K(const void* w, const void* a, int64_t n) {
    const block_q2_K* x = static_cast<const block_q2_K*>(w);
    const block_q8_K* y = static_cast<const block_q8_K*>(a);
    float s = 0.0f;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        int sub[16] = {0};  // per 16-element sub-block: sum q * a
        for (int e = 0; e < QK_K; ++e)
            sub[e / 16] += ((x[i].qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3) * y[i].qs[e];
        int sq = 0, sm = 0;
        for (int j = 0; j < 16; ++j) {
            sq += (x[i].scales[j] & 0x0f) * sub[j];
            sm += (x[i].scales[j] >> 4) * y[i].bsums[j];
        }
        s += y[i].d * (fp16_to_f32(x[i].d) * float(sq) - fp16_to_f32(x[i].dmin) * float(sm));
    }
    return s;
}

float dot_q3_K(const void* w, const void* a, int64_t n) {
    const block_q3_K* x = static_cast<const block_q3_K*>(w);
    const block_q8_K* y = static_cast<const block_q8_K*>(a);
    float s = 0.0f;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        int sc[16], sub[16] = {0};
        quant_k::unpack_scales_q3_K(x[i].scales, sc);
        for (int e = 0; e < QK_K; ++e) {
            const int lo = (x[i].qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
            const int q = lo - ((x[i].hmask[e % 32] >> (e / 32)) & 1 ? 0 : 4);
            sub[e / 16] += q * y[i].qs[e];
        }
        int sq = 0;
        for (int j = 0; j < 16; ++j) sq += sc[j] * sub[j];
        s += y[i].d * fp16_to_f32(x[i].d) * float(sq);
    }
    return s;
}

float dot_q45_K(uint16_t d16, uint16_t dmin16, const uint8_t* scales, const uint8_t* qs, const uint8_t* qh,
                const block_q8_K& y) {
    int sq = 0, sm = 0;
    for (int j = 0; j < 8; ++j) {
        int sc, m, sub = 0;
        quant_k::unpack_scale_min_k4(scales, j, &sc, &m);
        for (int t = 0; t < 32; ++t) {
            int q = (qs[32 * (j / 2) + t] >> (4 * (j % 2))) & 0x0f;
            if (qh) q |= ((qh[t] >> j) & 1) << 4;
            sub += q * y.qs[32 * j + t];
        }
        sq += sc * sub;
        sm += m * (y.bsums[2 * j] + y.bsums[2 * j + 1]);
    }
    return y.d * (fp16_to_f32(d16) * float(sq) - fp16_to_f32(dmin16) * float(sm));
}

float dot_q4_K(const void* w, const void* a, int64_t n) {
    const block_q4_K* x = static_cast<const block_q4_K*>(w);
    const block_q8_K* y = static_cast<const block_q8_K*>(a);
    float s = 0.0f;
    for (int64_t i = 0; i < n / QK_K; ++i) s += dot_q45_K(x[i].d, x[i].dmin, x[i].scales, x[i].qs, nullptr, y[i]);
    return s;
}

float dot_q5_K(const void* w, const void* a, int64_t n) {
    const block_q5_K* x = static_cast<const block_q5_K*>(w);
    const block_q8_K* y = static_cast<const block_q8_K*>(a);
    float s = 0.0f;
    for (int64_t i = 0; i < n / QK_K; ++i) s += dot_q45_K(x[i].d, x[i].dmin, x[i].scales, x[i].qs, x[i].qh, y[i]);
    return s;
}

float dot_q6_K(const void* w, const void* a, int64_t n) {
    const block_q6_K* x = static_cast<const block_q6_K*>(w);
    const block_q8_K* y = static_cast<const block_q8_K*>(a);
    float s = 0.0f;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        int sub[16] = {0};
        for (int e = 0; e < QK_K; ++e) {
            const int k = (e % 128) / 32;
            const int lo = (x[i].ql[64 * (e / 128) + 32 * (k % 2) + e % 32] >> (k < 2 ? 0 : 4)) & 0x0f;
            const int hi = (x[i].qh[32 * (e / 128) + e % 32] >> (2 * k)) & 3;
            sub[e / 16] += ((lo | hi << 4) - 32) * y[i].qs[e];
        }
        int sq = 0;
        for (int j = 0; j < 16; ++j) sq += x[i].scales[j] * sub[j];
        s += y[i].d * fp16_to_f32(x[i].d) * float(sq);
    }
    return s;
}

// ---- activation conversions -------------------------------------------------------------------------------------

// d = max|x| / 127 (stored as fp16), q = nearbyint(x * (1/d)): the same float operations as the AVX2 version.
void quantize_q8_0_act(const float* x, void* y, int64_t n) {
    block_q8_0* b = static_cast<block_q8_0*>(y);
    for (int64_t i = 0; i < n / 32; ++i, x += 32) {
        float amax = 0.0f;
        for (int j = 0; j < 32; ++j) amax = std::fabs(x[j]) > amax ? std::fabs(x[j]) : amax;
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = f32_to_fp16(d);
        for (int j = 0; j < 32; ++j) b[i].qs[j] = int8_t(int(std::nearbyint(x[j] * id)));
    }
}

void convert_f32(const float* x, void* y, int64_t n) { std::memcpy(y, x, size_t(n) * sizeof(float)); }
void convert_f16(const float* x, void* y, int64_t n) {
    uint16_t* out = static_cast<uint16_t*>(y);
    for (int64_t i = 0; i < n; ++i) out[i] = f32_to_fp16(x[i]);
}
void convert_bf16(const float* x, void* y, int64_t n) {
    uint16_t* out = static_cast<uint16_t*>(y);
    for (int64_t i = 0; i < n; ++i) out[i] = f32_to_bf16(x[i]);
}

}  // namespace

vec_dot_fn scalar_vec_dot(dtype w) {
    switch (w) {
        case dtype::F32: return dot_f32;
        case dtype::F16: return dot_f16;
        case dtype::BF16: return dot_bf16;
        case dtype::Q4_0: return dot_q4_0;
        case dtype::Q4_1: return dot_q4_1;
        case dtype::Q5_0: return dot_q5_0;
        case dtype::Q5_1: return dot_q5_1;
        case dtype::Q8_0: return dot_q8_0;
        case dtype::Q2_K: return dot_q2_K;
        case dtype::Q3_K: return dot_q3_K;
        case dtype::Q4_K: return dot_q4_K;
        case dtype::Q5_K: return dot_q5_K;
        case dtype::Q6_K: return dot_q6_K;
        default: return nullptr;
    }
}

quantize_fn scalar_quantize(dtype act) {
    switch (act) {
        case dtype::F32: return convert_f32;
        case dtype::F16: return convert_f16;
        case dtype::BF16: return convert_bf16;
        case dtype::Q8_0: return quantize_q8_0_act;
        case dtype::Q8_K: return quant_k::quantize_q8_K;  // same arithmetic (see core/quant_k.cpp)
        default: return nullptr;
    }
}

}  // namespace tfu::cpu::kernels
