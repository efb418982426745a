// ATTENTION_BLOCKS: ATTENTION with K and V read through a kv_block_map (backend/kv_block_map.h): row t of KV head
// hk is row t % B of the head block at blocks[t / B] + offset + hk * head bytes, dequantized in registers
// (kv_rows.cuh). The map and its block array stay in device memory from one decode step to the next, so nothing
// is staged per op and a replayed graph reads the step's position from context::dyn_at like ATTENTION.
// Launch: decode over head size 64 or 128 with K f16 or q8 and V f16, q8 or q4 (blocks_gqa_pair) takes the group
// kernel (attention_gqa.cuh: each row read once per group of query heads where split, a lane's 8 channels as one
// load: 16 bytes of f16, 8 of q8 codes with the row's scale, 4 of q4 codes with their group's scale and min);
// the rest take attention_common.cuh's kernel (one block per (head, query); prefill: the tiled kernel).
#include "attention_common.cuh"
#include "attention_gqa.cuh"
#include "kv_rows.cuh"

namespace tfu::cuda {

namespace {

// attention_common.cuh's READER over a block map, the formats template parameters (a run-time format put each
// load behind a branch: pp512 with q8/q8 ran at 0.74x of the contiguous f16 cache).
template <kv_format KF, kv_format VF>
struct block_map_reader {
    const uint64_t* blocks;
    uint64_t k_offset, v_offset;
    uint32_t k_bytes, v_bytes;
    kv_row_format kf, vf;
    int shift, hd;  // shift: log2 of the block's tokens

    template <int R>
    __device__ void load_k(int hk, int t, int lane, float x[R]) const {
        const uint8_t* data = reinterpret_cast<const uint8_t*>(blocks[t >> shift]) + k_offset + size_t(hk) * k_bytes;
        kv_load_row_as<KF, kv_part::k, R>(kf, data, t & ((1 << shift) - 1), hd, lane, x);
    }
    template <int R>
    __device__ void load_v(int hk, int t, int lane, float x[R]) const {
        const uint8_t* data = reinterpret_cast<const uint8_t*>(blocks[t >> shift]) + v_offset + size_t(hk) * v_bytes;
        kv_load_row_as<VF, kv_part::v, R>(vf, data, t & ((1 << shift) - 1), hd, lane, x);
    }
};

int block_shift(const kv_block_map& m) {
    int shift = 0;
    while ((1 << shift) < m.k.block_tokens) ++shift;
    return shift;
}

template <kv_format KF, kv_format VF>
void launch_blocks(context& ctx, const attn_params& p, int n, const kv_block_map& m) {
    const block_map_reader<KF, VF> r{m.blocks,
                                     m.k_offset,
                                     m.v_offset,
                                     uint32_t(m.k.bytes),
                                     uint32_t(m.v.bytes),
                                     kv_row_format_of(m.k),
                                     kv_row_format_of(m.v),
                                     block_shift(m),
                                     p.hd};
    launch_attention(ctx, p, n, r, "attention_kernel (block map)");
}

template <kv_format KF>
void launch_blocks_v(context& ctx, const attn_params& p, int n, const kv_block_map& m) {
    switch (m.v.format) {
        case kv_format::f16: return launch_blocks<KF, kv_format::f16>(ctx, p, n, m);
        case kv_format::bf16: return launch_blocks<KF, kv_format::bf16>(ctx, p, n, m);
        case kv_format::q8: return launch_blocks<KF, kv_format::q8>(ctx, p, n, m);
        default: return launch_blocks<KF, kv_format::q4>(ctx, p, n, m);
    }
}

// ---- the group kernel's rows (attention_gqa.cuh's ROWS) ----------------------------------------------------
// One lane's 8 channels of a row, raw: F f16/bf16 16 bytes; q8 8 code bytes + the row's f16 scale; q4 (V) 4 code
// bytes + the f16 scale and min of their group (groups of 32 channels at head size 64 and 128: one per slice).
template <kv_format F>
struct raw8;
template <>
struct raw8<kv_format::f16> {
    uint4 w;
};
template <>
struct raw8<kv_format::q8> {
    uint2 c;
    uint16_t s;
};
template <>
struct raw8<kv_format::q4> {
    uint32_t c;
    uint16_t s, m;
};

// Part (K or V) of format F: where lane slice sl of row t is and how it decodes.
template <kv_format F>
struct part8 {
    uint64_t offset;  // from a block's start to this layer's part, + hk * head bytes (at())
    uint32_t head_bytes, scale_offset, min_offset, code_offset;
    int hd, ng;       // head size; q4: groups per row

