// ref::attention_blocks: ref::attention_paged over the paged_kv_view of ext's blocks (kv_block_map, host memory).
#include <vector>

#include "backend/cpu/ref/ref_ops.h"
#include "backend/kv_block_map.h"

namespace tfu::ref {

void attention_blocks(const op& o) {
    paged_kv_view view;
    std::vector<kv_rows> k, v;
    attention_paged(kv_block_map_as_paged(o, view, k, v));
}

}  // namespace tfu::ref
