// The split-K (flash-decoding) rule of the GPU backends' decode attention, shared by CUDA
// (kernels_cuda/attention_common.cuh) and Vulkan (kernels_vk/vk_ops.cpp): how many workgroups share one
// (query, head) when n_head x n of them would leave the device idle. Each split takes a contiguous range of the
// visible rows and writes (max, sum, accumulator) partials that a merge launch combines.
#pragma once

#include <algorithm>
#include <cstdint>

namespace tfu {

// No split up to this many visible rows: the merge launch costs more than it saves there.
constexpr int64_t k_attn_split_min_rows = 256;
// At least this many rows per split (one chunk of the Vulkan shader), and at most this many splits.
constexpr int64_t k_attn_split_rows = 128;
constexpr int64_t k_attn_split_max = 64;

// Splits for `blocks` = n_head x n (query, head) pairs over `rows` visible rows (the last query's), aiming at
// `target_blocks` workgroups in all: none when rows <= k_attn_split_min_rows or when the pairs alone reach a
// quarter of the target. The count changes only at k_attn_split_rows boundaries of `rows`, so a kept decode run
// (keyed by it) is recorded again only that often. On an H100 a 1B model's decode at 4K rows takes 32 splits of
// 128 rows (target 8 x 132 SMs); with 2x the SMs as the target, 4K decode ran at 0.71x llama.cpp's and 16K at 0.41x.
inline int attention_split_count(int64_t blocks, int64_t rows, int64_t target_blocks) {
    if (rows <= k_attn_split_min_rows || blocks <= 0 || 4 * blocks >= target_blocks) return 1;
    const int64_t want = (target_blocks + blocks - 1) / blocks;
    const int64_t by_rows = (rows + k_attn_split_rows - 1) / k_attn_split_rows;
    return int(std::max<int64_t>(1, std::min({want, by_rows, k_attn_split_max})));
}

}  // namespace tfu
