// Seeded pseudo-random numbers shared by the sampler and the tools: xoshiro256** seeded with splitmix64. Exact
// and portable, so a seed gives the same stream on every machine.
// ref: Blackman & Vigna, "Scrambled linear pseudorandom number generators" (https://prng.di.unimi.it/).
#pragma once

#include <cstdint>

namespace tfu {

// splitmix64 (Steele, Lea, Flood 2014): advances x and returns the next output; spreads one 64-bit seed over a
// larger state so that similar seeds give unrelated streams and the state is never all zeros.
inline uint64_t splitmix64(uint64_t& x) {
    uint64_t z = (x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

class rng {
public:
    explicit rng(uint64_t seed = 0) { seed_with(seed); }
    void seed_with(uint64_t seed) {
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
    // Uniform double in [0, 1) from the top 53 bits.
    double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
    // Uniform float in [0, 1) from the top 24 bits.
    float uniform_f() { return float(next() >> 40) * (1.0f / 16777216.0f); }

    // The whole state, to save a sampler mid-stream and resume it exactly (session files).
    void get_state(uint64_t out[4]) const {
        for (int i = 0; i < 4; ++i) out[i] = s_[i];
    }
    void set_state(const uint64_t in[4]) {
        for (int i = 0; i < 4; ++i) s_[i] = in[i];
    }

private:
    static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    uint64_t s_[4];
};

}  // namespace tfu
