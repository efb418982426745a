// Host-side interface between the CUDA backend (cuda_backend.cpp) and its kernels (<op>.cu): the per-backend
// context (device, stream, cuBLAS handle, scratch and staging memory, device-side error report), error mapping,
// and one launch function per op of backend/ops.def. Every launch enqueues on ctx.stream and returns at once;
// the backend synchronises at the end of run().
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "backend/op.h"
#include "core/error.h"

namespace tfu::cuda {

// Throw tfu::error naming the call: OUT_OF_MEMORY for cudaErrorMemoryAllocation / CUBLAS_STATUS_ALLOC_FAILED,
// DEVICE_ERROR otherwise ("cuda: <what> failed: <error name>: <error string>").
void check(cudaError_t e, const char* what);
void check_cublas(cublasStatus_t s, const char* what);
// After a kernel launch: a bad configuration shows up here; faults inside the kernel at the next sync.
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

// What a kernel that meets bad input (an id out of range) reports; run() reads it after its sync and throws.
struct device_status {
    int32_t code;      // status_ok or one of the codes below (the first report wins)
    int32_t op_index;  // index of the op in run()'s list
    int64_t a, b;      // code-specific values (bad_row_id: the id and its position)
};
enum : int32_t { status_ok = 0, status_bad_row_id = 1 };

class context {
public:
    int device = 0;
    int sm_count = 0;
    cudaStream_t stream = nullptr;
    cublasHandle_t cublas = nullptr;
    device_status* status = nullptr;  // device memory, zero when no error
    int32_t op_index = 0;             // the op being enqueued (for device_status)

    // A device buffer of at least `bytes` for the op being enqueued, valid until the next scratch() call (all
    // work is on one stream, so the next op's kernels run after this op's). Growing it synchronises the stream.
    void* scratch(size_t bytes);
    // Copies `bytes` of host memory to the device through a pinned staging ring and returns the device copy;
    // valid until the end of run() (stage_reset). Small per-op tables (ATTENTION_PAGED's block table).
    void* stage(const void* host, size_t bytes);
    void stage_reset() { stage_used_ = 0; }
    void release() noexcept;

private:
    void* scratch_ = nullptr;
    size_t scratch_cap_ = 0;
    uint8_t* stage_host_ = nullptr;  // pinned
    uint8_t* stage_dev_ = nullptr;
    size_t stage_cap_ = 0, stage_used_ = 0;
};

// One launch function per op (ops.def): the op has passed check_op and supported_here.
#define TFU_OP(NAME, name, n_src) void name(context& ctx, const op& o);
#include "backend/ops.def"
#undef TFU_OP

// CUDA-specific limits beyond check_op (head size, alignment); false with *why (if given) when one fails.
bool supported_here(const op& o, std::string* why);

// Whether the module holds machine code for the current device (a kernel's attributes can be read).
bool probe_kernel_image();

// Largest head size the attention kernels take (8 channels per lane of a warp).
constexpr int k_max_head_dim = 256;

}  // namespace tfu::cuda
