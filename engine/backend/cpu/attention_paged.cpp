// cpu::attention_paged: cpu::attention over the paged, possibly quantized cache, on the shared frame of
// attention_split.h: tiles of up to 64 rows inside one cache block, K/V rows dequantized in registers from the
// kv_format layouts (backend/kv_format.h), never copied; key chunks of the split are whole blocks.
// dst (hd, n_head, n); q = src0 (hd, n_head, n); ext = paged_kv_view; query j sees positions 0 .. i[0] + j.
#include <algorithm>

#include "backend/cpu/attention_split.h"
#include "backend/kv_format.h"

namespace tfu::cpu {

namespace {

kv_tile tile_of(const kv_rows& r, int64_t off) {
    const kv_layout& l = *r.layout;
    kv_tile x;
    x.rows = r.data + l.code_offset + size_t(off) * size_t(l.row_code_bytes);
    x.stride = size_t(l.row_code_bytes);
    const uint16_t* sc = reinterpret_cast<const uint16_t*>(r.data + l.scale_offset);
    const uint16_t* mn = reinterpret_cast<const uint16_t*>(r.data + l.min_offset);
    switch (l.format) {
        case kv_format::f16: x.kind = tile_kind::f16; break;
        case kv_format::bf16: x.kind = tile_kind::bf16; break;
        case kv_format::q8:
            x.kind = tile_kind::q8;
            x.scale = sc + off;
            break;
        case kv_format::q4:
            if (l.part == kv_part::k) {
                x.kind = tile_kind::q4_channel;
                x.scale = sc;
                x.min = mn;
            } else {
                const int64_t ng = l.head_dim / l.group;
                x.kind = tile_kind::q4_group;
                x.scale = sc + off * ng;
                x.min = mn + off * ng;
                x.group = l.group;
            }
            break;
    }
    return x;
}

}  // namespace

void attention_paged_with(context& ctx, const op& o, const attn_split_options& opt) {
    const paged_kv_view& kv = *static_cast<const paged_kv_view*>(o.ext);
    attn_problem p = attn_problem_of(o);
    const int64_t B = kv.block_tokens;
    p.tile = std::min<int64_t>(B, 64);
    p.align = B;
    p.tile_at = [&](int part, int64_t h, int64_t row0) {
        const kv_rows* rows = part == 0 ? kv.k : kv.v;
        return tile_of(rows[(row0 / B) * kv.n_head_kv + h], row0 % B);
    };
    attn_run(ctx, p, opt);
}

void attention_paged(context& ctx, const op& o) { attention_paged_with(ctx, o, attn_split_options{}); }

}  // namespace tfu::cpu
