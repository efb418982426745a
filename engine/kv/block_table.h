// A session's view of the paged KV cache: its block table (token position -> (block, slot)), the f16 residual
// tail of per-channel q4 keys, the row writers that the KV_STORE step uses, the per-block row sources that
// attention reads, and prefix adoption / publication for copy-on-write sharing.
//
// How the runtime uses it (one forward pass over positions [p, p + n)):
//   table.append(n);                                   // blocks allocated, the tail block made writable (CoW)
//   for each layer l:
//     for each KV head h: table.write_k(l, h, p, n, k_rows, stride); table.write_v(l, h, p, n, v_rows, stride);
//     attention for query i (position p + i), head h -> kv head h_kv:
//       for each table block b with b * B <= p + i:
//         src = table.k_rows(b, l, h_kv)                // {layout, data, n_rows}
//         for t < min(src.n_rows, p + i - b * B + 1): s = kv_dot_row(*src.layout, src.data, t, q) ...
//         then kv_axpy_row(*table.v_rows(b, l, h_kv).layout, ..., t, weight, acc)
// Writes must cover every (layer, head) for every appended position, in increasing position order per
// (layer, head) (as a forward pass does), because q4 key blocks are quantized from the residual rows written
// before, as later rows arrive.
//
// Residual tail (q4 keys only): K rows of the newest R - 1 FULL blocks and of the partial block after them live
// in an f16 buffer of (n_layer, n_head_kv, R, B, d) owned by the table (R = the pool's residual_blocks, default
// 4): R f16 head blocks per (layer, head), table block b in slot b % R. k_rows() of those (up to R) blocks points
// there (layout f16), so the readers do not change; older blocks are read as q4 from the pool. A full block is
// quantized per channel into its pool block when block b + R - 1 fills (so (R-1)B .. RB - 1 recent keys stay
// f16: 96..127 at B = 32, R = 4): KIVI keeps about 128 recent tokens in full precision (arXiv 2402.02750, sec.
// 3.3). Blocks [0, n_final) hold final (quantized) K data; n_final = max(r_, n_tokens / B - (R - 1)) where r_ is
// fixed by append/truncate/adopt. V rows (any format) and
// non-q4 K rows go straight into the block. truncate() into a residual block keeps its f16 rows; into a
// quantized block it dequantizes the kept rows back into the residual (lossy: they were q4). The table records
// how far each (layer, head) was written, so truncate(pos0) also undoes a pass that stopped part-way.
//
// Sharing: adopt_prefix() on an empty table takes the pool's blocks for the longest published prefix of the
// given tokens (full blocks only, which are final); publish_prefix() offers this table's final blocks to the pool
// (for q4 keys not the newest R - 1 full blocks, whose K is still f16 in the residual: their pool data is not
// final). A shared block is never written: append() makes every block it may still write (the partial tail; for
// q4 keys also the residual's full blocks, quantized later) writable (copy if shared) before rows go in.
//
// Device pools (kv_pool_params::device): the table keeps the same bookkeeping, but its blocks are written and read
// on the device by ops (runtime/paged_kv.h builds the kv_block_map); here only whole blocks move (write_image /
// read_image: download / upload; drop_blocks: each moved block rotated in a host copy). The host-side row writers
// and compact refuse (UNSUPPORTED), and q4 keys are refused when the table is made (their f16 tail is host memory).
//
// Thread safety: one table is used by one thread at a time; tables of one pool may run on different threads.
#pragma once

#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "kv/block_pool.h"

namespace tfu {

struct kv_slot {
    int32_t block;  // pool block id
    int32_t slot;   // row within it, 0..B-1
};

class kv_block_table {
public:
    explicit kv_block_table(kv_block_pool& pool);
    ~kv_block_table();  // releases its blocks
    kv_block_table(const kv_block_table&) = delete;
    kv_block_table& operator=(const kv_block_table&) = delete;

    kv_block_pool& pool() const { return pool_; }
    int32_t n_tokens() const { return n_tokens_; }
    int32_t n_blocks() const { return int32_t(blocks_.size()); }
    const std::vector<int32_t>& blocks() const { return blocks_; }
    kv_slot locate(int32_t pos) const;  // INVALID_ARGUMENT if pos is not in 0..n_tokens-1

    // Adds n positions at the end (contents undefined until written). On OUT_OF_MEMORY nothing is added.
    void append(int32_t n);
    // Keeps the first n_keep positions (n_keep <= n_tokens), releasing the blocks past them.
    void truncate(int32_t n_keep);
    void clear() { truncate(0); }

    // Rows for positions [pos0, pos0 + n) of one (layer, head), rows `stride` floats apart (d used of each).
    void write_k(int32_t layer, int32_t head, int32_t pos0, int32_t n, const float* rows, int64_t stride);
    void write_v(int32_t layer, int32_t head, int32_t pos0, int32_t n, const float* rows, int64_t stride);

    // Attention sources of table block index b (0..n_blocks-1).
    kv_rows k_rows(int32_t b, int32_t layer, int32_t head) const;
    kv_rows v_rows(int32_t b, int32_t layer, int32_t head) const;

