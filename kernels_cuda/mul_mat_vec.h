// The fast decode matrix-vector path of MUL_MAT (mul_mat_vec.cu), with its fusions; called by the backend's run()
// loop and by mul_mat.cu before the generic kernel.
#pragma once

#include <cstddef>

#include "cuda_ops.h"

namespace tfu::cuda {

constexpr int k_mmv_fast_max_cols = 8;

// ops[0 .. n_ops) are the next ops of a run() (already checked). When ops[0] is a MUL_MAT with a fast kernel
// (F32, F16, BF16 with 16-byte aligned rows; Q4_0, Q8_0, Q6_K; Q4_K with 4-byte aligned rows; x of 1 .. 8 columns
// with 16-byte aligned rows), enqueues one launch for it and for the ops after it that can share it, and returns
// how many ops that launch computes:
//   3: MUL_MAT gate, MUL_MAT up (same x, type, shape) and SWIGLU(gate, up): silu(gate) * up is written by the
//      launch (gate and up too);
//   2 or 3: further MUL_MATs of the same x, weight type and k (the Q, K and V projections);
//   1: ops[0] alone;
//   +1: a single MUL_MAT followed by the residual ADD of its result (ADD(y, r, d) or ADD(y, d, r), r of d's shape;
//      y may be r): the launch stores y too.
// When ops[0] is an RMS_NORM whose result is the x of such an int8 launch right after it (the attention and FFN
// norms before Q/K/V and gate/up, the output norm before the output projection), the launch normalises x itself
// and stores the norm's result too (bit-identical to rms_norm.cu): returns 1 + the launch's ops.
// Returns 0 (nothing enqueued) when none applies.
size_t mul_mat_vec_fused(context& ctx, const op* ops, size_t n_ops);

}  // namespace tfu::cuda