    __device__ __forceinline__ raw8<F> load(const uint8_t* block, int r, int sl) const {
        const uint8_t* h = block + offset;
        raw8<F> x;
        if constexpr (F == kv_format::f16) {
            x.w = *reinterpret_cast<const uint4*>(h + size_t(r) * size_t(2 * hd) + 16 * sl);
        } else if constexpr (F == kv_format::q8) {
            x.c = *reinterpret_cast<const uint2*>(h + code_offset + size_t(r) * size_t(hd) + 8 * sl);
            x.s = ld16(h + scale_offset + 2 * size_t(r));
        } else {
            x.c = *reinterpret_cast<const uint32_t*>(h + code_offset + size_t(r) * size_t(hd / 2) + 4 * sl);
            const size_t pi = size_t(r) * size_t(ng) + size_t(8 * sl / (hd / ng));
            x.s = ld16(h + scale_offset + 2 * pi);
            x.m = ld16(h + min_offset + 2 * pi);
        }
        return x;
    }
    __device__ static __forceinline__ void unpack(const raw8<F>& x, float (&f)[8]) {
        if constexpr (F == kv_format::f16) {
            unpack8<dtype::F16>(x.w, f);
        } else if constexpr (F == kv_format::q8) {
            const float s = h2f(x.s);
            const uint32_t u[2] = {x.c.x, x.c.y};
#pragma unroll
            for (int i = 0; i < 8; ++i) f[i] = s * float(int8_t(uint8_t(u[i / 4] >> (8 * (i % 4)))));
        } else {  // channel j of the slice in bits 4j .. 4j + 3 (kv_format.h's nibble order)
            const float s = h2f(x.s), m = h2f(x.m);
#pragma unroll
            for (int i = 0; i < 8; ++i) f[i] = float((x.c >> (4 * i)) & 0xfu) * s + m;
        }
    }
};

// Up to k_staged_blocks block addresses of a thread block's rows go to shared memory first: a row's address is
// then a shared load and an add, not a global load that its row load waits for (two memory latencies per step).
constexpr int k_staged_blocks = 128;

// U = 2 rows per lane group per step, as the contiguous cache's: 4 measured no faster on the H100 (1B Q4_0, q8/q8
// at depth 16384: 747 t/s against 787 with 2, one call).
template <kv_format KF, kv_format VF>
struct block_rows {
    static constexpr int k_rows_per_step = 2;
    const uint64_t* blocks;
    part8<KF> k;
    part8<VF> v;
    int shift;  // log2 of the block's tokens

