// tfusion-synth end to end: runs the built tool (build/tools/synth/tfusion-synth, found next to this test's
// build directory; a visible skip if it was not built) on the tiny presets and on a real preset cut to a few
// layers, then checks the files: shapes and metadata of the preset, the vocabulary's tokenizer, tensor types
// (with the K-quant fallback), determinism by seed, --layers drawing the same numbers, and that the
// engine runs them with logits in a sane range (finite, std 0.1..100, stable with depth) and generates 20
// tokens greedily; and, through the engine's decoder on a probing backend, that the weight scales keep the
// residual stream O(1) at every layer and the logits at a realistic std (~1) and mean NLL (~log n_vocab).
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/dtype.h"
#include "core/quant.h"
#include "format/gguf.h"
#include "kv/kv_cache.h"
#include "model/decoder.h"
#include "runtime/engine.h"
#include "runtime/model.h"
#include "runtime/session.h"
#include "tfusion/tfusion.h"
#include "tool_runner.h"

namespace {

const std::string k_vocab_dir = std::string(TFU_SHARED_DIR) + "/vocab/";

// The tool, relative to this test binary: <build>/tests/test_synth -> <build>/tools/synth/tfusion-synth
// ("" when it is not built).
std::string tool_path() {
    const std::string p = tfu::test::built_tool("synth/tfusion-synth");
    return tfu::test::file_exists(p) ? p : "";
}

#define REQUIRE_TOOL()                                                                                  \
    const std::string tool = tool_path();                                                               \
    if (tool.empty()) GTEST_SKIP() << "tfusion-synth is not built (build target tfusion-synth first)";

using run_result = tfu::test::tool_result;
run_result run(const std::string& args) { return tfu::test::run_tool(tool_path(), args); }

struct temp_dir {
    std::string path;
    temp_dir() {
        char tmpl[] = "/tmp/tfu_synth_XXXXXX";
        if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
        path = tmpl;
    }
    std::string file(const std::string& name) const { return path + "/" + name; }
    ~temp_dir() { std::system(("rm -rf '" + path + "'").c_str()); }
};

std::string synth(const temp_dir& d, const std::string& preset, const std::string& vocab, const std::string& type,
                  const std::string& extra = "", const std::string& name = "") {
    const std::string out = d.file(name.empty() ? preset + "-" + type + ".gguf" : name);
    const run_result r = run("--preset " + preset + " --vocab " + k_vocab_dir + vocab + " --type " + type + " -o " +
                             out + " --threads 2 " + extra);
    EXPECT_EQ(r.rc, 0) << r.out;
    return out;
}

std::vector<uint8_t> slurp(const std::string& path) {
    std::vector<uint8_t> v;
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) return v;
    std::array<uint8_t, 65536> buf{};
    size_t n;
    while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) v.insert(v.end(), buf.begin(), buf.begin() + n);
    std::fclose(f);
    return v;
}

double std_dev(const float* v, size_t n) {
    double s = 0, s2 = 0;
    for (size_t i = 0; i < n; ++i) s += v[i], s2 += double(v[i]) * v[i];
    const double m = s / double(n);
    return std::sqrt(std::max(0.0, s2 / double(n) - m * m));
}

// Logits (n_vocab x n) of a random prompt of n tokens, on the fast CPU backend with an f32 KV cache.
std::vector<float> logits_of(const std::string& path, size_t n, uint64_t seed, int32_t* n_vocab,
                             int32_t* first_token = nullptr) {
    tfu_engine_params ep = tfu_engine_params_default();
    ep.backend = TFU_BACKEND_CPU;
    ep.n_threads = 2;
    tfu::engine eng(ep);
    tfu_model_params mp = tfu_model_params_default();
    tfu::model mdl(eng, path, mp);
    *n_vocab = mdl.hp.n_vocab;
    std::mt19937_64 rng(seed);
    std::vector<int32_t> ids;
    while (ids.size() < n) ids.push_back(int32_t(3 + rng() % uint64_t(mdl.hp.n_vocab - 3)));
    tfu_session_params sp = tfu_session_params_default();
    sp.n_ctx = 64;
    tfu::session s(mdl, sp, tfu::dtype::F32);
    if (first_token) *first_token = ids[0];
    return s.eval_all_logits(ids);
}

