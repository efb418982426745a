// Stop strings over streamed text (see stop.h for the rules).
#include "sampling/stop.h"

#include <algorithm>

#include "core/error.h"

namespace tfu {

namespace {

// Length of the UTF-8 sequence a lead byte starts (1..4), or 0 for a continuation or invalid lead byte.
size_t utf8_seq_len(unsigned char c) {
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return 2;
    if (c >= 0xE0 && c <= 0xEF) return 3;
    if (c >= 0xF0 && c <= 0xF4) return 4;
    return 0;
}

// Strict UTF-8 check (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF).
bool utf8_valid(std::string_view s) {
    size_t i = 0;
    while (i < s.size()) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        const size_t n = utf8_seq_len(c);
        if (n == 0 || i + n > s.size()) return false;
        for (size_t k = 1; k < n; ++k)
            if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
        if (n >= 3) {
            const unsigned char c1 = static_cast<unsigned char>(s[i + 1]);
            if (c == 0xE0 && c1 < 0xA0) return false;  // overlong
            if (c == 0xED && c1 >= 0xA0) return false; // surrogate
            if (c == 0xF0 && c1 < 0x90) return false;  // overlong
            if (c == 0xF4 && c1 >= 0x90) return false; // > U+10FFFF
        }
        i += n;
    }
    return true;
}

// Where the last, incomplete UTF-8 sequence of s starts (s.size() if s ends on a character boundary).
size_t complete_prefix_len(std::string_view s) {
    // Look back over at most 3 continuation bytes for the lead byte of the last sequence.
    size_t i = s.size();
    for (size_t back = 0; back < 4 && i > 0; ++back) {
        --i;
        const unsigned char c = static_cast<unsigned char>(s[i]);
        if ((c & 0xC0) != 0x80) {
            const size_t n = utf8_seq_len(c);
            return (n != 0 && i + n > s.size()) ? i : s.size();
        }
    }
    return s.size();  // no lead byte nearby: not UTF-8 we can repair; release as is
}

}  // namespace

stop_matcher::stop_matcher(std::vector<std::string> stops) {
    for (size_t i = 0; i < stops.size(); ++i) {
        if (!utf8_valid(stops[i]))
            fail(TFU_STATUS_INVALID_UTF8, "stop string #" + std::to_string(i) + " is not valid UTF-8");
        if (!stops[i].empty()) stops_.push_back(std::move(stops[i]));
    }
}

stop_matcher::result stop_matcher::feed(std::string_view text) {
    result r;
    if (stopped_) {
        r.stopped = true;
        return r;
    }
    pending_.append(text.data(), text.size());

    // The match that completes first (smallest end; on a tie the earliest start, i.e. the longer string), as if
    // the text had come one byte at a time: the result does not depend on how the text was split into pieces.
    size_t match = std::string::npos, match_end = std::string::npos;
    for (const std::string& s : stops_) {
        const size_t pos = pending_.find(s);  // the first occurrence of s is also the one that ends first
        if (pos == std::string::npos) continue;
        const size_t end = pos + s.size();
        if (end < match_end || (end == match_end && pos < match)) {
            match = pos;
            match_end = end;
        }
    }
    if (match != std::string::npos) {
        r.text = pending_.substr(0, match);
        r.stopped = stopped_ = true;
        pending_.clear();
        return r;
    }

    // No match: hold the longest suffix that is a proper prefix of a stop string (a match can only start there).
    size_t hold_from = pending_.size();
    for (const std::string& s : stops_) {
        const size_t max_len = std::min(s.size() - 1, pending_.size());
        for (size_t len = max_len; len > 0; --len) {
            if (pending_.size() - len >= hold_from) break;  // not longer than what is held already
            if (pending_.compare(pending_.size() - len, len, s, 0, len) == 0) {
                hold_from = pending_.size() - len;
                break;
            }
        }
    }
    hold_from = std::min(hold_from, complete_prefix_len(pending_));  // never release half a character
    r.text = pending_.substr(0, hold_from);
    pending_.erase(0, hold_from);
    return r;
}

std::string stop_matcher::flush() {
    std::string out;
    out.swap(pending_);
    return out;
}

void stop_matcher::reset() {
    pending_.clear();
    stopped_ = false;
}

}  // namespace tfu
