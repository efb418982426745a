// Per-token scoring for tfusion-perplexity: log-softmax, nll accumulation, llama.cpp's uncertainty formulas.
#include "scoring.h"

#include <algorithm>
#include <cmath>

namespace tfu::ppl {

row_stats row_summary(const float* logits, int32_t n_vocab) {
    row_stats rs;
    float mx = logits[0];
    for (int32_t i = 1; i < n_vocab; ++i)
        if (logits[i] > mx) {
            mx = logits[i];
            rs.argmax = i;
        }
    double s = 0;
    for (int32_t i = 0; i < n_vocab; ++i) s += std::exp(double(logits[i]) - double(mx));
    rs.lse = double(mx) + std::log(s);
    return rs;
}

void log_probs(const float* logits, int32_t n_vocab, const row_stats& rs, float* out) {
    for (int32_t i = 0; i < n_vocab; ++i) out[i] = float(double(logits[i]) - rs.lse);
}

mean_err mean_and_uncertainty(double sum, double sum2, size_t count) {
    mean_err r;
    if (count < 1) return r;
    r.mean = sum / double(count);
    const double var = sum2 / double(count) - r.mean * r.mean;
    r.err = (var > 0 && count > 10) ? std::sqrt(var / double(count - 1)) : 0.0;
    return r;
}

double nll_accum::ppl() const { return count ? std::exp(sum / double(count)) : 0.0; }

double nll_accum::ppl_err() const {
    // llama.cpp's perplexity(): sqrt((sum2/n - mean^2) / (n - 1)) * PPL, without the count > 10 rule
    if (count < 2) return 0.0;
    const double m = sum / double(count);
    const double var = sum2 / double(count) - m * m;
    return var > 0 ? std::sqrt(var / double(count - 1)) * ppl() : 0.0;
}

double percentile(const std::vector<float>& sorted, double fraction) {
    if (sorted.empty()) return 0.0;
    if (fraction <= 0) return sorted.front();
    if (fraction >= 1) return sorted.back();
    double p = fraction * double(sorted.size() - 1);
    const size_t ip = size_t(p);
    p -= double(ip);
    return (1 - p) * sorted[ip] + p * sorted[std::min(ip + 1, sorted.size() - 1)];
}

double median(const std::vector<float>& sorted) {
    if (sorted.empty()) return 0.0;
    const size_t n = sorted.size();
    return n % 2 == 0 ? 0.5 * (double(sorted[n / 2]) + double(sorted[n / 2 - 1])) : double(sorted[n / 2]);
}

}  // namespace tfu::ppl
