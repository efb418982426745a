// Unicode code point classes for the BPE pre-tokenizers: general category class (\p{L}, \p{N}, \p{P}, \p{S},
// \p{M}, \p{Z}, \p{C}) and whitespace, looked up in the generated range table (unicode_tables.cpp).
#pragma once

#include <cstddef>
#include <cstdint>

namespace tfu::unicode {

// Bit flags of one code point. Unassigned code points have no class bit (flags 0 apart from nothing).
enum : uint8_t {
    LETTER = 1,       // L*
    NUMBER = 2,       // N*
    PUNCT = 4,        // P*
    SYMBOL = 8,       // S*
    MARK = 16,        // M*
    SEPARATOR = 32,   // Z*
    CONTROL = 64,     // C* except Cn
    WHITESPACE = 128, // Python str.isspace() (= `\s` of Python/Rust regexes)
};

struct cpt_range {
    uint32_t first, last;
    uint8_t flags;
};
extern const cpt_range k_cpt_ranges[];
extern const size_t k_n_cpt_ranges;
extern const char* const k_unicode_version;  // Unicode version the table was generated from

// Flags of code point `cp` (0 for unassigned or > U+10FFFF).
uint8_t cpt_flags(uint32_t cp);

}  // namespace tfu::unicode
