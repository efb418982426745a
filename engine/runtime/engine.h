// tfu::engine: the backend, the worker threads, the memory budget and the lock that serialises device work.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "backend/backend.h"
#include "tfusion/tfusion.h"

namespace tfu {

class engine {
public:
    explicit engine(const tfu_engine_params& p);
    ~engine();

    backend& device() { return *backend_; }
    const char* backend_name() const { return backend_->name(); }
    // Held while a forward pass runs: sessions on other threads take turns on the device.
    std::unique_lock<std::mutex> lock_device() { return std::unique_lock<std::mutex>(device_mutex_); }

    // Memory budget for weights and KV caches of all models. reserve() throws TFU_STATUS_OUT_OF_MEMORY naming
    // `what` and the figures when the budget would be exceeded; release() gives bytes back.
    void reserve(uint64_t bytes, const std::string& what);
    void release(uint64_t bytes);
    uint64_t memory_used() const { return used_.load(); }
    uint64_t memory_budget() const { return budget_; }

    std::atomic<int32_t> n_models{0};

private:
    std::unique_ptr<backend> backend_;
    std::mutex device_mutex_;
    uint64_t budget_;
    std::atomic<uint64_t> used_{0};
};

// Bytes held in an engine's budget for the lifetime of this object (released on destruction, also when a
// constructor that took it throws later).
class reservation {
public:
    reservation(engine& e, uint64_t bytes, const std::string& what) : e_(e), bytes_(bytes) { e_.reserve(bytes, what); }
    ~reservation() { e_.release(bytes_); }
    reservation(const reservation&) = delete;
    reservation& operator=(const reservation&) = delete;
    uint64_t bytes() const { return bytes_; }

private:
    engine& e_;
    uint64_t bytes_;
};

}  // namespace tfu
