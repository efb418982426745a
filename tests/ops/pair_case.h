// The fused row-wise launches' test case of the GPU backends (tests/cuda/test_cuda_fused_rows.cpp,
// tests/vulkan/test_vk_fusion.cpp): buffers of random bytes with tensor views into them (at any offset and row
// stride, so views may alias), each op list run three ways from the same initial bytes: all in one run() on the
// device (where pairs fuse), each op alone in its own run() on the device (never fused), and on cpu-ref; the
// two device passes must leave every buffer bit-identical, the written tensors close to cpu-ref within test_ops'
// bounds. Plus the ops' constructors.
#pragma once

#include <algorithm>
#include <cmath>
#include <deque>
#include <functional>
#include <stdexcept>

#include "ops/device_test_util.h"

namespace tfu::test {

// Bounds against cpu-ref: relative L2 error and max error / rms (test_ops' per op).
struct bound {
    double rel_l2, max_rms;
};
constexpr bound k_add{1e-6, 1e-6}, k_norm{1e-5, 1e-4}, k_rope{1e-5, 1e-5}, k_store{1e-6, 1e-6};

// Buffers of random bytes and tensor views into them (at any offset and row stride, so views may alias), each
// buffer kept three times: on cpu-ref, on the device for the one-run pass, on the device for the op-by-op pass.
class pair_case {
public:
    enum class copy { fused, single, ref };

    explicit pair_case(backend& dev) : dev_(dev) {}
    ~pair_case() {
        for (buf_rec& b : bufs_) {
            dev_.free(b.fused);
            dev_.free(b.single);
        }
    }
    pair_case(const pair_case&) = delete;
    pair_case& operator=(const pair_case&) = delete;

    // A buffer of `bytes` (a multiple of 4) holding normal random floats (sd 1); returns its index.
    size_t buffer(std::mt19937_64& rng, size_t bytes, const std::string& name) {
        bufs_.emplace_back();
        buf_rec& b = bufs_.back();
        b.name = name;
        const std::vector<float> v = random_floats(rng, bytes / 4);
        b.init.assign(bytes, 0);
        std::memcpy(b.init.data(), v.data(), v.size() * 4);
        b.ref = b.init;
        b.fused = dev_.alloc(bytes, "fused_rows test");
        b.single = dev_.alloc(bytes, "fused_rows test");
        return bufs_.size() - 1;
    }
    // Overwrites 4-byte words of a buffer's initial contents (positions, frequency factors).
    template <typename T>
    void set(size_t buf, size_t offset, const std::vector<T>& v) {
        static_assert(sizeof(T) == 4, "4-byte words");
        buf_rec& b = bufs_[buf];
        ASSERT_LE(offset + v.size() * 4, b.init.size());
        std::memcpy(b.init.data() + offset, v.data(), v.size() * 4);
        std::copy(b.init.begin(), b.init.end(), b.ref.begin());  // in place: views point into ref
    }
    // A view (ne0, ne1, ne2) of buffer `buf` from byte `offset`; row_stride 0: contiguous rows.
    tensor* view(size_t buf, size_t offset, dtype type, int64_t ne0, int64_t ne1 = 1, int64_t ne2 = 1,
                 size_t row_stride = 0) {
        tensor t = make_tensor(type, ne0, ne1, ne2, 1, bufs_[buf].ref.data() + offset);
        if (row_stride) {
            t.nb[1] = row_stride;
            t.nb[2] = t.nb[1] * size_t(ne1);
            t.nb[3] = t.nb[2] * size_t(ne2);
        }
        const size_t end = offset + size_t(t.nrows() - 1) * t.nb[1] + t.row_bytes();
        EXPECT_LE(end, bufs_[buf].init.size()) << "view past the end of " << bufs_[buf].name;
        views_.push_back({t, buf, offset});
        return &views_.back().t;
    }

    // Where buffer `buf` lives in copy c (device memory, or the host bytes cpu-ref works on).
    uint8_t* base(size_t buf, copy c) {
        return static_cast<uint8_t*>(c == copy::fused ? bufs_[buf].fused : c == copy::single ? bufs_[buf].single
                                                                                              : bufs_[buf].ref.data());
    }

