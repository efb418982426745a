// Binds GGUF tensors to the decoder's weights by name (llama.cpp's tensor naming) and checks their shapes.
#include "model/weights.h"

#include <cmath>
#include <map>
#include <string>

#include "core/error.h"
#include "format/gguf.h"

namespace tfu {
namespace {

std::string shape_str(const int64_t* ne, int n) {
    std::string s = "(";
    for (int i = 0; i < n; ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
    return s + ")";
}

class binder {
public:
    binder(const gguf::file& f, model_weights& w) : f_(f), w_(w) {}

    // Binds `name` with shape (ne0[, ne1]); absent -> error unless optional (then data stays nullptr).
    tensor get(const std::string& name, int64_t ne0, int64_t ne1, bool optional, bool f32_only) {
        const gguf::tensor_info* ti = f_.find_tensor(name);
        if (!ti) {
            if (optional) return tensor{};
            fail(TFU_STATUS_INVALID_FILE, f_.path() + ": missing tensor '" + name + "'");
        }
        const int want_dims = ne1 > 0 ? 2 : 1;
        const int64_t want[2] = {ne0, ne1 > 0 ? ne1 : 1};
        bool ok = ti->ne[0] == want[0] && ti->ne[1] == want[1] && ti->ne[2] == 1 && ti->ne[3] == 1;
        if (!ok)
            fail(TFU_STATUS_INVALID_FILE, f_.path() + ": tensor '" + name + "' has shape " +
                                              shape_str(ti->ne, int(ti->n_dims ? ti->n_dims : 1)) + ", expected " +
                                              shape_str(want, want_dims));
        if (f32_only && ti->type != dtype::F32)
            fail(TFU_STATUS_UNSUPPORTED, f_.path() + ": tensor '" + name + "' must be f32, is " + dtype_name(ti->type));
        if (!traits(ti->type).weight_type)
            fail(TFU_STATUS_UNSUPPORTED, f_.path() + ": tensor '" + name + "' has type " + dtype_name(ti->type) +
                                             ", which is not supported for weights");
        tensor t = make_tensor(ti->type, ti->ne[0], ti->ne[1], 1, 1, const_cast<void*>(ti->data), name);
        w_.n_params += uint64_t(t.nelements());
        w_.n_bytes += t.nbytes();
        if (ne1 > 0) {
            uint64_t& c = elements_[uint32_t(t.type)];
            c += uint64_t(t.nelements());
            if (c > best_) {
                best_ = c;
                w_.main_type = t.type;
            }
        }
        return t;
    }

private:
    const gguf::file& f_;
    model_weights& w_;
    std::map<uint32_t, uint64_t> elements_;  // 2-D weight elements per dtype
    uint64_t best_ = 0;
};

}  // namespace

model_weights load_weights(const gguf::file& f, const arch_spec& arch, hparams& hp) {
    model_weights w;
    binder b(f, w);
    const gguf::tensor_info* emb = f.find_tensor("token_embd.weight");
    if (!emb) fail(TFU_STATUS_INVALID_FILE, f.path() + ": missing tensor 'token_embd.weight'");
    if (emb->ne[1] < 1 || emb->ne[1] > (int64_t(1) << 24))
        fail(TFU_STATUS_INVALID_FILE, f.path() + ": tensor 'token_embd.weight' has an absurd vocabulary size");
    hp.n_vocab = int32_t(emb->ne[1]);
    const int64_t E = hp.n_embd, V = hp.n_vocab, Q = hp.n_embd_q(), KV = hp.n_embd_kv(), F = hp.n_ff;
    w.tok_embd = b.get("token_embd.weight", E, V, false, false);
    w.output_norm = b.get("output_norm.weight", E, 0, false, true);
    w.output = b.get("output.weight", E, V, true, false);
    if (!w.output.data) w.output = w.tok_embd;  // tied embeddings
    w.rope_freqs = b.get("rope_freqs.weight", hp.n_rot / 2, 0, true, true);

    w.layers.resize(size_t(hp.n_layer));
    for (int32_t il = 0; il < hp.n_layer; ++il) {
        layer_weights& l = w.layers[size_t(il)];
        const std::string p = "blk." + std::to_string(il) + ".";
        l.attn_norm = b.get(p + "attn_norm.weight", E, 0, false, true);
        l.wq = b.get(p + "attn_q.weight", E, Q, false, false);
        l.wk = b.get(p + "attn_k.weight", E, KV, false, false);
        l.wv = b.get(p + "attn_v.weight", E, KV, false, false);
        const bool bias_opt = !arch.qkv_bias;
        if (arch.qkv_bias || arch.qkv_bias_optional) {
            l.bq = b.get(p + "attn_q.bias", Q, 0, bias_opt, true);
            l.bk = b.get(p + "attn_k.bias", KV, 0, bias_opt, true);
            l.bv = b.get(p + "attn_v.bias", KV, 0, bias_opt, true);
        }
        l.wo = b.get(p + "attn_output.weight", Q, E, false, false);
        l.ffn_norm = b.get(p + "ffn_norm.weight", E, 0, false, true);
        l.ffn_gate = b.get(p + "ffn_gate.weight", E, F, false, false);
        l.ffn_up = b.get(p + "ffn_up.weight", E, F, false, false);
        l.ffn_down = b.get(p + "ffn_down.weight", F, E, false, false);
    }
    return w;
}

std::vector<float> llama3_rope_factors(const hparams& hp) {
    // ref: Meta's Llama 3.1 reference code (apply_scaling): wavelengths beyond the original context are slowed
    // by `factor`, short ones kept, and the band between interpolated smoothly.
    std::vector<float> f(size_t(hp.n_rot / 2), 1.0f);
    const double low_wavelen = hp.rope_orig_ctx / hp.rope_low_freq_factor;
    const double high_wavelen = hp.rope_orig_ctx / hp.rope_high_freq_factor;
    for (int32_t j = 0; j < hp.n_rot / 2; ++j) {
        const double freq = std::pow(double(hp.rope_freq_base), -2.0 * j / hp.n_rot);
        const double wavelen = 2.0 * M_PI / freq;
        if (wavelen < high_wavelen) continue;
        if (wavelen > low_wavelen) {
            f[size_t(j)] = hp.rope_scaling_factor;
        } else {
            const double smooth = (hp.rope_orig_ctx / wavelen - hp.rope_low_freq_factor) /
                                  (hp.rope_high_freq_factor - hp.rope_low_freq_factor);
            f[size_t(j)] = float(1.0 / ((1.0 - smooth) / hp.rope_scaling_factor + smooth));
        }
    }
    return f;
}

std::vector<void*> place_weights(model_weights& w, backend& be) {
    // Placement units: single tensors, and per layer the groups whose products a device backend joins into one
    // launch when their weights share one binding window (Q/K/V; gate/up): one allocation each, so that a group
    // never lands across two of the backend's memory chunks (Vulkan: kernels_vk/vk_ops.cpp bind_together).
    std::vector<std::vector<tensor*>> units = {{&w.tok_embd}, {&w.output_norm}, {&w.output}, {&w.rope_freqs}};
    for (layer_weights& l : w.layers) {
        units.push_back({&l.attn_norm});
        units.push_back({&l.wq, &l.wk, &l.wv});
        for (tensor* t : {&l.bq, &l.bk, &l.bv, &l.wo, &l.ffn_norm}) units.push_back({t});
        units.push_back({&l.ffn_gate, &l.ffn_up});
        units.push_back({&l.ffn_down});
    }
    constexpr size_t align = 256;  // backend::alloc's alignment, kept for each tensor of a group
    std::vector<void*> owned;
    std::map<const void*, void*> moved;  // host data -> device copy
    try {
        for (const std::vector<tensor*>& unit : units) {
            // The unit's tensors not yet placed (views of the same data, like a tied output, share one copy),
            // each at an aligned offset of one allocation.
            std::vector<std::pair<tensor*, size_t>> fresh;
            std::vector<tensor*> twins;  // the same host data as a fresh tensor of this unit
            size_t bytes = 0;
            for (tensor* t : unit) {
                if (!t->data) continue;
                auto it = moved.find(t->data);
                if (it != moved.end()) {
                    t->data = it->second;
                    continue;
                }
                bool twin = false;
                for (const auto& f : fresh) twin = twin || f.first->data == t->data;
                if (twin) {
                    twins.push_back(t);
                    continue;
                }
                fresh.emplace_back(t, bytes);
                bytes += (t->nbytes() + align - 1) / align * align;
            }
            if (fresh.empty()) continue;
            const std::string& first = fresh[0].first->name;
            const std::string what = fresh.size() == 1 ? first : first + " (with the rest of its group)";
            char* d = static_cast<char*>(be.alloc(bytes, what.c_str()));
            owned.push_back(d);
            for (auto& [t, off] : fresh) {
                be.upload(d + off, t->data, t->nbytes());
                moved.emplace(t->data, d + off);
                t->data = d + off;
            }
            for (tensor* t : twins) t->data = moved.at(t->data);
        }
    } catch (...) {
        for (void* p : owned) be.free(p);
        throw;
    }
    return owned;
}

}  // namespace tfu
