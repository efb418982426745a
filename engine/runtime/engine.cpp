// The engine: backend selection at creation, budget accounting.
#include "runtime/engine.h"

#include <algorithm>
#include <thread>

#include "core/enum_value.h"
#include "core/error.h"
#include "core/log.h"
#include "runtime/session.h"

namespace tfu {

namespace {

// Checked as integers (core/enum_value.h) before the constructor reads them as enums.
const tfu_engine_params& checked(const tfu_engine_params& p) {
    const int32_t off = enum_value(p.offload_policy), be = enum_value(p.backend);
    if (off < TFU_OFFLOAD_LRU || off > TFU_OFFLOAD_NONE)
        fail(TFU_STATUS_INVALID_ARGUMENT, "engine params: offload_policy = " + std::to_string(off) +
                                              " is not a tfu_offload_policy");
    if (be < TFU_BACKEND_AUTO || be > TFU_BACKEND_VULKAN)
        fail(TFU_STATUS_INVALID_ARGUMENT, "engine params: backend = " + std::to_string(be) + " is not a tfu_backend_kind");
    if (p.n_threads < 0) fail(TFU_STATUS_INVALID_ARGUMENT, "engine params: n_threads must be >= 0");
    return p;
}

}  // namespace

engine::engine(const tfu_engine_params& p_in) : offload_policy_(checked(p_in).offload_policy), budget_(p_in.memory_budget) {
    const tfu_engine_params& p = p_in;
    backend_ = create_backend(p.backend, p.n_threads);
    logf(TFU_LOG_INFO, "engine: backend %s, memory budget %s", backend_->name(),
         budget_ ? (std::to_string(budget_ >> 20) + " MiB").c_str() : "unlimited");
}

engine::~engine() = default;

void engine::reserve(uint64_t bytes, const std::string& what) {
    uint64_t cur = used_.load();
    do {
        if (budget_ != 0 && (bytes > budget_ || cur > budget_ - bytes))
            fail(TFU_STATUS_OUT_OF_MEMORY, what + " needs " + std::to_string(bytes) + " bytes but only " +
                                               std::to_string(budget_ - cur) + " of the engine's memory budget of " +
                                               std::to_string(budget_) + " bytes are free");
    } while (!used_.compare_exchange_weak(cur, cur + bytes));
}

void engine::release(uint64_t bytes) { used_.fetch_sub(bytes); }

void engine::add_session(session* s) {
    std::lock_guard<std::mutex> lock(sessions_mutex_);
    sessions_.push_back(s);
}

void engine::remove_session(session* s) {
    {
        std::lock_guard<std::mutex> lock(sessions_mutex_);
        sessions_.erase(std::remove(sessions_.begin(), sessions_.end(), s), sessions_.end());
    }
    // pick_victim() took s's busy flag under the lock just released; the offload then runs without it.
    while (s->busy.load()) std::this_thread::yield();
}

session* engine::pick_victim(const session* self) {
    std::lock_guard<std::mutex> lock(sessions_mutex_);
    std::vector<session*> order;
    for (session* s : sessions_)
        if (s != self && s->can_offload()) order.push_back(s);
    auto lru = [](const session* a, const session* b) {
        const uint64_t ta = a->last_use_tick.load(), tb = b->last_use_tick.load();
        return ta != tb ? ta < tb : a->seq < b->seq;
    };
    switch (offload_policy_) {
        case TFU_OFFLOAD_LRU: std::sort(order.begin(), order.end(), lru); break;
        case TFU_OFFLOAD_LFU:
            std::sort(order.begin(), order.end(), [&](const session* a, const session* b) {
                const uint64_t ua = a->n_uses.load(), ub = b->n_uses.load();
                return ua != ub ? ua < ub : lru(a, b);
            });
            break;
        case TFU_OFFLOAD_FIFO:
            std::sort(order.begin(), order.end(), [](const session* a, const session* b) { return a->seq < b->seq; });
            break;
        case TFU_OFFLOAD_NONE: return nullptr;
    }
    for (session* s : order) {
        bool expected = false;
        if (s->busy.compare_exchange_strong(expected, true)) return s;  // idle: ours until busy is cleared
    }
    return nullptr;
}

void engine::reserve_kv(uint64_t bytes, const std::string& what, const session* self) {
    for (;;) {
        try {
            reserve(bytes, what);
            return;
        } catch (const error& e) {
            if (e.status() != TFU_STATUS_OUT_OF_MEMORY) throw;
            session* victim = pick_victim(self);
            if (!victim)
                fail(TFU_STATUS_OUT_OF_MEMORY,
                     std::string(e.what()) + (offload_policy_ == TFU_OFFLOAD_NONE
                                                  ? " (offloading is off: TFU_OFFLOAD_NONE)"
                                                  : "; no idle session's KV cache is left to move to host memory"));
            try {
                victim->offload();
            } catch (...) {
                victim->busy.store(false);
                throw;
            }
            victim->busy.store(false);
        }
    }
}

void engine::add_model(model* m) {
    std::lock_guard<std::mutex> lock(models_mutex_);
    models_.push_back(m);
}

void engine::remove_model(model* m) {
    std::lock_guard<std::mutex> lock(models_mutex_);
    models_.erase(std::remove(models_.begin(), models_.end(), m), models_.end());
}

int32_t engine::n_models() const {
    std::lock_guard<std::mutex> lock(models_mutex_);
    return int32_t(models_.size());
}

}  // namespace tfu
