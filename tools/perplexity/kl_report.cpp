// KL divergence of a run against a base file and llama.cpp's statistics over it (see kl_report.h).
// ref: llama.cpp tools/perplexity/perplexity.cpp, kl_divergence() (the formulas; the code here is our own).
#include "kl_report.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace tfu::ppl {

void kl_accum::add(const base_token& b, const float* lp, int32_t argmax, int32_t target) {
    // KL(base || this) over the base's top-K tokens plus one "rest" outcome: sum p_b * (log p_b - log q).
    double kld = 0;
    for (size_t k = 0; k < b.top_id.size(); ++k) {
        const int32_t id = b.top_id[k];
        in_top_[size_t(id)] = 1;
        kld += std::exp(double(b.top_lp[k])) * (double(b.top_lp[k]) - double(lp[id]));
    }
    if (!std::isinf(b.rest_lp)) {
        double q_rest = 0;  // this run's mass outside the base's top-K, summed directly
        for (int32_t i = 0; i < n_vocab_; ++i)
            if (!in_top_[size_t(i)]) q_rest += std::exp(double(lp[i]));
        // rounded to float like the base's rest_lp, so that identical logits give exactly 0
        const double lq = double(float(std::log(std::max(q_rest, std::numeric_limits<double>::min()))));
        kld += std::exp(double(b.rest_lp)) * (double(b.rest_lp) - lq);
    }
    for (int32_t id : b.top_id) in_top_[size_t(id)] = 0;

    const double nll = -double(lp[target]);
    const double nll_base = -double(b.target_lp);
    nll_.add(nll);
    nll_base_.add(nll_base);
    sum_nll_nll_base_ += nll * nll_base;
    sum_kld_ += kld;
    sum_kld2_ += kld * kld;
    const double p_diff = std::exp(-nll) - std::exp(-nll_base);
    sum_p_diff_ += p_diff;
    sum_p_diff2_ += p_diff * p_diff;
    sum_p_diff4_ += p_diff * p_diff * p_diff * p_diff;
    if (argmax == b.top_id[0]) ++n_same_top_;
    kld_values_.push_back(float(kld));
    p_diff_values_.push_back(float(p_diff));
}

double kl_accum::log_ppl_cov() const {
    // covariance of the two mean nll's (llama.cpp: 0 below 10 tokens)
    const size_t n = nll_.count;
    if (n < 10) return 0.0;
    const double c = sum_nll_nll_base_ / double(n) - (nll_.sum / double(n)) * (nll_base_.sum / double(n));
    return c / double(n - 1);
}

void kl_accum::print_chunk_line(FILE* f, int chunk) const {
    const size_t n = nll_.count;
    const mean_err lp = mean_and_uncertainty(nll_.sum, nll_.sum2, n);
    const mean_err lb = mean_and_uncertainty(nll_base_.sum, nll_base_.sum2, n);
    const double ratio_err = std::sqrt(std::max(0.0, lp.err * lp.err + lb.err * lb.err - 2 * log_ppl_cov()));
    const mean_err kl = mean_and_uncertainty(sum_kld_, sum_kld2_, n);
    const mean_err mse = mean_and_uncertainty(sum_p_diff2_, sum_p_diff4_, n);
    const double rms = std::sqrt(mse.mean), rms_err = rms > 0 ? 0.5 / rms * mse.err : 0.0;
    const double top = n ? double(n_same_top_) / double(n) : 0.0;
    const double top_err = n > 1 ? std::sqrt(top * (1 - top) / double(n - 1)) : 0.0;
    std::fprintf(f, "%4d    %9.4f +/- %9.4f    %10.5f +/- %10.5f    %10.5f +/- %10.5f    %6.3f +/- %6.3f %%    %7.3f +/- %6.3f %%\n",
                 chunk, std::exp(lp.mean), std::exp(lp.mean) * lp.err, lp.mean - lb.mean, ratio_err, kl.mean, kl.err,
                 100 * rms, 100 * rms_err, 100 * top, 100 * top_err);
}

