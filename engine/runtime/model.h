// tfu::model: a loaded GGUF model: the mapped file, hyperparameters, weights, vocabulary and chat template.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "format/gguf.h"
#include "model/arch.h"
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

private:
    std::vector<uint8_t> owned_;  // the file's bytes when not memory-mapped
    std::unique_ptr<reservation> budget_;
};

}  // namespace tfu
