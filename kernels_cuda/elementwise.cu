// ADD, MUL and SWIGLU: dst (k, rows) = src0 (k, rows) (+, *) src1 (k, rows or 1: broadcast over rows), and
// dst = silu(src0) * src1 with silu(x) = x / (1 + exp(-x)). Row strides are the tensors' nb[1].
// Launch: a grid-stride loop over the k * rows elements, 256 threads per block. In place (dst == src0) is safe:
// each element is read and written by the same thread.
#include "cuda_common.cuh"
#include "cuda_ops.h"

namespace tfu::cuda {

namespace {

enum class ew { add, mul, swiglu };

template <ew OP>
__global__ void elementwise_kernel(const uint8_t* a, size_t a_stride, const uint8_t* __restrict__ b,
                                   size_t b_stride, uint8_t* y, size_t y_stride, int64_t k, int64_t total) {
    for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
         idx += int64_t(gridDim.x) * blockDim.x) {
        const int64_t r = idx / k, i = idx % k;
        const float x = reinterpret_cast<const float*>(a + size_t(r) * a_stride)[i];
        const float z = reinterpret_cast<const float*>(b + size_t(r) * b_stride)[i];  // b_stride 0: broadcast
        float out;
        if constexpr (OP == ew::add) out = x + z;
        else if constexpr (OP == ew::mul) out = x * z;
        else out = silu_mul(x, z);  // the reference's double arithmetic
        reinterpret_cast<float*>(y + size_t(r) * y_stride)[i] = out;
    }
}

template <ew OP>
void launch(context& ctx, const op& o, const char* name) {
    const tensor& a = *o.src[0];
    const tensor& b = *o.src[1];
    const int64_t total = a.nelements();
    const size_t b_stride = b.nrows() == 1 ? 0 : b.nb[1];
    const unsigned blocks = unsigned(std::min<int64_t>(ceil_div(total, 256), int64_t(ctx.sm_count) * 16));
    elementwise_kernel<OP><<<blocks, 256, 0, ctx.stream>>>(static_cast<const uint8_t*>(a.data), a.nb[1],
                                                            static_cast<const uint8_t*>(b.data), b_stride,
                                                            static_cast<uint8_t*>(o.dst->data), o.dst->nb[1], a.ne[0],
                                                            total);
    check_launch(name);
}

}  // namespace

void add(context& ctx, const op& o) { launch<ew::add>(ctx, o, "add_kernel"); }
void mul(context& ctx, const op& o) { launch<ew::mul>(ctx, o, "mul_kernel"); }
void swiglu(context& ctx, const op& o) { launch<ew::swiglu>(ctx, o, "swiglu_kernel"); }

}  // namespace tfu::cuda
