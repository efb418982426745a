// hash64: a streaming 64-bit checksum for file integrity (session files): catches truncation, bit flips and
// mixed-up sections, not deliberate forgery. Words of 8 bytes are mixed with a multiply and xor-shifts (the
// splitmix64 finaliser); a tail shorter than 8 bytes and the total length go in last, so where the chunks of an
// update() sequence end does not change the result.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace tfu {

class hash64 {
public:
    void update(const void* data, size_t n) {
        const uint8_t* p = static_cast<const uint8_t*>(data);
        length_ += n;
        while (n > 0) {  // fill the pending word first
            if (fill_ == 0 && n >= 8) {
                uint64_t w;
                std::memcpy(&w, p, 8);
                mix(w);
                p += 8;
                n -= 8;
                continue;
            }
            pending_[fill_++] = *p++;
            --n;
            if (fill_ == 8) {
                uint64_t w;
                std::memcpy(&w, pending_, 8);
                mix(w);
                fill_ = 0;
            }
        }
    }
    uint64_t digest() const {
        hash64 h = *this;
        uint64_t tail = 0;
        std::memcpy(&tail, h.pending_, h.fill_);
        h.mix(tail ^ (uint64_t(h.fill_) << 56));
        h.mix(length_);
        return h.state_;
    }

private:
    void mix(uint64_t w) {
        uint64_t z = (state_ ^ w) + 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        state_ = z ^ (z >> 31);
    }
    uint64_t state_ = 0x6a09e667f3bcc909ull;
    uint64_t length_ = 0;
    uint8_t pending_[8] = {};
    size_t fill_ = 0;
};

}  // namespace tfu
