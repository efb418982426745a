// Scalar reference conversions of the K-quants (Q2_K..Q6_K, Q8_K): 256-element super-blocks of 16 or 32-element
// sub-blocks whose scales (and mins) are themselves quantized against fp16 super-block scales d (and dmin).
// Layouts as ggml's block_q*_K (ggml-common.h); the element order of each format is spelled out at its code.
// Quantizers: per sub-block a small search over the scale (least-squares refit of the levels each candidate
// picks, keeping the candidate of least squared error), then the sub-block scales are quantized and the levels
// recomputed against the scales the reader will decode.
#include <cmath>
#include <cstring>

#include "core/fp16.h"
#include "core/quant.h"
#include "core/quant_k.h"

namespace tfu::quant_k {

namespace {

int clamp_int(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }
int nearest(float v) { return int(std::lround(v)); }

// Scale s (sign included) so that x ~= s * l with integer l in [-nmax, nmax - 1]; the largest |x| goes to -nmax.
float fit_symmetric(const float* x, int n, int nmax) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; ++j)
        if (std::fabs(x[j]) > amax) {
            amax = std::fabs(x[j]);
            max = x[j];
        }
    if (amax < 1e-30f) return 0.0f;
    float best_s = -max / float(nmax);
    double best_gain = -1.0;  // squared error = sum x^2 - gain, gain = (sum x l)^2 / sum l^2
    for (int k = -9; k <= 9; ++k) {
        const float iscale = -(float(nmax) + 0.1f * float(k)) / max;
        double sxl = 0.0, sll = 0.0;
        for (int j = 0; j < n; ++j) {
            const int l = clamp_int(nearest(iscale * x[j]), -nmax, nmax - 1);
            sxl += double(x[j]) * l;
            sll += double(l) * l;
        }
        if (sll > 0.0 && sxl * sxl / sll > best_gain) {
            best_gain = sxl * sxl / sll;
            best_s = float(sxl / sll);
        }
    }
    return best_s;
}

// Scale s >= 0 and min m >= 0 so that x ~= s * l - m with integer l in [0, nmax].
void fit_asymmetric(const float* x, int n, int nmax, float* s_out, float* m_out) {
    float mn = 0.0f, mx = x[0];
    for (int j = 0; j < n; ++j) {
        mn = x[j] < mn ? x[j] : mn;
        mx = x[j] > mx ? x[j] : mx;
    }
    if (!(mx > mn)) {  // all values equal and <= 0, or all zero
        *s_out = 0.0f;
        *m_out = -mn;
        return;
    }
    float best_s = (mx - mn) / float(nmax), best_m = -mn;
    double best_err = INFINITY;
    for (int k = -10; k <= 10; ++k) {
        const float iscale = (float(nmax) + 0.1f * float(k)) / (mx - mn);
        int l[32];
        double sl = 0, sll = 0, sx = 0, sxl = 0;
        for (int j = 0; j < n; ++j) {
            l[j] = clamp_int(nearest(iscale * (x[j] - mn)), 0, nmax);
            sl += l[j];
            sll += double(l[j]) * l[j];
            sx += x[j];
            sxl += double(x[j]) * l[j];
        }
        // least squares for x ~= a l + b, with b <= 0 (the format stores -b as a non-negative min)
        const double det = n * sll - sl * sl;
        if (det <= 0.0) continue;
        double a = (n * sxl - sl * sx) / det, b = (sll * sx - sl * sxl) / det;
        if (b > 0.0) {
            b = 0.0;
            a = sxl / sll;
        }
        if (a <= 0.0) continue;
        double err = 0.0;
        for (int j = 0; j < n; ++j) {
            const double e = a * l[j] + b - x[j];
            err += e * e;
        }
        if (err < best_err) {
            best_err = err;
            best_s = float(a);
            best_m = float(-b);
        }
    }
    *s_out = best_s;
    *m_out = best_m;
}

