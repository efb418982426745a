// The Vulkan backend: construction, memory entry points, command recording and submission (see vk_backend.h).
#include "vk_backend.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "backend/cpu/ref/op_check.h"
#include "core/error.h"
#include "vk_ops.h"

namespace tfu::vk {

namespace {
constexpr uint32_t k_max_sets = 512;                  // descriptor sets per pool (one per dispatch)
constexpr uint64_t k_arena_bytes = uint64_t(4) << 20;  // per-submission op parameters (RoPE tables, KV tables)
constexpr uint64_t k_staging_bytes = uint64_t(16) << 20;

uint64_t address_of(const void* p) { return uint64_t(reinterpret_cast<uintptr_t>(p)); }
}  // namespace

vk_backend::vk_backend(const tfu_module_options& options, const logger& log) : log_(log) {
    ctx_ = std::make_unique<context>(options, log_);
    const device_caps& caps = ctx_->caps();
    name_ = "vulkan: " + caps.name + " (" + device_type_name(caps.type) + ")";
    max_binding_ = align_down(std::min<uint64_t>(caps.max_storage_range, uint64_t(4) << 30), 4);
    if (const char* env = std::getenv("TFU_VK_MAX_BINDING_BYTES"); env && *env) {
        const uint64_t v = std::strtoull(env, nullptr, 10);
        if (v >= 4096 && v < max_binding_) {
            max_binding_ = align_down(v, 256);
            log_.logf(TFU_LOG_INFO, "vulkan: bindings limited to %llu bytes (TFU_VK_MAX_BINDING_BYTES)",
                      (unsigned long long)max_binding_);
        }
    }
    mem_ = std::make_unique<device_memory>(*ctx_);
    pipes_ = std::make_unique<pipelines>(*ctx_);
    const fns& f = ctx_->vk();
    VkDevice dev = ctx_->device();

    VkCommandPoolCreateInfo cp{};
    cp.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO;
    cp.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
    cp.queueFamilyIndex = ctx_->queue_family();
    check(f.vkCreateCommandPool(dev, &cp, nullptr, &cmd_pool_), "vkCreateCommandPool");
    VkCommandBufferAllocateInfo ca{};
    ca.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO;
    ca.commandPool = cmd_pool_;
    ca.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
    ca.commandBufferCount = 1;
    check(f.vkAllocateCommandBuffers(dev, &ca, &cmd_), "vkAllocateCommandBuffers");
    VkFenceCreateInfo fi{};
    fi.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO;
    check(f.vkCreateFence(dev, &fi, nullptr, &fence_), "vkCreateFence");
    VkDescriptorPoolSize ps{};
    ps.type = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    ps.descriptorCount = k_max_sets * k_n_bindings;
    VkDescriptorPoolCreateInfo dp{};
    dp.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO;
    dp.maxSets = k_max_sets;
    dp.poolSizeCount = 1;
    dp.pPoolSizes = &ps;
    check(f.vkCreateDescriptorPool(dev, &dp, nullptr, &desc_pool_), "vkCreateDescriptorPool");
    arena_ = mem_->create_host_buffer(std::min(k_arena_bytes, max_binding_), false, "parameter arena");
    placeholder_ = mem_->create_device_buffer(256, "placeholder binding");
    log_.logf(TFU_LOG_INFO, "vulkan: backend ready: %s", name_.c_str());
}

vk_backend::~vk_backend() {
    const fns& f = ctx_->vk();
    VkDevice dev = ctx_->device();
    f.vkDeviceWaitIdle(dev);
    mem_->destroy(staging_);
    mem_->destroy(arena_);
    mem_->destroy(placeholder_);
    if (desc_pool_) f.vkDestroyDescriptorPool(dev, desc_pool_, nullptr);
    if (fence_) f.vkDestroyFence(dev, fence_, nullptr);
    if (cmd_pool_) f.vkDestroyCommandPool(dev, cmd_pool_, nullptr);
    pipes_.reset();
    mem_.reset();
    ctx_.reset();
}

// ---- submission -------------------------------------------------------------------------------------------

void vk_backend::throw_validation_errors() {
    if (!ctx_->validation_enabled()) return;
    const std::string errors = ctx_->take_validation_errors();
    if (!errors.empty()) fail(TFU_STATUS_DEVICE_ERROR, "vulkan: " + errors);
}

void vk_backend::wait_pending() {
    if (pending_) {
        const fns& f = ctx_->vk();
        pending_ = false;
        check(f.vkWaitForFences(ctx_->device(), 1, &fence_, VK_TRUE, UINT64_MAX), "vkWaitForFences");
        check(f.vkResetFences(ctx_->device(), 1, &fence_), "vkResetFences");
        check(f.vkResetDescriptorPool(ctx_->device(), desc_pool_, 0), "vkResetDescriptorPool");
        sets_used_ = 0;
        arena_used_ = 0;
    }
    throw_validation_errors();
}

void vk_backend::global_barrier(VkCommandBuffer cb, VkPipelineStageFlags src, VkAccessFlags src_access,
                                VkPipelineStageFlags dst, VkAccessFlags dst_access) {
    VkMemoryBarrier mb{};
    mb.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER;
    mb.srcAccessMask = src_access;
    mb.dstAccessMask = dst_access;
    ctx_->vk().vkCmdPipelineBarrier(cb, src, dst, 0, 1, &mb, 0, nullptr, 0, nullptr);
}

void vk_backend::begin_commands() {
    const fns& f = ctx_->vk();
    check(f.vkResetCommandBuffer(cmd_, 0), "vkResetCommandBuffer");
    VkCommandBufferBeginInfo bi{};
    bi.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO;
    bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
    check(f.vkBeginCommandBuffer(cmd_, &bi), "vkBeginCommandBuffer");
    recording_ = true;
    // Earlier submissions' writes (kernels, copies) and the host's writes to the arena are visible to this one.
    // (Host writes before vkQueueSubmit are visible to the device without a barrier.)
    global_barrier(cmd_, VK_PIPELINE_STAGE_ALL_COMMANDS_BIT, VK_ACCESS_MEMORY_WRITE_BIT,
                   VK_PIPELINE_STAGE_ALL_COMMANDS_BIT, VK_ACCESS_MEMORY_READ_BIT | VK_ACCESS_MEMORY_WRITE_BIT);
}

void vk_backend::submit(bool wait) {
    const fns& f = ctx_->vk();
    recording_ = false;
    check(f.vkEndCommandBuffer(cmd_), "vkEndCommandBuffer");
    VkSubmitInfo si{};
    si.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO;
    si.commandBufferCount = 1;
    si.pCommandBuffers = &cmd_;
    check(f.vkQueueSubmit(ctx_->queue(), 1, &si, fence_), "vkQueueSubmit");
    pending_ = true;
    if (wait) wait_pending();
}

void vk_backend::flush_recording() {
    submit(true);
    begin_commands();
}

// ---- memory -----------------------------------------------------------------------------------------------

void* vk_backend::alloc(size_t bytes, const char* what) {
    std::lock_guard<std::mutex> lock(mutex_);
    return reinterpret_cast<void*>(uintptr_t(mem_->allocate(bytes, what ? what : "vulkan alloc")));
}

void vk_backend::free(void* p) noexcept {
    if (!p) return;
    std::lock_guard<std::mutex> lock(mutex_);
    // A chunk may be destroyed when it empties: let in-flight work finish first (errors surface at the next call).
    if (pending_) ctx_->vk().vkWaitForFences(ctx_->device(), 1, &fence_, VK_TRUE, UINT64_MAX);
    if (!mem_->release(address_of(p)))
        log_.logf(TFU_LOG_ERROR, "vulkan: free(%p): not an address from alloc (ignored)", p);
}

void vk_backend::memory_info(uint64_t* total, uint64_t* free_bytes) const {
    std::lock_guard<std::mutex> lock(mutex_);
    mem_->memory_info(total, free_bytes);
}

void vk_backend::ensure_staging() {
    if (!staging_.buffer) staging_ = mem_->create_host_buffer(k_staging_bytes, true, "staging buffer");
}

void vk_backend::upload(void* dst, const void* src_host, size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    wait_pending();
    if (bytes == 0) return;
    location loc;
    if (!mem_->resolve(address_of(dst), bytes, &loc))
        fail(TFU_STATUS_INVALID_ARGUMENT, "vulkan upload: [" + std::to_string(address_of(dst)) + ", +" +
                                              std::to_string(bytes) + ") is not inside one allocation of this backend");
    ensure_staging();
    const fns& f = ctx_->vk();
    for (size_t done = 0; done < bytes;) {
        const size_t n = std::min<size_t>(bytes - done, staging_.size);
        std::memcpy(staging_.mapped, static_cast<const uint8_t*>(src_host) + done, n);
        begin_commands();
        VkBufferCopy c{0, loc.offset + done, n};
        f.vkCmdCopyBuffer(cmd_, staging_.buffer, mem_->chunk_buffer(loc.chunk), 1, &c);
        submit(true);
        done += n;
    }
}

void vk_backend::download(void* dst_host, const void* src, size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    wait_pending();
    if (bytes == 0) return;
    location loc;
    if (!mem_->resolve(address_of(src), bytes, &loc))
        fail(TFU_STATUS_INVALID_ARGUMENT, "vulkan download: [" + std::to_string(address_of(src)) + ", +" +
                                              std::to_string(bytes) + ") is not inside one allocation of this backend");
    ensure_staging();
    const fns& f = ctx_->vk();
    for (size_t done = 0; done < bytes;) {
        const size_t n = std::min<size_t>(bytes - done, staging_.size);
        begin_commands();
        VkBufferCopy c{loc.offset + done, 0, n};
        f.vkCmdCopyBuffer(cmd_, mem_->chunk_buffer(loc.chunk), staging_.buffer, 1, &c);
        global_barrier(cmd_, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT, VK_PIPELINE_STAGE_HOST_BIT,
                       VK_ACCESS_HOST_READ_BIT);
        submit(true);
        std::memcpy(static_cast<uint8_t*>(dst_host) + done, staging_.mapped, n);
        done += n;
    }
}

// ---- ops --------------------------------------------------------------------------------------------------

bool vk_backend::supports(const op& o, std::string* why) const {
    if (!check_op(o, why)) return false;
    return op_supported(o, ctx_->caps(), max_binding_, why);
}

void vk_backend::run(const op* ops, size_t n_ops) {
    std::lock_guard<std::mutex> lock(mutex_);
    wait_pending();
    if (n_ops == 0) return;
    for (size_t i = 0; i < n_ops; ++i) {  // refuse the whole call before recording any of it
        std::string why;
        if (!supports(ops[i], &why)) fail(TFU_STATUS_UNSUPPORTED, name_ + ": " + why);
    }
    begin_commands();
    try {
        for (size_t i = 0; i < n_ops; ++i) record_op(*this, ops[i]);
    } catch (...) {
        // Leave the command buffer in a state the next call can reset.
        if (recording_) {
            recording_ = false;
            ctx_->vk().vkEndCommandBuffer(cmd_);
        }
        throw;
    }
    submit(false);
    throw_validation_errors();
}

void vk_backend::sync() {
    std::lock_guard<std::mutex> lock(mutex_);
    wait_pending();
}

location vk_backend::locate(const void* address, uint64_t bytes, const char* what) const {
    location loc;
    if (address_of(address) % 4 != 0)
        fail(TFU_STATUS_UNSUPPORTED, name_ + ": " + what + " is not 4-byte aligned");
    if (!mem_->resolve(address_of(address), bytes, &loc))
        fail(TFU_STATUS_INVALID_ARGUMENT, name_ + ": " + what + " is not inside one allocation of this backend (" +
                                              std::to_string(bytes) + " bytes)");
    return loc;
}

binding vk_backend::bind(const void* address, uint64_t bytes, const char* what) const {
    const location loc = locate(address, bytes, what);
    return bind_chunk(loc.chunk, loc.offset, bytes, what);
}

binding vk_backend::bind_chunk(uint32_t chunk, uint64_t offset, uint64_t bytes, const char* what) const {
    binding b;
    b.chunk = chunk;
    b.buffer = mem_->chunk_buffer(chunk);
    b.offset = align_down(offset, ctx_->caps().storage_offset_align);
    b.byte = uint32_t(offset - b.offset);
    b.word = b.byte / 4;
    b.range = std::min(align_up(offset + bytes, 4), mem_->chunk_size(chunk)) - b.offset;
    if (b.range > max_binding_)
        fail(TFU_STATUS_UNSUPPORTED, name_ + ": " + what + " needs a binding of " + std::to_string(b.range) +
                                         " bytes, more than maxStorageBufferRange " + std::to_string(max_binding_));
    return b;
}

void vk_backend::dispatch(const char* shader, const std::vector<uint32_t>& spec, const binding* b, size_t n_b,
                          std::vector<uint32_t> push, uint64_t groups, const std::vector<uint32_t>* params,
                          size_t param_slot) {
    TFU_CHECK(recording_ && n_b <= 8 && push.size() * 4 <= k_push_bytes);
    if (groups == 0) return;
    const fns& f = ctx_->vk();
    const uint64_t param_bytes = params ? align_up(params->size() * 4, 16) : 0;
    if (param_bytes > arena_.size)
        fail(TFU_STATUS_UNSUPPORTED, name_ + ": " + shader + " needs " + std::to_string(param_bytes) +
                                         " bytes of parameters, more than the arena's " + std::to_string(arena_.size));
    if (sets_used_ == k_max_sets || arena_used_ + param_bytes > arena_.size) flush_recording();
    if (params) {
        std::memcpy(static_cast<uint8_t*>(arena_.mapped) + arena_used_, params->data(), params->size() * 4);
        TFU_CHECK(param_slot < push.size());
        push[param_slot] = uint32_t(arena_used_ / 4);
        arena_used_ += param_bytes;
    }
    VkPipeline pipeline = pipes_->get(shader, spec);

    VkDescriptorSetLayout sl = pipes_->set_layout();
    VkDescriptorSetAllocateInfo ai{};
    ai.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO;
    ai.descriptorPool = desc_pool_;
    ai.descriptorSetCount = 1;
    ai.pSetLayouts = &sl;
    VkDescriptorSet set = VK_NULL_HANDLE;
    check(f.vkAllocateDescriptorSets(ctx_->device(), &ai, &set), "vkAllocateDescriptorSets");
    ++sets_used_;
    VkDescriptorBufferInfo infos[k_n_bindings];
    VkWriteDescriptorSet writes[k_n_bindings]{};
    for (uint32_t i = 0; i < k_n_bindings; ++i) {
        // slots 0..3 are b[0..3], slot 4 the arena, slots 5..8 are b[4..7]
        const size_t bi = i < 4 ? i : i - 1;
        if (i == 4) infos[i] = {arena_.buffer, 0, arena_.size};
        else if (bi < n_b && b[bi].buffer) infos[i] = {b[bi].buffer, b[bi].offset, b[bi].range};
        else infos[i] = {placeholder_.buffer, 0, placeholder_.size};
        writes[i].sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET;
        writes[i].dstSet = set;
        writes[i].dstBinding = i;
        writes[i].descriptorCount = 1;
        writes[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
        writes[i].pBufferInfo = &infos[i];
    }
    f.vkUpdateDescriptorSets(ctx_->device(), k_n_bindings, writes, 0, nullptr);
    f.vkCmdBindPipeline(cmd_, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline);
    f.vkCmdBindDescriptorSets(cmd_, VK_PIPELINE_BIND_POINT_COMPUTE, pipes_->layout(), 0, 1, &set, 0, nullptr);
    push.resize(k_push_bytes / 4, 0);
    f.vkCmdPushConstants(cmd_, pipes_->layout(), VK_SHADER_STAGE_COMPUTE_BIT, 0, k_push_bytes, push.data());
    const uint64_t max_x = ctx_->caps().max_group_count[0], max_y = ctx_->caps().max_group_count[1];
    const uint64_t gx = std::min(groups, max_x), gy = (groups + gx - 1) / gx;
    if (gy > max_y)
        fail(TFU_STATUS_UNSUPPORTED, name_ + ": " + shader + " needs " + std::to_string(groups) + " workgroups");
    f.vkCmdDispatch(cmd_, uint32_t(gx), uint32_t(gy), 1);
    // The next op may read what this one wrote (and write what it read).
    global_barrier(cmd_, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_SHADER_READ_BIT,
                   VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT);
}

}  // namespace tfu::vk
