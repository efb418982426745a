// tfusion-perplexity against a straightforward token-by-token loop on stories260K (PPL and its error), KL of a
// run against its own base file, and the program's answers to bad arguments and bad or mismatched base files.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "tfusion/tfusion.h"

namespace {

const std::string k_model = std::string(TFU_SHARED_DIR) + "/models/stories260K.gguf";

// A short text in the style stories260K was trained on (written for this test): about 300 tokens, so -c 64 gives
// four chunks.
const char* k_text =
    "Once upon a time, there was a little girl named Mia. She had a red ball that she loved very much. Every day "
    "she went to the park with her mom to play with the ball.\n"
    "One day, the ball rolled under a big tree. Mia was sad because she could not reach it. A kind dog came and "
    "pushed the ball out with his nose. Mia smiled and said, \"Thank you, dog!\" The dog wagged his tail.\n"
    "They played together all day. When the sun went down, Mia went home with her mom. She told her dad about the "
    "nice dog. Her dad said, \"It is good to have a friend.\" Mia hugged her ball and went to sleep.\n"
    "The next day, Tom came to the park. He had a blue kite. The wind was strong, and the kite flew high in the "
    "sky. Mia and Tom ran after the kite and laughed. They were very happy.\n";

std::string exe_path() {
    char buf[PATH_MAX];
    const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) return "";
    std::string p(buf, size_t(n));
    return p.substr(0, p.rfind('/')) + "/../tools/perplexity/tfusion-perplexity";
}

struct run_result {
    int rc = -1;
    std::string out, err;
};

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

struct perplexity_tool : ::testing::Test {
    void SetUp() override {
        exe = exe_path();
        if (access(exe.c_str(), X_OK) != 0) GTEST_SKIP() << "tfusion-perplexity not built at " << exe;
        char tmpl[] = "/tmp/tfu_ppl_test_XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir = tmpl;
        text_path = dir + "/text.txt";
        std::ofstream(text_path, std::ios::binary) << k_text;
    }
    void TearDown() override {
        if (!dir.empty()) std::system(("rm -rf '" + dir + "'").c_str());
    }
    run_result run(const std::string& args) {
        const std::string o = dir + "/stdout", e = dir + "/stderr";
        const std::string cmd = "'" + exe + "' " + args + " >'" + o + "' 2>'" + e + "'";
        const int st = std::system(cmd.c_str());
        run_result r;
        r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        r.out = slurp(o);
        r.err = slurp(e);
        return r;
    }
    std::string base_args(int n_ctx) {
        return "-m '" + k_model + "' -f '" + text_path + "' -c " + std::to_string(n_ctx) + " -t 2 --backend cpu";
    }
    std::string exe, dir, text_path;
};

// "PPL = x +/- y" from stdout.
bool parse_ppl(const std::string& out, double& ppl, double& err) {
    std::smatch m;
    if (!std::regex_search(out, m, std::regex(R"(PPL = ([0-9.]+) \+/- ([0-9.]+))"))) return false;
    ppl = std::stod(m[1]);
    err = std::stod(m[2]);
    return true;
}