// Asymmetric super-block (Q2_K, Q4_K, Q5_K): fits n_sub sub-blocks of sub_n elements, quantizes their scales and
// mins to [0, smax] against fp16 d / dmin, and returns the levels l[QK_K] in [0, nmax] for the decoded scales.
void quantize_asym_superblock(const float* x, int n_sub, int sub_n, int nmax, int smax, uint16_t* d_out,
                              uint16_t* dmin_out, int* ls, int* lm, int* l) {
    float s[16], m[16], max_s = 0.0f, max_m = 0.0f;
    for (int j = 0; j < n_sub; ++j) {
        fit_asymmetric(x + j * sub_n, sub_n, nmax, &s[j], &m[j]);
        max_s = s[j] > max_s ? s[j] : max_s;
        max_m = m[j] > max_m ? m[j] : max_m;
    }
    // The 6-bit (Q2_K: 4-bit) sub-block scales and mins lose precision when one sub-block's range dominates, so
    // the final codes are chosen against the decoded values: a few super-block d / dmin candidates around
    // max / smax, and for each sub-block the rounded (scale, min) codes and their neighbours (+-1), keeping the
    // combination of least squared error with the levels it implies.
    static const float k_factors[3] = {1.0f, 0.95f, 0.9f};
    double best_total = INFINITY;
    int cand_ls[16], cand_lm[16];
    for (float fd : k_factors) {
        for (float fm : k_factors) {
            const uint16_t d16 = f32_to_fp16(fd * max_s / float(smax)), m16 = f32_to_fp16(fm * max_m / float(smax));
            const float d = fp16_to_f32(d16), dmin = fp16_to_f32(m16);
            double total = 0.0;
            for (int j = 0; j < n_sub; ++j) {
                const float* xs = x + j * sub_n;
                const int rs = d > 0.0f ? clamp_int(nearest(s[j] / d), 0, smax) : 0;
                const int rm = dmin > 0.0f ? clamp_int(nearest(m[j] / dmin), 0, smax) : 0;
                double best = INFINITY;
                for (int a = rs - 1; a <= rs + 1; ++a) {
                    if (a < 0 || a > smax || (a != rs && d <= 0.0f)) continue;
                    for (int b = rm - 1; b <= rm + 1; ++b) {
                        if (b < 0 || b > smax || (b != rm && dmin <= 0.0f)) continue;
                        const float ds = d * float(a), dm = dmin * float(b);
                        const float ids = ds > 0.0f ? 1.0f / ds : 0.0f;
                        double err = 0.0;
                        for (int i = 0; i < sub_n && err < best; ++i) {
                            const int q = ds > 0.0f ? clamp_int(nearest((xs[i] + dm) * ids), 0, nmax) : 0;
                            const double e = double(ds) * q - dm - xs[i];
                            err += e * e;
                        }
                        if (err < best) {
                            best = err;
                            cand_ls[j] = a;
                            cand_lm[j] = b;
                        }
                    }
                }
                total += best;
                if (total >= best_total) break;
            }
            if (total < best_total) {
                best_total = total;
                *d_out = d16;
                *dmin_out = m16;
                for (int j = 0; j < n_sub; ++j) {
                    ls[j] = cand_ls[j];
                    lm[j] = cand_lm[j];
                }
            }
        }
    }
    const float d = fp16_to_f32(*d_out), dmin = fp16_to_f32(*dmin_out);
    for (int j = 0; j < n_sub; ++j) {
        const float ds = d * float(ls[j]), dm = dmin * float(lm[j]);
        const float ids = ds > 0.0f ? 1.0f / ds : 0.0f;
        for (int i = 0; i < sub_n; ++i) {
            const int e = j * sub_n + i;
            l[e] = ds > 0.0f ? clamp_int(nearest((x[e] + dm) * ids), 0, nmax) : 0;
        }
    }
}

// Symmetric super-block (Q3_K, Q6_K): 16 sub-blocks of 16 with signed scales quantized to [-smax, smax - 1]
// against fp16 d; returns levels l[QK_K] in [-nmax, nmax - 1].
void quantize_sym_superblock(const float* x, int nmax, int smax, uint16_t* d_out, int* ls, int* l) {
    float s[16], amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 16; ++j) {
        s[j] = fit_symmetric(x + 16 * j, 16, nmax);
        if (std::fabs(s[j]) > amax) {
            amax = std::fabs(s[j]);
            max = s[j];
        }
    }
    *d_out = f32_to_fp16(amax > 0.0f ? max / -float(smax) : 0.0f);
    const float d = fp16_to_f32(*d_out);
    for (int j = 0; j < 16; ++j) {
        ls[j] = d != 0.0f ? clamp_int(nearest(s[j] / d), -smax, smax - 1) : 0;
        const float ds = d * float(ls[j]);
        for (int i = 0; i < 16; ++i)
            l[16 * j + i] = ds != 0.0f ? clamp_int(nearest(x[16 * j + i] / ds), -nmax, nmax - 1) : 0;
    }
}

}  // namespace

