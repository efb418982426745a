// Model presets of tfusion-synth: the shapes and hyperparameters of real models (from their Hugging Face
// config.json files) plus tiny test shapes of each architecture.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tfu::synth {

struct preset {
    const char* name;        // "Llama-3.2-1B"
    const char* arch;        // GGUF general.architecture: "llama" or "qwen2"
    const char* source;      // the Hugging Face repository whose config.json gave the numbers ("" for tiny-*)
    int32_t n_embd;          // hidden_size
    int32_t n_layer;         // num_hidden_layers
    int32_t n_head;          // num_attention_heads
    int32_t n_head_kv;       // num_key_value_heads
    int32_t n_ff;            // intermediate_size
    int32_t n_vocab;         // vocab_size of the real model (0: whatever the vocabulary file has)
    int32_t n_ctx;           // max_position_embeddings
    float rope_base;         // rope_theta
    float rms_eps;           // rms_norm_eps
    bool tied;               // tie_word_embeddings: no output.weight, the logits use token_embd
    bool qkv_bias;           // qwen2: attn_{q,k,v}.bias
    // rope_scaling {rope_type: llama3}; written as a rope_freqs.weight tensor, as llama.cpp's converter does.
    bool rope_llama3;
    float rope_factor, rope_low_freq, rope_high_freq;
    int32_t rope_orig_ctx;
    const char* vocab_hint;  // the file of ../shared/vocab that fits best (informational)

    int32_t head_dim() const { return n_embd / n_head; }
};

// Every preset, real models first, then the tiny-* test shapes.
const std::vector<preset>& presets();
// Case-insensitive lookup; nullptr if unknown.
const preset* find_preset(std::string_view name);

// Parameter count of `p` with `n_layer` layers and `n_vocab` embedding rows (output.weight counted if untied;
// rope_freqs not counted: it is a constant, not a weight).
uint64_t n_params(const preset& p, int32_t n_layer, int64_t n_vocab);

}  // namespace tfu::synth
