// The sampler chain: logits of one position -> one token (penalties, top-k, top-p, min-p, temperature, draw).
//
// Order as llama.cpp's common chain (common/sampling.cpp, default sampler sequence):
//   penalties -> [temperature <= 0: argmax] -> top-k -> top-p -> min-p -> temperature -> softmax -> draw.
// top-p and min-p work on the probabilities at temperature 1 (before temperature), as in llama.cpp.
//
// Non-finite logits: NaN is treated as -inf (never chosen); +inf is treated as the largest float, so tokens with
// +inf share all the probability mass. If every logit is NaN or -inf there is nothing to choose from: sample()
// throws TFU_STATUS_INTERNAL ("no finite logit"), since that means the model produced garbage; it never
// silently returns token 0.
//
// Determinism: candidates are ordered by (logit descending, id ascending), the PRNG is xoshiro256** seeded by
// splitmix64 from the seed (integer only, the same everywhere), and the uniform draw uses the top 53 bits. The
// same seed, config and logits give the same tokens on every platform (up to libm's exp() rounding).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/rng.h"

namespace tfu {

struct sampler_config {
    float temperature = 0.8f;      // <= 0: greedy (argmax, ties -> lowest id); must be finite
    int32_t top_k = 40;            // 0 (or >= n_vocab) = off; must be >= 0
    float top_p = 0.95f;           // 1 = off; in [0, 1]; 0 keeps only the most likely token
    float min_p = 0.05f;           // 0 = off; in [0, 1]; drops tokens with prob < min_p * max prob
    float repeat_penalty = 1.0f;   // 1 = off; > 0; divides positive / multiplies negative logits of recent tokens
    float frequency_penalty = 0;   // 0 = off; finite; logit -= count * this
    float presence_penalty = 0;    // 0 = off; finite; logit -= this, once, if the token appeared
    int32_t penalty_last_n = 64;   // window of recent tokens the penalties look at; 0 = none; -1 = whole history
    uint64_t seed = 0xC0FFEE;
};

// One entry of the final distribution: a token and its probability (the probabilities sum to 1).
struct token_prob {
    int32_t id;
    double p;
};

class sampler {
public:
    // Validates cfg (a bad value throws TFU_STATUS_INVALID_ARGUMENT naming the field) and n_vocab (> 0).
    sampler(const sampler_config& cfg, int32_t n_vocab);

    // Picks a token from logits (n_vocab floats, not modified), using the history for the penalties. Does not
    // add the token to the history: call accept() for it. Throws on NULL logits or if no logit is finite.
    int32_t sample(const float* logits);

    // The distribution sample() draws from: the candidates left after the chain with probabilities after
    // temperature, summing to 1, in a fixed order: best first (logit desc, id asc) once top-k or top-p ran,
    // else by id. Greedy (temperature <= 0) gives one entry with
    // p = 1. Does not touch the PRNG.
    void distribution(const float* logits, std::vector<token_prob>& out);

    // Copies logits into out (n_vocab floats) with the penalties of the current history applied, NaN -> -inf
    // and +inf -> FLT_MAX: the first stage of the chain, exposed for tests and for callers that need it.
    void penalized_logits(const float* logits, float* out);

    // Appends a token (prompt or generated) to the history; ids outside [0, n_vocab) throw INVALID_ARGUMENT.
    void accept(int32_t token);
    // Clears the history and re-seeds the PRNG with the config's seed.
    void reset();

    const sampler_config& config() const { return cfg_; }
    // Whether sample() is, for every history, the plain greedy pick of the logits (temperature <= 0 and no
    // penalty that can change a logit): then it equals ARGMAX of backend/ops.def, which a device backend can
    // compute next to the logits instead of copying them (runtime/session.cpp).
    bool is_plain_greedy() const { return cfg_.temperature <= 0.0f && (!any_penalty() || cfg_.penalty_last_n == 0); }
    int32_t n_vocab() const { return n_vocab_; }
    // The tokens the penalties look at now (the last penalty_last_n accepted tokens, oldest first).
    std::vector<int32_t> penalty_window() const;

    // What a session file keeps: the PRNG state and the penalty window. restore() replaces both (the window is
    // accepted in order, so a smaller penalty_last_n keeps its newest tokens); ids are checked like accept().
    struct state {
        uint64_t rng[4];
        std::vector<int32_t> window;
    };
    state save_state() const;
    void restore_state(const state& st);

private:
    // Whether any of repeat/frequency/presence penalty changes a logit.
    bool any_penalty() const {
        return cfg_.repeat_penalty != 1.0f || cfg_.frequency_penalty != 0.0f || cfg_.presence_penalty != 0.0f;
    }
    struct candidate {
        float logit;
        int32_t id;
    };
    void build_candidates(const float* logits);  // fills cand_ (sorted prefix of size n_sorted_), after penalties
    void sort_prefix(size_t n);                  // makes cand_[0, n) the top n in (logit desc, id asc) order
    // build_candidates with top_k = k (0 < k < n_vocab) in one pass over src (sanitized on the fly)
    void select_top_k(const float* src, size_t k);
    void apply_top_k();
    void apply_top_p();
    void apply_min_p();

    sampler_config cfg_;
    int32_t n_vocab_;
    rng rng_;
    std::vector<int32_t> history_;  // ring buffer of the last penalty_last_n tokens (all of them when -1)
    size_t history_head_ = 0;       // next slot to write once the ring is full (penalty_last_n > 0)
    std::vector<float> work_;       // (n_vocab) logits after penalties
    std::vector<int32_t> counts_;   // (n_vocab) token counts in the window, zero between calls
    std::vector<candidate> cand_;   // candidates still in play; [0, n_sorted_) is sorted
    size_t n_sorted_ = 0;
    std::vector<token_prob> dist_;
};

}  // namespace tfu