// --- an independent forward pass at position 0, to see the residual stream ---------------------------------
// At the first position attention has one key, so its output is that token's V (GQA: each kv head serves
// n_head / n_head_kv query heads) and RoPE is the identity: the whole pass is per token, a few mat-vecs.

std::vector<float> dequant(const tfu::gguf::file& f, const std::string& name) {
    const tfu::gguf::tensor_info* t = f.find_tensor(name);
    if (!t) return {};
    std::vector<float> out(size_t(t->nelements()));
    const size_t rs = tfu::row_size(t->type, t->ne[0]);
    for (int64_t r = 0; r < t->ne[1]; ++r)
        tfu::dequantize_row(t->type, static_cast<const uint8_t*>(t->data) + size_t(r) * rs,
                            out.data() + size_t(r * t->ne[0]), t->ne[0]);
    return out;
}
// y (n_out) = W x for W of shape (n_in, n_out) in ggml order (row r = output r).
std::vector<float> matvec(const std::vector<float>& w, const std::vector<float>& x) {
    const size_t n_in = x.size(), n_out = w.size() / n_in;
    std::vector<float> y(n_out);
    for (size_t r = 0; r < n_out; ++r) {
        double acc = 0;
        for (size_t i = 0; i < n_in; ++i) acc += double(w[r * n_in + i]) * x[i];
        y[r] = float(acc);
    }
    return y;
}
double rms(const std::vector<float>& x) {
    double s = 0;
    for (float v : x) s += double(v) * v;
    return std::sqrt(s / double(x.size()));
}
std::vector<float> rms_norm(const std::vector<float>& x, const std::vector<float>& g, float eps) {
    const double r = std::sqrt(rms(x) * rms(x) + eps);
    std::vector<float> y(x.size());
    for (size_t i = 0; i < x.size(); ++i) y[i] = float(x[i] / r) * g[i];
    return y;
}