void unpack_scale_min_k4(const uint8_t* q, int j, int* sc, int* m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0x0f) | (q[j - 4] >> 6) << 4;
        *m = (q[j + 4] >> 4) | (q[j] >> 6) << 4;
    }
}

static void pack_scale_min_k4(const int* ls, const int* lm, uint8_t* q) {
    std::memset(q, 0, K_SCALE_SIZE);
    for (int j = 0; j < 8; ++j) {
        if (j < 4) {
            q[j] |= uint8_t(ls[j]);
            q[j + 4] |= uint8_t(lm[j]);
        } else {
            q[j + 4] = uint8_t((ls[j] & 0x0f) | (lm[j] & 0x0f) << 4);
            q[j - 4] |= uint8_t((ls[j] >> 4) << 6);
            q[j] |= uint8_t((lm[j] >> 4) << 6);
        }
    }
}

void unpack_scales_q3_K(const uint8_t* s, int out[16]) {
    for (int i = 0; i < 16; ++i) {
        const int lo = i < 8 ? (s[i] & 0x0f) : (s[i - 8] >> 4);
        const int hi = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
        out[i] = (lo | hi << 4) - 32;
    }
}

// ---- Q2_K: 16 sub-blocks of 16; scales[j] = scale (low nibble) | min (high nibble); x = d*sc*q - dmin*m.
// Element e = 128*h + 32*s + l (h < 2, s < 4, l < 32) is bits 2s..2s+1 of qs[32h + l]; its sub-block is e / 16.

