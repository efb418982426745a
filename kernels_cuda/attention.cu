// ATTENTION: dst (hd, n_head, n) = causal softmax(f[0] * q . K^T) . V with q = src0 (hd, n_head, n) and a
// contiguous cache K = src1, V = src2 (hd * n_head_kv, n_ctx; f32, f16 or bf16, each its own dtype); query j at
// position i[0] + j; i[1] = n_head_kv. Decode-sized ops over an f16 or bf16 cache with a head size of 64 or 128
// and 1, 2 or 4 query heads per KV head take attention_gqa.cuh's kernel (each K/V row read once per group); the
// rest take attention_common.cuh's, for which this file supplies the reader.
#include <cstdlib>
#include <cstring>

#include "attention_common.cuh"
#include "attention_gqa.cuh"
#include "cuda_ops.h"

namespace tfu::cuda {

namespace {

// Rows of a contiguous cache: row t of KV head hk is hd elements at element offset hk * hd of cache row t. The
// element types are template parameters: with a run-time type the loads sat in branches each followed by its
// conversion, so every load was waited for before the next was issued (ncu: 83% of the time stalled on L1TEX,
// one issue every 33 cycles) and the kernel's U rows per step were read one at a time after all.
// Lanes past the head size read the head's first element (in bounds) and keep 0: no branch around the loads.
template <dtype T>
__device__ __forceinline__ uint32_t kv_bits(const uint8_t* row, int i) {
    if constexpr (T == dtype::F32) return reinterpret_cast<const uint32_t*>(row)[i];
    else return reinterpret_cast<const uint16_t*>(row)[i];
}
template <dtype T>
__device__ __forceinline__ float kv_float(uint32_t bits) {
    if constexpr (T == dtype::F32) return __uint_as_float(bits);
    else if constexpr (T == dtype::F16) return h2f(uint16_t(bits));
    else return bf2f(uint16_t(bits));
}

template <dtype KT, dtype VT>
struct contiguous_reader {
    const uint8_t* k;
    const uint8_t* v;
    size_t k_stride, v_stride;
    int hd;

    template <int R, dtype T>
    __device__ static void load(const uint8_t* base, size_t stride, int hd, int hk, int t, int lane, float x[R]) {
        const uint8_t* row = base + size_t(t) * stride;
        const int off = hk * hd;
        uint32_t bits[R];
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const int c = lane + k_warp * r;
            bits[r] = kv_bits<T>(row, off + (c < hd ? c : 0));
        }
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const float f = kv_float<T>(bits[r]);
            x[r] = lane + k_warp * r < hd ? f : 0.0f;
        }
    }
    template <int R>
    __device__ void load_k(int hk, int t, int lane, float x[R]) const {
        load<R, KT>(k, k_stride, hd, hk, t, lane, x);
    }
    template <int R>
    __device__ void load_v(int hk, int t, int lane, float x[R]) const {
        load<R, VT>(v, v_stride, hd, hk, t, lane, x);
    }
};

template <dtype KT, dtype VT>
void launch_contiguous(context& ctx, const attn_params& p, int n, const tensor& k, const tensor& v) {
    const contiguous_reader<KT, VT> r{static_cast<const uint8_t*>(k.data), static_cast<const uint8_t*>(v.data), k.nb[1],
                                      v.nb[1], p.hd};
    launch_attention(ctx, p, n, r, "attention_kernel");
}

template <dtype KT>
void launch_contiguous_k(context& ctx, const attn_params& p, int n, const tensor& k, const tensor& v) {
    switch (v.type) {
        case dtype::F32: return launch_contiguous<KT, dtype::F32>(ctx, p, n, k, v);
        case dtype::F16: return launch_contiguous<KT, dtype::F16>(ctx, p, n, k, v);
        default: return launch_contiguous<KT, dtype::BF16>(ctx, p, n, k, v);
    }
}

