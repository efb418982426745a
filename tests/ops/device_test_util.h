// Helpers of the GPU backend tests (tests/cuda, tests/vulkan): the backend or the reason it is absent, relative
// L2 error, op construction, test_ops' MUL_MAT bounds, and a case that runs the same ops on cpu-ref and, through
// device copies of every tensor, on a device backend in one run().
#pragma once

#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/log.h"
#include "core/quant.h"
#include "ops/op_test_util.h"

namespace tfu::test {

// The backend of `kind`, or nullptr with *why set when this machine has none (BACKEND_UNAVAILABLE): the caller
// skips with *why. Other errors are thrown.
inline std::unique_ptr<backend> backend_or_null(tfu_backend_kind kind, std::string* why) {
    try {
        return create_backend(kind, 0);
    } catch (const tfu::error& e) {
        if (e.status() != TFU_STATUS_BACKEND_UNAVAILABLE) throw;
        *why = e.what();
        return nullptr;
    }
}

// ||got - want|| / ||want||; infinite when got holds a non-finite value.
inline double rel_l2(const std::vector<float>& got, const std::vector<float>& want) {
    double num = 0, den = 0;
    for (size_t i = 0; i < want.size(); ++i) {
        if (!std::isfinite(got[i])) return INFINITY;
        num += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
        den += double(want[i]) * want[i];
    }
    return std::sqrt(num / den);
}

// For dst (m, n) = w (k, m) . x (k, n): ||got - want|| over sqrt(sum_j sum_i sum_l (w_il x_jl)^2), the error
// against the size of the terms rather than of their sums. For random w and x both norms agree in expectation, but
// sums that cancel (a case of few outputs) inflate rel_l2 by chance; a path that quantizes x (q8 activations) errs
// in proportion to the terms, so its bound holds on this norm for any number of outputs. got / want: dst's values.
inline double term_rel_l2(const std::vector<float>& got, const std::vector<float>& want, const tensor& w,
                          const tensor& x) {
    const int64_t k = w.ne[0], m = w.ne[1], n = x.nrows();
    std::vector<float> row(static_cast<size_t>(k));
    double num = 0, den = 0;
    for (size_t i = 0; i < want.size(); ++i) {
        if (!std::isfinite(got[i])) return INFINITY;
        num += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
    }
    for (int64_t i = 0; i < m; ++i) {
        dequantize_row(w.type, w.row(i), row.data(), k);
        for (int64_t j = 0; j < n; ++j) {
            const float* xj = static_cast<const float*>(x.row(j));
            for (int64_t l = 0; l < k; ++l) den += double(row[size_t(l)]) * xj[l] * double(row[size_t(l)]) * xj[l];
        }
    }
    return std::sqrt(num / den);
}

inline op make_op(op_type type, tensor* dst, const tensor* a, const tensor* b = nullptr, const tensor* c = nullptr) {
    op o;
    o.type = type;
    o.dst = dst;
    o.src[0] = a;
    o.src[1] = b;
    o.src[2] = c;
    return o;
}

// test_ops' relative L2 bounds for MUL_MAT per weight type (q8 activations on the CPU path, f16/bf16 for GEMMs).
inline double mul_mat_bound(dtype t) {
    switch (t) {
        case dtype::F32: return 1e-5;
        case dtype::F16: return 2e-3;
        case dtype::BF16: return 1.5e-2;
        case dtype::Q2_K: case dtype::Q3_K: case dtype::Q4_K: case dtype::Q5_K: case dtype::Q6_K: return 2.5e-2;
        default: return 2e-2;
    }
}

// Host tensors of one case and their device copies: ops are written against the host tensors, run() runs them
// on cpu-ref as they are and on the device (one run(), then sync()) mapped to the copies; device_values reads a
// result back. A tensor may have padded rows and start `lead` bytes into its memory (the device copy has the
// same layout; lead a multiple of 4 for backends that bind 4-byte aligned addresses); padding keeps `fill`.
class device_case {
public:
    explicit device_case(backend& dev) : dev_(dev) {}
    ~device_case() {
        for (void* p : allocs_) dev_.free(p);
    }
    device_case(const device_case&) = delete;
    device_case& operator=(const device_case&) = delete;
    // A contiguous (ne0, ne1) tensor, random (sd) or zero.
    tensor* add(std::mt19937_64& rng, dtype type, int64_t ne0, int64_t ne1, bool random, float sd = 1.0f) {
        tensor* t = add_strided(type, ne0, ne1, row_size(type, ne0), 0, 0);
        if (random) fill_random(rng, *t, sd);
        return t;
    }
    // An (ne0, ne1) tensor with row stride nb1 (>= its row bytes), data `lead` bytes in, every byte `fill`.
    tensor* add_strided(dtype type, int64_t ne0, int64_t ne1, size_t nb1, size_t lead, uint8_t fill) {
        host_.push_back(std::make_unique<host_tensor>());
        host_tensor& h = *host_.back();
        h.t = make_tensor(type, ne0, ne1);
        h.t.nb[1] = nb1;
        h.t.nb[2] = h.t.nb[3] = nb1 * size_t(ne1);
        h.lead = lead;
        h.mem.assign(lead + size_t(ne1 - 1) * nb1 + h.t.row_bytes(), fill);
        h.t.data = h.mem.data() + lead;
        return &h.t;
    }
    void run(const std::vector<op>& ops) {
        std::unique_ptr<backend> ref = make_cpu_ref_backend();
        for (auto& h : host_) {
            if (map_.count(&h->t)) continue;
            dev_t_.push_back(std::make_unique<tensor>(h->t));
            void* d = dev_.alloc(h->mem.size(), "device test");
            allocs_.push_back(d);
            dev_.upload(d, h->mem.data(), h->mem.size());
            dev_t_.back()->data = static_cast<uint8_t*>(d) + h->lead;
            map_[&h->t] = dev_t_.back().get();
        }
        std::vector<op> dops = ops;
        for (op& o : dops) {
            o.dst = map_.at(o.dst);
            for (auto& s : o.src)
                if (s) s = map_.at(s);
        }
        ref->run(ops.data(), ops.size());
        dev_.run(dops.data(), dops.size());
        dev_.sync();
    }
    // A contiguous f32 result of the device run.
    std::vector<float> device_values(const tensor* host_t) {
        std::vector<float> v(size_t(host_t->nelements()));
        dev_.download(v.data(), map_.at(host_t)->data, v.size() * sizeof(float));
        return v;
    }

private:
    struct host_tensor {
        tensor t;
        std::vector<uint8_t> mem;
        size_t lead = 0;
    };
    backend& dev_;
    std::vector<std::unique_ptr<host_tensor>> host_;
    std::vector<std::unique_ptr<tensor>> dev_t_;
    std::vector<void*> allocs_;
    std::map<const tensor*, tensor*> map_;
};

// The library's log lines (INFO and up) between start_log_capture() and stop_log_capture(): the GPU tests read
// their backends' profile lines (logged when a backend is destroyed).
inline std::string captured_log;
inline void start_log_capture() {
    captured_log.clear();
    log_set_callback([](tfu_log_level, const char* m, void*) { captured_log += std::string(m) + "\n"; }, TFU_LOG_INFO,
                     nullptr);
}
inline void stop_log_capture() { log_set_callback(nullptr, TFU_LOG_INFO, nullptr); }

// A host tensor's device copy (alloc + upload), freed with the object; read() downloads it.
struct dev_tensor {
    backend& be;
    tensor t;
    dev_tensor(backend& b, const tensor& host) : be(b), t(host) {
        t.data = be.alloc(host.nbytes(), "test tensor");
        be.upload(t.data, host.data, host.nbytes());
    }
    ~dev_tensor() { be.free(t.data); }
    // New random values (fill_random) in the host tensor, then the same bytes here: a step's fresh inputs.
    void refill(std::mt19937_64& rng, tensor& host) {
        fill_random(rng, host);
        be.upload(t.data, host.data, host.nbytes());
    }
    dev_tensor(const dev_tensor&) = delete;
    dev_tensor& operator=(const dev_tensor&) = delete;
    std::vector<uint8_t> read() const {
        std::vector<uint8_t> out(t.nbytes());
        be.download(out.data(), t.data, out.size());
        return out;
    }
};

}  // namespace tfu::test
