// Run-time CPU feature checks for the fast path's AVX2 and AVX-512 kernels: the one place that asks the CPU.
// TFU_CPU_SIMD=avx512|avx2|scalar caps the level (the highest the CPU has is used without it, or with avx512).
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "backend/cpu/attention_split.h"
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

// CPUID leaf 7 sub-leaf 0 (Intel SDM vol. 2A, CPUID): EBX bit 16 AVX512F, 17 AVX512DQ, 30 AVX512BW, 31 AVX512VL;
// ECX bit 11 AVX512_VNNI. The OS must save the state: CPUID leaf 1 ECX bit 27 (OSXSAVE), then XCR0 (XGETBV 0)
// bits 1-2 (SSE, AVX) and 5-7 (opmask, upper halves of zmm0-15, zmm16-31) (SDM vol. 1, sec. 15.2).
bool cpu_has_avx512_hw() {
#if defined(__x86_64__) || defined(__i386__)
    static const bool has = [] {
        if (!cpu_has_avx2_fma()) return false;  // the AVX-512 kernels fall back to the AVX2 ones for some kinds
        unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
        if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || (ecx & (1u << 27)) == 0) return false;
        unsigned xlo = 0, xhi = 0;
        __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
        if ((xlo & 0xe6u) != 0xe6u) return false;
        if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
        const unsigned need_ebx = (1u << 16) | (1u << 17) | (1u << 30) | (1u << 31);
        return (ebx & need_ebx) == need_ebx && (ecx & (1u << 11)) != 0;
    }();
    return has;
#else
    return false;
#endif
}

bool cpu_has_avx512() {
    const char* env = std::getenv("TFU_CPU_SIMD");
    if (env && (std::strcmp(env, "scalar") == 0 || std::strcmp(env, "avx2") == 0)) return false;
    return cpu_has_avx512_hw();
}

}  // namespace tfu::cpu