template <dtype T>
void launch_gqa_t(context& ctx, const attn_params& p, int n, int n_head_kv, const tensor& k, const tensor& v) {
    const contiguous_rows<T> rows{static_cast<const uint8_t*>(k.data), static_cast<const uint8_t*>(v.data), k.nb[1],
                                  v.nb[1], p.hd};
    launch_gqa(ctx, p, n, n_head_kv, rows);
}

}  // namespace

// Whether o takes attention_gqa_kernel: a decode-sized op (not tiled), head size 64 or 128, 1, 2 or 4 query heads
// per KV head, 16-byte aligned q rows; ATTENTION: K and V both f16 or both bf16 with 16-byte aligned rows;
// ATTENTION_BLOCKS: the format pairs attention_blocks.cu instantiates (blocks_gqa_pair). TFU_CUDA_ATTN_GQA=0 turns
// it off (for comparing).
bool attention_gqa_shape(const context& ctx, const op& o) {
    static const bool on = [] {
        const char* e = std::getenv("TFU_CUDA_ATTN_GQA");
        return !(e && std::strcmp(e, "0") == 0);
    }();
    const tensor& q = *o.src[0];
    const int64_t hd = q.ne[0], group = q.ne[1] / o.i[1];
    auto rows16 = [](const tensor& t) { return reinterpret_cast<uintptr_t>(t.data) % 16 == 0 && t.nb[1] % 16 == 0; };
    if (!(on && !(ctx.attn_tiles && attention_tiled(int(q.ne[2]), int(hd))) && (hd == 64 || hd == 128) &&
          (group == 1 || group == 2 || group == 4) && rows16(q) && reinterpret_cast<uintptr_t>(o.dst->data) % 4 == 0))
        return false;
    if (o.type == op_type::ATTENTION_BLOCKS) return blocks_gqa_pair(*static_cast<const kv_block_map*>(o.ext));
    const tensor& k = *o.src[1];
    const tensor& v = *o.src[2];
    return k.type == v.type && (k.type == dtype::F16 || k.type == dtype::BF16) && rows16(k) && rows16(v);
}

void attention(context& ctx, const op& o) {
    const tensor& q = *o.src[0];
    const tensor& k = *o.src[1];
    const tensor& v = *o.src[2];
    const attn_params p = attn_params_of(ctx, o);
    if (attention_gqa_shape(ctx, o)) {
        if (k.type == dtype::F16) return launch_gqa_t<dtype::F16>(ctx, p, int(q.ne[2]), int(o.i[1]), k, v);
        return launch_gqa_t<dtype::BF16>(ctx, p, int(q.ne[2]), int(o.i[1]), k, v);
    }
    // check_op (cpu/ref/op_check.cpp, is_cache_type) admits F32, F16 and BF16 caches only.
    switch (k.type) {
        case dtype::F32: return launch_contiguous_k<dtype::F32>(ctx, p, int(q.ne[2]), k, v);
        case dtype::F16: return launch_contiguous_k<dtype::F16>(ctx, p, int(q.ne[2]), k, v);
        default: return launch_contiguous_k<dtype::BF16>(ctx, p, int(q.ne[2]), k, v);
    }
}

int attention_splits(const context& ctx, const op& o) {
    const tensor& q = *o.src[0];
    if (ctx.attn_tiles && attention_tiled(int(q.ne[2]), int(q.ne[0]))) return 1;
    // attention_gqa.cuh splits a block per KV head (launch_gqa_g)
    const bool gqa = attention_gqa_shape(ctx, o);
    const int64_t blocks = gqa ? int64_t(o.i[1]) * q.ne[2] : q.ne[1] * q.ne[2];
    return attention_split_count(ctx, blocks, int(o.i[0] + q.ne[2]));
}

size_t attention_scratch_bytes(const context& ctx, const op& o) {
    const tensor& q = *o.src[0];
    const int n_split = attention_splits(ctx, o);
    return n_split > 1 ? size_t(q.ne[1] * q.ne[2]) * size_t(n_split) * size_t(q.ne[0] + 2) * sizeof(float) : 0;
}

}  // namespace tfu::cuda
