// tfu::session: one conversation on a model: its tokens, KV cache, activations, sampler and cancel flag.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kv/block_table.h"
#include "kv/kv_cache.h"
#include "model/decoder.h"
#include "runtime/model.h"
#include "runtime/paged_kv.h"
#include "sampling/sampler.h"

namespace tfu {

class session {
public:
    // The KV cache is the paged one in the formats p.kv_type_k / kv_type_v, unless `contiguous` names a dtype
    // (F32, F16, BF16): then a contiguous cache of that dtype (tests: exact f32 comparisons, paged vs contiguous).
    // On a device backend: the contiguous cache for f16/f16 and bf16/bf16, else the paged one in device memory
    // (session.cpp, device_cache).
    session(model& m, const tfu_session_params& p, std::optional<dtype> contiguous = std::nullopt);
    ~session();

    void add_text(std::string_view text, bool add_special);
    void add_tokens(const int32_t* tokens, size_t n);
    // Prefills the pending tokens in batches of n_batch; cancellable between layers.
    void eval();
    void generate(const tfu_generate_params& p, tfu_generate_result* result);
    void reset();
    int32_t sample();
    // Last evaluated position; throws if none. After a greedy device step (see device_argmax_) this downloads
    // them first.
    const std::vector<float>& logits();
    void stats(tfu_session_stats* out) const;
    // Whether the last pass took the greedy device path and its logits are still only in device memory (tests).
    bool logits_on_device() const { return logits_on_device_; }
    const std::vector<int32_t>& tokens() const { return tokens_; }  // in the cache, position order
    // For each cache position, the index in the session's whole input (0 = its first token) of the token there
    // (of the first token of a chunk summary): with an eviction policy, what survived.
    const std::vector<int64_t>& origins() const { return origin_; }
    // H2O: accumulated attention probability per cache position (empty under other policies).
    const std::vector<double>& attention_scores() const { return scores_; }

    // Continuous batching (runtime/session_batch.cpp): one decode step of ss[0..n) (distinct sessions of one
    // model, each held by the caller through a session_use) in one forward pass of the model's batch decoder:
    // appends tokens[i] to ss[i] (tokens == nullptr: each session's one pending token) and evaluates it. The
    // rules and what an error leaves are tfu_session_decode_batch's (tfusion.h).
    static void decode_batch(session* const* ss, const int32_t* tokens, size_t n);

    // Session files (runtime/session_file.cpp): save() writes the tokens, pending input, KV cache (bit for bit,
    // in its formats), sampler state, last logits and counters; load() replaces this session's state with a
    // file's after validating all of it (on any error the session is unchanged). See the C header.
    void save(const std::string& path);
    void load(const std::string& path);

    // Evaluates tokens[0..n) after any pending input (appending them) and writes the logits of every position to
    // out: (n_vocab, n) row-major. For perplexity and tests. Ids are checked; CONTEXT_FULL if they do not fit.
    void eval_logits(const int32_t* tokens, size_t n, float* out);
    std::vector<float> eval_all_logits(const std::vector<int32_t>& tokens);

    // KV offload (engine::reserve_kv): offload() moves the cache to host memory and gives its bytes back to the
    // budget (the caller holds the busy flag); ensure_resident() brings it back (session_use does, at the start
    // of every call; OUT_OF_MEMORY keeps it in host memory, nothing lost). can_offload(): resident and paged.
    void offload();
    void ensure_resident();
    bool can_offload() const { return table_ && !offloaded_.load(); }
    // Lock-free readings for the engine statistics (any thread).
    bool offloaded() const { return offloaded_.load(); }
    uint64_t host_bytes() const { return host_bytes_.load(); }

