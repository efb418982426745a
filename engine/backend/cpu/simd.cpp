// Run-time CPU feature checks for the fast path's AVX2 kernels: the one place that asks the CPU.
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "backend/cpu/cpu_ops.h"
#include "backend/cpu/vec_dot.h"

namespace tfu::cpu {

// AVX2 + FMA + F16C, whatever TFU_CPU_SIMD says. F16C is read from CPUID leaf 1 (ECX bit 29) because clang's
// __builtin_cpu_supports does not know "f16c".
bool cpu_has_avx2_fma() {
#if defined(__x86_64__) || defined(__i386__)
    static const bool has = [] {
        __builtin_cpu_init();
        unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
        const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & (1u << 29)) != 0;
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
    }();
    return has;
#else
    return false;
#endif
}

bool cpu_has_avx2() {
    const char* env = std::getenv("TFU_CPU_SIMD");
    if (env && std::strcmp(env, "scalar") == 0) return false;
    return cpu_has_avx2_fma();
}

}  // namespace tfu::cpu
