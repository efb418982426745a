// ATTENTION: dst (hd, n_head, n) = causal softmax(f[0] * q . K^T) . V with q = src0 (hd, n_head, n) and a
// contiguous cache K = src1, V = src2 (hd * n_head_kv, n_ctx; f32, f16 or bf16, each its own dtype); query j at
// position i[0] + j; i[1] = n_head_kv. The kernel is attention_common.cuh's; this file supplies the reader.
#include "attention_common.cuh"
#include "cuda_ops.h"

namespace tfu::cuda {

namespace {

// Rows of a contiguous cache: row t of KV head hk is hd elements at element offset hk * hd of cache row t.
struct contiguous_reader {
    const uint8_t* k;
    const uint8_t* v;
    size_t k_stride, v_stride;
    int hd;
    dtype kt, vt;

    template <int R>
    __device__ static void load(const uint8_t* base, size_t stride, dtype type, int hd, int hk, int t, int lane,
                                float x[R]) {
        const uint8_t* row = base + size_t(t) * stride;
        const int off = hk * hd;
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const int c = lane + k_warp * r;
            float v = 0.0f;
            if (c < hd) {
                if (type == dtype::F32) v = reinterpret_cast<const float*>(row)[off + c];
                else if (type == dtype::F16) v = h2f(reinterpret_cast<const uint16_t*>(row)[off + c]);
                else v = bf2f(reinterpret_cast<const uint16_t*>(row)[off + c]);
            }
            x[r] = v;
        }
    }
    template <int R>
    __device__ void load_k(int hk, int t, int lane, float x[R]) const {
        load<R>(k, k_stride, kt, hd, hk, t, lane, x);
    }
    template <int R>
    __device__ void load_v(int hk, int t, int lane, float x[R]) const {
        load<R>(v, v_stride, vt, hd, hk, t, lane, x);
    }
};

}  // namespace

void attention(context& ctx, const op& o) {
    const tensor& q = *o.src[0];
    const tensor& k = *o.src[1];
    const tensor& v = *o.src[2];
    attn_params p{};
    p.q = static_cast<const uint8_t*>(q.data);
    p.q_stride = q.nb[1];
    p.dst = static_cast<uint8_t*>(o.dst->data);
    p.d_stride = o.dst->nb[1];
    p.hd = int(q.ne[0]);
    p.n_head = int(q.ne[1]);
    p.group = int(q.ne[1] / o.i[1]);
    p.n_past = o.i[0];
    p.n_past_dev = ctx.dyn_at();
    p.scale = o.f[0];
    const contiguous_reader r{static_cast<const uint8_t*>(k.data), static_cast<const uint8_t*>(v.data), k.nb[1], v.nb[1],
                              p.hd, k.type, v.type};
    launch_attention(ctx, p, int(q.ne[2]), r, "attention_kernel");
}

int attention_splits(const context& ctx, const op& o) {
    const tensor& q = *o.src[0];
    return attention_split_count(ctx, q.ne[1] * q.ne[2], int(o.i[0] + q.ne[2]));
}

size_t attention_scratch_bytes(const context& ctx, const op& o) {
    const tensor& q = *o.src[0];
    const int n_split = attention_splits(ctx, o);
    return n_split > 1 ? size_t(q.ne[1] * q.ne[2]) * size_t(n_split) * size_t(q.ne[0] + 2) * sizeof(float) : 0;
}

}  // namespace tfu::cuda
