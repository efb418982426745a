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
class session;

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

    // KV offload (tfu_offload_policy). Sessions register themselves; reserve_kv() is reserve() that, when the
    // budget is full, moves idle sessions' caches to host memory in the policy's order until `bytes` fit. A
    // session is idle when no call is using it (its busy flag can be taken); `self` (the session asking) is never
    // moved. Throws OUT_OF_MEMORY with the figures when no idle session is left to move.
    void add_session(session* s);
    void remove_session(session* s);  // then waits until no offload of s is running
    void reserve_kv(uint64_t bytes, const std::string& what, const session* self);
    tfu_offload_policy offload_policy() const { return offload_policy_; }
    uint64_t next_session_seq() { return session_seq_.fetch_add(1); }
    uint64_t next_use_tick() { return use_clock_.fetch_add(1) + 1; }  // orders session uses (LRU), no ties
    std::atomic<uint64_t> n_offloads{0}, n_prefetches{0};
    // Calls fn(const session&) for each session (under the registry lock; fn must not create or destroy any).
    template <typename Fn>
    void for_each_session(Fn&& fn) const {
        std::lock_guard<std::mutex> lock(sessions_mutex_);
        for (const session* s : sessions_) fn(*s);
    }

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
    session* pick_victim(const session* self);  // an idle resident session, its busy flag taken; or nullptr

    mutable std::mutex sessions_mutex_;
    std::vector<session*> sessions_;
    tfu_offload_policy offload_policy_;
    std::atomic<uint64_t> session_seq_{0}, use_clock_{0};
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

// A KV cache's bytes in the budget, taken through reserve_kv() and given back while the cache is offloaded.
class kv_reservation {
public:
    kv_reservation(engine& e, uint64_t bytes, const std::string& what) : e_(e), bytes_(bytes) {
        e_.reserve_kv(bytes, what, nullptr);
    }
    ~kv_reservation() { release(); }
    kv_reservation(const kv_reservation&) = delete;
    kv_reservation& operator=(const kv_reservation&) = delete;
    void release() {
        if (held_) e_.release(bytes_);
        held_ = false;
    }
    void acquire(const std::string& what, const session* self) {
        if (held_) return;
        e_.reserve_kv(bytes_, what, self);
        held_ = true;
    }
    bool held() const { return held_; }
    uint64_t bytes() const { return bytes_; }

private:
    engine& e_;
    uint64_t bytes_;
    bool held_ = true;
};

}  // namespace tfu
