// Fast seeded random numbers for synthetic weights: xoshiro256** streams (one per tensor row, so the result
// does not depend on the number of threads) and standard normals from a 65536-entry inverse-CDF table.
//
// ref: Blackman & Vigna, "Scrambled linear pseudorandom number generators" (xoshiro256**, splitmix64 seeding).
// A normal sample is the table's quantile at (i + 0.5) / 65536 for a uniform 16-bit i, so one 64-bit draw
// gives four samples; the distribution is N(0, 1) quantised to 65536 levels with tails cut at about 4.3
// sigma: plenty for random weights, and several times faster than Box-Muller.
#pragma once

#include <cstdint>
#include <string_view>

#include "core/rng.h"

namespace tfu::synth {

// FNV-1a of a tensor name: distinct tensors get distinct streams whatever their order in the file.
inline uint64_t hash_name(std::string_view s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (char c : s) h = (h ^ uint8_t(c)) * 0x100000001b3ull;
    return h;
}

// The generator is core/rng.h's (xoshiro256**), shared with the sampler.
using xoshiro256 = tfu::rng;

// The 65536 quantiles of N(0, 1) (built once, thread-safe).
const float* normal_table();

// Fills x[0..n) with scale * N(0, 1) from `rng`.
void fill_normal(xoshiro256& rng, float* x, int64_t n, float scale);
// Fills x[0..n) with uniform values in [lo, hi).
void fill_uniform(xoshiro256& rng, float* x, int64_t n, float lo, float hi);
// Fills x[0..n) with +-u, u uniform in [lo, hi), each sign equally likely.
void fill_uniform_signed(xoshiro256& rng, float* x, int64_t n, float lo, float hi);

}  // namespace tfu::synth
