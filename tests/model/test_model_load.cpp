// Model loading on synthetic GGUF files built with gguf::writer: tiny llama and qwen2 models with random weights
// (printed seed) and the stories260K vocabulary load, generate greedily, and give the same logits on the fast
// cpu backend as on cpu-ref; every weight type agrees with cpu-ref and with the F32 model within stated bounds;
// malformed files are refused with the expected status and a message naming the culprit.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/quant.h"
#include "format/gguf.h"
#include "format/gguf_writer.h"
#include "runtime/engine.h"
#include "runtime/model.h"
#include "runtime/session.h"
#include "tfusion/tfusion.h"
#include "core/utf8.h"

namespace {

using tfu::dtype;

const std::string k_stories = std::string(TFU_SHARED_DIR) + "/models/stories260K.gguf";

// Seed from TFU_TEST_SEED if set (to reproduce a failure), else random; always printed.
uint64_t test_seed() {
    static const uint64_t seed = [] {
        const char* env = std::getenv("TFU_TEST_SEED");
        uint64_t s = env ? std::strtoull(env, nullptr, 0) : std::random_device{}();
        std::printf("seed %llu (set TFU_TEST_SEED to reproduce)\n", static_cast<unsigned long long>(s));
        return s;
    }();
    return seed;
}

// A fresh directory under /tmp, removed with its files at the end of the test.
struct temp_dir {
    std::string path;
    std::vector<std::string> files;
    temp_dir() {
        char tmpl[] = "/tmp/tfu_model_load_XXXXXX";
        if (mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
        path = tmpl;
    }
    std::string file(const std::string& name) {
        files.push_back(path + "/" + name);
        return files.back();
    }
    ~temp_dir() {
        for (const std::string& f : files) ::unlink(f.c_str());
        ::rmdir(path.c_str());
    }
};

// --- synthetic models ------------------------------------------------------------------------------------

struct model_spec {
    std::string arch = "llama";  // "llama" or "qwen2" (qkv biases, NeoX rope)
    int32_t n_embd = 64, n_layer = 2, n_head = 4, n_head_kv = 2, n_ff = 96;
    int32_t n_rot = 0;           // 0: the whole head (no rope.dimension_count key)
    dtype wtype = dtype::F32;    // type of the matrices (token_embd, output, attention, ffn); norms stay F32
    uint64_t seed = 1;
};

struct f32_tensor {
    std::string name;
    std::vector<int64_t> ne;
    std::vector<float> v;
    bool matrix;  // stored in spec.wtype; else F32 (norms, biases)
};

// Random weights scaled so activations stay O(1): a matrix (n_in, n_out) is N(0, 1/n_in), so it maps a
// unit-RMS input to unit-RMS outputs; the projections into the residual stream are scaled down further by
// 1/sqrt(2 n_layer); norms are 1 + N(0, 0.1^2); qwen2 biases N(0, 0.5^2); logits have a spread of a few units.
std::vector<f32_tensor> make_weights(const model_spec& s) {
    std::mt19937_64 rng(s.seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    const int64_t E = s.n_embd, V = 512, hd = s.n_embd / s.n_head, Q = hd * s.n_head, KV = hd * s.n_head_kv,
                  F = s.n_ff;
    std::vector<f32_tensor> out;
    auto add = [&](const std::string& name, std::vector<int64_t> ne, bool matrix, float scale, float offset) {
        f32_tensor t{name, ne, {}, matrix};
        int64_t n = 1;
        for (int64_t d : ne) n *= d;
        t.v.resize(size_t(n));
        for (float& x : t.v) x = offset + scale * nd(rng);
        out.push_back(std::move(t));
    };
    const float res_scale = 1.0f / std::sqrt(2.0f * float(s.n_layer));
    add("token_embd.weight", {E, V}, true, 1.0f, 0.0f);
    add("output_norm.weight", {E}, false, 0.1f, 1.0f);
    add("output.weight", {E, V}, true, 3.0f / std::sqrt(float(E)), 0.0f);
    for (int32_t l = 0; l < s.n_layer; ++l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        add(p + "attn_norm.weight", {E}, false, 0.1f, 1.0f);
        add(p + "attn_q.weight", {E, Q}, true, 1.0f / std::sqrt(float(E)), 0.0f);
        add(p + "attn_k.weight", {E, KV}, true, 1.0f / std::sqrt(float(E)), 0.0f);
        add(p + "attn_v.weight", {E, KV}, true, 1.0f / std::sqrt(float(E)), 0.0f);
        if (s.arch == "qwen2") {
            add(p + "attn_q.bias", {Q}, false, 0.5f, 0.0f);
            add(p + "attn_k.bias", {KV}, false, 0.5f, 0.0f);
            add(p + "attn_v.bias", {KV}, false, 0.5f, 0.0f);
        }
        add(p + "attn_output.weight", {Q, E}, true, res_scale / std::sqrt(float(Q)), 0.0f);
        add(p + "ffn_norm.weight", {E}, false, 0.1f, 1.0f);
        add(p + "ffn_gate.weight", {E, F}, true, 1.0f / std::sqrt(float(E)), 0.0f);
        add(p + "ffn_up.weight", {E, F}, true, 1.0f / std::sqrt(float(E)), 0.0f);
        add(p + "ffn_down.weight", {F, E}, true, res_scale / std::sqrt(float(F)), 0.0f);
    }
    return out;
}

// Hooks to make broken files: edit_tensor may change a tensor or return false to drop it; edit_meta runs
// after the metadata is set.
struct model_edits {
    std::function<bool(f32_tensor&)> edit_tensor;
    std::function<void(tfu::gguf::writer&)> edit_meta;
};

void write_model(const model_spec& s, const std::string& path, const model_edits& edits = {}) {
    tfu::gguf::writer w;
    w.set_string("general.architecture", s.arch);
    w.set_string("general.name", "synthetic " + s.arch);
    const std::string a = s.arch + ".";
    w.set_u32(a + "context_length", 256);
    w.set_u32(a + "embedding_length", uint32_t(s.n_embd));
    w.set_u32(a + "block_count", uint32_t(s.n_layer));
    w.set_u32(a + "feed_forward_length", uint32_t(s.n_ff));
    w.set_u32(a + "attention.head_count", uint32_t(s.n_head));
    w.set_u32(a + "attention.head_count_kv", uint32_t(s.n_head_kv));
    w.set_f32(a + "attention.layer_norm_rms_epsilon", 1e-5f);
    w.set_f32(a + "rope.freq_base", 10000.0f);
    if (s.n_rot) w.set_u32(a + "rope.dimension_count", uint32_t(s.n_rot));
    // The vocabulary of stories260K (SPM, 512 tokens), so that the tokenizer loads.
    std::unique_ptr<tfu::gguf::file> voc = tfu::gguf::file::open(k_stories);
    for (const auto& kv : voc->metadata())
        if (kv.key.substr(0, 10) == "tokenizer.") w.set_kv(kv);
    if (edits.edit_meta) edits.edit_meta(w);

    for (f32_tensor& t : make_weights(s)) {
        if (edits.edit_tensor && !edits.edit_tensor(t)) continue;
        const dtype type = t.matrix ? s.wtype : dtype::F32;
        const int64_t ne0 = t.ne[0], rows = int64_t(t.v.size()) / ne0;
        const size_t rs = tfu::row_size(type, ne0);
        std::vector<uint8_t> data(rs * size_t(rows));
        for (int64_t r = 0; r < rows; ++r)
            tfu::quantize_row(type, t.v.data() + r * ne0, data.data() + size_t(r) * rs, ne0);
        w.add_tensor(t.name, type, t.ne.data(), uint32_t(t.ne.size()), data.data(), data.size());
    }
    w.write(path);
}

// --- logits through the internal API (F32 KV cache, so that backends are compared exactly) ----------------

struct loaded {
    std::unique_ptr<tfu::engine> eng;
    std::unique_ptr<tfu::model> mdl;
    loaded(const std::string& path, tfu_backend_kind kind) {
        tfu_engine_params ep = tfu_engine_params_default();
        ep.backend = kind;
        ep.n_threads = 2;
        eng = std::make_unique<tfu::engine>(ep);
        tfu_model_params mp = tfu_model_params_default();
        mdl = std::make_unique<tfu::model>(*eng, path, mp);
    }
    // Logits (n_vocab, n) of every position of `ids`, prefilled in batches of n_batch.
    std::vector<float> logits(const std::vector<int32_t>& ids, int32_t n_batch) {
        tfu_session_params sp = tfu_session_params_default();
        sp.n_ctx = 128;
        sp.n_batch = n_batch;
        tfu::session s(*mdl, sp, dtype::F32);
        return s.eval_all_logits(ids);
    }
};

std::vector<int32_t> prompt_ids(uint64_t seed, size_t n) {
    std::mt19937_64 rng(seed ^ 0x9e3779b97f4a7c15ull);
    std::vector<int32_t> ids = {1};  // BOS of stories260K
    while (ids.size() < n) ids.push_back(int32_t(3 + rng() % 509));
    return ids;
}

// ||a - b|| / ||b|| over the whole vector.
double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < b.size(); ++i) {
        num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
        den += double(b[i]) * b[i];
    }
    return std::sqrt(num / den);
}
// max |a - b| / max |b|.
double rel_max(const std::vector<float>& a, const std::vector<float>& b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < b.size(); ++i) {
        num = std::max(num, std::fabs(double(a[i]) - b[i]));
        den = std::max(den, std::fabs(double(b[i])));
    }
    return num / den;
}
bool all_finite(const std::vector<float>& v) {
    return std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); });
}

