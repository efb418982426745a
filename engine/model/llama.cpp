// The llama family (Llama 2/3, Mistral, TinyLlama, SmolLM): pre-norm decoder, RMSNorm, GQA attention with RoPE on
// interleaved pairs (llama.cpp's converter un-permutes Q/K into that layout), SwiGLU MLP, optional tied output.
#include "model/arch.h"

namespace tfu {

const arch_spec k_arch_llama = {"llama", rope_layout::normal, /*qkv_bias=*/false, /*qkv_bias_optional=*/true};

}  // namespace tfu
