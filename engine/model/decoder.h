// The forward pass of the llama-style decoder (llama family, qwen2) as a list of backend ops per layer.
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "backend/kv_block_map.h"
#include "backend/kv_format.h"
#include "model/hparams.h"
#include "model/weights.h"

namespace tfu {

// One layer's K and V cache tensors: (n_embd_kv, n_ctx) each, in the cache dtype (the contiguous cache).
struct kv_layer {
    tensor* k;
    tensor* v;
};

// The paged cache as a forward pass sees it (implemented by the runtime over kv/block_table.h): store() takes a
// layer's new K (after RoPE) and V rows, (n_embd_kv, n) f32 at positions pos0 .., between the RoPE and the
// attention ops; view() is what ATTENTION_PAGED then reads for that layer.
class kv_sink {
public:
    virtual ~kv_sink() = default;
    virtual void store(int32_t layer, const tensor& k, const tensor& v, int32_t pos0) = 0;
    virtual const paged_kv_view* view(int32_t layer) = 0;
    // Sees a layer's queries (hd, n_head, n) f32 after RoPE, at positions pos0.., once their K/V are stored (the
    // H2O policy scores the cached tokens with them). Default: nothing.
    virtual void observe(int32_t layer, const tensor& q, int32_t pos0) {
        (void)layer;
        (void)q;
        (void)pos0;
    }
};

// Where forward() keeps K and V: exactly one of the three is set.
struct kv_target {
    const kv_layer* contiguous = nullptr;  // [n_layer]
    kv_sink* paged = nullptr;              // the paged cache, rows written on the host
    // The paged cache written and read by ops (KV_STORE_BLOCKS, ATTENTION_BLOCKS) in the backend's memory: one
    // map per layer ([n_layer]), its block array up to date for the pass (runtime/paged_kv.h: sync_blocks).
    const kv_block_map* blocks = nullptr;
};

// Per-session activations for batches of up to n_batch_max tokens. Not thread-safe: one forward at a time.
// With a device backend (one whose host_memory() is false) the activations, token ids, positions, RoPE factors
// and logits live in that backend's memory (one allocation, carved up), the weights must already be there
// (place_weights), and forward() uploads the ids and positions and downloads the logits; the caches there are the
// contiguous one and the paged one of block maps (kv_target::blocks), not the paged one written on the host.
class decoder {
public:
    decoder(const hparams& hp, const model_weights& w, int32_t n_batch_max, backend* device = nullptr);
    ~decoder();
    decoder(const decoder&) = delete;
    decoder& operator=(const decoder&) = delete;

    // Runs tokens[0..n) (n <= n_batch_max) at positions pos0 .. pos0+n-1, writing their K/V into rows pos0.. of
    // kv. logits: (n_vocab, n) if all_logits, else (n_vocab) of the last token. `cancel` is checked
    // before every layer; when set, throws TFU_STATUS_CANCELLED (rows already written are simply overwritten by
    // the next forward at the same positions).
    //
    // Greedy decoding (argmax != nullptr, all_logits false): on a device backend that supports ARGMAX for these
    // logits, ARGMAX (backend/ops.def: the sampler's greedy pick) runs after the output projection in the same
    // run() and only its index per output column is downloaded, into argmax[0..n_out); `logits` is not written:
    // the logits stay in device memory, readable with download_logits() until the next forward. Returns true
    // then; else (host memory, no ARGMAX support, all_logits) the logits are downloaded as usual and it returns
    // false.
    bool forward(backend& be, const kv_target& kv, const int32_t* tokens, int32_t n, int32_t pos0, bool all_logits,
                 float* logits, const std::atomic<bool>* cancel, int32_t* argmax = nullptr);

