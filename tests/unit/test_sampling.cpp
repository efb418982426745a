// Tests of the sampler chain (engine/sampling/sampler.h): determinism, greedy, top-k/top-p/min-p sets and
// their draw frequencies, penalties, temperature, non-finite logits, config validation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "sampling/sampler.h"

namespace {

using tfu::sampler;
using tfu::sampler_config;
using tfu::token_prob;

constexpr uint32_t k_seed = 1234567;

std::vector<float> random_logits(int32_t n, uint32_t seed, float scale = 3.0f) {
    std::mt19937 gen(seed);
    std::normal_distribution<float> dist(0.0f, scale);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = dist(gen);
    return v;
}

sampler_config plain_config() {  // every filter off, temperature 1
    sampler_config c;
    c.temperature = 1.0f;
    c.top_k = 0;
    c.top_p = 1.0f;
    c.min_p = 0.0f;
    return c;
}

std::set<int32_t> ids_of(const std::vector<token_prob>& d) {
    std::set<int32_t> s;
    for (const token_prob& tp : d) s.insert(tp.id);
    return s;
}

// Draws n tokens and checks (1) none falls outside the distribution's support and (2) the counts match the
// probabilities: Pearson's chi-square below df + 6*sqrt(2*df) + 10 (about 6 sigma for large df; the draws are
// seeded, so the test is deterministic, the bound only has to be honest).
void check_draw_frequencies(sampler& s, const std::vector<float>& logits, int n) {
    std::vector<token_prob> dist;
    s.distribution(logits.data(), dist);
    std::map<int32_t, int> counts;
    for (int i = 0; i < n; ++i) counts[s.sample(logits.data())]++;
    std::map<int32_t, double> p;
    for (const token_prob& tp : dist) p[tp.id] = tp.p;
    for (const auto& [id, c] : counts) EXPECT_TRUE(p.count(id)) << "token " << id << " drawn " << c << " times";
    double chi2 = 0.0;
    for (const auto& [id, pi] : p) {
        const double expected = pi * n;
        const double observed = counts.count(id) ? counts[id] : 0;
        chi2 += (observed - expected) * (observed - expected) / expected;
    }
    const double df = static_cast<double>(p.size()) - 1.0;
    EXPECT_LT(chi2, df + 6.0 * std::sqrt(2.0 * df) + 10.0) << "df " << df;
}

template <typename F>
void expect_status(tfu_status status, const std::string& needle, F&& f) {
    try {
        f();
        ADD_FAILURE() << "no exception, expected status " << static_cast<int>(status);
    } catch (const tfu::error& e) {
        EXPECT_EQ(e.status(), status) << e.what();
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
}

}  // namespace

// Known answers of xoshiro256** seeded by splitmix64(0xC0FFEE), computed independently (Python, reference
// algorithm): the PRNG must give these bits on every platform.
TEST(Rng, KnownAnswers) {
    tfu::rng r(0xC0FFEE);
    EXPECT_EQ(r.next(), 0x120e99a6dde4a550ull);
    EXPECT_EQ(r.next(), 0x8f989ef97733d4b4ull);
    EXPECT_EQ(r.next(), 0xf0a28eb2e4fd367bull);
    EXPECT_EQ(r.next(), 0x50c29bfe8734f5d2ull);
    for (int i = 0; i < 1000; ++i) {
        const double u = r.uniform();
        EXPECT_GE(u, 0.0);
        EXPECT_LT(u, 1.0);
    }
}

TEST(Sampler, DeterministicWithSeed) {
    std::printf("seed %u\n", k_seed);
    const auto logits = random_logits(300, k_seed);
    sampler_config c;  // the defaults: top-k 40, top-p 0.95, min-p 0.05, temperature 0.8
    sampler a(c, 300), b(c, 300);
    std::vector<int32_t> seq_a, seq_b;
    for (int i = 0; i < 200; ++i) {
        seq_a.push_back(a.sample(logits.data()));
        seq_b.push_back(b.sample(logits.data()));
    }
    EXPECT_EQ(seq_a, seq_b);
    EXPECT_GT(std::set<int32_t>(seq_a.begin(), seq_a.end()).size(), 1u) << "temperature 0.8 should vary";

    c.seed = 42;
    sampler d(c, 300);
    std::vector<int32_t> seq_d;
    for (int i = 0; i < 200; ++i) seq_d.push_back(d.sample(logits.data()));
    EXPECT_NE(seq_a, seq_d);

    // reset() re-seeds: the same sequence again.
    a.reset();
    std::vector<int32_t> again;
    for (int i = 0; i < 200; ++i) again.push_back(a.sample(logits.data()));
    EXPECT_EQ(seq_a, again);
}

TEST(Sampler, GreedyIsArgmaxLowestIdOnTies) {
    std::printf("seed %u\n", k_seed + 1);
    for (uint32_t trial = 0; trial < 20; ++trial) {
        const auto logits = random_logits(1000, k_seed + 1 + trial);
        const int32_t expected = static_cast<int32_t>(
            std::max_element(logits.begin(), logits.end()) - logits.begin());  // first of the max: lowest id
        for (float t : {0.0f, -1.0f}) {
            sampler_config c;
            c.temperature = t;
            sampler s(c, 1000);
            EXPECT_EQ(s.sample(logits.data()), expected);
        }
        sampler_config c;
        c.top_k = 1;  // top-k 1 at temperature > 0 is argmax too
        sampler s(c, 1000);
        EXPECT_EQ(s.sample(logits.data()), expected);
    }
    std::vector<float> ties = {1.0f, 3.0f, 2.0f, 3.0f, 3.0f};
    sampler_config c;
    c.temperature = 0.0f;
    EXPECT_EQ(sampler(c, 5).sample(ties.data()), 1);
    c.temperature = 1.0f;
    c.top_k = 1;
    EXPECT_EQ(sampler(c, 5).sample(ties.data()), 1);
}

TEST(Sampler, TemperatureSoftmax) {
    const auto logits = random_logits(50, k_seed + 2);
    for (float t : {0.5f, 1.0f, 2.0f}) {
        sampler_config c = plain_config();
        c.temperature = t;
        sampler s(c, 50);
        std::vector<token_prob> d;
        s.distribution(logits.data(), d);
        ASSERT_EQ(d.size(), 50u);
        double z = 0.0;
        for (float x : logits) z += std::exp(static_cast<double>(x) / t);
        for (const token_prob& tp : d)
            EXPECT_NEAR(tp.p, std::exp(static_cast<double>(logits[static_cast<size_t>(tp.id)]) / t) / z, 1e-12);
        check_draw_frequencies(s, logits, 20000);
    }
}

TEST(Sampler, TopKKeepsTheKLargest) {
    const auto logits = random_logits(1000, k_seed + 3);
    std::vector<int32_t> order(1000);
    for (int32_t i = 0; i < 1000; ++i) order[static_cast<size_t>(i)] = i;
    std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
    sampler_config c = plain_config();
    c.top_k = 7;
    sampler s(c, 1000);
    std::vector<token_prob> d;
    s.distribution(logits.data(), d);
    EXPECT_EQ(ids_of(d), std::set<int32_t>(order.begin(), order.begin() + 7));
    for (size_t i = 0; i < d.size(); ++i) EXPECT_EQ(d[i].id, order[i]) << "ordered best first";
    double z = 0.0;
    for (int i = 0; i < 7; ++i) z += std::exp(static_cast<double>(logits[order[i]]));
    for (const token_prob& tp : d) EXPECT_NEAR(tp.p, std::exp(static_cast<double>(logits[tp.id])) / z, 1e-12);
    check_draw_frequencies(s, logits, 20000);
}

TEST(Sampler, TopPKeepsTheSmallestSetReachingP) {
    // Probabilities 0.4, 0.3, 0.2, 0.1 (logs as logits) plus 20 tokens at -inf.
    std::vector<float> logits(24, -INFINITY);
    const double probs[4] = {0.4, 0.3, 0.2, 0.1};
    const int32_t ids[4] = {17, 3, 9, 0};  // scattered on purpose
    for (int i = 0; i < 4; ++i) logits[static_cast<size_t>(ids[i])] = static_cast<float>(std::log(probs[i]));
    struct { float p; std::set<int32_t> keep; } cases[] = {
        {0.0f, {17}},           {0.3f, {17}},          {0.65f, {17, 3}},
        {0.75f, {17, 3, 9}},    {0.95f, {17, 3, 9, 0}}, {1.0f, {17, 3, 9, 0}},
    };
    for (const auto& cs : cases) {
        sampler_config c = plain_config();
        c.top_p = cs.p;
        sampler s(c, 24);
        std::vector<token_prob> d;
        s.distribution(logits.data(), d);
        EXPECT_EQ(ids_of(d), cs.keep) << "top_p " << cs.p;
        double kept = 0.0;
        for (int32_t id : cs.keep)
            for (int i = 0; i < 4; ++i)
                if (ids[i] == id) kept += probs[i];
        for (const token_prob& tp : d) {
            for (int i = 0; i < 4; ++i) {
                if (ids[i] == tp.id) {
                    EXPECT_NEAR(tp.p, probs[i] / kept, 1e-6);
                }
            }
        }
        check_draw_frequencies(s, logits, 20000);
    }
}

TEST(Sampler, TopPOnALargeFlatVocabularySortsIncrementally) {
    // 1000 equal logits: top-p 0.5 keeps exactly 500 tokens, ties broken by lowest id (several sort chunks).
    std::vector<float> logits(1000, 0.25f);
    sampler_config c = plain_config();
    c.top_p = 0.5f;
    sampler s(c, 1000);
    std::vector<token_prob> d;
    s.distribution(logits.data(), d);
    ASSERT_EQ(d.size(), 500u);
    for (size_t i = 0; i < d.size(); ++i) {
        EXPECT_EQ(d[i].id, static_cast<int32_t>(i));
        EXPECT_NEAR(d[i].p, 1.0 / 500, 1e-12);
    }
    // A random large vocabulary against a full sort.
    const auto r = random_logits(20000, k_seed + 4, 2.0f);
    c.top_p = 0.9f;
    sampler s2(c, 20000);
    s2.distribution(r.data(), d);
    std::vector<int32_t> order(20000);
    for (int32_t i = 0; i < 20000; ++i) order[static_cast<size_t>(i)] = i;
    std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return r[a] > r[b] || (r[a] == r[b] && a < b); });
    double z = 0.0, cum = 0.0;
    for (float x : r) z += std::exp(static_cast<double>(x));
    size_t n = 0;
    while (n < order.size() && cum < 0.9 * z) cum += std::exp(static_cast<double>(r[order[n++]]));
    ASSERT_EQ(d.size(), n);
    for (size_t i = 0; i < n; ++i) EXPECT_EQ(d[i].id, order[i]);
}

