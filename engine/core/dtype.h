// Element and block types of tensors, numbered as in GGUF (ggml_type), with their block geometry.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tfu {

// Values are GGUF's on-disk type ids; never renumber.
enum class dtype : uint32_t {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    BF16 = 30,
};

struct dtype_traits {
    const char* name;     // "f32", "q4_0", ... as llama.cpp prints them
    int64_t block_size;   // elements per block (1 for plain types)
    size_t type_size;     // bytes per block
    bool quantized;
    bool weight_type;     // supported as a model weight by this engine
};

// nullptr for ids this engine does not know (GGUF files may name types we refuse).
const dtype_traits* dtype_traits_of(uint32_t id);
const dtype_traits& traits(dtype t);  // for known types only
inline const char* dtype_name(dtype t) { return traits(t).name; }
// Bytes of a row of n elements; n must be a multiple of the block size.
inline size_t row_size(dtype t, int64_t n) {
    const dtype_traits& tr = traits(t);
    return size_t(n / tr.block_size) * tr.type_size;
}

constexpr int QK4_0 = 32, QK4_1 = 32, QK5_0 = 32, QK5_1 = 32, QK8_0 = 32, QK8_1 = 32, QK_K = 256, K_SCALE_SIZE = 12;

}  // namespace tfu
