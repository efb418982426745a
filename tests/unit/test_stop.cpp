// Tests of the stop-string matcher (engine/sampling/stop.h): spanning pieces, overlapping prefixes, emptiness,
// UTF-8 safety, and a randomised comparison with a plain search over the whole text.
#include <gtest/gtest.h>

#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "sampling/stop.h"

namespace {

using tfu::stop_matcher;

// Feeds the pieces; returns everything released (plus the flush when no stop matched) and the stop flag.
std::pair<std::string, bool> run(stop_matcher& m, const std::vector<std::string>& pieces) {
    std::string out;
    for (const std::string& p : pieces) {
        auto r = m.feed(p);
        out += r.text;
        if (r.stopped) return {out, true};
    }
    out += m.flush();
    return {out, false};
}

std::string join(const std::vector<std::string>& v) {
    std::string s;
    for (const std::string& x : v) s += "'" + x + "' ";
    return s;
}

}  // namespace

TEST(StopMatcher, NoStopStringsPassEverything) {
    stop_matcher m({});
    auto r = m.feed("Hello");
    EXPECT_EQ(r.text, "Hello");
    EXPECT_FALSE(r.stopped);
    EXPECT_EQ(m.feed("").text, "");
    EXPECT_EQ(m.flush(), "");
    stop_matcher e({"", ""});  // empty stop strings are ignored
    EXPECT_TRUE(e.stops().empty());
    EXPECT_EQ(e.feed("abc").text, "abc");
}

TEST(StopMatcher, StopSpanningPieces) {
    stop_matcher m({"\nUser:"});
    auto r = m.feed("Hello\nUs");
    EXPECT_EQ(r.text, "Hello");
    EXPECT_FALSE(r.stopped);
    EXPECT_EQ(m.held(), 3u);
    r = m.feed("er: hi");
    EXPECT_EQ(r.text, "");
    EXPECT_TRUE(r.stopped);
    EXPECT_TRUE(m.feed("more").stopped);
    EXPECT_EQ(m.feed("more").text, "");
    EXPECT_EQ(m.flush(), "");
    m.reset();
    EXPECT_FALSE(m.stopped());
    EXPECT_EQ(m.feed("ok").text, "ok");
}

TEST(StopMatcher, FalseStartIsReleased) {
    stop_matcher m({"abc"});
    EXPECT_EQ(m.feed("xab").text, "x");
    EXPECT_EQ(m.held(), 2u);
    auto r = m.feed("d");
    EXPECT_EQ(r.text, "abd");
    EXPECT_FALSE(r.stopped);
    EXPECT_EQ(m.held(), 0u);
    // A partial match that restarts inside itself: "aab" in "aaab".
    stop_matcher n({"aab"});
    EXPECT_EQ(run(n, {"a", "a", "a", "b", "c"}), std::make_pair(std::string("a"), true));
}

TEST(StopMatcher, OverlappingPrefixes) {
    stop_matcher m({"abc", "ab"});
    EXPECT_EQ(m.feed("xa").text, "x");
    auto r = m.feed("b");  // "ab" matches at once, no wait for "abc"
    EXPECT_EQ(r.text, "");
    EXPECT_TRUE(r.stopped);

    // The earliest match wins, whichever string it is.
    stop_matcher n({"cd", "bcdx"});
    EXPECT_EQ(run(n, {"ab", "c", "d"}), std::make_pair(std::string("ab"), true));
    // The first to complete wins, independent of the piece boundaries: "a" completes before "cbac".
    for (const auto& pieces : std::vector<std::vector<std::string>>{{"cbac"}, {"c", "b", "a", "c"}, {"cb", "ac"}}) {
        stop_matcher q({"cbac", "a"});
        EXPECT_EQ(run(q, pieces), std::make_pair(std::string("cb"), true));
    }
    stop_matcher t({"bc", "abc"});  // both end at the same byte: the earlier start (the longer string) wins
    EXPECT_EQ(run(t, {"xabcd"}), std::make_pair(std::string("x"), true));
    stop_matcher o({"zz", "bc"});
    EXPECT_EQ(run(o, {"abzzbc"}), std::make_pair(std::string("ab"), true));
}

TEST(StopMatcher, StopAtStartAndTextAfterTheStopIsDropped) {
    stop_matcher m({"END"});
    EXPECT_EQ(run(m, {"END and more"}), std::make_pair(std::string(""), true));
    stop_matcher n({"END"});
    EXPECT_EQ(run(n, {"one END two"}), std::make_pair(std::string("one "), true));
}

