// The Vulkan backend: construction, memory entry points, command recording and submission (see vk_backend.h).
#include "vk_backend.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "backend/cpu/ref/op_check.h"
#include "core/error.h"
#include "vk_ops.h"

namespace tfu::vk {

namespace {
constexpr size_t k_frames = 4;                         // submissions in flight at most
constexpr uint32_t k_max_sets = 1024;                  // descriptor sets per frame's pool (cached by bindings)
constexpr uint64_t k_arena_bytes = uint64_t(4) << 20;  // per-frame op parameters (RoPE tables, KV tables)
constexpr uint64_t k_staging_bytes = uint64_t(16) << 20;
constexpr uint64_t k_small_upload = uint64_t(64) << 10;     // uploads up to this size are not waited for
constexpr uint64_t k_upload_slice = uint64_t(256) << 10;    // per-frame staging of small uploads
// Cache descriptor sets by their exact bindings (a decode step binds the same weights and activations every
// step); without it every dispatch allocates and writes a set.
constexpr bool k_cache_sets = true;

uint64_t address_of(const void* p) { return uint64_t(reinterpret_cast<uintptr_t>(p)); }
// A non-dispatchable handle's bits (a pointer or a uint64_t, depending on the platform).
uint64_t handle_bits(VkBuffer h) {
    uint64_t v = 0;
    std::memcpy(&v, &h, sizeof h);
    return v;
}
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
    const char* prof_env = std::getenv("TFU_VK_PROFILE");
    if (prof_env && (std::strcmp(prof_env, "1") == 0 || std::strcmp(prof_env, "gpu") == 0)) profile_ = true;
    subgroup_ops_ = caps.subgroup_arithmetic;
    if (const char* env = std::getenv("TFU_VK_SUBGROUP"); env && std::strcmp(env, "0") == 0 && subgroup_ops_) {
        subgroup_ops_ = false;
        log_.logf(TFU_LOG_INFO, "vulkan: subgroup arithmetic not used (TFU_VK_SUBGROUP=0)");
    }
    {
        const char* env = std::getenv("TFU_VK_MMV_I8");
        const bool usable = subgroup_ops_ && caps.subgroup_shuffle && caps.int_dot && caps.subgroup_size_min >= 8;
        const bool forced = env && std::strcmp(env, "1") == 0, off = env && std::strcmp(env, "0") == 0;
        mmv_i8_ = usable && !off && (caps.int_dot_fast || forced);
        mmv_i8_q6k_ = usable && forced;
        if (forced && !usable)
            log_.logf(TFU_LOG_WARN, "vulkan: TFU_VK_MMV_I8=1 ignored: the int8 matrix-vector path needs subgroup "
                                    "arithmetic and shuffles (subgroups of 8 or more) and the int8 dot product");
        else if (env && *env)
            log_.logf(TFU_LOG_INFO, "vulkan: int8 matrix-vector path for decode: %s (TFU_VK_MMV_I8)",
                      mmv_i8_q6k_ ? "Q4_0, Q8_0, Q4_K, Q6_K" : mmv_i8_ ? "Q4_0, Q8_0, Q4_K" : "off");
    }
    if (const char* env = std::getenv("TFU_VK_REPLAY"); env && std::strcmp(env, "0") == 0) {
        replay_ = false;
        log_.logf(TFU_LOG_INFO, "vulkan: kept command buffers off (TFU_VK_REPLAY=0)");
    }
    if (const char* env = std::getenv("TFU_VK_FUSION"); env && std::strcmp(env, "0") == 0) {
        fuse_ = false;
        log_.logf(TFU_LOG_INFO, "vulkan: fused launches off (TFU_VK_FUSION=0)");
    }
    if (prof_env && std::strcmp(prof_env, "gpu") == 0) {
        try {
            timer_ = std::make_unique<gpu_timer>(*ctx_, k_frames);
            replay_ = false;  // the stamps are written by the ring's command buffers only
            log_.logf(TFU_LOG_INFO,
                      "vulkan: GPU time per dispatch measured (TFU_VK_PROFILE=gpu); kept command buffers off");
        } catch (const error& e) {  // a queue without timestamps: the host-side profile only
            log_.logf(TFU_LOG_WARN, "vulkan: TFU_VK_PROFILE=gpu: %s; GPU time not measured", e.what());
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
    // The destructor releases whatever of the frames was created when a step below throws.
    frames_.resize(k_frames);
    std::vector<VkCommandBuffer> cbs(2 * k_frames);
    VkCommandBufferAllocateInfo ca{};
    ca.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO;
    ca.commandPool = cmd_pool_;
    ca.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
    ca.commandBufferCount = uint32_t(cbs.size());
    check(f.vkAllocateCommandBuffers(dev, &ca, cbs.data()), "vkAllocateCommandBuffers");
    VkFenceCreateInfo fi{};
    fi.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO;
    VkDescriptorPoolSize ps{};
    ps.type = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    ps.descriptorCount = k_max_sets * k_n_bindings;
    VkDescriptorPoolCreateInfo dp{};
    dp.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO;
    dp.maxSets = k_max_sets;
    dp.poolSizeCount = 1;
    dp.pPoolSizes = &ps;
    for (size_t i = 0; i < k_frames; ++i) {
        frame& fr = frames_[i];
        fr.rec.cmd = cbs[2 * i];
        fr.xfer = cbs[2 * i + 1];
        check(f.vkCreateFence(dev, &fi, nullptr, &fr.fence), "vkCreateFence");
        check(f.vkCreateDescriptorPool(dev, &dp, nullptr, &fr.rec.pool), "vkCreateDescriptorPool");
        fr.rec.max_sets = k_max_sets;
        fr.rec.arena = mem_->create_host_buffer(std::min(k_arena_bytes, max_binding_), false, "parameter arena");
        fr.upload = mem_->create_host_buffer(k_upload_slice, false, "small-upload staging");
    }
    placeholder_ = mem_->create_device_buffer(256, "placeholder binding");
    log_.logf(TFU_LOG_INFO, "vulkan: backend ready: %s", name_.c_str());
}

vk_backend::~vk_backend() {
    if (profile_) {
        log_.logf(TFU_LOG_INFO,
                  "vulkan: profile: %llu run() calls, %llu ops, %llu dispatches; %llu fused launches computed %llu ops",
                  (unsigned long long)prof_.runs, (unsigned long long)prof_.ops, (unsigned long long)prof_.dispatches,
                  (unsigned long long)prof_.fused, (unsigned long long)prof_.fused_ops);
        std::string by_shader;
        for (const auto& [shader, n] : prof_.recorded_by_shader)
            by_shader += (by_shader.empty() ? " " : ", ") + shader + " " + std::to_string(n);
        log_.logf(TFU_LOG_INFO, "vulkan: profile: dispatches recorded per shader:%s", by_shader.c_str());
        // Host time per run() without first-use pipeline creation (a CPU driver compiles for ~100 ms each),
        // without waiting for fences (the ring coming back to a busy frame: device time, not recording cost) and
        // without vkQueueSubmit (the driver's: lavapipe may run work in it), over all runs and over the replayed
        // ones (the rest: recorded into the ring or into a kept run).
        const double busy_ms = (prof_.run_s - prof_.run_wait_s - prof_.run_submit_s) * 1e3 - pipes_->create_ms();
        const double replay_ms = (prof_.replay_s - prof_.replay_wait_s - prof_.replay_submit_s) * 1e3;
        const uint64_t others = prof_.runs - prof_.replayed;
        log_.logf(TFU_LOG_INFO,
                  "vulkan: replay %s: %llu runs replayed, %llu recorded, %llu kept, %llu evicted; host time in run() "
                  "%.1f ms, of which %.1f ms waiting for fences, %.1f ms in vkQueueSubmit, %.1f ms creating "
                  "pipelines; the rest: %.1f us per call, %.1f us per replayed run, %.1f us per other run",
                  replay_ ? "on" : "off", (unsigned long long)prof_.replayed, (unsigned long long)prof_.recorded,
                  (unsigned long long)kept_runs_.size(), (unsigned long long)prof_.evicted, prof_.run_s * 1e3,
                  prof_.run_wait_s * 1e3, prof_.run_submit_s * 1e3, pipes_->create_ms(),
                  prof_.runs ? busy_ms * 1e3 / double(prof_.runs) : 0.0,
                  prof_.replayed ? replay_ms * 1e3 / double(prof_.replayed) : 0.0,
                  others ? (busy_ms - replay_ms) * 1e3 / double(others) : 0.0);
    }
    if (timer_) {
        try {
            wait_all();  // the last frames' stamps
        } catch (const std::exception& e) {
            log_.logf(TFU_LOG_WARN, "vulkan: gpu time: waiting for the last frames: %s", e.what());
        }
        for (const std::string& line : timer_->report()) log_.log(TFU_LOG_INFO, line);
    }
    const fns& f = ctx_->vk();
    VkDevice dev = ctx_->device();
    f.vkDeviceWaitIdle(dev);
    for (frame& fr : frames_) fr.in_flight = false;  // all done: destroy_kept must not wait on the fences
    drop_kept();
    mem_->destroy(staging_);
    mem_->destroy(placeholder_);
    mem_->destroy(scratch_);
    for (frame& fr : frames_) {
        mem_->destroy(fr.rec.arena);
        mem_->destroy(fr.upload);
        if (fr.rec.pool) f.vkDestroyDescriptorPool(dev, fr.rec.pool, nullptr);
        if (fr.fence) f.vkDestroyFence(dev, fr.fence, nullptr);
    }
    if (cmd_pool_) f.vkDestroyCommandPool(dev, cmd_pool_, nullptr);  // frees the command buffers
    timer_.reset();  // its query pools belong to the device
    pipes_.reset();
    mem_.reset();
    ctx_.reset();
}

// ---- submission -------------------------------------------------------------------------------------------
//
// The ring: frames_[cur_] is filled (uploads into xfer, dispatches into cmd) and submitted as one batch with its
// fence; cur_ then moves on. A frame's arena, upload slice and descriptor pool are reused only after its fence
// has signalled (open_frame). Submissions on one queue start in order and every command buffer opens with a
// global barrier over all earlier commands, so no frame needs to wait for the one before it.

void vk_backend::throw_validation_errors() {
    if (!ctx_->validation_enabled()) return;
    const std::string errors = ctx_->take_validation_errors();
    if (!errors.empty()) fail(TFU_STATUS_DEVICE_ERROR, "vulkan: " + errors);
}

void vk_backend::wait_frame(frame& fr) {
    if (!fr.in_flight) return;
    fr.in_flight = false;  // a failed wait (device lost) is reported once; the frame is not waited for again
    const auto t0 = profile_ ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
    const VkResult r = ctx_->vk().vkWaitForFences(ctx_->device(), 1, &fr.fence, VK_TRUE, UINT64_MAX);
    if (profile_) prof_.wait_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    check(r, "vkWaitForFences");
    if (timer_) timer_->collect(size_t(&fr - frames_.data()), fr.serial);
}

vk_backend::frame& vk_backend::open_frame() {
    frame& fr = frames_[cur_];
    if (open_) return fr;
    wait_frame(fr);
    fr.rec.arena_used = 0;
    fr.upload_used = 0;
    // Keep the cached sets while the pool has room for a step's new ones; else start the pool over.
    if (fr.rec.sets_used > k_max_sets / 4 * 3) {
        check(ctx_->vk().vkResetDescriptorPool(ctx_->device(), fr.rec.pool, 0), "vkResetDescriptorPool");
        fr.rec.sets.clear();
        fr.rec.sets_used = 0;
    }
    open_ = true;
    return fr;
}

void vk_backend::wait_all() {
    if (open_ && frames_[cur_].xfer_recording) submit_frame();  // queued small uploads
    for (frame& fr : frames_) wait_frame(fr);
}

void vk_backend::drop_set_caches() noexcept {
    for (frame& fr : frames_) {
        ctx_->vk().vkResetDescriptorPool(ctx_->device(), fr.rec.pool, 0);  // only VK_SUCCESS is specified
        fr.rec.sets.clear();
        fr.rec.sets_used = 0;
    }
}

void vk_backend::global_barrier(VkCommandBuffer cb, VkPipelineStageFlags src, VkAccessFlags src_access,
                                VkPipelineStageFlags dst, VkAccessFlags dst_access) {
    VkMemoryBarrier mb{};
    mb.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER;
    mb.srcAccessMask = src_access;
    mb.dstAccessMask = dst_access;
    ctx_->vk().vkCmdPipelineBarrier(cb, src, dst, 0, 1, &mb, 0, nullptr, 0, nullptr);
}

void begin_with_barrier(const fns& f, VkCommandBuffer cb, bool reusable) {
    check(f.vkResetCommandBuffer(cb, 0), "vkResetCommandBuffer");
    VkCommandBufferBeginInfo bi{};
    bi.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO;
    bi.flags = reusable ? 0 : VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
    check(f.vkBeginCommandBuffer(cb, &bi), "vkBeginCommandBuffer");
    VkMemoryBarrier mb{};
    mb.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER;
    mb.srcAccessMask = VK_ACCESS_MEMORY_WRITE_BIT;
    mb.dstAccessMask = VK_ACCESS_MEMORY_READ_BIT | VK_ACCESS_MEMORY_WRITE_BIT;
    f.vkCmdPipelineBarrier(cb, VK_PIPELINE_STAGE_ALL_COMMANDS_BIT, VK_PIPELINE_STAGE_ALL_COMMANDS_BIT, 0, 1, &mb, 0,
                           nullptr, 0, nullptr);
}

void vk_backend::begin_cmd(frame& fr) {
    TFU_CHECK(open_ && &fr == &frames_[cur_] && !fr.cmd_recording);
    begin_with_barrier(ctx_->vk(), fr.rec.cmd);
    if (timer_) timer_->begin(fr.rec.cmd, cur_);
    fr.cmd_recording = true;
}

void vk_backend::submit_frame(kept_run* kept) {
    TFU_CHECK(open_ && !(kept && frames_[cur_].cmd_recording));
    frame& fr = frames_[cur_];
    const fns& f = ctx_->vk();
    VkCommandBuffer cbs[2];
    uint32_t n = 0;
    // Both flags are cleared first: after a failure here the frame is still open and empty, its next
    // begin resets the command buffers (what they held is lost and the call reports DEVICE_ERROR).
    const bool xfer = fr.xfer_recording, cmd = fr.cmd_recording;
    fr.xfer_recording = fr.cmd_recording = false;
    if (xfer) {
        check(f.vkEndCommandBuffer(fr.xfer), "vkEndCommandBuffer");
        cbs[n++] = fr.xfer;  // uploads first: the cmd buffer's leading barrier orders them before its work
    }
    if (cmd) {
        check(f.vkEndCommandBuffer(fr.rec.cmd), "vkEndCommandBuffer");
        cbs[n++] = fr.rec.cmd;
    }
    if (kept) cbs[n++] = kept->rec.cmd;  // recorded and ended once; its leading barrier orders it as a frame's
    if (n == 0) {  // nothing recorded (or a failed submission dropped it): nothing uses the slices
        fr.rec.arena_used = 0;
        fr.upload_used = 0;
        return;
    }
    check(f.vkResetFences(ctx_->device(), 1, &fr.fence), "vkResetFences");
    VkSubmitInfo si{};
    si.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO;
    si.commandBufferCount = n;
    si.pCommandBuffers = cbs;
    const auto t0 = profile_ ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
    const VkResult r = f.vkQueueSubmit(ctx_->queue(), 1, &si, fr.fence);
    if (profile_) prof_.submit_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    check(r, "vkQueueSubmit");
    fr.in_flight = true;
    fr.serial = ++serial_;
    if (kept) {
        kept->frame = cur_;
        kept->serial = fr.serial;
    }
    open_ = false;
    cur_ = (cur_ + 1) % frames_.size();
}

void vk_backend::flush_recording() {
    submit_frame();
    begin_cmd(open_frame());
}

// ---- memory -----------------------------------------------------------------------------------------------

void* vk_backend::alloc(size_t bytes, const char* what) {
    std::lock_guard<std::mutex> lock(mutex_);
    return reinterpret_cast<void*>(uintptr_t(mem_->allocate(bytes, what ? what : "vulkan alloc")));
}

void vk_backend::free(void* p) noexcept {
    if (!p) return;
    std::lock_guard<std::mutex> lock(mutex_);
    // A chunk may be destroyed when it empties: submit queued uploads (they may target it) and let all in-flight
    // work finish first (errors surface at the next call).
    try {
        wait_all();
    } catch (const std::exception& e) {
        log_.logf(TFU_LOG_ERROR, "vulkan: free(%p): waiting for queued work: %s", p, e.what());
    }
    location loc;
    const bool known = mem_->resolve(address_of(p), 1, &loc);
    const VkBuffer before = known ? mem_->chunk_buffer(loc.chunk) : VK_NULL_HANDLE;
    if (!mem_->release(address_of(p))) {
        log_.logf(TFU_LOG_ERROR, "vulkan: free(%p): not an address from alloc (ignored)", p);
        return;
    }
    // A destroyed chunk's VkBuffer handle may be handed out again: no cached set may keep naming it.
    if (mem_->chunk_buffer(loc.chunk) != before) {
        drop_set_caches();
        drop_kept();  // they bind it too
    }
}

void vk_backend::memory_info(uint64_t* total, uint64_t* free_bytes) const {
    std::lock_guard<std::mutex> lock(mutex_);
    mem_->memory_info(total, free_bytes);
}

void vk_backend::ensure_staging() {
    if (!staging_.buffer) staging_ = mem_->create_host_buffer(k_staging_bytes, true, "staging buffer");
}

// Copies the bytes into the open frame's upload slice now (the caller may reuse src_host at once) and records the
// copy into the frame's xfer buffer, which is submitted ahead of the next run (or by download/sync/free).
void vk_backend::upload_small(const location& loc, const void* src_host, size_t bytes) {
    frame* fr = &open_frame();
    const uint64_t need = align_up(bytes, 16);
    if (fr->upload_used + need > fr->upload.size) {
        submit_frame();
        fr = &open_frame();
    }
    const fns& f = ctx_->vk();
    std::memcpy(static_cast<uint8_t*>(fr->upload.mapped) + fr->upload_used, src_host, bytes);
    if (!fr->xfer_recording) {
        begin_with_barrier(f, fr->xfer);
        fr->xfer_recording = true;
    }
    VkBufferCopy c{fr->upload_used, loc.offset, bytes};
    f.vkCmdCopyBuffer(fr->xfer, fr->upload.buffer, mem_->chunk_buffer(loc.chunk), 1, &c);
    // A later copy in this buffer may write the same bytes.
    global_barrier(fr->xfer, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT,
                   VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT);
    fr->upload_used += need;
}

void vk_backend::upload(void* dst, const void* src_host, size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    throw_validation_errors();
    if (bytes == 0) return;
    location loc;
    if (!mem_->resolve(address_of(dst), bytes, &loc))
        fail(TFU_STATUS_INVALID_ARGUMENT, "vulkan upload: [" + std::to_string(address_of(dst)) + ", +" +
                                              std::to_string(bytes) + ") is not inside one allocation of this backend");
    if (bytes <= k_small_upload) return upload_small(loc, src_host, bytes);
    // Large (weights): through the shared staging buffer, each piece waited for before the buffer is refilled.
    ensure_staging();
    const fns& f = ctx_->vk();
    for (size_t done = 0; done < bytes;) {
        const size_t n = std::min<size_t>(bytes - done, staging_.size);
        std::memcpy(staging_.mapped, static_cast<const uint8_t*>(src_host) + done, n);
        frame& fr = open_frame();
        begin_cmd(fr);
        VkBufferCopy c{0, loc.offset + done, n};
        f.vkCmdCopyBuffer(fr.rec.cmd, staging_.buffer, mem_->chunk_buffer(loc.chunk), 1, &c);
        submit_frame();
        wait_frame(fr);
        done += n;
    }
    throw_validation_errors();
}

void vk_backend::copy(void* dst, const void* src, size_t bytes) {
    if (bytes == 0) return;
    std::vector<uint8_t> tmp(bytes);
    download(tmp.data(), src, bytes);
    upload(dst, tmp.data(), bytes);
}

void vk_backend::download(void* dst_host, const void* src, size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    throw_validation_errors();
    if (bytes == 0) return wait_all();
    location loc;
    if (!mem_->resolve(address_of(src), bytes, &loc))
        fail(TFU_STATUS_INVALID_ARGUMENT, "vulkan download: [" + std::to_string(address_of(src)) + ", +" +
                                              std::to_string(bytes) + ") is not inside one allocation of this backend");
    ensure_staging();
    const fns& f = ctx_->vk();
    for (size_t done = 0; done < bytes;) {
        const size_t n = std::min<size_t>(bytes - done, staging_.size);
        frame& fr = open_frame();
        begin_cmd(fr);
        VkBufferCopy c{loc.offset + done, 0, n};
        f.vkCmdCopyBuffer(fr.rec.cmd, mem_->chunk_buffer(loc.chunk), staging_.buffer, 1, &c);
        global_barrier(fr.rec.cmd, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT,
                       VK_PIPELINE_STAGE_HOST_BIT,
                       VK_ACCESS_HOST_READ_BIT);
        if (timer_) timer_->mark(fr.rec.cmd, cur_, "download");
        submit_frame();
        wait_all();  // this frame's fence covers the earlier submissions too; wait_all also frees their frames
        std::memcpy(static_cast<uint8_t*>(dst_host) + done, staging_.mapped, n);
        done += n;
    }
    throw_validation_errors();
}

// ---- ops --------------------------------------------------------------------------------------------------

bool vk_backend::supports(const op& o, std::string* why) const {
    if (!check_op(o, why)) return false;
    return op_supported(o, ctx_->caps(), max_binding_, why);
}

void vk_backend::record_ops(const op* ops, size_t n_ops) {
    // Fused launches where record_fused finds them (vk_ops.h lists them), else one op at a time.
    for (size_t i = 0; i < n_ops;) {
        size_t used = fuse_ ? record_fused(*this, ops + i, n_ops - i) : 0;
        if (used > 0) {
            ++prof_.fused;
            prof_.fused_ops += used;
        } else {
            record_op(*this, ops[i]);
            used = 1;
        }
        i += used;
    }
}

void vk_backend::reserve_scratch(const op* ops, size_t n_ops) {
    uint64_t need = 0;
    for (size_t i = 0; i < n_ops; ++i) need = std::max(need, scratch_bytes(*this, ops[i]));
    if (need <= scratch_.size) return;
    if (need > max_binding_)
        fail(TFU_STATUS_UNSUPPORTED, name_ + ": attention split-K needs " + std::to_string(need) +
                                         " bytes of scratch, more than one binding (" + std::to_string(max_binding_) + ")");
    uint64_t bytes = uint64_t(256) << 10;
    while (bytes < need) bytes *= 2;
    bytes = std::min(bytes, max_binding_);
    if (scratch_.buffer) {
        wait_all();         // frames in flight may read or write the old buffer
        drop_kept();        // kept command buffers bind it
        drop_set_caches();  // cached sets name its handle, which a new buffer may reuse
        mem_->destroy(scratch_);
    }
    scratch_ = mem_->create_device_buffer(bytes, "scratch (split-K partials, argmax pairs, fp16 x)");
}

binding vk_backend::scratch(uint64_t bytes) const {
    TFU_CHECK(scratch_.buffer && bytes <= scratch_.size);
    binding b;
    b.buffer = scratch_.buffer;
    b.range = scratch_.size;
    return b;
}

void vk_backend::run(const op* ops, size_t n_ops) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto t0 = std::chrono::steady_clock::now();
    const double wait0 = prof_.wait_s, submit0 = prof_.submit_s;
    throw_validation_errors();
    if (n_ops == 0) return;
    for (size_t i = 0; i < n_ops; ++i) {  // refuse the whole call before recording any of it
        std::string why;
        if (!supports(ops[i], &why)) fail(TFU_STATUS_UNSUPPORTED, name_ + ": " + why);
    }
    reserve_scratch(ops, n_ops);  // before a kept run is looked up or recorded: growing drops them
    bool replayed = false;
    if (kept_run* kept = replay_ && keepable(ops, n_ops) ? kept_for(ops, n_ops) : nullptr) {
        replayed = kept->frame != SIZE_MAX;  // else recorded just now
        submit_kept(*kept, ops, n_ops);
    } else {
        begin_cmd(open_frame());
        try {
            record_ops(ops, n_ops);
        } catch (...) {
            // Drop what this call recorded (the frame's queued uploads stay for the next submission); the next
            // begin resets the command buffer. Pieces already submitted by flush_recording() run.
            frame& fr = frames_[cur_];
            if (fr.cmd_recording) {
                fr.cmd_recording = false;
                ctx_->vk().vkEndCommandBuffer(fr.rec.cmd);
            }
            throw;
        }
        submit_frame();
    }
    ++prof_.runs;
    prof_.ops += n_ops;
    throw_validation_errors();
    if (profile_) {
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        prof_.run_s += s;
        prof_.run_wait_s += prof_.wait_s - wait0;
        prof_.run_submit_s += prof_.submit_s - submit0;
        if (replayed) {
            prof_.replay_s += s;
            prof_.replay_wait_s += prof_.wait_s - wait0;
            prof_.replay_submit_s += prof_.submit_s - submit0;
        }
    }
}

void vk_backend::sync() {
    std::lock_guard<std::mutex> lock(mutex_);
    wait_all();
    throw_validation_errors();
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

VkDescriptorSet vk_backend::descriptor_set(cmd_target& fr, const binding* b, size_t n_b) {
    VkDescriptorBufferInfo infos[k_n_bindings];
    set_key key;
    for (uint32_t i = 0, k = 0; i < k_n_bindings; ++i) {
        // slots 0..3 are b[0..3], slot 4 the arena, slots 5..8 are b[4..7]
        const size_t bi = i < 4 ? i : i - 1;
        if (i == 4) {
            infos[i] = {fr.arena.buffer, 0, fr.arena.size};
            continue;
        }
        if (bi < n_b && b[bi].buffer) infos[i] = {b[bi].buffer, b[bi].offset, b[bi].range};
        else infos[i] = {placeholder_.buffer, 0, placeholder_.size};
        key[k++] = handle_bits(infos[i].buffer);
        key[k++] = infos[i].offset;
        key[k++] = infos[i].range;
    }
    if (k_cache_sets) {
        const auto it = fr.sets.find(key);
        if (it != fr.sets.end()) return it->second;
    }
    const fns& f = ctx_->vk();
    VkDescriptorSetLayout sl = pipes_->set_layout();
    VkDescriptorSetAllocateInfo ai{};
    ai.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO;
    ai.descriptorPool = fr.pool;
    ai.descriptorSetCount = 1;
    ai.pSetLayouts = &sl;
    VkDescriptorSet set = VK_NULL_HANDLE;
    check(f.vkAllocateDescriptorSets(ctx_->device(), &ai, &set), "vkAllocateDescriptorSets");
    ++fr.sets_used;
    VkWriteDescriptorSet writes[k_n_bindings]{};
    for (uint32_t i = 0; i < k_n_bindings; ++i) {
        writes[i].sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET;
        writes[i].dstSet = set;
        writes[i].dstBinding = i;
        writes[i].descriptorCount = 1;
        writes[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
        writes[i].pBufferInfo = &infos[i];
    }
    f.vkUpdateDescriptorSets(ctx_->device(), k_n_bindings, writes, 0, nullptr);
    // Never written again: a cached set may be bound by this frame's later submissions only after this one's
    // fence (the pool is reset only in open_frame, or after wait_all when a chunk is destroyed). A kept run's
    // pool lives as long as the run.
    if (k_cache_sets) fr.sets.emplace(key, set);
    return set;
}

void vk_backend::dispatch(const char* shader, const std::vector<uint32_t>& spec, const binding* b, size_t n_b,
                          std::vector<uint32_t> push, uint64_t groups, const std::vector<uint32_t>* params,
                          size_t param_slot) {
    TFU_CHECK((kept_ || (open_ && frames_[cur_].cmd_recording)) && n_b <= 8 && push.size() * 4 <= k_push_bytes);
    if (groups == 0) return;
    const fns& f = ctx_->vk();
    const uint64_t param_bytes = params ? align_up(params->size() * 4, 16) : 0;
    if (kept_) {  // sized for the run before recording (kept_for): nothing to flush
        TFU_CHECK(kept_->rec.sets_used < kept_->rec.max_sets &&
                  kept_->rec.arena_used + param_bytes <= kept_->rec.arena.size);
    } else {
        if (param_bytes > frames_[cur_].rec.arena.size)
            fail(TFU_STATUS_UNSUPPORTED, name_ + ": " + shader + " needs " + std::to_string(param_bytes) +
                                             " bytes of parameters, more than the arena's " +
                                             std::to_string(frames_[cur_].rec.arena.size));
        if (frames_[cur_].rec.sets_used == k_max_sets ||
            frames_[cur_].rec.arena_used + param_bytes > frames_[cur_].rec.arena.size)
            flush_recording();
    }
    cmd_target& fr = kept_ ? kept_->rec : frames_[cur_].rec;
    if (params) {
        std::memcpy(static_cast<uint8_t*>(fr.arena.mapped) + fr.arena_used, params->data(), params->size() * 4);
        TFU_CHECK(param_slot < push.size());
        push[param_slot] = uint32_t(fr.arena_used / 4);
        fr.arena_used += param_bytes;
    }
    VkPipeline pipeline = pipes_->get(shader, spec);
    const VkDescriptorSet set = descriptor_set(fr, b, n_b);
    f.vkCmdBindPipeline(fr.cmd, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline);
    f.vkCmdBindDescriptorSets(fr.cmd, VK_PIPELINE_BIND_POINT_COMPUTE, pipes_->layout(), 0, 1, &set, 0, nullptr);
    push.resize(k_push_bytes / 4, 0);
    f.vkCmdPushConstants(fr.cmd, pipes_->layout(), VK_SHADER_STAGE_COMPUTE_BIT, 0, k_push_bytes, push.data());
    const uint64_t max_x = ctx_->caps().max_group_count[0], max_y = ctx_->caps().max_group_count[1];
    const uint64_t gx = std::min(groups, max_x), gy = (groups + gx - 1) / gx;
    if (gy > max_y)
        fail(TFU_STATUS_UNSUPPORTED, name_ + ": " + shader + " needs " + std::to_string(groups) + " workgroups");
    f.vkCmdDispatch(fr.cmd, uint32_t(gx), uint32_t(gy), 1);
    ++prof_.dispatches;
    if (profile_) ++prof_.recorded_by_shader[shader];
    if (kept_) ++kept_->n_dispatches;
    // The next op may read what this one wrote (and write what it read).
    global_barrier(fr.cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_SHADER_READ_BIT,
                   VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT);
    if (timer_ && !kept_) timer_->mark(fr.cmd, cur_, std::string(shader) + " x" + std::to_string(groups));
}

}  // namespace tfu::vk
