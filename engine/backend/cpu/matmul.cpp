// cpu::mul_mat: dst (m, n) = src0 (k, m; weight dtype) . src1 (k, n), dst[j][i] = w_i . x_j.
// The n activation columns are converted once into the weight's partner format (cpu::vec_dot_type: q8_0,
// q8_K, f16, bf16 or f32) in the backend's scratch buffer, then weight rows are split across threads in
// blocks; for n > 1 (prefill) each block of k_rows weight rows is swept against k_cols activation columns at a
// time, so a weight row is read from memory once per k_cols columns and the block stays in cache meanwhile.
// Where gemm.h has a register-blocked tile kernel for the weight type (Q4_0, Q8_0, F16 on AVX2), n > 1 uses it
// instead: each task hands its k_rows weight rows and all n columns to the kernel.
#include <algorithm>

#include "backend/cpu/cpu_ops.h"
#include "backend/cpu/gemm.h"
#include "backend/cpu/vec_dot.h"

namespace tfu::cpu {

namespace {
constexpr int64_t k_rows = 16;  // weight rows per task (16 rows of a 4096-wide q4_0 matrix: 36 KiB, fits L2)
constexpr int64_t k_cols = 8;   // activation columns swept per weight row while it is in L1
}  // namespace

void mul_mat(context& ctx, const op& o) {
    const tensor& w = *o.src[0];
    const tensor& x = *o.src[1];
    const int64_t k = w.ne[0], m = w.ne[1], n = x.nrows();
    const dtype act = vec_dot_type(w.type);
    const size_t act_row = row_size(act, k);

    // Activations in the partner format: (k, n) rows of act_row bytes. f32 x f32 reads src1 in place.
    const uint8_t* a_base;
    size_t a_stride;
    if (act == dtype::F32) {
        a_base = static_cast<const uint8_t*>(x.data);
        a_stride = x.nb[1];
    } else {
        if (ctx.scratch.size() < act_row * size_t(n)) ctx.scratch.resize(act_row * size_t(n));
        uint8_t* buf = ctx.scratch.data();
        ctx.pool.parallel_for(n, [&](int64_t b, int64_t e, int) {
            for (int64_t j = b; j < e; ++j)
                quantize_activation(act, static_cast<const float*>(x.row(j)), buf + size_t(j) * act_row, k);
        });
        a_base = buf;
        a_stride = act_row;
    }

    const int64_t n_blocks = (m + k_rows - 1) / k_rows;
    const gemm_fn gemm = n > 1 ? gemm_kernel(w.type) : nullptr;
    if (gemm != nullptr) {
        float* d0 = static_cast<float*>(o.dst->row(0));
        const size_t d_stride = o.dst->nb[1];
        ctx.pool.parallel_for(n_blocks, [&](int64_t b, int64_t e, int) {
            const int64_t i0 = b * k_rows, i1 = std::min(m, e * k_rows);
            gemm(w.row(i0), w.nb[1], a_base, a_stride, k, d0 + i0, d_stride, i1 - i0, n);
        });
        return;
    }

    const vec_dot_fn dot = vec_dot_kernel(w.type);  // resolved once: the inner loop does not re-validate
    ctx.pool.parallel_for(n_blocks, [&](int64_t b, int64_t e, int) {
        for (int64_t blk = b; blk < e; ++blk) {
            const int64_t i0 = blk * k_rows, i1 = std::min(m, i0 + k_rows);
            for (int64_t j0 = 0; j0 < n; j0 += k_cols) {
                const int64_t j1 = std::min(n, j0 + k_cols);
                for (int64_t i = i0; i < i1; ++i) {
                    const void* wr = w.row(i);
                    for (int64_t j = j0; j < j1; ++j)
                        static_cast<float*>(o.dst->row(j))[i] = dot(wr, a_base + size_t(j) * a_stride, k);
                }
            }
        }
    });
}

}  // namespace tfu::cpu
