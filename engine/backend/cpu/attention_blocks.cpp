// cpu::attention_blocks: cpu::attention_paged over the paged_kv_view of a kv_block_map's blocks (host memory).
#include <vector>

#include "backend/cpu/attention_split.h"
#include "backend/kv_block_map.h"

namespace tfu::cpu {

void attention_blocks(context& ctx, const op& o) {
    paged_kv_view view;
    std::vector<kv_rows> k, v;
    attention_paged(ctx, kv_block_map_as_paged(o, view, k, v));
}

}  // namespace tfu::cpu