TEST(Sampler, MinPDropsTokensBelowTheRatio) {
    // Probabilities proportional to 1, 0.5, 0.2, 0.09, 0.01.
    const double w[5] = {1.0, 0.5, 0.2, 0.09, 0.01};
    std::vector<float> logits(5);
    for (int i = 0; i < 5; ++i) logits[static_cast<size_t>(4 - i)] = static_cast<float>(std::log(w[i]));  // reversed ids
    struct { float min_p; std::set<int32_t> keep; } cases[] = {
        {0.0f, {4, 3, 2, 1, 0}}, {0.05f, {4, 3, 2, 1}}, {0.1f, {4, 3, 2}}, {0.3f, {4, 3}}, {0.6f, {4}}, {1.0f, {4}},
    };
    for (const auto& cs : cases) {
        sampler_config c = plain_config();
        c.min_p = cs.min_p;
        sampler s(c, 5);
        std::vector<token_prob> d;
        s.distribution(logits.data(), d);
        EXPECT_EQ(ids_of(d), cs.keep) << "min_p " << cs.min_p;
        check_draw_frequencies(s, logits, 20000);
    }
}

TEST(Sampler, ChainOrderTopKThenTopPThenMinPThenTemperature) {
    // top-k 3 over {0.4, 0.3, 0.2, 0.1}: renormalised 4/9, 3/9, 2/9; top-p 0.7 keeps {a, b} (7/9 >= 0.7);
    // min-p 0.8 then drops b (0.3/0.4 = 0.75 < 0.8). Temperature 2 leaves one token, p = 1.
    std::vector<float> logits = {std::log(0.1f), std::log(0.4f), std::log(0.2f), std::log(0.3f)};
    sampler_config c = plain_config();
    c.top_k = 3;
    c.top_p = 0.7f;
    std::vector<token_prob> d;
    sampler(c, 4).distribution(logits.data(), d);
    EXPECT_EQ(ids_of(d), (std::set<int32_t>{1, 3}));
    c.min_p = 0.8f;
    c.temperature = 2.0f;
    sampler(c, 4).distribution(logits.data(), d);
    ASSERT_EQ(d.size(), 1u);
    EXPECT_EQ(d[0].id, 1);
    EXPECT_DOUBLE_EQ(d[0].p, 1.0);
    // Without min-p, temperature 2 flattens {0.4, 0.3} to sqrt ratios.
    c.min_p = 0.0f;
    sampler(c, 4).distribution(logits.data(), d);
    ASSERT_EQ(d.size(), 2u);
    const double a = std::sqrt(0.4), b = std::sqrt(0.3);
    EXPECT_NEAR(d[0].p, a / (a + b), 1e-6);
    EXPECT_NEAR(d[1].p, b / (a + b), 1e-6);
}

