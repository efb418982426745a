// UTF-8 helpers shared by the tokenizers and the runtime: decoding one code point with validity, whole-string
// validation, the length of the complete prefix (for streaming), encoding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tfu {

// One decoded code point. `len` is the number of bytes consumed (1..4, never 0 for non-empty input).
// For an invalid sequence (bad lead byte, bad or missing continuation, overlong form, surrogate, > U+10FFFF)
// valid is false, len is 1 (skip one byte and resynchronise) and cp is U+FFFD.
struct utf8_cpt {
    uint32_t cp;
    uint32_t len;
    bool valid;
};

// Decodes the code point at s[pos] (pos < s.size()).
utf8_cpt utf8_decode(std::string_view s, size_t pos);

// Length in bytes of the sequence announced by lead byte `c` (1 for ASCII and for invalid lead bytes).
size_t utf8_seq_len(uint8_t c);

// True if `s` is entirely well-formed UTF-8 (RFC 3629: no overlongs, no surrogates, <= U+10FFFF).
bool utf8_valid(std::string_view s);

// Length of the longest prefix of `s` that does not end inside an incomplete multi-byte sequence: a trailing
// lead byte whose continuation bytes have not all arrived yet is held back. Invalid bytes are not held back
// (they can never become valid by appending more bytes), so the result is s.size() minus 0..3.
size_t utf8_complete_prefix(std::string_view s);

// Appends the UTF-8 encoding of cp (cp <= U+10FFFF; others encode U+FFFD).
void utf8_append(std::string& out, uint32_t cp);

// Returns `s` with each ill-formed subsequence (maximal subpart, as Unicode recommends) replaced by U+FFFD.
std::string utf8_sanitize(std::string_view s);

}  // namespace tfu