TEST(StopMatcher, HeldTextIsFlushedAtTheEnd) {
    stop_matcher m({"</s>"});
    EXPECT_EQ(m.feed("bye</").text, "bye");
    EXPECT_EQ(m.flush(), "</");
    EXPECT_EQ(m.held(), 0u);
}

TEST(StopMatcher, Utf8) {
    stop_matcher m({"\xC3\xA9!"});  // "é!"
    EXPECT_EQ(m.feed("caf\xC3\xA9").text, "caf");  // "é" could start the stop string
    EXPECT_EQ(m.feed("x").text, "\xC3\xA9x");
    EXPECT_EQ(run(m, {"\xC3\xA9", "!"}), std::make_pair(std::string(""), true));

    // An incomplete character is never released, even with no stop string in sight.
    stop_matcher n({"zz"});
    EXPECT_EQ(n.feed("a\xE2\x82").text, "a");
    EXPECT_EQ(n.feed("\xAC").text, "\xE2\x82\xAC");  // "€"
    EXPECT_EQ(n.feed("\xF0\x9F").text, "");
    EXPECT_EQ(n.feed("\x98\x80 ").text, "\xF0\x9F\x98\x80 ");

    try {
        stop_matcher bad({"ok", "\xC3"});
        ADD_FAILURE() << "invalid UTF-8 stop string accepted";
    } catch (const tfu::error& e) {
        EXPECT_EQ(e.status(), TFU_STATUS_INVALID_UTF8);
        EXPECT_NE(std::string(e.what()).find("#1"), std::string::npos) << e.what();
    }
}

// Random texts over a small alphabet, split at random points: the released text must equal the text before the
// earliest occurrence of any stop string (or the whole text), and nothing is released that could still turn
// out to be part of a stop string.
TEST(StopMatcher, RandomisedAgainstPlainSearch) {
    const uint32_t seed = 20261123;
    std::printf("seed %u\n", seed);
    std::mt19937 gen(seed);
    const char alphabet[] = "abc";
    auto rand_str = [&](size_t min_len, size_t max_len) {
        std::string s(std::uniform_int_distribution<size_t>(min_len, max_len)(gen), 'a');
        for (char& ch : s) ch = alphabet[std::uniform_int_distribution<int>(0, 2)(gen)];
        return s;
    };
    for (int trial = 0; trial < 3000; ++trial) {
        std::vector<std::string> stops;
        const int n_stops = std::uniform_int_distribution<int>(1, 3)(gen);
        for (int i = 0; i < n_stops; ++i) stops.push_back(rand_str(1, 4));
        const std::string text = rand_str(0, 24);
        // Reference: the occurrence that ends first (then the earliest start), found by brute force.
        size_t first = std::string::npos;
        for (size_t end = 1; end <= text.size() && first == std::string::npos; ++end)
            for (const std::string& s : stops)
                if (s.size() <= end && text.compare(end - s.size(), s.size(), s) == 0)
                    first = std::min(first, end - s.size());
        const std::string expected = text.substr(0, first == std::string::npos ? text.size() : first);

        stop_matcher m(stops);
        std::string released;
        bool stopped = false;
        size_t fed = 0;
        while (fed < text.size() && !stopped) {
            const size_t len = std::uniform_int_distribution<size_t>(1, 5)(gen);
            const std::string piece = text.substr(fed, len);
            fed += piece.size();
            auto r = m.feed(piece);
            released += r.text;
            stopped = r.stopped;
            // Released text is always a prefix of the final answer (never retracted).
            ASSERT_EQ(expected.compare(0, released.size(), released), 0)
                << "trial " << trial << " text '" << text << "' released '" << released << "' stops " << join(stops);
            // Holding is minimal: what is held is a proper prefix of some stop string.
            if (!stopped && m.held() > 0) {
                const std::string held = text.substr(fed - m.held(), m.held());
                bool is_prefix = false;
                for (const std::string& s : stops) is_prefix |= s.size() > held.size() && s.compare(0, held.size(), held) == 0;
                EXPECT_TRUE(is_prefix) << "trial " << trial << " holds '" << held << "'";
            }
        }
        if (!stopped) released += m.flush();
        EXPECT_EQ(released, expected) << "trial " << trial << " text '" << text << "'";
        EXPECT_EQ(stopped, first != std::string::npos) << "trial " << trial;
    }
}
