// Stop strings over streamed text (see stop.h for the rules).
#include "sampling/stop.h"

#include <algorithm>

#include "core/error.h"
#include "core/utf8.h"

namespace tfu {


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
    hold_from = std::min(hold_from, utf8_complete_prefix(pending_));  // never release half a character
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
