// Paged KV for the decoder: per-head row writes into the block table, and the per-layer block views.
#include "runtime/paged_kv.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/error.h"

namespace tfu {

paged_kv::paged_kv(kv_block_table& table, int32_t n_layer, backend* ops, int32_t max_blocks)
    : table_(table), n_head_kv_(table.pool().params().n_head_kv), head_dim_(table.pool().params().head_dim), ops_(ops) {
    TFU_CHECK(n_layer == table.pool().params().n_layer);
    if (!ops_) return;
    TFU_CHECK(max_blocks >= 1);
    const kv_block_pool& pool = table.pool();
    blocks_mem_ = static_cast<uint64_t*>(ops_->alloc(size_t(max_blocks) * sizeof(uint64_t), "KV cache block table"));
    sent_ids_.assign(size_t(max_blocks), -1);  // no entry holds a block yet: the first sync writes all
    addr_.assign(size_t(max_blocks), 0);
    for (int32_t l = 0; l < n_layer; ++l) {
        kv_block_map m;
        m.k = pool.k_layout();
        m.v = pool.v_layout();
        m.n_head_kv = n_head_kv_;
        m.n_blocks = max_blocks;
        m.k_offset = pool.layer_offset(l);
        m.v_offset = pool.layer_offset(l) + size_t(n_head_kv_) * pool.k_layout().bytes;
        m.blocks = blocks_mem_;
        maps_.push_back(m);
    }
}

paged_kv::~paged_kv() {
    if (blocks_mem_) ops_->free(blocks_mem_);
}

void paged_kv::sync_blocks() {
    TFU_CHECK(ops_);
    const std::vector<int32_t>& ids = table_.blocks();
    if (ids.size() > sent_ids_.size())
        fail(TFU_STATUS_INTERNAL, "paged_kv: the table holds " + std::to_string(ids.size()) + " blocks, the map " +
                                      std::to_string(sent_ids_.size()));
    // A block's address never changes (pool chunks stay put), so comparing ids finds the entries to rewrite: on a
    // decode step, none, or the one new block.
    size_t first = ids.size(), last = 0;
    for (size_t b = 0; b < ids.size(); ++b) {
        if (ids[b] == sent_ids_[b]) continue;
        sent_ids_[b] = ids[b];
        addr_[b] = uint64_t(reinterpret_cast<uintptr_t>(table_.pool().data(ids[b])));
        first = std::min(first, b);
        last = b;
    }
    if (first < ids.size()) ops_->upload(blocks_mem_ + first, addr_.data() + first, (last - first + 1) * sizeof(uint64_t));
}

bool paged_kv::host_test_mode() {
    const char* env = std::getenv("TFU_KV_BLOCK_OPS");
    return env && std::strcmp(env, "1") == 0;
}

bool paged_kv::block_ops_supported(backend& be, const kv_layout& k, const kv_layout& v, int32_t n_head_kv,
                                   std::string* why) {
    // Stand-in addresses: the probe is never run, only checked (shapes, dtypes, layouts, alignment).
    void* fake = reinterpret_cast<void*>(uintptr_t(4096));
    kv_block_map m;
    m.k = k;
    m.v = v;
    m.n_head_kv = n_head_kv;
    m.n_blocks = 1;
    m.v_offset = size_t(n_head_kv) * k.bytes;
    m.blocks = static_cast<const uint64_t*>(fake);
    const int64_t hd = k.head_dim;
    tensor rows = make_tensor(dtype::F32, hd * n_head_kv, 1, 1, 1, fake, "probe rows");
    tensor q = make_tensor(dtype::F32, hd, n_head_kv, 1, 1, fake, "probe q");
    op st;
    st.type = op_type::KV_STORE_BLOCKS;
    st.src[0] = st.src[1] = &rows;
    st.ext = &m;
    op at;
    at.type = op_type::ATTENTION_BLOCKS;
    at.dst = &q;
    at.src[0] = &q;
    at.ext = &m;
    at.i[1] = n_head_kv;
    at.f[0] = 1.0f;
    return be.supports(st, why) && be.supports(at, why);
}

void paged_kv::store(int32_t layer, const tensor& k, const tensor& v, int32_t pos0) {
    const int32_t n = int32_t(k.nrows());
    const int64_t stride = k.ne[0];  // floats between the rows of one head
    for (int32_t h = 0; h < n_head_kv_; ++h) {
        table_.write_k(layer, h, pos0, n, k.ptr<float>() + int64_t(h) * head_dim_, stride);
        table_.write_v(layer, h, pos0, n, v.ptr<float>() + int64_t(h) * head_dim_, stride);
    }
}

const paged_kv_view* paged_kv::view(int32_t layer) {
    const int32_t nb = table_.n_blocks();
    k_.resize(size_t(nb) * size_t(n_head_kv_));
    v_.resize(k_.size());
    for (int32_t b = 0; b < nb; ++b)
        for (int32_t h = 0; h < n_head_kv_; ++h) {
            k_[size_t(b) * size_t(n_head_kv_) + size_t(h)] = table_.k_rows(b, layer, h);
            v_[size_t(b) * size_t(n_head_kv_) + size_t(h)] = table_.v_rows(b, layer, h);
        }
    view_.n_blocks = nb;
    view_.n_head_kv = n_head_kv_;
    view_.block_tokens = table_.pool().params().block_tokens;
    view_.k = k_.data();
    view_.v = v_.data();
    return &view_;
}

void paged_kv::observe(int32_t layer, const tensor& q, int32_t pos0) {
    if (!scores_) return;
    const int32_t B = table_.pool().params().block_tokens;
    const int64_t n_head = q.ne[1], n = q.ne[2];
    const int64_t group = n_head / n_head_kv_;
    const float scale = float(1.0 / std::sqrt(double(head_dim_)));
    TFU_CHECK(int64_t(scores_->size()) >= pos0 + n);
    std::vector<float> s(size_t(pos0 + n));
    for (int64_t j = 0; j < n; ++j) {
        const int32_t n_keys = pos0 + int32_t(j) + 1;  // causal: keys 0 .. pos0 + j
        for (int64_t h = 0; h < n_head; ++h) {
            const float* qh = static_cast<const float*>(q.data) + (j * n_head + h) * q.ne[0];
            const int32_t hk = int32_t(h / group);
            float mx = -INFINITY;
            for (int32_t b = 0; b * B < n_keys; ++b) {
                const kv_rows r = table_.k_rows(b, layer, hk);
                const int32_t rows = std::min(B, n_keys - b * B);
                for (int32_t i = 0; i < rows; ++i) {
                    const size_t t = size_t(b * B + i);
                    s[t] = scale * kv_dot_row(*r.layout, r.data, i, qh);
                    mx = std::max(mx, s[t]);
                }
            }
            double sum = 0;
            for (int32_t t = 0; t < n_keys; ++t) sum += std::exp(double(s[size_t(t)] - mx));
            for (int32_t t = 0; t < n_keys; ++t) (*scores_)[size_t(t)] += std::exp(double(s[size_t(t)] - mx)) / sum;
        }
    }
}

}  // namespace tfu
