// The session's cache policies when it is full (tfu_kv_policy): which tokens leave, and the bookkeeping that
// follows them (tokens, origins, H2O scores). The cache operations are kv_block_table::drop_blocks (whole blocks)
// and kv_block_table::compact (any tokens, with mean-pooled groups); both re-rotate the keys that move.
#include <algorithm>
#include <numeric>

#include "core/error.h"
#include "runtime/session.h"

namespace tfu {

void session::make_room(int32_t n) {
    const int32_t over = table_->n_tokens() + n - capacity_;
    if (over <= 0) return;
    if (policy_ == TFU_KV_POLICY_SLIDING_WINDOW) {
        drop_window_blocks(over);
        return;
    }
    const int32_t want = std::max(over, evict_quota());
    const int32_t n_tok = table_->n_tokens();
    const int32_t lo = std::min(n_sink_, n_tok), hi = std::max(lo, n_tok - n_recent_);  // [lo, hi) may go
    std::vector<std::pair<int32_t, int32_t>> groups;
    for (int32_t p = 0; p < lo; ++p) groups.push_back({p, p + 1});
    int32_t freed = 0;
    if (policy_ == TFU_KV_POLICY_H2O) {
        // Drop the `want` lowest-scored tokens of [lo, hi) (ties: the older first).
        std::vector<int32_t> cand(size_t(hi - lo));
        std::iota(cand.begin(), cand.end(), lo);
        const int32_t k = std::min(want, hi - lo);
        std::partial_sort(cand.begin(), cand.begin() + k, cand.end(), [&](int32_t a, int32_t b) {
            return scores_[size_t(a)] != scores_[size_t(b)] ? scores_[size_t(a)] < scores_[size_t(b)] : a < b;
        });
        std::vector<bool> gone(size_t(n_tok), false);
        for (int32_t i = 0; i < k; ++i) gone[size_t(cand[size_t(i)])] = true;
        for (int32_t p = lo; p < hi; ++p)
            if (!gone[size_t(p)]) groups.push_back({p, p + 1});
        freed = k;
    } else {  // chunk summary: pool chunks of chunk_ slots from the oldest, until enough is freed
        int32_t p = lo;
        while (freed < want && p + chunk_ <= hi) {
            groups.push_back({p, p + chunk_});
            freed += chunk_ - 1;
            p += chunk_;
        }
        for (; p < hi; ++p) groups.push_back({p, p + 1});
    }
    if (freed < over)
        fail(TFU_STATUS_CONTEXT_FULL, "the cache policy can free only " + std::to_string(freed) + " of the " +
                                          std::to_string(over) + " positions needed (sinks and recent tokens stay)");
    for (int32_t p = hi; p < n_tok; ++p) groups.push_back({p, p + 1});
    compact_cache(groups);
}

void session::drop_window_blocks(int32_t over) {
    const int32_t B = table_->pool().params().block_tokens;
    const int32_t need = (over + B - 1) / B;
    const int32_t avail = table_->n_final_blocks() - n_sink_blocks_;
    const int32_t drop = std::min(std::max(need, evict_quota() / B), avail);
    if (drop < need)
        fail(TFU_STATUS_CONTEXT_FULL, "sliding window: only " + std::to_string(std::max(0, avail)) +
                                          " blocks can be dropped but " + std::to_string(need) + " are needed");
    // Keys after the dropped blocks move down by drop * B positions: rotate them back that far, with the scalar
    // reference kernel on the host (the rows are decoded to f32 on the host anyway).
    std::unique_ptr<backend> host = make_cpu_ref_backend();
    table_->drop_blocks(n_sink_blocks_, drop, [&](float* rows, const int32_t* deltas, int32_t n_rows) {
        dec_.rope_shift(*host, rows, deltas, n_rows);
    });
    const long first = long(n_sink_blocks_) * B, count = long(drop) * B;
    tokens_.erase(tokens_.begin() + first, tokens_.begin() + first + count);
    origin_.erase(origin_.begin() + first, origin_.begin() + first + count);
    ++n_evictions_;
    n_evicted_tokens_ += uint64_t(count);
    evicted_ = true;
}

void session::compact_cache(const std::vector<std::pair<int32_t, int32_t>>& groups) {
    std::unique_ptr<backend> host = make_cpu_ref_backend();
    table_->compact(groups, [&](float* rows, const int32_t* deltas, int32_t n_rows) {
        dec_.rope_shift(*host, rows, deltas, n_rows);
    });
    // A slot keeps the token (and origin) of its group's first token; an H2O score is the group's sum.
    std::vector<int32_t> tokens;
    std::vector<int64_t> origin;
    std::vector<double> scores;
    for (const auto& [a, e] : groups) {
        tokens.push_back(tokens_[size_t(a)]);
        origin.push_back(origin_[size_t(a)]);
        if (!scores_.empty()) scores.push_back(std::accumulate(scores_.begin() + a, scores_.begin() + e, 0.0));
    }
    const uint64_t n_before = tokens_.size();
    tokens_ = std::move(tokens);
    origin_ = std::move(origin);
    if (!scores_.empty()) scores_ = std::move(scores);
    ++n_evictions_;
    n_evicted_tokens_ += n_before - tokens_.size();
    evicted_ = true;
}

}  // namespace tfu
