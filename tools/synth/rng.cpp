// Normal samples for synthetic weights: the inverse-CDF table and the fill loops (see rng.h).
#include "rng.h"

#include <cmath>
#include <vector>

namespace tfu::synth {

const float* normal_table() {
    static const std::vector<float> table = [] {
        // Quantile of N(0,1) at p by bisection on Phi(x) = erfc(-x / sqrt 2) / 2 (monotone, so 60 halvings
        // of [-10, 10] reach double precision); 65536 entries take a few milliseconds.
        std::vector<float> t(65536);
        for (int i = 0; i < 65536; ++i) {
            const double p = (i + 0.5) / 65536.0;
            double lo = -10, hi = 10;
            for (int it = 0; it < 60; ++it) {
                const double mid = 0.5 * (lo + hi);
                if (0.5 * std::erfc(-mid / std::sqrt(2.0)) < p) lo = mid; else hi = mid;
            }
            t[size_t(i)] = float(0.5 * (lo + hi));
        }
        return t;
    }();
    return table.data();
}

void fill_normal(xoshiro256& rng, float* x, int64_t n, float scale) {
    const float* t = normal_table();
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const uint64_t r = rng.next();
        x[i + 0] = scale * t[r & 0xffff];
        x[i + 1] = scale * t[(r >> 16) & 0xffff];
        x[i + 2] = scale * t[(r >> 32) & 0xffff];
        x[i + 3] = scale * t[r >> 48];
    }
    for (; i < n; ++i) x[i] = scale * t[rng.next() >> 48];
}

void fill_uniform(xoshiro256& rng, float* x, int64_t n, float lo, float hi) {
    for (int64_t i = 0; i < n; ++i) x[i] = lo + (hi - lo) * rng.uniform_f();
}

void fill_uniform_signed(xoshiro256& rng, float* x, int64_t n, float lo, float hi) {
    for (int64_t i = 0; i < n; ++i) {
        const uint64_t r = rng.next();
        const float u = lo + (hi - lo) * float(r >> 40) * (1.0f / 16777216.0f);
        x[i] = (r & 1) ? -u : u;
    }
}

}  // namespace tfu::synth
