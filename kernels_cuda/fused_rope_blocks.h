// ROPE q + ROPE k + KV_STORE_BLOCKS in one launch (fused_rope_blocks.cu): a decoder layer's ops between the Q/K/V
// projections and the attention when its cache is a block map (the paged cache in device memory).
#pragma once

#include "cuda_ops.h"

namespace tfu::cuda {

// ops[0..3): ROPE(dq, q), ROPE(dk, k) that fuse as a pair (fused_rows.h; the caller checked), then
// KV_STORE_BLOCKS(xk, xv) where xk is dk's memory seen as (hd * n_head_kv, n) rows (the roped k), xv has that
// shape and overlaps neither rotated result, and the map's head size and KV heads are dk's. The cache blocks are
// pool memory, never one of the ropes' tensors (the block array is on the device: not checked here).
bool rope_store_blocks_fusable(const op* ops);
// One launch, bit-identical to rope_pair_kernel + kv_store_blocks_kernel.
void rope_store_blocks(context& ctx, const op* ops);

}  // namespace tfu::cuda
