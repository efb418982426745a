// Session state: adding input, prefill in batches, logits, sampling, reset and statistics.
#include "runtime/session.h"

#include <chrono>
#include <cstdlib>
#include <cstring>

#include "core/enum_value.h"
#include "core/error.h"
#include "core/utf8.h"

namespace tfu {
namespace {

sampler_config to_config(const tfu_sampler_params& p) {
    sampler_config c;
    c.temperature = p.temperature;
    c.top_k = p.top_k;
    c.top_p = p.top_p;
    c.min_p = p.min_p;
    c.repeat_penalty = p.repeat_penalty;
    c.frequency_penalty = p.frequency_penalty;
    c.presence_penalty = p.presence_penalty;
    c.penalty_last_n = p.penalty_last_n;
    c.seed = p.seed;
    return c;
}

int32_t checked_ctx(const model& m, const tfu_session_params& p) {
    if (p.n_ctx < 0) fail(TFU_STATUS_INVALID_ARGUMENT, "session params: n_ctx must be >= 0");
    if (p.n_ctx > (1 << 24)) fail(TFU_STATUS_INVALID_ARGUMENT, "session params: n_ctx is absurdly large");
    return p.n_ctx == 0 ? m.hp.n_ctx_train : p.n_ctx;
}

int32_t checked_batch(const tfu_session_params& p) {
    if (p.n_batch < 1 || p.n_batch > 65536)
        fail(TFU_STATUS_INVALID_ARGUMENT, "session params: n_batch must be in [1, 65536]");
    return p.n_batch;
}


kv_format to_kv_format(tfu_kv_type t, const char* what) {
    switch (t) {
        case TFU_KV_F16: return kv_format::f16;
        case TFU_KV_BF16: return kv_format::bf16;
        case TFU_KV_Q8: return kv_format::q8;
        case TFU_KV_Q4: return kv_format::q4;
    }
    fail(TFU_STATUS_INVALID_ARGUMENT, std::string("session params: ") + what + " = " + std::to_string(int(t)) +
                                          " is not a tfu_kv_type");
}

kv_block_pool& pool_of(model& m, const tfu_session_params& p) {
    return m.kv_pool(to_kv_format(p.kv_type_k, "kv_type_k"), to_kv_format(p.kv_type_v, "kv_type_v"));
}


// Tokens the cache may hold: n_ctx, or the whole blocks that fit in kv_cap_bytes.
int32_t checked_capacity(model& m, const tfu_session_params& p, int32_t n_ctx, std::optional<dtype> contiguous) {
    if (p.kv_cap_bytes == 0 || contiguous) return n_ctx;
    kv_block_pool& pool = pool_of(m, p);
    const uint64_t fixed = pool.residual_bytes();
    const uint64_t blocks = p.kv_cap_bytes > fixed ? (p.kv_cap_bytes - fixed) / pool.block_bytes() : 0;
    const int64_t B = pool.params().block_tokens;
    if (blocks == 0)
        fail(TFU_STATUS_INVALID_ARGUMENT, "session params: kv_cap_bytes = " + std::to_string(p.kv_cap_bytes) +
                                              " holds no block of " + std::to_string(B) + " tokens (" +
                                              std::to_string(pool.block_bytes() + fixed) + " bytes needed)");
    return int32_t(std::min<int64_t>(n_ctx, int64_t(std::min<uint64_t>(blocks, 1u << 24)) * B));
}

// The sliding window keeps whole blocks of sinks and drops a quarter of the cache at a time; it needs room for
// the sinks, a batch, the two newest blocks (q4 keys keep them in f16) and at least one block to drop.
int32_t sink_blocks(const tfu_session_params& p, int32_t block_tokens) {
    if (p.kv_n_sink < 0) fail(TFU_STATUS_INVALID_ARGUMENT, "session params: kv_n_sink must be >= 0");
    return (p.kv_n_sink + block_tokens - 1) / block_tokens;
}

// Bytes the session's cache may grow to: whole blocks for `capacity` tokens (+ the f16 key tail of q4 keys), or
// the contiguous cache.
uint64_t kv_budget_bytes(model& m, const tfu_session_params& p, int32_t n_ctx, std::optional<dtype> contiguous) {
    if (contiguous) return kv_cache::bytes_needed(m.hp.n_layer, m.hp.n_embd_kv(), n_ctx, *contiguous);
    kv_block_pool& pool = pool_of(m, p);
    const int64_t B = pool.params().block_tokens;
    return uint64_t((n_ctx + B - 1) / B) * pool.block_bytes() + pool.residual_bytes();
}

}  // namespace

namespace {

// On a device backend, f16/f16 and bf16/bf16 take the contiguous cache in device memory (its attention kernel
// reads a KV head's rows once per group of query heads); the other format pairs take the paged cache in device
// memory, written and read by the block ops (runtime/paged_kv.h), where the backend runs them. Of the eviction
// policies only the sliding window runs there (whole blocks dropped, the later ones re-rotated through host
// copies: kv_block_table::drop_blocks); H2O and chunk summary score and rewrite the cache on the host.
// The enum fields a C caller filled, checked as integers before anything reads them as enums (core/enum_value.h).
void check_enums(const tfu_session_params& p) {
    const int32_t pol = enum_value(p.kv_policy), tk = enum_value(p.kv_type_k), tv = enum_value(p.kv_type_v);
    if (pol < TFU_KV_POLICY_REFUSE || pol > TFU_KV_POLICY_CHUNK_SUMMARY)
        fail(TFU_STATUS_INVALID_ARGUMENT, "session params: kv_policy = " + std::to_string(pol) + " is not a tfu_kv_policy");
    for (auto [v, what] : {std::pair{tk, "kv_type_k"}, std::pair{tv, "kv_type_v"}})
        if (v < TFU_KV_F16 || v > TFU_KV_Q4)
            fail(TFU_STATUS_INVALID_ARGUMENT, std::string("session params: ") + what + " = " + std::to_string(v) +
                                                  " is not a tfu_kv_type");
}

std::optional<dtype> device_cache(model& m, const tfu_session_params& p, std::optional<dtype> contiguous) {
    check_enums(p);  // first: the delegating constructor runs this before any member reads the params
    if (contiguous || m.eng.device().host_memory()) return contiguous;
    const std::string be = m.eng.device().name();
    if (p.kv_policy == TFU_KV_POLICY_H2O || p.kv_policy == TFU_KV_POLICY_CHUNK_SUMMARY)
        fail(TFU_STATUS_UNSUPPORTED, "the H2O and chunk-summary KV cache policies are not available on the " + be +
                                         " backend yet (they score and rewrite the cache on the host); the sliding "
                                         "window is");
    // The sliding window drops whole blocks of the paged cache: even f16 and bf16 sessions take it then.
    const bool window = p.kv_policy == TFU_KV_POLICY_SLIDING_WINDOW;
    if (!window && p.kv_type_k == TFU_KV_F16 && p.kv_type_v == TFU_KV_F16) return dtype::F16;
    if (!window && p.kv_type_k == TFU_KV_BF16 && p.kv_type_v == TFU_KV_BF16) return dtype::BF16;
    if (p.kv_type_k == TFU_KV_Q4)
        fail(TFU_STATUS_UNSUPPORTED, "q4 keys are not available on the " + be + " backend yet (their newest rows wait "
                                     "in an f16 tail on the host); use kv_type_k f16, bf16 or q8 (V may be q4)");
    kv_block_pool& pool = pool_of(m, p);
    std::string why;
    if (!paged_kv::block_ops_supported(m.eng.device(), pool.k_layout(), pool.v_layout(), m.hp.n_head_kv, &why)) {
        const std::string what = window ? std::string("the sliding-window policy")
                                        : std::string("KV cache formats K ") + kv_format_name(pool.k_layout().format) +
                                              " V " + kv_format_name(pool.v_layout().format);
        fail(TFU_STATUS_UNSUPPORTED, what + ": the paged cache in device memory is not available on the " + be +
                                         " backend (" + why + ")" + (window ? "" : "; use f16 or bf16"));
    }
    return std::nullopt;
}

// Whether a paged session runs the block ops (KV_STORE_BLOCKS, ATTENTION_BLOCKS) and on which backend: always on a
// device backend (device_cache admitted it); on a host backend only with TFU_KV_BLOCK_OPS=1 (tests: the device's
// code path on the CPU, whose kernels leave the same bytes as the host writers), for per-token keys and no policy
// or the sliding window (the device's policies).
backend* block_ops_backend(model& m, const tfu_session_params& p) {
    backend& be = m.eng.device();
    if (!be.host_memory()) return &be;
    if (!paged_kv::host_test_mode()) return nullptr;
    const bool policy_ok = p.kv_policy == TFU_KV_POLICY_REFUSE || p.kv_policy == TFU_KV_POLICY_SLIDING_WINDOW;
    return p.kv_type_k != TFU_KV_Q4 && policy_ok ? &be : nullptr;
}

}  // namespace

session::session(model& m, const tfu_session_params& p, std::optional<dtype> contiguous_in)
    : session(m, p, device_cache(m, p, contiguous_in), 0) {}

session::session(model& m, const tfu_session_params& p, std::optional<dtype> contiguous, int)
    : mdl(m),
      seq(m.eng.next_session_seq()),
      n_ctx_(checked_ctx(m, p)),
      n_batch_(checked_batch(p)),
      capacity_(checked_capacity(m, p, n_ctx_, contiguous)),
      policy_(p.kv_policy),
      n_sink_blocks_(sink_blocks(p, 32)),
      n_sink_(p.kv_n_sink),
      n_recent_(p.kv_n_recent > 0 ? p.kv_n_recent : evict_quota()),
      chunk_(p.kv_chunk),
      kv_budget_(m.eng, kv_budget_bytes(m, p, capacity_, contiguous),
                 "session KV cache (" + std::to_string(capacity_) + " tokens)"),
      // Sliding window: a batch is at most a quarter of the cache, what one eviction frees.
      dec_(m.hp, m.weights,
           std::min(n_batch_, policy_ != TFU_KV_POLICY_REFUSE ? evict_quota() : capacity_),
           &m.eng.device()),
      smp_(to_config(p.sampler), m.hp.n_vocab) {
    if (contiguous) {
        contiguous_ = std::make_unique<kv_cache>(m.hp.n_layer, m.hp.n_embd_kv(), n_ctx_, *contiguous, &m.eng.device());
        for (int32_t l = 0; l < m.hp.n_layer; ++l) kv_views_.push_back(kv_layer{&contiguous_->k(l), &contiguous_->v(l)});
        target_.contiguous = kv_views_.data();
    } else {
        table_ = std::make_unique<kv_block_table>(pool_of(m, p));
        block_ops_ = block_ops_backend(m, p);
        attach_paged();
    }
    if (policy_ != TFU_KV_POLICY_REFUSE && !table_)
        fail(TFU_STATUS_INVALID_ARGUMENT, "the eviction policies need the paged KV cache");
    if (policy_ == TFU_KV_POLICY_H2O || policy_ == TFU_KV_POLICY_CHUNK_SUMMARY) {
        if (p.kv_n_recent < 0) fail(TFU_STATUS_INVALID_ARGUMENT, "session params: kv_n_recent must be >= 0");
        if (policy_ == TFU_KV_POLICY_CHUNK_SUMMARY && p.kv_chunk < 2)
            fail(TFU_STATUS_INVALID_ARGUMENT, "session params: kv_chunk must be >= 2");
        // The sinks and the recent tokens may take at most half the cache: the other half is what is dropped or
        // pooled, a quarter at a time.
        if (int64_t(n_sink_) + n_recent_ > capacity_ / 2)
            fail(TFU_STATUS_INVALID_ARGUMENT, "session params: kv_n_sink (" + std::to_string(n_sink_) +
                                                  ") + kv_n_recent (" + std::to_string(n_recent_) +
                                                  ") must be at most half the cache (" + std::to_string(capacity_) +
                                                  " tokens)");
        if (capacity_ < 16)
            fail(TFU_STATUS_INVALID_ARGUMENT, "the eviction policies need a cache of at least 16 tokens");
        if (policy_ == TFU_KV_POLICY_H2O) paged_->track_attention(&scores_);
    }
    if (policy_ == TFU_KV_POLICY_SLIDING_WINDOW) {
        const int32_t B = table_->pool().params().block_tokens;
        n_sink_blocks_ = sink_blocks(p, B);
        const int32_t need = (n_sink_blocks_ + 4) * B;
        if (capacity_ < need)
            fail(TFU_STATUS_INVALID_ARGUMENT,
                 "the sliding-window policy with " + std::to_string(p.kv_n_sink) + " sink tokens needs a cache of at "
                 "least " + std::to_string(need) + " tokens (sinks + 4 blocks of " + std::to_string(B) + "); this "
                 "session's holds " + std::to_string(capacity_));
    }
    logits_.resize(size_t(m.hp.n_vocab));
    // Greedy decoding keeps the logits on the device (docs/sampling.md); TFU_DEVICE_ARGMAX=0 turns it off.
    const char* env = std::getenv("TFU_DEVICE_ARGMAX");
    device_argmax_ = smp_.is_plain_greedy() && !m.eng.device().host_memory() && !(env && std::strcmp(env, "0") == 0);
    m.n_sessions.fetch_add(1);
    m.eng.add_session(this);
}

session::~session() {
    mdl.eng.remove_session(this);
    mdl.n_sessions.fetch_sub(1);
}

void session::attach_paged() {
    const int32_t B = table_->pool().params().block_tokens;
    paged_ = std::make_unique<paged_kv>(*table_, mdl.hp.n_layer, block_ops_, (n_ctx_ + B - 1) / B);
    target_ = kv_target{};
    if (block_ops_) target_.blocks = paged_->maps();
    else target_.paged = paged_.get();
}

std::unique_lock<std::mutex> session::lock_for_cache() {
    if (table_ && table_->pool().params().device) return mdl.eng.lock_device();
    return {};
}

void session::offload() {
    if (!can_offload()) return;
    host_tokens_ = table_->n_tokens();
    host_final_blocks_ = table_->final_blocks();
    std::vector<uint8_t> image(table_->image_bytes(host_tokens_));
    size_t at = 0;
    {
        auto lock = lock_for_cache();  // a device pool's blocks come back through download()
        table_->write_image([&](const void* p, size_t n) {
            std::memcpy(image.data() + at, p, n);
            at += n;
        });
    }
    TFU_CHECK(at == image.size());
    host_image_ = std::move(image);
    host_bytes_.store(host_image_.size());
    table_->clear();
    kv_budget_.release();
    offloaded_.store(true);
    ++n_offloads_;
    mdl.eng.n_offloads.fetch_add(1);
}

void session::ensure_resident() {
    if (!offloaded_.load()) return;
    kv_budget_.acquire("session KV cache (" + std::to_string(capacity_) + " tokens) coming back from host memory",
                       this);
    try {
        size_t at = 0;
        auto lock = lock_for_cache();
        table_->read_image(host_tokens_, host_final_blocks_, [&](void* p, size_t n) {
            std::memcpy(p, host_image_.data() + at, n);
            at += n;
        });
    } catch (...) {
        kv_budget_.release();
        throw;
    }
    std::vector<uint8_t>().swap(host_image_);
    host_bytes_.store(0);
    offloaded_.store(false);
    ++n_prefetches_;
    mdl.eng.n_prefetches.fetch_add(1);
}

void session::check_room(size_t n_new) const {
    if (policy_ != TFU_KV_POLICY_REFUSE) return;  // old tokens make room (make_room)
    const size_t used = tokens_.size() + pending_.size();
    if (used + n_new > size_t(capacity_))
        fail(TFU_STATUS_CONTEXT_FULL, "the session's context holds " + std::to_string(capacity_) + " tokens; " +
                                          std::to_string(used) + " are used and " + std::to_string(n_new) +
                                          " more do not fit");
}

void session::add_text(std::string_view text, bool add_special) {
    if (!utf8_valid(text)) fail(TFU_STATUS_INVALID_UTF8, "prompt text is not valid UTF-8");
    const bool at_start = tokens_.empty() && pending_.empty();
    std::vector<int32_t> ids = mdl.voc->tokenize(text, add_special && at_start, /*parse_special=*/true);
    check_room(ids.size());
    pending_.insert(pending_.end(), ids.begin(), ids.end());
}

void session::add_tokens(const int32_t* tokens, size_t n) {
    if (n > 0 && tokens == nullptr) fail(TFU_STATUS_INVALID_ARGUMENT, "tokens is NULL");
    for (size_t i = 0; i < n; ++i)
        if (tokens[i] < 0 || tokens[i] >= mdl.hp.n_vocab)
            fail(TFU_STATUS_INVALID_ARGUMENT, "token " + std::to_string(tokens[i]) + " at index " + std::to_string(i) +
                                                  " is outside the vocabulary (0 .. " +
                                                  std::to_string(mdl.hp.n_vocab - 1) + ")");
    check_room(n);
    pending_.insert(pending_.end(), tokens, tokens + n);
}

void session::throw_if_cancelled() {
    if (cancel_flag.exchange(false)) fail(TFU_STATUS_CANCELLED, "cancelled by tfu_session_cancel");
}

bool session::forward_batch(const int32_t* tokens, int32_t n, bool all_logits, float* out, int32_t* token_out) {
    // Before the eviction and the appends: with a device pool they move blocks through the backend (copy-on-write,
    // a sliding window's rotated blocks) and then upload the block map.
    auto lock = mdl.eng.lock_device();
    if (policy_ != TFU_KV_POLICY_REFUSE) make_room(n);
    const int32_t pos0 = int32_t(tokens_.size());
    if (table_) {
        TFU_CHECK(table_->n_tokens() == pos0);
        table_->append(n);  // blocks for the new positions (OUT_OF_MEMORY adds nothing)
    }
    if (policy_ == TFU_KV_POLICY_H2O) scores_.resize(size_t(pos0) + size_t(n), 0.0);
    bool on_device = false;
    try {
        if (block_ops_) paged_->sync_blocks();
        on_device = dec_.forward(mdl.eng.device(), target_, tokens, n, pos0, all_logits, out, &cancel_flag, token_out);
        if (on_device) device_logits_version_ = dec_.logits_version();
    } catch (...) {
        if (table_) table_->truncate(pos0);  // the positions were not evaluated: give their rows back
        if (policy_ == TFU_KV_POLICY_H2O) scores_.resize(size_t(pos0));  // (scores of a partial pass stay: harmless)
        throw;
    }
    for (int32_t i = 0; i < n; ++i) origin_.push_back(n_seen_ + i);
    n_seen_ += n;
    return on_device;
}

void session::eval() {
    size_t done = 0;
    // Prefix sharing: a fresh session takes the cached blocks of the longest full-block prefix of its prompt that
    // another session of this model published (same formats), and skips their prefill. The last prompt token is
    // always evaluated so that there are logits to sample from.
    if (table_ && tokens_.empty() && pending_.size() > 1) {
        const int32_t got = table_->adopt_prefix(pending_.data(), int32_t(pending_.size() - 1));
        if (got > 0) {
            tokens_.assign(pending_.begin(), pending_.begin() + got);
            for (int32_t i = 0; i < got; ++i) origin_.push_back(i);
            n_seen_ = got;
            if (policy_ == TFU_KV_POLICY_H2O) scores_.assign(size_t(got), 0.0);
            for (int32_t i = 0; i < got; ++i) smp_.accept(pending_[size_t(i)]);
            done = size_t(got);
            n_prefix_reused_ += uint64_t(got);
        }
    }
    try {
        while (done < pending_.size()) {
            throw_if_cancelled();
            const int32_t n = int32_t(std::min(pending_.size() - done, size_t(dec_.n_batch_max())));
            int32_t token = -1;
            if (forward_batch(pending_.data() + done, n, false, logits_.data(), device_argmax_ ? &token : nullptr)) {
                logits_on_device_ = device_token_valid_ = true;
                device_token_ = token;
            } else {
                logits_on_host();
            }
            tokens_.insert(tokens_.end(), pending_.begin() + long(done), pending_.begin() + long(done) + n);
            for (int32_t i = 0; i < n; ++i) smp_.accept(pending_[done + size_t(i)]);
            done += size_t(n);
            has_logits_ = true;
        }
    } catch (const error& e) {
        pending_.erase(pending_.begin(), pending_.begin() + long(done));  // keep what was not processed
        if (e.status() == TFU_STATUS_CANCELLED) cancel_flag.store(false);
        throw;
    }
    pending_.clear();
    if (table_ && !evicted_) table_->publish_prefix(tokens_.data(), int32_t(tokens_.size()));
}

void session::eval_logits(const int32_t* tokens, size_t n, float* out) {
    if (!pending_.empty()) eval();
    // The passes below replace the device's logits: keep the current ones, in case they fail half-way.
    if (n > 0) fetch_logits();
    for (size_t i = 0; i < n; ++i)
        if (tokens[i] < 0 || tokens[i] >= mdl.hp.n_vocab)
            fail(TFU_STATUS_INVALID_ARGUMENT, "token " + std::to_string(tokens[i]) + " at index " + std::to_string(i) +
                                                  " is outside the vocabulary");
    check_room(n);
    const size_t V = size_t(mdl.hp.n_vocab);
    try {
        for (size_t done = 0; done < n;) {
            throw_if_cancelled();
            const int32_t nb = int32_t(std::min(n - done, size_t(dec_.n_batch_max())));
            forward_batch(tokens + done, nb, true, out + done * V);
            tokens_.insert(tokens_.end(), tokens + done, tokens + done + nb);
            for (int32_t i = 0; i < nb; ++i) smp_.accept(tokens[done + size_t(i)]);
            done += size_t(nb);
        }
    } catch (const error& e) {
        if (e.status() == TFU_STATUS_CANCELLED) cancel_flag.store(false);
        throw;
    }
    if (n > 0) {
        std::copy(out + (n - 1) * V, out + n * V, logits_.begin());
        has_logits_ = true;
        logits_on_host();
    }
}

std::vector<float> session::eval_all_logits(const std::vector<int32_t>& tokens) {
    std::vector<float> out(size_t(mdl.hp.n_vocab) * tokens.size());
    eval_logits(tokens.data(), tokens.size(), out.data());
    return out;
}

const std::vector<float>& session::logits() {
    if (!has_logits_) fail(TFU_STATUS_INVALID_ARGUMENT, "no logits yet: nothing has been evaluated in this session");
    fetch_logits();
    return logits_;
}

void session::fetch_logits() {
    if (!logits_on_device_) return;
    {
        auto lock = mdl.eng.lock_device();
        dec_.download_logits(device_logits_version_, logits_.data(), logits_.size());
    }
    logits_on_device_ = false;  // device_token_ stays the pick of these logits
}

int32_t session::pick_token() {
    if (!device_token_valid_) return smp_.sample(logits_.data());
    // sampler::sample() of plain greedy is exactly this pick (ARGMAX has its rules), and touches no state.
    if (device_token_ < 0)
        fail(TFU_STATUS_INTERNAL, "sampler: no finite logit among " + std::to_string(smp_.n_vocab()) +
                                      " (all are NaN or -inf): the model produced no usable output");
    return device_token_;
}

int32_t session::sample() {
    if (!pending_.empty()) eval();
    if (!has_logits_) fail(TFU_STATUS_INVALID_ARGUMENT, "no logits yet: nothing has been evaluated in this session");
    check_room(1);
    int32_t t = pick_token();
    pending_.push_back(t);
    return t;
}

void session::reset() {
    if (table_) table_->clear();
    tokens_.clear();
    origin_.clear();
    scores_.clear();
    n_seen_ = 0;
    pending_.clear();
    has_logits_ = false;
    logits_on_host();
    smp_.reset();
    cancel_flag.store(false);
    total_prompt_ = total_generated_ = n_prefix_reused_ = 0;
    n_evictions_ = n_evicted_tokens_ = 0;
    evicted_ = false;
    total_prefill_ms_ = total_decode_ms_ = 0;
}

void session::stats(tfu_session_stats* out) const {
    out->n_ctx = n_ctx_;
    out->n_past = int32_t(tokens_.size());
    out->n_pending = int32_t(pending_.size());
    out->kv_bytes = table_ ? (offloaded_.load() ? 0 : table_->bytes()) : contiguous_->bytes();
    out->n_prompt_tokens = total_prompt_;
    out->n_generated = total_generated_;
    out->prefill_ms = total_prefill_ms_;
    out->n_prefix_reused = n_prefix_reused_;
    out->kv_blocks = table_ ? uint32_t(table_->n_blocks()) : 0;
    out->kv_shared_blocks = table_ ? uint32_t(table_->n_shared_blocks()) : 0;
    out->last_used_unix_ms = last_used_unix_ms.load();
    out->decode_ms = total_decode_ms_;
    out->kv_capacity = capacity_;
    out->n_evictions = n_evictions_;
    out->n_evicted_tokens = n_evicted_tokens_;
    out->kv_offloaded = offloaded_.load();
    out->kv_host_bytes = host_image_.size();
    out->n_offloads = n_offloads_;
    out->n_prefetches = n_prefetches_;
}

session_use::session_use(session& s) : s_(s) {
    bool expected = false;
    if (!s_.busy.compare_exchange_strong(expected, true))
        fail(TFU_STATUS_BUSY, "the session is being used by another thread");
    s_.n_uses.fetch_add(1);
    s_.last_use_tick.store(s_.mdl.eng.next_use_tick());
    try {
        s_.ensure_resident();
    } catch (...) {
        s_.busy.store(false);
        throw;
    }
    s_.last_used_unix_ms.store(uint64_t(std::chrono::duration_cast<std::chrono::milliseconds>(
                                            std::chrono::system_clock::now().time_since_epoch())
                                            .count()));
}

session_use::~session_use() { s_.busy.store(false); }

}  // namespace tfu
