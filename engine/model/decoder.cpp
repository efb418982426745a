// The decoder forward pass: embeddings, n_layer pre-norm blocks (attention + SwiGLU MLP), final norm, logits.
//   x = tok_embd[tokens]                                   (n_embd, n)
//   per layer:  h = rms_norm(x) * attn_norm
//               q, k, v = Wq h (+bq), Wk h (+bk), Wv h (+bv)  (hd, n_head | n_head_kv, n)
//               q, k = rope(q, pos), rope(k, pos); cache[pos] = k, v
//               x = x + Wo attention(q, cache)
//               h = rms_norm(x) * ffn_norm;  x = x + Wdown (silu(Wgate h) * Wup h)
//   logits = Woutput (rms_norm(x) * output_norm)           (n_vocab, n or 1)
#include "model/decoder.h"

#include <cmath>

#include "core/error.h"

namespace tfu {
namespace {

op make_op(op_type t, tensor* dst, const tensor* a, const tensor* b = nullptr, const tensor* c = nullptr) {
    op o;
    o.type = t;
    o.dst = dst;
    o.src[0] = a;
    o.src[1] = b;
    o.src[2] = c;
    return o;
}

}  // namespace

decoder::decoder(const hparams& hp, const model_weights& w, int32_t n_batch_max, backend* device)
    : hp_(hp), w_(w), n_batch_max_(n_batch_max), dev_(device && !device->host_memory() ? device : nullptr) {
    if (n_batch_max < 1) fail(TFU_STATUS_INVALID_ARGUMENT, "n_batch must be at least 1");
    const size_t nb = size_t(n_batch_max);
    if (w.rope_freqs.data) {
        rope_factors_host_ = w.rope_freqs;  // a weight: already where the backend reads it (place_weights)
    } else if (hp.rope_llama3) {
        rope_factor_data_ = llama3_rope_factors(hp);
        rope_factors_host_ = make_tensor(dtype::F32, int64_t(rope_factor_data_.size()), 1, 1, 1,
                                         rope_factor_data_.data(), "rope_factors");
    }
    // One arena for every buffer, each 256-byte aligned (64 floats).
    std::vector<buffer*> bufs = {&x_, &xn_, &q_, &qr_, &att_, &k_, &kr_, &v_, &o_, &g_, &u_, &ids_, &pos_, &factors_,
                                 &argmax_, &columns_};
    const size_t sizes[] = {size_t(hp.n_embd) * nb, size_t(hp.n_embd) * nb, size_t(hp.n_embd_q()) * nb,
                            size_t(hp.n_embd_q()) * nb, size_t(hp.n_embd_q()) * nb, size_t(hp.n_embd_kv()) * nb,
                            size_t(hp.n_embd_kv()) * nb, size_t(hp.n_embd_kv()) * nb, size_t(hp.n_embd) * nb,
                            size_t(hp.n_ff) * nb, size_t(hp.n_ff) * nb, nb, nb,
                            rope_factor_data_.size(), nb, nb};
    size_t total = 0;
    for (size_t i = 0; i < bufs.size(); ++i) {
        bufs[i]->n = sizes[i];
        total += (sizes[i] + 63) / 64 * 64;
    }
    float* base = nullptr;
    if (dev_) {
        dev_arena_ = dev_->alloc(total * sizeof(float), "decoder activations");
        base = static_cast<float*>(dev_arena_);
    } else {
        host_arena_.resize(total);
        base = host_arena_.data();
    }
    size_t at = 0;
    for (size_t i = 0; i < bufs.size(); ++i) {
        bufs[i]->data = base + at;  // device addresses allow this arithmetic (backend.h)
        at += (sizes[i] + 63) / 64 * 64;
    }
    ids_host_.resize(nb);
    pos_host_.resize(nb);
    // columns_: 0 .. nb - 1, the ids of forward_multi's per-sequence logits copies (keep).
    std::vector<int32_t> cols(nb);
    for (size_t i = 0; i < nb; ++i) cols[i] = int32_t(i);
    if (dev_) dev_->upload(columns_.data, cols.data(), nb * sizeof(int32_t));
    else std::copy(cols.begin(), cols.end(), reinterpret_cast<int32_t*>(columns_.data));
    if (!rope_factor_data_.empty()) {
        rope_factors_ = make_tensor(dtype::F32, int64_t(rope_factor_data_.size()), 1, 1, 1, factors_.data,
                                    "rope_factors");
        if (dev_) dev_->upload(factors_.data, rope_factor_data_.data(), rope_factor_data_.size() * sizeof(float));
        else std::copy(rope_factor_data_.begin(), rope_factor_data_.end(), factors_.data);
    } else if (w.rope_freqs.data) {
        rope_factors_ = w.rope_freqs;
    }
}

decoder::~decoder() {
    if (dev_) {
        dev_->free(dev_arena_);
        if (dev_logits_) dev_->free(dev_logits_);
    }
}

float* decoder::logits_buffer(size_t n_floats) {
    if (n_floats > dev_logits_n_) {
        if (dev_logits_) dev_->free(dev_logits_);
        dev_logits_ = nullptr;
        dev_logits_ = dev_->alloc(n_floats * sizeof(float), "logits");
        dev_logits_n_ = n_floats;
    }
    return static_cast<float*>(dev_logits_);
}

tensor decoder::act(const buffer& b, int64_t ne0, int64_t ne1, int64_t ne2) {
    TFU_CHECK(size_t(ne0 * ne1 * ne2) <= b.n);
    return make_tensor(dtype::F32, ne0, ne1, ne2, 1, b.data);
}

void decoder::rope_shift(backend& be, float* rows, const int32_t* deltas, int32_t n) const {
    TFU_CHECK(be.host_memory());
    if (n <= 0) return;
    tensor x = make_tensor(dtype::F32, hp_.head_dim, 1, n, 1, rows, "shifted keys");
    tensor p = make_tensor(dtype::I32, n, 1, 1, 1, const_cast<int32_t*>(deltas), "shift");
    // rope_factors_host_: a model loaded for a device backend keeps rope_freqs in device memory; rope_shift runs
    // on the host, so it is only used where the weights are host memory (the paged cache, CPU backends).
    op r = make_op(op_type::ROPE, &x, &x, &p, rope_factors_host_.data ? &rope_factors_host_ : nullptr);
    r.i[0] = hp_.n_rot;
    r.i[1] = int32_t(hp_.rope);
    r.f[0] = hp_.rope_freq_base;
    r.f[1] = hp_.rope_freq_scale;
    be.run(&r, 1);
}

bool decoder::forward(backend& be, const kv_target& kv, const int32_t* tokens, int32_t n, int32_t pos0,
                      bool all_logits, float* logits, const std::atomic<bool>* cancel, int32_t* argmax) {
    sequence one;
    one.kv = kv;
    one.tokens = tokens;
    one.n = n;
    one.pos0 = pos0;
    one.cancel = cancel;
    return forward_multi(be, &one, 1, all_logits, logits, argmax);
}

void decoder::download_logits(uint64_t version, float* out, size_t n_floats) {
    TFU_CHECK(dev_ && n_floats <= dev_logits_n_);
    if (version != logits_version_)
        fail(TFU_STATUS_INTERNAL, "the logits kept in device memory were replaced by a later forward pass before "
                                  "they were read");
    dev_->download(out, dev_logits_, n_floats * sizeof(float));
}

bool decoder::forward_multi(backend& be, const sequence* seqs, int32_t n_seq, bool all_logits, float* logits,
                            int32_t* argmax, decoder* const* keep) {
    TFU_CHECK(n_seq >= 1);
    TFU_CHECK(dev_ ? &be == dev_ : be.host_memory());
    int32_t n = 0;  // columns of the batch
    bool any_paged = false;
    for (int32_t s = 0; s < n_seq; ++s) {
        const kv_target& kv = seqs[s].kv;
        TFU_CHECK(seqs[s].n >= 1);
        TFU_CHECK(int(kv.contiguous != nullptr) + int(kv.paged != nullptr) + int(kv.blocks != nullptr) == 1);
        any_paged = any_paged || kv.paged;
        n += seqs[s].n;
    }
    TFU_CHECK(n >= 1 && n <= n_batch_max_);
    if (dev_ && any_paged)
        fail(TFU_STATUS_UNSUPPORTED, std::string("this paged KV cache is written on the host; backend ") + be.name() +
                                         " needs the contiguous cache or block maps");
    const int64_t E = hp_.n_embd, HD = hp_.head_dim, NH = hp_.n_head, NKV = hp_.n_head_kv, F = hp_.n_ff;
    for (int32_t s = 0, c = 0; s < n_seq; ++s)
        for (int32_t i = 0; i < seqs[s].n; ++i, ++c) {
            const int32_t t = seqs[s].tokens[i];
            if (t < 0 || t >= hp_.n_vocab)
                fail(TFU_STATUS_INVALID_ARGUMENT, "token id " + std::to_string(t) + " is out of the vocabulary");
            ids_host_[size_t(c)] = t;
            pos_host_[size_t(c)] = seqs[s].pos0 + i;  // each column at its own sequence's position
        }
    int32_t* ids_mem = reinterpret_cast<int32_t*>(ids_.data);
    int32_t* pos_mem = reinterpret_cast<int32_t*>(pos_.data);
    if (dev_) {
        be.upload(ids_mem, ids_host_.data(), size_t(n) * sizeof(int32_t));
        be.upload(pos_mem, pos_host_.data(), size_t(n) * sizeof(int32_t));
    } else {
        std::copy(ids_host_.begin(), ids_host_.begin() + n, ids_mem);
        std::copy(pos_host_.begin(), pos_host_.begin() + n, pos_mem);
    }
    tensor ids = make_tensor(dtype::I32, n, 1, 1, 1, ids_mem, "ids");
    tensor pos = make_tensor(dtype::I32, n, 1, 1, 1, pos_mem, "pos");
    tensor x = act(x_, E, n), xn = act(xn_, E, n), o = act(o_, E, n);
    tensor q = act(q_, HD * NH, n), k = act(k_, HD * NKV, n), v = act(v_, HD * NKV, n);
    tensor q3 = act(q_, HD, NH, n), k3 = act(k_, HD, NKV, n);
    tensor qr = act(qr_, HD, NH, n), kr = act(kr_, HD, NKV, n);
    tensor att2 = act(att_, HD * NH, n);
    tensor g = act(g_, F, n), u = act(u_, F, n);
    const tensor* factors = rope_factors_.data ? &rope_factors_ : nullptr;

    // Each sequence's columns c0 .. c0+n_s-1 as views of the batch's activations (with one sequence: the whole
    // tensors): its rotated keys and values (n_embd_kv, n_s) for its cache, its queries and attention output
    // (hd, n_head, n_s).
    struct seq_views {
        tensor kr2, v, qr, att;
    };
    std::vector<seq_views> views(static_cast<size_t>(n_seq));
    for (int32_t s = 0, c0 = 0; s < n_seq; c0 += seqs[s].n, ++s) {
        const int32_t ns = seqs[s].n;
        views[size_t(s)].kr2 = make_tensor(dtype::F32, HD * NKV, ns, 1, 1, kr_.data + size_t(c0) * size_t(HD * NKV));
        views[size_t(s)].v = make_tensor(dtype::F32, HD * NKV, ns, 1, 1, v_.data + size_t(c0) * size_t(HD * NKV));
        views[size_t(s)].qr = make_tensor(dtype::F32, HD, NH, ns, 1, qr_.data + size_t(c0) * size_t(HD * NH));
        views[size_t(s)].att = make_tensor(dtype::F32, HD, NH, ns, 1, att_.data + size_t(c0) * size_t(HD * NH));
    }
    auto cancelled = [&] {
        for (int32_t s = 0; s < n_seq; ++s)
            if (seqs[s].cancel && seqs[s].cancel->load(std::memory_order_relaxed)) return true;
        return false;
    };

    // One run() per layer: from the layer's attention norm to its last residual ADD, so that a backend can fuse
    // each norm into the projections after it and each residual ADD into the projection before it (the CUDA
    // backend does both: kernels_cuda/mul_mat_vec.h); the embedding lookup in the first and the output norm and
    // projection in the last.
    auto attn_norm = [&](int32_t il) {
        op norm = make_op(op_type::RMS_NORM, &xn, &x, &w_.layers[size_t(il)].attn_norm);
        norm.f[0] = hp_.rms_eps;
        return norm;
    };
    std::vector<op> ops;
    ops.reserve(28 + 3 * size_t(n_seq));
    ops.push_back(make_op(op_type::GET_ROWS, &x, &w_.tok_embd, &ids));

    for (int32_t il = 0; il < hp_.n_layer; ++il) {
        if (cancelled()) fail(TFU_STATUS_CANCELLED, "cancelled");
        const layer_weights& L = w_.layers[size_t(il)];
        ops.push_back(attn_norm(il));
        ops.push_back(make_op(op_type::MUL_MAT, &q, &L.wq, &xn));
        ops.push_back(make_op(op_type::MUL_MAT, &k, &L.wk, &xn));
        ops.push_back(make_op(op_type::MUL_MAT, &v, &L.wv, &xn));
        if (L.bq.data) ops.push_back(make_op(op_type::ADD, &q, &q, &L.bq));
        if (L.bk.data) ops.push_back(make_op(op_type::ADD, &k, &k, &L.bk));
        if (L.bv.data) ops.push_back(make_op(op_type::ADD, &v, &v, &L.bv));
        for (auto [dst, src] : {std::pair<tensor*, tensor*>{&qr, &q3}, {&kr, &k3}}) {
            op r = make_op(op_type::ROPE, dst, src, &pos, factors);
            r.i[0] = hp_.n_rot;
            r.i[1] = int32_t(hp_.rope);
            r.f[0] = hp_.rope_freq_base;
            r.f[1] = hp_.rope_freq_scale;
            ops.push_back(r);
        }
        if (any_paged) {
            // The paged caches are written on the host between the two halves of the layer.
            be.run(ops.data(), ops.size());
            ops.clear();
            for (int32_t s = 0; s < n_seq; ++s) {
                kv_sink* sink = seqs[s].kv.paged;
                if (!sink) continue;
                sink->store(il, views[size_t(s)].kr2, views[size_t(s)].v, seqs[s].pos0);
                sink->observe(il, views[size_t(s)].qr, seqs[s].pos0);
            }
        }
        for (int32_t s = 0; s < n_seq; ++s) {
            seq_views& sv = views[size_t(s)];
            const int32_t pos0 = seqs[s].pos0;
            op a;
            if (const kv_layer* cl = seqs[s].kv.contiguous) {
                const kv_layer& c = cl[il];
                op stk = make_op(op_type::KV_STORE, c.k, &sv.kr2);
                stk.i[0] = pos0;
                ops.push_back(stk);
                op stv = make_op(op_type::KV_STORE, c.v, &sv.v);
                stv.i[0] = pos0;
                ops.push_back(stv);
                a = make_op(op_type::ATTENTION, &sv.att, &sv.qr, c.k, c.v);
            } else if (const kv_block_map* bm = seqs[s].kv.blocks) {
                op st = make_op(op_type::KV_STORE_BLOCKS, nullptr, &sv.kr2, &sv.v);
                st.ext = &bm[il];
                st.i[0] = pos0;
                ops.push_back(st);
                a = make_op(op_type::ATTENTION_BLOCKS, &sv.att, &sv.qr);
                a.ext = &bm[il];
            } else {
                a = make_op(op_type::ATTENTION_PAGED, &sv.att, &sv.qr);
                a.ext = seqs[s].kv.paged->view(il);  // valid until this sink's next view(): after this run
            }
            a.i[0] = pos0;
            a.i[1] = int32_t(NKV);
            a.f[0] = float(1.0 / std::sqrt(double(HD)));
            ops.push_back(a);
        }
        ops.push_back(make_op(op_type::MUL_MAT, &o, &L.wo, &att2));
        ops.push_back(make_op(op_type::ADD, &x, &x, &o));
        op fnorm = make_op(op_type::RMS_NORM, &xn, &x, &L.ffn_norm);
        fnorm.f[0] = hp_.rms_eps;
        ops.push_back(fnorm);
        ops.push_back(make_op(op_type::MUL_MAT, &g, &L.ffn_gate, &xn));
        ops.push_back(make_op(op_type::MUL_MAT, &u, &L.ffn_up, &xn));
        ops.push_back(make_op(op_type::SWIGLU, &g, &g, &u));
        ops.push_back(make_op(op_type::MUL_MAT, &o, &L.ffn_down, &g));
        ops.push_back(make_op(op_type::ADD, &x, &x, &o));
        if (il + 1 < hp_.n_layer) {
            be.run(ops.data(), ops.size());
            ops.clear();
        }
    }

    // Final norm and output projection: all positions (perplexity) or the last of each sequence (generation).
    // When those columns are the batch's last n_out (one sequence, or one token per sequence), one norm over
    // them; else one norm per sequence from its last column into column s of xn.
    const int64_t n_out = all_logits ? n : n_seq;
    std::vector<tensor> norm_views;
    const bool tail = all_logits || n_seq == 1 || n == n_seq;
    norm_views.reserve(tail ? 2 : 2 * size_t(n_seq));
    if (tail) {
        norm_views.push_back(make_tensor(dtype::F32, E, n_out, 1, 1, x_.data + size_t(E) * size_t(n - n_out)));
        norm_views.push_back(make_tensor(dtype::F32, E, n_out, 1, 1, xn_.data));
    } else {
        for (int32_t s = 0, c0 = 0; s < n_seq; c0 += seqs[s].n, ++s) {
            const size_t last = size_t(c0 + seqs[s].n - 1);
            norm_views.push_back(make_tensor(dtype::F32, E, 1, 1, 1, x_.data + size_t(E) * last));
            norm_views.push_back(make_tensor(dtype::F32, E, 1, 1, 1, xn_.data + size_t(E) * size_t(s)));
        }
    }
    for (size_t i = 0; i < norm_views.size(); i += 2) {
        op fn = make_op(op_type::RMS_NORM, &norm_views[i + 1], &norm_views[i], &w_.output_norm);
        fn.f[0] = hp_.rms_eps;
        ops.push_back(fn);
    }
    tensor xn_out = make_tensor(dtype::F32, E, n_out, 1, 1, xn_.data);
    const size_t n_logits = size_t(hp_.n_vocab) * size_t(n_out);
    tensor lg = make_tensor(dtype::F32, hp_.n_vocab, n_out, 1, 1, dev_ ? logits_buffer(n_logits) : logits, "logits");
    ops.push_back(make_op(op_type::MUL_MAT, &lg, &w_.output, &xn_out));
    // Greedy decoding on a device: the index of each column's largest logit instead of the logits (a 128K
    // vocabulary is 512 KB per column to copy, while the device waits, against 4 bytes).
    tensor ids_out = make_tensor(dtype::I32, n_out, 1, 1, 1, argmax_.data, "argmax");
    bool on_device = false;
    // keep: each sequence's column of the logits copied into keep[s]'s own device logits by a GET_ROWS of that
    // column (512 KB on the device instead of over the bus), where it stays after this decoder's next pass.
    std::vector<tensor> kept;  // per kept sequence: its destination and its column id; alive until run()
    if (keep) kept.reserve(2 * size_t(n_seq));  // no reallocation: the ops point into it
    std::vector<decoder*> kept_by;
    if (dev_ && argmax && !all_logits) {
        const op a = make_op(op_type::ARGMAX, &ids_out, &lg);
        bool ok = be.supports(a, nullptr);
        std::vector<op> copies;
        for (int32_t s = 0; ok && keep && s < n_seq; ++s) {
            decoder* d = keep[s];
            if (!d) continue;
            TFU_CHECK(d != this && d->dev_ == dev_ && d->hp_.n_vocab == hp_.n_vocab);
            float* dst = d->logits_buffer(size_t(hp_.n_vocab));
            kept.push_back(make_tensor(dtype::F32, hp_.n_vocab, 1, 1, 1, dst, "kept logits"));
            kept.push_back(make_tensor(dtype::I32, 1, 1, 1, 1, reinterpret_cast<int32_t*>(columns_.data) + s, "column"));
            copies.push_back(make_op(op_type::GET_ROWS, &kept[kept.size() - 2], &lg, &kept.back()));
            ok = be.supports(copies.back(), nullptr);
            kept_by.push_back(d);
        }
        if (ok) {
            ops.push_back(a);
            ops.insert(ops.end(), copies.begin(), copies.end());
            on_device = true;
        } else {
            kept_by.clear();
        }
    }
    ++logits_version_;  // from here the device logits are this pass's (or garbage, if it fails)
    for (decoder* d : kept_by) ++d->logits_version_;  // theirs too (a failed pass leaves them garbage as well)
    be.run(ops.data(), ops.size());
    if (on_device) be.download(argmax, ids_out.data, size_t(n_out) * sizeof(int32_t));
    else if (dev_) be.download(logits, lg.data, n_logits * sizeof(float));
    return on_device;
}

}  // namespace tfu
