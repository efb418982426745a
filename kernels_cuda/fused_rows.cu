// Fused launches of a decoder layer's small row-wise ops (fused_rows.h): ADD + RMS_NORM, ROPE q + ROPE k,
// KV_STORE k + KV_STORE v, and the last two pairs in one launch when they follow each other (rope_store_kernel). Each kernel repeats the arithmetic of the ops' own kernels (elementwise.cu,
// rms_norm.cu, rope.cu, kv_store.cu) expression for expression, so results are bit-identical; what goes away is
// a launch (2-5 us of a decode step each on an H100) and, for ADD + RMS_NORM, a round trip of the residual.
// Launch shapes:
//   add_rms_norm_kernel: one block of 256 threads per row (rms_norm.cu's shape: the same per-thread partial sums
//     and the same reduction order). Thread t adds elements t, t + 256, ... (f32, as ADD), stores them to y and
//     sums their squares in double; after the block reduction it writes xn = y * scale * w from the y values it
//     stored itself. Loads are issued 8 elements at a time ahead of the stores (see the kernel).
//   rope_pair_kernel: one block of 64 threads per (token, head) row; blocks [0, rows_q) take q's rows, the rest
//     k's (rope.cu's per-row body, double-precision angles).
//   kv_store_pair_kernel: a grid-stride loop over k's elements then v's (kv_store.cu's conversion per element).
#include <algorithm>

#include "backend/fused_pairs.h"
#include "cuda_common.cuh"
#include "fused_rope_blocks.h"
#include "fused_rows.h"
#include "rope_row.cuh"

