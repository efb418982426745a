// ROPE: rotary position embedding (arXiv 2104.09864). dst (hd, n_head, n) = src0 rotated at positions src1 (n,
// i32). Pair j < n_rot/2 is (2j, 2j+1) in mode 0 and (j, j + n_rot/2) in mode 2 (neox);
// theta_j = pos * freq_scale * freq_base^(-2j/n_rot) / factor_j (factors: optional src2); dims >= n_rot copied.
// The angle and its sine/cosine are computed in double as in the reference (positions reach 10^4 and more,
// where an f32 angle is off by ~1e-3 rad). Launch: one block of 64 threads per (token, head) row; thread i
// handles pair i (i < n_rot/2) or copies one dimension >= n_rot. In place is safe (one thread per pair).
#include "cuda_common.cuh"
#include "cuda_ops.h"

namespace tfu::cuda {

namespace {

__global__ void rope_kernel(const uint8_t* x, size_t x_stride, const int32_t* __restrict__ pos,
                            const float* __restrict__ factors, uint8_t* y, size_t y_stride, int64_t hd,
                            int64_t n_head, int n_rot, bool neox, double base, double freq_scale) {
    const int64_t r = blockIdx.x;  // row = t * n_head + h
    const int64_t t = r / n_head;
    const float* xr = reinterpret_cast<const float*>(x + size_t(r) * x_stride);
    float* yr = reinterpret_cast<float*>(y + size_t(r) * y_stride);
    const int half = n_rot / 2;
    const int64_t n_items = half + (hd - n_rot);
    for (int64_t i = threadIdx.x; i < n_items; i += blockDim.x) {
        if (i < half) {
            const int j = int(i);
            double theta = double(pos[t]) * freq_scale * pow(base, -2.0 * j / n_rot);
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

}  // namespace

void rope(context& ctx, const op& o) {
    const tensor& x = *o.src[0];
    const float* factors = o.src[2] ? static_cast<const float*>(o.src[2]->data) : nullptr;
    rope_kernel<<<unsigned(x.nrows()), 64, 0, ctx.stream>>>(
        static_cast<const uint8_t*>(x.data), x.nb[1], static_cast<const int32_t*>(o.src[1]->data), factors,
        static_cast<uint8_t*>(o.dst->data), o.dst->nb[1], x.ne[0], x.ne[1], o.i[0], o.i[1] == 2, double(o.f[0]),
        double(o.f[1]));
    check_launch("rope_kernel");
}

}  // namespace tfu::cuda
