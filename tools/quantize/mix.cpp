// Quantization mixes: TYPE names, their llama.cpp file types, and the per-tensor type rules (see mix.h).
#include "mix.h"

#include <cstring>

#include "core/error.h"

namespace tfu::quantize {

namespace {

// LLAMA_FTYPE_* values (llama.h): ALL_F32 0, MOSTLY_F16 1, Q4_0 2, Q4_1 3, Q8_0 7, Q5_0 8, Q5_1 9, Q2_K 10,
// Q3_K_S 11, Q3_K_M 12, Q3_K_L 13, Q4_K_S 14, Q4_K_M 15, Q5_K_S 16, Q5_K_M 17, Q6_K 18, BF16 32.
struct mix_entry {
    const char* name;
    dtype base;
    uint32_t ftype;
    bool pure;
};
const mix_entry k_mixes[] = {
    {"f32", dtype::F32, 0, true},       {"f16", dtype::F16, 1, true},       {"bf16", dtype::BF16, 32, true},
    {"q8_0", dtype::Q8_0, 7, true},     {"q4_0", dtype::Q4_0, 2, true},     {"q4_1", dtype::Q4_1, 3, true},
    {"q5_0", dtype::Q5_0, 8, true},     {"q5_1", dtype::Q5_1, 9, true},     {"q2_K", dtype::Q2_K, 10, true},
    {"q3_K", dtype::Q3_K, 11, true},    {"q4_K", dtype::Q4_K, 14, true},    {"q5_K", dtype::Q5_K, 16, true},
    {"q6_K", dtype::Q6_K, 18, true},
    {"F32", dtype::F32, 0, false},      {"F16", dtype::F16, 1, false},      {"BF16", dtype::BF16, 32, false},
    {"Q8_0", dtype::Q8_0, 7, false},    {"Q4_0", dtype::Q4_0, 2, false},    {"Q4_1", dtype::Q4_1, 3, false},
    {"Q5_0", dtype::Q5_0, 8, false},    {"Q5_1", dtype::Q5_1, 9, false},    {"Q2_K", dtype::Q2_K, 10, false},
    {"Q3_K_S", dtype::Q3_K, 11, false}, {"Q3_K_M", dtype::Q3_K, 12, false}, {"Q3_K_L", dtype::Q3_K, 13, false},
    {"Q4_K_S", dtype::Q4_K, 14, false}, {"Q4_K_M", dtype::Q4_K, 15, false}, {"Q5_K_S", dtype::Q5_K, 16, false},
    {"Q5_K_M", dtype::Q5_K, 17, false}, {"Q6_K", dtype::Q6_K, 18, false},
};

enum class category { output, token_embd, attn_v, attn_output, ffn_down, other };

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }
bool ends_with(const std::string& s, const char* tail) {
    const size_t n = std::strlen(tail);
    return s.size() >= n && s.compare(s.size() - n, n, tail) == 0;
}

category category_of(const std::string& name) {
    if (name == "output.weight") return category::output;
    if (name == "token_embd.weight") return category::token_embd;
    if (contains(name, "attn_qkv.weight") || contains(name, "attn_v.weight")) return category::attn_v;
    if (contains(name, "attn_output.weight")) return category::attn_output;
    if (contains(name, "ffn_down")) return category::ffn_down;
    return category::other;
}

bool quantizable(const tensor_desc& t) {
    return t.n_dims >= 2 && ends_with(t.name, "weight") && !contains(t.name, "_norm.weight") &&
           !contains(t.name, "ffn_gate_inp.weight");
}

bool use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

// ne[0] that a type's blocks do not divide: the matching 32-block type, then f16 (llama.cpp's
// tensor_type_fallback).
dtype shape_fallback(dtype t, int64_t ne0) {
    if (ne0 % traits(t).block_size == 0) return t;
    switch (t) {
        case dtype::Q2_K: case dtype::Q3_K: t = dtype::Q4_0; break;
        case dtype::Q4_K: t = dtype::Q5_0; break;
        case dtype::Q5_K: t = dtype::Q5_1; break;
        case dtype::Q6_K: t = dtype::Q8_0; break;
        default: break;
    }
    return ne0 % traits(t).block_size == 0 ? t : dtype::F16;
}

}  // namespace

