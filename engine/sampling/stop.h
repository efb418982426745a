// Stop strings over streamed text: releases what cannot start a stop string, holds back what might.
//
// Usage (per generated piece):
//   stop_matcher m({"\nUser:", "</s>"});
//   auto r = m.feed(piece);  emit(r.text);  if (r.stopped) break;
//   ...at the end (EOG, max tokens): emit(m.flush());
// Rules:
// - A stop string may span pieces. The match that completes first wins (smallest end, then earliest start), as
//   if text came byte by byte, so the result never depends on how the text was cut into pieces: with stops
//   "cbac" and "a", "cbac" stops at the "a" and releases "cb". The text before the match is released, the stop
//   string and whatever follows it are dropped, and the matcher stays stopped (later feeds return nothing).
// - Held back = the longest suffix of the unreleased text that is a proper prefix of some stop string, so with
//   stops "ab" and "abc", "a" is held and "ab" stops at once.
// - Empty stop strings are ignored (they would match before any text); no stop strings = everything passes.
// - UTF-8: stop strings must be valid UTF-8 (else TFU_STATUS_INVALID_UTF8 naming the index). Released text
//   never ends inside a character: an incomplete trailing sequence is held until its remaining bytes arrive.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace tfu {

class stop_matcher {
public:
    struct result {
        std::string text;      // safe to emit now
        bool stopped = false;  // a stop string matched (now or earlier)
    };

    explicit stop_matcher(std::vector<std::string> stops);

    // Feeds generated text; returns what may be emitted now and whether a stop string has matched.
    result feed(std::string_view text);
    // End of generation without a stop: returns the text held back (empty once stopped) and clears it.
    std::string flush();
    // Forgets the held text and the stopped state (the stop strings stay).
    void reset();

    bool stopped() const { return stopped_; }
    // Bytes held back now (for tests and diagnostics).
    size_t held() const { return pending_.size(); }
    const std::vector<std::string>& stops() const { return stops_; }

private:
    std::vector<std::string> stops_;  // non-empty ones only
    std::string pending_;             // text fed but not released yet
    bool stopped_ = false;
};

}  // namespace tfu