// --- loading and generation through the C API ------------------------------------------------------------

struct c_engine {
    tfu_engine* eng = nullptr;
    explicit c_engine(tfu_backend_kind kind) {
        tfu_engine_params ep = tfu_engine_params_default();
        ep.backend = kind;
        ep.n_threads = 2;
        EXPECT_EQ(tfu_engine_create(&ep, &eng), TFU_STATUS_OK) << tfu_last_error();
    }
    ~c_engine() { EXPECT_EQ(tfu_engine_destroy(eng), TFU_STATUS_OK) << tfu_last_error(); }
};

bool collect(const char* piece, size_t len, tfu_token, void* user) {
    static_cast<std::string*>(user)->append(piece, len);
    return true;
}

int32_t argmax(const float* v, size_t n) { return int32_t(std::max_element(v, v + n) - v); }

// Loads, checks the model info, generates 12 tokens greedily, and checks them against a manual argmax loop.
void check_load_and_generate(const model_spec& s, const std::string& path, tfu_backend_kind kind) {
    c_engine ce(kind);
    tfu_model* m = nullptr;
    ASSERT_EQ(tfu_model_load(ce.eng, path.c_str(), nullptr, &m), TFU_STATUS_OK) << tfu_last_error();
    tfu_model_info info{};
    info.struct_size = sizeof info;
    ASSERT_EQ(tfu_model_get_info(m, &info), TFU_STATUS_OK);
    EXPECT_STREQ(info.architecture, s.arch.c_str());
    EXPECT_EQ(info.n_vocab, 512);
    EXPECT_EQ(info.n_layer, s.n_layer);
    EXPECT_EQ(info.n_embd, s.n_embd);
    EXPECT_EQ(info.n_head, s.n_head);
    EXPECT_EQ(info.n_head_kv, s.n_head_kv);
    EXPECT_EQ(info.n_ctx_train, 256);
    uint64_t n_params = 0;
    for (const f32_tensor& t : make_weights(s)) n_params += t.v.size();
    EXPECT_EQ(info.n_params, n_params);

    const char* prompt = "Once upon a time";
    const int n_gen = 12;
    tfu_session_params sp = tfu_session_params_default();
    sp.n_ctx = 64;
    sp.sampler.temperature = 0.0f;
    sp.sampler.repeat_penalty = 1.0f;

    // Greedy generation, streamed.
    tfu_session* a = nullptr;
    ASSERT_EQ(tfu_session_create(m, &sp, &a), TFU_STATUS_OK) << tfu_last_error();
    ASSERT_EQ(tfu_session_add_text(a, prompt, true), TFU_STATUS_OK) << tfu_last_error();
    std::string text;
    tfu_generate_params gp = tfu_generate_params_default();
    gp.max_tokens = n_gen;
    gp.on_token = collect;
    gp.user_data = &text;
    tfu_generate_result res{};
    res.struct_size = sizeof res;
    ASSERT_EQ(tfu_session_generate(a, &gp, &res), TFU_STATUS_OK) << tfu_last_error();
    EXPECT_GT(res.n_prompt_tokens, 1);
    EXPECT_GE(res.n_generated, 1);
    EXPECT_TRUE(res.stop_reason == TFU_STOP_MAX_TOKENS ? res.n_generated == n_gen : res.stop_reason == TFU_STOP_EOG);
    EXPECT_EQ(tfu_session_destroy(a), TFU_STATUS_OK);

    // The same by hand: prompt tokens, then argmax of the logits at each step.
    std::vector<tfu_token> toks(64);
    size_t n_prompt = 0;
    ASSERT_EQ(tfu_tokenize(m, prompt, std::strlen(prompt), true, true, toks.data(), toks.size(), &n_prompt),
              TFU_STATUS_OK);
    toks.resize(n_prompt);
    EXPECT_EQ(int32_t(n_prompt), res.n_prompt_tokens);
    tfu_session* b = nullptr;
    ASSERT_EQ(tfu_session_create(m, &sp, &b), TFU_STATUS_OK);
    ASSERT_EQ(tfu_session_add_tokens(b, toks.data(), toks.size()), TFU_STATUS_OK);
    for (int i = 0; i < res.n_generated; ++i) {
        ASSERT_EQ(tfu_session_eval(b), TFU_STATUS_OK) << tfu_last_error();
        const float* lg = nullptr;
        size_t nv = 0;
        ASSERT_EQ(tfu_session_get_logits(b, &lg, &nv), TFU_STATUS_OK);
        ASSERT_EQ(nv, 512u);
        for (size_t k = 0; k < nv; ++k) ASSERT_TRUE(std::isfinite(lg[k])) << "logit " << k << " at step " << i;
        tfu_token t = argmax(lg, nv);
        tfu_token sampled = TFU_TOKEN_NONE;
        ASSERT_EQ(tfu_session_sample(b, &sampled), TFU_STATUS_OK);  // greedy: the argmax
        EXPECT_EQ(sampled, t) << "step " << i;
        toks.push_back(t);
    }
    EXPECT_EQ(tfu_session_destroy(b), TFU_STATUS_OK);

    // The streamed text is the detokenized continuation.
    auto detok = [&](size_t n) {
        std::string out(4096, '\0');
        size_t len = 0;
        EXPECT_EQ(tfu_detokenize(m, toks.data(), n, false, &out[0], out.size(), &len), TFU_STATUS_OK);
        out.resize(len);
        return out;
    };
    const std::string all = detok(toks.size()), head = detok(n_prompt);
    ASSERT_EQ(all.substr(0, head.size()), head);
    // Random weights pick byte tokens that need not form valid UTF-8: the stream must still be valid UTF-8
    // (ill-formed bytes replaced by U+FFFD), equal to the detokenized text once sanitized the same way.
    EXPECT_TRUE(tfu::utf8_valid(text));
    EXPECT_EQ(tfu::utf8_sanitize(all.substr(head.size())), text) << "on " << tfu_engine_backend_name(ce.eng);
    EXPECT_EQ(tfu_model_unload(m), TFU_STATUS_OK);
}

