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

namespace tfu::synth {

inline uint64_t splitmix64(uint64_t& s) {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// FNV-1a of a tensor name: distinct tensors get distinct streams whatever their order in the file.
inline uint64_t hash_name(std::string_view s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (char c : s) h = (h ^ uint8_t(c)) * 0x100000001b3ull;
    return h;
}

class xoshiro256 {
public:
    explicit xoshiro256(uint64_t seed) {
        for (uint64_t& w : s_) w = splitmix64(seed);
    }
    uint64_t next() {
        const uint64_t result = rotl(s_[1] * 5, 7) * 9;
        const uint64_t t = s_[1] << 17;
        s_[2] ^= s_[0];
        s_[3] ^= s_[1];
        s_[1] ^= s_[2];
        s_[0] ^= s_[3];
        s_[2] ^= t;
        s_[3] = rotl(s_[3], 45);
        return result;
    }
    // Uniform in [0, 1) with 24 bits.
    float uniform() { return float(next() >> 40) * (1.0f / 16777216.0f); }

private:
    static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    uint64_t s_[4];
};

// The 65536 quantiles of N(0, 1) (built once, thread-safe).
const float* normal_table();

// Fills x[0..n) with scale * N(0, 1) from `rng`.
void fill_normal(xoshiro256& rng, float* x, int64_t n, float scale);
// Fills x[0..n) with uniform values in [lo, hi).
void fill_uniform(xoshiro256& rng, float* x, int64_t n, float lo, float hi);
// Fills x[0..n) with +-u, u uniform in [lo, hi), each sign equally likely.
void fill_uniform_signed(xoshiro256& rng, float* x, int64_t n, float lo, float hi);

}  // namespace tfu::synth