// The reference: every chunk token by token through tfu_session_add_tokens + eval + get_logits, scoring
// positions n_ctx/2 .. n_ctx-2 (each predicts the next token) with a plain log-softmax in long double.
void reference_ppl(int32_t n_ctx, double& ppl, double& err, size_t& n_scored) {
    tfu_engine_params ep = tfu_engine_params_default();
    ep.backend = TFU_BACKEND_CPU;
    ep.n_threads = 2;
    tfu_engine* eng = nullptr;
    tfu_model* mdl = nullptr;
    tfu_session* ses = nullptr;
    ASSERT_EQ(tfu_engine_create(&ep, &eng), TFU_STATUS_OK) << tfu_last_error();
    ASSERT_EQ(tfu_model_load(eng, k_model.c_str(), nullptr, &mdl), TFU_STATUS_OK) << tfu_last_error();
    tfu_model_info info{};
    info.struct_size = sizeof info;
    ASSERT_EQ(tfu_model_get_info(mdl, &info), TFU_STATUS_OK);
    std::string text = k_text;
    text.pop_back();  // the tool drops one trailing newline, as llama.cpp does
    std::vector<tfu_token> toks(text.size() + 16);
    size_t n = 0;
    ASSERT_EQ(tfu_tokenize(mdl, text.data(), text.size(), true, false, toks.data(), toks.size(), &n), TFU_STATUS_OK);
    toks.resize(n);
    ASSERT_GE(n, size_t(2 * n_ctx));
    tfu_session_params sp = tfu_session_params_default();
    sp.n_ctx = n_ctx;
    ASSERT_EQ(tfu_session_create(mdl, &sp, &ses), TFU_STATUS_OK) << tfu_last_error();

    long double sum = 0, sum2 = 0;
    size_t count = 0;
    const size_t n_chunk = n / size_t(n_ctx);
    for (size_t c = 0; c < n_chunk; ++c) {
        ASSERT_EQ(tfu_session_reset(ses), TFU_STATUS_OK);
        std::vector<tfu_token> chunk(toks.begin() + long(c * size_t(n_ctx)), toks.begin() + long((c + 1) * size_t(n_ctx)));
        if (info.add_bos) chunk[0] = info.bos;
        for (int32_t p = 0; p + 1 < n_ctx; ++p) {
            ASSERT_EQ(tfu_session_add_tokens(ses, &chunk[size_t(p)], 1), TFU_STATUS_OK) << tfu_last_error();
            ASSERT_EQ(tfu_session_eval(ses), TFU_STATUS_OK) << tfu_last_error();
            if (p < n_ctx / 2) continue;
            const float* lg = nullptr;
            size_t nv = 0;
            ASSERT_EQ(tfu_session_get_logits(ses, &lg, &nv), TFU_STATUS_OK) << tfu_last_error();
            long double mx = lg[0], z = 0;
            for (size_t i = 1; i < nv; ++i) mx = std::max<long double>(mx, lg[i]);
            for (size_t i = 0; i < nv; ++i) z += std::exp((long double)lg[i] - mx);
            const long double nll = -((long double)lg[chunk[size_t(p + 1)]] - mx - std::log(z));
            sum += nll;
            sum2 += nll * nll;
            ++count;
        }
    }
    const long double mean = sum / count, var = sum2 / count - mean * mean;
    ppl = double(std::exp(mean));
    err = double(std::sqrt(var / (count - 1)) * std::exp(mean));
    n_scored = count;
    tfu_session_destroy(ses);
    tfu_model_unload(mdl);
    tfu_engine_destroy(eng);
}

TEST_F(perplexity_tool, matches_token_by_token_reference) {
    const int32_t n_ctx = 64;
    const run_result r = run(base_args(n_ctx));
    ASSERT_EQ(r.rc, 0) << r.err;
    double ppl = 0, err = 0;
    ASSERT_TRUE(parse_ppl(r.out, ppl, err)) << r.out;
    double ref = 0, ref_err = 0;
    size_t n_scored = 0;
    reference_ppl(n_ctx, ref, ref_err, n_scored);
    std::printf("tool PPL = %.6f +/- %.6f, reference PPL = %.6f +/- %.6f over %zu tokens\n", ppl, err, ref, ref_err,
                n_scored);
    EXPECT_GE(n_scored, size_t(3 * (n_ctx - 1 - n_ctx / 2)));
    EXPECT_GT(ref, 1.0);
    // the tool prints 4 decimals (PPL ~ 5: 1e-5 relative), so 1e-4 relative tests the value, not the rounding
    EXPECT_LE(std::fabs(ppl - ref) / ref, 1e-4);
    EXPECT_LE(std::fabs(err - ref_err) / ref_err, 1e-3);  // 5 decimals of ~0.3
    EXPECT_NE(r.err.find("[1]"), std::string::npos) << "progress per chunk on stderr";
}