// --- F32 models: load, generate, cpu == cpu-ref ------------------------------------------------------------

struct arch_case {
    const char* label;
    model_spec spec;
};

void PrintTo(const arch_case& c, std::ostream* os) { *os << c.label; }

class synthetic_f32 : public ::testing::TestWithParam<arch_case> {};

TEST_P(synthetic_f32, loads_generates_and_backends_agree) {
    model_spec s = GetParam().spec;
    s.seed = test_seed();
    temp_dir dir;
    const std::string path = dir.file("model.gguf");
    write_model(s, path);

    check_load_and_generate(s, path, TFU_BACKEND_CPU);
    check_load_and_generate(s, path, TFU_BACKEND_CPU_REF);

    // Logits at every position: one prefill, several batches (n_past > 0), and one token at a time.
    const std::vector<int32_t> ids = prompt_ids(s.seed, 13);
    loaded ref(path, TFU_BACKEND_CPU_REF), cpu(path, TFU_BACKEND_CPU);
    const std::vector<float> want = ref.logits(ids, 13);
    ASSERT_TRUE(all_finite(want));
    double spread = 0;
    for (float x : want) spread = std::max(spread, std::fabs(double(x)));
    EXPECT_GT(spread, 0.5) << "degenerate logits: the test would not see errors";
    EXPECT_LT(spread, 100.0) << "activations blew up";
    for (int32_t n_batch : {13, 5, 1}) {
        SCOPED_TRACE("n_batch " + std::to_string(n_batch));
        const std::vector<float> ref_b = ref.logits(ids, n_batch);
        EXPECT_LT(rel_max(ref_b, want), 1e-5) << "cpu-ref depends on the batch size";
        const std::vector<float> got = cpu.logits(ids, n_batch);
        ASSERT_EQ(got.size(), want.size());
        ASSERT_TRUE(all_finite(got));
        // Bound: F32 weights and activations on both; only summation order differs (1e-4 of the largest logit).
        const double e = rel_max(got, want);
        std::printf("%s n_batch %2d: cpu vs cpu-ref max rel error %.3g\n", GetParam().label, n_batch, e);
        EXPECT_LT(e, 1e-4);
    }
}