// Residual RMS after the embedding and after each layer, and the logits, for `token` at position 0.
std::vector<double> residual_rms(const std::string& path, int32_t token, std::vector<float>* logits) {
    auto f = tfu::gguf::file::open(path);
    const std::string arch = f->get_string("general.architecture").value_or("");
    const int64_t E = f->get_int(arch + ".embedding_length").value_or(0);
    const int64_t n_layer = f->get_int(arch + ".block_count").value_or(0);
    const int64_t n_head = f->get_int(arch + ".attention.head_count").value_or(1);
    const int64_t n_kv = f->get_int(arch + ".attention.head_count_kv").value_or(1);
    const float eps = float(f->get_float(arch + ".attention.layer_norm_rms_epsilon").value_or(1e-5));
    const int64_t hd = E / n_head;
    const std::vector<float> emb = dequant(*f, "token_embd.weight");
    std::vector<float> h(emb.begin() + token * E, emb.begin() + (token + 1) * E);
    std::vector<double> out = {rms(h)};
    for (int64_t il = 0; il < n_layer; ++il) {
        const std::string b = "blk." + std::to_string(il) + ".";
        std::vector<float> x = rms_norm(h, dequant(*f, b + "attn_norm.weight"), eps);
        std::vector<float> v = matvec(dequant(*f, b + "attn_v.weight"), x);
        const std::vector<float> bv = dequant(*f, b + "attn_v.bias");
        for (size_t i = 0; i < bv.size(); ++i) v[i] += bv[i];
        std::vector<float> att(size_t(hd * n_head));
        for (int64_t hh = 0; hh < n_head; ++hh)
            for (int64_t d = 0; d < hd; ++d) att[size_t(hh * hd + d)] = v[size_t((hh / (n_head / n_kv)) * hd + d)];
        const std::vector<float> o = matvec(dequant(*f, b + "attn_output.weight"), att);
        for (int64_t i = 0; i < E; ++i) h[size_t(i)] += o[size_t(i)];
        x = rms_norm(h, dequant(*f, b + "ffn_norm.weight"), eps);
        std::vector<float> g = matvec(dequant(*f, b + "ffn_gate.weight"), x);
        const std::vector<float> u = matvec(dequant(*f, b + "ffn_up.weight"), x);
        for (size_t i = 0; i < g.size(); ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
        const std::vector<float> dn = matvec(dequant(*f, b + "ffn_down.weight"), g);
        for (int64_t i = 0; i < E; ++i) h[size_t(i)] += dn[size_t(i)];
        out.push_back(rms(h));
    }
    const std::vector<float> outw = f->find_tensor("output.weight") ? dequant(*f, "output.weight") : emb;
    *logits = matvec(outw, rms_norm(h, dequant(*f, "output_norm.weight"), eps));
    return out;
}

// The logits checks of the brief: finite everywhere, std in [0.1, 100] at every position (the last included).
// Returns the std at the last position.
double check_logits(const std::string& path) {
    int32_t V = 0, tok = 0;
    const size_t n = 16;
    const std::vector<float> lg = logits_of(path, n, 7, &V, &tok);
    // The residual stream through the layers (independent forward at position 0): starts at RMS ~1 and must
    // stay within [0.5, 4] at every layer; its logits must match the engine's (a check of the shapes and
    // layout the engine reads).
    std::vector<float> ref;
    const std::vector<double> res = residual_rms(path, tok, &ref);
    std::string trace;
    for (double r : res) trace += " " + std::to_string(r).substr(0, 5);
    std::printf("  residual RMS by layer:%s\n", trace.c_str());
    for (double r : res) {
        EXPECT_GT(r, 0.5) << path << trace;
        EXPECT_LT(r, 4.0) << path << trace;
    }
    if (ref.size() == size_t(V)) {
        double num = 0, den = 0;
        for (size_t i = 0; i < ref.size(); ++i) num += (double(lg[i]) - ref[i]) * (double(lg[i]) - ref[i]), den += double(ref[i]) * ref[i];
        EXPECT_LT(std::sqrt(num / den), 0.05) << path << ": engine logits at position 0 differ from the reference pass";
    } else {
        ADD_FAILURE() << "reference logits have " << ref.size() << " entries, expected " << V;
    }
    EXPECT_EQ(lg.size(), size_t(V) * n);
    EXPECT_TRUE(std::all_of(lg.begin(), lg.end(), [](float x) { return std::isfinite(x); })) << path;
    double last = 0;
    for (size_t t = 0; t < n; ++t) {
        const double sd = std_dev(lg.data() + t * size_t(V), size_t(V));
        EXPECT_GT(sd, 0.1) << path << " position " << t;
        EXPECT_LT(sd, 100.0) << path << " position " << t;
        last = sd;
    }
    return last;
}

// --- activation scales through the engine's own forward pass ------------------------------------------------
// A backend that runs the fast CPU kernels op by op and measures the residual stream: GET_ROWS writes the
// embeddings into the stream x (its dst), and every ADD whose dst is x is one of the two residual additions of a
// layer (after attention, after the MLP); the second of each pair ends the layer. The last MUL_MAT of the pass is
// the output projection (the logits).
class probe_backend : public tfu::backend {
public:
    explicit probe_backend(int n_threads) : inner_(tfu::make_cpu_backend(n_threads)) {}
    const char* name() const override { return "probe"; }
    bool supports(const tfu::op& o, std::string* why) const override { return inner_->supports(o, why); }
    void run(const tfu::op* ops, size_t n_ops) override {
        for (size_t i = 0; i < n_ops; ++i) {
            inner_->run(&ops[i], 1);
            const tfu::op& o = ops[i];
            if (o.type == tfu::op_type::GET_ROWS) {
                x_ = o.dst->data;
                record(*o.dst);
            } else if (o.type == tfu::op_type::ADD && o.dst->data == x_ && ++n_add_ % 2 == 0) {
                record(*o.dst);
            }
        }
    }
    // rms[l][t]: RMS of token t's residual vector after the embedding (l = 0) and after layer l (1..n_layer).
    std::vector<std::vector<double>> rms;

private:
    void record(const tfu::tensor& x) {
        std::vector<double> r;
        for (int64_t t = 0; t < x.ne[1]; ++t) {
            const float* v = static_cast<const float*>(x.data) + t * x.ne[0];
            double s = 0;
            for (int64_t i = 0; i < x.ne[0]; ++i) s += double(v[i]) * v[i];
            r.push_back(std::sqrt(s / double(x.ne[0])));
        }
        rms.push_back(std::move(r));
    }
    std::unique_ptr<tfu::backend> inner_;
    const void* x_ = nullptr;
    int n_add_ = 0;
};

struct activation_profile {
    std::vector<double> rms_min, rms_max;  // per depth (embedding, layer 1..n): over all positions
    double logit_std_min = 1e30, logit_std_max = 0, logit_std_mean = 0;
    double nll = 0;                        // mean -log p(next token) of the random sequence
    double log_vocab = 0;
};

// One forward of n random tokens (seed) at positions 0..n-1 through the engine's decoder on the probe backend.
activation_profile profile(const std::string& path, int32_t n, uint64_t seed) {
    tfu_engine_params ep = tfu_engine_params_default();
    ep.backend = TFU_BACKEND_CPU;
    ep.n_threads = 2;
    tfu::engine eng(ep);
    tfu::model mdl(eng, path, tfu_model_params_default());
    const int32_t V = mdl.hp.n_vocab;
    std::mt19937_64 rng(seed);
    std::vector<int32_t> ids;
    while (int32_t(ids.size()) < n) ids.push_back(int32_t(3 + rng() % uint64_t(V - 3)));
    tfu::kv_cache cache(mdl.hp.n_layer, mdl.hp.n_embd_kv(), n, tfu::dtype::F32);
    std::vector<tfu::kv_layer> layers;
    for (int32_t l = 0; l < mdl.hp.n_layer; ++l) layers.push_back(tfu::kv_layer{&cache.k(l), &cache.v(l)});
    tfu::kv_target target;
    target.contiguous = layers.data();
    tfu::decoder dec(mdl.hp, mdl.weights, n);
    probe_backend be(2);
    std::vector<float> logits(size_t(V) * size_t(n));
    dec.forward(be, target, ids.data(), n, 0, true, logits.data(), nullptr);

    activation_profile p;
    for (const std::vector<double>& r : be.rms) {
        p.rms_min.push_back(*std::min_element(r.begin(), r.end()));
        p.rms_max.push_back(*std::max_element(r.begin(), r.end()));
    }
    p.log_vocab = std::log(double(V));
    for (int32_t t = 0; t < n; ++t) {
        const float* lg = logits.data() + size_t(t) * size_t(V);
        const double sd = std_dev(lg, size_t(V));
        p.logit_std_min = std::min(p.logit_std_min, sd);
        p.logit_std_max = std::max(p.logit_std_max, sd);
        p.logit_std_mean += sd / n;
        if (t + 1 < n) {
            const float mx = *std::max_element(lg, lg + V);
            double z = 0;
            for (int32_t i = 0; i < V; ++i) z += std::exp(double(lg[i]) - mx);
            p.nll += (std::log(z) + mx - lg[ids[size_t(t) + 1]]) / (n - 1);
        }
    }
    return p;
}

struct gen_out {
    std::string text;
    std::vector<tfu_token> tokens;
};
bool on_piece(const char* piece, size_t len, tfu_token tok, void* user) {
    auto* g = static_cast<gen_out*>(user);
    g->text.append(piece, len);
    g->tokens.push_back(tok);
    return true;
}

// Greedy generation of 20 tokens through the C API.
void check_generate(const std::string& path) {
    tfu_engine_params ep = tfu_engine_params_default();
    ep.n_threads = 2;
    tfu_engine* eng = nullptr;
    ASSERT_EQ(tfu_engine_create(&ep, &eng), TFU_STATUS_OK) << tfu_last_error();
    tfu_model* m = nullptr;
    ASSERT_EQ(tfu_model_load(eng, path.c_str(), nullptr, &m), TFU_STATUS_OK) << tfu_last_error();
    tfu_session_params sp = tfu_session_params_default();
    sp.sampler.temperature = 0;
    tfu_session* s = nullptr;
    ASSERT_EQ(tfu_session_create(m, &sp, &s), TFU_STATUS_OK) << tfu_last_error();
    ASSERT_EQ(tfu_session_add_text(s, "Hello world, this is", true), TFU_STATUS_OK) << tfu_last_error();
    gen_out g;
    tfu_generate_params gp = tfu_generate_params_default();
    gp.max_tokens = 20;
    gp.on_token = on_piece;
    gp.user_data = &g;
    tfu_generate_result res{};
    res.struct_size = sizeof res;
    ASSERT_EQ(tfu_session_generate(s, &gp, &res), TFU_STATUS_OK) << tfu_last_error();
    std::printf("  %s: %d tokens, stop %d: \"%s\"\n", path.substr(path.rfind('/') + 1).c_str(), res.n_generated,
                int(res.stop_reason), g.text.c_str());
    if (res.stop_reason == TFU_STOP_EOG) {
        EXPECT_GE(res.n_generated, 1);
    } else {
        EXPECT_EQ(res.n_generated, 20);
    }
    // Greedy text of random weights should not be one token repeated (the tied-embedding trap).
    std::vector<tfu_token> uniq = g.tokens;
    std::sort(uniq.begin(), uniq.end());
    uniq.erase(std::unique(uniq.begin(), uniq.end()), uniq.end());
    EXPECT_GE(uniq.size(), 3u) << g.text;
    tfu_session_destroy(s);
    tfu_model_unload(m);
    tfu_engine_destroy(eng);
}

int64_t meta_int(const tfu::gguf::file& f, const std::string& key) {
    std::optional<int64_t> v = f.get_int(key);
    EXPECT_TRUE(v.has_value()) << key;
    return v.value_or(-1);
}

}  // namespace

