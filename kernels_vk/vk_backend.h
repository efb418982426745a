// The Vulkan backend (tfu::backend over one device): memory (alloc/free/upload/download through the
// sub-allocator and staging buffers), and run(): all ops of one call recorded into one command buffer of a ring
// of k_frames frames, a compute barrier after each dispatch, submitted with the frame's fence and not waited for.
// A frame is waited for only when the ring comes back to it, or by download/sync/free. Small uploads are copies
// from the frame's staging slice, submitted with the next run. Descriptor sets are cached per frame by their
// bindings. Decode-sized runs seen twice are recorded once into a kept command buffer and later re-submitted
// with their positions written to its parameter buffer (vk_replay.h). The per-op recording (which shader, push
// constants, how a large weight is split) is in vk_ops.cpp; this file offers it bind()/dispatch().
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <array>
#include <string>
#include <unordered_map>
#include <vector>

#include "backend/backend.h"
#include "vk_context.h"
#include "vk_device_memory.h"
#include "vk_gpu_timer.h"
#include "vk_pipelines.h"
#include "vk_replay.h"

namespace tfu::vk {

// A window of one chunk bound as a storage buffer: [offset, offset + range) of `buffer`; the tensor (or piece)
// starts `byte` bytes into the window (`word` = byte / 4 for 4-byte aligned data).
struct binding {
    VkBuffer buffer = VK_NULL_HANDLE;
    uint64_t offset = 0;
    uint64_t range = 0;
    uint32_t byte = 0;
    uint32_t word = 0;
    uint32_t chunk = UINT32_MAX;
};

// Resets and begins cb with the leading barrier: earlier submissions' writes (kernels, copies) are visible to
// this command buffer and their reads are done before it writes. (Host writes to host-coherent memory before
// vkQueueSubmit are visible to the device without a barrier.) A kept command buffer (`reusable`) is submitted
// many times: begun without ONE_TIME_SUBMIT (and without SIMULTANEOUS_USE: it is never resubmitted while pending).
void begin_with_barrier(const fns& f, VkCommandBuffer cb, bool reusable = false);

class vk_backend final : public backend {
public:
    vk_backend(const tfu_module_options& options, const logger& log);
    ~vk_backend() override;

    const char* name() const override { return name_.c_str(); }
    bool supports(const op& o, std::string* why) const override;
    void run(const op* ops, size_t n_ops) override;
    void sync() override;
    bool host_memory() const override { return false; }
    void* alloc(size_t bytes, const char* what) override;
    void free(void* p) noexcept override;
    void upload(void* dst, const void* src_host, size_t bytes) override;
    void download(void* dst_host, const void* src, size_t bytes) override;
    // Through host memory (a download, then an upload): nothing on Vulkan copies device memory often yet.
    void copy(void* dst, const void* src, size_t bytes) override;
    void memory_info(uint64_t* total, uint64_t* free_bytes) const override;