TEST(Sampler, PenaltiesExactly) {
    std::vector<float> logits = {0.5f, 2.0f, -1.0f, 0.0f, 3.0f, -2.0f};
    sampler_config c = plain_config();
    c.repeat_penalty = 1.5f;
    c.frequency_penalty = 0.25f;
    c.presence_penalty = 0.5f;
    c.penalty_last_n = 4;
    sampler s(c, 6);
    for (int32_t t : {4, 4, 1, 1, 2, 1}) s.accept(t);  // window (last 4): 1, 1, 2, 1 (the 4s fell out)
    EXPECT_EQ(s.penalty_window(), (std::vector<int32_t>{1, 1, 2, 1}));
    std::vector<float> out(6);
    s.penalized_logits(logits.data(), out.data());
    EXPECT_FLOAT_EQ(out[0], 0.5f);                                    // not in the window
    EXPECT_FLOAT_EQ(out[1], 2.0f / 1.5f - 3 * 0.25f - 0.5f);          // positive: divided; count 3
    EXPECT_FLOAT_EQ(out[2], -1.0f * 1.5f - 1 * 0.25f - 0.5f);         // negative: multiplied; count 1
    EXPECT_FLOAT_EQ(out[3], 0.0f);
    EXPECT_FLOAT_EQ(out[4], 3.0f);                                    // out of the window
    EXPECT_FLOAT_EQ(out[5], -2.0f);
    EXPECT_FLOAT_EQ(logits[1], 2.0f) << "input not modified";

    // Zero logit in the window: the repeat penalty leaves it 0, frequency/presence still apply.
    s.accept(3);
    s.penalized_logits(logits.data(), out.data());
    EXPECT_FLOAT_EQ(out[3], -0.25f - 0.5f);

    // -1: the whole history; 0: no penalties.
    c.penalty_last_n = -1;
    sampler all(c, 6);
    for (int32_t t : {4, 4, 1}) all.accept(t);
    all.penalized_logits(logits.data(), out.data());
    EXPECT_FLOAT_EQ(out[4], 3.0f / 1.5f - 2 * 0.25f - 0.5f);
    c.penalty_last_n = 0;
    sampler none(c, 6);
    for (int32_t t : {4, 4, 1}) none.accept(t);
    none.penalized_logits(logits.data(), out.data());
    for (size_t i = 0; i < 6; ++i) EXPECT_FLOAT_EQ(out[i], logits[i]);

    // Penalties act on greedy too: token 4 (3.0) penalised below token 1 (2.0).
    c.penalty_last_n = 64;
    c.temperature = 0.0f;
    c.frequency_penalty = 0.0f;
    c.presence_penalty = 0.0f;
    c.repeat_penalty = 2.0f;
    sampler g(c, 6);
    EXPECT_EQ(g.sample(logits.data()), 4);
    g.accept(4);
    EXPECT_EQ(g.sample(logits.data()), 1);
    g.reset();
    EXPECT_EQ(g.sample(logits.data()), 4) << "reset clears the history";
}

