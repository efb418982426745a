// The weight tensors of a decoder model, as views into the GGUF mapping, with their shapes checked.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "core/tensor.h"
#include "model/arch.h"
#include "model/hparams.h"

namespace tfu {
namespace gguf { class file; }

// Shapes as ne (innermost first). A tensor with data == nullptr is absent.
struct layer_weights {
    tensor attn_norm;  // (n_embd) f32
    tensor wq;         // (n_embd, n_head * head_dim)
    tensor wk;         // (n_embd, n_head_kv * head_dim)
    tensor wv;         // (n_embd, n_head_kv * head_dim)
    tensor bq, bk, bv; // (n_head * head_dim), (n_head_kv * head_dim) x2; f32; qwen2
    tensor wo;         // (n_head * head_dim, n_embd)
    tensor ffn_norm;   // (n_embd) f32
    tensor ffn_gate;   // (n_embd, n_ff)
    tensor ffn_up;     // (n_embd, n_ff)
    tensor ffn_down;   // (n_ff, n_embd)
};

struct model_weights {
    tensor tok_embd;     // (n_embd, n_vocab)
    tensor output_norm;  // (n_embd) f32
    tensor output;       // (n_embd, n_vocab); the same view as tok_embd when tied
    tensor rope_freqs;   // (n_rot / 2) f32 frequency divisors (Llama 3.1 scaling), or absent
    std::vector<layer_weights> layers;
    uint64_t n_params = 0;
    uint64_t n_bytes = 0;
    dtype main_type = dtype::F32;  // the type holding most elements of the 2-D weights
};

// Finds every tensor the architecture needs, checks dtype and shape, and sets hp.n_vocab. A missing tensor, a
// wrong shape or a type that is not a weight type throws (INVALID_FILE / UNSUPPORTED) naming the tensor.
model_weights load_weights(const gguf::file& f, const arch_spec& arch, hparams& hp);

// For a device backend: copies every weight tensor into the backend's memory (one allocation per tensor, or per
// group whose products a backend joins: a layer's Q/K/V, its gate/up; views of the same data, like a tied output,
// share it) and points the tensors there. Returns the allocations, which the caller frees with be.free(). Throws
// OUT_OF_MEMORY (naming the tensor) after freeing what it had allocated.
std::vector<void*> place_weights(model_weights& w, backend& be);

// The RoPE frequency divisors for Llama-3 scaling computed from hparams (n_rot / 2 values).
std::vector<float> llama3_rope_factors(const hparams& hp);

}  // namespace tfu