TEST(Synth, ListShowsEveryPreset) {
    REQUIRE_TOOL();
    const run_result r = run("--list");
    ASSERT_EQ(r.rc, 0) << r.out;
    for (const char* p : {"Llama-3.2-1B", "Llama-3.2-3B", "Llama-3-8B", "Mistral-7B", "TinyLlama-1.1B", "Qwen2.5-0.5B",
                          "Qwen2.5-1.5B", "SmolLM2-135M", "tiny-llama", "tiny-llama3", "tiny-qwen2"})
        EXPECT_NE(r.out.find(p), std::string::npos) << p << "\n" << r.out;
}

TEST(Synth, BadArgumentsFailCleanly) {
    REQUIRE_TOOL();
    temp_dir d;
    run_result r = run("--preset no-such-model --vocab " + k_vocab_dir + "ggml-vocab-gpt-2.gguf --type q4_0 -o " +
                       d.file("x.gguf"));
    EXPECT_NE(r.rc, 0);
    EXPECT_NE(r.out.find("no-such-model"), std::string::npos) << r.out;
    r = run("--preset tiny-llama --vocab " + d.file("missing.gguf") + " --type q4_0 -o " + d.file("x.gguf"));
    EXPECT_NE(r.rc, 0);
    EXPECT_NE(r.out.find("missing.gguf"), std::string::npos) << r.out;
    r = run("--preset tiny-llama --vocab " + k_vocab_dir + "ggml-vocab-gpt-2.gguf --type q9_9 -o " + d.file("x.gguf"));
    EXPECT_NE(r.rc, 0);
    EXPECT_NE(r.out.find("q9_9"), std::string::npos) << r.out;
    struct stat st {};
    EXPECT_NE(::stat(d.file("x.gguf").c_str(), &st), 0) << "no output file after a failure";
}