TEST(Sampler, NonFiniteLogits) {
    const float nan = std::nanf("");
    std::vector<float> logits = {nan, 1.0f, nan, -INFINITY, 0.5f};
    sampler_config c = plain_config();
    sampler s(c, 5);
    for (int i = 0; i < 200; ++i) {
        const int32_t t = s.sample(logits.data());
        EXPECT_TRUE(t == 1 || t == 4) << t;
    }
    c.temperature = 0.0f;
    EXPECT_EQ(sampler(c, 5).sample(logits.data()), 1);

    // +inf wins all the mass (shared equally among the +inf tokens).
    std::vector<float> inf = {1.0f, INFINITY, 2.0f, INFINITY};
    c = plain_config();
    std::vector<token_prob> d;
    sampler(c, 4).distribution(inf.data(), d);
    ASSERT_EQ(d.size(), 4u);  // no top-k/top-p ran: in id order
    for (const token_prob& tp : d) EXPECT_NEAR(tp.p, (tp.id == 1 || tp.id == 3) ? 0.5 : 0.0, 1e-12) << tp.id;
    c.temperature = 0.0f;
    EXPECT_EQ(sampler(c, 4).sample(inf.data()), 1);

    // Nothing finite: a clear error, not token 0.
    std::vector<float> bad = {nan, -INFINITY, nan};
    for (float t : {0.0f, 1.0f}) {
        c.temperature = t;
        sampler b(c, 3);
        expect_status(TFU_STATUS_INTERNAL, "no finite logit", [&] { b.sample(bad.data()); });
    }
    sampler b(c, 3);
    expect_status(TFU_STATUS_INVALID_ARGUMENT, "logits", [&] { b.sample(nullptr); });
}

