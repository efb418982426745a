// Dequantization of one weight element on the device, for every weight dtype (core/quant.h block layouts, bit
// for bit the arithmetic of core/quant.cpp and core/quant_k.cpp's dequantize_*): shared by GET_ROWS and MUL_MAT.
//
// w_elem<T>(blk, j) is element j of the block at blk (T's block of QK elements); a caller that keeps blk fixed
// for several j lets the compiler load the block's scales once. w_chunk8<T> decodes 8 consecutive elements
// (8 divides every block size), the unit of the matrix-vector kernel.
#pragma once

#include <cstddef>

#include "core/dtype.h"
#include "core/quant.h"
#include "cuda_common.cuh"

namespace tfu::cuda {

template <dtype T>
struct wt;  // block geometry: qk elements in `bytes` bytes
#define TFU_WT(T, QK, BYTES)                   \
    template <>                                \
    struct wt<dtype::T> {                      \
        static constexpr int qk = QK;          \
        static constexpr int bytes = BYTES;    \
    };
TFU_WT(F32, 1, 4)
TFU_WT(F16, 1, 2)
TFU_WT(BF16, 1, 2)
TFU_WT(Q4_0, QK4_0, sizeof(block_q4_0))
TFU_WT(Q4_1, QK4_1, sizeof(block_q4_1))
TFU_WT(Q5_0, QK5_0, sizeof(block_q5_0))
TFU_WT(Q5_1, QK5_1, sizeof(block_q5_1))
TFU_WT(Q8_0, QK8_0, sizeof(block_q8_0))
TFU_WT(Q2_K, QK_K, sizeof(block_q2_K))
TFU_WT(Q3_K, QK_K, sizeof(block_q3_K))
TFU_WT(Q4_K, QK_K, sizeof(block_q4_K))
TFU_WT(Q5_K, QK_K, sizeof(block_q5_K))
TFU_WT(Q6_K, QK_K, sizeof(block_q6_K))
#undef TFU_WT

#define TFU_OFF(B, F) offsetof(B, F)

// Q4_*/Q5_*: qs[j] holds element j (low nibble) and j + 16 (high nibble); Q5_*: bit j of the little-endian
// uint32 qh is bit 4 of element j (read bytewise: blocks are only 2-byte aligned).
__device__ __forceinline__ int nib32(const uint8_t* qs, int j) { return j < 16 ? qs[j] & 0x0f : qs[j - 16] >> 4; }
__device__ __forceinline__ int qh_bit(const uint8_t* qh, int j) { return (qh[j >> 3] >> (j & 7)) & 1; }

// Q4_K / Q5_K scale and min of sub-block j (core/quant_k.h unpack_scale_min_k4).
__device__ __forceinline__ void scale_min_k4(const uint8_t* q, int j, int* sc, int* m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0x0f) | (q[j - 4] >> 6) << 4;
        *m = (q[j + 4] >> 4) | (q[j] >> 6) << 4;
    }
}

template <dtype T>
__device__ __forceinline__ float w_elem(const uint8_t* b, int j);

