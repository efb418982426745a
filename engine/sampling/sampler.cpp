// The sampler chain (see sampler.h for the order and the rules on non-finite logits).
#include "sampling/sampler.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <string>

#include "core/error.h"
#include "core/greedy_argmax.h"

namespace tfu {

// ---- sampler ----------------------------------------------------------------------------------------------------

namespace {

void check_field(bool ok, const char* field, const std::string& rule, double value) {
    if (!ok)
        fail(TFU_STATUS_INVALID_ARGUMENT,
             std::string("sampler: ") + field + " " + rule + " (got " + std::to_string(value) + ")");
}

// NaN -> -inf (never chosen); +inf -> FLT_MAX (so that differences of logits stay finite).
inline float sanitize(float x) { return greedy_sanitize(x); }

}  // namespace

sampler::sampler(const sampler_config& cfg, int32_t n_vocab) : cfg_(cfg), n_vocab_(n_vocab), rng_(cfg.seed) {
    if (n_vocab <= 0) fail(TFU_STATUS_INVALID_ARGUMENT, "sampler: n_vocab must be > 0 (got " + std::to_string(n_vocab) + ")");
    check_field(std::isfinite(cfg.temperature), "temperature", "must be finite", cfg.temperature);
    check_field(cfg.top_k >= 0, "top_k", "must be >= 0 (0 = off)", cfg.top_k);
    check_field(cfg.top_p >= 0.0f && cfg.top_p <= 1.0f, "top_p", "must be in [0, 1] (1 = off)", cfg.top_p);
    check_field(cfg.min_p >= 0.0f && cfg.min_p <= 1.0f, "min_p", "must be in [0, 1] (0 = off)", cfg.min_p);
    check_field(std::isfinite(cfg.repeat_penalty) && cfg.repeat_penalty > 0.0f, "repeat_penalty",
                "must be finite and > 0 (1 = off)", cfg.repeat_penalty);
    check_field(std::isfinite(cfg.frequency_penalty), "frequency_penalty", "must be finite", cfg.frequency_penalty);
    check_field(std::isfinite(cfg.presence_penalty), "presence_penalty", "must be finite", cfg.presence_penalty);
    check_field(cfg.penalty_last_n >= -1, "penalty_last_n", "must be >= -1 (-1 = whole history)",
                cfg.penalty_last_n);
    work_.resize(static_cast<size_t>(n_vocab));
    counts_.assign(static_cast<size_t>(n_vocab), 0);
    cand_.reserve(static_cast<size_t>(n_vocab));
    if (cfg.penalty_last_n > 0) history_.reserve(static_cast<size_t>(cfg.penalty_last_n));
}

void sampler::accept(int32_t token) {
    if (token < 0 || token >= n_vocab_)
        fail(TFU_STATUS_INVALID_ARGUMENT, "sampler: accept(): token " + std::to_string(token) +
                                              " is outside the vocabulary [0, " + std::to_string(n_vocab_) + ")");
    if (cfg_.penalty_last_n == 0) return;
    if (cfg_.penalty_last_n < 0 || history_.size() < static_cast<size_t>(cfg_.penalty_last_n)) {
        history_.push_back(token);
        return;
    }
    history_[history_head_] = token;  // ring full: overwrite the oldest
    history_head_ = (history_head_ + 1) % history_.size();
}

void sampler::reset() {
    history_.clear();
    history_head_ = 0;
    rng_.seed_with(cfg_.seed);
}

std::vector<int32_t> sampler::penalty_window() const {
    std::vector<int32_t> out;
    out.reserve(history_.size());
    for (size_t i = 0; i < history_.size(); ++i) out.push_back(history_[(history_head_ + i) % history_.size()]);
    return out;
}

void sampler::penalized_logits(const float* logits, float* out) {
    if (logits == nullptr) fail(TFU_STATUS_INVALID_ARGUMENT, "sampler: logits is NULL");
    for (int32_t i = 0; i < n_vocab_; ++i) out[i] = sanitize(logits[i]);
    if (!any_penalty() || history_.empty()) return;

    // Count each distinct token of the window once (O(window)), then penalise it once, as llama.cpp does.
    std::vector<int32_t> distinct;
    for (int32_t t : history_)
        if (counts_[static_cast<size_t>(t)]++ == 0) distinct.push_back(t);
    for (int32_t t : distinct) {
        int32_t& count = counts_[static_cast<size_t>(t)];
        float x = out[t];
        if (x > 0.0f)
            x /= cfg_.repeat_penalty;
        else
            x *= cfg_.repeat_penalty;
        x -= static_cast<float>(count) * cfg_.frequency_penalty + cfg_.presence_penalty;
        out[t] = sanitize(x);  // FLT_MAX plus a negative penalty can overflow to +inf
        count = 0;
    }
}

// Strict total order: larger logit first, then lower id. It makes every selection below deterministic.
static inline bool better(float la, int32_t ia, float lb, int32_t ib) { return la > lb || (la == lb && ia < ib); }

void sampler::build_candidates(const float* logits) {
    if (logits == nullptr) fail(TFU_STATUS_INVALID_ARGUMENT, "sampler: logits is NULL");
    cand_.clear();
    n_sorted_ = 0;
    const size_t k = cfg_.top_k > 0 ? static_cast<size_t>(cfg_.top_k) : 0;
    const bool top_k = k > 0 && k < static_cast<size_t>(n_vocab_);
    if (top_k && !(any_penalty() && !history_.empty())) {
        select_top_k(logits, k);  // straight from the logits: no copy of the vocabulary
    } else {
        penalized_logits(logits, work_.data());
        if (top_k) {
            select_top_k(work_.data(), k);
        } else {
            for (int32_t i = 0; i < n_vocab_; ++i)
                if (work_[i] != -INFINITY) cand_.push_back({work_[i], i});  // -inf (and NaN) can never be drawn
        }
    }
    if (cand_.empty())
        fail(TFU_STATUS_INTERNAL, "sampler: no finite logit among " + std::to_string(n_vocab_) +
                                      " (all are NaN or -inf): the model produced no usable output");
}

// top-k while the candidates are built, in one pass over src (the logits, or work_ after penalties): a heap of
// the k best so far under `better`, its worst on top. Copying all n_vocab finite logits into cand_ and running
// nth_element over them measured ~2.3 ms per token for a 128K vocabulary (the default chain, top_k 40), more
// than twice a GPU decode step; here the pass skips every logit not above the heap's worst, so after the first
// few hundred logits it is a load, a sanitize and a compare. The result is what build_candidates + apply_top_k
// gave: with more than k finite logits, the top k sorted best first (n_sorted_ = k); with k or fewer, all finite
// ones in id order (apply_top_k then leaves them).
void sampler::select_top_k(const float* src, size_t k) {
    auto worse_on_top = [](const candidate& a, const candidate& b) { return better(a.logit, a.id, b.logit, b.id); };
    // Logits that count (not NaN, not -inf; +inf counts, as FLT_MAX): a separate pass the compiler vectorises.
    size_t n_finite = 0;
    for (int32_t i = 0; i < n_vocab_; ++i) n_finite += src[i] > -INFINITY ? 1 : 0;
    float worst = -INFINITY;  // the heap's top once it holds k
    auto offer = [&](int32_t i) {
        const float x = sanitize(src[i]);  // src may be the raw logits (no penalties): NaN -> -inf, +inf -> FLT_MAX
        if (x == -INFINITY) return;
        if (cand_.size() < k) {
            cand_.push_back({x, i});
            std::push_heap(cand_.begin(), cand_.end(), worse_on_top);
            if (cand_.size() == k) worst = cand_.front().logit;
            return;
        }
        // Ids grow: a later equal logit is never better than one kept, so only a strictly larger one enters.
        if (x <= worst) return;
        std::pop_heap(cand_.begin(), cand_.end(), worse_on_top);
        cand_.back() = {x, i};
        std::push_heap(cand_.begin(), cand_.end(), worse_on_top);
        worst = cand_.front().logit;
    };
    int32_t i = 0;
    for (; i < n_vocab_ && cand_.size() < k; ++i) offer(i);
    // Heap full: blocks of 8 where no raw logit is above the worst kept are skipped whole (NaN compares false and
    // is never kept; +inf compares true and is offered), which is every block once the heap holds the top few.
    constexpr int32_t B = 8;
    for (; i + B <= n_vocab_; i += B) {
        bool any = false;
        for (int32_t j = 0; j < B; ++j) any |= src[i + j] > worst;
        if (!any) continue;
        for (int32_t j = 0; j < B; ++j) offer(i + j);
    }
    for (; i < n_vocab_; ++i) offer(i);
    if (n_finite > k) {
        std::sort_heap(cand_.begin(), cand_.end(), worse_on_top);  // best first
        n_sorted_ = cand_.size();
    } else {
        std::sort(cand_.begin(), cand_.end(), [](const candidate& a, const candidate& b) { return a.id < b.id; });
    }
}

void sampler::sort_prefix(size_t n) {
    n = std::min(n, cand_.size());
    if (n <= n_sorted_) return;
    auto cmp = [](const candidate& a, const candidate& b) { return better(a.logit, a.id, b.logit, b.id); };
    auto first = cand_.begin() + static_cast<std::ptrdiff_t>(n_sorted_);
    auto mid = cand_.begin() + static_cast<std::ptrdiff_t>(n);
    if (mid != cand_.end()) std::nth_element(first, mid, cand_.end(), cmp);  // the tail's best land in [first, mid)
    std::sort(first, mid, cmp);
    n_sorted_ = n;
}

void sampler::apply_top_k() {
    if (cfg_.top_k <= 0 || static_cast<size_t>(cfg_.top_k) >= cand_.size()) return;
    sort_prefix(static_cast<size_t>(cfg_.top_k));  // O(n + k log k), no full sort
    cand_.resize(static_cast<size_t>(cfg_.top_k));
}

void sampler::apply_top_p() {
    if (cfg_.top_p >= 1.0f || cand_.size() <= 1) return;
    // Probabilities at temperature 1 over the candidates left: p_i = exp(l_i - max) / z.
    float max_logit = -INFINITY;
    for (const candidate& c : cand_) max_logit = std::max(max_logit, c.logit);
    double z = 0.0;
    for (const candidate& c : cand_) z += std::exp(static_cast<double>(c.logit) - max_logit);
    const double target = static_cast<double>(cfg_.top_p) * z;
    // Walk the candidates best first, sorting only as far as needed (chunks that double in size): the smallest
    // prefix whose mass reaches top_p is kept, at least one token.
    double cum = 0.0;
    size_t i = 0;
    while (i < cand_.size()) {
        if (i == n_sorted_) sort_prefix(std::max<size_t>(64, 2 * n_sorted_));
        cum += std::exp(static_cast<double>(cand_[i].logit) - max_logit);
        ++i;
        if (cum >= target) break;
    }
    cand_.resize(i);
    n_sorted_ = std::min(n_sorted_, i);
}

void sampler::apply_min_p() {
    if (cfg_.min_p <= 0.0f || cand_.size() <= 1) return;
    // p_i < min_p * p_max  <=>  exp(l_i - l_max) < min_p (the normalisation cancels).
    float max_logit = -INFINITY;
    for (const candidate& c : cand_) max_logit = std::max(max_logit, c.logit);
    const double min_p = cfg_.min_p;
    auto drop = [&](const candidate& c) { return std::exp(static_cast<double>(c.logit) - max_logit) < min_p; };
    // Stable: the sorted prefix stays sorted and in front (survivors keep their relative order).
    size_t kept_sorted = 0;
    for (size_t i = 0; i < n_sorted_; ++i)
        if (!drop(cand_[i])) ++kept_sorted;
    cand_.erase(std::remove_if(cand_.begin(), cand_.end(), drop), cand_.end());
    n_sorted_ = kept_sorted;  // a dropped sorted entry means everything after it in the prefix is dropped too
}

void sampler::distribution(const float* logits, std::vector<token_prob>& out) {
    out.clear();
    if (cfg_.temperature <= 0.0f) {
        if (logits != nullptr && (!any_penalty() || history_.empty())) {
            const int32_t best = int32_t(greedy_argmax(logits, n_vocab_));
            if (best < 0)
                fail(TFU_STATUS_INTERNAL, "sampler: no finite logit among " + std::to_string(n_vocab_) +
                                              " (all are NaN or -inf): the model produced no usable output");
            out.push_back({best, 1.0});
            return;
        }
        penalized_logits(logits, work_.data());
        int32_t best = 0;
        for (int32_t i = 1; i < n_vocab_; ++i)
            if (work_[i] > work_[best]) best = i;  // strict: ties keep the lowest id
        if (work_[best] == -INFINITY)
            fail(TFU_STATUS_INTERNAL, "sampler: no finite logit among " + std::to_string(n_vocab_) +
                                          " (all are NaN or -inf): the model produced no usable output");
        out.push_back({best, 1.0});
        return;
    }
    build_candidates(logits);
    apply_top_k();
    apply_top_p();
    apply_min_p();
    // Temperature then softmax, in double: w_i = exp((l_i - l_max) / T).
    float max_logit = -INFINITY;
    for (const candidate& c : cand_) max_logit = std::max(max_logit, c.logit);
    const double inv_t = 1.0 / static_cast<double>(cfg_.temperature);
    double z = 0.0;
    out.reserve(cand_.size());
    for (const candidate& c : cand_) {
        const double w = std::exp((static_cast<double>(c.logit) - max_logit) * inv_t);
        out.push_back({c.id, w});
        z += w;
    }
    for (token_prob& tp : out) tp.p /= z;  // z >= 1: the max candidate has weight 1
}

int32_t sampler::sample(const float* logits) {
    distribution(logits, dist_);
    if (dist_.size() == 1) return dist_[0].id;
    const double u = rng_.uniform();  // [0, 1)
    double cum = 0.0;
    for (const token_prob& tp : dist_) {
        cum += tp.p;
        if (u < cum) return tp.id;
    }
    return dist_.back().id;  // rounding left u just above the total
}

sampler::state sampler::save_state() const {
    state st;
    rng_.get_state(st.rng);
    st.window = penalty_window();
    return st;
}

void sampler::restore_state(const state& st) {
    for (int32_t t : st.window)
        if (t < 0 || t >= n_vocab_)
            fail(TFU_STATUS_INVALID_ARGUMENT, "sampler state: token " + std::to_string(t) + " is outside the vocabulary");
    history_.clear();
    history_head_ = 0;
    for (int32_t t : st.window) accept(t);
    rng_.set_state(st.rng);
}

}  // namespace tfu
