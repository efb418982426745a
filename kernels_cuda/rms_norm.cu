// RMS_NORM: dst (k, rows) = src0 / sqrt(mean(src0^2) + eps) * src1 (k), eps = f[0] (ref: arXiv 1910.07467).
// Launch: one block of 256 threads per row; sum of squares in double (as the reference), warp then block
// reduction. In place (dst == src0) is safe: each thread writes only the elements it read, after the reduction.
#include "cuda_common.cuh"
#include "cuda_ops.h"

namespace tfu::cuda {

namespace {

constexpr int k_threads = 256;

__global__ void rms_norm_kernel(const float* __restrict__ x, size_t x_stride, const float* __restrict__ g,
                                float* y, size_t y_stride, int64_t k, float eps) {
    pdl_trigger();  // the projection after it may start staging its weights
    const float* xr = reinterpret_cast<const float*>(reinterpret_cast<const uint8_t*>(x) + blockIdx.x * x_stride);
    float* yr = reinterpret_cast<float*>(reinterpret_cast<uint8_t*>(y) + blockIdx.x * y_stride);
    double ss = 0;
    for (int64_t i = threadIdx.x; i < k; i += k_threads) ss += double(xr[i]) * xr[i];
    const double total = block_sum<k_threads>(ss);
    const double scale = 1.0 / sqrt(total / double(k) + double(eps));
    for (int64_t i = threadIdx.x; i < k; i += k_threads) yr[i] = float(xr[i] * scale * g[i]);
}

}  // namespace

void rms_norm(context& ctx, const op& o) {
    const tensor& x = *o.src[0];
    rms_norm_kernel<<<unsigned(x.nrows()), k_threads, 0, ctx.stream>>>(
        static_cast<const float*>(x.data), x.nb[1], static_cast<const float*>(o.src[1]->data),
        static_cast<float*>(o.dst->data), o.dst->nb[1], x.ne[0], o.f[0]);
    check_launch("rms_norm_kernel");
}

}  // namespace tfu::cuda
