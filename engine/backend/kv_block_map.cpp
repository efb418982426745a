// kv_block_map on host memory: the paged_kv_view of its blocks (kv_block_map.h).
#include "backend/kv_block_map.h"

#include "core/error.h"

namespace tfu {

paged_kv_view kv_block_map_view(const kv_block_map& m, int32_t n_blocks, std::vector<kv_rows>& k,
                                std::vector<kv_rows>& v) {
    TFU_CHECK(n_blocks >= 0 && n_blocks <= m.n_blocks);
    const size_t nh = size_t(m.n_head_kv);
    k.resize(size_t(n_blocks) * nh);
    v.resize(k.size());
    for (int32_t b = 0; b < n_blocks; ++b) {
        const uint8_t* base = reinterpret_cast<const uint8_t*>(uintptr_t(m.blocks[b]));
        for (size_t h = 0; h < nh; ++h) {
            k[size_t(b) * nh + h] = {&m.k, base + m.k_offset + h * m.k.bytes, m.k.block_tokens};
            v[size_t(b) * nh + h] = {&m.v, base + m.v_offset + h * m.v.bytes, m.v.block_tokens};
        }
    }
    paged_kv_view view;
    view.n_blocks = n_blocks;
    view.n_head_kv = m.n_head_kv;
    view.block_tokens = m.k.block_tokens;
    view.k = k.data();
    view.v = v.data();
    return view;
}

op kv_block_map_as_paged(const op& o, paged_kv_view& view, std::vector<kv_rows>& k, std::vector<kv_rows>& v) {
    const kv_block_map& m = *static_cast<const kv_block_map*>(o.ext);
    const int64_t B = m.k.block_tokens;
    const int64_t end = int64_t(o.i[0]) + o.src[0]->ne[2];  // positions the last query sees, + 1
    view = kv_block_map_view(m, int32_t((end + B - 1) / B), k, v);
    op paged = o;
    paged.type = op_type::ATTENTION_PAGED;
    paged.ext = &view;
    return paged;
}

}  // namespace tfu