// Metadata and tensors of the tiny presets; activations and generation through the engine.
TEST(Synth, TinyPresetsLoadRunAndStayInRange) {
    REQUIRE_TOOL();
    temp_dir d;
    struct c { const char* preset; const char* vocab; const char* type; };
    const c cases[] = {
        {"tiny-llama", "ggml-vocab-llama-spm.gguf", "f32"},  {"tiny-llama", "ggml-vocab-llama-spm.gguf", "q4_K"},
        {"tiny-llama3", "ggml-vocab-llama-spm.gguf", "q8_0"}, {"tiny-qwen2", "ggml-vocab-gpt-2.gguf", "f16"},
        {"tiny-qwen2", "ggml-vocab-gpt-2.gguf", "q4_0"},
    };
    for (const c& k : cases) {
        SCOPED_TRACE(std::string(k.preset) + " " + k.type);
        const std::string path = synth(d, k.preset, k.vocab, k.type);
        auto f = tfu::gguf::file::open(path);
        auto v = tfu::gguf::file::open(k_vocab_dir + k.vocab);
        const std::string arch = f->get_string("general.architecture").value_or("");
        const bool qwen = std::string(k.preset) == "tiny-qwen2", tied = std::string(k.preset) != "tiny-llama";
        EXPECT_EQ(arch, qwen ? "qwen2" : "llama");
        EXPECT_EQ(meta_int(*f, arch + ".embedding_length"), 256);
        EXPECT_EQ(meta_int(*f, arch + ".block_count"), 4);
        // every tokenizer.* key of the vocabulary, same count of tokens
        for (const auto& kv : v->metadata())
            if (kv.key.substr(0, 10) == "tokenizer.") {
                EXPECT_NE(f->find(kv.key), nullptr) << kv.key;
            }
        const int64_t V = int64_t(v->find("tokenizer.ggml.tokens")->count);
        const tfu::gguf::tensor_info* emb = f->find_tensor("token_embd.weight");
        ASSERT_NE(emb, nullptr);
        EXPECT_EQ(emb->ne[0], 256);
        EXPECT_EQ(emb->ne[1], V);
        EXPECT_STREQ(tfu::dtype_name(emb->type), k.type);
        EXPECT_EQ(f->find_tensor("output.weight") != nullptr, !tied);
        EXPECT_EQ(f->find_tensor("rope_freqs.weight") != nullptr, std::string(k.preset) == "tiny-llama3");
        EXPECT_EQ(f->find_tensor("blk.3.attn_k.bias") != nullptr, qwen);
        EXPECT_EQ(f->find_tensor("blk.4.attn_q.weight"), nullptr);
        EXPECT_EQ(f->find_tensor("blk.0.ffn_norm.weight")->type, tfu::dtype::F32);
        EXPECT_STREQ(tfu::dtype_name(f->find_tensor("blk.2.ffn_down.weight")->type), k.type);

        const double sd = check_logits(path);
        // Depth must neither blow the stream up nor wash it out: the same weights cut to one layer give logits
        // of a similar spread.
        const std::string one = synth(d, k.preset, k.vocab, k.type, "--layers 1", std::string(k.preset) + "-1.gguf");
        const double sd1 = check_logits(one);
        std::printf("  %s %s: logits std %.3f (4 layers), %.3f (1 layer)\n", k.preset, k.type, sd, sd1);
        EXPECT_LT(sd / sd1, 3.0);
        EXPECT_GT(sd / sd1, 1.0 / 3.0);
        check_generate(path);
    }
}

