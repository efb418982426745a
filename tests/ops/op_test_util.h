// Helpers of the op tests: seeded random data, guarded buffers (canary bytes around outputs), tensors that own
// their memory, and the list of backends to test against cpu-ref.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/fp16.h"
#include "core/quant.h"
#include "core/tensor.h"

namespace tfu::test {

// The seed of this run: env TFU_TEST_SEED, else a fixed default; printed once so a failure can be replayed.
inline uint64_t test_seed() {
    static const uint64_t seed = [] {
        const char* env = std::getenv("TFU_TEST_SEED");
        uint64_t s = env && *env ? std::strtoull(env, nullptr, 10) : 20240611ull;
        std::printf("op tests: seed %llu (set TFU_TEST_SEED to replay)\n", static_cast<unsigned long long>(s));
        return s;
    }();
    return seed;
}

// Memory with `k_guard` canary bytes before and after the payload.
class guarded_buffer {
public:
    static constexpr size_t k_guard = 64;
    static constexpr uint8_t k_canary = 0xA5;
    explicit guarded_buffer(size_t n) : size_(n), mem_(n + 2 * k_guard, k_canary) {}
    void* data() { return mem_.data() + k_guard; }
    const void* data() const { return mem_.data() + k_guard; }
    size_t size() const { return size_; }
    bool guards_intact() const {
        for (size_t i = 0; i < k_guard; ++i)
            if (mem_[i] != k_canary || mem_[k_guard + size_ + i] != k_canary) return false;
        return true;
    }

private:
    size_t size_;
    std::vector<uint8_t> mem_;
};

// A contiguous tensor with its own guarded storage.
struct owned_tensor {
    tensor t;
    std::unique_ptr<guarded_buffer> buf;
    owned_tensor(dtype type, int64_t ne0, int64_t ne1 = 1, int64_t ne2 = 1, const std::string& name = {}) {
        t = make_tensor(type, ne0, ne1, ne2, 1, nullptr, name);
        buf = std::make_unique<guarded_buffer>(t.nbytes());
        t.data = buf->data();
    }
    std::vector<uint8_t> bytes() const {
        const uint8_t* p = static_cast<const uint8_t*>(buf->data());
        return std::vector<uint8_t>(p, p + buf->size());
    }
};

inline std::vector<float> random_floats(std::mt19937_64& rng, size_t n, float stddev = 1.0f) {
    std::normal_distribution<float> d(0.0f, stddev);
    std::vector<float> v(n);
    for (float& x : v) x = d(rng);
    return v;
}

// Fills a tensor of any weight dtype with random rows (quantized with tfu::quantize_row) or f32/i32 values.
inline void fill_random(std::mt19937_64& rng, tensor& t, float stddev = 1.0f) {
    std::vector<float> row;
    for (int64_t r = 0; r < t.nrows(); ++r) {
        row = random_floats(rng, size_t(t.ne[0]), stddev);
        quantize_row(t.type, row.data(), t.row(r), t.ne[0]);
    }
}

// The values of a f32, f16 or bf16 tensor as floats.
inline std::vector<float> to_floats(const tensor& t) {
    std::vector<float> v(size_t(t.nelements()));
    for (int64_t r = 0; r < t.nrows(); ++r)
        for (int64_t i = 0; i < t.ne[0]; ++i) {
            const void* row = t.row(r);
            float x = 0;
            switch (t.type) {
                case dtype::F32: x = static_cast<const float*>(row)[i]; break;
                case dtype::F16: x = fp16_to_f32(static_cast<const uint16_t*>(row)[i]); break;
                case dtype::BF16: x = bf16_to_f32(static_cast<const uint16_t*>(row)[i]); break;
                default: ADD_FAILURE() << "to_floats: dtype " << dtype_name(t.type); break;
            }
            v[size_t(r * t.ne[0] + i)] = x;
        }
    return v;
}

// Every dtype the engine accepts as a model weight.
inline std::vector<dtype> weight_dtypes() {
    std::vector<dtype> out;
    for (uint32_t id = 0; id < 64; ++id) {
        const dtype_traits* tr = dtype_traits_of(id);
        if (tr && tr->weight_type) out.push_back(dtype(id));
    }
    return out;
}

// A backend under test: made on demand; `unavailable` holds the reason when it cannot be made here.
struct backend_entry {
    std::string label;
    std::function<std::unique_ptr<backend>()> make;
};

// cpu (runtime SIMD), cpu with TFU_CPU_SIMD=scalar (the fallback kernels), and the GPU kinds (skipped with
// create_backend's message until their modules exist).
inline std::vector<backend_entry> backends_under_test() {
    return {
        {"cpu", [] { return create_backend(TFU_BACKEND_CPU, 4); }},
        {"cpu_scalar",
         [] {
             setenv("TFU_CPU_SIMD", "scalar", 1);
             std::unique_ptr<backend> b;
             try {
                 b = create_backend(TFU_BACKEND_CPU, 3);
             } catch (...) {
                 unsetenv("TFU_CPU_SIMD");
                 throw;
             }
             unsetenv("TFU_CPU_SIMD");
             return b;
         }},
        {"cuda", [] { return create_backend(TFU_BACKEND_CUDA, 0); }},
        {"vulkan", [] { return create_backend(TFU_BACKEND_VULKAN, 0); }},
    };
}

}  // namespace tfu::test
