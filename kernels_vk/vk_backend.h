// The Vulkan backend (tfu::backend over one device): memory (alloc/free/upload/download through the
// sub-allocator and a staging buffer), and run(): all ops of one call recorded into one command buffer, a
// compute barrier after each dispatch, submitted once with a fence that the next call (or sync) waits for.
// The per-op recording (which shader, push constants, how a large weight is split) is in vk_ops.cpp; this file
// offers it bind()/dispatch().
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "vk_context.h"
#include "vk_device_memory.h"
#include "vk_pipelines.h"

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
    void memory_info(uint64_t* total, uint64_t* free_bytes) const override;

    // ---- for the op recorders (vk_ops.cpp), valid while run() records -------------------------------------
    const device_caps& caps() const { return ctx_->caps(); }
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

private:
    void wait_pending();                 // waits for the last submission; checks validation
    void throw_validation_errors();      // DEVICE_ERROR when the validation layer reported errors
    void begin_commands();
    void submit(bool wait);              // ends, submits with the fence; waits if asked
    void global_barrier(VkCommandBuffer cb, VkPipelineStageFlags src, VkAccessFlags src_access, VkPipelineStageFlags dst,
                        VkAccessFlags dst_access);
    void flush_recording();              // mid-run: submit what is recorded, wait, reset the pools, start again
    void ensure_staging();

    logger log_;
    std::unique_ptr<context> ctx_;
    std::unique_ptr<device_memory> mem_;
    std::unique_ptr<pipelines> pipes_;
    std::string name_;
    uint64_t max_binding_ = 0;
    mutable std::mutex mutex_;

    VkCommandPool cmd_pool_ = VK_NULL_HANDLE;
    VkCommandBuffer cmd_ = VK_NULL_HANDLE;
    VkFence fence_ = VK_NULL_HANDLE;
    bool pending_ = false;     // a submission not yet waited for
    bool recording_ = false;
    VkDescriptorPool desc_pool_ = VK_NULL_HANDLE;
    uint32_t sets_used_ = 0;
    gpu_buffer arena_;         // parameter arena (host-visible), binding 4
    uint64_t arena_used_ = 0;
    gpu_buffer staging_;       // upload/download staging (host-visible, cached)
    gpu_buffer placeholder_;   // bound to unused descriptor slots
};

}  // namespace tfu::vk
