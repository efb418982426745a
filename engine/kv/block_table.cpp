// A session's KV block table: append/truncate over pool blocks, the q4-key residual tail, row writers, attention
// row sources and prefix adoption/publication (see block_table.h).
#include "kv/block_table.h"

#include <algorithm>
#include <string>

#include "core/error.h"
#include "core/fp16.h"

namespace tfu {

kv_block_table::kv_block_table(kv_block_pool& pool)
    : pool_(pool), B_(pool.params().block_tokens), R_(pool.params().residual_blocks) {
    if (k_residual() && pool.params().device)
        fail(TFU_STATUS_UNSUPPORTED, std::string("q4 keys are not available in the device's KV cache yet (their newest "
                                                 "rows wait in an f16 tail on the host); backend ") +
                                         pool.params().device->name() + " takes K f16, bf16 or q8");
    if (k_residual()) {
        const kv_pool_params& p = pool.params();
        residual_layout_ = kv_layout_make(kv_format::f16, kv_part::k, B_, p.head_dim);
        residual_.assign(pool.residual_bytes() / 2, 0);
        written_.assign(size_t(p.n_layer) * size_t(p.n_head_kv), 0);
    }
}

kv_block_table::~kv_block_table() {
    for (int32_t id : blocks_) pool_.release(id);
}

uint16_t* kv_block_table::residual(int32_t layer, int32_t head, int32_t b) {
    const size_t pair = size_t(layer) * size_t(pool_.params().n_head_kv) + size_t(head);
    return residual_.data() + (pair * size_t(R_) + size_t(b % R_)) * (residual_layout_.bytes / 2);
}
const uint16_t* kv_block_table::residual(int32_t layer, int32_t head, int32_t b) const {
    return const_cast<kv_block_table*>(this)->residual(layer, head, b);
}

int32_t kv_block_table::n_final_blocks() const {
    const int32_t full = n_tokens_ / B_;
    return k_residual() ? std::max(r_, full - (R_ - 1)) : full;
}

// Table block b (full, its rows in residual slot b % R) -> per-channel q4 in its pool block (ours alone: a
// non-final block is never published, and append() made it writable).
void kv_block_table::quantize_from_residual(int32_t layer, int32_t head, int32_t b) {
    kv_quantize_block_k(pool_.k_layout(), pool_.k_head(blocks_[size_t(b)], layer, head), residual(layer, head, b),
                        pool_.params().head_dim);
}

kv_slot kv_block_table::locate(int32_t pos) const {
    if (pos < 0 || pos >= n_tokens_)
        fail(TFU_STATUS_INVALID_ARGUMENT, "kv_block_table::locate: position " + std::to_string(pos) +
                                              " outside 0.." + std::to_string(n_tokens_ - 1));
    return {blocks_[size_t(pos / B_)], pos % B_};
}

void kv_block_table::append(int32_t n) {
    if (n < 0) fail(TFU_STATUS_INVALID_ARGUMENT, "kv_block_table::append: negative count");
    if (n == 0) return;
    // The previous writes are complete: fix the blocks that are final before this pass's writes.
    if (k_residual()) r_ = n_final_blocks();
    // Blocks that will still be written must be ours alone: the partial tail (rows go in) and, for q4 keys, the
    // residual blocks (quantized into their pool block later). At most R blocks.
    const int32_t first_written = k_residual() ? r_ : (n_tokens_ % B_ != 0 ? n_blocks() - 1 : n_blocks());
    for (int32_t b = first_written; b < n_blocks(); ++b) blocks_[size_t(b)] = pool_.make_writable(blocks_[size_t(b)]);
    const size_t need = size_t((int64_t(n_tokens_) + n + B_ - 1) / B_);
    const size_t had = blocks_.size();
    try {
        while (blocks_.size() < need) blocks_.push_back(pool_.allocate());
    } catch (...) {
        while (blocks_.size() > had) {
            pool_.release(blocks_.back());
            blocks_.pop_back();
        }
        throw;
    }
    n_tokens_ += n;
}

void kv_block_table::truncate(int32_t n_keep) {
    if (n_keep < 0 || n_keep > n_tokens_)
        fail(TFU_STATUS_INVALID_ARGUMENT, "kv_block_table::truncate: " + std::to_string(n_keep) + " not in 0.." +
                                              std::to_string(n_tokens_));
    if (n_keep == n_tokens_) return;
    const size_t keep_blocks = size_t((n_keep + B_ - 1) / B_);
    if (k_residual()) truncate_residual(n_keep);
    while (blocks_.size() > keep_blocks) {
        pool_.release(blocks_.back());
        blocks_.pop_back();
    }
    n_tokens_ = n_keep;
    const size_t full = size_t(n_keep / B_);
    if (hashes_.size() > full) hashes_.resize(full);
    n_published_ = std::min(n_published_, full);
}

// q4 keys: brings every (layer, head) to the state of a table of n_keep tokens: blocks [0, r) quantized in the
// pool, blocks [r, kb) (at most R; kb = blocks kept) in the residual with their f16 rows. Per (layer, head),
// blocks [0, f) are quantized and [f, ...) in the residual, where f = max(r_, written / B - (R - 1)): f differs between
// (layer, head)s when a pass stopped part-way (cancel, error), which the runtime undoes with truncate(pos0).
void kv_block_table::truncate_residual(int32_t n_keep) {
    const kv_pool_params& p = pool_.params();
    const int32_t kb = (n_keep + B_ - 1) / B_;
    auto final_of = [&](int32_t w) { return std::max(r_, std::min(w, n_tokens_) / B_ - (R_ - 1)); };
    int32_t f_min = n_blocks();
    for (int32_t w : written_) f_min = std::min(f_min, final_of(w));
    // Blocks final for every (layer, head) stay q4 where they may; the newest R - 1 full blocks and a partial one
    // are kept in (or brought back into) the residual; a partial block is never final (rows still to come).
    int32_t r = std::max(n_keep / B_ - (R_ - 1), std::min(f_min, kb));
    if (n_keep % B_ != 0) r = std::min(r, kb - 1);
    r = std::max(r, 0);
    std::vector<float> row(size_t(p.head_dim));
    for (int32_t l = 0; l < p.n_layer; ++l)
        for (int32_t h = 0; h < p.n_head_kv; ++h) {
            int32_t& w = written_[size_t(l) * size_t(p.n_head_kv) + size_t(h)];
            const int32_t f = final_of(w);
            // [f, r): full blocks still in this (layer, head)'s residual that must become final
            for (int32_t b = f; b < r; ++b) quantize_from_residual(l, h, b);
            // [r, kb) below f: quantized here, wanted in the residual: dequantize the kept rows (lossy)
            for (int32_t b = r; b < std::min(f, kb); ++b) {
                const int32_t rows = std::min(B_, n_keep - b * B_);
                uint16_t* res = residual(l, h, b);
                for (int32_t t = 0; t < rows; ++t) {
                    kv_read_row(pool_.k_layout(), pool_.k_head(blocks_[size_t(b)], l, h), t, row.data());
                    for (int32_t c = 0; c < p.head_dim; ++c)
                        res[size_t(t) * size_t(p.head_dim) + size_t(c)] = f32_to_fp16(row[size_t(c)]);
                }
            }
            w = std::min(w, n_keep);
        }
    r_ = r;
}

void kv_block_table::check_host(const char* what) const {
    if (pool_.params().device)
        fail(TFU_STATUS_UNSUPPORTED, std::string("kv_block_table::") + what + ": the blocks are in " +
                                         pool_.params().device->name() + " memory (written by KV_STORE_BLOCKS)");
}

void kv_block_table::check_write(const char* what, int32_t layer, int32_t head, int32_t pos0, int32_t n) const {
    check_host(what);
    const kv_pool_params& p = pool_.params();
    if (layer < 0 || layer >= p.n_layer || head < 0 || head >= p.n_head_kv || n < 0 || pos0 < 0 ||
        int64_t(pos0) + n > n_tokens_)
        fail(TFU_STATUS_INVALID_ARGUMENT, std::string("kv_block_table::") + what + ": layer " + std::to_string(layer) +
                                              " head " + std::to_string(head) + " positions " + std::to_string(pos0) +
                                              "+" + std::to_string(n) + " outside the table");
}

void kv_block_table::write_v(int32_t layer, int32_t head, int32_t pos0, int32_t n, const float* rows, int64_t stride) {
    check_write("write_v", layer, head, pos0, n);
    for (int32_t i = 0; i < n; ++i) {
        const int32_t pos = pos0 + i;
        kv_write_row(pool_.v_layout(), pool_.v_head(blocks_[size_t(pos / B_)], layer, head), pos % B_,
                     rows + i * stride);
    }
}

void kv_block_table::write_k(int32_t layer, int32_t head, int32_t pos0, int32_t n, const float* rows, int64_t stride) {
    check_write("write_k", layer, head, pos0, n);
    const kv_layout& kl = pool_.k_layout();
    if (kl.per_token()) {
        for (int32_t i = 0; i < n; ++i) {
            const int32_t pos = pos0 + i;
            kv_write_row(kl, pool_.k_head(blocks_[size_t(pos / B_)], layer, head), pos % B_, rows + i * stride);
        }
        return;
    }
    const int32_t d = kl.head_dim;
    const int64_t pos_end = int64_t(pos0) + n;
    written_[size_t(layer) * size_t(pool_.params().n_head_kv) + size_t(head)] = int32_t(pos_end);
    int32_t i = 0;
    while (i < n) {  // one block segment [a, e) of slots of table block blk at a time
        const int32_t pos = pos0 + i;
        const int32_t blk = pos / B_;
        const int32_t a = pos % B_;
        const int32_t e = std::min(B_, a + (n - i));
        const float* src = rows + i * stride;
        // A block whose rows are all in the input, and the next R - 1 blocks' too, is final by the end of this
        // call: quantize it straight from the input (it is never read from the residual).
        if (a == 0 && e == B_ && int64_t(blk + R_) * B_ <= pos_end) {
            kv_quantize_block_k(kl, pool_.k_head(blocks_[size_t(blk)], layer, head), src, stride);
        } else {  // rows wait in the residual slot of blk
            uint16_t* res = residual(layer, head, blk);
            for (int32_t t = a; t < e; ++t)
                for (int32_t c = 0; c < d; ++c)
                    res[size_t(t) * size_t(d) + size_t(c)] = f32_to_fp16(src[int64_t(t - a) * stride + c]);
        }
        // Block blk is now full: block blk - (R - 1) leaves the residual, unless it is already final (adopted,
        // quantized in an earlier pass) or was quantized from the input above (it started inside this call).
        const int32_t leaving = blk - (R_ - 1);
        if (e == B_ && leaving >= 0 && leaving >= r_ && int64_t(leaving) * B_ < pos0)
            quantize_from_residual(layer, head, leaving);
        i += e - a;
    }
}

kv_rows kv_block_table::k_rows(int32_t b, int32_t layer, int32_t head) const {
    if (b < 0 || b >= n_blocks()) fail(TFU_STATUS_INVALID_ARGUMENT, "kv_block_table::k_rows: bad block index");
    const int32_t n_rows = std::min(B_, n_tokens_ - b * B_);
    if (k_residual() && b >= n_final_blocks())
        return {&residual_layout_, reinterpret_cast<const uint8_t*>(residual(layer, head, b)), n_rows};
    return {&pool_.k_layout(), pool_.k_head(blocks_[size_t(b)], layer, head), n_rows};
}

kv_rows kv_block_table::v_rows(int32_t b, int32_t layer, int32_t head) const {
    if (b < 0 || b >= n_blocks()) fail(TFU_STATUS_INVALID_ARGUMENT, "kv_block_table::v_rows: bad block index");
    return {&pool_.v_layout(), pool_.v_head(blocks_[size_t(b)], layer, head), std::min(B_, n_tokens_ - b * B_)};
}

int32_t kv_block_table::adopt_prefix(const int32_t* tokens, int32_t n) {
    if (n_tokens_ != 0) fail(TFU_STATUS_INVALID_ARGUMENT, "kv_block_table::adopt_prefix: the table is not empty");
    uint64_t h = kv_prefix_seed;
    for (int32_t i = 0; (i + 1) * B_ <= n; ++i) {
        h = kv_prefix_hash(h, tokens + i * B_, B_);
        const int32_t id = pool_.lookup_prefix(h);
        if (id < 0) break;
        blocks_.push_back(id);
        hashes_.push_back(h);
        n_tokens_ += B_;
    }
    n_published_ = hashes_.size();  // already in the pool
    r_ = n_blocks();                // and final (quantized)
    std::fill(written_.begin(), written_.end(), n_tokens_);
    return n_tokens_;
}

void kv_block_table::publish_prefix(const int32_t* tokens, int32_t n) {
    if (n < 0 || n > n_tokens_) fail(TFU_STATUS_INVALID_ARGUMENT, "kv_block_table::publish_prefix: bad count");
    const size_t full = size_t(std::min(n / B_, n_final_blocks()));  // only blocks whose pool data is final
    while (hashes_.size() < full) {
        const uint64_t prev = hashes_.empty() ? kv_prefix_seed : hashes_.back();
        hashes_.push_back(kv_prefix_hash(prev, tokens + hashes_.size() * size_t(B_), B_));
    }
    for (; n_published_ < full; ++n_published_) pool_.publish_prefix(hashes_[n_published_], blocks_[n_published_]);
}

void kv_block_table::drop_blocks(int32_t first, int32_t count, const key_rotate_fn& rotate_k) {
    const kv_pool_params& p = pool_.params();
    if (first < 0 || count < 1 || first + count > n_final_blocks())
        fail(TFU_STATUS_INVALID_ARGUMENT, "kv_block_table::drop_blocks: blocks " + std::to_string(first) + "+" +
                                              std::to_string(count) + " are not final full blocks (" +
                                              std::to_string(n_final_blocks()) + " are)");
    for (int32_t w : written_)
        if (w != n_tokens_) fail(TFU_STATUS_INTERNAL, "kv_block_table::drop_blocks during an unfinished pass");
    const int32_t final_before = n_final_blocks();
    for (int32_t b = first; b < first + count; ++b) pool_.release(blocks_[size_t(b)]);
    blocks_.erase(blocks_.begin() + first, blocks_.begin() + first + count);
    n_tokens_ -= count * B_;
    if (k_residual()) {
        r_ = std::max(0, r_ - count);
        for (int32_t& w : written_) w = n_tokens_;
    }
    hashes_.resize(std::min(hashes_.size(), size_t(first)));
    n_published_ = std::min(n_published_, size_t(first));

    // Residual slots follow the table index (b % R): the slots turn by `count`. Done before the rotation below.
    const int32_t n_final = final_before - count;
    if (k_residual() && count % R_ != 0) {
        const size_t slot = residual_layout_.bytes / 2;
        std::vector<uint16_t> old(slot * size_t(R_));
        for (int32_t l = 0; l < p.n_layer; ++l)
            for (int32_t h = 0; h < p.n_head_kv; ++h) {
                uint16_t* base = residual(l, h, 0);  // slot 0 of this (layer, head); slots are contiguous
                std::copy(base, base + old.size(), old.begin());
                for (int32_t sl = 0; sl < R_; ++sl) {  // old slot sl held table block b with b % R == sl
                    const int32_t to = ((sl - count) % R_ + R_) % R_;
                    std::copy(old.begin() + long(size_t(sl) * slot), old.begin() + long(size_t(sl + 1) * slot),
                              base + size_t(to) * slot);
                }
            }
    }

    const int32_t d = p.head_dim;
    std::vector<float> rows(size_t(B_) * size_t(d));
    const std::vector<int32_t> deltas(size_t(B_), -count * B_);
    // A device pool's block is rotated in a host copy: downloaded, rewritten here, uploaded (the q4-key residual,
    // host memory, never is on a device: refused when the table is made).
    backend* dev = p.device;
    std::vector<uint8_t> staged(dev ? pool_.block_bytes() : 0);
    for (int32_t b = first; b < n_blocks(); ++b) {
        blocks_[size_t(b)] = pool_.make_writable(blocks_[size_t(b)]);
        const int32_t id = blocks_[size_t(b)];
        if (dev) dev->download(staged.data(), pool_.data(id), staged.size());
        uint8_t* const base = dev ? staged.data() : pool_.data(id);
        const int32_t n_rows = std::min(B_, n_tokens_ - b * B_);
        const bool in_residual = k_residual() && b >= n_final;
        for (int32_t l = 0; l < p.n_layer; ++l)
            for (int32_t h = 0; h < p.n_head_kv; ++h) {
                const kv_layout& kl = in_residual ? residual_layout_ : pool_.k_layout();
                uint8_t* blk = in_residual ? reinterpret_cast<uint8_t*>(residual(l, h, b))
                                           : base + pool_.layer_offset(l) + size_t(h) * kl.bytes;
                for (int32_t t = 0; t < n_rows; ++t) kv_read_row(kl, blk, t, rows.data() + size_t(t) * size_t(d));
                rotate_k(rows.data(), deltas.data(), n_rows);
                if (kl.per_token()) {
                    for (int32_t t = 0; t < n_rows; ++t) kv_write_row(kl, blk, t, rows.data() + size_t(t) * size_t(d));
                } else {
                    kv_quantize_block_k(kl, blk, rows.data(), d);  // a final q4 block is full (n_rows == B)
                }
            }
        if (dev) dev->upload(pool_.data(id), staged.data(), staged.size());
    }
}

void kv_block_table::compact(const std::vector<std::pair<int32_t, int32_t>>& groups, const key_rotate_fn& rotate_k) {
    check_host("compact");
    const kv_pool_params& p = pool_.params();
    for (int32_t w : written_)
        if (w != n_tokens_) fail(TFU_STATUS_INTERNAL, "kv_block_table::compact during an unfinished pass");
    int32_t prev_end = 0;
    for (const auto& [a, e] : groups)
        if (a < prev_end || e <= a || e > n_tokens_)
            fail(TFU_STATUS_INVALID_ARGUMENT, "kv_block_table::compact: group [" + std::to_string(a) + ", " +
                                                  std::to_string(e) + ") is empty, out of order or outside the table");
        else
            prev_end = e;
    const int32_t n_new = int32_t(groups.size());
    const int32_t d = p.head_dim;
    kv_block_table fresh(pool_);
    fresh.append(n_new);
    // Per row of the old table: the group it joins and the rotation to its new position.
    std::vector<int32_t> src_rows, deltas;
    for (int32_t q = 0; q < n_new; ++q)
        for (int32_t r = groups[size_t(q)].first; r < groups[size_t(q)].second; ++r) {
            src_rows.push_back(r);
            deltas.push_back(q - r);
        }
    std::vector<float> rows(src_rows.size() * size_t(d)), out(size_t(n_new) * size_t(d));
    auto read = [&](bool keys, int32_t l, int32_t h) {
        for (size_t i = 0; i < src_rows.size(); ++i) {
            const int32_t r = src_rows[i];
            const kv_rows src = keys ? k_rows(r / B_, l, h) : v_rows(r / B_, l, h);
            kv_read_row(*src.layout, src.data, r % B_, rows.data() + i * size_t(d));
        }
    };
    auto mean = [&]() {
        size_t i = 0;
        for (int32_t q = 0; q < n_new; ++q) {
            float* o = out.data() + size_t(q) * size_t(d);
            const int32_t n = groups[size_t(q)].second - groups[size_t(q)].first;
            std::fill(o, o + d, 0.0f);
            for (int32_t k = 0; k < n; ++k, ++i)
                for (int32_t c = 0; c < d; ++c) o[c] += rows[i * size_t(d) + size_t(c)];
            if (n > 1)
                for (int32_t c = 0; c < d; ++c) o[c] /= float(n);
        }
    };
    for (int32_t l = 0; l < p.n_layer; ++l)
        for (int32_t h = 0; h < p.n_head_kv; ++h) {
            read(true, l, h);
            rotate_k(rows.data(), deltas.data(), int32_t(src_rows.size()));
            mean();
            fresh.write_k(l, h, 0, n_new, out.data(), d);
            read(false, l, h);
            mean();
            fresh.write_v(l, h, 0, n_new, out.data(), d);
        }
    // Take the fresh table's state; its destructor releases the old blocks.
    std::swap(blocks_, fresh.blocks_);
    std::swap(n_tokens_, fresh.n_tokens_);
    std::swap(residual_, fresh.residual_);
    std::swap(r_, fresh.r_);
    std::swap(written_, fresh.written_);
    hashes_.clear();
    n_published_ = 0;
}

size_t kv_block_table::image_bytes(int32_t n_tokens) const {
    return size_t((int64_t(n_tokens) + B_ - 1) / B_) * pool_.block_bytes() + residual_.size() * 2;
}

void kv_block_table::write_image(const byte_sink& out) const {
    for (int32_t w : written_)
        if (w != n_tokens_) fail(TFU_STATUS_INTERNAL, "kv_block_table::write_image during an unfinished pass");
    backend* dev = pool_.params().device;
    std::vector<uint8_t> staged(dev ? pool_.block_bytes() : 0);
    for (int32_t id : blocks_) {
        if (dev) dev->download(staged.data(), pool_.data(id), staged.size());
        out(dev ? staged.data() : pool_.data(id), pool_.block_bytes());
    }
    if (!residual_.empty()) out(residual_.data(), residual_.size() * 2);
}

void kv_block_table::read_image(int32_t n_tokens, int32_t final_blocks, const byte_source& in) {
    if (n_tokens_ != 0) fail(TFU_STATUS_INVALID_ARGUMENT, "kv_block_table::read_image: the table is not empty");
    const int32_t nb = int32_t((int64_t(n_tokens) + B_ - 1) / B_);
    if (n_tokens < 0 || final_blocks < 0 || final_blocks > nb)
        fail(TFU_STATUS_INVALID_ARGUMENT, "kv_block_table::read_image: bad token or block count");
    try {
        append(n_tokens);
        backend* dev = pool_.params().device;
        std::vector<uint8_t> staged(dev ? pool_.block_bytes() : 0);
        for (int32_t id : blocks_) {
            in(dev ? staged.data() : pool_.data(id), pool_.block_bytes());
            if (dev) dev->upload(pool_.data(id), staged.data(), staged.size());
        }
        if (!residual_.empty()) in(residual_.data(), residual_.size() * 2);
    } catch (...) {
        truncate(0);
        std::fill(written_.begin(), written_.end(), 0);
        r_ = 0;
        throw;
    }
    r_ = k_residual() ? final_blocks : 0;
    std::fill(written_.begin(), written_.end(), n_tokens);
}

size_t kv_block_table::bytes() const { return blocks_.size() * pool_.block_bytes() + residual_.size() * 2; }

int32_t kv_block_table::n_shared_blocks() const {
    int32_t n = 0;
    for (int32_t id : blocks_) n += pool_.ref_count(id) > 1 ? 1 : 0;
    return n;
}

}  // namespace tfu
