// tfu::engine: the backend, the worker threads, the memory budget and the lock that serialises device work.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "tfusion/tfusion.h"

namespace tfu {

class model;

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

    // The models loaded into this engine (registered by model's constructor, removed by its destructor).
    void add_model(model* m);
    void remove_model(model* m);
    int32_t n_models() const;
    // Calls fn(const model&) for each loaded model, holding the registry lock (fn must not load or unload).
    template <typename Fn>
    void for_each_model(Fn&& fn) const {
        std::lock_guard<std::mutex> lock(models_mutex_);
        for (const model* m : models_) fn(*m);
    }

private:
    mutable std::mutex models_mutex_;
    std::vector<model*> models_;
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