TEST_F(perplexity_tool, kl_of_a_run_against_itself_is_zero) {
    const std::string base = dir + "/base.kld";
    const run_result s = run(base_args(64) + " --kl-base '" + base + "' --save-base");
    ASSERT_EQ(s.rc, 0) << s.err;
    const run_result k = run(base_args(64) + " --kl-base '" + base + "'");
    ASSERT_EQ(k.rc, 0) << k.err;
    std::smatch m;
    ASSERT_TRUE(std::regex_search(k.out, m, std::regex(R"(Mean    KLD: +(-?[0-9.]+) \+/- +([0-9.]+))"))) << k.out;
    EXPECT_LE(std::fabs(std::stod(m[1])), 1e-6);
    ASSERT_TRUE(std::regex_search(k.out, m, std::regex(R"(Maximum KLD: +(-?[0-9.]+))")));
    EXPECT_LE(std::fabs(std::stod(m[1])), 1e-6);
    ASSERT_TRUE(std::regex_search(k.out, m, std::regex(R"(Same top p: +([0-9.]+))")));
    EXPECT_DOUBLE_EQ(std::stod(m[1]), 100.0);
    double p1 = 0, e1 = 0, p2 = 0, e2 = 0;
    ASSERT_TRUE(parse_ppl(s.out, p1, e1));
    ASSERT_TRUE(parse_ppl(k.out, p2, e2));
    EXPECT_DOUBLE_EQ(p1, p2);

    // a top-K base (K < n_vocab: top-K + rest bucket) is also exact against itself
    const std::string base8 = dir + "/base8.kld";
    ASSERT_EQ(run(base_args(64) + " --kl-base '" + base8 + "' --save-base --kl-top-k 8").rc, 0);
    const run_result k8 = run(base_args(64) + " --kl-base '" + base8 + "'");
    ASSERT_EQ(k8.rc, 0) << k8.err;
    ASSERT_TRUE(std::regex_search(k8.out, m, std::regex(R"(Mean    KLD: +(-?[0-9.]+))"))) << k8.out;
    EXPECT_LE(std::fabs(std::stod(m[1])), 1e-6);

    // against the scalar reference backend: small but not identical
    const run_result kr = run("-m '" + k_model + "' -f '" + text_path + "' -t 2 --backend cpu-ref --kl-base '" + base + "'");
    ASSERT_EQ(kr.rc, 0) << kr.err;
    ASSERT_TRUE(std::regex_search(kr.out, m, std::regex(R"(Mean    KLD: +(-?[0-9.]+))"))) << kr.out;
    EXPECT_LE(std::fabs(std::stod(m[1])), 1e-4);
}

