// The fast CPU backend ("cpu"): validates each op (op_check) and runs its multithreaded kernel on the
// backend's own thread pool, with AVX2 helpers when the CPU has AVX2 + FMA + F16C.
//
// Thread-safety: each instance owns its pool and scratch buffer; run() calls on one instance are serialised by
// a mutex, run() calls on different instances proceed concurrently (several engines in one process).
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_ops.h"
#include "backend/cpu/ref/op_check.h"
#include "core/error.h"

namespace tfu {

namespace {

class cpu_backend final : public backend {
public:
    explicit cpu_backend(int n_threads) : pool_(n_threads), avx2_(cpu::cpu_has_avx2()) {
        name_ = avx2_ ? "cpu" : "cpu (scalar)";
    }
    const char* name() const override { return name_.c_str(); }
    bool supports(const op& o, std::string* why) const override { return check_op(o, why); }
    void run(const op* ops, size_t n_ops) override {
        std::lock_guard<std::mutex> lock(mutex_);
        cpu::context ctx{pool_, avx2_, scratch_};
        for (size_t i = 0; i < n_ops; ++i) {
            const op& o = ops[i];
            require_op("cpu", o);
            switch (o.type) {
#define TFU_OP(NAME, name, n_src) \
    case op_type::NAME: cpu::name(ctx, o); break;
#include "backend/ops.def"
#undef TFU_OP
                case op_type::COUNT: fail(TFU_STATUS_INTERNAL, "cpu: op type COUNT");
            }
        }
    }

private:
    thread_pool pool_;
    bool avx2_;
    std::string name_;
    std::mutex mutex_;
    std::vector<uint8_t> scratch_;
};

}  // namespace

std::unique_ptr<backend> make_cpu_backend(int n_threads) { return std::make_unique<cpu_backend>(n_threads); }

}  // namespace tfu
