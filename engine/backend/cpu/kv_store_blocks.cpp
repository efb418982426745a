// cpu::kv_store_blocks: K and V rows into the paged cache of a kv_block_map (host memory), one kv_write_row per
// (row, KV head) as the block table writes them (so both paths leave the same bytes); parallel over KV heads.
#include "backend/cpu/cpu_ops.h"
#include "backend/kv_block_map.h"

namespace tfu::cpu {

void kv_store_blocks(context& ctx, const op& o) {
    const kv_block_map& m = *static_cast<const kv_block_map*>(o.ext);
    const int32_t B = m.k.block_tokens, hd = m.k.head_dim;
    const int64_t n = o.src[0]->nrows();
    ctx.pool.parallel_for(2 * int64_t(m.n_head_kv), [&](int64_t i0, int64_t i1, int) {
        for (int64_t i = i0; i < i1; ++i) {
            const bool is_k = i < m.n_head_kv;
            const int64_t h = is_k ? i : i - m.n_head_kv;
            const kv_layout& l = is_k ? m.k : m.v;
            const tensor& x = *o.src[is_k ? 0 : 1];
            for (int64_t j = 0; j < n; ++j) {
                const int64_t pos = o.i[0] + j;
                uint8_t* block = reinterpret_cast<uint8_t*>(uintptr_t(m.blocks[pos / B])) +
                                 (is_k ? m.k_offset : m.v_offset) + size_t(h) * l.bytes;
                kv_write_row(l, block, int32_t(pos % B), static_cast<const float*>(x.row(j)) + h * hd);
            }
        }
    });
}

}  // namespace tfu::cpu
