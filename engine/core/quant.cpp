// Scalar reference conversions of GGUF block formats: dispatch, plain float types and the 32-element block types
// (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1); the K-quants are in quant_k.cpp.
// Bit layouts follow ggml's block_* definitions (ggml-common.h) as described in core/quant.h.
#include "core/quant.h"

#include <cmath>
#include <cstring>
#include <string>

#include "core/error.h"
#include "core/fp16.h"
#include "core/quant_k.h"

namespace tfu {

namespace {

// ---- plain types ----------------------------------------------------------------------------------------------

void quantize_f32(const float* x, void* y, int64_t n) { std::memcpy(y, x, size_t(n) * sizeof(float)); }
void dequantize_f32(const void* x, float* y, int64_t n) { std::memcpy(y, x, size_t(n) * sizeof(float)); }

void quantize_f16(const float* x, void* y, int64_t n) {
    uint16_t* out = static_cast<uint16_t*>(y);
    for (int64_t i = 0; i < n; ++i) out[i] = f32_to_fp16(x[i]);
}
void dequantize_f16(const void* x, float* y, int64_t n) {
    const uint16_t* in = static_cast<const uint16_t*>(x);
    for (int64_t i = 0; i < n; ++i) y[i] = fp16_to_f32(in[i]);
}

void quantize_bf16(const float* x, void* y, int64_t n) {
    uint16_t* out = static_cast<uint16_t*>(y);
    for (int64_t i = 0; i < n; ++i) out[i] = f32_to_bf16(x[i]);
}
void dequantize_bf16(const void* x, float* y, int64_t n) {
    const uint16_t* in = static_cast<const uint16_t*>(x);
    for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_f32(in[i]);
}

// ---- 32-element blocks ----------------------------------------------------------------------------------------
// Nibble order (Q4_*, Q5_*): qs[j] holds element j in its low nibble and element j + 16 in its high nibble.
// Q5_*: bit j of the little-endian uint32 qh is bit 4 of element j.

// Largest |x| of a block and the signed value that has it (symmetric formats map it to the most negative level,
// which is one step larger than the most positive one).
void signed_absmax(const float* x, int n, float* amax, float* max) {
    *amax = 0.0f;
    *max = 0.0f;
    for (int j = 0; j < n; ++j) {
        if (std::fabs(x[j]) > *amax) {
            *amax = std::fabs(x[j]);
            *max = x[j];
        }
    }
}

void min_max(const float* x, int n, float* mn, float* mx) {
    *mn = x[0];
    *mx = x[0];
    for (int j = 1; j < n; ++j) {
        if (x[j] < *mn) *mn = x[j];
        if (x[j] > *mx) *mx = x[j];
    }
}

int clamp_int(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

// Stores d as fp16 and returns the reciprocal of the value actually stored, so that levels are chosen against
// the scale the reader will use.
float store_scale(float d, uint16_t* out) {
    *out = f32_to_fp16(d);
    const float dq = fp16_to_f32(*out);
    return dq != 0.0f ? 1.0f / dq : 0.0f;
}

// Scale search for the 32-element weight blocks (the reader only needs d, and m for the _1 types, so any choice
// is valid). Candidate 0 is llama.cpp's round-to-nearest choice (max |x| to the extreme level, min/max range);
// the others shrink the range a little (clipping the extremes buys finer steps for the rest) and refit by least
// squares; the candidate of least squared error against the decoded fp16 values wins, so a block is never
// worse than with candidate 0.

// Symmetric: x ~= d * q, q in [lo, hi]; `max` is the signed value of largest |x|, mapped to lo by candidate 0.
void fit_sym_block(const float* x, int n, float max, int lo, int hi, uint16_t* d_out, int* q) {
    double best = INFINITY;
    int cand[QK8_0];
    auto try_scale = [&](float d) {
        uint16_t d16;
        const float id = store_scale(d, &d16), dq = fp16_to_f32(d16);
        double err = 0.0, sxl = 0.0, sll = 0.0;
        for (int j = 0; j < n; ++j) {
            cand[j] = clamp_int(int(std::floor(x[j] * id + 0.5f)), lo, hi);
            const double e = double(dq) * cand[j] - x[j];
            err += e * e;
            sxl += double(x[j]) * cand[j];
            sll += double(cand[j]) * cand[j];
        }
        if (err < best) {
            best = err;
            *d_out = d16;
            std::memcpy(q, cand, sizeof(int) * size_t(n));
        }
        return sll > 0.0 ? float(sxl / sll) : 0.0f;
    };
    const float d0 = max / float(lo);
    try_scale(d0);
    if (d0 == 0.0f) return;
    for (int k = 1; k <= 8; ++k) try_scale(try_scale(d0 * (1.0f - 0.025f * float(k))));
    try_scale(try_scale(-max / float(hi)));  // the largest |x| on the positive side
}

// Asymmetric: x ~= d * q + m, q in [0, nmax].
void fit_asym_block(const float* x, int n, float mn, float mx, int nmax, uint16_t* d_out, uint16_t* m_out, int* q) {
    double best = INFINITY;
    int cand[QK4_1];
    // Tries (d, m); sets *ra, *rb to the least-squares refit of the levels it picked (false if degenerate).
    auto try_fit = [&](float d, float m, float* ra, float* rb) {
        uint16_t d16, m16 = f32_to_fp16(m);
        const float id = store_scale(d, &d16), dq = fp16_to_f32(d16), mq = fp16_to_f32(m16);
        double err = 0.0, sl = 0, sll = 0, sx = 0, sxl = 0;
        for (int j = 0; j < n; ++j) {
            cand[j] = clamp_int(int(std::floor((x[j] - mq) * id + 0.5f)), 0, nmax);
            const double e = double(dq) * cand[j] + mq - x[j];
            err += e * e;
            sl += cand[j];
            sll += double(cand[j]) * cand[j];
            sx += x[j];
            sxl += double(x[j]) * cand[j];
        }
        if (err < best) {
            best = err;
            *d_out = d16;
            *m_out = m16;
            std::memcpy(q, cand, sizeof(int) * size_t(n));
        }
        const double det = n * sll - sl * sl;  // least squares x ~= a q + b over the levels just picked
        if (det <= 0.0) return false;
        *ra = float((n * sxl - sl * sx) / det);
        *rb = float((sll * sx - sl * sxl) / det);
        return *ra > 0.0f;
    };
    const float r = mx - mn;
    float ra, rb;
    for (int a = 0; a <= 2; ++a)
        for (int b = 0; b <= 2; ++b) {
            const float lo = mn + 0.03f * float(a) * r, hi = mx - 0.03f * float(b) * r;
            if (try_fit((hi - lo) / float(nmax), lo, &ra, &rb)) try_fit(ra, rb, &ra, &rb);
            if (!(r > 0.0f)) return;
        }
}

void quantize_q4_0(const float* x, void* y, int64_t n) {
    block_q4_0* b = static_cast<block_q4_0*>(y);
    for (int64_t i = 0; i < n / QK4_0; ++i, x += QK4_0) {
        float amax, max;
        signed_absmax(x, QK4_0, &amax, &max);
        int q[QK4_0];
        fit_sym_block(x, QK4_0, max, -8, 7, &b[i].d, q);
        for (int j = 0; j < QK4_0 / 2; ++j) b[i].qs[j] = uint8_t((q[j] + 8) | (q[j + 16] + 8) << 4);
    }
}
void dequantize_q4_0(const void* x, float* y, int64_t n) {
    const block_q4_0* b = static_cast<const block_q4_0*>(x);
    for (int64_t i = 0; i < n / QK4_0; ++i, y += QK4_0) {
        const float d = fp16_to_f32(b[i].d);
        for (int j = 0; j < 16; ++j) {
            y[j] = d * float((b[i].qs[j] & 0x0f) - 8);
            y[j + 16] = d * float((b[i].qs[j] >> 4) - 8);
        }
    }
}

void quantize_q4_1(const float* x, void* y, int64_t n) {
    block_q4_1* b = static_cast<block_q4_1*>(y);
    for (int64_t i = 0; i < n / QK4_1; ++i, x += QK4_1) {
        float mn, mx;
        min_max(x, QK4_1, &mn, &mx);
        int q[QK4_1];
        fit_asym_block(x, QK4_1, mn, mx, 15, &b[i].d, &b[i].m, q);
        for (int j = 0; j < QK4_1 / 2; ++j) b[i].qs[j] = uint8_t(q[j] | q[j + 16] << 4);
    }
}
void dequantize_q4_1(const void* x, float* y, int64_t n) {
    const block_q4_1* b = static_cast<const block_q4_1*>(x);
    for (int64_t i = 0; i < n / QK4_1; ++i, y += QK4_1) {
        const float d = fp16_to_f32(b[i].d), m = fp16_to_f32(b[i].m);
        for (int j = 0; j < 16; ++j) {
            y[j] = d * float(b[i].qs[j] & 0x0f) + m;
            y[j + 16] = d * float(b[i].qs[j] >> 4) + m;
        }
    }
}

uint32_t load_u32(const uint8_t* p) { return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24; }
void store_u32(uint8_t* p, uint32_t v) {
    for (int k = 0; k < 4; ++k) p[k] = uint8_t(v >> (8 * k));
}

// Packs 32 five-bit levels: low nibbles into qs (element j / j+16 split as Q4), bit 4 into qh.
void pack_q5(const int* q, uint8_t* qs, uint8_t* qh) {
    uint32_t h = 0;
    for (int j = 0; j < 16; ++j) {
        qs[j] = uint8_t((q[j] & 0x0f) | (q[j + 16] & 0x0f) << 4);
        h |= uint32_t((q[j] >> 4) & 1) << j;
        h |= uint32_t((q[j + 16] >> 4) & 1) << (j + 16);
    }
    store_u32(qh, h);
}
void unpack_q5(const uint8_t* qs, const uint8_t* qh, int* q) {
    const uint32_t h = load_u32(qh);
    for (int j = 0; j < 16; ++j) {
        q[j] = (qs[j] & 0x0f) | int((h >> j) & 1) << 4;
        q[j + 16] = (qs[j] >> 4) | int((h >> (j + 16)) & 1) << 4;
    }
}

void quantize_q5_0(const float* x, void* y, int64_t n) {
    block_q5_0* b = static_cast<block_q5_0*>(y);
    for (int64_t i = 0; i < n / QK5_0; ++i, x += QK5_0) {
        float amax, max;
        signed_absmax(x, QK5_0, &amax, &max);
        int q[QK5_0];
        fit_sym_block(x, QK5_0, max, -16, 15, &b[i].d, q);
        for (int j = 0; j < QK5_0; ++j) q[j] += 16;
        pack_q5(q, b[i].qs, b[i].qh);
    }
}
void dequantize_q5_0(const void* x, float* y, int64_t n) {
    const block_q5_0* b = static_cast<const block_q5_0*>(x);
    for (int64_t i = 0; i < n / QK5_0; ++i, y += QK5_0) {
        const float d = fp16_to_f32(b[i].d);
        int q[QK5_0];
        unpack_q5(b[i].qs, b[i].qh, q);
        for (int j = 0; j < QK5_0; ++j) y[j] = d * float(q[j] - 16);
    }
}

void quantize_q5_1(const float* x, void* y, int64_t n) {
    block_q5_1* b = static_cast<block_q5_1*>(y);
    for (int64_t i = 0; i < n / QK5_1; ++i, x += QK5_1) {
        float mn, mx;
        min_max(x, QK5_1, &mn, &mx);
        int q[QK5_1];
        fit_asym_block(x, QK5_1, mn, mx, 31, &b[i].d, &b[i].m, q);
        pack_q5(q, b[i].qs, b[i].qh);
    }
}
void dequantize_q5_1(const void* x, float* y, int64_t n) {
    const block_q5_1* b = static_cast<const block_q5_1*>(x);
    for (int64_t i = 0; i < n / QK5_1; ++i, y += QK5_1) {
        const float d = fp16_to_f32(b[i].d), m = fp16_to_f32(b[i].m);
        int q[QK5_1];
        unpack_q5(b[i].qs, b[i].qh, q);
        for (int j = 0; j < QK5_1; ++j) y[j] = d * float(q[j]) + m;
    }
}

// Q8_0 / Q8_1: d = max|x| / 127, q = round(x / d) in [-127, 127].
void quantize_q8_block(const float* x, uint16_t* d_out, int8_t* qs, int* sum) {
    float amax, max;
    signed_absmax(x, QK8_0, &amax, &max);
    const float id = store_scale(amax / 127.0f, d_out);
    *sum = 0;
    for (int j = 0; j < QK8_0; ++j) {
        qs[j] = int8_t(clamp_int(int(std::lround(x[j] * id)), -127, 127));
        *sum += qs[j];
    }
}

void quantize_q8_0(const float* x, void* y, int64_t n) {
    block_q8_0* b = static_cast<block_q8_0*>(y);
    for (int64_t i = 0; i < n / QK8_0; ++i, x += QK8_0) {
        float amax, max;
        signed_absmax(x, QK8_0, &amax, &max);
        int q[QK8_0];
        fit_sym_block(x, QK8_0, -amax, -127, 127, &b[i].d, q);  // candidate 0: d = amax / 127
        for (int j = 0; j < QK8_0; ++j) b[i].qs[j] = int8_t(q[j]);
    }
}
void dequantize_q8_0(const void* x, float* y, int64_t n) {
    const block_q8_0* b = static_cast<const block_q8_0*>(x);
    for (int64_t i = 0; i < n / QK8_0; ++i, y += QK8_0) {
        const float d = fp16_to_f32(b[i].d);
        for (int j = 0; j < QK8_0; ++j) y[j] = d * float(b[i].qs[j]);
    }
}

void quantize_q8_1(const float* x, void* y, int64_t n) {
    block_q8_1* b = static_cast<block_q8_1*>(y);
    for (int64_t i = 0; i < n / QK8_1; ++i, x += QK8_1) {
        int sum;
        quantize_q8_block(x, &b[i].d, b[i].qs, &sum);
        b[i].s = f32_to_fp16(fp16_to_f32(b[i].d) * float(sum));
    }
}
void dequantize_q8_1(const void* x, float* y, int64_t n) {
    const block_q8_1* b = static_cast<const block_q8_1*>(x);
    for (int64_t i = 0; i < n / QK8_1; ++i, y += QK8_1) {
        const float d = fp16_to_f32(b[i].d);
        for (int j = 0; j < QK8_1; ++j) y[j] = d * float(b[i].qs[j]);
    }
}

// ---- dispatch -------------------------------------------------------------------------------------------------

using quantize_fn = void (*)(const float*, void*, int64_t);
using dequantize_fn = void (*)(const void*, float*, int64_t);
struct row_fns {
    quantize_fn quantize;
    dequantize_fn dequantize;
};

// Validates (type, n) and returns the type's conversions; `what` names the calling function for messages.
row_fns lookup(dtype type, int64_t n, const char* what) {
    const dtype_traits* tr = dtype_traits_of(uint32_t(type));
    if (tr == nullptr)
        fail(TFU_STATUS_UNSUPPORTED, std::string(what) + ": unknown type id " + std::to_string(uint32_t(type)));
    row_fns f{nullptr, nullptr};
    switch (type) {
        case dtype::F32: f = {quantize_f32, dequantize_f32}; break;
        case dtype::F16: f = {quantize_f16, dequantize_f16}; break;
        case dtype::BF16: f = {quantize_bf16, dequantize_bf16}; break;
        case dtype::Q4_0: f = {quantize_q4_0, dequantize_q4_0}; break;
        case dtype::Q4_1: f = {quantize_q4_1, dequantize_q4_1}; break;
        case dtype::Q5_0: f = {quantize_q5_0, dequantize_q5_0}; break;
        case dtype::Q5_1: f = {quantize_q5_1, dequantize_q5_1}; break;
        case dtype::Q8_0: f = {quantize_q8_0, dequantize_q8_0}; break;
        case dtype::Q8_1: f = {quantize_q8_1, dequantize_q8_1}; break;
        case dtype::Q2_K: f = {quant_k::quantize_q2_K, quant_k::dequantize_q2_K}; break;
        case dtype::Q3_K: f = {quant_k::quantize_q3_K, quant_k::dequantize_q3_K}; break;
        case dtype::Q4_K: f = {quant_k::quantize_q4_K, quant_k::dequantize_q4_K}; break;
        case dtype::Q5_K: f = {quant_k::quantize_q5_K, quant_k::dequantize_q5_K}; break;
        case dtype::Q6_K: f = {quant_k::quantize_q6_K, quant_k::dequantize_q6_K}; break;
        case dtype::Q8_K: f = {quant_k::quantize_q8_K, quant_k::dequantize_q8_K}; break;
        default:
            fail(TFU_STATUS_UNSUPPORTED, std::string(what) + ": type " + tr->name + " has no row conversion");
    }
    if (n < 0 || n % tr->block_size != 0)
        fail(TFU_STATUS_INVALID_ARGUMENT, std::string(what) + ": n = " + std::to_string(n) +
                                              " is not a multiple of the block size " +
                                              std::to_string(tr->block_size) + " of " + tr->name);
    return f;
}

}  // namespace

void quantize_row(dtype type, const float* x, void* y, int64_t n) {
    const row_fns f = lookup(type, n, "quantize_row");
    if (n > 0) f.quantize(x, y, n);
}

void dequantize_row(dtype type, const void* x, float* y, int64_t n) {
    const row_fns f = lookup(type, n, "dequantize_row");
    if (n > 0) f.dequantize(x, y, n);
}

// Accumulates in double (this is the reference that the fast paths are tested against). Block types are
// dequantized one block at a time; plain types in chunks of 256 elements, so the stack buffer stays small.
float vec_dot_f32(dtype type, const void* w, const float* x, int64_t n) {
    const row_fns f = lookup(type, n, "vec_dot_f32");
    const dtype_traits& tr = traits(type);
    const int64_t chunk = tr.block_size == 1 ? 256 : tr.block_size;  // elements per step (<= QK_K)
    const size_t chunk_bytes = size_t(chunk / tr.block_size) * tr.type_size;
    const uint8_t* wp = static_cast<const uint8_t*>(w);
    float buf[QK_K];
    double sum = 0.0;
    for (int64_t i = 0; i < n; i += chunk) {
        const int64_t len = n - i < chunk ? n - i : chunk;  // only plain types have a shorter last chunk
        f.dequantize(wp, buf, len);
        for (int64_t j = 0; j < len; ++j) sum += double(buf[j]) * double(x[i + j]);
        wp += chunk_bytes;
    }
    return float(sum);
}

}  // namespace tfu
