// tfu::model: a loaded GGUF model: the mapped file, hyperparameters, weights, vocabulary and chat template.
#pragma once

#include <atomic>
#include <map>
#include <mutex>
#include <memory>
#include <string>
#include <vector>

#include "format/gguf.h"
#include "kv/block_pool.h"
#include "model/arch.h"
#include "model/decoder.h"
#include "model/hparams.h"
#include "model/weights.h"
#include "runtime/engine.h"
#include "tokenizer/vocab.h"

namespace tfu {

class model {
public:
    // Opens and validates the file, binds weights, reads the vocabulary; reserves the weights in the budget.
    model(engine& eng, const std::string& path, const tfu_model_params& p);
    ~model();

    engine& eng;
    std::unique_ptr<gguf::file> file;
    hparams hp;
    model_weights weights;
    std::unique_ptr<vocab> voc;
    std::string chat_template;  // tokenizer.chat_template, or empty
    std::atomic<int32_t> n_sessions{0};

    // The KV block pool of this model for a (K format, V format) pair, created on first use. Thread-safe.
    kv_block_pool& kv_pool(kv_format k, kv_format v);
    // Calls fn(const kv_block_pool&) for each pool created so far (under the pools lock).
    template <typename Fn>
    void for_each_kv_pool(Fn&& fn) const {
        std::lock_guard<std::mutex> lock(pools_mutex_);
        for (const auto& kv : pools_) fn(*kv.second);
    }
    std::string path;

    // Continuous batching (session::decode_batch): one decoder sized for TFU_DECODE_BATCH_MAX columns and the
    // step's logits (n_vocab, n) on the host, made on first use and shared by all sessions of the model. Hold
    // batch_mutex for the whole step: two threads batching different sessions of this model take turns on them.
    std::mutex batch_mutex;
    decoder& batch_decoder();          // caller holds batch_mutex
    std::vector<float> batch_logits;   // caller holds batch_mutex

private:
    std::vector<uint8_t> owned_;  // the file's bytes when not memory-mapped
    std::vector<void*> device_weights_;  // the weights' copies in a device backend's memory (place_weights)
    std::unique_ptr<reservation> budget_;
    mutable std::mutex pools_mutex_;
    std::map<std::pair<kv_format, kv_format>, std::unique_ptr<kv_block_pool>> pools_;
    std::unique_ptr<decoder> batch_dec_;  // batch_decoder(); destroyed before the weights it reads
};

}  // namespace tfu