void kl_accum::print_final(FILE* f) {
    const size_t n = nll_.count;
    if (n == 0) return;
    std::sort(kld_values_.begin(), kld_values_.end());
    std::sort(p_diff_values_.begin(), p_diff_values_.end());

    const mean_err lp = mean_and_uncertainty(nll_.sum, nll_.sum2, n);
    const mean_err lb = mean_and_uncertainty(nll_base_.sum, nll_base_.sum2, n);
    const double ppl = std::exp(lp.mean), ppl_err = ppl * lp.err;
    const double ppl_b = std::exp(lb.mean), ppl_b_err = ppl_b * lb.err;
    const double cov = log_ppl_cov();
    const double ratio = lp.mean - lb.mean;
    const double ratio_err = std::sqrt(std::max(0.0, lp.err * lp.err + lb.err * lb.err - 2 * cov));
    std::fprintf(f, "====== Perplexity statistics (%zu tokens) ======\n", n);
    std::fprintf(f, "Mean PPL(Q)                   : %10.6f +/- %10.6f\n", ppl, ppl_err);
    std::fprintf(f, "Mean PPL(base)                : %10.6f +/- %10.6f\n", ppl_b, ppl_b_err);
    if (lp.err > 0 && lb.err > 0)
        std::fprintf(f, "Cor(ln(PPL(Q)), ln(PPL(base))): %6.2f%%\n", 100 * cov / (lp.err * lb.err));
    std::fprintf(f, "Mean ln(PPL(Q)/PPL(base))     : %10.6f +/- %10.6f\n", ratio, ratio_err);
    std::fprintf(f, "Mean PPL(Q)/PPL(base)         : %10.6f +/- %10.6f\n", std::exp(ratio), std::exp(ratio) * ratio_err);
    const double diff_err =
        std::sqrt(std::max(0.0, ppl_err * ppl_err + ppl_b_err * ppl_b_err - 2 * ppl * ppl_b * cov));
    std::fprintf(f, "Mean PPL(Q)-PPL(base)         : %10.6f +/- %10.6f\n\n", ppl - ppl_b, diff_err);

    const mean_err kl = mean_and_uncertainty(sum_kld_, sum_kld2_, n);
    std::fprintf(f, "====== KL divergence statistics ======\n");
    std::fprintf(f, "Mean    KLD: %10.6f +/- %10.6f\n", kl.mean, kl.err);
    std::fprintf(f, "Maximum KLD: %10.6f\n", double(kld_values_.back()));
    const double kl_fr[] = {0.999, 0.99, 0.95, 0.90};
    const char* kl_nm[] = {"99.9%", "99.0%", "95.0%", "90.0%"};
    for (int i = 0; i < 4; ++i) std::fprintf(f, "%s   KLD: %10.6f\n", kl_nm[i], percentile(kld_values_, kl_fr[i]));
    std::fprintf(f, "Median  KLD: %10.6f\n", median(kld_values_));
    const double kl_fr2[] = {0.10, 0.05, 0.01, 0.001};
    const char* kl_nm2[] = {"10.0%", " 5.0%", " 1.0%", " 0.1%"};
    for (int i = 0; i < 4; ++i) std::fprintf(f, "%s   KLD: %10.6f\n", kl_nm2[i], percentile(kld_values_, kl_fr2[i]));
    std::fprintf(f, "Minimum KLD: %10.6f\n\n", double(kld_values_.front()));

    const mean_err pd = mean_and_uncertainty(sum_p_diff_, sum_p_diff2_, n);
    std::fprintf(f, "====== Token probability statistics ======\n");
    std::fprintf(f, "Mean    dp: %6.3f +/- %5.3f %%\n", 100 * pd.mean, 100 * pd.err);
    std::fprintf(f, "Maximum dp: %6.3f%%\n", 100 * double(p_diff_values_.back()));
    const double fr[] = {0.999, 0.99, 0.95, 0.90, 0.75};
    const char* nm[] = {"99.9%", "99.0%", "95.0%", "90.0%", "75.0%"};
    for (int i = 0; i < 5; ++i) std::fprintf(f, "%s   dp: %6.3f%%\n", nm[i], 100 * percentile(p_diff_values_, fr[i]));
    std::fprintf(f, "Median  dp: %6.3f%%\n", 100 * median(p_diff_values_));
    const double fr2[] = {0.25, 0.10, 0.05, 0.01, 0.001};
    const char* nm2[] = {"25.0%", "10.0%", " 5.0%", " 1.0%", " 0.1%"};
    for (int i = 0; i < 5; ++i) std::fprintf(f, "%s   dp: %6.3f%%\n", nm2[i], 100 * percentile(p_diff_values_, fr2[i]));
    std::fprintf(f, "Minimum dp: %6.3f%%\n", 100 * double(p_diff_values_.front()));
    const mean_err mse = mean_and_uncertainty(sum_p_diff2_, sum_p_diff4_, n);
    const double rms = std::sqrt(mse.mean), rms_err = rms > 0 ? 0.5 / rms * mse.err : 0.0;
    std::fprintf(f, "RMS dp    : %6.3f +/- %5.3f %%\n", 100 * rms, 100 * rms_err);
    const double top = double(n_same_top_) / double(n);
    const double top_err = n > 1 ? std::sqrt(top * (1 - top) / double(n - 1)) : 0.0;
    std::fprintf(f, "Same top p: %6.3f +/- %5.3f %%\n", 100 * top, 100 * top_err);
}

}  // namespace tfu::ppl