mix parse_mix(std::string_view type) {
    for (const mix_entry& e : k_mixes)
        if (type == e.name) return mix{e.name, e.base, e.ftype, e.pure};
    std::string names;
    for (const std::string& n : mix_names()) names += (names.empty() ? "" : " ") + n;
    fail(TFU_STATUS_INVALID_ARGUMENT, "unknown quantization type '" + std::string(type) + "' (accepted: " + names + ")");
}

std::vector<std::string> mix_names() {
    std::vector<std::string> out;
    for (const mix_entry& e : k_mixes) out.emplace_back(e.name);
    return out;
}

std::vector<dtype> choose_types(const mix& m, const std::vector<tensor_desc>& tensors, int n_layer, int n_gqa) {
    int n_attn_v = 0, n_ffn_down = 0;
    bool tied = true;
    for (const tensor_desc& t : tensors) {
        const category c = category_of(t.name);
        n_attn_v += c == category::attn_v;
        n_ffn_down += c == category::ffn_down;
        if (c == category::output) tied = false;
    }
    if (n_layer <= 0) n_layer = n_ffn_down;
    const uint32_t f = m.ftype;
    const bool quantized_base = traits(m.base).quantized;
    int i_attn_v = 0, i_ffn_down = 0;

    std::vector<dtype> out;
    out.reserve(tensors.size());
    for (const tensor_desc& t : tensors) {
        if (t.n_dims < 2) {  // norms, biases
            out.push_back(dtype::F32);
            continue;
        }
        if (!quantizable(t)) {
            out.push_back(t.type);
            continue;
        }
        dtype nt = m.base;
        const category c = category_of(t.name);
        if (quantized_base && !m.pure) {
            if (c == category::output || (tied && c == category::token_embd)) {
                if (t.ne0 % traits(m.base).block_size != 0) nt = dtype::Q8_0;
                else if (m.base != dtype::Q8_0) nt = dtype::Q6_K;
            } else if (c == category::attn_v) {
                if (f == 10) nt = n_gqa >= 4 ? dtype::Q4_K : dtype::Q3_K;                 // Q2_K
                else if (f == 12) nt = i_attn_v < 2 ? dtype::Q5_K : dtype::Q4_K;           // Q3_K_M
                else if (f == 13) nt = dtype::Q5_K;                                        // Q3_K_L
                else if ((f == 15 || f == 17) && use_more_bits(i_attn_v, n_attn_v)) nt = dtype::Q6_K;
                else if (f == 14 && i_attn_v < 4) nt = dtype::Q5_K;                        // Q4_K_S
                ++i_attn_v;
            } else if (c == category::ffn_down) {
                const int i = i_ffn_down, n = n_layer;
                if (f == 10) nt = dtype::Q3_K;
                else if (f == 12) nt = i < n / 16 ? dtype::Q5_K : dtype::Q4_K;
                else if (f == 13) nt = dtype::Q5_K;
                else if (f == 15) nt = use_more_bits(i, n) ? dtype::Q6_K : nt;
                else if (f == 17) nt = use_more_bits(i, n) ? dtype::Q6_K : nt;
                else if (f == 14 && i < n / 8) nt = dtype::Q5_K;
                ++i_ffn_down;
            } else if (c == category::attn_output) {
                if (f == 10) nt = dtype::Q3_K;
                else if (f == 12) nt = dtype::Q4_K;
                else if (f == 13) nt = dtype::Q5_K;
            }
        }
        out.push_back(quantized_base ? shape_fallback(nt, t.ne0) : nt);
    }
    return out;
}

}  // namespace tfu::quantize