arch_case arch_cases[] = {
    {"llama", model_spec{}},
    {"qwen2", [] {
         model_spec s;
         s.arch = "qwen2";
         return s;
     }()},
    // Partial rotary (n_rot = head_dim / 2): the unrotated tail of each head must pass through.
    {"llama_partial_rope", [] {
         model_spec s;
         s.n_rot = 8;
         return s;
     }()},
    {"qwen2_partial_rope", [] {
         model_spec s;
         s.arch = "qwen2";
         s.n_rot = 8;
         return s;
     }()},
    // Multi-query attention (one KV head) and a single layer.
    {"llama_mqa", [] {
         model_spec s;
         s.n_head_kv = 1;
         s.n_layer = 1;
         return s;
     }()},
};

INSTANTIATE_TEST_SUITE_P(archs, synthetic_f32, ::testing::ValuesIn(arch_cases),
                         [](const ::testing::TestParamInfo<arch_case>& i) { return std::string(i.param.label); });

// --- every weight type -------------------------------------------------------------------------------------

struct type_case {
    dtype type;
    // Relative L2 error of the logits (all positions) allowed for cpu vs cpu-ref on the same quantized file:
    // the fast path rounds activations to the weight's partner format (f16, bf16, q8_0 or q8_K).
    double fast_vs_ref;
    // ... and for cpu-ref on the quantized file vs cpu-ref on the F32 file: the weight quantization error.
    double quant_vs_f32;
};