    // Prefix sharing. adopt: the table must be empty; takes shared blocks for the longest run of full blocks of
    // tokens[0..n) found in the pool and returns the tokens covered (a multiple of B; the caller skips their
    // prefill; pass n = prompt length - 1 to keep a token to evaluate). publish: tokens[0..n) must be the
    // tokens this table holds (n <= n_tokens, all layers written); keys every final full block of tokens[0..n) not
    // yet published (for q4 keys the newest full block waits until the next block fills).
    int32_t adopt_prefix(const int32_t* tokens, int32_t n);
    void publish_prefix(const int32_t* tokens, int32_t n);

    // Key rotation for evictions: rotates rows[i] (head_dim floats, in place) by deltas[i] positions (RoPE).
    using key_rotate_fn = std::function<void(float* rows, const int32_t* deltas, int32_t n_rows)>;

    // Eviction (the session's sliding-window policy): removes the `count` whole blocks starting at table block
    // `first` and moves every later position down by count * B, so that position == index in the cache stays
    // true. Keys were stored after RoPE, so each moved key row is rotated by -count * B positions with
    // `rotate_k`: per-token formats are decoded, rotated and re-encoded row by row; q4 key blocks are
    // dequantized, rotated and re-quantized per channel (lossy, like any re-quantization); the f16 residual tail
    // is rotated in f16. V rows have no position and do not change.
    // Requires a complete pass (every layer and head written up to n_tokens) and the removed blocks to be final
    // (first + count <= n_final_blocks()). Moved blocks that were shared or published become private copies
    // (make_writable); their prefix keys are dropped (the blocks no longer hold what a fresh prefill would).
    void drop_blocks(int32_t first, int32_t count, const key_rotate_fn& rotate_k);

    // Token-level eviction (the H2O and chunk-summary policies): rewrites the table so that new position q holds
    // the mean of the old rows [groups[q].first, groups[q].second): one row for a kept token, several for a
    // summary. Each key row is rotated from its old position p to q (rotate_k, delta q - p) before the mean, so
    // that every kept key sits at its new position; values are averaged as they are. Groups must be non-empty,
    // ascending and disjoint within [0, n_tokens); requires a complete pass. The rows are decoded to f32 one
    // (layer, head) at a time and written into fresh blocks through write_k / write_v (q4 keys re-quantized per
    // channel), so the old blocks are held until the new ones are written: the table briefly holds both.
    // Shared blocks are never written; the prefix keys of the table are dropped.
    void compact(const std::vector<std::pair<int32_t, int32_t>>& groups, const key_rotate_fn& rotate_k);

    // Save/restore (runtime/session_file.cpp). The image of a table after a complete pass is its blocks' bytes
    // in table order (n_blocks x block_bytes) and then, for q4 keys, the f16 residual; image_bytes() says how
    // many for n_tokens. write_image() streams it to `out`; read_image() fills an EMPTY table with n_tokens
    // positions from `in` (final_blocks = the saved final_blocks()). On any throw (OUT_OF_MEMORY, a failing
    // source) the table is left empty.
    using byte_sink = std::function<void(const void* data, size_t n)>;
    using byte_source = std::function<void(void* data, size_t n)>;
    size_t image_bytes(int32_t n_tokens) const;
    int32_t final_blocks() const { return r_; }
    void write_image(const byte_sink& out) const;
    void read_image(int32_t n_tokens, int32_t final_blocks, const byte_source& in);

    // Accounting: bytes of the blocks this table holds (shared ones counted in full) plus its residual tail
    // (q4 keys: n_layer x n_head_kv x 2 x B x d f16).
    size_t bytes() const;
    // Blocks [0, n_final_blocks()) hold final pool data (all of them for per-token K formats); the rest (q4
    // keys: at most R) are read from the f16 residual.
    int32_t n_final_blocks() const;
    int32_t n_shared_blocks() const;  // held blocks with refcount > 1

private:
    bool k_residual() const { return !pool_.k_layout().per_token(); }
    uint16_t* residual(int32_t layer, int32_t head, int32_t b);  // slot of table block b (b % 2)
    const uint16_t* residual(int32_t layer, int32_t head, int32_t b) const;
    void quantize_from_residual(int32_t layer, int32_t head, int32_t b);
    void truncate_residual(int32_t n_keep);
    void check_write(const char* what, int32_t layer, int32_t head, int32_t pos0, int32_t n) const;
    void check_host(const char* what) const;  // UNSUPPORTED when the pool's blocks are device memory

    kv_block_pool& pool_;
    int32_t B_;
    int32_t R_;  // q4 keys: residual slots (pool params residual_blocks)
    int32_t n_tokens_ = 0;
    std::vector<int32_t> blocks_;
    std::vector<uint64_t> hashes_;  // chained prefix hash of full block i (valid for i < hashes_.size())
    size_t n_published_ = 0;        // full blocks [0, n_published_) were offered to the pool
    int32_t r_ = 0;                 // q4 keys: blocks [0, r_) were final before the current writes (see above)
    std::vector<int32_t> written_;  // q4 keys: (n_layer, n_head_kv) end of the rows written (for truncate)
    kv_layout residual_layout_{};   // f16 K head block (q4 keys only)
    std::vector<uint16_t> residual_;  // (n_layer, n_head_kv, R, B, d) f16, q4 keys only
};

}  // namespace tfu