    model& mdl;
    const uint64_t seq;              // creation order (FIFO offload)
    std::atomic<uint64_t> n_uses{0}; // calls so far (LFU offload)
    std::atomic<uint64_t> last_use_tick{0};  // engine::next_use_tick() of the last call (LRU offload)
    std::atomic<bool> cancel_flag{false};  // set by tfu_session_cancel, also from signal handlers
    static_assert(std::atomic<bool>::is_always_lock_free, "tfu_session_cancel must be async-signal-safe");
    std::atomic<bool> busy{false};
    std::atomic<uint64_t> last_used_unix_ms{0};  // set by session_use

private:
    session(model& m, const tfu_session_params& p, std::optional<dtype> contiguous, int);  // after device_cache
    void check_room(size_t n_new) const;
    // The eviction policies (runtime/session_evict.cpp): make room for n more tokens in a full cache.
    void make_room(int32_t n);
    // What one eviction frees at least, and so the largest prefill batch under a policy: a quarter of the cache
    // (evictions rewrite part of the cache, so they should be rare).
    int32_t evict_quota() const { return std::max(1, capacity_ / 4); }
    void drop_window_blocks(int32_t n);                                   // sliding window
    void compact_cache(const std::vector<std::pair<int32_t, int32_t>>& groups);  // H2O, chunk summary
    // Returns true when the pass took the greedy device path (token_out != nullptr: decoder::forward's argmax):
    // then out was not written and *token_out holds the greedy pick of the last position.
    bool forward_batch(const int32_t* tokens, int32_t n, bool all_logits, float* out, int32_t* token_out = nullptr);
    // The token the sampler picks from the last logits: the device's ARGMAX when the last pass computed it, else
    // smp_.sample(logits_).
    int32_t pick_token();
    // Brings logits kept in device memory to logits_ (no-op when they are already there).
    void fetch_logits();
    // The logits of the last pass are now in logits_ (host): forget the device's.
    void logits_on_host() {
        logits_on_device_ = false;
        device_token_valid_ = false;
    }
    void throw_if_cancelled();
    // Makes paged_ for table_ (block-op mode when block_ops_) and points target_ at it.
    void attach_paged();
    // The device lock when the cache's blocks are device memory (their bytes move through the backend), else none.
    std::unique_lock<std::mutex> lock_for_cache();

    int32_t n_ctx_;
    int32_t n_batch_;
    int32_t capacity_;        // tokens the cache may hold (n_ctx_, or fewer under kv_cap_bytes)
    tfu_kv_policy policy_;
    int32_t n_sink_blocks_;   // sliding window: blocks kept at the start
    int32_t n_sink_;          // H2O, chunk summary: tokens kept at the start
    int32_t n_recent_;        // H2O, chunk summary: most recent tokens always kept
    int32_t chunk_;           // chunk summary: tokens per summary slot
    kv_reservation kv_budget_;  // before the caches: the budget is checked before anything is allocated
    std::unique_ptr<kv_cache> contiguous_;
    std::vector<kv_layer> kv_views_;
    std::unique_ptr<kv_block_table> table_;
    std::unique_ptr<paged_kv> paged_;
    backend* block_ops_ = nullptr;  // where the block ops run (a device's paged cache), or null (runtime/paged_kv.h)
    kv_target target_;
    decoder dec_;
    sampler smp_;
    std::vector<int32_t> tokens_;   // in the KV cache, positions 0 .. size-1
    std::vector<int32_t> pending_;  // added, not evaluated yet
    std::vector<float> logits_;
    bool has_logits_ = false;
    // Greedy decoding on a device backend (docs/sampling.md): when the sampler is plain greedy
    // (sampler::is_plain_greedy) and TFU_DEVICE_ARGMAX is not 0, each pass asks the decoder for the ARGMAX of the
    // last position's logits; a pass that did it leaves the logits in device memory (logits_on_device_, until
    // fetch_logits() or the next pass) and the picked token in device_token_ (-1: no finite logit).
    bool device_argmax_ = false;
    bool logits_on_device_ = false;
    bool device_token_valid_ = false;
    int32_t device_token_ = -1;
    uint64_t device_logits_version_ = 0;
    uint64_t total_prompt_ = 0, total_generated_ = 0, n_prefix_reused_ = 0;
    uint64_t n_evictions_ = 0, n_evicted_tokens_ = 0;
    bool evicted_ = false;  // the cache no longer equals a prefill of tokens_: publish no prefix blocks
    std::vector<int64_t> origin_;  // per cache position: index of its token in the whole input (origins())
    int64_t n_seen_ = 0;           // tokens evaluated since creation or reset
    std::vector<double> scores_;   // H2O: accumulated attention per cache position
    // Offloaded cache: the table's image (kv_block_table::write_image) while it is in host memory.
    std::atomic<bool> offloaded_{false};
    std::vector<uint8_t> host_image_;
    std::atomic<uint64_t> host_bytes_{0};  // host_image_.size(), readable from any thread
    int32_t host_tokens_ = 0, host_final_blocks_ = 0;
    uint64_t n_offloads_ = 0, n_prefetches_ = 0;
    double total_prefill_ms_ = 0, total_decode_ms_ = 0;
};

// RAII guard for "one thread at a time per session": throws TFU_STATUS_BUSY when already in use.
class session_use {
public:
    explicit session_use(session& s);
    ~session_use();
    session_use(const session_use&) = delete;
    session_use& operator=(const session_use&) = delete;

private:
    session& s_;
};

}  // namespace tfu