    using k_raw = raw8<KF>;
    using v_raw = raw8<VF>;
    struct staged {
        uint64_t addr[k_staged_blocks];  // blocks (s0 >> shift) ..
    };
    __device__ __forceinline__ bool fits(int s0, int s1) const {
        return s1 <= s0 || ((s1 - 1) >> shift) - (s0 >> shift) < k_staged_blocks;
    }
    __device__ __forceinline__ void stage(staged& st, int s0, int s1) const {
        if (s1 <= s0 || !fits(s0, s1)) return;  // uniform over the thread block: no thread waits below
        const int b0 = s0 >> shift, nb = ((s1 - 1) >> shift) - b0 + 1;
        for (int i = threadIdx.x; i < nb; i += blockDim.x) st.addr[i] = blocks[b0 + i];
        __syncthreads();
    }
    struct lane_view {
        const uint64_t* blocks;  // the staged addresses (b0 = the first's block index) or the map's (b0 = 0)
        int b0;
        part8<KF> k;
        part8<VF> v;
        int shift, sl;
        __device__ __forceinline__ const uint8_t* block(int t) const {
            return reinterpret_cast<const uint8_t*>(blocks[(t >> shift) - b0]);
        }
        __device__ __forceinline__ k_raw load_k(int t) const { return k.load(block(t), t & ((1 << shift) - 1), sl); }
        __device__ __forceinline__ v_raw load_v(int t) const { return v.load(block(t), t & ((1 << shift) - 1), sl); }
    };
    __device__ __forceinline__ lane_view at(int hk, int sl, const staged& st, int s0, int s1) const {
        const bool in_smem = s1 > s0 && fits(s0, s1);
        lane_view lv{in_smem ? st.addr : blocks, in_smem ? s0 >> shift : 0, k, v, shift, sl};
        lv.k.offset += uint64_t(hk) * k.head_bytes;
        lv.v.offset += uint64_t(hk) * v.head_bytes;
        return lv;
    }
    __device__ static __forceinline__ void unpack_k(const k_raw& x, float (&f)[8]) { part8<KF>::unpack(x, f); }
    __device__ static __forceinline__ void unpack_v(const v_raw& x, float (&f)[8]) { part8<VF>::unpack(x, f); }
};

template <kv_format F>
part8<F> part_of(const kv_layout& l, uint64_t offset) {
    return {offset,
            uint32_t(l.bytes),
            uint32_t(l.scale_offset),
            uint32_t(l.min_offset),
            uint32_t(l.code_offset),
            l.head_dim,
            l.group > 0 ? l.head_dim / l.group : 0};
}

template <kv_format KF, kv_format VF>
void launch_blocks_gqa(context& ctx, const attn_params& p, int n, const kv_block_map& m) {
    const block_rows<KF, VF> rows{m.blocks, part_of<KF>(m.k, m.k_offset), part_of<VF>(m.v, m.v_offset),
                                  block_shift(m)};
    launch_gqa(ctx, p, n, m.n_head_kv, rows);
}

}  // namespace

// The format pairs with a group kernel: K f16 or q8, V f16, q8 or q4 (q4 groups of 8k channels, so that a lane's
// 8-channel slice has one scale and min). bf16 parts take the per-head kernel.
bool blocks_gqa_pair(const kv_block_map& m) {
    const bool k_ok = m.k.format == kv_format::f16 || m.k.format == kv_format::q8;
    const bool v_ok = m.v.format == kv_format::f16 || m.v.format == kv_format::q8 ||
                      (m.v.format == kv_format::q4 && m.v.group % 8 == 0);
    return k_ok && v_ok;
}

void attention_blocks(context& ctx, const op& o) {
    const tensor& q = *o.src[0];
    const kv_block_map& m = *static_cast<const kv_block_map*>(o.ext);
    const attn_params p = attn_params_of(ctx, o);
    if (attention_gqa_shape(ctx, o)) {
        const int n = int(q.ne[2]);
        const bool k8 = m.k.format == kv_format::q8;
        switch (m.v.format) {
            case kv_format::q8:
                return k8 ? launch_blocks_gqa<kv_format::q8, kv_format::q8>(ctx, p, n, m)
                          : launch_blocks_gqa<kv_format::f16, kv_format::q8>(ctx, p, n, m);
            case kv_format::q4:
                return k8 ? launch_blocks_gqa<kv_format::q8, kv_format::q4>(ctx, p, n, m)
                          : launch_blocks_gqa<kv_format::f16, kv_format::q4>(ctx, p, n, m);
            default:
                return k8 ? launch_blocks_gqa<kv_format::q8, kv_format::f16>(ctx, p, n, m)
                          : launch_blocks_gqa<kv_format::f16, kv_format::f16>(ctx, p, n, m);
        }
    }
    // check_op admits per-token K formats only (no q4 keys in a block map).
    switch (m.k.format) {
        case kv_format::f16: return launch_blocks_v<kv_format::f16>(ctx, p, int(q.ne[2]), m);
        case kv_format::bf16: return launch_blocks_v<kv_format::bf16>(ctx, p, int(q.ne[2]), m);
        default: return launch_blocks_v<kv_format::q8>(ctx, p, int(q.ne[2]), m);
    }
}

}  // namespace tfu::cuda
