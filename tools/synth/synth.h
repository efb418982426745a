// tfusion-synth's library: plans and writes a GGUF model with the shapes and metadata of a preset, random
// (seeded) weights and the tokenizer of a vocabulary GGUF, streaming tensor by tensor.
//
// Weights (chosen so that activations keep a realistic range through every layer; checked by test_synth):
//   token_embd         N(0, 1)                     residual stream starts at RMS ~1
//   attn_q/k/v, ffn_gate/up   N(0, 1/sqrt(fan_in))       unit-RMS input -> unit-RMS output
//   attn_output, ffn_down     N(0, 1/sqrt(fan_in)) / sqrt(2 n_layer)   each block adds ~1/(2 n_layer) variance
//   attn_norm, ffn_norm       uniform [0.8, 1.2)
//   output_norm        uniform [0.8, 1.2); when tied, times 1/sqrt(n_embd) (the N(0,1) embedding would give
//                      logits of std sqrt(n_embd)) and with a random sign per channel: the residual stream
//                      still carries much of the current token's embedding e, and with all-positive gains its
//                      logit sum_i g_i e_i^2 would tower over the rest (an untrained tied model only repeats
//                      its input); random signs make that term zero-mean. Untied output.weight is
//                      N(0, 1/sqrt(n_embd)). Logits have a std of ~1 either way: logits that carry no
//                      knowledge of the next token and have std s cost ~s^2/2 nats above log(n_vocab), so
//                      std 1 gives perplexities near the vocabulary size (std 3, used before, gave millions;
//                      measured figures in synth.cpp).
//
// Measured through the engine (test_synth, ActivationScalesAreRealistic: 64 random tokens, every position):
// residual RMS 0.90-1.14 after the embedding, 1.00-1.38 after the 4th layer of the tiny presets; logit std
// 0.97-1.02; mean NLL log(n_vocab) + 0.42..0.60.
//   attn_{q,k,v}.bias  N(0, 0.5) (qwen2)
//   rope_freqs         the Llama-3 scaling factors (n_rot/2 f32), as llama.cpp's converter writes them
// Matrices (and token_embd) get the requested type; a tensor whose row length is not a multiple of the type's
// block falls back as llama.cpp's quantizer does (q4_K -> q5_0, q5_K -> q5_1, q6_K -> q8_0, q2_K/q3_K ->
// q4_0; then f16). Norms, biases and rope_freqs stay f32.
// Every row has its own random stream (seed, tensor name, row), so a file does not depend on the thread count,
// and --layers N draws the same numbers for the first N layers as the full model (attn_output and ffn_down
// then differ only by their depth scale 1/sqrt(2N), which keeps the cut model well scaled).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "presets.h"

namespace tfu::synth {

// Parses a weight type name as llama.cpp prints it ("f16", "q4_0", "q4_K"; case-insensitive). Throws
// TFU_STATUS_INVALID_ARGUMENT naming the accepted types if unknown.
dtype parse_type(const std::string& name);
// "f32, f16, bf16, q8_0, ..." (the accepted names).
std::string type_names();
// The type a matrix with rows of `ne0` elements gets when `want` is asked for (see the fallback above).
dtype matrix_type(dtype want, int64_t ne0);

enum class init { normal, uniform, uniform_signed, values };  // uniform_signed: +-[a, b)

struct tensor_plan {
    std::string name;
    dtype type = dtype::F32;
    int64_t ne0 = 0, ne1 = 1;          // ne1 = 1: a vector (written with one dimension)
    init kind = init::normal;
    float a = 0, b = 0;                // normal: a = std; uniform: [a, b)
    std::vector<float> values;         // init::values (rope_freqs)

    size_t nbytes() const { return row_size(type, ne0) * size_t(ne1); }
};

// The tensors of `p` with `n_layer` layers and `n_vocab` embedding rows, in llama.cpp's file order.
std::vector<tensor_plan> plan_tensors(const preset& p, int32_t n_layer, int64_t n_vocab, dtype want);

struct options {
    std::string preset;         // preset name
    std::string vocab_path;     // GGUF with tokenizer.* metadata
    std::string out_path;
    dtype type = dtype::F16;
    uint64_t seed = 1;
    int32_t n_layer = 0;        // 0: the preset's
    int32_t n_ctx = 0;          // 0: the preset's context_length
    int n_threads = 0;          // 0: all hardware threads
    // Notes for the user (vocabulary size adjustments, type fallbacks); may be empty.
    std::function<void(const std::string&)> on_note;
    // After each tensor: its index (1-based), count, name, data bytes written so far and in all.
    std::function<void(size_t i, size_t n, const std::string& name, uint64_t done, uint64_t total)> on_progress;
};

struct result {
    int64_t n_vocab = 0;
    int32_t n_layer = 0;
    uint64_t n_params = 0;
    size_t n_tensors = 0;
    uint64_t data_bytes = 0;    // tensor data (the file adds metadata and padding)
};

// Writes the model. Errors (unknown preset, unreadable vocabulary, I/O) throw tfu::error naming the culprit;
// the output file is then left untouched (the writer renames a temporary file at the end).
result write_model(const options& opt);

}  // namespace tfu::synth
