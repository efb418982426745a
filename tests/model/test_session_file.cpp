// Session files (session::save / load, tfu_session_save / tfu_session_load): a loaded session continues exactly
// like the one that was saved, for every KV format and with a sliding window; truncated, corrupted and mismatched
// files are refused with a status and leave the session as it was.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <random>

#include "core/error.h"
#include "model/stories_fixture.h"
#include "runtime/engine.h"
#include "runtime/model.h"
#include "runtime/session.h"

namespace {

const std::string& k_model = tfu::test::k_stories;

std::string temp_path(const std::string& name) {
    return "/tmp/tfu_session_file_" + std::to_string(getpid()) + "_" + name;
}

std::vector<uint8_t> read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

struct file_fixture : tfu::test::stories_fixture {
    tfu_session_params params(tfu_kv_type k, tfu_kv_type v) const {
        tfu_session_params sp = tfu_session_params_default();
        sp.n_ctx = 256;
        sp.kv_type_k = k;
        sp.kv_type_v = v;
        sp.sampler.temperature = 0.9f;
        sp.sampler.repeat_penalty = 1.1f;
        sp.sampler.seed = 99;
        return sp;
    }
    // Samples n tokens one at a time (sample, then evaluate it).
    static std::vector<int32_t> continue_for(tfu::session& s, int n) {
        std::vector<int32_t> out;
        for (int i = 0; i < n; ++i) {
            out.push_back(s.sample());
            s.eval();
        }
        return out;
    }
    static tfu_status status_of(const std::function<void()>& f) {
        try {
            f();
        } catch (const tfu::error& e) {
            return e.status();
        }
        return TFU_STATUS_OK;
    }
};

TEST_F(file_fixture, loaded_session_continues_exactly) {
    const std::pair<tfu_kv_type, tfu_kv_type> pairs[] = {
        {TFU_KV_F16, TFU_KV_F16}, {TFU_KV_BF16, TFU_KV_BF16}, {TFU_KV_Q8, TFU_KV_Q8}, {TFU_KV_Q8, TFU_KV_Q4},
        {TFU_KV_Q4, TFU_KV_Q4}};
    const std::string path = temp_path("roundtrip.tfs");
    for (const auto& [k, v] : pairs) {
        SCOPED_TRACE(std::to_string(k) + "/" + std::to_string(v));
        tfu::session a(*mdl, params(k, v));
        a.add_text("Once upon a time, there was a little girl named Lily. She", true);
        continue_for(a, 70);  // past two 32-token blocks: q4 keys have quantized blocks and the f16 tail
        a.add_text(" The end.", false);  // pending input is saved too
        a.save(path);
        const std::vector<int32_t> want = continue_for(a, 30);

        tfu::session b(*mdl, params(k, v));
        b.add_text("something else entirely", true);
        b.eval();
        b.load(path);
        const std::vector<int32_t> got = continue_for(b, 30);
        EXPECT_EQ(got, want);
        EXPECT_EQ(b.tokens(), a.tokens());
        EXPECT_EQ(b.logits(), a.logits());
        tfu_session_stats sa{}, sb{};
        a.stats(&sa);
        b.stats(&sb);
        EXPECT_EQ(sa.kv_bytes, sb.kv_bytes);
        EXPECT_EQ(sa.n_generated, sb.n_generated);
    }
    std::remove(path.c_str());
}

TEST_F(file_fixture, sliding_window_state_round_trips) {
    tfu_session_params sp = params(TFU_KV_Q8, TFU_KV_Q4);
    sp.n_ctx = 160;
    sp.kv_policy = TFU_KV_POLICY_SLIDING_WINDOW;
    tfu::session a(*mdl, sp);
    a.add_text("Once upon a time", true);
    continue_for(a, 250);
    tfu_session_stats st{};
    a.stats(&st);
    ASSERT_GT(st.n_evictions, 0u);
    const std::string path = temp_path("window.tfs");
    a.save(path);
    const std::vector<int32_t> want = continue_for(a, 60);
    tfu::session b(*mdl, sp);
    b.load(path);
    EXPECT_EQ(continue_for(b, 60), want);
    std::remove(path.c_str());
}

TEST_F(file_fixture, damaged_files_are_refused_and_change_nothing) {
    const std::string path = temp_path("good.tfs"), bad = temp_path("bad.tfs");
    {
        tfu::session a(*mdl, params(TFU_KV_Q4, TFU_KV_Q8));
        a.add_text("Once upon a time, there was a dog.", true);
        continue_for(a, 40);
        a.save(path);
    }
    const std::vector<uint8_t> good = read_file(path);
    ASSERT_GT(good.size(), 1000u);

    tfu::session s(*mdl, params(TFU_KV_Q4, TFU_KV_Q8));
    s.add_text("The cat sat", true);
    s.eval();
    const std::vector<int32_t> tokens0 = s.tokens();
    const std::vector<float> logits0 = s.logits();
    auto unchanged = [&] { return s.tokens() == tokens0 && s.logits() == logits0; };

    // Every prefix length near the start (magic, version, header), then a stride through the rest.
    int n_tried = 0;
    for (size_t len = 0; len < good.size(); len += len < 300 ? 1 : 53) {
        write_file(bad, std::vector<uint8_t>(good.begin(), good.begin() + long(len)));
        EXPECT_EQ(status_of([&] { s.load(bad); }), TFU_STATUS_INVALID_FILE) << "prefix of " << len << " bytes";
        ++n_tried;
    }
    ASSERT_TRUE(unchanged());
    // Random single-byte flips anywhere: never accepted; the checksum catches those that pass the header checks.
    std::mt19937_64 rng(4242);
    int n_checksum = 0;
    for (int i = 0; i < 400; ++i) {
        std::vector<uint8_t> b = good;
        const size_t at = rng() % b.size();
        b[at] ^= uint8_t(1 + rng() % 255);
        write_file(bad, b);
        std::string msg;
        tfu_status st = TFU_STATUS_OK;
        try {
            s.load(bad);
        } catch (const tfu::error& e) {
            st = e.status();
            msg = e.what();
        }
        EXPECT_NE(st, TFU_STATUS_OK) << "a file with byte " << at << " flipped was accepted";
        n_checksum += msg.find("checksum") != std::string::npos ? 1 : 0;
    }
    std::printf("%d truncations refused; 400 byte flips refused, %d of them by the checksum\n", n_tried, n_checksum);
    EXPECT_GT(n_checksum, 300);
    EXPECT_TRUE(unchanged());
    // Extra bytes at the end.
    std::vector<uint8_t> longer = good;
    longer.push_back(0);
    write_file(bad, longer);
    EXPECT_EQ(status_of([&] { s.load(bad); }), TFU_STATUS_INVALID_FILE);
    // Not found; not a session file.
    EXPECT_EQ(status_of([&] { s.load(temp_path("missing.tfs")); }), TFU_STATUS_NOT_FOUND);
    EXPECT_EQ(status_of([&] { s.load(k_model); }), TFU_STATUS_INVALID_FILE);
    EXPECT_TRUE(unchanged());
    // The good file still loads into it.
    EXPECT_EQ(status_of([&] { s.load(path); }), TFU_STATUS_OK);
    std::remove(path.c_str());
    std::remove(bad.c_str());
}

TEST_F(file_fixture, mismatched_sessions_are_refused) {
    const std::string path = temp_path("mismatch.tfs");
    {
        tfu::session a(*mdl, params(TFU_KV_Q8, TFU_KV_Q4));
        a.add_text("Once upon a time", true);
        continue_for(a, 60);
        a.save(path);
    }
    {
        tfu::session other_formats(*mdl, params(TFU_KV_F16, TFU_KV_F16));
        try {
            other_formats.load(path);
            ADD_FAILURE() << "loaded into a session with other KV formats";
        } catch (const tfu::error& e) {
            EXPECT_EQ(e.status(), TFU_STATUS_INVALID_ARGUMENT);
            EXPECT_NE(std::string(e.what()).find("K q8 V q4"), std::string::npos) << e.what();
        }
    }
    {
        tfu_session_params sp = params(TFU_KV_Q8, TFU_KV_Q4);
        sp.n_ctx = 32;
        tfu::session small(*mdl, sp);
        EXPECT_EQ(status_of([&] { small.load(path); }), TFU_STATUS_CONTEXT_FULL);
    }
    {
        // The same model with one weight byte changed is another model.
        std::vector<uint8_t> bytes = read_file(k_model);
        const tfu::gguf::tensor_info* t = mdl->file->find_tensor("output_norm.weight");
        ASSERT_NE(t, nullptr);
        bytes[mdl->file->data_offset() + t->offset] ^= 1;
        const std::string other_model = temp_path("other.gguf");
        write_file(other_model, bytes);
        tfu::model m2(*eng, other_model, tfu_model_params_default());
        tfu::session s2(m2, params(TFU_KV_Q8, TFU_KV_Q4));
        try {
            s2.load(path);
            ADD_FAILURE() << "loaded a session of another model";
        } catch (const tfu::error& e) {
            EXPECT_EQ(e.status(), TFU_STATUS_INVALID_ARGUMENT);
            EXPECT_NE(std::string(e.what()).find("another model"), std::string::npos) << e.what();
        }
        std::remove(other_model.c_str());
    }
    {
        tfu::session a(*mdl, params(TFU_KV_Q8, TFU_KV_Q4));
        EXPECT_EQ(status_of([&] { a.save("/nonexistent-dir/x.tfs"); }), TFU_STATUS_IO_ERROR);
    }
    std::remove(path.c_str());
}

}  // namespace
