// Host-side interface between the CUDA backend (cuda_backend.cpp) and its kernels (<op>.cu): the per-backend
// context (device, stream, cuBLAS handle, scratch and staging memory, device-side error report), error mapping,
// and one launch function per op of backend/ops.def. Every launch enqueues on ctx.stream and returns at once;
// run() does not synchronise either: the host waits only in sync(), download(), upload(), scratch growth and
// when the staging ring comes round to bytes whose copy has not run yet.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "backend/fused_pairs.h"  // tensors_overlap, same_rows
#include "backend/kv_block_map.h"
#include "backend/op.h"
#include "core/error.h"

namespace tfu::cuda {

// Throw tfu::error naming the call: OUT_OF_MEMORY for cudaErrorMemoryAllocation / CUBLAS_STATUS_ALLOC_FAILED,
// DEVICE_ERROR otherwise ("cuda: <what> failed: <error name>: <error string>").
void check(cudaError_t e, const char* what);
void check_cublas(cublasStatus_t s, const char* what);
// After a kernel launch: a bad configuration shows up here; faults inside the kernel at the next sync.
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

// What a kernel that meets bad input (an id out of range) reports. It stays on the device until the next
// synchronising call of the backend (sync(), download()) copies it back, throws, and clears it.
struct device_status {
    int32_t code;  // status_ok or one of the codes below (the first report since the last check wins)
    int32_t slot;  // context::report_slot of the op that reported (the backend's table of enqueued reporters)
    int64_t a, b;  // code-specific values (bad_row_id: the id and its position)
};
enum : int32_t { status_ok = 0, status_bad_row_id = 1 };

class context {
public:
    int device = 0;
    int sm_count = 0;
    cudaStream_t stream = nullptr;
    cublasHandle_t cublas = nullptr;
    device_status* status = nullptr;  // device memory, zero when no error
    int32_t report_slot = -1;         // what a kernel of the op being enqueued writes to device_status::slot
    // Programmatic dependent launch for the decode matrix-vector kernels (cuda_common.cuh): compute capability
    // 9.0 and up, with TFU_CUDA_PDL=1 (opt-in: on the H100 it measured no faster, Q4_0 tg128 525 vs 530 t/s).
    bool pdl = false;
    // Prefill attention through attention_prefill.cuh's tiled kernel (TFU_CUDA_ATTN_TILES=0: attention_kernel for
    // every op, to compare).
    bool attn_tiles = true;

    // Values read on the device, so that one executable graph serves every decode position (graph_cache.h): in a
    // run launched through a keyed graph, op i's kernels read its i[0] (KV_STORE's first row, ATTENTION's
    // n_past) from dyn_base[i], which run() uploads before the launch, instead of taking it as a launch argument.
    // dyn: device memory of k_dyn_slots words; dyn_base: dyn during such a run, else null (launch arguments);
    // op_index: the index in the run of the op being enqueued (of the first op of a fused launch).
    static constexpr size_t k_dyn_slots = 256;
    int32_t* dyn = nullptr;
    const int32_t* dyn_base = nullptr;
    size_t op_index = 0;
    // Where the op being enqueued reads its i[0], or null when it is a launch argument.
    // `later`: of the op that many places after it (a fused launch's later ops: rope_store_kernel's KV_STOREs).
    const int32_t* dyn_at(size_t later = 0) const { return dyn_base ? dyn_base + op_index + later : nullptr; }

    // A device buffer of at least `bytes` for the op being enqueued, valid until the next scratch() call (all
    // work is on one stream, so the next op's kernels run after this op's, whatever run() they belong to).
    // Growing it synchronises the stream before the old buffer is freed.
    void* scratch(size_t bytes);
    // Counts scratch() reallocations: a kept graph that holds the old buffer's address must not be replayed.
    uint64_t scratch_generation() const { return scratch_gen_; }
    // Copies `bytes` of host memory to the device through a pinned staging ring and returns the device copy,
    // for kernels enqueued after it (small per-op tables: ATTENTION_PAGED's block table). `host` may be reused
    // at once. The ring's bytes are reused only when the copy out of them has run: every stretch written is
    // closed by an event (stage_fence, at the end of run() and when the ring wraps), and before writing over a
    // stretch the host waits for its event. On the device side a later copy into the same bytes is queued
    // after the kernels that read them (one stream), so the device copy stays valid for them.
    void* stage(const void* host, size_t bytes);
    // The same through the ring's pinned bytes, but the copy goes to `dst` (device memory): upload() of small
    // buffers without waiting.
    void stage_copy(void* dst, const void* host, size_t bytes);
    // Records an event on the stream that closes the bytes staged since the last fence.
    void stage_fence();
    void release() noexcept;

private:
    struct fence {
        size_t begin, end;  // ring bytes [begin, end) written before the event
        cudaEvent_t done;
    };
    cudaEvent_t take_event();
    // Ring offset of `bytes` (rounded up to 256) that no pending copy reads; grows, wraps and waits as needed.
    size_t stage_reserve(size_t bytes);
    // Waits until no copy out of ring bytes [begin, end) is pending.
    void stage_wait(size_t begin, size_t end);
    void stage_grow(size_t need);

    void* scratch_ = nullptr;
    size_t scratch_cap_ = 0;
    uint64_t scratch_gen_ = 0;
    uint8_t* stage_host_ = nullptr;  // pinned
    uint8_t* stage_dev_ = nullptr;
    size_t stage_cap_ = 0;
    size_t stage_head_ = 0;  // next byte to write
    size_t stage_open_ = 0;  // start of the bytes written since the last fence ([open, head))
    std::deque<fence> fences_;          // oldest first; they complete in this order (one stream)
    std::vector<cudaEvent_t> idle_events_;
};

// One launch function per op (ops.def): the op has passed check_op and supported_here.
#define TFU_OP(NAME, name, n_src) void name(context& ctx, const op& o);
#include "backend/ops.def"
#undef TFU_OP

// ATTENTION's (and ATTENTION_BLOCKS') split-K count for this op (a launch shape that depends on i[0]; see
// attention_common.cuh).
int attention_splits(const context& ctx, const op& o);

// Whether ATTENTION or ATTENTION_BLOCKS op o takes the group kernel (attention_gqa.cuh; attention.cu says when).
bool attention_gqa_shape(const context& ctx, const op& o);
// Whether a block map's format pair has a group kernel (attention_blocks.cu).
bool blocks_gqa_pair(const kv_block_map& m);

// The scratch bytes ATTENTION or ATTENTION_BLOCKS (split-K partials) takes, at most: run() reserves them before a capture, where
// growing scratch (a host wait) is not allowed.
size_t attention_scratch_bytes(const context& ctx, const op& o);
// ARGMAX's partial bests (argmax.cu), reserved the same way.
size_t argmax_scratch_bytes(const op& o);

// CUDA-specific limits beyond check_op (head size, alignment); false with *why (if given) when one fails.
bool supported_here(const op& o, std::string* why);

// Whether the module holds machine code for the current device (a kernel's attributes can be read).
bool probe_kernel_image();

// Largest head size the attention kernels take (8 channels per lane of a warp).
constexpr int k_max_head_dim = 256;

}  // namespace tfu::cuda
