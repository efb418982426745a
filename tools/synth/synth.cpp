// tfusion-synth's library: tensor plan, metadata, and the streaming write (see synth.h).
#include "synth.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <memory>

#include "core/error.h"
#include "core/quant.h"
#include "core/threads.h"
#include "format/gguf.h"
#include "format/gguf_writer.h"
#include "model/hparams.h"
#include "model/weights.h"
#include "rng.h"

namespace tfu::synth {
namespace {

// The target std of the logits. Measured through the engine on the tiny presets (test_synth,
// ActivationScalesAreRealistic, 64 random tokens): with 3 the logits had std 2.99-3.00 and the mean NLL was
// log(n_vocab) + 4.2..4.8 nats (perplexities of 2.5M-13M, 200x the vocabulary size); with 1 they have std
// 1.00 and the mean NLL is log(n_vocab) + 0.4..0.6. Gaussian logits of std s that know nothing of the next token
// cost about s^2 / 2 nats over log(n_vocab) (E[logsumexp] = log V + s^2/2), so s = 1 keeps the perplexity near
// the vocabulary size, as an untrained model's is, and keeps the logits' rounding noise (which scales with s)
// small: see docs/peer-crosscheck.md.
constexpr float k_logit_std = 1.0f;

const dtype k_types[] = {dtype::F32,  dtype::F16,  dtype::BF16, dtype::Q8_0, dtype::Q4_0, dtype::Q4_1, dtype::Q5_0,
                         dtype::Q5_1, dtype::Q2_K, dtype::Q3_K, dtype::Q4_K, dtype::Q5_K, dtype::Q6_K};

std::string lower(std::string s) {
    for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

// llama.cpp's llama_ftype for a file whose matrices are all of type t (general.file_type). A K-quant maps to
// its "_S" variant, the one that keeps (nearly) every matrix in that type.
uint32_t file_type(dtype t) {
    switch (t) {
        case dtype::F32: return 0;
        case dtype::F16: return 1;
        case dtype::Q4_0: return 2;
        case dtype::Q4_1: return 3;
        case dtype::Q8_0: return 7;
        case dtype::Q5_0: return 8;
        case dtype::Q5_1: return 9;
        case dtype::Q2_K: return 10;
        case dtype::Q3_K: return 11;
        case dtype::Q4_K: return 14;
        case dtype::Q5_K: return 16;
        case dtype::Q6_K: return 18;
        case dtype::BF16: return 32;
        default: return 0;
    }
}

}  // namespace

dtype parse_type(const std::string& name) {
    for (dtype t : k_types)
        if (lower(dtype_name(t)) == lower(name)) return t;
    fail(TFU_STATUS_INVALID_ARGUMENT, "unknown weight type '" + name + "' (accepted: " + type_names() + ")");
}

std::string type_names() {
    std::string s;
    for (dtype t : k_types) s += (s.empty() ? "" : ", ") + std::string(dtype_name(t));
    return s;
}

dtype matrix_type(dtype want, int64_t ne0) {
    if (ne0 % traits(want).block_size == 0) return want;
    // ref: llama.cpp src/llama-quant.cpp (fallback when a row is not a multiple of QK_K); we lack IQ4_NL, so
    // q2_K and q3_K fall back to q4_0.
    dtype fb = dtype::F16;
    switch (want) {
        case dtype::Q2_K: case dtype::Q3_K: fb = dtype::Q4_0; break;
        case dtype::Q4_K: fb = dtype::Q5_0; break;
        case dtype::Q5_K: fb = dtype::Q5_1; break;
        case dtype::Q6_K: fb = dtype::Q8_0; break;
        default: break;
    }
    return ne0 % traits(fb).block_size == 0 ? fb : dtype::F16;
}

std::vector<tensor_plan> plan_tensors(const preset& p, int32_t n_layer, int64_t n_vocab, dtype want) {
    const int64_t E = p.n_embd, hd = p.head_dim(), Q = hd * p.n_head, KV = hd * p.n_head_kv, F = p.n_ff;
    const float res = 1.0f / std::sqrt(2.0f * float(n_layer));
    // Logit std 1 (see synth.h): the final RMSNorm hands the output projection a unit-RMS vector, so weights of
    // std k_logit_std / sqrt(E) (or, tied, N(0, 1) embeddings times gains of that size) give logits of std
    // ~k_logit_std.
    const float logit = k_logit_std / std::sqrt(float(E));
    std::vector<tensor_plan> out;
    auto matrix = [&](const std::string& name, int64_t ne0, int64_t ne1, float std_dev) {
        tensor_plan t;
        t.name = name;
        t.type = matrix_type(want, ne0);
        t.ne0 = ne0;
        t.ne1 = ne1;
        t.kind = init::normal;
        t.a = std_dev;
        out.push_back(std::move(t));
    };
    auto vec = [&](const std::string& name, int64_t n, init kind, float a, float b) {
        tensor_plan t;
        t.name = name;
        t.ne0 = n;
        t.kind = kind;
        t.a = a;
        t.b = b;
        out.push_back(std::move(t));
    };
    matrix("token_embd.weight", E, n_vocab, 1.0f);
    if (p.tied) vec("output_norm.weight", E, init::uniform_signed, 0.8f * logit, 1.2f * logit);
    else vec("output_norm.weight", E, init::uniform, 0.8f, 1.2f);
    if (!p.tied) matrix("output.weight", E, n_vocab, logit);
    if (p.rope_llama3) {
        hparams hp;
        hp.n_rot = int32_t(hd);
        hp.rope_freq_base = p.rope_base;
        hp.rope_scaling_factor = p.rope_factor;
        hp.rope_low_freq_factor = p.rope_low_freq;
        hp.rope_high_freq_factor = p.rope_high_freq;
        hp.rope_orig_ctx = p.rope_orig_ctx;
        tensor_plan t;
        t.name = "rope_freqs.weight";
        t.ne0 = hd / 2;
        t.kind = init::values;
        t.values = llama3_rope_factors(hp);
        out.push_back(std::move(t));
    }
    const float in_std = 1.0f / std::sqrt(float(E));
    for (int32_t il = 0; il < n_layer; ++il) {
        const std::string b = "blk." + std::to_string(il) + ".";
        vec(b + "attn_norm.weight", E, init::uniform, 0.8f, 1.2f);
        matrix(b + "attn_q.weight", E, Q, in_std);
        matrix(b + "attn_k.weight", E, KV, in_std);
        matrix(b + "attn_v.weight", E, KV, in_std);
        if (p.qkv_bias) {
            vec(b + "attn_q.bias", Q, init::normal, 0.5f, 0);
            vec(b + "attn_k.bias", KV, init::normal, 0.5f, 0);
            vec(b + "attn_v.bias", KV, init::normal, 0.5f, 0);
        }
        matrix(b + "attn_output.weight", Q, E, res / std::sqrt(float(Q)));
        vec(b + "ffn_norm.weight", E, init::uniform, 0.8f, 1.2f);
        matrix(b + "ffn_gate.weight", E, F, in_std);
        matrix(b + "ffn_up.weight", E, F, in_std);
        matrix(b + "ffn_down.weight", F, E, res / std::sqrt(float(F)));
    }
    return out;
}

result write_model(const options& opt) {
    const preset* p = find_preset(opt.preset);
    if (!p) fail(TFU_STATUS_INVALID_ARGUMENT, "unknown preset '" + opt.preset + "' (see --list)");
    auto note = [&](const std::string& s) {
        if (opt.on_note) opt.on_note(s);
    };
    if (opt.n_layer < 0 || opt.n_ctx < 0)
        fail(TFU_STATUS_INVALID_ARGUMENT, "--layers and --ctx must be positive");

    std::unique_ptr<gguf::file> voc = gguf::file::open(opt.vocab_path);
    const gguf::kv* tokens = voc->find("tokenizer.ggml.tokens");
    if (!tokens || tokens->type != gguf::value_type::ARRAY || tokens->elem_type != gguf::value_type::STRING ||
        tokens->count == 0)
        fail(TFU_STATUS_INVALID_FILE, opt.vocab_path + ": no tokenizer.ggml.tokens string array (not a vocabulary GGUF?)");
    const int64_t n_vocab = int64_t(tokens->count);
    if (p->n_vocab != 0 && p->n_vocab != n_vocab)
        note("note: " + std::string(p->name) + " has a vocabulary of " + std::to_string(p->n_vocab) + " tokens, " +
             opt.vocab_path + " has " + std::to_string(n_vocab) + ": token_embd" + (p->tied ? "" : " and output") +
             " get " + std::to_string(n_vocab) + " rows (llama.cpp requires them to match)");

    const int32_t n_layer = opt.n_layer ? opt.n_layer : p->n_layer;
    const int32_t n_ctx = opt.n_ctx ? opt.n_ctx : p->n_ctx;
    std::vector<tensor_plan> plan = plan_tensors(*p, n_layer, n_vocab, opt.type);

    gguf::writer w;
    const std::string a = std::string(p->arch) + ".";
    w.set_string("general.architecture", p->arch);
    w.set_string("general.name", std::string("synthetic ") + p->name);
    if (p->source[0]) w.set_string("general.source.huggingface.repository", p->source);
    w.set_u32(a + "vocab_size", uint32_t(n_vocab));
    w.set_u32(a + "context_length", uint32_t(n_ctx));
    w.set_u32(a + "embedding_length", uint32_t(p->n_embd));
    w.set_u32(a + "block_count", uint32_t(n_layer));
    w.set_u32(a + "feed_forward_length", uint32_t(p->n_ff));
    w.set_u32(a + "attention.head_count", uint32_t(p->n_head));
    w.set_u32(a + "attention.head_count_kv", uint32_t(p->n_head_kv));
    w.set_u32(a + "rope.dimension_count", uint32_t(p->head_dim()));
    w.set_f32(a + "rope.freq_base", p->rope_base);
    w.set_f32(a + "attention.layer_norm_rms_epsilon", p->rms_eps);
    w.set_u32("general.file_type", file_type(opt.type));
    if (traits(opt.type).quantized) w.set_u32("general.quantization_version", 2);
    size_t n_tok_keys = 0;
    for (const gguf::kv& kv : voc->metadata())
        if (kv.key.substr(0, 10) == "tokenizer.") {
            w.set_kv(kv);
            ++n_tok_keys;
        }

    uint64_t total = 0;
    std::vector<std::string> fallbacks;
    for (const tensor_plan& t : plan) {
        total += t.nbytes();
        if (t.ne1 > 1 && t.type != opt.type &&
            std::find(fallbacks.begin(), fallbacks.end(), std::to_string(t.ne0)) == fallbacks.end()) {
            fallbacks.push_back(std::to_string(t.ne0));
            note("note: rows of " + std::to_string(t.ne0) + " elements are not a multiple of " +
                 dtype_name(opt.type) + "'s block (" + std::to_string(traits(opt.type).block_size) + "): those matrices use " +
                 dtype_name(t.type));
        }
    }

    thread_pool pool(opt.n_threads);
    std::vector<std::vector<float>> scratch(size_t(pool.n_threads()));
    uint64_t done = 0;
    for (size_t ti = 0; ti < plan.size(); ++ti) {
        const tensor_plan* t = &plan[ti];
        const int64_t ne[2] = {t->ne0, t->ne1};
        const uint64_t tseed = opt.seed ^ hash_name(t->name);
        auto fill = [&, t, ti, tseed](void* dst, size_t nbytes) {
            if (nbytes != t->nbytes())
                fail(TFU_STATUS_INTERNAL, "tfusion-synth: tensor '" + t->name + "': size mismatch");
            const size_t rs = row_size(t->type, t->ne0);
            pool.parallel_for(
                t->ne1,
                [&](int64_t r0, int64_t r1, int tid) {
                    std::vector<float>& x = scratch[size_t(tid)];
                    x.resize(size_t(t->ne0));
                    for (int64_t r = r0; r < r1; ++r) {
                        uint64_t s = tseed + uint64_t(r) * 0x632be59bd9b4e019ull;
                        xoshiro256 rng(splitmix64(s));
                        if (t->kind == init::normal) fill_normal(rng, x.data(), t->ne0, t->a);
                        else if (t->kind == init::uniform) fill_uniform(rng, x.data(), t->ne0, t->a, t->b);
                        else if (t->kind == init::uniform_signed) fill_uniform_signed(rng, x.data(), t->ne0, t->a, t->b);
                        else std::copy(t->values.begin(), t->values.end(), x.begin());
                        quantize_row(t->type, x.data(), static_cast<uint8_t*>(dst) + size_t(r) * rs, t->ne0);
                    }
                },
                std::max<int64_t>(1, 65536 / t->ne0));
            done += nbytes;
            if (opt.on_progress) opt.on_progress(ti + 1, plan.size(), t->name, done, total);
        };
        w.add_tensor(t->name, t->type, ne, t->ne1 > 1 ? 2u : 1u, fill);
    }
    if (n_tok_keys == 0) fail(TFU_STATUS_INVALID_FILE, opt.vocab_path + ": no tokenizer.* metadata");
    w.write(opt.out_path);

    result r;
    r.n_vocab = n_vocab;
    r.n_layer = n_layer;
    r.n_params = n_params(*p, n_layer, n_vocab);
    r.n_tensors = plan.size();
    r.data_bytes = total;
    return r;
}

}  // namespace tfu::synth