// Same seed: the same bytes; another seed: other weights; --layers N: the first N layers bit for bit, except
// attn_output and ffn_down, whose depth scale 1/sqrt(2 n_layer) differs (then they differ in every block).
TEST(Synth, SeededAndLayerPrefixStable) {
    REQUIRE_TOOL();
    temp_dir d;
    const std::string a = synth(d, "tiny-qwen2", "ggml-vocab-gpt-2.gguf", "q4_0", "--seed 42", "a.gguf");
    const std::string b = synth(d, "tiny-qwen2", "ggml-vocab-gpt-2.gguf", "q4_0", "--seed 42 --threads 1", "b.gguf");
    const std::string c = synth(d, "tiny-qwen2", "ggml-vocab-gpt-2.gguf", "q4_0", "--seed 43", "c.gguf");
    const std::string two = synth(d, "tiny-qwen2", "ggml-vocab-gpt-2.gguf", "q4_0", "--seed 42 --layers 2", "two.gguf");
    EXPECT_TRUE(slurp(a) == slurp(b)) << "same seed, other thread count: files differ";
    EXPECT_FALSE(slurp(a) == slurp(c)) << "another seed gave the same file";
    auto fa = tfu::gguf::file::open(a), f2 = tfu::gguf::file::open(two);
    EXPECT_EQ(meta_int(*f2, "qwen2.block_count"), 2);
    for (const auto& t : f2->tensors()) {
        const tfu::gguf::tensor_info* ta = fa->find_tensor(t.name);
        ASSERT_NE(ta, nullptr) << t.name;
        ASSERT_EQ(ta->nbytes, t.nbytes) << t.name;
        const std::string name(t.name);
        const bool depth_scaled = name.find("attn_output") != std::string::npos || name.find("ffn_down") != std::string::npos;
        EXPECT_EQ(std::memcmp(ta->data, t.data, t.nbytes) == 0, !depth_scaled) << t.name;
    }
}

