// The backend interface: what every kernel module (cpu/ref, cpu, cuda, vulkan) implements.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "backend/op.h"
#include "tfusion/tfusion.h"

namespace tfu {

class backend {
public:
    virtual ~backend() = default;
    virtual const char* name() const = 0;
    // Whether this backend can run `o` with its dtypes and shapes; if not, *why (if given) says why.
    virtual bool supports(const op& o, std::string* why) const = 0;
    // Runs the ops in order. Every tensor's data (and, for ATTENTION_PAGED, every kv_rows::data of the view)
    // must be memory this backend addresses: host memory when host_memory(), else memory from alloc(). The op
    // structs, the tensor structs and the paged_kv_view with its kv_rows/kv_layout arrays are always host
    // memory (a device backend copies the small descriptors it needs).
    // A device backend may return before the device has finished (CUDA and Vulkan do): the work completes, in
    // order, before the next download() or sync() returns, and an error the device finds (a bad token id) is
    // thrown by that call. Throws tfu::error (TFU_STATUS_UNSUPPORTED for an op it does not support: never
    // silently wrong).
    virtual void run(const op* ops, size_t n_ops) = 0;
    // Waits for queued work (a no-op on the CPU).
    virtual void sync() {}

    // ---- memory ------------------------------------------------------------------------------------------
    // Host backends (cpu, cpu-ref) read host memory directly; the defaults below are theirs. A device backend
    // returns false and implements the rest. Addresses from alloc() support pointer arithmetic within the
    // allocation (a tensor view at base + offset is valid) even where they are not CPU pointers (Vulkan maps them
    // to (buffer, offset)); the host must never dereference them.
    virtual bool host_memory() const { return true; }
    // At least `bytes`, 256-byte aligned; throws TFU_STATUS_OUT_OF_MEMORY naming `what`.
    virtual void* alloc(size_t bytes, const char* what);
    virtual void free(void* p) noexcept;
    // Copies between host memory and backend memory (either address may be inside an allocation). upload() is
    // ordered before every later run() and download(), and src_host may be reused as soon as it returns;
    // download() returns when the bytes are in dst_host (after all work queued before it).
    virtual void upload(void* dst, const void* src_host, size_t bytes);
    virtual void download(void* dst_host, const void* src, size_t bytes);
    // Copies between two addresses of this backend's memory (regions must not overlap), ordered like a run():
    // after the work queued before it, before the work queued after it (the paged KV cache's copy-on-write).
    virtual void copy(void* dst, const void* src, size_t bytes);
    // Device memory (bytes): total and currently free; host backends report 0, 0 (use the engine budget).
    virtual void memory_info(uint64_t* total, uint64_t* free_bytes) const {
        *total = 0;
        *free_bytes = 0;
    }
};

// The scalar reference: plain loops, one thread, f32 (f64 where it matters) accumulation.
std::unique_ptr<backend> make_cpu_ref_backend();
// The fast CPU path: n_threads workers (0 = all cores), SIMD chosen at run time.
std::unique_ptr<backend> make_cpu_backend(int n_threads);

// Picks a backend by kind (TFU_BACKEND_AUTO: CUDA, then Vulkan, then CPU; env TFU_BACKEND overrides auto).
// A kind that is not available here throws TFU_STATUS_BACKEND_UNAVAILABLE with the reason (module not built,
// no driver, no device).
std::unique_ptr<backend> create_backend(tfu_backend_kind kind, int n_threads);

}  // namespace tfu
