// The cpu-ref backend: validates each op (op_check) and calls its scalar reference kernel (ref/<name>.cpp).
#include <memory>
#include <string>

#include "backend/backend.h"
#include "backend/cpu/ref/op_check.h"
#include "backend/cpu/ref/ref_ops.h"
#include "core/error.h"

namespace tfu {

namespace {

class cpu_ref_backend final : public backend {
public:
    const char* name() const override { return "cpu-ref"; }
    bool supports(const op& o, std::string* why) const override { return check_op(o, why); }
    // Stateless: concurrent run() calls on one instance are safe as long as their tensors do not overlap.
    void run(const op* ops, size_t n_ops) override {
        for (size_t i = 0; i < n_ops; ++i) {
            const op& o = ops[i];
            require_op(name(), o);
            switch (o.type) {
#define TFU_OP(NAME, name, n_src) \
    case op_type::NAME: ref::name(o); break;
#include "backend/ops.def"
#undef TFU_OP
                case op_type::COUNT: fail(TFU_STATUS_INTERNAL, "cpu-ref: op type COUNT");
            }
        }
    }
};

}  // namespace

std::unique_ptr<backend> make_cpu_ref_backend() { return std::make_unique<cpu_ref_backend>(); }

}  // namespace tfu