// A real preset cut to one layer: its real shapes and hyperparameters, a vocabulary of another size (the
// embedding follows the file, with a note), and the K-quant fallback for rows of 576 (not a multiple of 256).
TEST(Synth, RealPresetShapesVocabMismatchAndFallback) {
    REQUIRE_TOOL();
    temp_dir d;
    const std::string out = d.file("smol.gguf");
    const run_result r = run("--preset SmolLM2-135M --layers 1 --vocab " + k_vocab_dir +
                             "ggml-vocab-llama-spm.gguf --type q4_K --threads 2 -o " + out);
    ASSERT_EQ(r.rc, 0) << r.out;
    EXPECT_NE(r.out.find("49152"), std::string::npos) << r.out;  // the note on the vocabulary size
    EXPECT_NE(r.out.find("q5_0"), std::string::npos) << r.out;   // the note on the fallback
    auto f = tfu::gguf::file::open(out);
    EXPECT_EQ(meta_int(*f, "llama.embedding_length"), 576);
    EXPECT_EQ(meta_int(*f, "llama.feed_forward_length"), 1536);
    EXPECT_EQ(meta_int(*f, "llama.attention.head_count"), 9);
    EXPECT_EQ(meta_int(*f, "llama.attention.head_count_kv"), 3);
    EXPECT_EQ(meta_int(*f, "llama.context_length"), 8192);
    EXPECT_EQ(meta_int(*f, "llama.block_count"), 1);
    EXPECT_FLOAT_EQ(float(f->get_float("llama.rope.freq_base").value_or(0)), 100000.0f);
    const auto* emb = f->find_tensor("token_embd.weight");
    ASSERT_NE(emb, nullptr);
    EXPECT_EQ(emb->ne[1], 32000);
    EXPECT_EQ(emb->type, tfu::dtype::Q5_0);                                  // rows of 576
    EXPECT_EQ(f->find_tensor("blk.0.attn_q.weight")->type, tfu::dtype::Q5_0);  // rows of 576
    EXPECT_EQ(f->find_tensor("blk.0.ffn_down.weight")->type, tfu::dtype::Q4_K);  // rows of 1536
    EXPECT_EQ(f->find_tensor("blk.0.attn_k.weight")->ne[1], 192);            // 3 kv heads of 64
    EXPECT_EQ(f->find_tensor("output.weight"), nullptr);                     // tied
    check_logits(out);
}

// The scales of the weights keep every activation in a realistic range, measured through the engine's decoder
// over 64 random tokens (all positions, so attention over many keys is included): the residual stream stays O(1)
// at every depth (no growth, no collapse), the logits have the spread of an untrained model (std ~1, not ~3: a
// logit std s adds about s^2/2 nats to the mean NLL of log(n_vocab), and with s = 3 that was +4.5 nats,
// perplexities in the millions, and logit rounding noise large enough to move them by 0.2%), and the mean NLL is
// log(n_vocab) + ~0.5. Bounds leave room for the random draw; the old scales (logit std 3) fail the last two.
TEST(Synth, ActivationScalesAreRealistic) {
    REQUIRE_TOOL();
    temp_dir d;
    struct c { const char* preset; const char* vocab; const char* type; };
    const c cases[] = {
        {"tiny-llama", "ggml-vocab-llama-spm.gguf", "f32"},
        {"tiny-llama3", "ggml-vocab-llama-bpe.gguf", "f16"},
        {"tiny-qwen2", "ggml-vocab-gpt-2.gguf", "q8_0"},
    };
    for (const c& k : cases) {
        SCOPED_TRACE(std::string(k.preset) + " " + k.type);
        const std::string path = synth(d, k.preset, k.vocab, k.type);
        const activation_profile p = profile(path, 64, 11);
        std::string trace;
        for (size_t l = 0; l < p.rms_min.size(); ++l) {
            char buf[64];
            std::snprintf(buf, sizeof buf, " %.3f-%.3f", p.rms_min[l], p.rms_max[l]);
            trace += buf;
        }
        std::printf("  %s %s: residual RMS (min-max over positions) by depth:%s\n", k.preset, k.type, trace.c_str());
        std::printf("  %s %s: logit std %.3f (min %.3f, max %.3f); mean NLL %.3f = log(n_vocab) %.3f + %.3f\n",
                    k.preset, k.type, p.logit_std_mean, p.logit_std_min, p.logit_std_max, p.nll, p.log_vocab,
                    p.nll - p.log_vocab);
        ASSERT_EQ(p.rms_min.size(), 5u) << "embedding + 4 layers";
        for (size_t l = 0; l < p.rms_min.size(); ++l) {
            EXPECT_GT(p.rms_min[l], 0.7) << "depth " << l << trace;
            EXPECT_LT(p.rms_max[l], 2.0) << "depth " << l << trace;
        }
        EXPECT_GT(p.logit_std_min, 0.7);
        EXPECT_LT(p.logit_std_max, 1.5);
        EXPECT_GT(p.nll - p.log_vocab, 0.1);
        EXPECT_LT(p.nll - p.log_vocab, 1.5);
    }
}
