// The supported architectures and what distinguishes them (one file per family: llama.cpp, qwen2.cpp).
#pragma once

#include <string>
#include <string_view>

#include "model/hparams.h"

namespace tfu {

struct arch_spec {
    const char* name;        // general.architecture
    rope_layout rope;        // how RoPE pairs dimensions
    bool qkv_bias;           // attn_{q,k,v}.bias tensors are required (qwen2); others must not have them... or may
    bool qkv_bias_optional;  // llama-family files may carry biases (some fine-tunes); used when present
};

extern const arch_spec k_arch_llama;  // llama.cpp
extern const arch_spec k_arch_qwen2;  // qwen2.cpp

const arch_spec* find_arch(std::string_view name);  // nullptr if unsupported
std::string supported_arch_names();                 // "llama, qwen2"

}  // namespace tfu
