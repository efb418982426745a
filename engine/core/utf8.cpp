// UTF-8 decoding and validation (RFC 3629, Table 3-7 of the Unicode standard for the well-formed byte ranges).
#include "core/utf8.h"

namespace tfu {

size_t utf8_seq_len(uint8_t c) {
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return 2;
    if (c >= 0xE0 && c <= 0xEF) return 3;
    if (c >= 0xF0 && c <= 0xF4) return 4;
    return 1;  // continuation byte or invalid lead (C0, C1, F5..FF)
}

utf8_cpt utf8_decode(std::string_view s, size_t pos) {
    const auto* p = reinterpret_cast<const uint8_t*>(s.data()) + pos;
    const size_t avail = s.size() - pos;
    const uint8_t c = p[0];
    const utf8_cpt bad{0xFFFD, 1, false};
    if (c < 0x80) return {c, 1, true};
    const size_t n = utf8_seq_len(c);
    if (n == 1 || avail < n) {
        return bad;
    }
    // Second byte ranges that exclude overlongs (E0, F0), surrogates (ED) and > U+10FFFF (F4).
    uint8_t lo = 0x80, hi = 0xBF;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
    if (p[1] < lo || p[1] > hi) return bad;
    for (size_t i = 2; i < n; ++i)
        if ((p[i] & 0xC0) != 0x80) return bad;
    uint32_t cp;
    if (n == 2) cp = (uint32_t(c & 0x1F) << 6) | (p[1] & 0x3F);
    else if (n == 3) cp = (uint32_t(c & 0x0F) << 12) | (uint32_t(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
    else cp = (uint32_t(c & 0x07) << 18) | (uint32_t(p[1] & 0x3F) << 12) | (uint32_t(p[2] & 0x3F) << 6) | (p[3] & 0x3F);
    return {cp, uint32_t(n), true};
}

bool utf8_valid(std::string_view s) {
    for (size_t i = 0; i < s.size();) {
        const utf8_cpt c = utf8_decode(s, i);
        if (!c.valid) return false;
        i += c.len;
    }
    return true;
}

size_t utf8_complete_prefix(std::string_view s) {
    // Look at most 3 bytes back for a lead byte whose sequence would extend past the end.
    const size_t n = s.size();
    for (size_t back = 1; back <= 3 && back <= n; ++back) {
        const auto c = uint8_t(s[n - back]);
        if ((c & 0xC0) == 0x80) continue;  // continuation byte: keep looking for its lead
        const size_t need = utf8_seq_len(c);
        if (need <= back) return n;  // complete (or an ASCII/invalid byte)
        // Incomplete: hold it back only if the bytes so far are a valid prefix of a sequence.
        const auto* p = reinterpret_cast<const uint8_t*>(s.data()) + (n - back);
        uint8_t lo = 0x80, hi = 0xBF;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
        if (back >= 2 && (p[1] < lo || p[1] > hi)) return n;
        return n - back;
    }
    return n;
}

void utf8_append(std::string& out, uint32_t cp) {
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) cp = 0xFFFD;
    if (cp < 0x80) {
        out += char(cp);
    } else if (cp < 0x800) {
        out += char(0xC0 | (cp >> 6));
        out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += char(0xE0 | (cp >> 12));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
    } else {
        out += char(0xF0 | (cp >> 18));
        out += char(0x80 | ((cp >> 12) & 0x3F));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
    }
}

// Number of bytes after s[pos] that continue a well-formed prefix of the sequence started at s[pos].
static size_t valid_continuations(std::string_view s, size_t pos) {
    const auto* p = reinterpret_cast<const uint8_t*>(s.data()) + pos;
    const size_t need = utf8_seq_len(p[0]);
    if (need == 1) return 0;
    size_t k = 0;
    for (size_t j = 1; j < need && pos + j < s.size(); ++j) {
        uint8_t lo = 0x80, hi = 0xBF;
        if (j == 1 && p[0] == 0xE0) lo = 0xA0;
        if (j == 1 && p[0] == 0xED) hi = 0x9F;
        if (j == 1 && p[0] == 0xF0) lo = 0x90;
        if (j == 1 && p[0] == 0xF4) hi = 0x8F;
        if (p[j] < lo || p[j] > hi) break;
        ++k;
    }
    return k;
}

std::string utf8_sanitize(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
        const utf8_cpt c = utf8_decode(s, i);
        if (c.valid) {
            out.append(s.substr(i, c.len));
            i += c.len;
            continue;
        }
        // One U+FFFD per maximal subpart of an ill-formed sequence (Unicode 3.9, "U+FFFD substitution"): a
        // truncated character gives one replacement, not one per byte.
        utf8_append(out, 0xFFFD);
        i += 1 + valid_continuations(s, i);
    }
    return out;
}

}  // namespace tfu