void quantize_q2_K(const float* x, void* y, int64_t n) {
    block_q2_K* b = static_cast<block_q2_K*>(y);
    for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
        int ls[16], lm[16], l[QK_K];
        quantize_asym_superblock(x, 16, 16, 3, 15, &b[i].d, &b[i].dmin, ls, lm, l);
        for (int j = 0; j < 16; ++j) b[i].scales[j] = uint8_t(ls[j] | lm[j] << 4);
        std::memset(b[i].qs, 0, sizeof b[i].qs);
        for (int e = 0; e < QK_K; ++e) b[i].qs[32 * (e / 128) + e % 32] |= uint8_t(l[e] << (2 * ((e % 128) / 32)));
    }
}
void dequantize_q2_K(const void* x, float* y, int64_t n) {
    const block_q2_K* b = static_cast<const block_q2_K*>(x);
    for (int64_t i = 0; i < n / QK_K; ++i, y += QK_K) {
        const float d = fp16_to_f32(b[i].d), dmin = fp16_to_f32(b[i].dmin);
        for (int e = 0; e < QK_K; ++e) {
            const int q = (b[i].qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
            const uint8_t sm = b[i].scales[e / 16];
            y[e] = d * float(sm & 0x0f) * float(q) - dmin * float(sm >> 4);
        }
    }
}

// ---- Q3_K: 16 sub-blocks of 16, signed 6-bit scales (see unpack_scales_q3_K); x = d * sc * q, q in [-4, 3].
// Element e = 128*h + 32*s + l: low 2 bits of q+4 at bits 2s of qs[32h + l]; bit 2 of q+4 is bit e/32 of
// hmask[e % 32] (a clear bit means q = low bits - 4).

void quantize_q3_K(const float* x, void* y, int64_t n) {
    block_q3_K* b = static_cast<block_q3_K*>(y);
    for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
        int ls[16], l[QK_K];
        quantize_sym_superblock(x, 4, 32, &b[i].d, ls, l);
        std::memset(b[i].scales, 0, sizeof b[i].scales);
        for (int j = 0; j < 16; ++j) {
            const int u = ls[j] + 32;  // 0..63
            b[i].scales[j % 8] |= uint8_t((u & 0x0f) << (j < 8 ? 0 : 4));
            b[i].scales[8 + j % 4] |= uint8_t((u >> 4) << (2 * (j / 4)));
        }
        std::memset(b[i].qs, 0, sizeof b[i].qs);
        std::memset(b[i].hmask, 0, sizeof b[i].hmask);
        for (int e = 0; e < QK_K; ++e) {
            const int u = l[e] + 4;  // 0..7
            b[i].qs[32 * (e / 128) + e % 32] |= uint8_t((u & 3) << (2 * ((e % 128) / 32)));
            if (u & 4) b[i].hmask[e % 32] |= uint8_t(1u << (e / 32));
        }
    }
}
void dequantize_q3_K(const void* x, float* y, int64_t n) {
    const block_q3_K* b = static_cast<const block_q3_K*>(x);
    for (int64_t i = 0; i < n / QK_K; ++i, y += QK_K) {
        const float d = fp16_to_f32(b[i].d);
        int sc[16];
        unpack_scales_q3_K(b[i].scales, sc);
        for (int e = 0; e < QK_K; ++e) {
            const int lo = (b[i].qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
            const int q = lo - ((b[i].hmask[e % 32] >> (e / 32)) & 1 ? 0 : 4);
            y[e] = d * float(sc[e / 16]) * float(q);
        }
    }
}

// ---- Q4_K / Q5_K: 8 sub-blocks of 32 with 6-bit scales and mins (see unpack_scale_min_k4);
// x = d * sc * q - dmin * m. Element e = 64*c + 32*k + l (c < 4, k < 2, l < 32) is the low (k = 0) or high
// (k = 1) nibble of qs[32c + l]; its sub-block is e / 32. Q5_K: bit 4 of q is bit e/32 of qh[e % 32].

static void quantize_q45_K(const float* x, int nmax, uint16_t* d, uint16_t* dmin, uint8_t* scales, uint8_t* qs,
                           uint8_t* qh) {
    int ls[8], lm[8], l[QK_K];
    quantize_asym_superblock(x, 8, 32, nmax, 63, d, dmin, ls, lm, l);
    pack_scale_min_k4(ls, lm, scales);
    std::memset(qs, 0, QK_K / 2);
    if (qh) std::memset(qh, 0, QK_K / 8);
    for (int e = 0; e < QK_K; ++e) {
        qs[32 * (e / 64) + e % 32] |= uint8_t((l[e] & 0x0f) << (4 * ((e % 64) / 32)));
        if (qh && (l[e] & 16)) qh[e % 32] |= uint8_t(1u << (e / 32));
    }
}

static void dequantize_q45_K(uint16_t d16, uint16_t dmin16, const uint8_t* scales, const uint8_t* qs,
                             const uint8_t* qh, float* y) {
    const float d = fp16_to_f32(d16), dmin = fp16_to_f32(dmin16);
    for (int j = 0; j < 8; ++j) {
        int sc, m;
        unpack_scale_min_k4(scales, j, &sc, &m);
        const float ds = d * float(sc), dm = dmin * float(m);
        for (int t = 0; t < 32; ++t) {
            const int e = 32 * j + t;
            int q = (qs[32 * (e / 64) + t] >> (4 * (j % 2))) & 0x0f;
            if (qh) q |= ((qh[t] >> j) & 1) << 4;
            y[e] = ds * float(q) - dm;
        }
    }
}

void quantize_q4_K(const float* x, void* y, int64_t n) {
    block_q4_K* b = static_cast<block_q4_K*>(y);
    for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K)
        quantize_q45_K(x, 15, &b[i].d, &b[i].dmin, b[i].scales, b[i].qs, nullptr);
}
void dequantize_q4_K(const void* x, float* y, int64_t n) {
    const block_q4_K* b = static_cast<const block_q4_K*>(x);
    for (int64_t i = 0; i < n / QK_K; ++i, y += QK_K) dequantize_q45_K(b[i].d, b[i].dmin, b[i].scales, b[i].qs, nullptr, y);
}
void quantize_q5_K(const float* x, void* y, int64_t n) {
    block_q5_K* b = static_cast<block_q5_K*>(y);
    for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K)
        quantize_q45_K(x, 31, &b[i].d, &b[i].dmin, b[i].scales, b[i].qs, b[i].qh);
}
void dequantize_q5_K(const void* x, float* y, int64_t n) {
    const block_q5_K* b = static_cast<const block_q5_K*>(x);
    for (int64_t i = 0; i < n / QK_K; ++i, y += QK_K) dequantize_q45_K(b[i].d, b[i].dmin, b[i].scales, b[i].qs, b[i].qh, y);
}

