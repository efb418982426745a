// Lookup of architectures by their GGUF name.
#include "model/arch.h"

namespace tfu {
namespace {
const arch_spec* const k_archs[] = {&k_arch_llama, &k_arch_qwen2};
}

const arch_spec* find_arch(std::string_view name) {
    for (const arch_spec* a : k_archs)
        if (name == a->name) return a;
    return nullptr;
}

std::string supported_arch_names() {
    std::string s;
    for (const arch_spec* a : k_archs) s += (s.empty() ? "" : ", ") + std::string(a->name);
    return s;
}

}  // namespace tfu
