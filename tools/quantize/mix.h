// Quantization mixes for tfusion-quantize: the TYPE argument (a pure weight type such as "q4_K", or one of
// llama.cpp's named mixes such as "Q4_K_M") and the rule that picks each tensor's type.
//
// The rules follow llama.cpp's llama_tensor_get_type (src/llama-quant.cpp, read for the facts, not copied):
// - Tensors that are not quantized: 1-D tensors (norms, biases; written as f32), names not ending in "weight",
//   names containing "_norm.weight"; 2-D ones keep their source type.
// - Mixes: output.weight (and token_embd.weight when the embedding is tied, i.e. there is no output.weight)
//   gets q6_K unless the mix's base type is q8_0 (then q8_0); q8_0 when ne[0] is not a multiple of the base
//   type's block. attn_v / attn_qkv, ffn_down and attn_output are bumped per mix (see mix.cpp), using
//   use_more_bits(i, n) = i < n/8 || i >= 7n/8 || (i - n/8) % 3 == 2 for Q4_K_M / Q5_K_M.
// - Pure types (lowercase, e.g. "q4_0"): every quantizable tensor gets that type (llama-quantize --pure).
// - Shape fallback (both): ne[0] % 256 != 0 turns q2_K/q3_K into q4_0, q4_K into q5_0, q5_K into q5_1,
//   q6_K into q8_0; ne[0] % 32 != 0 (after that) turns any block type into f16.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"

namespace tfu::quantize {

struct mix {
    std::string name;   // as given ("Q4_K_M", "q4_0", ...)
    dtype base;         // the default weight type
    uint32_t ftype;     // llama.cpp's LLAMA_FTYPE_* value, written as general.file_type
    bool pure;          // no per-tensor bumps
};

// Parses TYPE (case-sensitive: lowercase names are pure types, uppercase names mixes); throws tfu::error(TFU_STATUS_INVALID_ARGUMENT) listing the accepted names.
mix parse_mix(std::string_view type);
// All accepted TYPE names, for usage messages.
std::vector<std::string> mix_names();

// One tensor as the policy sees it.
struct tensor_desc {
    std::string name;
    dtype type;       // source type
    uint32_t n_dims;
    int64_t ne0;
};

// Picks the type of every tensor of a model (file order matters: the attn_v counter runs in file order, as in
// llama.cpp). n_layer: the model's block count (0: counted from the ffn_down tensors); n_gqa: attention heads
// per KV head (Q2_K gives attn_v q4_K instead of q3_K when it is >= 4).
std::vector<dtype> choose_types(const mix& m, const std::vector<tensor_desc>& tensors, int n_layer, int n_gqa);

}  // namespace tfu::quantize
