// tfusion-quantize end to end: a small random f32 llama (n_embd 256, 8 layers, n_ff 288 so that ffn_down falls
// back from K-quants) is converted to every type and mix through the executable (next to this test's build
// dir); the result is reloaded with the GGUF reader (metadata, per-tensor types per the mix policy, RMSE
// bounds), loaded in the engine and run; bad arguments fail with a message and leave no OUT behind.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/quant.h"
#include "format/gguf.h"
#include "format/gguf_writer.h"
#include "tfusion/tfusion.h"
#include "tool_runner.h"

namespace {

using tfu::dtype;

const std::string k_stories = std::string(TFU_SHARED_DIR) + "/models/stories260K.gguf";
constexpr int64_t E = 256, L = 8, F = 288, H = 4, HKV = 2;
constexpr unsigned k_seed = 20251123;

std::string tool_path() { return tfu::test::built_tool("quantize/tfusion-quantize"); }
using tfu::test::file_exists;
using run_result = tfu::test::tool_result;
run_result run_tool(const std::string& args) { return tfu::test::run_tool(tool_path(), args); }

class QuantizeTool : public ::testing::Test {
protected:
    static std::string dir, input;
    static void SetUpTestSuite() {
        char tmpl[] = "/tmp/tfu_quantize_tool_XXXXXX";
        dir = ::mkdtemp(tmpl);
        input = dir + "/in_f32.gguf";
        std::printf("seed %u\n", k_seed);
        std::mt19937 rng(k_seed);
        std::normal_distribution<float> nd(0.0f, 1.0f);
        tfu::gguf::writer w;
        w.set_string("general.architecture", "llama");
        w.set_string("general.name", "quantize tool test");
        w.set_u32("general.file_type", 0);
        w.set_u32("llama.context_length", 128);
        w.set_u32("llama.embedding_length", uint32_t(E));
        w.set_u32("llama.block_count", uint32_t(L));
        w.set_u32("llama.feed_forward_length", uint32_t(F));
        w.set_u32("llama.attention.head_count", uint32_t(H));
        w.set_u32("llama.attention.head_count_kv", uint32_t(HKV));
        w.set_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
        w.set_f32("llama.rope.freq_base", 10000.0f);
        std::unique_ptr<tfu::gguf::file> voc = tfu::gguf::file::open(k_stories);
        for (const auto& kv : voc->metadata())
            if (kv.key.substr(0, 10) == "tokenizer.") w.set_kv(kv);
        const int64_t V = int64_t(voc->get_array("tokenizer.ggml.tokens", tfu::gguf::value_type::STRING)->count);
        auto add = [&](const std::string& name, std::vector<int64_t> ne) {
            const int64_t n = ne[0] * (ne.size() > 1 ? ne[1] : 1);
            std::vector<float> v(static_cast<size_t>(n));
            for (float& x : v) x = ne.size() == 1 ? 1.0f + 0.05f * nd(rng) : nd(rng) / std::sqrt(float(ne[0]));
            w.add_tensor(name, dtype::F32, ne.data(), uint32_t(ne.size()), v.data(), v.size() * sizeof(float));
        };
        add("token_embd.weight", {E, V});
        for (int64_t l = 0; l < L; ++l) {
            const std::string p = "blk." + std::to_string(l) + ".";
            add(p + "attn_norm.weight", {E});
            add(p + "attn_q.weight", {E, E});
            add(p + "attn_k.weight", {E, E / H * HKV});
            add(p + "attn_v.weight", {E, E / H * HKV});
            add(p + "attn_output.weight", {E, E});
            add(p + "ffn_norm.weight", {E});
            add(p + "ffn_gate.weight", {E, F});
            add(p + "ffn_up.weight", {E, F});
            add(p + "ffn_down.weight", {F, E});
        }
        add("output_norm.weight", {E});
        add("output.weight", {E, V});
        w.write(input);
    }
    static void TearDownTestSuite() { std::system(("rm -rf '" + dir + "'").c_str()); }
    void SetUp() override {
        if (!file_exists(tool_path())) GTEST_SKIP() << "tfusion-quantize not built at " << tool_path();
    }
};
std::string QuantizeTool::dir, QuantizeTool::input;

// The type llama.cpp's rules give each tensor (restated here independently of tools/quantize/mix.cpp).
dtype fallback(dtype t, int64_t ne0) {
    if (ne0 % tfu::traits(t).block_size == 0) return t;
    if (t == dtype::Q2_K || t == dtype::Q3_K) return dtype::Q4_0;
    if (t == dtype::Q4_K) return dtype::Q5_0;
    if (t == dtype::Q5_K) return dtype::Q5_1;
    if (t == dtype::Q6_K) return dtype::Q8_0;
    return dtype::F16;
}
dtype expected_type(const std::string& mix, dtype base, bool pure, const tfu::gguf::tensor_info& t) {
    const std::string name(t.name);
    if (t.n_dims == 1) return dtype::F32;
    if (!tfu::traits(base).quantized) return base;
    dtype nt = base;
    int layer = -1;
    std::sscanf(name.c_str(), "blk.%d.", &layer);
    const bool more = layer < L / 8 || layer >= 7 * L / 8 || (layer - L / 8) % 3 == 2;  // layers 0, 3, 6, 7
    if (!pure) {
        if (name == "output.weight") nt = base == dtype::Q8_0 ? dtype::Q8_0 : dtype::Q6_K;
        else if (name.find("attn_v") != std::string::npos) {
            if ((mix == "Q4_K_M" || mix == "Q5_K_M") && more) nt = dtype::Q6_K;
            if (mix == "Q4_K_S" && layer < 4) nt = dtype::Q5_K;
            if (mix == "Q3_K_M") nt = layer < 2 ? dtype::Q5_K : dtype::Q4_K;
        } else if (name.find("ffn_down") != std::string::npos) {
            if ((mix == "Q4_K_M" || mix == "Q5_K_M") && more) nt = dtype::Q6_K;
            if (mix == "Q4_K_S" && layer < L / 8) nt = dtype::Q5_K;
            if (mix == "Q3_K_M") nt = layer < L / 16 ? dtype::Q5_K : dtype::Q4_K;
        } else if (name.find("attn_output") != std::string::npos && mix == "Q3_K_M") {
            nt = dtype::Q4_K;
        }
    }
    return fallback(nt, t.ne[0]);
}

// Relative RMSE bound per output type on N(0, 1/sqrt(n)) weights (about 1.1x what the quantizers reach).
double rmse_bound(dtype t) {
    switch (t) {
        case dtype::F32: return 0.0;
        case dtype::F16: return 5e-4;
        case dtype::BF16: return 4e-3;
        case dtype::Q8_0: return 0.006;
        case dtype::Q6_K: return 0.019;
        case dtype::Q5_1: return 0.039;
        case dtype::Q5_K: return 0.038;
        case dtype::Q5_0: return 0.045;
        case dtype::Q4_K: return 0.077;
        case dtype::Q4_1: return 0.077;
        case dtype::Q4_0: return 0.090;
        case dtype::Q3_K: return 0.158;
        case dtype::Q2_K: return 0.29;
        default: return 0.0;
    }
}

double rel_rmse(const tfu::gguf::tensor_info& ref, const tfu::gguf::tensor_info& q) {
    const int64_t ne0 = ref.ne[0], rows = ref.nelements() / ne0;
    std::vector<float> b(static_cast<size_t>(ne0));
    const float* a = static_cast<const float*>(ref.data);
    double err = 0, sq = 0;
    for (int64_t r = 0; r < rows; ++r) {
        tfu::dequantize_row(q.type, static_cast<const uint8_t*>(q.data) + size_t(r) * tfu::row_size(q.type, ne0), b.data(), ne0);
        for (int64_t j = 0; j < ne0; ++j) {
            const double e = double(b[size_t(j)]) - double(a[r * ne0 + j]);
            err += e * e;
            sq += double(a[r * ne0 + j]) * double(a[r * ne0 + j]);
        }
    }
    return std::sqrt(err / sq);
}

bool count_piece(const char*, size_t, tfu_token, void* ud) {
    ++*static_cast<int*>(ud);
    return true;
}

struct case_t {
    const char* type;
    dtype base;
    uint32_t ftype;
    bool pure;
};

TEST_F(QuantizeTool, every_type_and_mix) {
    const case_t cases[] = {
        {"f32", dtype::F32, 0, true},     {"f16", dtype::F16, 1, true},     {"bf16", dtype::BF16, 32, true},
        {"q8_0", dtype::Q8_0, 7, true},   {"q4_0", dtype::Q4_0, 2, true},   {"q4_1", dtype::Q4_1, 3, true},
        {"q5_0", dtype::Q5_0, 8, true},   {"q5_1", dtype::Q5_1, 9, true},   {"q2_K", dtype::Q2_K, 10, true},
        {"q3_K", dtype::Q3_K, 11, true},  {"q4_K", dtype::Q4_K, 14, true},  {"q5_K", dtype::Q5_K, 16, true},
        {"q6_K", dtype::Q6_K, 18, true},  {"Q4_0", dtype::Q4_0, 2, false},  {"Q8_0", dtype::Q8_0, 7, false},
        {"Q3_K_M", dtype::Q3_K, 12, false}, {"Q4_K_S", dtype::Q4_K, 14, false}, {"Q4_K_M", dtype::Q4_K, 15, false},
        {"Q5_K_S", dtype::Q5_K, 16, false}, {"Q5_K_M", dtype::Q5_K, 17, false}, {"Q6_K", dtype::Q6_K, 18, false},
    };
    std::unique_ptr<tfu::gguf::file> in = tfu::gguf::file::open(input);
    tfu_engine_params ep = tfu_engine_params_default();
    ep.n_threads = 2;
    tfu_engine* eng = nullptr;
    ASSERT_EQ(tfu_engine_create(&ep, &eng), TFU_STATUS_OK) << tfu_last_error();
    for (const case_t& c : cases) {
        SCOPED_TRACE(c.type);
        const std::string out = dir + "/out_" + c.type + ".gguf";
        const run_result r = run_tool("'" + input + "' '" + out + "' " + c.type + " --threads 2 --quiet");
        ASSERT_EQ(r.rc, 0) << r.out;
        EXPECT_NE(r.out.find("bits/weight"), std::string::npos) << r.out;
        std::unique_ptr<tfu::gguf::file> q = tfu::gguf::file::open(out);
        // Metadata: everything copied, file type and quantization version set.
        EXPECT_EQ(q->get_int("general.file_type").value_or(-1), int64_t(c.ftype));
        EXPECT_EQ(q->get_int("general.quantization_version").value_or(-1), 2);
        for (const auto& kv : in->metadata()) {
            if (kv.key == "general.file_type") continue;
            const tfu::gguf::kv* o = q->find(kv.key);
            ASSERT_NE(o, nullptr) << kv.key;
            EXPECT_EQ(int(o->type), int(kv.type)) << kv.key;
            EXPECT_EQ(o->count, kv.count) << kv.key;
            EXPECT_EQ(o->str, kv.str) << kv.key;
            EXPECT_EQ(o->i, kv.i) << kv.key;
            if (kv.elem_type == tfu::gguf::value_type::STRING) {
                EXPECT_EQ(o->strings, kv.strings) << kv.key;
            }
        }
        // Types per the mix policy, RMSE within bounds.
        ASSERT_EQ(q->tensors().size(), in->tensors().size());
        for (const auto& t : in->tensors()) {
            const tfu::gguf::tensor_info* o = q->find_tensor(t.name);
            ASSERT_NE(o, nullptr) << t.name;
            EXPECT_EQ(o->type, expected_type(c.type, c.base, c.pure, t))
                << t.name << ": " << tfu::dtype_name(o->type);
            const double e = rel_rmse(t, *o);
            EXPECT_LE(e, rmse_bound(o->type)) << t.name << " as " << tfu::dtype_name(o->type);
            if (o->type != dtype::F32) {
                EXPECT_GT(e, 0.0) << t.name;  // really converted
            }
        }
        // The engine loads it and generates.
        tfu_model* mdl = nullptr;
        ASSERT_EQ(tfu_model_load(eng, out.c_str(), nullptr, &mdl), TFU_STATUS_OK) << tfu_last_error();
        tfu_session_params sp = tfu_session_params_default();
        sp.sampler.temperature = 0.0f;
        tfu_session* ses = nullptr;
        ASSERT_EQ(tfu_session_create(mdl, &sp, &ses), TFU_STATUS_OK) << tfu_last_error();
        ASSERT_EQ(tfu_session_add_text(ses, "Once upon a time", true), TFU_STATUS_OK) << tfu_last_error();
        tfu_generate_params gp = tfu_generate_params_default();
        int pieces = 0;
        gp.max_tokens = 4;
        gp.on_token = count_piece;
        gp.user_data = &pieces;
        tfu_generate_result res;
        res.struct_size = sizeof res;
        ASSERT_EQ(tfu_session_generate(ses, &gp, &res), TFU_STATUS_OK) << tfu_last_error();
        EXPECT_GE(res.n_generated, 1);
        tfu_session_destroy(ses);
        tfu_model_unload(mdl);
        std::remove(out.c_str());
    }
    tfu_engine_destroy(eng);
}

TEST_F(QuantizeTool, rows_not_multiple_of_32_stay_f16) {
    const std::string in2 = dir + "/odd.gguf", out = dir + "/odd_q4km.gguf";
    tfu::gguf::writer w;
    w.set_string("general.architecture", "llama");
    std::vector<float> v(40 * 3, 0.25f);
    for (size_t i = 0; i < v.size(); ++i) v[i] = float(i % 7) - 3.0f;
    w.add_tensor("blk.0.odd.weight", dtype::F32, {40, 3}, v.data(), v.size() * sizeof(float));
    w.write(in2);
    const run_result r = run_tool("'" + in2 + "' '" + out + "' Q4_K_M --quiet --stats");
    ASSERT_EQ(r.rc, 0) << r.out;
    EXPECT_NE(r.out.find("rel_rmse"), std::string::npos) << r.out;
    std::unique_ptr<tfu::gguf::file> q = tfu::gguf::file::open(out);
    EXPECT_EQ(q->find_tensor("blk.0.odd.weight")->type, dtype::F16);
}

TEST_F(QuantizeTool, bad_arguments_fail_without_output) {
    const std::string out = dir + "/bad.gguf";
    run_result r = run_tool("'" + input + "' '" + out + "' q7_K");
    EXPECT_NE(r.rc, 0);
    EXPECT_NE(r.out.find("unknown quantization type 'q7_K'"), std::string::npos) << r.out;
    EXPECT_FALSE(file_exists(out));

    r = run_tool("'" + dir + "/no_such.gguf' '" + out + "' q4_0");
    EXPECT_NE(r.rc, 0);
    EXPECT_NE(r.out.find("no_such.gguf"), std::string::npos) << r.out;
    EXPECT_FALSE(file_exists(out));

    const std::string missing_dir_out = dir + "/no_dir/out.gguf";
    r = run_tool("'" + input + "' '" + missing_dir_out + "' q4_0 --quiet");
    EXPECT_NE(r.rc, 0);
    EXPECT_NE(r.out.find("no_dir"), std::string::npos) << r.out;
    EXPECT_FALSE(file_exists(missing_dir_out));

    r = run_tool("'" + input + "' '" + out + "'");  // TYPE missing
    EXPECT_NE(r.rc, 0);
    EXPECT_NE(r.out.find("usage"), std::string::npos) << r.out;
    r = run_tool("'" + input + "' '" + out + "' q4_0 --threads zero");
    EXPECT_NE(r.rc, 0);
    EXPECT_FALSE(file_exists(out));

    // An existing OUT survives a failed run unchanged, and no temporary file is left in the directory.
    FILE* f = std::fopen(out.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("keep", f);
    std::fclose(f);
    r = run_tool("'" + dir + "/no_such.gguf' '" + out + "' q4_0");
    EXPECT_NE(r.rc, 0);
    f = std::fopen(out.c_str(), "r");
    char buf[8] = {0};
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(std::fread(buf, 1, 7, f), 4u);
    std::fclose(f);
    EXPECT_STREQ(buf, "keep");
    FILE* p = ::popen(("ls -a '" + dir + "' | grep -c -v -E '^(\\.|\\.\\.|in_f32.gguf|bad.gguf|odd.gguf|odd_q4km.gguf|out_.*)$'").c_str(), "r");
    char cnt[16] = {0};
    ASSERT_NE(p, nullptr);
    EXPECT_NE(std::fgets(cnt, sizeof cnt, p), nullptr);
    ::pclose(p);
    EXPECT_EQ(std::atoi(cnt), 0) << "stray files in " << dir;
}

}  // namespace