TEST_F(perplexity_tool, bad_base_files_are_refused) {
    const std::string base = dir + "/base.kld";
    ASSERT_EQ(run(base_args(64) + " --kl-base '" + base + "' --save-base").rc, 0);
    const std::string bytes = slurp(base);
    ASSERT_GT(bytes.size(), 200u);
    auto write = [&](const std::string& path, const std::string& b) { std::ofstream(path, std::ios::binary) << b; };
    struct bad_case {
        const char* name;
        std::string content;
        const char* expect;
    };
    std::string flipped = bytes;
    flipped[bytes.size() / 2] = char(flipped[bytes.size() / 2] ^ 0x40);
    std::string wrong_version = bytes;
    wrong_version[8] = 7;
    const std::vector<bad_case> cases = {
        {"flipped", flipped, "checksum"},
        {"truncated", bytes.substr(0, bytes.size() - 100), "truncated"},
        {"header_only", bytes.substr(0, 40), "too short"},
        {"not_a_base", std::string(4096, 'x'), "magic"},
        {"wrong_version", wrong_version, "version"},
    };
    for (const bad_case& c : cases) {
        const std::string p = dir + "/" + c.name + ".kld";
        write(p, c.content);
        const run_result r = run(base_args(64) + " --kl-base '" + p + "'");
        EXPECT_EQ(r.rc, 1) << c.name;
        EXPECT_NE(r.err.find(c.expect), std::string::npos) << c.name << ": " << r.err;
    }
    // a valid base of another evaluation: other -c, other text
    const run_result rc = run(base_args(32) + " --kl-base '" + base + "'");
    EXPECT_EQ(rc.rc, 1);
    EXPECT_NE(rc.err.find("-c 64"), std::string::npos) << rc.err;
    std::string other = k_text;
    other.replace(other.find("red ball"), 8, "big kite");
    const std::string other_path = dir + "/other.txt";
    write(other_path, other);
    const run_result rt = run("-m '" + k_model + "' -f '" + other_path + "' -t 2 --kl-base '" + base + "'");
    EXPECT_EQ(rt.rc, 1);
    EXPECT_NE(rt.err.find("different text"), std::string::npos) << rt.err;
    const run_result rn = run(base_args(64) + " --chunks 99 --kl-base '" + base + "'");
    EXPECT_EQ(rn.rc, 1);
    EXPECT_NE(rn.err.find("--chunks 99"), std::string::npos) << rn.err;
}

// "kv: K q8 V q8, 400.0 bytes/token (...)" from stderr.
bool parse_kv_line(const std::string& err, std::string& k, std::string& v, double& bytes_per_token) {
    std::smatch m;
    if (!std::regex_search(err, m, std::regex(R"(kv: K (\w+) V (\w+), ([0-9.]+) bytes/token)"))) return false;
    k = m[1];
    v = m[2];
    bytes_per_token = std::stod(m[3]);
    return true;
}

// -ctk/-ctv reach the engine: the cache's bytes per token are those of the format (stories260K: 5 layers x 4 KV
// heads x head size 8; -c 64 = two whole blocks of 32, so no partial block), and a q8 cache gives a perplexity
// within 1% of the f16 one with a KL divergence that is small but not zero.
TEST_F(perplexity_tool, kv_cache_types) {
    tfu_engine* eng = nullptr;
    tfu_model* mdl = nullptr;
    ASSERT_EQ(tfu_engine_create(nullptr, &eng), TFU_STATUS_OK) << tfu_last_error();
    ASSERT_EQ(tfu_model_load(eng, k_model.c_str(), nullptr, &mdl), TFU_STATUS_OK) << tfu_last_error();
    tfu_model_info info{};
    info.struct_size = sizeof info;
    ASSERT_EQ(tfu_model_get_info(mdl, &info), TFU_STATUS_OK);
    tfu_model_unload(mdl);
    tfu_engine_destroy(eng);
    const double d = double(info.n_embd / info.n_head), heads = double(info.n_layer) * double(info.n_head_kv);
    const double f16_bytes = heads * 2 * (2 * d);  // K + V, 2 bytes per value
    const double q8_bytes = heads * 2 * (d + 2);   // int8 codes + one f16 scale per token and head

    const std::string base = dir + "/base.kld";
    const run_result f = run(base_args(64) + " --kl-base '" + base + "' --save-base");
    ASSERT_EQ(f.rc, 0) << f.err;
    const run_result q = run(base_args(64) + " -ctk q8 -ctv q8 --kl-base '" + base + "'");
    ASSERT_EQ(q.rc, 0) << q.err;
    std::string fk, fv, qk, qv;
    double f_bpt = 0, q_bpt = 0;
    ASSERT_TRUE(parse_kv_line(f.err, fk, fv, f_bpt)) << f.err;
    ASSERT_TRUE(parse_kv_line(q.err, qk, qv, q_bpt)) << q.err;
    EXPECT_EQ(fk + fv, "f16f16");
    EXPECT_EQ(qk + qv, "q8q8");
    std::printf("bytes/token: f16 %.1f (expected %.1f), q8 %.1f (expected %.1f)\n", f_bpt, f16_bytes, q_bpt, q8_bytes);
    EXPECT_NE(f_bpt, q_bpt);
    EXPECT_DOUBLE_EQ(f_bpt, f16_bytes);
    EXPECT_DOUBLE_EQ(q_bpt, q8_bytes);

    double pf = 0, ef = 0, pq = 0, eq = 0;
    ASSERT_TRUE(parse_ppl(f.out, pf, ef)) << f.out;
    ASSERT_TRUE(parse_ppl(q.out, pq, eq)) << q.out;
    std::printf("PPL f16 %.4f, q8/q8 %.4f (%+.3f%%)\n", pf, pq, 100.0 * (pq / pf - 1.0));
    EXPECT_LE(std::fabs(pq / pf - 1.0), 0.01);
    std::smatch m;
    ASSERT_TRUE(std::regex_search(q.out, m, std::regex(R"(Mean    KLD: +(-?[0-9.]+))"))) << q.out;
    const double kld = std::stod(m[1]);
    EXPECT_GT(kld, 1e-6) << "a q8 cache should not give the f16 cache's exact distributions";
    EXPECT_LT(kld, 0.01);

    // the long forms, and a mixed pair
    const run_result l = run(base_args(64) + " --cache-type-k bf16 --cache-type-v q4");
    ASSERT_EQ(l.rc, 0) << l.err;
    double l_bpt = 0;
    ASSERT_TRUE(parse_kv_line(l.err, fk, fv, l_bpt)) << l.err;
    EXPECT_EQ(fk + "/" + fv, "bf16/q4");
    EXPECT_LT(l_bpt, f16_bytes);  // q4 values are smaller than f16 ones
}

