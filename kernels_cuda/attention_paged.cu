// ATTENTION_PAGED: ATTENTION with K and V read through the paged, possibly quantized cache of ext
// (paged_kv_view, backend/kv_format.h): for block b and KV head h, k[b * n_head_kv + h] / v[...] hold the head
// block's layout (host memory) and data (device memory). Per op, the host flattens those into a table of
// kv_entry (device address + the layout's offsets, 32 bytes each; K entries then V entries), which goes to the
// device through the context's pinned staging ring; the kernel (attention_common.cuh) looks up the entry of
// each row and dequantizes it in registers (kv_rows.cuh: f16, bf16, q8 per token, q4 V per token and group, q4 K
// per channel; each block may have its own layout, e.g. the f16 residual blocks of a q4-key cache).
#include <vector>

#include "attention_common.cuh"
#include "backend/kv_format.h"
#include "kv_rows.cuh"
#include "cuda_ops.h"

namespace tfu::cuda {

namespace {

struct kv_entry {
    const uint8_t* data;
    kv_row_format f;
};
static_assert(sizeof(kv_entry) == 32, "kv_entry layout");

struct paged_reader {
    const kv_entry* k;  // n_blocks * n_head_kv entries each
    const kv_entry* v;
    int n_head_kv, block_tokens, hd;

    template <int R>
    __device__ static void load(const kv_entry* tab, int n_head_kv, int block_tokens, int hd, int hk, int t, int lane,
                                float x[R]) {
        const kv_entry& e = tab[(t / block_tokens) * n_head_kv + hk];
        kv_load_row<R>(e.f, e.data, t % block_tokens, hd, lane, x);
    }
    template <int R>
    __device__ void load_k(int hk, int t, int lane, float x[R]) const {
        load<R>(k, n_head_kv, block_tokens, hd, hk, t, lane, x);
    }
    template <int R>
    __device__ void load_v(int hk, int t, int lane, float x[R]) const {
        load<R>(v, n_head_kv, block_tokens, hd, hk, t, lane, x);
    }
};

// One table entry from a head block's host-side descriptor; checks what the kernel relies on.
kv_entry make_entry(const kv_rows& r, int hd, int block_tokens, const char* part, size_t index) {
    auto bad = [&](const std::string& m) {
        fail(TFU_STATUS_INVALID_ARGUMENT, std::string("cuda attention_paged: ") + part + " rows " + std::to_string(index) + ": " + m);
    };
    if (!r.layout || !r.data) bad("no layout or data");
    const kv_layout& l = *r.layout;
    if (l.head_dim != hd) bad("head size " + std::to_string(l.head_dim) + " differs from q's " + std::to_string(hd));
    if (l.block_tokens != block_tokens) bad("block of " + std::to_string(l.block_tokens) + " tokens, view has " + std::to_string(block_tokens));
    if (uint8_t(l.format) > uint8_t(kv_format::q4)) bad("unknown format");
    if (l.format == kv_format::q4 && l.part == kv_part::v && (l.group < 1 || hd % l.group != 0)) bad("bad q4 group");
    if (reinterpret_cast<uintptr_t>(r.data) % 2 != 0) bad("data not 2-byte aligned");
    return {r.data, kv_row_format_of(l)};
}

}  // namespace

void attention_paged(context& ctx, const op& o) {
    const tensor& q = *o.src[0];
    const paged_kv_view& view = *static_cast<const paged_kv_view*>(o.ext);
    const int hd = int(q.ne[0]);
    const size_t n_entries = size_t(view.n_blocks) * size_t(view.n_head_kv);
    std::vector<kv_entry> table(2 * n_entries);
    for (size_t i = 0; i < n_entries; ++i) {
        table[i] = make_entry(view.k[i], hd, view.block_tokens, "K", i);
        table[n_entries + i] = make_entry(view.v[i], hd, view.block_tokens, "V", i);
    }
    const kv_entry* dev = static_cast<const kv_entry*>(ctx.stage(table.data(), table.size() * sizeof(kv_entry)));
    attn_params p = attn_params_of(ctx, o);
    p.n_past_dev = nullptr;  // the staged table is per op: these runs are never replayed (graph_safe)
    const paged_reader r{dev, dev + n_entries, view.n_head_kv, view.block_tokens, hd};
    launch_attention(ctx, p, int(q.ne[2]), r, "attention_kernel (paged)");
}

}  // namespace tfu::cuda
