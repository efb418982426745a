// The preset table of tfusion-synth. Numbers are those of each model's config.json on Hugging Face (the
// repository is named in `source`); llama.cpp's converter maps them to GGUF keys one to one.
#include "presets.h"

#include <cctype>

namespace tfu::synth {

const std::vector<preset>& presets() {
    // Llama 3.2 rope_scaling: {factor 32, low_freq_factor 1, high_freq_factor 4,
    // original_max_position_embeddings 8192, rope_type "llama3"}.
    static const std::vector<preset> table = {
        // name             arch     source                                  embd  lay hd kv  ff     vocab   ctx     base     eps    tied   bias   llama3 fac  lo  hi  orig  vocab file
        {"Llama-3.2-1B", "llama", "meta-llama/Llama-3.2-1B", 2048, 16, 32, 8, 8192, 128256, 131072, 500000.0f, 1e-5f, true, false, true, 32, 1, 4, 8192, "ggml-vocab-llama-bpe.gguf"},
        {"Llama-3.2-3B", "llama", "meta-llama/Llama-3.2-3B", 3072, 28, 24, 8, 8192, 128256, 131072, 500000.0f, 1e-5f, true, false, true, 32, 1, 4, 8192, "ggml-vocab-llama-bpe.gguf"},
        {"Llama-3-8B", "llama", "meta-llama/Meta-Llama-3-8B", 4096, 32, 32, 8, 14336, 128256, 8192, 500000.0f, 1e-5f, false, false, false, 1, 1, 4, 8192, "ggml-vocab-llama-bpe.gguf"},
        {"Mistral-7B", "llama", "mistralai/Mistral-7B-v0.1", 4096, 32, 32, 8, 14336, 32000, 32768, 10000.0f, 1e-5f, false, false, false, 1, 1, 4, 8192, "ggml-vocab-llama-spm.gguf"},
        {"TinyLlama-1.1B", "llama", "TinyLlama/TinyLlama-1.1B-Chat-v1.0", 2048, 22, 32, 4, 5632, 32000, 2048, 10000.0f, 1e-5f, false, false, false, 1, 1, 4, 8192, "ggml-vocab-llama-spm.gguf"},
        {"Qwen2.5-0.5B", "qwen2", "Qwen/Qwen2.5-0.5B", 896, 24, 14, 2, 4864, 151936, 32768, 1000000.0f, 1e-6f, true, true, false, 1, 1, 4, 8192, "(Qwen2 BPE; none in ../shared/vocab)"},
        {"Qwen2.5-1.5B", "qwen2", "Qwen/Qwen2.5-1.5B", 1536, 28, 12, 2, 8960, 151936, 131072, 1000000.0f, 1e-6f, true, true, false, 1, 1, 4, 8192, "(Qwen2 BPE; none in ../shared/vocab)"},
        {"SmolLM2-135M", "llama", "HuggingFaceTB/SmolLM2-135M", 576, 30, 9, 3, 1536, 49152, 8192, 100000.0f, 1e-5f, true, false, false, 1, 1, 4, 8192, "ggml-vocab-starcoder.gguf (same size)"},
        // Tiny shapes: n_embd and n_ff multiples of 256 so that every K-quant applies; one untied llama, one
        // tied llama with Llama-3 rope scaling (rope_freqs), one qwen2 (biases, NeoX rope, tied).
        {"tiny-llama", "llama", "", 256, 4, 8, 4, 768, 0, 2048, 10000.0f, 1e-5f, false, false, false, 1, 1, 4, 8192, "any"},
        {"tiny-llama3", "llama", "", 256, 4, 4, 2, 768, 0, 8192, 500000.0f, 1e-5f, true, false, true, 32, 1, 4, 256, "any"},
        {"tiny-qwen2", "qwen2", "", 256, 4, 4, 2, 512, 0, 4096, 1000000.0f, 1e-6f, true, true, false, 1, 1, 4, 8192, "any"},
    };
    return table;
}

const preset* find_preset(std::string_view name) {
    auto lower = [](std::string_view s) {
        std::string r(s);
        for (char& c : r) c = char(std::tolower(static_cast<unsigned char>(c)));
        return r;
    };
    const std::string want = lower(name);
    for (const preset& p : presets())
        if (lower(p.name) == want) return &p;
    return nullptr;
}

uint64_t n_params(const preset& p, int32_t n_layer, int64_t n_vocab) {
    const uint64_t E = uint64_t(p.n_embd), Q = uint64_t(p.head_dim()) * uint64_t(p.n_head),
                   KV = uint64_t(p.head_dim()) * uint64_t(p.n_head_kv), F = uint64_t(p.n_ff), V = uint64_t(n_vocab);
    // per layer: 2 norms, q k v o, gate up down, optional biases
    uint64_t layer = 2 * E + E * Q + 2 * E * KV + Q * E + 3 * E * F;
    if (p.qkv_bias) layer += Q + 2 * KV;
    return E * V * (p.tied ? 1 : 2) + E + uint64_t(n_layer) * layer;
}

}  // namespace tfu::synth
