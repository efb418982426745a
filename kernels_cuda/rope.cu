// ROPE: rotary position embedding (arXiv 2104.09864). dst (hd, n_head, n) = src0 rotated at positions src1 (n,
// i32). Pair j < n_rot/2 is (2j, 2j+1) in mode 0 and (j, j + n_rot/2) in mode 2 (neox);
// theta_j = pos * freq_scale * freq_base^(-2j/n_rot) / factor_j (factors: optional src2); dims >= n_rot copied.
// Launch: one block of 64 threads per (token, head) row, the row computed by rope_row.cuh (angles in double as the
// reference; in place is safe).
#include "cuda_common.cuh"
#include "cuda_ops.h"
#include "rope_row.cuh"

namespace tfu::cuda {

namespace {

__global__ void rope_kernel(const uint8_t* x, size_t x_stride, const int32_t* __restrict__ pos,
                            const float* __restrict__ factors, uint8_t* y, size_t y_stride, int64_t hd,
                            int64_t n_head, int n_rot, bool neox, double base, double freq_scale) {
    const int64_t r = blockIdx.x;  // row = t * n_head + h
    const int64_t t = r / n_head;
    const float* xr = reinterpret_cast<const float*>(x + size_t(r) * x_stride);
    float* yr = reinterpret_cast<float*>(y + size_t(r) * y_stride);
    rope_row(xr, yr, pos[t], factors, hd, n_rot, neox, base, freq_scale);
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