TEST(Sampler, ConfigValidationNamesTheField) {
    auto bad = [](const char* field, auto&& edit) {
        sampler_config c;
        edit(c);
        expect_status(TFU_STATUS_INVALID_ARGUMENT, field, [&] { sampler s(c, 10); });
    };
    bad("temperature", [](sampler_config& c) { c.temperature = std::nanf(""); });
    bad("temperature", [](sampler_config& c) { c.temperature = INFINITY; });
    bad("top_k", [](sampler_config& c) { c.top_k = -1; });
    bad("top_p", [](sampler_config& c) { c.top_p = 1.5f; });
    bad("top_p", [](sampler_config& c) { c.top_p = -0.1f; });
    bad("top_p", [](sampler_config& c) { c.top_p = std::nanf(""); });
    bad("min_p", [](sampler_config& c) { c.min_p = 2.0f; });
    bad("repeat_penalty", [](sampler_config& c) { c.repeat_penalty = 0.0f; });
    bad("repeat_penalty", [](sampler_config& c) { c.repeat_penalty = -1.0f; });
    bad("frequency_penalty", [](sampler_config& c) { c.frequency_penalty = INFINITY; });
    bad("presence_penalty", [](sampler_config& c) { c.presence_penalty = std::nanf(""); });
    bad("penalty_last_n", [](sampler_config& c) { c.penalty_last_n = -2; });
    expect_status(TFU_STATUS_INVALID_ARGUMENT, "n_vocab", [] { sampler s(sampler_config{}, 0); });
    sampler s(sampler_config{}, 10);
    expect_status(TFU_STATUS_INVALID_ARGUMENT, "token 10", [&] { s.accept(10); });
    expect_status(TFU_STATUS_INVALID_ARGUMENT, "token -1", [&] { s.accept(-1); });
}

TEST(Sampler, TopKLargerThanVocabAndFewFiniteCandidates) {
    std::vector<float> logits = {-INFINITY, 0.0f, -INFINITY, 1.0f};
    sampler_config c = plain_config();
    c.top_k = 100;
    c.top_p = 0.5f;
    std::vector<token_prob> d;
    sampler(c, 4).distribution(logits.data(), d);
    ASSERT_EQ(d.size(), 1u);  // e/(1+e) = 0.73 >= 0.5
    EXPECT_EQ(d[0].id, 3);
}

// Greedy without penalties takes a fast argmax (sampler.cpp, greedy_argmax): it must pick what the reference
// loop over penalized_logits picks (largest, NaN as -inf, +inf as FLT_MAX, ties to the lowest id), for vocab
// sizes around its 8-wide blocks and a real one, with ties, NaN, +-inf and FLT_MAX placed at random.
TEST(Sampler, GreedyFastPathMatchesTheReferenceLoop) {
    std::mt19937_64 rng(k_seed + 77);
    sampler_config c = plain_config();
    c.temperature = 0.0f;
    for (int32_t n : {1, 7, 8, 9, 17, 1000, 128256}) {
        for (int trial = 0; trial < 20; ++trial) {
            std::vector<float> l = random_logits(n, uint32_t(rng()));
            std::uniform_int_distribution<int32_t> at(0, n - 1);
            const float specials[] = {std::nanf(""), INFINITY, -INFINITY, FLT_MAX, l[size_t(at(rng))]};
            for (int s = 0; s < trial % 6; ++s) l[size_t(at(rng))] = specials[size_t(at(rng)) % 5];
            sampler s(c, n);
            std::vector<float> work(static_cast<size_t>(n));
            s.penalized_logits(l.data(), work.data());
            int32_t want = 0;
            for (int32_t i = 1; i < n; ++i)
                if (work[size_t(i)] > work[size_t(want)]) want = i;
            if (work[size_t(want)] == -INFINITY) {
                expect_status(TFU_STATUS_INTERNAL, "no finite logit", [&] { s.sample(l.data()); });
                continue;
            }
            EXPECT_EQ(s.sample(l.data()), want) << "n " << n << " trial " << trial;
        }
    }
}

