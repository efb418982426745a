// ARGMAX (backend/ops.def) is the sampler's greedy pick bit for bit: on random columns with NaN, +-inf, FLT_MAX,
// -0/+0, denormals and ties planted, cpu-ref's and the fast CPU's ARGMAX equal sampler::sample() at temperature 0
// (and -1 exactly where the sampler throws "no finite logit"). The device backends are held to cpu-ref by
// test_ops; this closes the chain to what the session would have picked from host logits.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <random>

#include "backend/backend.h"
#include "core/error.h"
#include "ops/op_test_util.h"
#include "sampling/sampler.h"

namespace tfu::test {
namespace {

// A value from a pool that makes ties and special cases common.
float special_value(std::mt19937_64& rng) {
    static const float pool[] = {NAN, -NAN, INFINITY, -INFINITY, FLT_MAX, -FLT_MAX, 0.0f, -0.0f, 1e-44f, 3e-44f,
                                 -1e-44f, 1.0f, 1.0f, 2.5f, -2.5f};
    std::uniform_int_distribution<size_t> d(0, sizeof pool / sizeof pool[0] - 1);
    return pool[d(rng)];
}

TEST(argmax_sampler, equals_greedy_sample) {
    const uint64_t seed = test_seed();
    std::mt19937_64 rng(seed * 31u + 7u);
    std::unique_ptr<backend> ref = make_cpu_ref_backend();
    std::unique_ptr<backend> cpu = create_backend(TFU_BACKEND_CPU, 2);
    sampler_config cfg;
    cfg.temperature = 0.0f;
    int n_minus1 = 0, n_checked = 0;
    for (int64_t k : {1, 2, 7, 8, 9, 31, 64, 513, 4096}) {
        const int64_t n = 64;
        owned_tensor x(dtype::F32, k, n, 1, "logits");
        fill_random(rng, x.t, 3.0f);
        std::uniform_real_distribution<double> u(0, 1);
        for (int64_t j = 0; j < n; ++j) {
            float* col = static_cast<float*>(x.t.row(j));
            const double p_special = double(j % 8) / 7.0;  // from none to every value special
            for (int64_t i = 0; i < k; ++i)
                if (u(rng) < p_special) col[i] = special_value(rng);
            if (j % 16 == 5)  // nothing usable
                for (int64_t i = 0; i < k; ++i) col[i] = (i % 2) ? NAN : -INFINITY;
        }
        owned_tensor got_ref(dtype::I32, n), got_cpu(dtype::I32, n);
        op o;
        o.type = op_type::ARGMAX;
        o.src[0] = &x.t;
        o.dst = &got_ref.t;
        ref->run(&o, 1);
        o.dst = &got_cpu.t;
        cpu->run(&o, 1);
        sampler smp(cfg, int32_t(k));
        for (int64_t j = 0; j < n; ++j) {
            const float* col = static_cast<const float*>(x.t.row(j));
            int32_t want = -1;
            try {
                want = smp.sample(col);
            } catch (const tfu::error& e) {
                ASSERT_EQ(e.status(), TFU_STATUS_INTERNAL) << e.what();
            }
            n_minus1 += want == -1;
            ++n_checked;
            EXPECT_EQ(got_ref.t.ptr<int32_t>()[j], want) << "cpu-ref, k " << k << " column " << j;
            EXPECT_EQ(got_cpu.t.ptr<int32_t>()[j], want) << "cpu, k " << k << " column " << j;
        }
    }
    EXPECT_GT(n_minus1, 0);  // the no-usable-logit case was exercised
    std::printf("argmax vs sampler: %d columns, %d without a usable logit\n", n_checked, n_minus1);
}

}  // namespace
}  // namespace tfu::test