    // ---- for the op recorders (vk_ops.cpp), valid while run() records -------------------------------------
    const device_caps& caps() const { return ctx_->caps(); }
    // Whether kernels may use subgroup arithmetic: the device has it in compute and env TFU_VK_SUBGROUP is not 0
    // (tests run the shared-memory fallbacks with it).
    bool subgroup_ops() const { return subgroup_ops_; }
    // Whether the decode matrix-vector kernel takes weights of type t through its int8 path (x quantized to int8
    // per block of 32 in shared memory, packed 4 x int8 dot products: shaders/mmv_i8.glsl): Q4_0, Q8_0 and Q4_K,
    // where the device has subgroup arithmetic and shuffles with subgroups of at least 8 and the int8 dot product,
    // accelerated. Env TFU_VK_MMV_I8=1 takes it where the dot product is there but not accelerated (tests on
    // lavapipe), and for Q6_K too, which measured slower than the unit path on the H100 (kernels_vk/README.md).
    // 0: never.
    bool mmv_i8(dtype t) const {
        if (t == dtype::Q6_K) return mmv_i8_q6k_;
        return (t == dtype::Q4_0 || t == dtype::Q8_0 || t == dtype::Q4_K) && mmv_i8_;
    }
    // The largest window one descriptor may bind: maxStorageBufferRange, or env TFU_VK_MAX_BINDING_BYTES when
    // smaller (tests force the large-tensor paths with it).
    uint64_t max_binding() const { return max_binding_; }
    // Binds [address, address + bytes) of this backend's memory; throws INVALID_ARGUMENT naming `what` if the
    // range is not inside one allocation, UNSUPPORTED if it needs a window larger than max_binding().
    binding bind(const void* address, uint64_t bytes, const char* what) const;
    // Where [address, address + bytes) lies (same checks as bind, and 4-byte alignment).
    location locate(const void* address, uint64_t bytes, const char* what) const;
    // Binds bytes [offset, offset + bytes) of chunk `chunk` (a window over several allocations).
    binding bind_chunk(uint32_t chunk, uint64_t offset, uint64_t bytes, const char* what) const;
    // Records one dispatch of `groups` workgroups (spread over x and y when above the x limit; shaders use
    // gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x and skip the surplus). b: bindings 0..3 (dst,
    // src0..src2) then 5..8 (KV windows), unset ones get a placeholder. params (if any) are copied into the
    // parameter arena (binding 4) and their first word's index is stored into push-constant word param_slot.
    void dispatch(const char* shader, const std::vector<uint32_t>& spec, const binding* b, size_t n_b,
                  std::vector<uint32_t> push, uint64_t groups, const std::vector<uint32_t>* params = nullptr,
                  size_t param_slot = 0);
    // The device scratch (split-K partials of ATTENTION, a long ARGMAX's pairs, a prefill MUL_MAT's x in fp16)
    // bound whole, for a recording that needs `bytes` of it (reserved by run() before recording: at least the
    // largest scratch_bytes of the call's ops).
    // Every dispatch is followed by a global barrier and every submission opens with one, so one scratch serves
    // all ops and frames in queue order.
    binding scratch(uint64_t bytes) const;
    // Whether the run being recorded goes into a kept command buffer (replayed with other i[0] values): the
    // recorders of reads_i0_on_device ops then bind and launch for any i[0] and read it through dyn_slot().
    bool recording_kept() const { return kept_ != nullptr; }
    // In a kept recording: the next device-read i[0] slot, as word index + 1 into the parameter arena (binding
    // 4), for the shader's `dyn` push constant; the reads_i0_on_device ops take them in op order. Else 0 (the
    // shader uses its push-constant value).
    uint32_t dyn_slot();

private:
    // One slot of the submission ring: what one submission owns until its fence signals.
    struct frame {
        cmd_target rec;                         // dispatches (and download copies), its sets and arena
        VkCommandBuffer xfer = VK_NULL_HANDLE;  // small uploads, submitted ahead of cmd in the same batch
        VkFence fence = VK_NULL_HANDLE;
        bool in_flight = false;                 // submitted, fence not yet waited for
        uint64_t serial = 0;                    // serial number of its last submission
        bool cmd_recording = false;
        bool xfer_recording = false;            // xfer begun: holds copies not yet submitted
        gpu_buffer upload;                      // staging of small uploads (host-visible)
        uint64_t upload_used = 0;
    };