void PrintTo(const type_case& c, std::ostream* os) { *os << tfu::dtype_name(c.type); }

class weight_types : public ::testing::TestWithParam<type_case> {};

TEST_P(weight_types, cpu_agrees_with_ref_and_f32) {
    const type_case tc = GetParam();
    const bool k_quant = tfu::traits(tc.type).block_size == 256;
    model_spec s;
    s.seed = test_seed();
    if (k_quant) {  // K-quant blocks are 256 wide: every matrix's ne[0] (n_embd, n_ff) must be a multiple
        s.n_embd = 256;
        s.n_ff = 512;
    }
    for (const char* arch : {"llama", "qwen2"}) {
        SCOPED_TRACE(arch);
        s.arch = arch;
        temp_dir dir;
        const std::string f32_path = dir.file("f32.gguf"), q_path = dir.file("q.gguf");
        model_spec sq = s;
        sq.wtype = tc.type;
        write_model(s, f32_path);
        write_model(sq, q_path);
        {
            std::unique_ptr<tfu::gguf::file> f = tfu::gguf::file::open(q_path);
            ASSERT_EQ(f->find_tensor("blk.1.ffn_down.weight")->type, tc.type);
            ASSERT_EQ(f->find_tensor("token_embd.weight")->type, tc.type);
        }
        const std::vector<int32_t> ids = prompt_ids(s.seed, 11);
        const std::vector<float> f32 = loaded(f32_path, TFU_BACKEND_CPU_REF).logits(ids, 11);
        loaded ref(q_path, TFU_BACKEND_CPU_REF), cpu(q_path, TFU_BACKEND_CPU);
        const std::vector<float> want = ref.logits(ids, 11);
        ASSERT_TRUE(all_finite(want));
        const double eq = rel_l2(want, f32);
        for (int32_t n_batch : {11, 1}) {
            const std::vector<float> got = cpu.logits(ids, n_batch);
            ASSERT_TRUE(all_finite(got));
            const double ef = rel_l2(got, want);
            std::printf("%-5s %-5s n_batch %2d: cpu vs cpu-ref %.3g (bound %.3g); cpu-ref vs f32 %.3g (bound %.3g)\n",
                        arch, tfu::dtype_name(tc.type), n_batch, ef, tc.fast_vs_ref, eq, tc.quant_vs_f32);
            EXPECT_LT(ef, tc.fast_vs_ref) << "n_batch " << n_batch;
        }
        EXPECT_LT(eq, tc.quant_vs_f32);
    }
}

