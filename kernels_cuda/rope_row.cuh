// One (token, head) row of ROPE, shared by rope.cu's kernel and fused_rows.cu's q+k kernel so that both compute
// the same values bit for bit: the block's threads take pair i (i < n_rot / 2) or copy one dimension >= n_rot.
// The angle and its sine/cosine are computed in double as in the reference (positions reach 10^4 and more, where
// an f32 angle is off by ~1e-3 rad). In place (yr == xr) is safe: one thread per pair.
#pragma once

#include <cstdint>

namespace tfu::cuda {

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