    void throw_validation_errors();      // DEVICE_ERROR when the validation layer reported errors
    frame& open_frame();                 // the frame being filled; waits for its last submission if needed
    void wait_frame(frame& fr);          // waits for fr's submission (if any)
    void wait_all();                     // submits the open frame's pending uploads, waits for every frame
    void begin_cmd(frame& fr);
    // Ends and submits the open frame's command buffers (or its uploads and the kept command buffer `kept`),
    // moves the ring on.
    void submit_frame(kept_run* kept = nullptr);
    void drop_set_caches() noexcept;     // after wait_all: forget every cached descriptor set
    void global_barrier(VkCommandBuffer cb, VkPipelineStageFlags src, VkAccessFlags src_access, VkPipelineStageFlags dst,
                        VkAccessFlags dst_access);
    void flush_recording();              // mid-run: submit what is recorded, continue in the next frame
    void ensure_staging();
    VkDescriptorSet descriptor_set(cmd_target& t, const binding* b, size_t n_b);
    void upload_small(const location& loc, const void* src_host, size_t bytes);
    void record_ops(const op* ops, size_t n_ops);  // into the open frame or kept_
    // Makes the scratch at least as large as the ops of one run() need, before anything of the run is recorded.
    // Growing waits for every frame (they may use the old buffer), drops the kept runs and the cached descriptor
    // sets (they name the old VkBuffer), then replaces the buffer: no recorded command buffer ever refers to a
    // destroyed scratch. Sizes are bounded (splits only below 256 blocks, <= 1024 / blocks + 1 each), so it grows
    // a few times at most.
    void reserve_scratch(const op* ops, size_t n_ops);
    // Replay (vk_replay.h): whether run(ops) may be kept (every op replay_safe, small enough); the kept run for
    // its key (recorded now when the key was seen before, nullptr on first sight); writing its i[0] values and
    // submitting it; destroying kept runs (waits for their last submission).
    bool keepable(const op* ops, size_t n_ops) const;
    kept_run* kept_for(const op* ops, size_t n_ops);
    void submit_kept(kept_run& run, const op* ops, size_t n_ops);
    void destroy_kept(std::unique_ptr<kept_run> run) noexcept;
    void drop_kept() noexcept;

    // Counters of recorded work, logged at INFO on destruction when env TFU_VK_PROFILE=1.
    struct profile_counts {
        uint64_t runs = 0, ops = 0, dispatches = 0;
        uint64_t fused = 0, fused_ops = 0;  // launches of record_fused and the ops they computed
        uint64_t replayed = 0, recorded = 0, evicted = 0;  // kept runs re-submitted, recorded, evicted
        double run_s = 0;                                // host time in run()
        double replay_s = 0;                             // of which in runs that re-submitted a kept run
        double run_wait_s = 0, replay_wait_s = 0;        // of these, waiting for fences (device work)
        double wait_s = 0;                               // all fence waits
        double submit_s = 0;                             // all vkQueueSubmit calls
        double run_submit_s = 0, replay_submit_s = 0;    // of these, in run() and in replayed runs
        std::map<std::string, uint64_t> recorded_by_shader;  // dispatches recorded per shader variant
    };

    logger log_;
    bool profile_ = false;  // env TFU_VK_PROFILE=1 (or gpu)
    std::unique_ptr<gpu_timer> timer_;  // env TFU_VK_PROFILE=gpu: GPU time per dispatch (vk_gpu_timer.h)
    bool subgroup_ops_ = false;
    bool mmv_i8_ = false, mmv_i8_q6k_ = false;
    bool fuse_ = true;      // env TFU_VK_FUSION=0 records every op alone (for comparing)
    bool replay_ = true;    // env TFU_VK_REPLAY=0 records every run into the ring
    profile_counts prof_;
    std::unique_ptr<context> ctx_;
    std::unique_ptr<device_memory> mem_;
    std::unique_ptr<pipelines> pipes_;
    std::string name_;
    uint64_t max_binding_ = 0;
    mutable std::mutex mutex_;

    VkCommandPool cmd_pool_ = VK_NULL_HANDLE;
    std::vector<frame> frames_;
    size_t cur_ = 0;           // index of the frame being filled (or the next to fill)
    bool open_ = false;        // frames_[cur_] has been waited for and is being filled
    gpu_buffer staging_;       // large upload/download staging (host-visible, cached), used with a wait
    gpu_buffer placeholder_;   // bound to unused descriptor slots
    gpu_buffer scratch_;       // device-local split-K partials (reserve_scratch), none until a split needs it
    uint64_t serial_ = 0;      // submissions so far

    // Kept runs: a decode step of an L-layer model keeps L (one per layer's run), 128 covers the largest models.
    static constexpr size_t k_max_kept = 128;
    replay_cache kept_runs_{k_max_kept};
    kept_run* kept_ = nullptr;            // the kept run being recorded (dispatch() records into it)
    uint32_t dyn_taken_ = 0;              // device-read slots handed out while recording kept_
    std::vector<uint64_t> key_;           // the current run's key (reused storage)
    std::vector<uint64_t> seen_;          // hashes of keys seen once (a ring: a key is kept when seen twice)
    size_t seen_next_ = 0;
};

}  // namespace tfu::vk
