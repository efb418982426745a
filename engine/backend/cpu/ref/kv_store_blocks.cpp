// ref::kv_store_blocks: K rows src0 and V rows src1 (hd * n_head_kv, n) of positions i[0].. into the paged cache of
// ext (kv_block_map, host memory), one kv_write_row per (row, KV head): the bytes the host's block table writes.
#include "backend/cpu/ref/ref_ops.h"
#include "backend/kv_block_map.h"

namespace tfu::ref {

void kv_store_blocks(const op& o) {
    const kv_block_map& m = *static_cast<const kv_block_map*>(o.ext);
    const tensor* parts[2] = {o.src[0], o.src[1]};
    const int32_t B = m.k.block_tokens, hd = m.k.head_dim;
    for (int p = 0; p < 2; ++p) {
        const kv_layout& l = p == 0 ? m.k : m.v;
        const uint64_t off = p == 0 ? m.k_offset : m.v_offset;
        for (int64_t j = 0; j < parts[p]->nrows(); ++j) {
            const int64_t pos = o.i[0] + j;
            uint8_t* block = reinterpret_cast<uint8_t*>(uintptr_t(m.blocks[pos / B])) + off;
            const float* row = static_cast<const float*>(parts[p]->row(j));
            for (int32_t h = 0; h < m.n_head_kv; ++h)
                kv_write_row(l, block + size_t(h) * l.bytes, int32_t(pos % B), row + int64_t(h) * hd);
        }
    }
}

}  // namespace tfu::ref
