// KL divergence of a run against a base file, with the statistics llama.cpp's perplexity tool reports
// (mean KLD +/- error, percentiles, PPL ratio, delta-p, same top token).
#pragma once

#include <cstdint>
#include <cstdio>
#include <vector>

#include "base_file.h"
#include "scoring.h"

namespace tfu::ppl {

class kl_accum {
public:
    explicit kl_accum(int32_t n_vocab) : n_vocab_(n_vocab), in_top_(size_t(n_vocab), 0) {}
    // One scored token: the base record, this run's log-probs (n_vocab floats from log_probs()), its argmax and
    // the scored (next) token.
    void add(const base_token& b, const float* lp, int32_t argmax, int32_t target);
    // One progress line after a chunk: chunk, PPL, ln(PPL(Q)/PPL(base)), KLD, RMS dp, same top.
    void print_chunk_line(FILE* f, int chunk) const;
    // The final statistics blocks.
    void print_final(FILE* f);
    size_t count() const { return nll_.count; }

private:
    double log_ppl_cov() const;
    int32_t n_vocab_;
    std::vector<uint8_t> in_top_;
    nll_accum nll_, nll_base_;
    double sum_nll_nll_base_ = 0;
    double sum_kld_ = 0, sum_kld2_ = 0;
    double sum_p_diff_ = 0, sum_p_diff2_ = 0, sum_p_diff4_ = 0;
    size_t n_same_top_ = 0;
    std::vector<float> kld_values_, p_diff_values_;
};

}  // namespace tfu::ppl
