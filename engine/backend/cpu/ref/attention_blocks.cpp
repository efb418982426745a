// ref::attention_blocks: ref::attention_paged over the paged_kv_view of ext's blocks (kv_block_map, host memory).
#include <vector>

#include "backend/cpu/ref/ref_ops.h"
#include "backend/kv_block_map.h"

namespace tfu::ref {

void attention_blocks(const op& o) {
    const kv_block_map& m = *static_cast<const kv_block_map*>(o.ext);
    const int64_t B = m.k.block_tokens;
    const int64_t end = int64_t(o.i[0]) + o.src[0]->ne[2];  // positions the last query sees, + 1
    std::vector<kv_rows> k, v;
    const paged_kv_view view = kv_block_map_view(m, int32_t((end + B - 1) / B), k, v);
    op paged = o;
    paged.type = op_type::ATTENTION_PAGED;
    paged.ext = &view;
    attention_paged(paged);
}

}  // namespace tfu::ref
