// Run-time choice of the prefill tile GEMM kernel (gemm.h): AVX2 when the fast path uses AVX2, else none.
#include "backend/cpu/gemm.h"

#include "backend/cpu/vec_dot.h"

namespace tfu::cpu {

gemm_fn gemm_kernel(dtype w) { return vec_dot_has_avx2() ? kernels::avx2_gemm(w) : nullptr; }

gemm_fn gemm_kernel_avx2(dtype w) { return cpu_has_avx2_fma() ? kernels::avx2_gemm(w) : nullptr; }

}  // namespace tfu::cpu
