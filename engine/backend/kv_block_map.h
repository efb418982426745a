// A session's paged KV cache as the KV_STORE_BLOCKS and ATTENTION_BLOCKS ops address it in a backend's own memory
// (a device's, or the host's): the pool blocks of its table (kv/block_pool.h) as one array of block addresses.
//
// Position p is row p % B of table block b = p / B (B = k.block_tokens). For KV head h of the map's layer:
//   K head block = blocks[b] + k_offset + h * k.bytes     (kv_layout k, kv_format.h)
//   V head block = blocks[b] + v_offset + h * v.bytes     (kv_layout v)
// Every block has the same layouts, so the map covers the per-token formats only (f16, bf16, q8, and q4 for V):
// per-channel q4 keys keep their newest rows in the table's f16 residual, on the host (kv/block_table.h).
// The host fills the map once per (session, layer); `blocks` lives in the backend's memory and the runtime
// rewrites the entries that changed before each forward pass (runtime/paged_kv.h), so that a decode step's ops
// stay the same from one step to the next (the GPU backends replay them: backend/replay_key.h).
#pragma once

#include <cstdint>
#include <vector>

#include "backend/kv_format.h"
#include "backend/op.h"

namespace tfu {

struct kv_block_map {
    kv_layout k, v;                    // head block layouts (kv_layout_make), per token
    int32_t n_head_kv = 0;
    int32_t n_blocks = 0;              // entries of blocks: positions < n_blocks * B may be addressed
    uint64_t k_offset = 0;             // bytes from a block's start to this layer's K part
    uint64_t v_offset = 0;             // ... to its V part
    const uint64_t* blocks = nullptr;  // backend memory: [n_blocks] block start addresses
};

// The paged_kv_view (kv_format.h) of the first n_blocks blocks of a map whose `blocks` is host memory (cpu and
// cpu-ref backends): rows are filled with n_rows = B; k and v are resized to n_blocks * n_head_kv.
paged_kv_view kv_block_map_view(const kv_block_map& m, int32_t n_blocks, std::vector<kv_rows>& k,
                                std::vector<kv_rows>& v);

// An ATTENTION_BLOCKS op `o` over host memory as the ATTENTION_PAGED op over the view of the blocks its positions
// reach (how the cpu and cpu-ref backends run it); the returned op points into view, which points into k and v.
op kv_block_map_as_paged(const op& o, paged_kv_view& view, std::vector<kv_rows>& k, std::vector<kv_rows>& v);

}  // namespace tfu
