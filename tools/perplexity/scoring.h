// Per-token scoring for tfusion-perplexity: log-softmax of one logits row, the running negative log-likelihood
// and llama.cpp's mean +/- uncertainty formula.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace tfu::ppl {

// The normaliser and the argmax of one logits row (n_vocab floats): log p(i) = logits[i] - lse.
struct row_stats {
    double lse = 0;      // log(sum_i exp(logits[i])), computed as max + log(sum exp(logits[i] - max)) in double
    int32_t argmax = 0;  // the first index of the largest logit (llama.cpp's tie rule)
};
row_stats row_summary(const float* logits, int32_t n_vocab);

// log p(i) of every token as float: the same rounding is used when a base file is written and when a run is
// compared against it, so a run against its own base file gives KL 0 exactly. out: n_vocab floats.
void log_probs(const float* logits, int32_t n_vocab, const row_stats& rs, float* out);

// Mean and its standard error from sum, sum of squares and count, as llama.cpp's perplexity tool reports them:
// var = sum2/count - mean^2; error = sqrt(var / (count - 1)) where var > 0 and count > 10, else 0.
struct mean_err {
    double mean = 0;
    double err = 0;
};
mean_err mean_and_uncertainty(double sum, double sum2, size_t count);

// Running negative log-likelihood of the scored tokens. PPL = exp(mean nll); its error is PPL * err(mean nll)
// (first-order propagation, as llama.cpp).
struct nll_accum {
    double sum = 0;
    double sum2 = 0;
    size_t count = 0;
    void add(double nll) {
        sum += nll;
        sum2 += nll * nll;
        ++count;
    }
    double ppl() const;
    double ppl_err() const;
};

// The value at `fraction` of sorted values, linearly interpolated between neighbours (llama.cpp's percentile).
double percentile(const std::vector<float>& sorted, double fraction);
// The median of sorted values (mean of the middle two for an even count).
double median(const std::vector<float>& sorted);

}  // namespace tfu::ppl
