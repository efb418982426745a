// The backend interface: what every kernel module (cpu/ref, cpu, cuda, vulkan) implements.
#pragma once

#include <cstddef>
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
    // Runs the ops in order. Tensors must live in memory this backend can address (host memory for CPU).
    // Throws tfu::error (TFU_STATUS_UNSUPPORTED for an op it does not support: never silently wrong).
    virtual void run(const op* ops, size_t n_ops) = 0;
    // Waits for queued work (a no-op on the CPU).
    virtual void sync() {}
};

// The scalar reference: plain loops, one thread, f32 (f64 where it matters) accumulation.
std::unique_ptr<backend> make_cpu_ref_backend();
// The fast CPU path: n_threads workers (0 = all cores), SIMD chosen at run time.
std::unique_ptr<backend> make_cpu_backend(int n_threads);

// Picks a backend by kind (TFU_BACKEND_AUTO: CUDA, then Vulkan, then CPU; env TFU_BACKEND overrides auto).
// A kind that is not available here throws TFU_STATUS_BACKEND_UNAVAILABLE.
std::unique_ptr<backend> create_backend(tfu_backend_kind kind, int n_threads);

}  // namespace tfu