    // Runs ops the three ways from the initial bytes and downloads both device results. ext(ops, c), if given,
    // points the ops' descriptors at copy c (a block map's cache), after the initial bytes are in place.
    void run(const std::vector<op>& ops, const std::function<void(std::vector<op>&, copy)>& ext = {}) {
        for (buf_rec& b : bufs_) {
            std::copy(b.init.begin(), b.init.end(), b.ref.begin());  // in place: views point into ref
            dev_.upload(b.fused, b.init.data(), b.init.size());
            dev_.upload(b.single, b.init.data(), b.init.size());
        }
        std::deque<tensor> dev_tensors;
        auto mapped = [&](copy c) {
            std::vector<op> out = ops;
            for (op& o : out) {
                if (o.dst) o.dst = device_view(o.dst, c, dev_tensors);  // KV_STORE_BLOCKS has none
                for (auto& s : o.src)
                    if (s) s = device_view(s, c, dev_tensors);
            }
            return out;
        };
        std::vector<op> fused = mapped(copy::fused);
        std::vector<op> single = mapped(copy::single);
        std::vector<op> ref = ops;
        if (ext) {
            ext(fused, copy::fused);
            ext(single, copy::single);
            ext(ref, copy::ref);
        }
        dev_.run(fused.data(), fused.size());
        for (const op& o : single) dev_.run(&o, 1);
        dev_.sync();
        make_cpu_ref_backend()->run(ref.data(), ref.size());
        for (buf_rec& b : bufs_) {
            b.got_fused.assign(b.init.size(), 0);
            b.got_single.assign(b.init.size(), 0);
            dev_.download(b.got_fused.data(), b.fused, b.init.size());
            dev_.download(b.got_single.data(), b.single, b.init.size());
        }
    }

    // Every buffer bit-identical between the one-run and the op-by-op device passes (but those in `except`: a
    // block map's address array, which points into each pass's own cache).
    void expect_identical(const std::string& what, const std::vector<size_t>& except = {}) const {
        for (size_t i_buf = 0; i_buf < bufs_.size(); ++i_buf) {
            if (std::find(except.begin(), except.end(), i_buf) != except.end()) continue;
            const buf_rec& b = bufs_[i_buf];
            size_t first = b.init.size();
            for (size_t i = 0; i < b.init.size(); ++i)
                if (b.got_fused[i] != b.got_single[i]) {
                    first = i;
                    break;
                }
            EXPECT_EQ(first, b.init.size()) << what << ": buffer " << b.name << " differs between one run() and op by op "
                                            << "from byte " << first << " of " << b.init.size();
        }
    }

    // A view's values in one copy.
    std::vector<float> values(const tensor* host_view, copy c) const {
        const view_rec& v = find(host_view);
        const buf_rec& b = bufs_[v.buf];
        tensor t = v.t;
        const std::vector<uint8_t>& bytes = c == copy::ref ? b.ref : c == copy::fused ? b.got_fused : b.got_single;
        t.data = const_cast<uint8_t*>(bytes.data()) + v.offset;
        return to_floats(t);
    }

    // The one-run device values of a view against cpu-ref.
    void expect_close(const tensor* t, bound bd, const std::string& what) const {
        const std::vector<float> got = values(t, copy::fused), want = values(t, copy::ref);
        double num = 0, den = 0, max_err = 0;
        bool finite = true;
        for (size_t i = 0; i < want.size(); ++i) {
            if (!std::isfinite(got[i])) finite = false;
            const double d = std::fabs(double(got[i]) - want[i]);
            num += d * d;
            den += double(want[i]) * want[i];
            max_err = std::max(max_err, d);
        }
        ASSERT_TRUE(finite) << what << ": non-finite device value";
        ASSERT_GT(den, 0.0) << what << ": reference is all zeros";
        EXPECT_LE(std::sqrt(num / den), bd.rel_l2) << what << ": relative L2 error against cpu-ref";
        EXPECT_LE(max_err / std::sqrt(den / double(want.size())), bd.max_rms) << what << ": max error / rms against cpu-ref";
    }

private:
    struct buf_rec {
        std::string name;
        std::vector<uint8_t> init, ref, got_fused, got_single;
        void* fused = nullptr;
        void* single = nullptr;
    };
    struct view_rec {
        tensor t;
        size_t buf, offset;
    };