    // One sequence of a batched forward: its own cache, tokens and first position (continuous batching).
    struct sequence {
        kv_target kv;
        const int32_t* tokens = nullptr;
        int32_t n = 0;      // tokens of this sequence (>= 1)
        int32_t pos0 = 0;   // position of tokens[0] in its cache
        const std::atomic<bool>* cancel = nullptr;  // may be null
    };
    // Runs several sequences in one pass: their tokens are the columns of one batch (sum of n <= n_batch_max),
    // in order, so every weight is read once for all of them (MUL_MAT with that many columns); RoPE takes each
    // column's own position, and each sequence has its own KV_STORE (or kv_sink::store) and ATTENTION (or
    // ATTENTION_PAGED) over its cache, on a view of its columns. logits: (n_vocab, n_out) with n_out = all the
    // columns if all_logits, else one per sequence (its last token), in sequence order. Any sequence's cancel
    // flag stops the pass with TFU_STATUS_CANCELLED (checked before every layer). forward() is this with one
    // sequence.
    // argmax: as forward()'s (one index per sequence).
    // keep (with argmax; may be null, as may each entry): when the pass takes the device path, sequence s's logits
    // are also copied on the device into keep[s]'s own device logits (keep[s]: another decoder of this model on
    // this backend, e.g. the session's own, while this one is the model's batch decoder), whose logits_version()
    // advances: keep[s]->download_logits() then reads them until keep[s]'s next forward, whatever this decoder
    // runs meanwhile. The device path is not taken when the backend cannot make the copies.
    bool forward_multi(backend& be, const sequence* seqs, int32_t n_seq, bool all_logits, float* logits,
                       int32_t* argmax = nullptr, decoder* const* keep = nullptr);

    // The logits a forward() that returned true left in device memory: n_floats (n_vocab * n_out) into out. Each
    // forward that reaches the output projection replaces them and advances logits_version(); `version` is the
    // value the caller read right after its forward, and a newer one (another forward ran since) throws
    // TFU_STATUS_INTERNAL rather than return other logits. Needs the device lock like forward().
    void download_logits(uint64_t version, float* out, size_t n_floats);
    uint64_t logits_version() const { return logits_version_; }

    int32_t n_batch_max() const { return n_batch_max_; }

    // Moves key row i (head_dim floats, in place) by deltas[i] positions: RoPE rotations compose
    // (R(p + delta) = R(delta) R(p)), so a ROPE op at positions `deltas` with forward()'s parameters does it. For
    // the cache's eviction policies (kv_block_table::drop_blocks, compact). `be` must address host memory.
    void rope_shift(backend& be, float* rows, const int32_t* deltas, int32_t n) const;

private:
    struct buffer {
        float* data = nullptr;  // host or device address
        size_t n = 0;           // floats (or int32s)
    };
    tensor act(const buffer& b, int64_t ne0, int64_t ne1, int64_t ne2 = 1);
    float* logits_buffer(size_t n_floats);  // device logits, grown on demand

    const hparams& hp_;
    const model_weights& w_;
    int32_t n_batch_max_;
    backend* dev_;                         // nullptr: everything is host memory
    std::vector<float> host_arena_;        // host: all buffers below
    void* dev_arena_ = nullptr;            // device: all buffers below
    void* dev_logits_ = nullptr;
    size_t dev_logits_n_ = 0;
    uint64_t logits_version_ = 0;          // output projections enqueued so far (download_logits)
    tensor rope_factors_;                  // (n_rot/2) f32 in the backend's memory, or data == nullptr
    tensor rope_factors_host_;             // the same on the host (rope_shift)
    std::vector<float> rope_factor_data_;  // llama3 factors computed from hparams
    // Activations, each sized for n_batch_max tokens (shapes in forward()); ids and positions as int32.
    // argmax_: ARGMAX's indices (n_batch_max int32); columns_: the int32s 0 .. n_batch_max - 1 (forward_multi's
    // keep copies).
    buffer x_, xn_, q_, k_, v_, qr_, kr_, att_, o_, g_, u_, ids_, pos_, factors_, argmax_, columns_;
    std::vector<int32_t> ids_host_, pos_host_;
};

}  // namespace tfu
