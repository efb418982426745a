// Run-time CPU feature check for the fast path's AVX2 kernels (env TFU_CPU_SIMD=scalar turns them off).
#include <cstdlib>
#include <cstring>

#include "backend/cpu/cpu_ops.h"

namespace tfu::cpu {

bool cpu_has_avx2() {
    const char* env = std::getenv("TFU_CPU_SIMD");
    if (env && std::strcmp(env, "scalar") == 0) return false;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#else
    return false;
#endif
}

}  // namespace tfu::cpu
