// KV_STORE: cache rows i[0] .. i[0]+n-1 of dst (row, n_ctx; f32, f16 or bf16) = src0 (row, n) f32, converted
// with round-to-nearest-even (bit-exact with core/fp16.h). Launch: a grid-stride loop over row * n elements.
// i[0] comes as a launch argument, or from device memory (first_dev, context::dyn_at) in replayed graphs.
#include "cuda_common.cuh"
#include "cuda_ops.h"

namespace tfu::cuda {

namespace {

template <dtype T>
__global__ void kv_store_kernel(const uint8_t* __restrict__ x, size_t x_stride, uint8_t* __restrict__ c,
                                size_t c_stride, int64_t first_arg, const int32_t* first_dev, int64_t k,
                                int64_t total) {
    const int64_t first = first_dev ? int64_t(*first_dev) : first_arg;
    for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
         idx += int64_t(gridDim.x) * blockDim.x) {
        const int64_t j = idx / k, i = idx % k;
        const float v = reinterpret_cast<const float*>(x + size_t(j) * x_stride)[i];
        uint8_t* row = c + size_t(first + j) * c_stride;
        if constexpr (T == dtype::F32) reinterpret_cast<float*>(row)[i] = v;
        else if constexpr (T == dtype::F16) reinterpret_cast<uint16_t*>(row)[i] = f2h(v);
        else reinterpret_cast<uint16_t*>(row)[i] = f2bf(v);
    }
}

}  // namespace

void kv_store(context& ctx, const op& o) {
    const tensor& x = *o.src[0];
    tensor& c = *o.dst;
    const int64_t total = x.nelements();
    const unsigned blocks = unsigned(std::min<int64_t>(ceil_div(total, 256), int64_t(ctx.sm_count) * 16));
    auto go = [&](auto kernel) {
        kernel<<<blocks, 256, 0, ctx.stream>>>(static_cast<const uint8_t*>(x.data), x.nb[1],
                                               static_cast<uint8_t*>(c.data), c.nb[1], int64_t(o.i[0]), ctx.dyn_at(),
                                               x.ne[0], total);
    };
    switch (c.type) {
        case dtype::F32: go(kv_store_kernel<dtype::F32>); break;
        case dtype::F16: go(kv_store_kernel<dtype::F16>); break;
        case dtype::BF16: go(kv_store_kernel<dtype::BF16>); break;
        default: fail(TFU_STATUS_UNSUPPORTED, std::string("cuda kv_store: cache dtype ") + dtype_name(c.type));
    }
    check_launch("kv_store_kernel");
}

}  // namespace tfu::cuda