template <>
__device__ __forceinline__ float w_elem<dtype::F32>(const uint8_t* b, int j) {
    return reinterpret_cast<const float*>(b)[j];
}
template <>
__device__ __forceinline__ float w_elem<dtype::F16>(const uint8_t* b, int j) {
    return h2f(reinterpret_cast<const uint16_t*>(b)[j]);
}
template <>
__device__ __forceinline__ float w_elem<dtype::BF16>(const uint8_t* b, int j) {
    return bf2f(reinterpret_cast<const uint16_t*>(b)[j]);
}
template <>
__device__ __forceinline__ float w_elem<dtype::Q4_0>(const uint8_t* b, int j) {
    return h2f(ld16(b)) * float(nib32(b + TFU_OFF(block_q4_0, qs), j) - 8);
}
template <>
__device__ __forceinline__ float w_elem<dtype::Q4_1>(const uint8_t* b, int j) {
    return h2f(ld16(b)) * float(nib32(b + TFU_OFF(block_q4_1, qs), j)) + h2f(ld16(b + TFU_OFF(block_q4_1, m)));
}
template <>
__device__ __forceinline__ float w_elem<dtype::Q5_0>(const uint8_t* b, int j) {
    const int q = nib32(b + TFU_OFF(block_q5_0, qs), j) | qh_bit(b + TFU_OFF(block_q5_0, qh), j) << 4;
    return h2f(ld16(b)) * float(q - 16);
}
template <>
__device__ __forceinline__ float w_elem<dtype::Q5_1>(const uint8_t* b, int j) {
    const int q = nib32(b + TFU_OFF(block_q5_1, qs), j) | qh_bit(b + TFU_OFF(block_q5_1, qh), j) << 4;
    return h2f(ld16(b)) * float(q) + h2f(ld16(b + TFU_OFF(block_q5_1, m)));
}
template <>
__device__ __forceinline__ float w_elem<dtype::Q8_0>(const uint8_t* b, int j) {
    return h2f(ld16(b)) * float(reinterpret_cast<const int8_t*>(b + TFU_OFF(block_q8_0, qs))[j]);
}
// Q2_K: element e = 128h + 32s + l is bits 2s..2s+1 of qs[32h + l]; scales[e/16] = scale | min << 4.
template <>
__device__ __forceinline__ float w_elem<dtype::Q2_K>(const uint8_t* b, int e) {
    const float d = h2f(ld16(b + TFU_OFF(block_q2_K, d))), dmin = h2f(ld16(b + TFU_OFF(block_q2_K, dmin)));
    const int q = (b[TFU_OFF(block_q2_K, qs) + 32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
    const int sm = b[TFU_OFF(block_q2_K, scales) + e / 16];
    return d * float(sm & 0x0f) * float(q) - dmin * float(sm >> 4);
}
// Q3_K: low 2 bits as Q2_K; bit e/32 of hmask[e % 32] clear means minus 4; signed 6-bit scales.
template <>
__device__ __forceinline__ float w_elem<dtype::Q3_K>(const uint8_t* b, int e) {
    const uint8_t* s = b + TFU_OFF(block_q3_K, scales);
    const int i = e / 16;
    const int sc = ((i < 8 ? (s[i] & 0x0f) : (s[i - 8] >> 4)) | ((s[8 + i % 4] >> (2 * (i / 4))) & 3) << 4) - 32;
    const int lo = (b[TFU_OFF(block_q3_K, qs) + 32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
    const int q = lo - ((b[TFU_OFF(block_q3_K, hmask) + e % 32] >> (e / 32)) & 1 ? 0 : 4);
    return h2f(ld16(b + TFU_OFF(block_q3_K, d))) * float(sc) * float(q);
}
// Q4_K / Q5_K: element e = 64c + 32k + l is nibble k of qs[32c + l]; sub-block e / 32. Q5_K: bit e/32 of qh[l].
template <>
__device__ __forceinline__ float w_elem<dtype::Q4_K>(const uint8_t* b, int e) {
    const int j = e / 32;
    int sc, m;
    scale_min_k4(b + TFU_OFF(block_q4_K, scales), j, &sc, &m);
    const float ds = h2f(ld16(b + TFU_OFF(block_q4_K, d))) * float(sc);
    const float dm = h2f(ld16(b + TFU_OFF(block_q4_K, dmin))) * float(m);
    const int q = (b[TFU_OFF(block_q4_K, qs) + 32 * (e / 64) + e % 32] >> (4 * (j % 2))) & 0x0f;
    return ds * float(q) - dm;
}
template <>
__device__ __forceinline__ float w_elem<dtype::Q5_K>(const uint8_t* b, int e) {
    const int j = e / 32;
    int sc, m;
    scale_min_k4(b + TFU_OFF(block_q5_K, scales), j, &sc, &m);
    const float ds = h2f(ld16(b + TFU_OFF(block_q5_K, d))) * float(sc);
    const float dm = h2f(ld16(b + TFU_OFF(block_q5_K, dmin))) * float(m);
    int q = (b[TFU_OFF(block_q5_K, qs) + 32 * (e / 64) + e % 32] >> (4 * (j % 2))) & 0x0f;
    q |= ((b[TFU_OFF(block_q5_K, qh) + e % 32] >> j) & 1) << 4;
    return ds * float(q) - dm;
}
// Q6_K: e = 128h + 32k + l: low 4 bits in nibble k/2 of ql[64h + 32(k%2) + l], high 2 bits at 2k of qh[32h + l].
template <>
__device__ __forceinline__ float w_elem<dtype::Q6_K>(const uint8_t* b, int e) {
    const int k = (e % 128) / 32;
    const int lo = (b[TFU_OFF(block_q6_K, ql) + 64 * (e / 128) + 32 * (k % 2) + e % 32] >> (k < 2 ? 0 : 4)) & 0x0f;
    const int hi = (b[TFU_OFF(block_q6_K, qh) + 32 * (e / 128) + e % 32] >> (2 * k)) & 3;
    const int sc = reinterpret_cast<const int8_t*>(b + TFU_OFF(block_q6_K, scales))[e / 16];
    return h2f(ld16(b + TFU_OFF(block_q6_K, d))) * float(sc) * float((lo | hi << 4) - 32);
}

#undef TFU_OFF

// Element e of a weight row.
template <dtype T>
__device__ __forceinline__ float w_at(const uint8_t* row, int64_t e) {
    return w_elem<T>(row + (e / wt<T>::qk) * wt<T>::bytes, int(e % wt<T>::qk));
}

// Elements 8c .. 8c+7 of a weight row. VEC (plain types only): the row is 16-byte aligned, so 8 halves or
// 2 x 4 floats come in 16-byte loads.
template <dtype T, bool VEC>
__device__ __forceinline__ void w_chunk8(const uint8_t* row, int64_t c, float out[8]) {
    if constexpr (VEC && (T == dtype::F16 || T == dtype::BF16)) {
        const uint4 v = reinterpret_cast<const uint4*>(row)[c];
        const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int t = 0; t < 4; ++t) {
            const uint16_t lo = uint16_t(w[t] & 0xffffu), hi = uint16_t(w[t] >> 16);
            out[2 * t] = T == dtype::F16 ? h2f(lo) : bf2f(lo);
            out[2 * t + 1] = T == dtype::F16 ? h2f(hi) : bf2f(hi);
        }
    } else if constexpr (VEC && T == dtype::F32) {
        const float4 a = reinterpret_cast<const float4*>(row)[2 * c], b = reinterpret_cast<const float4*>(row)[2 * c + 1];
        out[0] = a.x, out[1] = a.y, out[2] = a.z, out[3] = a.w, out[4] = b.x, out[5] = b.y, out[6] = b.z, out[7] = b.w;
    } else {
        const int64_t e0 = 8 * c;
        const uint8_t* blk = row + (e0 / wt<T>::qk) * wt<T>::bytes;
        const int j0 = int(e0 % wt<T>::qk);
#pragma unroll
        for (int t = 0; t < 8; ++t) out[t] = w_elem<T>(blk, j0 + t);
    }
}

// X(T) for every weight dtype (dtype_traits::weight_type): the dispatch lists of GET_ROWS and MUL_MAT.
#define TFU_CUDA_WEIGHT_TYPES(X) \
    X(F32) X(F16) X(BF16) X(Q4_0) X(Q4_1) X(Q5_0) X(Q5_1) X(Q8_0) X(Q2_K) X(Q3_K) X(Q4_K) X(Q5_K) X(Q6_K)

}  // namespace tfu::cuda
