// Hyperparameters of a decoder-only transformer, read from GGUF metadata ({arch}.* keys) and validated.
#pragma once

#include <cstdint>
#include <string>

namespace tfu {
namespace gguf { class file; }

enum class rope_layout : int32_t {
    normal = 0,  // rotate pairs (2j, 2j+1): llama/mistral as converted by llama.cpp
    neox = 2,    // rotate pairs (j, j + n_rot/2): qwen2, phi3, ...
};

struct hparams {
    std::string arch;          // general.architecture
    std::string name;          // general.name (may be empty)
    int32_t n_vocab = 0;       // rows of token_embd
    int32_t n_ctx_train = 0;   // {arch}.context_length
    int32_t n_embd = 0;        // {arch}.embedding_length
    int32_t n_layer = 0;       // {arch}.block_count
    int32_t n_ff = 0;          // {arch}.feed_forward_length
    int32_t n_head = 0;        // {arch}.attention.head_count
    int32_t n_head_kv = 0;     // {arch}.attention.head_count_kv (default n_head)
    int32_t head_dim = 0;      // {arch}.attention.key_length (default n_embd / n_head)
    int32_t n_rot = 0;         // {arch}.rope.dimension_count (default head_dim)
    float rms_eps = 1e-5f;     // {arch}.attention.layer_norm_rms_epsilon
    float rope_freq_base = 10000.0f;  // {arch}.rope.freq_base
    float rope_freq_scale = 1.0f;     // 1 / {arch}.rope.scaling.factor for "linear" scaling
    rope_layout rope = rope_layout::normal;
    // Llama-3 rope scaling ({arch}.rope.scaling.type = "llama3"); used when the file has no rope_freqs tensor.
    bool rope_llama3 = false;
    float rope_scaling_factor = 1.0f, rope_low_freq_factor = 1.0f, rope_high_freq_factor = 4.0f;
    int32_t rope_orig_ctx = 8192;

    int32_t n_embd_head() const { return head_dim; }
    int32_t n_embd_q() const { return head_dim * n_head; }
    int32_t n_embd_kv() const { return head_dim * n_head_kv; }
};

// Reads and checks the hyperparameters for `arch` (which must be one of the supported architectures; an
// unknown one throws TFU_STATUS_UNSUPPORTED naming it). Missing or absurd values throw INVALID_FILE naming the key.
hparams read_hparams(const gguf::file& f);

}  // namespace tfu
