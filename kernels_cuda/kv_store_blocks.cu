// KV_STORE_BLOCKS: K rows src0 and V rows src1 (hd * n_head_kv, n) f32 of positions first .. first+n-1 into the
// paged cache of a kv_block_map (backend/kv_block_map.h), each (row, KV head) encoded as kv_write_row does
// (kv_encode.cuh). A decoder layer's ROPE q, ROPE k and this op usually run as one launch instead
// (fused_rope_blocks.cu).
// Launch: one warp per (column, KV head, K or V); 4 warps per block (head size <= k_max_head_dim). first comes as a
// launch argument, or from device memory (context::dyn_at) in replays.
#include "kv_encode.cuh"

namespace tfu::cuda {

namespace {

constexpr int k_store_warps = 4;

struct store_params {
    const uint8_t* x[2];  // K, V rows (hd * n_head_kv) f32, x_stride[i] bytes apart
    size_t x_stride[2];
    kv_part_dst part[2];
    const uint64_t* blocks;
    int hd, n_head_kv, block_tokens, n, first;
    const int32_t* first_dev;
};

__global__ void __launch_bounds__(k_store_warps * k_warp) kv_store_blocks_kernel(store_params p) {
    __shared__ float xs[k_store_warps][k_max_head_dim];
    __shared__ uint8_t codes[k_store_warps][k_max_head_dim + 1];
    const int warp = threadIdx.x / k_warp, lane = threadIdx.x % k_warp;
    const int item = blockIdx.x * k_store_warps + warp;  // (j, part, h), h fastest
    if (item >= p.n * 2 * p.n_head_kv) return;           // whole warps leave together
    const int h = item % p.n_head_kv, which = (item / p.n_head_kv) % 2, j = item / (2 * p.n_head_kv);
    const kv_part_dst& s = p.part[which];
    const int pos = (p.first_dev ? *p.first_dev : p.first) + j;
    uint8_t* blk = reinterpret_cast<uint8_t*>(p.blocks[pos / p.block_tokens]) + s.offset + size_t(h) * s.head_bytes;
    const float* x = reinterpret_cast<const float*>(p.x[which] + size_t(j) * p.x_stride[which]) + size_t(h) * p.hd;
    kv_encode_row(x, p.hd, s, blk, pos % p.block_tokens, xs[warp], codes[warp], lane);
}

}  // namespace

void kv_store_blocks(context& ctx, const op& o) {
    const kv_block_map& m = *static_cast<const kv_block_map*>(o.ext);
    store_params p{};
    for (int i = 0; i < 2; ++i) {
        p.x[i] = static_cast<const uint8_t*>(o.src[i]->data);
        p.x_stride[i] = o.src[i]->nb[1];
    }
    p.part[0] = kv_part_dst_of(m.k, m.k_offset);
    p.part[1] = kv_part_dst_of(m.v, m.v_offset);
    p.blocks = m.blocks;
    p.hd = m.k.head_dim;
    p.n_head_kv = m.n_head_kv;
    p.block_tokens = m.k.block_tokens;
    p.n = int(o.src[0]->nrows());
    p.first = o.i[0];
    p.first_dev = ctx.dyn_at();
    const int items = p.n * 2 * p.n_head_kv;
    kv_store_blocks_kernel<<<unsigned((items + k_store_warps - 1) / k_store_warps), k_store_warps * k_warp, 0,
                             ctx.stream>>>(p);
    check_launch("kv_store_blocks_kernel");
}

}  // namespace tfu::cuda