namespace tfu::cuda {

namespace {

// The rules (aliasing, same parameters) are backend/fused_pairs.h's, shared with the Vulkan backend.

// ---- ADD + RMS_NORM --------------------------------------------------------------------------------------
constexpr int k_norm_threads = 256;  // rms_norm.cu's block size: the reduction order depends on it
constexpr int k_norm_unroll = 8;     // elements per thread loaded together (a 2048-wide row: all of them)

__global__ void add_rms_norm_kernel(const uint8_t* a, size_t a_stride, const uint8_t* b, size_t b_stride,
                                    uint8_t* y, size_t y_stride, const float* __restrict__ g, uint8_t* xn,
                                    size_t xn_stride, int64_t k, float eps) {
    pdl_trigger();  // the projection after it may start staging its weights
    const float* ar = reinterpret_cast<const float*>(a + blockIdx.x * a_stride);
    const float* br = reinterpret_cast<const float*>(b + blockIdx.x * b_stride);  // b_stride 0: broadcast
    float* yr = reinterpret_cast<float*>(y + blockIdx.x * y_stride);
    float* nr = reinterpret_cast<float*>(xn + blockIdx.x * xn_stride);
    // Each thread visits i = t, t + 256, ... in increasing order, as rms_norm.cu does, k_norm_unroll elements at a
    // time: all their loads are issued before the stores (y may be a's memory, so the compiler would otherwise
    // wait for every store before the next load; fused_rows admits only y == a exactly or apart, so loading a
    // later element before storing an earlier one reads the same values).
    double ss = 0;
    for (int64_t i0 = threadIdx.x; i0 < k; i0 += int64_t(k_norm_threads) * k_norm_unroll) {
        float v[k_norm_unroll];
#pragma unroll
        for (int u = 0; u < k_norm_unroll; ++u) {
            const int64_t i = i0 + int64_t(u) * k_norm_threads;
            v[u] = i < k ? ar[i] + br[i] : 0.0f;  // elementwise.cu's ADD
        }
#pragma unroll
        for (int u = 0; u < k_norm_unroll; ++u) {
            const int64_t i = i0 + int64_t(u) * k_norm_threads;
            if (i < k) {
                yr[i] = v[u];
                ss += double(v[u]) * v[u];  // rms_norm.cu's sum of squares of the row it reads (y)
            }
        }
    }
    const double total = block_sum<k_norm_threads>(ss);
    const double scale = 1.0 / sqrt(total / double(k) + double(eps));
    // yr[i] is this thread's own store above (xn == y in place: read, then overwritten by the same thread); loads
    // first again (xn may be y's memory).
    for (int64_t i0 = threadIdx.x; i0 < k; i0 += int64_t(k_norm_threads) * k_norm_unroll) {
        float v[k_norm_unroll];
#pragma unroll
        for (int u = 0; u < k_norm_unroll; ++u) {
            const int64_t i = i0 + int64_t(u) * k_norm_threads;
            v[u] = i < k ? yr[i] : 0.0f;
        }
#pragma unroll
        for (int u = 0; u < k_norm_unroll; ++u) {
            const int64_t i = i0 + int64_t(u) * k_norm_threads;
            if (i < k) nr[i] = float(v[u] * scale * g[i]);
        }
    }
}

void add_rms_norm(context& ctx, const op& add, const op& norm) {
    const tensor& a = *add.src[0];
    const tensor& b = *add.src[1];
    const size_t b_stride = b.nrows() == 1 ? 0 : b.nb[1];
    add_rms_norm_kernel<<<unsigned(a.nrows()), k_norm_threads, 0, ctx.stream>>>(
        static_cast<const uint8_t*>(a.data), a.nb[1], static_cast<const uint8_t*>(b.data), b_stride,
        static_cast<uint8_t*>(add.dst->data), add.dst->nb[1], static_cast<const float*>(norm.src[1]->data),
        static_cast<uint8_t*>(norm.dst->data), norm.dst->nb[1], a.ne[0], norm.f[0]);
    check_launch("add_rms_norm_kernel");
}

// ---- ROPE q + ROPE k -------------------------------------------------------------------------------------
__global__ void rope_pair_kernel(rope_rows q, rope_rows kk, unsigned q_blocks, const int32_t* __restrict__ pos,
                                 const float* __restrict__ factors, int n_rot, bool neox, double base,
                                 double freq_scale) {
    const bool second = blockIdx.x >= q_blocks;
    const rope_rows s = second ? kk : q;
    const int64_t r = second ? blockIdx.x - q_blocks : blockIdx.x;  // row = t * n_head + h
    const int64_t t = r / s.n_head;
    const float* xr = reinterpret_cast<const float*>(s.x + size_t(r) * s.x_stride);
    float* yr = reinterpret_cast<float*>(s.y + size_t(r) * s.y_stride);
    rope_row(xr, yr, pos[t], factors, s.hd, n_rot, neox, base, freq_scale);
}

void rope_pair(context& ctx, const op& p, const op& o) {
    const unsigned q_blocks = unsigned(p.src[0]->nrows());
    const unsigned blocks = q_blocks + unsigned(o.src[0]->nrows());
    const float* factors = p.src[2] ? static_cast<const float*>(p.src[2]->data) : nullptr;
    rope_pair_kernel<<<blocks, 64, 0, ctx.stream>>>(rope_rows_of(p), rope_rows_of(o), q_blocks,
                                                    static_cast<const int32_t*>(p.src[1]->data), factors, p.i[0],
                                                    p.i[1] == 2, double(p.f[0]), double(p.f[1]));
    check_launch("rope_pair_kernel");
}

// ---- KV_STORE k + KV_STORE v -----------------------------------------------------------------------------
struct kv_rows {
    const uint8_t* x;
    size_t x_stride;
    uint8_t* c;
    size_t c_stride;
    int64_t k;      // elements per row
    int64_t total;  // elements of x
};

template <dtype T>
__global__ void kv_store_pair_kernel(kv_rows ka, kv_rows va, int64_t first_arg, const int32_t* first_dev,
                                     int64_t total) {
    const int64_t first = first_dev ? int64_t(*first_dev) : first_arg;  // both ops' i[0] (they are equal)
    for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
         idx += int64_t(gridDim.x) * blockDim.x) {
        const bool second = idx >= ka.total;
        const kv_rows s = second ? va : ka;
        const int64_t e = second ? idx - ka.total : idx;
        const int64_t j = e / s.k, i = e % s.k;
        const float v = reinterpret_cast<const float*>(s.x + size_t(j) * s.x_stride)[i];
        uint8_t* row = s.c + size_t(first + j) * s.c_stride;
        if constexpr (T == dtype::F32) reinterpret_cast<float*>(row)[i] = v;
        else if constexpr (T == dtype::F16) reinterpret_cast<uint16_t*>(row)[i] = f2h(v);
        else reinterpret_cast<uint16_t*>(row)[i] = f2bf(v);
    }
}

kv_rows kv_rows_of(const op& o) {
    const tensor& x = *o.src[0];
    return {static_cast<const uint8_t*>(x.data), x.nb[1], static_cast<uint8_t*>(o.dst->data), o.dst->nb[1], x.ne[0],
            x.nelements()};
}

void kv_store_pair(context& ctx, const op& p, const op& o) {
    const kv_rows ka = kv_rows_of(p), va = kv_rows_of(o);
    const int64_t total = ka.total + va.total;
    const unsigned blocks = unsigned(std::min<int64_t>(ceil_div(total, 256), int64_t(ctx.sm_count) * 16));
    auto go = [&](auto kernel) {
        kernel<<<blocks, 256, 0, ctx.stream>>>(ka, va, int64_t(p.i[0]), ctx.dyn_at(), total);
    };
    switch (p.dst->type) {
        case dtype::F32: go(kv_store_pair_kernel<dtype::F32>); break;
        case dtype::F16: go(kv_store_pair_kernel<dtype::F16>); break;
        default: go(kv_store_pair_kernel<dtype::BF16>); break;  // kv_store_pair_fusable admits only these three
    }
    check_launch("kv_store_pair_kernel");
}

// ---- ROPE q + ROPE k + KV_STORE k + KV_STORE v ---------------------------------------------------------------
// A decoder layer's four ops between the Q/K/V projections and the attention, in one launch: blocks [0, q rows)
// rotate q's rows; blocks [q rows, q rows + k rows) rotate k's rows (token t, KV head h), then, after a barrier,
// read the rotated row back and store it into cache row first + t at channel h * hd (the KV_STORE of the roped k,
// the same f32 value converted as kv_store_pair_kernel does); the remaining blocks store v's rows (token t, KV
// head h: hd channels each). One launch instead of rope_pair_kernel + kv_store_pair_kernel.
template <dtype T>
__device__ __forceinline__ void store_cache_value(uint8_t* row, int64_t i, float v) {
    if constexpr (T == dtype::F32) reinterpret_cast<float*>(row)[i] = v;
    else if constexpr (T == dtype::F16) reinterpret_cast<uint16_t*>(row)[i] = f2h(v);
    else reinterpret_cast<uint16_t*>(row)[i] = f2bf(v);
}

struct store_rows {
    const uint8_t* x;  // source rows of the KV_STORE (for k: the roped rows, read back)
    size_t x_stride;
    uint8_t* c;        // cache
    size_t c_stride;
};

template <dtype T>
__global__ void rope_store_kernel(rope_rows q, rope_rows kk, store_rows ks, store_rows vs, unsigned q_blocks,
                                  unsigned k_blocks, const int32_t* __restrict__ pos, const float* __restrict__ factors,
                                  int n_rot, bool neox, double base, double freq_scale, int64_t first_arg,
                                  const int32_t* first_dev) {
    const unsigned b = blockIdx.x;
    if (b < q_blocks + k_blocks) {
        const bool is_k = b >= q_blocks;
        const rope_rows s = is_k ? kk : q;
        const int64_t r = is_k ? b - q_blocks : b;  // row = t * n_head + h
        const int64_t t = r / s.n_head;
        const float* xr = reinterpret_cast<const float*>(s.x + size_t(r) * s.x_stride);
        float* yr = reinterpret_cast<float*>(s.y + size_t(r) * s.y_stride);
        rope_row(xr, yr, pos[t], factors, s.hd, n_rot, neox, base, freq_scale);
        if (!is_k) return;
        __syncthreads();  // the block's rotated row, written by its threads, is visible to all of them now
        const int64_t first = first_dev ? int64_t(*first_dev) : first_arg;
        const int64_t h = r % s.n_head;
        const float* kr = reinterpret_cast<const float*>(ks.x + size_t(t) * ks.x_stride) + h * s.hd;
        uint8_t* crow = ks.c + size_t(first + t) * ks.c_stride;
        for (int64_t c = threadIdx.x; c < s.hd; c += blockDim.x) store_cache_value<T>(crow, h * s.hd + c, kr[c]);
        return;
    }
    // v: block (t, h) of t * n_head_kv + h, hd channels, as kk's rows are laid out.
    const int64_t r = b - q_blocks - k_blocks;
    const int64_t t = r / kk.n_head, h = r % kk.n_head;
    const int64_t first = first_dev ? int64_t(*first_dev) : first_arg;
    const float* vr = reinterpret_cast<const float*>(vs.x + size_t(t) * vs.x_stride) + h * kk.hd;
    uint8_t* crow = vs.c + size_t(first + t) * vs.c_stride;
    for (int64_t c = threadIdx.x; c < kk.hd; c += blockDim.x) store_cache_value<T>(crow, h * kk.hd + c, vr[c]);
}

void rope_store(context& ctx, const op* ops) {
    const op &rq = ops[0], &rk = ops[1], &sk = ops[2], &sv = ops[3];
    const unsigned q_blocks = unsigned(rq.src[0]->nrows()), k_blocks = unsigned(rk.src[0]->nrows());
    const float* factors = rq.src[2] ? static_cast<const float*>(rq.src[2]->data) : nullptr;
    const store_rows ks{static_cast<const uint8_t*>(sk.src[0]->data), sk.src[0]->nb[1],
                        static_cast<uint8_t*>(sk.dst->data), sk.dst->nb[1]};
    const store_rows vs{static_cast<const uint8_t*>(sv.src[0]->data), sv.src[0]->nb[1],
                        static_cast<uint8_t*>(sv.dst->data), sv.dst->nb[1]};
    // The stores' first row: the device-read slot of the first KV_STORE, two ops after the launch's first.
    const int32_t* first_dev = ctx.dyn_at(2);
    auto go = [&](auto kernel) {
        kernel<<<q_blocks + 2 * k_blocks, 64, 0, ctx.stream>>>(
            rope_rows_of(rq), rope_rows_of(rk), ks, vs, q_blocks, k_blocks, static_cast<const int32_t*>(rq.src[1]->data),
            factors, rq.i[0], rq.i[1] == 2, double(rq.f[0]), double(rq.f[1]), int64_t(sk.i[0]), first_dev);
    };
    switch (sk.dst->type) {
        case dtype::F32: go(rope_store_kernel<dtype::F32>); break;
        case dtype::F16: go(rope_store_kernel<dtype::F16>); break;
        default: go(rope_store_kernel<dtype::BF16>); break;  // kv_store_pair_fusable admits only these three
    }
    check_launch("rope_store_kernel");
}

}  // namespace

size_t fused_rows(context& ctx, const op* ops, size_t n_ops) {
    if (n_ops < 2) return 0;
    const op& a = ops[0];
    const op& b = ops[1];
    switch (a.type) {
        case op_type::ADD:
            if (!add_rms_norm_fusable(a, b)) return 0;
            add_rms_norm(ctx, a, b);
            return 2;
        case op_type::ROPE:
            if (!rope_pair_fusable(a, b)) return 0;
            if (n_ops >= 4 && rope_store_fusable(ops)) {
                rope_store(ctx, ops);
                return 4;
            }
            if (n_ops >= 3 && rope_store_blocks_fusable(ops)) {
                rope_store_blocks(ctx, ops);
                return 3;
            }
            rope_pair(ctx, a, b);
            return 2;
        case op_type::KV_STORE:
            if (!kv_store_pair_fusable(a, b)) return 0;
            kv_store_pair(ctx, a, b);
            return 2;
        default: return 0;
    }
}

}  // namespace tfu::cuda
