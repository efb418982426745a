// cpu::attention: causal grouped-query attention over a contiguous cache, on the shared frame of
// attention_split.h (GQA sub-groups decoded once per row, online softmax over tiles of 64 rows, split-K with a
// log-sum-exp merge for decode at long contexts).
// dst (hd, n_head, n) = softmax(scale * q . K^T) . V; q = src0 (hd, n_head, n), K = src1, V = src2
// (hd * n_head_kv, n_ctx; f32/f16/bf16). Query j sees cache rows 0 .. n_past + j (n_past = i[0]).
#include "backend/cpu/attention_split.h"

namespace tfu::cpu {

void scale_scalar(float* x, float s, int64_t n) {
    for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

void attention_with(context& ctx, const op& o, const attn_split_options& opt) {
    const tensor* cache[2] = {o.src[1], o.src[2]};
    attn_problem p = attn_problem_of(o);
    p.tile = 64;
    p.align = 64;
    tile_kind kinds[2];
    size_t head_bytes[2];  // bytes of one kv head's slice of a cache row
    for (int part = 0; part < 2; ++part) {
        const dtype t = cache[part]->type;
        kinds[part] = t == dtype::F16 ? tile_kind::f16 : t == dtype::BF16 ? tile_kind::bf16 : tile_kind::f32;
        head_bytes[part] = size_t(p.hd) * traits(t).type_size;
    }
    p.tile_at = [&](int part, int64_t h, int64_t row0) {
        kv_tile x;
        x.kind = kinds[part];
        x.rows = static_cast<const uint8_t*>(cache[part]->row(row0)) + size_t(h) * head_bytes[part];
        x.stride = cache[part]->nb[1];
        return x;
    };
    attn_run(ctx, p, opt);
}

void attention(context& ctx, const op& o) { attention_with(ctx, o, attn_split_options{}); }

}  // namespace tfu::cpu