// Bounds: about 3x the errors measured over several seeds (rel L2 of all logits of 11 positions, 2 layers).
// fast_vs_ref measured: f16 3e-4, bf16 2.5e-3, q8_0 and 32-blocks 8e-3 (q8_0 activations), K-quants 1.1e-2
// (q8_K activations). quant_vs_f32 measured: f16 4e-4, bf16 3e-3, q8_0 9e-3, q6_K 3e-2, q5_* 7-8e-2,
// q4_* 1.3-1.6e-1, q3_K 2.6e-1, q2_K 4.7e-1.
const type_case type_cases[] = {
    {dtype::F16, 2e-3, 3e-3},   {dtype::BF16, 1e-2, 1.5e-2}, {dtype::Q8_0, 2.5e-2, 3e-2},
    {dtype::Q4_0, 2.5e-2, 0.3}, {dtype::Q4_1, 2.5e-2, 0.3},  {dtype::Q5_0, 2.5e-2, 0.16},
    {dtype::Q5_1, 2.5e-2, 0.16}, {dtype::Q2_K, 4e-2, 0.65},  {dtype::Q3_K, 4e-2, 0.45},
    {dtype::Q4_K, 4e-2, 0.28},  {dtype::Q5_K, 4e-2, 0.15},   {dtype::Q6_K, 4e-2, 0.08},
};

INSTANTIATE_TEST_SUITE_P(all, weight_types, ::testing::ValuesIn(type_cases),
                         [](const ::testing::TestParamInfo<type_case>& i) {
                             return std::string(tfu::dtype_name(i.param.type));
                         });

// --- refusals ----------------------------------------------------------------------------------------------

