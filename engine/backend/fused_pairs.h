// When two row-wise ops of a decoder layer may run as one launch on a GPU backend, shared by CUDA
// (kernels_cuda/fused_rows.cu) and Vulkan (kernels_vk/vk_ops.cpp record_fused): the fused kernels repeat each op's
// arithmetic, so what remains to decide is aliasing, whether running the second op's threads at the same time as
// the first's gives what running them in order gives, and that the two ops share the parameters one launch takes.
#pragma once

#include <cstdint>

#include "backend/op.h"

namespace tfu {

// Bytes [lo, hi) of device addresses that rows [first, first + n) of a tensor occupy (rows strided by nb[1]; the
// last row ends at its own length).
struct row_bytes_range {
    uint64_t lo, hi;
};
inline row_bytes_range rows_of(const tensor& t, int64_t first, int64_t n) {
    const uint64_t base = uint64_t(reinterpret_cast<uintptr_t>(t.data)) + uint64_t(first) * t.nb[1];
    return {base, base + uint64_t(n - 1) * t.nb[1] + t.row_bytes()};
}
inline row_bytes_range span_of(const tensor& t) { return rows_of(t, 0, t.nrows()); }
inline bool overlaps(row_bytes_range a, row_bytes_range b) { return a.lo < b.hi && b.lo < a.hi; }

// Whether the bytes two tensors' rows occupy intersect: the aliasing test of the fused launches.
inline bool tensors_overlap(const tensor& a, const tensor& b) { return overlaps(span_of(a), span_of(b)); }
// The same rows of the same memory: element (r, i) of one is element (r, i) of the other.
inline bool same_rows(const tensor& a, const tensor& b) {
    return a.data == b.data && a.type == b.type && a.ne[0] == b.ne[0] && a.nrows() == b.nrows() &&
           (a.nrows() == 1 || a.nb[1] == b.nb[1]);
}
// A tensor written by a fused launch next to another tensor of the pair: apart, or the very same rows (each
// element is then read and written by one thread, in the order of the ops).
inline bool apart_or_same(const tensor& w, const tensor& t) { return !tensors_overlap(w, t) || same_rows(w, t); }

// ADD(y, a, b) then RMS_NORM(xn, y, w), one workgroup per row: the norm's src0 is exactly y (data, row stride,
// shape); each written tensor (y, xn) overlaps no other tensor of the pair or is the very same rows (in place:
// y == a, xn == y); the norm weight, read by every workgroup, is written by neither op.
inline bool add_rms_norm_fusable(const op& add, const op& norm) {
    if (add.type != op_type::ADD || norm.type != op_type::RMS_NORM) return false;
    const tensor& y = *add.dst;
    const tensor& a = *add.src[0];
    const tensor& b = *add.src[1];
    const tensor& xn = *norm.dst;
    const tensor& w = *norm.src[1];
    if (!same_rows(*norm.src[0], y)) return false;
    if (!apart_or_same(y, a) || !apart_or_same(y, b)) return false;
    if (!apart_or_same(xn, a) || !apart_or_same(xn, b) || !apart_or_same(xn, y)) return false;
    return !tensors_overlap(w, y) && !tensors_overlap(w, xn);
}

// ROPE(dq, q, pos, ff) then ROPE(dk, k, pos, ff): the same positions and factors (memory and length, or no
// factors), the same i[0], i[1], f[0], f[1] (one frequency table); dq and dk in place or apart from their own
// source, and apart from everything else of the pair (the other op's source and result, the positions, the
// factors): the second op must not read what the first writes, nor write what the first reads.
inline bool rope_pair_fusable(const op& p, const op& o) {
    if (p.type != op_type::ROPE || o.type != op_type::ROPE) return false;
    if (p.i[0] != o.i[0] || p.i[1] != o.i[1] || p.f[0] != o.f[0] || p.f[1] != o.f[1]) return false;
    const tensor& pos = *p.src[1];
    if (o.src[1]->data != pos.data || o.src[1]->nelements() != pos.nelements()) return false;
    if ((p.src[2] == nullptr) != (o.src[2] == nullptr)) return false;
    if (p.src[2] && (p.src[2]->data != o.src[2]->data || p.src[2]->nelements() != o.src[2]->nelements())) return false;
    const tensor& dq = *p.dst;
    const tensor& q = *p.src[0];
    const tensor& dk = *o.dst;
    const tensor& k = *o.src[0];
    if (!apart_or_same(dq, q) || !apart_or_same(dk, k)) return false;
    if (tensors_overlap(dq, k) || tensors_overlap(dq, dk) || tensors_overlap(dk, q)) return false;
    for (const tensor* d : {&dq, &dk}) {
        if (tensors_overlap(*d, pos)) return false;
        if (p.src[2] && tensors_overlap(*d, *p.src[2])) return false;
    }
    return true;
}

// KV_STORE(ck, xk) then KV_STORE(cv, xv): the same i[0] and cache dtype (f32, f16 or bf16); the cache bytes each
// op writes overlap neither source nor the other's. `word`: the bytes a kernel writes as one store (Vulkan's
// kv_store.comp writes whole 32-bit words of a 16-bit cache: 4; 1 where every element is its own store), the
// written ranges widened to it. `any_rows`: the launch may later store other rows than i[0]'s (a kept Vulkan run
// reads i[0] on the device, each op its own): the whole caches count.
// The cache bytes KV_STORE s writes, widened to whole `word`s; with any_rows its whole cache (kv_store_pair_fusable).
inline row_bytes_range kv_store_written(const op& s, uint64_t word, bool any_rows) {
    const row_bytes_range r = any_rows ? span_of(*s.dst) : rows_of(*s.dst, s.i[0], s.src[0]->nrows());
    return {r.lo / word * word, (r.hi + word - 1) / word * word};
}

inline bool kv_store_pair_fusable(const op& p, const op& o, uint64_t word = 1, bool any_rows = false) {
    if (p.type != op_type::KV_STORE || o.type != op_type::KV_STORE) return false;
    if (p.i[0] != o.i[0] || p.dst->type != o.dst->type) return false;
    if (p.dst->type != dtype::F32 && p.dst->type != dtype::F16 && p.dst->type != dtype::BF16) return false;
    const row_bytes_range wk = kv_store_written(p, word, any_rows), wv = kv_store_written(o, word, any_rows);
    for (const tensor* x : {p.src[0], o.src[0]})
        if (overlaps(wk, span_of(*x)) || overlaps(wv, span_of(*x))) return false;
    return !overlaps(wk, wv);
}

// ROPE(dq, q), ROPE(dk, k), KV_STORE(ck, xk), KV_STORE(cv, xv) in one launch whose k part stores the rows it
// rotated (the decoder's four ops between the projections and the attention): the ropes fuse as a pair, the stores
// as a pair (with the same `word` and `any_rows`), xk is dk's memory seen as (hd * n_head_kv, n) rows (the decoder's
// kr2 view of kr: dk's (token, head) rows of hd floats back to back), xv has that shape, and nothing one part
// writes is read or written by another part running at the same time: the cache bytes the stores write overlap no
// tensor of the ropes, and xv (read while the ropes write) overlaps neither rope result.
inline bool rope_store_fusable(const op* ops, uint64_t word = 1, bool any_rows = false) {
    const op &rq = ops[0], &rk = ops[1], &sk = ops[2], &sv = ops[3];
    if (!rope_pair_fusable(rq, rk) || !kv_store_pair_fusable(sk, sv, word, any_rows)) return false;
    const tensor& dk = *rk.dst;
    const tensor& xk = *sk.src[0];
    const tensor& xv = *sv.src[0];
    const int64_t hd = dk.ne[0], nkv = dk.ne[1], n = dk.ne[2];
    if (dk.ne[3] != 1 || dk.nb[1] != size_t(hd) * sizeof(float)) return false;  // rows (t, h) of hd floats
    for (const tensor* x : {&xk, &xv})  // (hd * n_head_kv, n) rows
        if (x->ne[0] != hd * nkv || x->ne[1] != n || x->ne[2] != 1 || x->ne[3] != 1) return false;
    if (xk.data != dk.data || xk.nb[1] != dk.nb[2]) return false;
    const row_bytes_range wk = kv_store_written(sk, word, any_rows), wv = kv_store_written(sv, word, any_rows);
    const tensor* read_or_written[] = {rq.src[0], rq.dst, rk.src[0], rk.dst, rq.src[1], rq.src[2]};
    for (const tensor* t : read_or_written) {
        if (!t) continue;
        if (overlaps(wk, span_of(*t)) || overlaps(wv, span_of(*t))) return false;
    }
    return !tensors_overlap(xv, *rq.dst) && !tensors_overlap(xv, *rk.dst);
}

}  // namespace tfu
