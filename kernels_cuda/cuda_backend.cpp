// The CUDA backend module: tfu_module_create (backend/module.h), device choice, device memory, the stream, the
// op dispatch of run(), and the mapping of CUDA/cuBLAS errors to tfu::error.
//
// One backend = one device + one non-default stream + one cuBLAS handle. run() checks every op (check_op, then
// the CUDA limits), enqueues all of them on the stream and returns without waiting (backend.h): a decode step
// of one run() per layer then costs one wait, in download(). Kernels that find bad input (a GET_ROWS id out of
// range) write a device_status word; the next sync() or download() copies it back after its wait and throws
// INVALID_ARGUMENT naming the op and the run() it came from (a table of the enqueued reporters, kept on the
// host until that check, gives the names).
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/ref/op_check.h"
#include "backend/kv_block_map.h"
#include "backend/module.h"
#include "core/error.h"
#include "cuda_ops.h"
#include "fused_rows.h"
#include "graph_cache.h"
#include "graph_key.h"
#include "gpu_timeline.h"
#include "mul_mat_vec.h"

namespace tfu::cuda {

void check(cudaError_t e, const char* what) {
    if (e == cudaSuccess) return;
    const std::string msg = std::string("cuda: ") + what + " failed: " + cudaGetErrorName(e) + ": " + cudaGetErrorString(e);
    if (e == cudaErrorMemoryAllocation) fail(TFU_STATUS_OUT_OF_MEMORY, msg);
    fail(TFU_STATUS_DEVICE_ERROR, msg);
}

void check_cublas(cublasStatus_t s, const char* what) {
    if (s == CUBLAS_STATUS_SUCCESS) return;
    const std::string msg = std::string("cuda: cuBLAS ") + what + " failed: " + cublasGetStatusName(s) + ": " +
                            cublasGetStatusString(s);
    fail(s == CUBLAS_STATUS_ALLOC_FAILED ? TFU_STATUS_OUT_OF_MEMORY : TFU_STATUS_DEVICE_ERROR, msg);
}

void* context::scratch(size_t bytes) {
    if (bytes <= scratch_cap_) return scratch_;
    // Queued ops (of this run() or earlier ones: runs are not waited for) may still use the old buffer.
    check(cudaStreamSynchronize(stream), "cudaStreamSynchronize (scratch growth)");
    if (scratch_) check(cudaFree(scratch_), "cudaFree (scratch)");
    scratch_ = nullptr;
    scratch_cap_ = 0;
    const size_t cap = bytes < (size_t(1) << 20) ? (size_t(1) << 20) : bytes;
    check(cudaMalloc(&scratch_, cap), "cudaMalloc (mul_mat scratch)");
    scratch_cap_ = cap;
    ++scratch_gen_;
    return scratch_;
}

cudaEvent_t context::take_event() {
    if (!idle_events_.empty()) {
        const cudaEvent_t e = idle_events_.back();
        idle_events_.pop_back();
        return e;
    }
    cudaEvent_t e = nullptr;
    check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreateWithFlags (staging fence)");
    return e;
}

void context::stage_fence() {
    if (stage_head_ == stage_open_) return;
    idle_events_.reserve(idle_events_.size() + 1);  // so that handing the event back below cannot throw
    const cudaEvent_t e = take_event();
    const cudaError_t r = cudaEventRecord(e, stream);
    if (r != cudaSuccess) {
        idle_events_.push_back(e);
        check(r, "cudaEventRecord (staging fence)");
    }
    fences_.push_back({stage_open_, stage_head_, e});
    stage_open_ = stage_head_;
}

void context::stage_wait(size_t begin, size_t end) {
    // Fences whose copies have run are retired first without waiting (cudaEventQuery), so the list stays as short
    // as the work in flight: a decode step adds one or two fences, and scanning thousands of them per upload cost
    // ~100 us each before this.
    while (!fences_.empty()) {
        const cudaError_t q = cudaEventQuery(fences_.front().done);
        if (q == cudaErrorNotReady) break;
        check(q, "cudaEventQuery (staging ring)");
        idle_events_.push_back(fences_.front().done);
        fences_.pop_front();
    }
    // The newest fence over these bytes; the older ones have completed when it has (one stream, in order).
    size_t last = fences_.size();
    for (size_t i = 0; i < fences_.size(); ++i)
        if (fences_[i].begin < end && begin < fences_[i].end) last = i;
    if (last == fences_.size()) return;
    check(cudaEventSynchronize(fences_[last].done), "cudaEventSynchronize (staging ring)");
    for (size_t i = 0; i <= last; ++i) {
        idle_events_.push_back(fences_.front().done);
        fences_.pop_front();
    }
}

void context::stage_grow(size_t need) {
    // Copies out of the old ring may be queued: wait for all of them before freeing it.
    check(cudaStreamSynchronize(stream), "cudaStreamSynchronize (staging growth)");
    for (const fence& f : fences_) idle_events_.push_back(f.done);
    fences_.clear();
    stage_head_ = stage_open_ = 0;
    if (stage_host_) check(cudaFreeHost(stage_host_), "cudaFreeHost (staging)");
    stage_host_ = nullptr;
    if (stage_dev_) check(cudaFree(stage_dev_), "cudaFree (staging)");
    stage_dev_ = nullptr;
    stage_cap_ = 0;
    const size_t cap = need < (size_t(1) << 20) ? (size_t(1) << 20) : 2 * need;
    check(cudaMallocHost(&stage_host_, cap), "cudaMallocHost (staging)");
    check(cudaMalloc(&stage_dev_, cap), "cudaMalloc (staging)");
    stage_cap_ = cap;
}

size_t context::stage_reserve(size_t bytes) {
    const size_t need = (bytes + 255) & ~size_t(255);
    if (need > stage_cap_) stage_grow(need);
    if (stage_head_ + need > stage_cap_) {
        // Wrap: close the stretch up to the end, start again at the front (after its copies have run).
        stage_fence();
        stage_head_ = stage_open_ = 0;
    }
    stage_wait(stage_head_, stage_head_ + need);
    const size_t at = stage_head_;
    stage_head_ += need;
    return at;
}

void* context::stage(const void* host, size_t bytes) {
    const size_t at = stage_reserve(bytes);
    std::memcpy(stage_host_ + at, host, bytes);
    check(cudaMemcpyAsync(stage_dev_ + at, stage_host_ + at, bytes, cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync (staging)");
    return stage_dev_ + at;
}

void context::stage_copy(void* dst, const void* host, size_t bytes) {
    const size_t at = stage_reserve(bytes);
    std::memcpy(stage_host_ + at, host, bytes);
    check(cudaMemcpyAsync(dst, stage_host_ + at, bytes, cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync (staged upload)");
}

void context::release() noexcept {
    // Errors are ignored here: this runs from the destructor, possibly after the device was lost.
    if (scratch_) cudaFree(scratch_);
    if (stage_host_) cudaFreeHost(stage_host_);
    if (stage_dev_) cudaFree(stage_dev_);
    for (const fence& f : fences_) cudaEventDestroy(f.done);
    for (cudaEvent_t e : idle_events_) cudaEventDestroy(e);
    fences_.clear();
    idle_events_.clear();
    if (status) cudaFree(status);
    if (dyn) cudaFree(dyn);
    dyn = nullptr;
    if (cublas) cublasDestroy(cublas);
    if (stream) cudaStreamDestroy(stream);
    scratch_ = nullptr;
    stage_host_ = stage_dev_ = nullptr;
    stage_cap_ = stage_head_ = stage_open_ = 0;
    status = nullptr;
    cublas = nullptr;
    stream = nullptr;
}

bool supported_here(const op& o, std::string* why) {
    auto no = [&](const std::string& m) {
        if (why) *why = std::string(op_name(o.type)) + ": cuda: " + m;
        return false;
    };
    // Element alignment of every tensor's data and row stride (the kernels load whole elements; quantized
    // blocks hold fp16 scales, so 2 bytes).
    const tensor* ts[4] = {o.dst, o.src[0], o.src[1], o.src[2]};
    for (const tensor* t : ts) {
        if (!t) continue;
        const size_t a = traits(t->type).quantized ? 2 : traits(t->type).type_size;
        if (reinterpret_cast<uintptr_t>(t->data) % a != 0 || t->nb[1] % a != 0)
            return no(describe_tensor(t) + " is not aligned to its element size");
    }
    if (o.type == op_type::KV_STORE_BLOCKS || o.type == op_type::ATTENTION_BLOCKS) {
        const kv_block_map& m = *static_cast<const kv_block_map*>(o.ext);
        if (m.k.head_dim > k_max_head_dim)
            return no("head size " + std::to_string(m.k.head_dim) + " exceeds " + std::to_string(k_max_head_dim));
        if (reinterpret_cast<uintptr_t>(m.blocks) % 8 != 0 || m.k_offset % 16 != 0 || m.v_offset % 16 != 0)
            return no("the block map's table or offsets are not aligned");
    }
    if (o.type == op_type::ATTENTION || o.type == op_type::ATTENTION_PAGED || o.type == op_type::ATTENTION_BLOCKS) {
        if (o.src[0]->ne[0] > k_max_head_dim)
            return no("head size " + std::to_string(o.src[0]->ne[0]) + " exceeds " + std::to_string(k_max_head_dim));
    }
    return true;
}

namespace {

void vlogf(const tfu_module_options& opt, tfu_log_level level, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
void vlogf(const tfu_module_options& opt, tfu_log_level level, const char* fmt, ...) {
    if (!opt.log || level < opt.log_level) return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    opt.log(level, buf, opt.log_user_data);
}

// Picks the device: options.device when >= 0, else the one with the most multiprocessors (then memory).
int choose_device(const tfu_module_options& opt, int count) {
    if (opt.device >= 0) {
        if (opt.device >= count)
            fail(TFU_STATUS_BACKEND_UNAVAILABLE, "cuda: device " + std::to_string(opt.device) + " requested (TFU_DEVICE), but only " +
                                                     std::to_string(count) + " CUDA device(s) present");
        return opt.device;
    }
    int best = 0;
    long long best_score = -1;
    for (int d = 0; d < count; ++d) {
        cudaDeviceProp p{};
        check(cudaGetDeviceProperties(&p, d), "cudaGetDeviceProperties");
        const long long score = (long long)p.multiProcessorCount * (1ll << 20) + (long long)(p.totalGlobalMem >> 30);
        if (score > best_score) {
            best_score = score;
            best = d;
        }
    }
    return best;
}

class cuda_backend final : public backend {
public:
    explicit cuda_backend(const tfu_module_options& opt) : opt_(opt) {
        const char* prof = std::getenv("TFU_CUDA_PROFILE");
        profile_ = prof && prof[0] == '1';
        dyn_host_.reserve(context::k_dyn_slots);  // so that run_keyed's copies of them never allocate (or throw)
        dyn_sent_.reserve(context::k_dyn_slots);
        const char* graphs = std::getenv("TFU_CUDA_GRAPHS");
        graphs_on_ = !(graphs && graphs[0] == '0');
        int count = 0;
        const cudaError_t e = cudaGetDeviceCount(&count);
        if (e != cudaSuccess)
            fail(TFU_STATUS_BACKEND_UNAVAILABLE, std::string("cuda: no usable driver or device: cudaGetDeviceCount failed: ") +
                                                     cudaGetErrorName(e) + ": " + cudaGetErrorString(e));
        if (count == 0) fail(TFU_STATUS_BACKEND_UNAVAILABLE, "cuda: cudaGetDeviceCount found no CUDA device");
        ctx_.device = choose_device(opt, count);
        check(cudaSetDevice(ctx_.device), "cudaSetDevice");
        cudaDeviceProp p{};
        check(cudaGetDeviceProperties(&p, ctx_.device), "cudaGetDeviceProperties");
        ctx_.sm_count = p.multiProcessorCount;
        const char* pdl = std::getenv("TFU_CUDA_PDL");
        ctx_.pdl = p.major >= 9 && pdl && pdl[0] == '1';
        const char* tiles = std::getenv("TFU_CUDA_ATTN_TILES");
        ctx_.attn_tiles = !(tiles && tiles[0] == '0');
        char nm[320];
        std::snprintf(nm, sizeof nm, "cuda: %s (sm_%d%d, %.0f GiB)", p.name, p.major, p.minor,
                      double(p.totalGlobalMem) / double(1ull << 30));
        name_ = nm;
        // The module carries machine code for the architectures it was built for (CMAKE_CUDA_ARCHITECTURES):
        // another device has no image of our kernels, which a probe reports before any op runs.
        if (!probe_kernel_image()) {
            fail(TFU_STATUS_BACKEND_UNAVAILABLE, std::string("cuda: libtfusion-cuda.so has no kernels for ") + name_ +
                                                     " (rebuild with CMAKE_CUDA_ARCHITECTURES including " +
                                                     std::to_string(p.major * 10 + p.minor) + ")");
        }
        try {
            check(cudaStreamCreateWithFlags(&ctx_.stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
            check_cublas(cublasCreate(&ctx_.cublas), "cublasCreate");
            check_cublas(cublasSetStream(ctx_.cublas, ctx_.stream), "cublasSetStream");
            check(cudaMalloc(reinterpret_cast<void**>(&ctx_.status), sizeof(device_status)), "cudaMalloc (status)");
            check(cudaMalloc(reinterpret_cast<void**>(&ctx_.dyn), context::k_dyn_slots * sizeof(int32_t)),
                  "cudaMalloc (device-read positions)");
            // On our stream: a plain cudaMemset goes to the legacy default stream, which a non-blocking stream
            // does not wait for.
            check(cudaMemsetAsync(ctx_.status, 0, sizeof(device_status), ctx_.stream), "cudaMemsetAsync (status)");
            check(cudaMallocHost(reinterpret_cast<void**>(&status_host_), sizeof(device_status)), "cudaMallocHost");
            std::memset(status_host_, 0, sizeof(device_status));
            check(cudaStreamSynchronize(ctx_.stream), "cudaStreamSynchronize (status)");
        } catch (...) {
            ctx_.release();
            if (status_host_) cudaFreeHost(status_host_);
            throw;
        }
        size_t free_b = 0, total_b = 0;
        check(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
        vlogf(opt, TFU_LOG_INFO, "%s: device %d of %d, %d multiprocessors, %.2f GiB free of %.2f GiB", name_.c_str(),
              ctx_.device, count, p.multiProcessorCount, double(free_b) / double(1ull << 30),
              double(total_b) / double(1ull << 30));
    }
    ~cuda_backend() override {
        if (profile_ && prof_.n_runs)
            vlogf(opt_, TFU_LOG_INFO,
                  "%s: host time: run() %.1f ms for %llu calls, %llu ops (%.2f us per op); upload() %.1f ms for %llu; "
                  "download() %.1f ms for %llu, of which waiting for the device %.1f ms",
                  name_.c_str(), prof_.run_s * 1e3, (unsigned long long)prof_.n_runs, (unsigned long long)prof_.n_ops,
                  prof_.run_s * 1e6 / double(prof_.n_ops ? prof_.n_ops : 1), prof_.upload_s * 1e3,
                  (unsigned long long)prof_.n_uploads, prof_.download_s * 1e3, (unsigned long long)prof_.n_downloads,
                  prof_.wait_s * 1e3);
        if (profile_ && timeline_.windows)
            vlogf(opt_, TFU_LOG_INFO,
                  "%s: GPU time per download window (%llu windows, each from the first run() after the last "
                  "download): %.1f us in runs, %.1f us from the first run's start to the last one's end (the rest "
                  "of it: the GPU waiting between runs), %.1f us copying the download",
                  name_.c_str(), timeline_.windows, timeline_.in_runs_ms * 1e3 / double(timeline_.windows),
                  timeline_.span_ms * 1e3 / double(timeline_.windows),
                  timeline_.copy_ms * 1e3 / double(timeline_.windows));
        if (profile_)
            vlogf(opt_, TFU_LOG_INFO,
                  "%s: CUDA graphs %s: %llu launches (%llu replays), %llu updates, %llu instantiations, %llu runs "
                  "redone op by op",
                  name_.c_str(), graphs_on_ ? "on" : "off", (unsigned long long)graphs_.stats().launches,
                  (unsigned long long)graphs_.stats().replays,
                  (unsigned long long)graphs_.stats().updates, (unsigned long long)graphs_.stats().instantiations,
                  (unsigned long long)capture_fallbacks_);
        cudaSetDevice(ctx_.device);
        if (ctx_.stream) cudaStreamSynchronize(ctx_.stream);
        ctx_.release();
        if (status_host_) cudaFreeHost(status_host_);
    }
    cuda_backend(const cuda_backend&) = delete;
    cuda_backend& operator=(const cuda_backend&) = delete;

    const char* name() const override { return name_.c_str(); }

    bool supports(const op& o, std::string* why) const override { return check_op(o, why) && supported_here(o, why); }

    void run(const op* ops, size_t n_ops) override {
        const host_timer timer(profile_, &prof_.run_s);
        ++prof_.n_runs;
        prof_.n_ops += n_ops;
        check(cudaSetDevice(ctx_.device), "cudaSetDevice");
        size_t n_reporters = 0;
        for (size_t i = 0; i < n_ops; ++i) {
            std::string why;
            if (!check_op(ops[i], &why) || !supported_here(ops[i], &why)) fail(TFU_STATUS_UNSUPPORTED, name_ + ": " + why);
            if (can_report(ops[i])) ++n_reporters;
        }
        // The reporter table is bounded: when it would overflow, check (and clear) what has been enqueued so
        // far first, which waits for the stream (rare: a decode step adds one entry and ends in download()).
        if (n_reporters && reporters_.size() + n_reporters > k_max_reporters) wait_and_check_status("run()");
        ++n_runs_;
        if (profile_) timeline_.run_begin(ctx_.stream);
        // Leading reporters (a decode step's embedding lookup) are enqueued one by one, so that the rest of the
        // run can be replayed (a graph bakes in the reporter table's index).
        size_t lead = 0;
        while (lead < n_ops && can_report(ops[lead])) ++lead;
        if (graphs_on_ && n_runs_ > k_graph_warmup_runs && n_ops >= 2 && graph_safe(ops, n_ops)) {
            reserve_scratch(ops, n_ops);  // before the key (it names the scratch buffer) and the capture
            if (n_reporters == lead && n_ops - lead >= 2 && n_ops - lead <= context::k_dyn_slots) {
                enqueue(ops, lead);
                run_keyed(ops + lead, n_ops - lead);
            } else {
                run_captured(ops, n_ops, nullptr);
            }
        } else {
            enqueue(ops, n_ops);
            ctx_.stage_fence();
        }
        if (profile_) timeline_.run_end(ctx_.stream);
    }

    // Waits for everything queued, then reports what the kernels found (device_status).
    void sync() override {
        check(cudaSetDevice(ctx_.device), "cudaSetDevice");
        wait_and_check_status("sync()");
        if (profile_) timeline_.close_window();
    }

    bool host_memory() const override { return false; }

    void* alloc(size_t bytes, const char* what) override {
        check(cudaSetDevice(ctx_.device), "cudaSetDevice");
        void* p = nullptr;
        const cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);  // cudaMalloc returns 256-byte aligned memory
        if (e == cudaErrorMemoryAllocation) {
            cudaGetLastError();  // not sticky: clear it so the next call does not see it
            fail(TFU_STATUS_OUT_OF_MEMORY, name_ + ": cudaMalloc of " + std::to_string(bytes) + " bytes for " +
                                               (what ? what : "?") + " failed: out of device memory");
        }
        check(e, "cudaMalloc");
        return p;
    }
    void free(void* p) noexcept override {
        if (!p) return;
        cudaSetDevice(ctx_.device);
        // Queued kernels may still use p. cudaFree synchronises the device too; the explicit wait says why.
        // Errors (a lost device) cannot be reported from here; device_status stays for the next sync()/download().
        cudaStreamSynchronize(ctx_.stream);
        cudaFree(p);
    }
    // On the stream, so after the kernels queued before it (which may read dst) and before those queued after.
    // src_host may be reused on return. Up to k_async_upload bytes (a decode step's token ids and positions) are
    // copied into the staging ring at once and sent from there without waiting; larger uploads wait for the
    // stream. device_status is not checked here (no copy back).
    void upload(void* dst, const void* src_host, size_t bytes) override {
        const host_timer timer(profile_, &prof_.upload_s);
        ++prof_.n_uploads;
        check(cudaSetDevice(ctx_.device), "cudaSetDevice");
        if (bytes <= k_async_upload) {
            ctx_.stage_copy(dst, src_host, bytes);
            ctx_.stage_fence();
            return;
        }
        check(cudaMemcpyAsync(dst, src_host, bytes, cudaMemcpyHostToDevice, ctx_.stream), "cudaMemcpyAsync (upload)");
        check(cudaStreamSynchronize(ctx_.stream), "cudaStreamSynchronize (upload)");
    }
    // On the stream after every queued kernel, then waits; then reports what the kernels found (device_status),
    // after dst_host has been written.
    void download(void* dst_host, const void* src, size_t bytes) override {
        const host_timer timer(profile_, &prof_.download_s);
        ++prof_.n_downloads;
        check(cudaSetDevice(ctx_.device), "cudaSetDevice");
        if (profile_) timeline_.copy_begin(ctx_.stream);
        check(cudaMemcpyAsync(dst_host, src, bytes, cudaMemcpyDeviceToHost, ctx_.stream), "cudaMemcpyAsync (download)");
        if (profile_) timeline_.copy_end(ctx_.stream);
        wait_and_check_status("download()");
        if (profile_) timeline_.close_window();
    }
    // Device to device on the stream: ordered with the runs around it, and the host does not wait.
    void copy(void* dst, const void* src, size_t bytes) override {
        check(cudaSetDevice(ctx_.device), "cudaSetDevice");
        if (bytes)
            check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, ctx_.stream), "cudaMemcpyAsync (copy)");
    }
    void memory_info(uint64_t* total, uint64_t* free_bytes) const override {
        check(cudaSetDevice(ctx_.device), "cudaSetDevice");
        size_t f = 0, t = 0;
        check(cudaMemGetInfo(&f, &t), "cudaMemGetInfo");
        *total = t;
        *free_bytes = f;
    }

private:
    // Enqueues the (checked) ops on the stream: fused launches where mul_mat_vec_fused finds them, else one op's
    // kernels at a time.
    void enqueue(const op* ops, size_t n_ops) {
        for (size_t i = 0; i < n_ops; ++i) {
            const op& o = ops[i];
            ctx_.op_index = i;
            ctx_.report_slot = -1;
            if (can_report(o)) {
                ctx_.report_slot = int32_t(reporters_.size());
                reporters_.push_back({n_runs_, i, o.src[0]->ne[1], o.src[0]->name});
            }
            // A MUL_MAT with the MUL_MATs, SWIGLU or ADD after it that share its launch; an RMS_NORM with the
            // projections after it (mul_mat_vec.h).
            if (o.type == op_type::MUL_MAT || o.type == op_type::RMS_NORM) {
                const size_t used = mul_mat_vec_fused(ctx_, ops + i, n_ops - i);
                if (used) {
                    i += used - 1;
                    continue;
                }
            }
            {  // ADD + RMS_NORM, ROPE q + ROPE k, KV_STORE k + KV_STORE v in one launch each (fused_rows.h)
                const size_t used = fused_rows(ctx_, ops + i, n_ops - i);
                if (used) {
                    i += used - 1;
                    continue;
                }
            }
            switch (o.type) {
#define TFU_OP(NAME, name, n_src) \
    case op_type::NAME: cuda::name(ctx_, o); break;
#include "backend/ops.def"
#undef TFU_OP
                case op_type::COUNT: fail(TFU_STATUS_INTERNAL, "cuda: op type COUNT");
            }
        }
    }

    // Grows scratch to what the run's ops take, outside a capture (growing waits for the stream).
    void reserve_scratch(const op* ops, size_t n_ops) {
        size_t need = 0;
        for (size_t i = 0; i < n_ops; ++i) {
            if (ops[i].type == op_type::ATTENTION || ops[i].type == op_type::ATTENTION_BLOCKS)
                need = std::max(need, attention_scratch_bytes(ctx_, ops[i]));
            if (ops[i].type == op_type::ARGMAX) need = std::max(need, argmax_scratch_bytes(ops[i]));
        }
        if (need) ctx_.scratch(need);
    }

    // Ops whose enqueueing never waits on the host nor stages tables (both illegal while the stream is captured):
    // everything but ATTENTION_PAGED (staged block tables) and MUL_MAT with more than 8 columns (cuBLAS with a
    // scratch buffer that may grow).
    static bool graph_safe(const op* ops, size_t n_ops) {
        for (size_t i = 0; i < n_ops; ++i) {
            if (ops[i].type == op_type::ATTENTION_PAGED) return false;
            if (ops[i].type == op_type::MUL_MAT && ops[i].src[1]->nrows() > k_mmv_fast_max_cols) return false;
        }
        return true;
    }

    // A run without reporters (a decode step's runs, after the embedding lookup): its ops' i[0] go to the device first
    // (context::dyn), its kernels read them there, and the kept graph of its key is launched as it is; the first
    // time a key is seen, the run is captured and kept under it. The host's work per run() is then the checks,
    // the key, one small copy and one graph launch.
    void run_keyed(const op* ops, size_t n_ops) {
        dyn_host_.resize(n_ops);
        for (size_t i = 0; i < n_ops; ++i) dyn_host_[i] = ops[i].i[0];
        // Before the graph, on the stream; skipped when the device already holds these values (a decode step's
        // layer runs all have the same ops at the same indexes, so only its first run copies).
        if (dyn_host_ != dyn_sent_) {
            ctx_.stage_copy(ctx_.dyn, dyn_host_.data(), n_ops * sizeof(int32_t));
            dyn_sent_ = dyn_host_;
        }
        graph_key(ctx_, ops, n_ops, key_);
        ctx_.dyn_base = ctx_.dyn;
        try {
            if (!graphs_.replay(key_, ctx_.stream)) run_captured(ops, n_ops, &key_);
        } catch (...) {
            ctx_.dyn_base = nullptr;
            throw;
        }
        ctx_.dyn_base = nullptr;
        ctx_.stage_fence();
    }

    // The run's launches captured into a graph and launched through graph_cache (graph_cache.h), kept under
    // `key` when given. A capture that fails turns graphs off for this backend (logged) and the run is enqueued
    // op by op instead.
    void run_captured(const op* ops, size_t n_ops, const std::vector<uint64_t>* key) {
        const size_t reporters_before = reporters_.size();
        check(cudaStreamBeginCapture(ctx_.stream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
        cudaGraph_t g = nullptr;
        try {
            enqueue(ops, n_ops);
        } catch (const tfu::error&) {
            // Something in the run needed a call that a capture does not allow (a host wait): end the capture,
            // forget what it recorded and enqueue the run op by op; a real error is thrown again from there.
            cudaStreamEndCapture(ctx_.stream, &g);
            if (g) cudaGraphDestroy(g);
            cudaGetLastError();
            reporters_.resize(reporters_before);
            ++capture_fallbacks_;
            enqueue(ops, n_ops);
            ctx_.stage_fence();
            return;
        } catch (...) {
            cudaStreamEndCapture(ctx_.stream, &g);
            if (g) cudaGraphDestroy(g);
            cudaGetLastError();
            throw;
        }
        const cudaError_t e = cudaStreamEndCapture(ctx_.stream, &g);
        if (e != cudaSuccess || !g) {
            cudaGetLastError();
            if (g) cudaGraphDestroy(g);
            graphs_on_ = false;
            vlogf(opt_, TFU_LOG_WARN, "%s: stream capture failed (%s); CUDA graphs are off for this backend",
                  name_.c_str(), cudaGetErrorName(e));
            reporters_.resize(reporters_before);
            enqueue(ops, n_ops);
            return;
        }
        try {
            graphs_.launch(g, ctx_.stream, key);
        } catch (...) {
            cudaGraphDestroy(g);
            throw;
        }
        cudaGraphDestroy(g);
    }

    // An enqueued op whose kernels may write device_status, with what its message needs (the op structs are
    // the caller's and may be gone by the time the status is read).
    struct reporter {
        uint64_t run;   // n_runs_ when it was enqueued
        size_t index;   // in that run()'s op list
        int64_t n_rows; // GET_ROWS: rows of src[0]
        std::string tensor;
    };
    static constexpr size_t k_max_reporters = 4096;

    // TFU_CUDA_PROFILE=1: host seconds spent in the backend's calls, logged (INFO) when the backend is destroyed.
    // Beside a tool's wall time per token it tells host-bound steps (run() time close to the step) from
    // device-bound ones (download() mostly waiting).
    struct host_profile {
        double run_s = 0, upload_s = 0, download_s = 0, wait_s = 0;
        uint64_t n_runs = 0, n_ops = 0, n_uploads = 0, n_downloads = 0;
    };
    struct host_timer {
        bool on;
        double* sum;
        std::chrono::steady_clock::time_point t0;
        host_timer(bool enabled, double* s) : on(enabled), sum(s) {
            if (on) t0 = std::chrono::steady_clock::now();
        }
        ~host_timer() {
            if (on) *sum += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        }
        host_timer(const host_timer&) = delete;
        host_timer& operator=(const host_timer&) = delete;
    };
    static constexpr size_t k_async_upload = 64 * 1024;

    static bool can_report(const op& o) { return o.type == op_type::GET_ROWS; }

    // Waits for the stream, with the status copied back behind the queued work when a reporter was enqueued
    // since the last check; throws what a kernel reported (and clears it), else forgets the reporters.
    void wait_and_check_status(const char* where) {
        const bool copy = !reporters_.empty();
        if (copy)
            check(cudaMemcpyAsync(status_host_, ctx_.status, sizeof(device_status), cudaMemcpyDeviceToHost, ctx_.stream),
                  "cudaMemcpyAsync (status)");
        {
            const host_timer timer(profile_, &prof_.wait_s);
            check(cudaStreamSynchronize(ctx_.stream), (std::string("cudaStreamSynchronize (") + where + ")").c_str());
        }
        if (!copy) return;
        if (status_host_->code == status_ok) {
            reporters_.clear();
            return;
        }
        const device_status s = *status_host_;
        // Cleared on the stream (nothing is queued now), so no later kernel or copy sees the old report.
        check(cudaMemsetAsync(ctx_.status, 0, sizeof(device_status), ctx_.stream), "cudaMemsetAsync (status)");
        status_host_->code = status_ok;
        std::vector<reporter> rs;
        rs.swap(reporters_);
        const reporter* r = s.slot >= 0 && size_t(s.slot) < rs.size() ? &rs[size_t(s.slot)] : nullptr;
        if (s.code == status_bad_row_id && r) {
            fail(TFU_STATUS_INVALID_ARGUMENT, "get_rows: id " + std::to_string(s.a) + " at " + std::to_string(s.b) +
                                                  " is outside " + std::to_string(r->n_rows) + " rows of " + r->tensor +
                                                  " (" + name_ + ": op " + std::to_string(r->index) + " of run() #" +
                                                  std::to_string(r->run) + ", found on the device, reported by " +
                                                  where + ")");
        }
        fail(TFU_STATUS_INTERNAL, name_ + ": unknown device status " + std::to_string(s.code) + " (slot " +
                                      std::to_string(s.slot) + "), reported by " + where);
    }

    tfu_module_options opt_;  // the log callback (profile summary)
    bool profile_ = false;
    // CUDA graphs for decode-sized runs (TFU_CUDA_GRAPHS=0 turns them off); only after the first runs, so that
    // every kernel has been loaded (lazy module loading may synchronise, which a capture does not allow).
    static constexpr uint64_t k_graph_warmup_runs = 32;
    bool graphs_on_ = true;
    uint64_t capture_fallbacks_ = 0;  // captured runs redone op by op
    graph_cache graphs_;
    host_profile prof_;
    gpu_timeline timeline_;  // TFU_CUDA_PROFILE=1
    context ctx_;
    device_status* status_host_ = nullptr;  // pinned
    std::vector<reporter> reporters_;       // enqueued since the last status check; index = device_status::slot
    std::vector<int32_t> dyn_host_;         // run_keyed: the run's i[0] values
    std::vector<int32_t> dyn_sent_;         // what the last copy into ctx_.dyn held (the device's values)
    std::vector<uint64_t> key_;             // run_keyed: the run's graph key
    uint64_t n_runs_ = 0;                   // run() calls so far (names the run in a report)
    std::string name_;
};

}  // namespace

}  // namespace tfu::cuda

extern "C" __attribute__((visibility("default"))) int tfu_module_create(uint32_t abi, const tfu_module_options* options,
                                                                        tfu::backend** out, char* msg, size_t cap) {
    auto set_msg = [&](const std::string& m) {
        if (msg && cap) {
            std::snprintf(msg, cap, "%s", m.c_str());
        }
    };
    if (!out || !options) {
        set_msg("tfu_module_create: null argument");
        return TFU_STATUS_INVALID_ARGUMENT;
    }
    *out = nullptr;
    if (abi != TFU_MODULE_ABI_VERSION) {
        set_msg("libtfusion-cuda.so was built for module ABI " + std::to_string(TFU_MODULE_ABI_VERSION) +
                ", the library expects " + std::to_string(abi));
        return TFU_STATUS_BACKEND_UNAVAILABLE;
    }
    if (options->struct_size < sizeof(tfu_module_options)) {
        set_msg("tfu_module_create: options.struct_size too small");
        return TFU_STATUS_INVALID_ARGUMENT;
    }
    try {
        *out = new tfu::cuda::cuda_backend(*options);
        return TFU_STATUS_OK;
    } catch (const tfu::error& e) {
        set_msg(e.what());
        return e.status();
    } catch (const std::bad_alloc&) {
        set_msg("cuda: out of host memory");
        return TFU_STATUS_OUT_OF_MEMORY;
    } catch (const std::exception& e) {
        set_msg(std::string("cuda: ") + e.what());
        return TFU_STATUS_DEVICE_ERROR;
    }
}
