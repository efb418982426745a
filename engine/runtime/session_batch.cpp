// Continuous batching: one decode step of several sessions of one model in one forward pass (every weight read
// once for all of them); each session ends exactly as after its own add_tokens + eval of the token.
#include <algorithm>

#include "core/error.h"
#include "runtime/session.h"

namespace tfu {

void session::decode_batch(session* const* ss, const int32_t* tokens, size_t n) {
    if (n == 0) fail(TFU_STATUS_INVALID_ARGUMENT, "decode_batch: n is 0 (at least one session)");
    if (n > size_t(TFU_DECODE_BATCH_MAX))
        fail(TFU_STATUS_INVALID_ARGUMENT, "decode_batch: n = " + std::to_string(n) + " is more than " +
                                              "TFU_DECODE_BATCH_MAX (" + std::to_string(TFU_DECODE_BATCH_MAX) + ")");
    model& m = ss[0]->mdl;
    // 1. Everything that can be refused is checked before any session changes.
    std::vector<int32_t> tok(n);
    for (size_t i = 0; i < n; ++i) {
        session& s = *ss[i];
        const std::string at = "decode_batch: session " + std::to_string(i);
        if (&s.mdl != &m) fail(TFU_STATUS_INVALID_ARGUMENT, at + " is on another model than session 0");
        for (size_t j = 0; j < i; ++j)
            if (ss[j] == ss[i]) fail(TFU_STATUS_INVALID_ARGUMENT, at + " is session " + std::to_string(j) + " again");
        if (tokens) {
            tok[i] = tokens[i];
            if (tok[i] < 0 || tok[i] >= m.hp.n_vocab)
                fail(TFU_STATUS_INVALID_ARGUMENT, at + ": token " + std::to_string(tok[i]) +
                                                      " is outside the vocabulary (0 .. " +
                                                      std::to_string(m.hp.n_vocab - 1) + ")");
        } else {
            if (s.pending_.size() != 1)
                fail(TFU_STATUS_INVALID_ARGUMENT, at + " has " + std::to_string(s.pending_.size()) +
                                                      " pending tokens; with tokens NULL each session needs exactly "
                                                      "one (from tfu_session_sample)");
            tok[i] = s.pending_[0];
        }
    }
    for (size_t i = 0; i < n; ++i) {
        session& s = *ss[i];
        if (s.policy_ != TFU_KV_POLICY_REFUSE) continue;  // old tokens make room (make_room)
        const size_t used = s.tokens_.size() + s.pending_.size() + (tokens ? 1 : 0);
        if (used > size_t(s.capacity_))
            fail(TFU_STATUS_CONTEXT_FULL, "decode_batch: session " + std::to_string(i) + "'s context holds " +
                                              std::to_string(s.capacity_) + " tokens; its " +
                                              std::to_string(s.tokens_.size()) + " evaluated, " +
                                              std::to_string(s.pending_.size()) + " pending and the new token do "
                                              "not fit");
    }
    auto clear_cancels = [&] {
        for (size_t i = 0; i < n; ++i) ss[i]->cancel_flag.store(false);
    };
    try {
        // 2. Pending input is prefilled per session, as tfu_session_eval does (it may adopt shared prefixes).
        if (tokens)
            for (size_t i = 0; i < n; ++i)
                if (!ss[i]->pending_.empty()) ss[i]->eval();
        for (size_t i = 0; i < n; ++i)
            if (ss[i]->cancel_flag.load()) fail(TFU_STATUS_CANCELLED, "cancelled by tfu_session_cancel");
        // 3. Full caches make room by their own policies (what forward_batch does before a pass).
        for (size_t i = 0; i < n; ++i)
            if (ss[i]->policy_ != TFU_KV_POLICY_REFUSE) {
                auto lock = ss[i]->lock_for_cache();  // a device pool's dropped blocks move through the backend
                ss[i]->make_room(1);
            }
    } catch (const error& e) {
        if (e.status() == TFU_STATUS_CANCELLED) clear_cancels();
        throw;
    }

    // 4. The step: blocks for the new positions, one forward pass, then each session takes its token and logits.
    std::vector<int32_t> pos0(n);
    std::vector<decoder::sequence> seqs(n);
    size_t n_appended = 0;  // sessions whose cache got its new position (undone on error)
    auto undo = [&] {
        for (size_t i = 0; i < n_appended; ++i) {
            session& s = *ss[i];
            if (s.table_) s.table_->truncate(pos0[i]);
            if (s.policy_ == TFU_KV_POLICY_H2O) s.scores_.resize(size_t(pos0[i]));
        }
    };
    const size_t V = size_t(m.hp.n_vocab);
    // Greedy sessions on a device (session::device_argmax_), all of them: the step ends with ARGMAX on the device
    // and each session's logits are copied on the device into its own decoder (decoder::forward_multi's keep),
    // downloaded only if asked for; n x 4 bytes cross the bus instead of n x the vocabulary's logits.
    bool greedy_device = true;
    std::vector<decoder*> keep(n);
    for (size_t i = 0; i < n; ++i) {
        greedy_device = greedy_device && ss[i]->device_argmax_;
        keep[i] = &ss[i]->dec_;
    }
    std::vector<int32_t> picks(n, -1);
    bool on_device = false;
    std::lock_guard<std::mutex> batch_lock(m.batch_mutex);  // the batch decoder and logits are the model's
    try {
        // Before the appends: with a device pool they may copy blocks (copy-on-write) and upload the block maps.
        auto lock = m.eng.lock_device();
        for (size_t i = 0; i < n; ++i) {
            session& s = *ss[i];
            pos0[i] = int32_t(s.tokens_.size());
            if (s.table_) {
                TFU_CHECK(s.table_->n_tokens() == pos0[i]);
                s.table_->append(1);  // OUT_OF_MEMORY adds nothing
            }
            ++n_appended;
            if (s.block_ops_) s.paged_->sync_blocks();
            if (s.policy_ == TFU_KV_POLICY_H2O) s.scores_.resize(size_t(pos0[i]) + 1, 0.0);
            seqs[i].kv = s.target_;
            seqs[i].tokens = &tok[i];
            seqs[i].n = 1;
            seqs[i].pos0 = pos0[i];
            seqs[i].cancel = &s.cancel_flag;
        }
        decoder& dec = m.batch_decoder();
        m.batch_logits.resize(V * n);
        on_device = dec.forward_multi(m.eng.device(), seqs.data(), int32_t(n), false, m.batch_logits.data(),
                                      greedy_device ? picks.data() : nullptr, greedy_device ? keep.data() : nullptr);
    } catch (const error& e) {
        undo();
        if (e.status() == TFU_STATUS_CANCELLED) clear_cancels();
        throw;
    } catch (...) {
        undo();
        throw;
    }
    for (size_t i = 0; i < n; ++i) {
        session& s = *ss[i];
        s.origin_.push_back(s.n_seen_);
        ++s.n_seen_;
        s.tokens_.push_back(tok[i]);
        s.smp_.accept(tok[i]);
        if (!tokens) s.pending_.clear();
        s.has_logits_ = true;
        if (on_device) {
            s.logits_on_device_ = s.device_token_valid_ = true;
            s.device_token_ = picks[i];
            s.device_logits_version_ = s.dec_.logits_version();
        } else {
            std::copy(m.batch_logits.begin() + long(i * V), m.batch_logits.begin() + long((i + 1) * V),
                      s.logits_.begin());
            s.logits_on_host();
        }
        if (s.table_ && !s.evicted_) s.table_->publish_prefix(s.tokens_.data(), int32_t(s.tokens_.size()));
    }
}

}  // namespace tfu
