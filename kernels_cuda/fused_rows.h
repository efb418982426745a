// Fused launches of the small row-wise ops of a decoder layer (fused_rows.cu), called by the backend's run() loop:
// the residual ADD with the RMS_NORM after it, the ROPE of q with the ROPE of k, the KV_STORE of k with that of v.
#pragma once

#include <cstddef>

#include "cuda_ops.h"

namespace tfu::cuda {

// ops[0 .. n_ops) are the next ops of a run() (already checked by check_op and supported_here). When ops[0] starts
// one of these pairs, enqueues one launch that computes both ops and returns 2 (4 for a ROPE pair followed by a
// KV_STORE pair that stores the roped k: one launch for all four); otherwise enqueues nothing and returns 0 (the
// ops then run one by one). The results are bit-identical to the two ops' own kernels (same
// arithmetic in the same order per element), so fusing never changes a model's output. The pair rules below are
// backend/fused_pairs.h's (shared with the Vulkan backend).
//   ADD(y, a, b), RMS_NORM(xn, y, w): RMS_NORM's src0 is exactly y (data, row stride, shape); b has y's rows or
//       one row (broadcast); each written tensor (y, xn) either overlaps no other tensor of the pair or is the
//       very same rows (in place: y == a, xn == y).
//   ROPE(dq, q, pos, ff), ROPE(dk, k, pos, ff): the same pos tensor, the same factors (or none), the same
//       i[0], i[1], f[0], f[1]; dq and dk are in place or apart from their own source and overlap nothing else of
//       the pair (not the other op's source or destination, not pos or the factors).
//   KV_STORE(ck, xk), KV_STORE(cv, xv): the same i[0] and cache dtype; the cache rows written by each overlap
//       neither source nor each other.
//   ROPE q, ROPE k, KV_STORE(ck, xk), KV_STORE(cv, xv): both pairs as above, xk = the roped k seen as
//       (hd * n_head_kv, n) rows (same memory), xv of that shape; the cache rows overlap none of the ropes'
//       tensors, and xv overlaps neither rotated result.
//   ROPE q, ROPE k, KV_STORE_BLOCKS(xk, xv): the ROPE pair as above, xk and xv as for the four ops
//       (fused_rope_blocks.h); returns 3.
size_t fused_rows(context& ctx, const op* ops, size_t n_ops);

}  // namespace tfu::cuda
