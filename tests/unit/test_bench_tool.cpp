// tfusion-bench end to end: the built executable on stories260K twice (-p 16,32 -n 8 -d 0,64 -r 2) writes JSON
// with one object per (model, test), every one with positive t/s and its samples; bad arguments fail with a
// message. The tool sits next to this test's build dir; the test is skipped, visibly, when it was not built.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "core/json.h"
#include "tool_runner.h"

namespace {

const std::string k_stories = std::string(TFU_SHARED_DIR) + "/models/stories260K.gguf";

std::string tool_path() { return tfu::test::built_tool("bench/tfusion-bench"); }
using tfu::test::file_exists;
using run_result = tfu::test::tool_result;
run_result run_tool(const std::string& args, bool with_stderr = true) {
    return tfu::test::run_tool(tool_path(), args, with_stderr);
}

class BenchTool : public ::testing::Test {
protected:
    void SetUp() override {
        if (!file_exists(tool_path())) GTEST_SKIP() << "tfusion-bench not built at " << tool_path();
        if (!file_exists(k_stories)) GTEST_SKIP() << "missing " << k_stories;
    }
};

TEST_F(BenchTool, TwoModelsDepthsJson) {
    const std::string json_path = ::testing::TempDir() + "/bench_" + std::to_string(::getpid()) + ".json";
    const run_result r = run_tool("-m " + k_stories + " -m " + k_stories +
                                  " -p 16,32 -n 8 -d 0,64 -r 2 -t 1,2 --json " + json_path);
    ASSERT_EQ(r.rc, 0) << r.out;
    std::printf("%s", r.out.c_str());
    // The table names every test like llama-bench.
    for (const char* name : {"pp16 ", "pp32 ", "pp16 @ d64", "pp32 @ d64", "tg8 ", "tg8 @ d64"})
        EXPECT_NE(r.out.find(name), std::string::npos) << name;

    std::ifstream f(json_path);
    ASSERT_TRUE(f) << json_path;
    std::stringstream ss;
    ss << f.rdbuf();
    const tfu::json::value j = tfu::json::parse(ss.str());
    ASSERT_TRUE(j.is_array());
    // 2 models x 2 thread counts x (2 prompt sizes + 1 decode size) x 2 depths.
    ASSERT_EQ(j.size(), 2u * 2u * 3u * 2u);
    std::set<std::string> seen;
    for (size_t i = 0; i < j.size(); ++i) {
        const tfu::json::value& t = j[i];
        const std::string test = t.at("test").as_string();
        SCOPED_TRACE(test);
        seen.insert(test + " t" + std::to_string(t.at("n_threads").as_int()));
        EXPECT_EQ(t.at("model_file").as_string(), k_stories);
        EXPECT_FALSE(t.at("model_type").as_string().empty());
        EXPECT_FALSE(t.at("backend").as_string().empty());
        EXPECT_GT(t.at("model_size").as_int(), 0);
        EXPECT_GT(t.at("model_n_params").as_int(), 0);
        const int64_t threads = t.at("n_threads").as_int();
        EXPECT_TRUE(threads == 1 || threads == 2);
        const int64_t depth = t.at("n_depth").as_int();
        EXPECT_TRUE(depth == 0 || depth == 64);
        // The context was sized automatically: deepest fill + longest test + margin.
        EXPECT_GE(t.at("n_ctx").as_int(), 64 + 32);
        EXPECT_EQ(t.at("repetitions").as_int(), 2);
        EXPECT_GT(t.at("avg_ts").as_double(), 0.0);
        EXPECT_GE(t.at("stddev_ts").as_double(), 0.0);
        ASSERT_EQ(t.at("samples_ts").size(), 2u);
        ASSERT_EQ(t.at("samples_ms").size(), 2u);
        double sum = 0;
        for (size_t k = 0; k < 2; ++k) {
            const double ts = t.at("samples_ts")[k].as_double(), ms = t.at("samples_ms")[k].as_double();
            EXPECT_GT(ts, 0.0);
            EXPECT_GT(ms, 0.0);
            sum += ts;
        }
        EXPECT_NEAR(t.at("avg_ts").as_double(), sum / 2, 1e-9 * sum);
        const bool pp = test.rfind("pp", 0) == 0;
        const int64_t n = pp ? t.at("n_prompt").as_int() : t.at("n_gen").as_int();
        // t/s = tokens / time of each sample (relative 1e-6: printed with 17 digits).
        const double ts0 = t.at("samples_ts")[0].as_double(), ms0 = t.at("samples_ms")[0].as_double();
        EXPECT_NEAR(ts0, 1000.0 * double(n) / ms0, 1e-6 * ts0);
        if (pp) {
            ASSERT_EQ(t.at("ttft_samples_ms").size(), 2u);
            EXPECT_GE(t.at("ttft_samples_ms")[0].as_double(), ms0);  // prefill + sampling the first token
        } else {
            EXPECT_TRUE(t.at("ttft_avg_ms").is_null());
        }
        EXPECT_GT(t.at("peak_rss_bytes").as_int(), 0);
    }
    EXPECT_EQ(seen.size(), 12u);  // each test once per thread count (per model)
    std::remove(json_path.c_str());
}

TEST_F(BenchTool, JsonToStdout) {
    const run_result r = run_tool("-m " + k_stories + " -p 8 -n 4 -r 1 --no-warmup --json -", false);
    ASSERT_EQ(r.rc, 0) << r.out;
    const tfu::json::value j = tfu::json::parse(r.out);  // stdout holds only the JSON (the table went to stderr)
    ASSERT_EQ(j.size(), 2u);
    EXPECT_EQ(j[0].at("test").as_string(), "pp8");
    EXPECT_EQ(j[1].at("test").as_string(), "tg4");
    EXPECT_GT(j[1].at("avg_ts").as_double(), 0.0);
}

// -ctk/-ctv comma lists run every K x V pair (K outer), shown in the table's type_k/type_v columns and the JSON;
// the formats reach the engine: a q8 key cache holds fewer bytes than an f16 one for the same test.
TEST_F(BenchTool, CacheTypeLists) {
    const std::string json_path = ::testing::TempDir() + "/bench_kv_" + std::to_string(::getpid()) + ".json";
    const run_result r =
        run_tool("-m " + k_stories + " -p 40 -n 4 -r 1 --no-warmup -ctk f16,q8 -ctv q4 --json " + json_path);
    ASSERT_EQ(r.rc, 0) << r.out;
    std::printf("%s", r.out.c_str());
    EXPECT_NE(r.out.find("| type_k | type_v |"), std::string::npos);
    EXPECT_NE(r.out.find("| f16    | q4     | pp40"), std::string::npos);
    EXPECT_NE(r.out.find("| q8     | q4     | tg4"), std::string::npos);
    std::ifstream f(json_path);
    ASSERT_TRUE(f) << json_path;
    std::stringstream ss;
    ss << f.rdbuf();
    const tfu::json::value j = tfu::json::parse(ss.str());
    ASSERT_EQ(j.size(), 4u);  // 2 K types x 1 V type x (pp40, tg4)
    const char* want_k[] = {"f16", "f16", "q8", "q8"};
    const char* want_test[] = {"pp40", "tg4", "pp40", "tg4"};
    for (size_t i = 0; i < 4; ++i) {
        SCOPED_TRACE(i);
        EXPECT_EQ(j[i].at("type_k").as_string(), want_k[i]);
        EXPECT_EQ(j[i].at("type_v").as_string(), "q4");
        EXPECT_EQ(j[i].at("test").as_string(), want_test[i]);
        EXPECT_GT(j[i].at("kv_bytes").as_int(), 0);
        EXPECT_GT(j[i].at("kv_bytes_per_token").as_double(), 0.0);
    }
    // pp40 leaves 41 tokens (BOS + 40) in the cache in both: same blocks, smaller K parts with q8.
    EXPECT_EQ(j[0].at("kv_n_past").as_int(), j[2].at("kv_n_past").as_int());
    EXPECT_LT(j[2].at("kv_bytes").as_int(), j[0].at("kv_bytes").as_int());
    std::remove(json_path.c_str());

    // long forms
    const run_result l = run_tool("-m " + k_stories + " -p 8 -n 0 -r 1 --no-warmup --cache-type-k bf16 "
                                  "--cache-type-v q8 --json -", false);
    ASSERT_EQ(l.rc, 0) << l.out;
    const tfu::json::value lj = tfu::json::parse(l.out);
    ASSERT_EQ(lj.size(), 1u);
    EXPECT_EQ(lj[0].at("type_k").as_string(), "bf16");
    EXPECT_EQ(lj[0].at("type_v").as_string(), "q8");
}

// --sessions 2: the tg test decodes two sessions with one tfu_session_decode_batch per step; the row is named
// 'tg8 x2', its t/s is the aggregate (2 x 8 tokens / time); the pp test stays one session.
TEST_F(BenchTool, BatchedSessions) {
    const run_result r = run_tool("-m " + k_stories + " -p 8 -n 8 -r 2 -t 1 --sessions 2 --json -", false);
    ASSERT_EQ(r.rc, 0) << r.out;
    const tfu::json::value j = tfu::json::parse(r.out);
    ASSERT_EQ(j.size(), 2u);
    EXPECT_EQ(j[0].at("test").as_string(), "pp8");
    EXPECT_EQ(j[0].at("n_sessions").as_int(), 1);
    const tfu::json::value& tg = j[1];
    EXPECT_EQ(tg.at("test").as_string(), "tg8 x2");
    EXPECT_EQ(tg.at("n_sessions").as_int(), 2);
    EXPECT_EQ(tg.at("n_gen").as_int(), 8);
    ASSERT_EQ(tg.at("samples_ts").size(), 2u);
    for (size_t k = 0; k < 2; ++k) {
        const double ts = tg.at("samples_ts")[k].as_double(), ms = tg.at("samples_ms")[k].as_double();
        EXPECT_GT(ms, 0.0);
        EXPECT_NEAR(ts, 1000.0 * 2 * 8 / ms, 1e-6 * ts) << "aggregate tokens/s of both sessions";
    }
    // 8 steps evaluate each session's first token and its 7 sampled ones, as with one session; the stats are
    // the first session's.
    EXPECT_EQ(tg.at("kv_n_past").as_int(), 8);
    const run_result table = run_tool("-m " + k_stories + " -p 0 -n 4 -r 1 --no-warmup --sessions 2");
    ASSERT_EQ(table.rc, 0) << table.out;
    EXPECT_NE(table.out.find("| tg4 x2 "), std::string::npos) << table.out;
}

// A depth on a backend without session files (Vulkan's contiguous device cache; CI runs it on lavapipe): every
// repetition prefills the depth again instead of loading a snapshot. Skips where no Vulkan device is usable.
TEST_F(BenchTool, DepthWithoutSessionFiles) {
    const run_result probe = run_tool("-m " + k_stories + " --backend vulkan -p 0 -n 1 -r 1 --no-warmup");
    if (probe.rc != 0 && probe.out.find("TFU_STATUS_BACKEND_UNAVAILABLE") != std::string::npos)
        GTEST_SKIP() << "no Vulkan device: " << probe.out;
    const run_result r = run_tool("-m " + k_stories + " --backend vulkan -p 0 -n 4 -d 16 -r 2 --no-warmup --json -", false);
    ASSERT_EQ(r.rc, 0) << r.out;
    const tfu::json::value j = tfu::json::parse(r.out);
    ASSERT_EQ(j.size(), 1u);
    EXPECT_EQ(j[0].at("test").as_string(), "tg4 @ d16");
    EXPECT_EQ(j[0].at("samples_ts").size(), 2u);
    EXPECT_EQ(j[0].at("kv_n_past").as_int(), 16 + 4);
}

TEST_F(BenchTool, BadArgumentsFailWithMessage) {
    struct bad_case {
        std::string args, message;
    };
    const bad_case cases[] = {
        {"", "-m MODEL is required"},
        {"-m /nonexistent/model.gguf", "/nonexistent/model.gguf"},
        {"-m " + k_stories + " -p 16,abc", "'abc' is not an integer"},
        {"-m " + k_stories + " -n -3", "-n: '-3'"},
        {"-m " + k_stories + " -d 0,,64", "-d: '' is not an integer"},
        {"-m " + k_stories + " -r 0", "-r: '0'"},
        {"-m " + k_stories + " -t 1,x", "-t: 'x'"},
        {"-m " + k_stories + " --backend gpu", "unknown backend 'gpu'"},
        {"-m " + k_stories + " -ctk q8_0", "-ctk: unknown KV cache type 'q8_0' (f16, bf16, q8, q4"},
        {"-m " + k_stories + " -ctv f16,,q4", "-ctv: unknown KV cache type ''"},
        {"-m " + k_stories + " --cache-type-k Q8", "--cache-type-k: unknown KV cache type 'Q8'"},
        {"-m " + k_stories + " -ctv", "missing value for -ctv"},
        {"-m " + k_stories + " --frobnicate 1", "unknown option '--frobnicate'"},
        {"-m " + k_stories + " -p", "missing value for -p"},
        {"-m " + k_stories + " -p 0 -n 0", "nothing to run"},
        // stories260K's metadata says a 2048-token training context: depth 4096 cannot fit.
        {"-m " + k_stories + " -p 16 -n 8 -d 4096", "exceeds the model's training context"},
        {"-m " + std::string(TFU_SHARED_DIR) + "/models/README.md", "not a GGUF file"},
        {"-m " + k_stories + " -p 8 -n 0 --json /nonexistent/dir/out.json", "cannot write '/nonexistent/dir/out.json'"},
        {"-m " + k_stories + " --sessions 0", "--sessions: '0' is not an integer in [1, 64]"},
        {"-m " + k_stories + " --sessions 65", "--sessions: '65'"},
        {"-m " + k_stories + " --sessions 2,3", "--sessions takes one value"},
    };
    for (const bad_case& c : cases) {
        const run_result r = run_tool("-r 1 " + c.args);
        SCOPED_TRACE(c.args);
        EXPECT_NE(r.rc, 0) << r.out;
        EXPECT_NE(r.out.find(c.message), std::string::npos) << r.out;
    }
}

}  // namespace