// top_k in (0, n_vocab) selects while the candidates are built (sampler.cpp, select_top_k): the distribution must
// be the reference's, id for id and in the same order (the draw walks it in order): with more than k finite
// logits the k best under (logit desc, id asc) best first, else every finite logit in id order; probabilities
// the softmax over them. Logits with many ties (a few distinct values), NaN, -inf, +inf and FLT_MAX; k from 1 to
// past the finite count; vocab sizes up to a real one; then the same with top-p and min-p after top-k.
TEST(Sampler, TopKSelectionMatchesTheReference) {
    std::mt19937_64 rng(k_seed + 91);
    for (int32_t n : {2, 9, 64, 1000, 128256}) {
        for (int trial = 0; trial < 12; ++trial) {
            std::vector<float> l = random_logits(n, uint32_t(rng()));
            std::uniform_int_distribution<int32_t> at(0, n - 1);
            if (trial % 3 == 1)
                for (float& x : l) x = std::round(x);  // ties everywhere
            const float specials[] = {std::nanf(""), INFINITY, -INFINITY, FLT_MAX};
            for (int s = 0; s < trial % 5; ++s) l[size_t(at(rng))] = specials[size_t(at(rng)) % 4];
            if (trial == 11)
                for (int32_t i = 0; i < n; i += 2) l[size_t(i)] = -INFINITY;  // half the vocabulary masked
            for (int32_t k : {1, 2, 5, 40, n / 2 + 1, n - 1}) {
                if (k < 1 || k >= n) continue;
                sampler_config c = plain_config();
                c.top_k = k;
                sampler s(c, n);
                std::vector<float> work(static_cast<size_t>(n));
                s.penalized_logits(l.data(), work.data());
                std::vector<std::pair<float, int32_t>> fin;
                for (int32_t i = 0; i < n; ++i)
                    if (work[size_t(i)] != -INFINITY) fin.push_back({work[size_t(i)], i});
                if (fin.empty()) continue;
                const bool truncated = fin.size() > size_t(k);
                if (truncated) {
                    std::sort(fin.begin(), fin.end(), [](const auto& a, const auto& b) {
                        return a.first > b.first || (a.first == b.first && a.second < b.second);
                    });
                    fin.resize(size_t(k));
                }
                double mx = -INFINITY, z = 0.0;
                for (const auto& f : fin) mx = std::max(mx, double(f.first));
                for (const auto& f : fin) z += std::exp(double(f.first) - mx);
                std::vector<token_prob> d;
                s.distribution(l.data(), d);
                ASSERT_EQ(d.size(), fin.size()) << "n " << n << " trial " << trial << " k " << k;
                for (size_t j = 0; j < d.size(); ++j) {
                    ASSERT_EQ(d[j].id, fin[j].second) << "n " << n << " trial " << trial << " k " << k << " at " << j;
                    EXPECT_NEAR(d[j].p, std::exp(double(fin[j].first) - mx) / z, 1e-12);
                }
                // top-p and min-p after a top-k that truncated keep a prefix of its best-first list.
                sampler_config c2 = c;
                c2.top_p = 0.9f;
                c2.min_p = 0.02f;
                std::vector<token_prob> d2;
                sampler(c2, n).distribution(l.data(), d2);
                ASSERT_FALSE(d2.empty());
                if (truncated) {
                    ASSERT_LE(d2.size(), d.size());
                    for (size_t j = 0; j < d2.size(); ++j) EXPECT_EQ(d2[j].id, d[j].id) << "k " << k << " at " << j;
                }
            }
        }
    }
}
