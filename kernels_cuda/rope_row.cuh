// One (token, head) row of ROPE, shared by rope.cu's kernel and the fused launches (fused_rows.cu,
// fused_rope_blocks.cu) so that all compute the same values bit for bit: the block's threads take pair i (i < n_rot / 2) or copy one dimension >= n_rot.
// The angle and its sine/cosine are computed in double as in the reference (positions reach 10^4 and more, where
// an f32 angle is off by ~1e-3 rad). In place (yr == xr) is safe: one thread per pair.
#pragma once

#include <cstdint>

#include "backend/op.h"

namespace tfu::cuda {

// The rows of one ROPE op: (token, head) row r of x at x + r * x_stride, of y (dst) likewise.
struct rope_rows {
    const uint8_t* x;
    size_t x_stride;
    uint8_t* y;
    size_t y_stride;
    int64_t hd, n_head;
};

inline rope_rows rope_rows_of(const op& o) {
    const tensor& x = *o.src[0];
    return {static_cast<const uint8_t*>(x.data), x.nb[1], static_cast<uint8_t*>(o.dst->data), o.dst->nb[1], x.ne[0],
            x.ne[1]};
}

__device__ __forceinline__ void rope_row(const float* xr, float* yr, int32_t pos, const float* __restrict__ factors,
                                         int64_t hd, int n_rot, bool neox, double base, double freq_scale) {
    const int half = n_rot / 2;
    const int64_t n_items = half + (hd - n_rot);
    for (int64_t i = threadIdx.x; i < n_items; i += blockDim.x) {
        if (i < half) {
            const int j = int(i);
            double theta = double(pos) * freq_scale * pow(base, -2.0 * j / n_rot);
            if (factors) theta /= double(factors[j]);
            double s, c;
            sincos(theta, &s, &c);
            const int i0 = neox ? j : 2 * j;
            const int i1 = neox ? j + half : 2 * j + 1;
            const double a = xr[i0], b = xr[i1];
            yr[i0] = float(a * c - b * s);
            yr[i1] = float(a * s + b * c);
        } else {
            const int64_t e = n_rot + (i - half);
            yr[e] = xr[e];
        }
    }
}

}  // namespace tfu::cuda
