// ROPE q + ROPE k + KV_STORE_BLOCKS in one launch (fused_rope_blocks.h), one launch of a decode step's layer fewer
// than rope_pair_kernel + kv_store_blocks_kernel (2-5 us each on an H100).
// Launch: one block of 64 threads per row (rope_pair_kernel's shape): blocks [0, q rows) rotate q's rows (token t,
// head h); blocks [q rows, q rows + k rows) rotate k's row (t, h), then, after a barrier, warp 0 encodes the
// rotated row into the cache (kv_encode.cuh) at position first + t; the remaining blocks encode v's rows (t, h).
#include "fused_rope_blocks.h"
#include "kv_encode.cuh"
#include "rope_row.cuh"

namespace tfu::cuda {

namespace {

struct blocks_dst {
    kv_part_dst k, v;
    const uint64_t* blocks;
    int block_tokens;
    const uint8_t* xv;  // v rows (hd * n_head_kv) f32
    size_t xv_stride;
};

__global__ void rope_store_blocks_kernel(rope_rows q, rope_rows kk, blocks_dst d, unsigned q_blocks, unsigned k_blocks,
                                         const int32_t* __restrict__ pos, const float* __restrict__ factors, int n_rot,
                                         bool neox, double base, double freq_scale, int first_arg,
                                         const int32_t* first_dev) {
    __shared__ float xw[k_max_head_dim];
    __shared__ uint8_t cw[k_max_head_dim + 1];
    const unsigned b = blockIdx.x;
    const bool is_v = b >= q_blocks + k_blocks;
    const float* src = nullptr;  // the row to encode
    int64_t r;                   // row t * n_head_kv + h of k or v
    if (!is_v) {
        const bool is_k = b >= q_blocks;
        const rope_rows s = is_k ? kk : q;
        r = is_k ? b - q_blocks : b;  // row = t * n_head + h
        const float* xr = reinterpret_cast<const float*>(s.x + size_t(r) * s.x_stride);
        float* yr = reinterpret_cast<float*>(s.y + size_t(r) * s.y_stride);
        rope_row(xr, yr, pos[r / s.n_head], factors, s.hd, n_rot, neox, base, freq_scale);
        if (!is_k) return;
        __syncthreads();  // the block's rotated row, written by its threads, is visible to all of them now
        src = yr;
    } else {
        r = b - q_blocks - k_blocks;
        src = reinterpret_cast<const float*>(d.xv + size_t(r / kk.n_head) * d.xv_stride) + (r % kk.n_head) * kk.hd;
    }
    if (threadIdx.x >= k_warp) return;
    const int64_t t = r / kk.n_head, h = r % kk.n_head;
    const kv_part_dst& part = is_v ? d.v : d.k;
    const int p = (first_dev ? *first_dev : first_arg) + int(t);
    uint8_t* blk = reinterpret_cast<uint8_t*>(d.blocks[p / d.block_tokens]) + part.offset + size_t(h) * part.head_bytes;
    kv_encode_row(src, int(kk.hd), part, blk, p % d.block_tokens, xw, cw, int(threadIdx.x));
}

bool overlaps(const tensor& a, const tensor& b) { return tensors_overlap(a, b); }

}  // namespace

bool rope_store_blocks_fusable(const op* ops) {
    const op &rq = ops[0], &rk = ops[1], &st = ops[2];
    if (st.type != op_type::KV_STORE_BLOCKS) return false;
    const kv_block_map& m = *static_cast<const kv_block_map*>(st.ext);
    const tensor& dk = *rk.dst;
    const tensor& xk = *st.src[0];
    const tensor& xv = *st.src[1];
    const int64_t hd = dk.ne[0], nkv = dk.ne[1], n = dk.ne[2];
    if (dk.ne[3] != 1 || dk.nb[1] != size_t(hd) * sizeof(float)) return false;  // rows (t, h) of hd floats
    if (m.k.head_dim != hd || m.n_head_kv != nkv) return false;
    if (xk.data != dk.data || xk.ne[0] != hd * nkv || xk.ne[1] != n || xk.nb[1] != dk.nb[2]) return false;
    if (xv.ne[0] != hd * nkv || xv.ne[1] != n || xv.ne[2] != 1 || xv.ne[3] != 1) return false;
    return !overlaps(xv, *rq.dst) && !overlaps(xv, *rk.dst);
}

void rope_store_blocks(context& ctx, const op* ops) {
    const op &rq = ops[0], &rk = ops[1], &st = ops[2];
    const kv_block_map& m = *static_cast<const kv_block_map*>(st.ext);
    const unsigned q_blocks = unsigned(rq.src[0]->nrows()), k_blocks = unsigned(rk.src[0]->nrows());
    const float* factors = rq.src[2] ? static_cast<const float*>(rq.src[2]->data) : nullptr;
    const blocks_dst d{kv_part_dst_of(m.k, m.k_offset), kv_part_dst_of(m.v, m.v_offset), m.blocks, m.k.block_tokens,
                       static_cast<const uint8_t*>(st.src[1]->data), st.src[1]->nb[1]};
    // The store's first position: the device-read slot of KV_STORE_BLOCKS, two ops after the launch's first.
    rope_store_blocks_kernel<<<q_blocks + 2 * k_blocks, 64, 0, ctx.stream>>>(
        rope_rows_of(rq), rope_rows_of(rk), d, q_blocks, k_blocks, static_cast<const int32_t*>(rq.src[1]->data),
        factors, rq.i[0], rq.i[1] == 2, double(rq.f[0]), double(rq.f[1]), st.i[0], ctx.dyn_at(2));
    check_launch("rope_store_blocks_kernel");
}

}  // namespace tfu::cuda
