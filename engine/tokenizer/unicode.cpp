// Code point class lookup: an ASCII table built once from the range table, binary search above ASCII.
#include "tokenizer/unicode.h"

#include <algorithm>
#include <array>

namespace tfu::unicode {

static uint8_t lookup(uint32_t cp) {
    const cpt_range* end = k_cpt_ranges + k_n_cpt_ranges;
    // first range whose `last` >= cp
    const cpt_range* r = std::lower_bound(k_cpt_ranges, end, cp, [](const cpt_range& a, uint32_t v) { return a.last < v; });
    return (r != end && r->first <= cp) ? r->flags : 0;
}

uint8_t cpt_flags(uint32_t cp) {
    static const std::array<uint8_t, 128> ascii = [] {
        std::array<uint8_t, 128> a{};
        for (uint32_t c = 0; c < 128; ++c) a[c] = lookup(c);
        return a;
    }();
    return cp < 128 ? ascii[cp] : lookup(cp);
}

}  // namespace tfu::unicode
