// The weight decoders of the fast decode matrix-vector kernels (mul_mat_vec.cu): a "unit" is 8 weights of one row
// that come from a few wide loads, paired with two float4 of x. See mul_mat_vec.cu for why.
#pragma once

#include "cuda_common.cuh"
#include "mul_mat_q.cuh"

namespace tfu::cuda {

// Byte i of v as the float 2^23 + byte (exact).
__device__ __forceinline__ float byte_magic(uint32_t v, int i) {
    return __uint_as_float(__byte_perm(v, 0x4B000000u, 0x7440u + unsigned(i)));
}
__device__ __forceinline__ uint32_t ld_u16_pair(const uint8_t* p) {  // 4 bytes at a 2-byte aligned address
    return uint32_t(ld16(p)) | uint32_t(ld16(p + 2)) << 16;
}

// unit_x: element offsets e0, e1 of unit u's two groups of 4; unit_w: its 8 weights (w[0..3] at e0, w[4..7] at e1).
template <dtype T>
struct unit;

// unit<T>::w(row, u, c, sc) gives 8 codes c and (for scaled types) the group parameters sc = {s0, s1, m0, m1}:
// weight i = s0 * c[i] - m0 for i < 4, s1 * c[i] - m1 for i >= 4, so that the kernel forms sum c[i] x[i] per group
// and applies s and m once per group (m times the group's sum of x) instead of once per weight.
template <>
struct unit<dtype::F32> {
    static constexpr int per_k = 8;  // weights per unit: a row has k / per_k units
    static constexpr bool scaled = false, has_min = false;
    __device__ static void x_at(int64_t u, int64_t& e0, int64_t& e1) { e0 = 8 * u, e1 = e0 + 4; }
    __device__ static void w(const uint8_t* row, int64_t u, float* o, float*) {
        const float4 a = reinterpret_cast<const float4*>(row)[2 * u], b = reinterpret_cast<const float4*>(row)[2 * u + 1];
        o[0] = a.x, o[1] = a.y, o[2] = a.z, o[3] = a.w, o[4] = b.x, o[5] = b.y, o[6] = b.z, o[7] = b.w;
    }
};

template <bool BF>
struct unit_16 {
    static constexpr int per_k = 8;
    static constexpr bool scaled = false, has_min = false;
    __device__ static void x_at(int64_t u, int64_t& e0, int64_t& e1) { e0 = 8 * u, e1 = e0 + 4; }
    __device__ static void w(const uint8_t* row, int64_t u, float* o, float*) {
        const uint4 v = reinterpret_cast<const uint4*>(row)[u];
        const uint32_t h[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int t = 0; t < 4; ++t) {
            if constexpr (BF) {
                o[2 * t] = __uint_as_float(h[t] << 16);
                o[2 * t + 1] = __uint_as_float(h[t] & 0xffff0000u);
            } else {
                const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&h[t]));
                o[2 * t] = f.x, o[2 * t + 1] = f.y;
            }
        }
    }
};
template <>
struct unit<dtype::F16> : unit_16<false> {};
template <>
struct unit<dtype::BF16> : unit_16<true> {};

// Q4_0 (18-byte blocks of 32): unit u = block u / 4, s = u % 4: qs[4s .. 4s + 3], low nibbles = elements 4s + i,
// high nibbles = 16 + 4s + i; w = d * (q - 8): c = q - 8, s0 = s1 = d.
template <>
struct unit<dtype::Q4_0> {
    static constexpr int per_k = 8;
    static constexpr bool scaled = true, has_min = false;
    __device__ static void x_at(int64_t u, int64_t& e0, int64_t& e1) {
        e0 = 32 * (u >> 2) + 4 * (u & 3), e1 = e0 + 16;
    }
    __device__ static void w(const uint8_t* row, int64_t u, float* o, float* sc) {
        const uint8_t* b = row + (u >> 2) * 18;
        sc[0] = sc[1] = h2f(ld16(b));
        const uint32_t q = ld_u16_pair(b + 2 + 4 * (u & 3));
        const uint32_t lo = q & 0x0f0f0f0fu, hi = (q >> 4) & 0x0f0f0f0fu;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            o[i] = byte_magic(lo, i) - 8388616.0f;
            o[4 + i] = byte_magic(hi, i) - 8388616.0f;
        }
    }
};