// Loads `path` through the C API (mmap and read modes) and expects `status` with all `needles` in the message.
void expect_refused(const std::string& path, tfu_status status, const std::vector<std::string>& needles) {
    c_engine ce(TFU_BACKEND_CPU_REF);
    for (bool mmap : {true, false}) {
        SCOPED_TRACE(mmap ? "mmap" : "read");
        tfu_model_params mp = tfu_model_params_default();
        mp.use_mmap = mmap;
        tfu_model* m = reinterpret_cast<tfu_model*>(&mp);  // must be reset to NULL on failure
        const tfu_status st = tfu_model_load(ce.eng, path.c_str(), &mp, &m);
        const std::string msg = tfu_last_error();
        EXPECT_EQ(st, status) << tfu_status_string(st) << ": " << msg;
        EXPECT_EQ(m, nullptr);
        for (const std::string& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
        if (st == TFU_STATUS_OK) tfu_model_unload(m);
    }
    EXPECT_EQ(tfu_engine_memory_used(ce.eng), 0u);
}

class refusals : public ::testing::Test {
protected:
    void SetUp() override { spec.seed = test_seed(); }
    model_spec spec;
    temp_dir dir;
};

TEST_F(refusals, unknown_architecture) {
    const std::string path = dir.file("gptj.gguf");
    write_model(spec, path, {nullptr, [](tfu::gguf::writer& w) { w.set_string("general.architecture", "gpt-j"); }});
    expect_refused(path, TFU_STATUS_UNSUPPORTED, {"gpt-j", path});
}

TEST_F(refusals, missing_architecture_key) {
    const std::string path = dir.file("noarch.gguf");
    write_model(spec, path, {nullptr, [](tfu::gguf::writer& w) { w.remove("general.architecture"); }});
    expect_refused(path, TFU_STATUS_INVALID_FILE, {"general.architecture"});
}

TEST_F(refusals, wrong_tensor_shape) {
    const std::string path = dir.file("shape.gguf");
    write_model(spec, path, {[](f32_tensor& t) {
                                 if (t.name == "blk.1.attn_k.weight") {
                                     t.ne[1] += 16;
                                     t.v.resize(size_t(t.ne[0] * t.ne[1]), 0.01f);
                                 }
                                 return true;
                             },
                             nullptr});
    expect_refused(path, TFU_STATUS_INVALID_FILE, {"blk.1.attn_k.weight", "(64, 48)", "(64, 32)"});
}

TEST_F(refusals, wrong_norm_shape) {
    const std::string path = dir.file("norm.gguf");
    write_model(spec, path, {[](f32_tensor& t) {
                                 if (t.name == "output_norm.weight") t.v.resize(size_t(t.ne[0] = 32));
                                 return true;
                             },
                             nullptr});
    expect_refused(path, TFU_STATUS_INVALID_FILE, {"output_norm.weight"});
}

TEST_F(refusals, missing_tensor) {
    const std::string path = dir.file("missing.gguf");
    write_model(spec, path, {[](f32_tensor& t) { return t.name != "blk.1.ffn_up.weight"; }, nullptr});
    expect_refused(path, TFU_STATUS_INVALID_FILE, {"missing tensor", "blk.1.ffn_up.weight"});
}

TEST_F(refusals, qwen2_without_biases) {
    spec.arch = "qwen2";
    const std::string path = dir.file("nobias.gguf");
    write_model(spec, path, {[](f32_tensor& t) { return t.name != "blk.0.attn_v.bias"; }, nullptr});
    expect_refused(path, TFU_STATUS_INVALID_FILE, {"blk.0.attn_v.bias"});
}

TEST_F(refusals, missing_block_count) {
    const std::string path = dir.file("nokey.gguf");
    write_model(spec, path, {nullptr, [](tfu::gguf::writer& w) { ASSERT_TRUE(w.remove("llama.block_count")); }});
    expect_refused(path, TFU_STATUS_INVALID_FILE, {"llama.block_count"});
}

TEST_F(refusals, head_count_not_a_multiple_of_head_count_kv) {
    const std::string path = dir.file("heads.gguf");
    write_model(spec, path, {nullptr, [](tfu::gguf::writer& w) { w.set_u32("llama.attention.head_count_kv", 3); }});
    expect_refused(path, TFU_STATUS_INVALID_FILE, {"head_count 4", "head_count_kv 3"});
}

TEST_F(refusals, key_of_the_wrong_type) {
    const std::string path = dir.file("keytype.gguf");
    write_model(spec, path, {nullptr, [](tfu::gguf::writer& w) { w.set_string("llama.embedding_length", "64"); }});
    expect_refused(path, TFU_STATUS_INVALID_FILE, {"llama.embedding_length"});
}

TEST_F(refusals, vocabulary_size_differs_from_token_embd) {
    const std::string path = dir.file("vocab.gguf");
    write_model(spec, path, {[](f32_tensor& t) {
                                 if (t.name == "token_embd.weight" || t.name == "output.weight") {
                                     t.ne[1] = 500;
                                     t.v.resize(size_t(t.ne[0] * 500));
                                 }
                                 return true;
                             },
                             nullptr});
    expect_refused(path, TFU_STATUS_INVALID_FILE, {"512", "500"});
}

TEST_F(refusals, truncated_in_tensor_data) {
    const std::string path = dir.file("cut.gguf");
    write_model(spec, path);
    struct stat st{};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    // Cut 1000 bytes: inside the last tensor's data (blk.1.ffn_down.weight, 96 x 64 f32 = 24 KiB).
    ASSERT_EQ(::truncate(path.c_str(), st.st_size - 1000), 0);
    expect_refused(path, TFU_STATUS_INVALID_FILE, {"blk.1.ffn_down.weight", "past the end"});
    // Cut in the middle of the file: many tensors are outside now; the message names one of them.
    ASSERT_EQ(::truncate(path.c_str(), st.st_size / 2), 0);
    expect_refused(path, TFU_STATUS_INVALID_FILE, {"tensor '", "past the end"});
}

TEST_F(refusals, unknown_tensor_type_id) {
    const std::string path = dir.file("type99.gguf");
    write_model(spec, path);
    // Patch the type field of blk.0.ffn_up.weight: name (u64 length + bytes) | n_dims | ne[2] | type.
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    std::string head(1 << 16, '\0');
    f.read(&head[0], std::streamsize(head.size()));
    const std::string name = "blk.0.ffn_up.weight";
    std::string rec(8, '\0');
    const uint64_t len = name.size();
    std::memcpy(&rec[0], &len, 8);
    rec += name;
    const size_t at = head.find(rec);
    ASSERT_NE(at, std::string::npos);
    uint32_t n_dims = 0, type = 0;
    std::memcpy(&n_dims, &head[at + rec.size()], 4);
    ASSERT_EQ(n_dims, 2u);
    const size_t type_pos = at + rec.size() + 4 + 8 * n_dims;
    std::memcpy(&type, &head[type_pos], 4);
    ASSERT_EQ(type, uint32_t(dtype::F32));
    const uint32_t bad = 99;
    f.seekp(std::streamoff(type_pos));
    f.write(reinterpret_cast<const char*>(&bad), 4);
    f.close();
    expect_refused(path, TFU_STATUS_UNSUPPORTED, {"blk.0.ffn_up.weight", "99"});
}

TEST_F(refusals, not_a_gguf_file) {
    const std::string text = dir.file("readme.txt");
    std::ofstream(text) << "This is not a model file, just some text that is long enough to hold a header.\n";
    expect_refused(text, TFU_STATUS_INVALID_FILE, {"not a GGUF file", text});
}

TEST_F(refusals, empty_file) {
    const std::string empty = dir.file("empty.gguf");
    std::ofstream(empty).close();
    expect_refused(empty, TFU_STATUS_INVALID_FILE, {"empty", empty});
}

// A directory cannot be read as a file: IO_ERROR naming it, with mmap and without.
TEST_F(refusals, directory_path) {
    const std::string sub = dir.path + "/a_directory.gguf";
    ASSERT_EQ(::mkdir(sub.c_str(), 0755), 0);
    expect_refused(sub, TFU_STATUS_IO_ERROR, {sub});
    ::rmdir(sub.c_str());
}

TEST_F(refusals, missing_file) {
    const std::string missing = dir.path + "/no_such_model.gguf";
    expect_refused(missing, TFU_STATUS_NOT_FOUND, {missing});
}

TEST_F(refusals, unsupported_weight_type_for_a_norm) {
    // Norms must be f32: a q8_0 norm is refused naming the tensor.
    const std::string path = dir.file("qnorm.gguf");
    model_spec sq = spec;
    sq.wtype = dtype::Q8_0;
    write_model(sq, path, {[](f32_tensor& t) {
                               if (t.name == "blk.0.ffn_norm.weight") t.matrix = true;
                               return true;
                           },
                           nullptr});
    expect_refused(path, TFU_STATUS_UNSUPPORTED, {"blk.0.ffn_norm.weight", "f32"});
}

}  // namespace
