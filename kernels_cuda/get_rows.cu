// GET_ROWS: dst (n_embd, n) f32 = rows of src0 (n_embd, n_vocab; any weight dtype) at ids src1 (n, i32).
// Launch: one block of 256 threads per id; each thread dequantizes elements e = tid, tid + 256, ... (w_at).
// An id outside [0, n_vocab) leaves its row unwritten and is reported through device_status: the backend's
// next sync() or download() throws INVALID_ARGUMENT with the reference's message (cuda_backend.cpp).
#include "cuda_ops.h"
#include "mul_mat_q.cuh"

namespace tfu::cuda {

namespace {

template <dtype T>
__global__ void get_rows_kernel(const uint8_t* __restrict__ w, size_t w_stride, int64_t n_rows, int64_t n_embd,
                                const int32_t* __restrict__ ids, float* __restrict__ dst, size_t d_stride,
                                device_status* status, int32_t slot) {
    const int64_t j = blockIdx.x;
    const int32_t id = ids[j];
    if (id < 0 || id >= n_rows) {
        if (threadIdx.x == 0 && atomicCAS(&status->code, status_ok, status_bad_row_id) == status_ok) {
            status->slot = slot;
            status->a = id;
            status->b = j;
        }
        return;
    }
    const uint8_t* row = w + size_t(id) * w_stride;
    float* y = reinterpret_cast<float*>(reinterpret_cast<uint8_t*>(dst) + size_t(j) * d_stride);
    for (int64_t e = threadIdx.x; e < n_embd; e += blockDim.x) y[e] = w_at<T>(row, e);
}

__global__ void probe_kernel() {}

}  // namespace

bool probe_kernel_image() {
    cudaFuncAttributes a{};
    const cudaError_t e = cudaFuncGetAttributes(&a, probe_kernel);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    return true;
}

void get_rows(context& ctx, const op& o) {
    const tensor& w = *o.src[0];
    const tensor& ids = *o.src[1];
    tensor& d = *o.dst;
    const int64_t n = ids.nelements();
    switch (w.type) {
#define TFU_CASE(T)                                                                                           \
    case dtype::T:                                                                                            \
        get_rows_kernel<dtype::T><<<unsigned(n), 256, 0, ctx.stream>>>(                                       \
            static_cast<const uint8_t*>(w.data), w.nb[1], w.ne[1], w.ne[0], static_cast<const int32_t*>(ids.data), \
            static_cast<float*>(d.data), d.nb[1], ctx.status, ctx.report_slot);                                \
        break;
        TFU_CUDA_WEIGHT_TYPES(TFU_CASE)
#undef TFU_CASE
        default: fail(TFU_STATUS_UNSUPPORTED, std::string("cuda get_rows: weight dtype ") + dtype_name(w.type));
    }
    check_launch("get_rows_kernel");
}

}  // namespace tfu::cuda
