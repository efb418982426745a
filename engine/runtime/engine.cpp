// The engine: backend selection at creation, budget accounting.
#include "runtime/engine.h"

#include <algorithm>

#include "core/error.h"
#include "core/log.h"

namespace tfu {

engine::engine(const tfu_engine_params& p) : budget_(p.memory_budget) {
    if (p.n_threads < 0) fail(TFU_STATUS_INVALID_ARGUMENT, "engine params: n_threads must be >= 0");
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