// Q8_0 (34-byte blocks of 32): unit u = block u / 4, qs[8s .. 8s + 7] = elements 8s + i; w = d * q: c = q, s = d.
template <>
struct unit<dtype::Q8_0> {
    static constexpr int per_k = 8;
    static constexpr bool scaled = true, has_min = false;
    __device__ static void x_at(int64_t u, int64_t& e0, int64_t& e1) {
        e0 = 32 * (u >> 2) + 8 * (u & 3), e1 = e0 + 4;
    }
    __device__ static void w(const uint8_t* row, int64_t u, float* o, float* sc) {
        const uint8_t* b = row + (u >> 2) * 34;
        sc[0] = sc[1] = h2f(ld16(b));
        const uint8_t* qs = b + 2 + 8 * (u & 3);
        const uint32_t v0 = ld_u16_pair(qs) ^ 0x80808080u, v1 = ld_u16_pair(qs + 4) ^ 0x80808080u;  // + 128
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            o[i] = byte_magic(v0, i) - 8388736.0f;
            o[4 + i] = byte_magic(v1, i) - 8388736.0f;
        }
    }
};

// Q4_K (144-byte blocks of 256; 4-byte aligned rows): unit u = block u / 32, r = u % 32, c = r / 8, s = r % 8:
// qs[32c + 4s .. + 3], low nibbles = elements 64c + 4s + i (sub-block 2c), high = 64c + 32 + 4s + i (2c + 1);
// w = d * scale_j * q - dmin * min_j: c = q, s = d * scale_j, m = dmin * min_j.
template <>
struct unit<dtype::Q4_K> {
    static constexpr int per_k = 8;
    static constexpr bool scaled = true, has_min = true;
    __device__ static void x_at(int64_t u, int64_t& e0, int64_t& e1) {
        const int r = int(u & 31);
        e0 = 256 * (u >> 5) + 64 * (r >> 3) + 4 * (r & 7), e1 = e0 + 32;
    }
    __device__ static void w(const uint8_t* row, int64_t u, float* o, float* sc) {
        const uint8_t* b = row + (u >> 5) * 144;
        const int r = int(u & 31), c = r >> 3, s = r & 7;
        const float d = h2f(ld16(b)), dmin = h2f(ld16(b + 2));
        int s0, m0, s1, m1;
        scale_min_k4(b + 4, 2 * c, &s0, &m0);
        scale_min_k4(b + 4, 2 * c + 1, &s1, &m1);
        sc[0] = d * float(s0), sc[1] = d * float(s1), sc[2] = dmin * float(m0), sc[3] = dmin * float(m1);
        const uint32_t q = *reinterpret_cast<const uint32_t*>(b + 16 + 32 * c + 4 * s);
        const uint32_t lo = q & 0x0f0f0f0fu, hi = (q >> 4) & 0x0f0f0f0fu;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            o[i] = byte_magic(lo, i) - 8388608.0f;
            o[4 + i] = byte_magic(hi, i) - 8388608.0f;
        }
    }
};

// Q6_K (210-byte blocks of 256): unit u = block u / 32, r = u % 32, h = r / 16, k = (r / 8) % 2, s = r % 8:
// ql[64h + 32k + 4s .. + 3] (low nibbles: quarter k, high nibbles: quarter k + 2) and qh[32h + 4s .. + 3] (bits
// 2k and 2k + 4); elements 128h + 32k + 4s + i and the same + 64; w = d * scale[e / 16] * (q - 32): c = q - 32.
template <>
struct unit<dtype::Q6_K> {
    static constexpr int per_k = 8;
    static constexpr bool scaled = true, has_min = false;
    __device__ static void x_at(int64_t u, int64_t& e0, int64_t& e1) {
        const int r = int(u & 31);
        e0 = 256 * (u >> 5) + 128 * (r >> 4) + 32 * ((r >> 3) & 1) + 4 * (r & 7), e1 = e0 + 64;
    }
    __device__ static void w(const uint8_t* row, int64_t u, float* o, float* sc_out) {
        const uint8_t* b = row + (u >> 5) * 210;
        const int r = int(u & 31), h = r >> 4, k = (r >> 3) & 1, s = r & 7;
        const uint32_t ql = ld_u16_pair(b + 64 * h + 32 * k + 4 * s);
        const uint32_t qh = ld_u16_pair(b + 128 + 32 * h + 4 * s);
        const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
        const float d = h2f(ld16(b + 208));
        sc_out[0] = d * float(sc[8 * h + 2 * k + s / 4]);
        sc_out[1] = d * float(sc[8 * h + 2 * (k + 2) + s / 4]);
        const uint32_t v0 = (ql & 0x0f0f0f0fu) | ((qh >> (2 * k)) & 0x03030303u) << 4;
        const uint32_t v1 = ((ql >> 4) & 0x0f0f0f0fu) | ((qh >> (2 * k + 4)) & 0x03030303u) << 4;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            o[i] = byte_magic(v0, i) - 8388640.0f;
            o[4 + i] = byte_magic(v1, i) - 8388640.0f;
        }
    }
};

}  // namespace tfu::cuda
