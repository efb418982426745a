// Chat-template renderer: every case of shared/chat-templates byte for byte, plus Jinja language features
// (expected strings computed with Jinja2 3.1 configured as transformers does).
#include <gtest/gtest.h>

#include <cstdio>
#include <dirent.h>
#include <fstream>
#include <sstream>

#include "chat/chat_template.h"
#include "core/error.h"
#include "core/json.h"

using tfu::chat::message;
using tfu::chat::render;
using tfu::chat::render_options;

namespace {

std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// 2026-01-02 12:00 local time, as the cases were rendered with.
std::time_t fixed_now() {
    std::tm tm{};
    tm.tm_year = 2026 - 1900;
    tm.tm_mon = 0;
    tm.tm_mday = 2;
    tm.tm_hour = 12;
    tm.tm_isdst = -1;
    return std::mktime(&tm);
}

std::vector<message> two_messages() { return {{"user", "hi"}, {"assistant", "yo"}}; }

// Renders with two messages (user "hi", assistant "yo"); on error returns "ERR " + message.
std::string r(const std::string& src, bool add_generation_prompt = false) {
    render_options o;
    o.add_generation_prompt = add_generation_prompt;
    o.bos_token = "<s>";
    o.eos_token = "</s>";
    o.now = fixed_now();
    try {
        return render(src, two_messages(), o);
    } catch (const tfu::error& e) {
        EXPECT_EQ(e.status(), TFU_STATUS_TEMPLATE_ERROR);
        return std::string("ERR ") + e.what();
    }
}

}  // namespace

TEST(chat_template, shared_conformance_cases) {
    const std::string dir = std::string(TFU_SHARED_DIR) + "/chat-templates";
    std::vector<std::string> files;
    if (DIR* d = opendir(dir.c_str())) {
        while (dirent* e = readdir(d)) {
            std::string n = e->d_name;
            if (n.size() > 11 && n.compare(n.size() - 11, 11, ".cases.json") == 0) files.push_back(n);
        }
        closedir(d);
    }
    std::sort(files.begin(), files.end());
    ASSERT_GE(files.size(), 8u) << "no cases found in " << dir;
    size_t total = 0, passed_total = 0;
    for (const std::string& file : files) {
        tfu::json::value cases = tfu::json::parse(read_file(dir + "/" + file));
        std::string tmpl = read_file(dir + "/" + cases.at("template").as_string());
        ASSERT_FALSE(tmpl.empty()) << file;
        size_t passed = 0, n = 0;
        for (const tfu::json::value& c : cases.at("cases").as_array()) {
            ++n;
            std::vector<message> msgs;
            for (const tfu::json::value& m : c.at("messages").as_array())
                msgs.push_back({m.at("role").as_string(), m.at("content").as_string()});
            render_options o;
            o.add_generation_prompt = c.at("add_generation_prompt").as_bool();
            o.bos_token = c.at("variables").at("bos_token").as_string();
            o.eos_token = c.at("variables").at("eos_token").as_string();
            o.now = fixed_now();
            std::string got, err;
            try {
                got = render(tmpl, msgs, o);
            } catch (const tfu::error& e) {
                EXPECT_EQ(e.status(), TFU_STATUS_TEMPLATE_ERROR);
                err = e.what();
            }
            if (const tfu::json::value* want = c.find("expected")) {
                EXPECT_EQ(err, "") << file << " case " << n;
                EXPECT_EQ(got, want->as_string()) << file << " case " << n;
                passed += err.empty() && got == want->as_string();
            } else {
                const std::string& want_err = c.at("error").as_string();
                EXPECT_EQ(err, want_err) << file << " case " << n;
                passed += err == want_err;
            }
        }
        std::printf("%-55s %zu/%zu passed\n", file.c_str(), passed, n);
        total += n;
        passed_total += passed;
    }
    std::printf("all templates: %zu/%zu passed\n", passed_total, total);
}

TEST(chat_template, smoke) { EXPECT_EQ(r("{{ messages[0].content }}"), "hi"); }
