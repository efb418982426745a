// qwen2 (Qwen2, Qwen2.5): the llama decoder with biases on the Q, K and V projections and NeoX-layout RoPE.
#include "model/arch.h"

namespace tfu {

const arch_spec k_arch_qwen2 = {"qwen2", rope_layout::neox, /*qkv_bias=*/true, /*qkv_bias_optional=*/false};

}  // namespace tfu