    const view_rec& find(const tensor* host_view) const {
        for (const view_rec& v : views_)
            if (&v.t == host_view) return v;
        throw std::runtime_error("pair_case: not a view of this case");
    }
    const tensor* device_view(const tensor* host_view, copy c, std::deque<tensor>& keep) {
        const view_rec& v = find(host_view);
        keep.push_back(v.t);
        void* base = c == copy::fused ? bufs_[v.buf].fused : bufs_[v.buf].single;
        keep.back().data = static_cast<uint8_t*>(base) + v.offset;
        return &keep.back();
    }
    tensor* device_view(tensor* host_view, copy c, std::deque<tensor>& keep) {
        return const_cast<tensor*>(device_view(static_cast<const tensor*>(host_view), c, keep));
    }

    backend& dev_;
    std::deque<buf_rec> bufs_;  // deque: views point into the ref vectors, which never move
    std::deque<view_rec> views_;
};

inline op rope_op(tensor* dst, const tensor* x, const tensor* pos, const tensor* factors, int n_rot, int mode,
                  float base, float scale) {
    op o = make_op(op_type::ROPE, dst, x, pos, factors);
    o.i[0] = n_rot;
    o.i[1] = mode;
    o.f[0] = base;
    o.f[1] = scale;
    return o;
}
inline op norm_op(tensor* dst, const tensor* x, const tensor* w, float eps) {
    op o = make_op(op_type::RMS_NORM, dst, x, w);
    o.f[0] = eps;
    return o;
}
inline op store_op(tensor* cache, const tensor* x, int32_t first) {
    op o = make_op(op_type::KV_STORE, cache, x);
    o.i[0] = first;
    return o;
}

// Positions first, first + 1, ... as i32 words.
inline std::vector<int32_t> positions(int32_t first, int64_t n) {
    std::vector<int32_t> p(size_t(n), 0);
    for (int64_t t = 0; t < n; ++t) p[size_t(t)] = first + int32_t(t);
    return p;
}

// ---- cases shared by the backends' tests --------------------------------------------------------------------
// Each builds its buffers from rng, runs its ops through a pair_case on dev and checks them (bit-identical between
// the two device passes, close to cpu-ref); the caller counts the fused launches where its backend reports them.

// ADD(y, a, b) then RMS_NORM(xn, y, w) over rows of k, b broadcast (one row) or not. decoder: x += o, xn = norm(x);
// apart: y = a + b, xn = norm(y); norm_in_place: y = norm(y); padded: the decoder's form with padded row strides;
// norm_over_a: y apart, the norm written over a.
enum class add_norm_form { decoder, apart, norm_in_place, padded, norm_over_a };
inline void add_rms_norm_case(backend& dev, std::mt19937_64& rng, int64_t rows, int64_t k, bool bcast,
                              add_norm_form f) {
    const std::string what = "rows=" + std::to_string(rows) + " k=" + std::to_string(k) + (bcast ? " broadcast" : "") +
                             " form " + std::to_string(int(f));
    pair_case c(dev);
    const size_t stride = f == add_norm_form::padded ? size_t(k + 8) * 4 : 0;
    const size_t rb = stride ? stride : size_t(k) * 4;
    const size_t bx = c.buffer(rng, rb * size_t(rows), "x");
    const size_t bo = c.buffer(rng, size_t(k) * 4 * size_t(rows), "o");
    const size_t by = c.buffer(rng, rb * size_t(rows), "y");
    const size_t bn = c.buffer(rng, rb * size_t(rows), "xn");
    const size_t bw = c.buffer(rng, size_t(k) * 4, "w");
    tensor* a = c.view(bx, 0, dtype::F32, k, rows, 1, stride);
    tensor* b = c.view(bo, 0, dtype::F32, k, bcast ? 1 : rows);
    tensor* w = c.view(bw, 0, dtype::F32, k);
    const bool y_apart = f != add_norm_form::decoder && f != add_norm_form::padded;
    tensor* y = y_apart ? c.view(by, 0, dtype::F32, k, rows, 1, stride) : a;
    tensor* xn = f == add_norm_form::norm_in_place ? y
                 : f == add_norm_form::norm_over_a ? a
                                                   : c.view(bn, 0, dtype::F32, k, rows, 1, stride);
    c.run({make_op(op_type::ADD, y, a, b), norm_op(xn, y, w, 1e-5f)});
    c.expect_identical(what);
    if (f != add_norm_form::norm_in_place && f != add_norm_form::norm_over_a) c.expect_close(y, k_add, what + " sum");
    c.expect_close(xn, k_norm, what + " norm");
}

// ROPE q then ROPE k of n tokens with the same positions (long-context: the angles need more than f32), factors
// and parameters.
struct rope_shape {
    int64_t hd, nh_q, nh_k;
    int n_rot, mode;
    bool factors, in_place;
    float base, scale;
};
inline void rope_pair_case(backend& dev, std::mt19937_64& rng, const rope_shape& s, int64_t n) {
    const std::string what = "hd=" + std::to_string(s.hd) + " heads " + std::to_string(s.nh_q) + "/" +
                             std::to_string(s.nh_k) + " n_rot=" + std::to_string(s.n_rot) + " mode " +
                             std::to_string(s.mode) + (s.factors ? " factors" : "") + (s.in_place ? " in place" : "") +
                             " n=" + std::to_string(n);
    pair_case c(dev);
    const size_t qb = size_t(s.hd * s.nh_q * n) * 4, kb = size_t(s.hd * s.nh_k * n) * 4;
    const size_t bq = c.buffer(rng, qb, "q"), bk = c.buffer(rng, kb, "k");
    const size_t bqr = c.buffer(rng, qb, "qr"), bkr = c.buffer(rng, kb, "kr");
    const size_t bp = c.buffer(rng, size_t(n) * 4, "pos");
    const size_t bf = c.buffer(rng, size_t(s.n_rot / 2) * 4, "factors");
    c.set(bp, 0, positions(4093, n));
    std::uniform_real_distribution<float> fd(1.0f, 8.0f);
    std::vector<float> ff(size_t(s.n_rot / 2));
    for (float& x : ff) x = fd(rng);
    c.set(bf, 0, ff);
    tensor* q = c.view(bq, 0, dtype::F32, s.hd, s.nh_q, n);
    tensor* k = c.view(bk, 0, dtype::F32, s.hd, s.nh_k, n);
    tensor* qr = s.in_place ? q : c.view(bqr, 0, dtype::F32, s.hd, s.nh_q, n);
    tensor* kr = s.in_place ? k : c.view(bkr, 0, dtype::F32, s.hd, s.nh_k, n);
    tensor* pos = c.view(bp, 0, dtype::I32, n);
    tensor* factors = s.factors ? c.view(bf, 0, dtype::F32, s.n_rot / 2) : nullptr;
    c.run({rope_op(qr, q, pos, factors, s.n_rot, s.mode, s.base, s.scale),
           rope_op(kr, k, pos, factors, s.n_rot, s.mode, s.base, s.scale)});
    c.expect_identical(what);
    c.expect_close(qr, k_rope, what + " q");
    c.expect_close(kr, k_rope, what + " k");
}

// KV_STORE k then KV_STORE v of n rows of `row` elements at cache row `first` (of 64), caches of dtype t apart or
// side by side in one allocation.
inline void kv_store_pair_case(backend& dev, std::mt19937_64& rng, dtype t, int64_t row, int64_t n, int32_t first,
                               bool one_buffer) {
    const std::string what = std::string(dtype_name(t)) + " row=" + std::to_string(row) + " n=" + std::to_string(n) +
                             " first=" + std::to_string(first) + (one_buffer ? " one buffer" : "");
    const int64_t n_ctx = 64;
    const size_t cache_bytes = row_size(t, row) * size_t(n_ctx);
    pair_case c(dev);
    const size_t bxk = c.buffer(rng, size_t(row * n) * 4, "xk");
    const size_t bxv = c.buffer(rng, size_t(row * n) * 4, "xv");
    const size_t bck = c.buffer(rng, one_buffer ? 2 * cache_bytes : cache_bytes, "cache k");
    const size_t bcv = one_buffer ? bck : c.buffer(rng, cache_bytes, "cache v");
    tensor* xk = c.view(bxk, 0, dtype::F32, row, n);
    tensor* xv = c.view(bxv, 0, dtype::F32, row, n);
    tensor* ck = c.view(bck, 0, t, row, n_ctx);
    tensor* cv = c.view(bcv, one_buffer ? cache_bytes : 0, t, row, n_ctx);
    c.run({store_op(ck, xk, first), store_op(cv, xv, first)});
    c.expect_identical(what);
    const size_t rb = row_size(t, row) * size_t(first);
    c.expect_close(c.view(bck, rb, t, row, n), k_store, what + " k rows");
    c.expect_close(c.view(bcv, (one_buffer ? cache_bytes : 0) + rb, t, row, n), k_store, what + " v rows");
}

// Pairs that must run op by op. A wrong fusion would give results that differ from the op-by-op run: the second
// op's own positions, parameters, factors or rows ignored, or data read before (or written after) the first op
// has written (or read) it.
// ROPE (q, k of (hd, nh, n)): other positions, n_rot, mode, base, scale, factors; k = the first's result; the
// first's source overwritten by the second.
enum class rope_diff { pos, n_rot, mode, base, scale, factors, reads_first_dst, writes_first_src };
inline void rope_lookalike(backend& dev, std::mt19937_64& rng, rope_diff d, int64_t hd, int64_t nh, int64_t n) {
    const std::string what = "rope lookalike " + std::to_string(int(d));
    pair_case c(dev);
    const size_t qb = size_t(hd * nh * n) * 4;
    const size_t bq = c.buffer(rng, qb, "q"), bk = c.buffer(rng, qb, "k");
    const size_t bqr = c.buffer(rng, qb, "qr"), bkr = c.buffer(rng, qb, "kr");
    const size_t bp = c.buffer(rng, size_t(2 * n) * 4, "pos");
    const size_t bf = c.buffer(rng, size_t(hd / 2) * 4, "factors");
    std::vector<int32_t> p = positions(100, n), p2 = positions(9000, n);
    p.insert(p.end(), p2.begin(), p2.end());
    c.set(bp, 0, p);
    std::vector<float> ff(size_t(hd / 2));
    for (size_t j = 0; j < ff.size(); ++j) ff[j] = 1.0f + float(j % 5);
    c.set(bf, 0, ff);
    tensor* q = c.view(bq, 0, dtype::F32, hd, nh, n);
    tensor* k = c.view(bk, 0, dtype::F32, hd, nh, n);
    tensor* qr = c.view(bqr, 0, dtype::F32, hd, nh, n);
    tensor* kr = c.view(bkr, 0, dtype::F32, hd, nh, n);
    tensor* pos = c.view(bp, 0, dtype::I32, n);
    tensor* pos2 = c.view(bp, size_t(n) * 4, dtype::I32, n);
    tensor* factors = c.view(bf, 0, dtype::F32, hd / 2);
    op first = rope_op(qr, q, pos, nullptr, int(hd), 0, 10000.0f, 1.0f);
    op second = rope_op(kr, k, pos, nullptr, int(hd), 0, 10000.0f, 1.0f);
    switch (d) {
        case rope_diff::pos: second.src[1] = pos2; break;
        case rope_diff::n_rot: second.i[0] = 32; break;
        case rope_diff::mode: second.i[1] = 2; break;
        case rope_diff::base: second.f[0] = 500000.0f; break;
        case rope_diff::scale: second.f[1] = 0.5f; break;
        case rope_diff::factors: second.src[2] = factors; break;
        case rope_diff::reads_first_dst: second.src[0] = qr; break;  // kr = rope(rope(q))
        case rope_diff::writes_first_src: second.dst = q; break;     // q = rope(k) after qr = rope(q)
    }
    c.run({first, second});
    c.expect_identical(what);
    c.expect_close(qr, k_rope, what + " first");
    c.expect_close(second.dst, k_rope, what + " second");
}

// ADD + RMS_NORM (rows of e): the norm of another tensor (a, not the sum), of the sum's rows shifted by one, a norm
// whose result lands on the ADD's next source rows (xn = a's rows 1 .. n), a norm weight that is the sum's first
// row.
enum class norm_diff { other_src, shifted_rows, dst_over_next_source, weight_is_sum };
inline void norm_lookalike(backend& dev, std::mt19937_64& rng, norm_diff d, int64_t e, int64_t n) {
    const std::string what = "add+norm lookalike " + std::to_string(int(d));
    pair_case c(dev);
    const size_t rb = size_t(e) * 4;
    const size_t ba = c.buffer(rng, rb * size_t(n + 1), "a"), bb = c.buffer(rng, rb * size_t(n), "b");
    const size_t by = c.buffer(rng, rb * size_t(n + 1), "y"), bn = c.buffer(rng, rb * size_t(n), "xn");
    const size_t bw = c.buffer(rng, rb, "w");
    tensor* a = c.view(ba, 0, dtype::F32, e, n);
    tensor* b = c.view(bb, 0, dtype::F32, e, n);
    tensor* y = c.view(by, 0, dtype::F32, e, n);
    tensor* w = c.view(bw, 0, dtype::F32, e);
    op add = make_op(op_type::ADD, y, a, b);
    op norm;
    switch (d) {
        case norm_diff::other_src: norm = norm_op(c.view(bn, 0, dtype::F32, e, n), a, w, 1e-5f); break;
        case norm_diff::shifted_rows:
            norm = norm_op(c.view(bn, 0, dtype::F32, e, n), c.view(by, rb, dtype::F32, e, n), w, 1e-5f);
            break;
        case norm_diff::dst_over_next_source: norm = norm_op(c.view(ba, rb, dtype::F32, e, n), y, w, 1e-5f); break;
        case norm_diff::weight_is_sum:
            norm = norm_op(c.view(bn, 0, dtype::F32, e, n), y, c.view(by, 0, dtype::F32, e), 1e-5f);
            break;
    }
    c.run({add, norm});
    c.expect_identical(what);
    c.expect_close(y, k_add, what + " sum");
    c.expect_close(norm.dst, k_norm, what + " norm");
}

// KV_STORE (n rows of 512): other rows, other cache dtype, v's source = the rows k's store writes (f32 cache); and
// two f16 caches of 33-element rows whose stored rows (2 each) share a 32-bit word but no byte: a launch that
// writes whole words must not run them together.
enum class store_diff { first, dtype_, reads_first_dst, shared_word };
inline void store_lookalike(backend& dev, std::mt19937_64& rng, store_diff d, int64_t n) {
    const std::string what = "kv_store lookalike " + std::to_string(int(d));
    const bool odd = d == store_diff::shared_word;
    const int64_t row = odd ? 33 : 8 * 64, n_ctx = 16, nn = odd ? 2 : n;
    pair_case c(dev);
    const size_t bxk = c.buffer(rng, size_t(row * nn) * 4, "xk"), bxv = c.buffer(rng, size_t(row * nn) * 4, "xv");
    const size_t bck = c.buffer(rng, size_t(row * n_ctx) * 4, "cache k");
    const size_t bcv = c.buffer(rng, size_t(row * n_ctx) * 4, "cache v");
    const dtype tk = d == store_diff::reads_first_dst ? dtype::F32 : dtype::F16;
    const dtype tv = d == store_diff::dtype_ ? dtype::BF16 : tk;
    const int32_t first_k = odd ? 1 : 5, first_v = d == store_diff::first ? 9 : first_k;
    tensor* xk = c.view(bxk, 0, dtype::F32, row, nn);
    tensor* xv = d == store_diff::reads_first_dst
                     ? c.view(bck, row_size(tk, row) * size_t(first_k), dtype::F32, row, nn)
                     : c.view(bxv, 0, dtype::F32, row, nn);
    tensor* ck = c.view(bck, 0, tk, row, n_ctx);
    // shared_word: v's cache 132 bytes into k's, its rows 1, 2 ([198, 330)) right after k's ([66, 198)).
    const size_t bv = odd ? bck : bcv, v_at = odd ? 2 * row_size(tv, row) : 0;
    tensor* cv = c.view(bv, v_at, tv, row, odd ? n_ctx - 2 : n_ctx);
    c.run({store_op(ck, xk, first_k), store_op(cv, xv, first_v)});
    c.expect_identical(what);
    c.expect_close(c.view(bck, row_size(tk, row) * size_t(first_k), tk, row, nn), k_store, what + " k rows");
    c.expect_close(c.view(bv, v_at + row_size(tv, row) * size_t(first_v), tv, row, nn), k_store, what + " v rows");
}

// ROPE q, ROPE k, KV_STORE k, KV_STORE v of n tokens at cache row pos0 (of n_ctx; caches of dtype t whose rows
// are padded by cache_pad bytes): the decoder's four ops between the projections and the attention, which a backend may
// run as one launch (CUDA's rope_store_kernel, Vulkan's rope_store). decoder and in_place (q and k rotated in
// place) are that shape; the lookalikes must not take the four-op launch: the k store of the unrotated k, v's
// store reading the rotated k, a k store of other rows of the rotated k (n >= 2).
enum class rope_store_form { decoder, in_place, store_unrotated, v_is_rotated_k, shifted_k_rows };
struct rope_store_shape {
    int64_t hd, nh, nkv;
    int n_rot, mode;
    bool factors;
};
inline void rope_store_case(backend& dev, std::mt19937_64& rng, dtype t, const rope_store_shape& s, int64_t n,
                            rope_store_form f, size_t cache_pad = 0, int32_t pos0 = 29, int64_t n_ctx = 40) {
    const int64_t hd = s.hd, nkv = s.nkv;
    const std::string what = std::string(dtype_name(t)) + " hd=" + std::to_string(hd) + " heads " +
                             std::to_string(s.nh) + "/" + std::to_string(nkv) + " n_rot=" + std::to_string(s.n_rot) +
                             " mode " + std::to_string(s.mode) + (s.factors ? " factors" : "") + " n=" +
                             std::to_string(n) + " form " + std::to_string(int(f)) + " cache pad " +
                             std::to_string(cache_pad);
    pair_case c(dev);
    const size_t kb = size_t(hd * nkv * (n + 1)) * 4;
    const size_t bq = c.buffer(rng, size_t(hd * s.nh * n) * 4, "q"), bk = c.buffer(rng, kb, "k");
    const size_t bv = c.buffer(rng, kb, "v");
    const size_t bqr = c.buffer(rng, size_t(hd * s.nh * n) * 4, "qr"), bkr = c.buffer(rng, kb, "kr");
    const size_t bp = c.buffer(rng, size_t(n) * 4, "pos");
    const size_t bf = c.buffer(rng, size_t(s.n_rot / 2) * 4, "factors");
    c.set(bp, 0, positions(pos0, n));
    std::uniform_real_distribution<float> fd(1.0f, 8.0f);
    std::vector<float> ff(size_t(s.n_rot / 2));
    for (float& x : ff) x = fd(rng);
    c.set(bf, 0, ff);
    const size_t crow = row_size(t, hd * nkv) + cache_pad, cb = (crow * size_t(n_ctx) + 3) / 4 * 4;
    const size_t bck = c.buffer(rng, cb, "cache k"), bcv = c.buffer(rng, cb, "cache v");
    tensor* q3 = c.view(bq, 0, dtype::F32, hd, s.nh, n);
    tensor* k3 = c.view(bk, 0, dtype::F32, hd, nkv, n);
    const bool in_place = f == rope_store_form::in_place;
    tensor* qr = in_place ? q3 : c.view(bqr, 0, dtype::F32, hd, s.nh, n);
    tensor* kr = in_place ? k3 : c.view(bkr, 0, dtype::F32, hd, nkv, n);
    const size_t kr_buf = in_place ? bk : bkr;
    const size_t k_row = size_t(hd * nkv) * 4;
    tensor* xk = f == rope_store_form::store_unrotated  ? c.view(bk, 0, dtype::F32, hd * nkv, n)
                 : f == rope_store_form::shifted_k_rows ? c.view(kr_buf, k_row, dtype::F32, hd * nkv, n - 1)
                                                        : c.view(kr_buf, 0, dtype::F32, hd * nkv, n);
    tensor* xv = f == rope_store_form::v_is_rotated_k ? c.view(kr_buf, 0, dtype::F32, hd * nkv, n)
                                                      : c.view(bv, 0, dtype::F32, hd * nkv, n);
    tensor* pos = c.view(bp, 0, dtype::I32, n);
    tensor* factors = s.factors ? c.view(bf, 0, dtype::F32, s.n_rot / 2) : nullptr;
    tensor* ck = c.view(bck, 0, t, hd * nkv, n_ctx, 1, crow);
    tensor* cv = c.view(bcv, 0, t, hd * nkv, n_ctx, 1, crow);
    c.run({rope_op(qr, q3, pos, factors, s.n_rot, s.mode, 10000.0f, 1.0f),
           rope_op(kr, k3, pos, factors, s.n_rot, s.mode, 10000.0f, 1.0f), store_op(ck, xk, pos0),
           store_op(cv, xv, pos0)});
    c.expect_identical(what);
    c.expect_close(qr, k_rope, what + " q");
    c.expect_close(kr, k_rope, what + " k");
    // f16/bf16 caches hold the rotated k rounded: a last-bit difference of a rotation from the reference's may move
    // it one step (2^-11 f16, 2^-8 bf16, relative).
    const bound kb_bound = t == dtype::F32 ? k_rope : t == dtype::F16 ? bound{1e-3, 4e-3} : bound{8e-3, 3e-2};
    const size_t rb = crow * size_t(pos0);
    c.expect_close(c.view(bck, rb, t, hd * nkv, xk->ne[1], 1, crow), kb_bound, what + " cache k");
    c.expect_close(c.view(bcv, rb, t, hd * nkv, n, 1, crow), f == rope_store_form::v_is_rotated_k ? kb_bound : k_store,
                   what + " cache v");
}

// A decoder layer's chain in one run(): ROPE q, ROPE k, KV_STORE k (of the roped k), KV_STORE v, then the
// residual ADD and the RMS_NORM of the result; the pairs feed each other through the stream order.
inline void decoder_chain_case(backend& dev, std::mt19937_64& rng, int64_t n, int64_t hd, int64_t nh, int64_t nkv) {
    const int64_t n_ctx = 32, e = hd * nh;
    const int32_t pos0 = 17;
    pair_case c(dev);
    const size_t bq = c.buffer(rng, size_t(e * n) * 4, "q"), bk = c.buffer(rng, size_t(hd * nkv * n) * 4, "k");
    const size_t bv = c.buffer(rng, size_t(hd * nkv * n) * 4, "v");
    const size_t bqr = c.buffer(rng, size_t(e * n) * 4, "qr"), bkr = c.buffer(rng, size_t(hd * nkv * n) * 4, "kr");
    const size_t bp = c.buffer(rng, size_t(n) * 4, "pos");
    c.set(bp, 0, positions(pos0, n));
    const size_t bck = c.buffer(rng, size_t(hd * nkv * n_ctx) * 2, "cache k");
    const size_t bcv = c.buffer(rng, size_t(hd * nkv * n_ctx) * 2, "cache v");
    const size_t bx = c.buffer(rng, size_t(e * n) * 4, "x"), bo = c.buffer(rng, size_t(e * n) * 4, "o");
    const size_t bxn = c.buffer(rng, size_t(e * n) * 4, "xn"), bw = c.buffer(rng, size_t(e) * 4, "w");
    tensor* q3 = c.view(bq, 0, dtype::F32, hd, nh, n);
    tensor* k3 = c.view(bk, 0, dtype::F32, hd, nkv, n);
    tensor* v = c.view(bv, 0, dtype::F32, hd * nkv, n);
    tensor* qr = c.view(bqr, 0, dtype::F32, hd, nh, n);
    tensor* kr = c.view(bkr, 0, dtype::F32, hd, nkv, n);
    tensor* kr2 = c.view(bkr, 0, dtype::F32, hd * nkv, n);
    tensor* pos = c.view(bp, 0, dtype::I32, n);
    tensor* ck = c.view(bck, 0, dtype::F16, hd * nkv, n_ctx);
    tensor* cv = c.view(bcv, 0, dtype::F16, hd * nkv, n_ctx);
    tensor* x = c.view(bx, 0, dtype::F32, e, n);
    tensor* o = c.view(bo, 0, dtype::F32, e, n);
    tensor* xn = c.view(bxn, 0, dtype::F32, e, n);
    tensor* w = c.view(bw, 0, dtype::F32, e);
    c.run({rope_op(qr, q3, pos, nullptr, int(hd), 0, 10000.0f, 1.0f),
           rope_op(kr, k3, pos, nullptr, int(hd), 0, 10000.0f, 1.0f), store_op(ck, kr2, pos0), store_op(cv, v, pos0),
           make_op(op_type::ADD, x, x, o), norm_op(xn, x, w, 1e-6f)});
    const std::string what = "chain n=" + std::to_string(n);
    c.expect_identical(what);
    c.expect_close(qr, k_rope, what + " q");
    c.expect_close(kr, k_rope, what + " k");
    // The cache holds kr rounded to f16: where a rotation differs from the reference's in the last f32 bit (rare),
    // its f16 may differ by one f16 step (2^-11 relative).
    c.expect_close(c.view(bck, size_t(pos0) * size_t(hd * nkv) * 2, dtype::F16, hd * nkv, n), bound{1e-3, 4e-3},
                   what + " cache k");
    c.expect_close(c.view(bcv, size_t(pos0) * size_t(hd * nkv) * 2, dtype::F16, hd * nkv, n), k_store, what + " cache v");
    c.expect_close(x, k_add, what + " x");
    c.expect_close(xn, k_norm, what + " xn");
}

}  // namespace tfu::test