// ---- Q6_K: 16 sub-blocks of 16, int8 scales; x = d * sc * q, q in [-32, 31] stored as u = q + 32 (6 bits).
// Element e = 128*h + 32*k + l (k < 4, l < 32): low 4 bits of u are the low (k < 2) or high (k >= 2) nibble of
// ql[64h + 32*(k % 2) + l]; its high 2 bits are bits 2k..2k+1 of qh[32h + l]; its sub-block is e / 16.

static int q6_ql_index(int e) { return 64 * (e / 128) + 32 * ((e % 128) / 32 % 2) + e % 32; }

void quantize_q6_K(const float* x, void* y, int64_t n) {
    block_q6_K* b = static_cast<block_q6_K*>(y);
    for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
        int ls[16], l[QK_K];
        quantize_sym_superblock(x, 32, 128, &b[i].d, ls, l);
        for (int j = 0; j < 16; ++j) b[i].scales[j] = int8_t(ls[j]);
        std::memset(b[i].ql, 0, sizeof b[i].ql);
        std::memset(b[i].qh, 0, sizeof b[i].qh);
        for (int e = 0; e < QK_K; ++e) {
            const int u = l[e] + 32, k = (e % 128) / 32;
            b[i].ql[q6_ql_index(e)] |= uint8_t((u & 0x0f) << (k < 2 ? 0 : 4));
            b[i].qh[32 * (e / 128) + e % 32] |= uint8_t((u >> 4) << (2 * k));
        }
    }
}
void dequantize_q6_K(const void* x, float* y, int64_t n) {
    const block_q6_K* b = static_cast<const block_q6_K*>(x);
    for (int64_t i = 0; i < n / QK_K; ++i, y += QK_K) {
        const float d = fp16_to_f32(b[i].d);
        for (int e = 0; e < QK_K; ++e) {
            const int k = (e % 128) / 32;
            const int lo = (b[i].ql[q6_ql_index(e)] >> (k < 2 ? 0 : 4)) & 0x0f;
            const int hi = (b[i].qh[32 * (e / 128) + e % 32] >> (2 * k)) & 3;
            y[e] = d * float(b[i].scales[e / 16]) * float((lo | hi << 4) - 32);
        }
    }
}

// ---- Q8_K: f32 d, q in [-127, 127] (d = max|x| / 127, round to nearest even, the same arithmetic as the
// activation quantizer of the fast CPU path), bsums[j] = sum of q over elements 16j..16j+15.

void quantize_q8_K(const float* x, void* y, int64_t n) {
    block_q8_K* b = static_cast<block_q8_K*>(y);
    for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
        float amax = 0.0f;
        for (int e = 0; e < QK_K; ++e) amax = std::fabs(x[e]) > amax ? std::fabs(x[e]) : amax;
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = d;
        for (int e = 0; e < QK_K; ++e) b[i].qs[e] = int8_t(clamp_int(int(std::nearbyint(x[e] * id)), -127, 127));
        for (int j = 0; j < 16; ++j) {
            int s = 0;
            for (int t = 0; t < 16; ++t) s += b[i].qs[16 * j + t];
            b[i].bsums[j] = int16_t(s);
        }
    }
}
void dequantize_q8_K(const void* x, float* y, int64_t n) {
    const block_q8_K* b = static_cast<const block_q8_K*>(x);
    for (int64_t i = 0; i < n / QK_K; ++i, y += QK_K)
        for (int e = 0; e < QK_K; ++e) y[e] = b[i].d * float(b[i].qs[e]);
}

}  // namespace tfu::quant_k