TEST_F(perplexity_tool, bad_arguments) {
    struct bad_case {
        std::string args;
        int rc;
        const char* expect;
    };
    const std::vector<bad_case> cases = {
        {"", 2, "no model"},
        {"-m '" + k_model + "'", 2, "no text"},
        {"--frobnicate", 2, "unknown argument"},
        {"-m x -f y -c abc", 2, "-c wants an integer"},
        {"-m x -f y -c 2", 2, "-c wants an integer"},
        {"-m x -f y -t", 2, "-t needs a value"},
        {"-m x -f y --save-base", 2, "--save-base needs --kl-base"},
        {"-m x -f y --backend tpu", 2, "unknown backend"},
        {"-m x -f y -ctk q8_0", 2, "-ctk: unknown KV cache type 'q8_0' (f16, bf16, q8, q4)"},
        {"-m x -f y --cache-type-v F16", 2, "--cache-type-v: unknown KV cache type 'F16'"},
        {"-m x -f y -ctv", 2, "-ctv needs a value"},
        {"-m '" + dir + "/missing.gguf' -f '" + text_path + "'", 1, "missing.gguf"},
        {"-m '" + k_model + "' -f '" + dir + "/missing.txt'", 1, "missing.txt"},
        {"-m '" + k_model + "' -f '" + text_path + "' -c 512", 1, "needs at least 1024"},
        {"-m '" + k_model + "' -f '" + text_path + "' --kl-base '" + dir + "/none.kld'", 1, "cannot open"},
    };
    for (const bad_case& c : cases) {
        const run_result r = run(c.args);
        EXPECT_EQ(r.rc, c.rc) << c.args << "\n" << r.err;
        EXPECT_NE(r.err.find(c.expect), std::string::npos) << c.args << ": " << r.err;
        EXPECT_EQ(r.out.find("PPL ="), std::string::npos) << c.args;
    }
    const run_result h = run("--help");
    EXPECT_EQ(h.rc, 0);
    EXPECT_NE(h.out.find("usage: tfusion-perplexity"), std::string::npos);
}

}  // namespace
