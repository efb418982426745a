// The embedded SPIR-V of shaders/*.comp (generated into the build tree by embed_spirv.cmake).
#pragma once

#include <cstddef>
#include <cstdint>

namespace tfu::vk {

struct shader_blob {
    const char* name;     // the variant name given in CMakeLists.txt (e.g. "mul_mat_vec_subgroup")
    const uint32_t* code; // SPIR-V words
    size_t n_words;
};

extern const shader_blob k_shaders[];
extern const size_t k_n_shaders;

}  // namespace tfu::vk
