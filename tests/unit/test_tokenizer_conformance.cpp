// Tokenizer conformance against llama.cpp's test vectors in ../shared/vocab: every case of every vocabulary must
// tokenize (no BOS/EOS, special tokens as plain text) to the expected ids, and decode back to its input.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "format/gguf.h"
#include "tokenizer/vocab.h"

namespace {

std::string read_all(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// The .inp file is the cases joined by "\n__ggml_vocab_test__\n", with one more separator at the end.
std::vector<std::string> split_cases(const std::string& s) {
    const std::string sep = "\n__ggml_vocab_test__\n";
    std::vector<std::string> out;
    size_t pos = 0;
    for (;;) {
        const size_t hit = s.find(sep, pos);
        if (hit == std::string::npos) break;
        out.push_back(s.substr(pos, hit - pos));
        pos = hit + sep.size();
    }
    EXPECT_EQ(pos, s.size()) << "text after the last separator";
    return out;
}

std::vector<std::vector<int32_t>> read_expected(const std::string& path) {
    std::ifstream f(path);
    std::vector<std::vector<int32_t>> out;
    std::string line;
    while (std::getline(f, line)) {
        std::istringstream ls(line);
        std::vector<int32_t> ids;
        int64_t id;
        while (ls >> id) ids.push_back(int32_t(id));
        out.push_back(ids);
    }
    return out;
}

std::string show(const std::vector<int32_t>& ids) {
    std::string s;
    for (int32_t id : ids) s += " " + std::to_string(id);
    return s;
}

class conformance : public ::testing::TestWithParam<const char*> {};

TEST_P(conformance, matches_llama_cpp) {
    const std::string base = std::string(TFU_SHARED_DIR) + "/vocab/ggml-vocab-" + GetParam() + ".gguf";
    const auto file = tfu::gguf::file::open(base);
    const auto voc = tfu::vocab::from_gguf(*file);
    const auto cases = split_cases(read_all(base + ".inp"));
    const auto expected = read_expected(base + ".out");
    ASSERT_EQ(cases.size(), expected.size());
    size_t n_pass = 0, n_roundtrip = 0;
    for (size_t i = 0; i < cases.size(); ++i) {
        const auto ids = voc->tokenize(cases[i], false, false);
        EXPECT_EQ(ids, expected[i]) << GetParam() << " case " << i << ": '" << cases[i] << "'\n got:     " << show(ids)
                                    << "\n expected:" << show(expected[i]);
        n_pass += ids == expected[i];
        const std::string back = voc->detokenize(expected[i], false);
        EXPECT_EQ(back, cases[i]) << GetParam() << " case " << i << " does not decode back";
        n_roundtrip += back == cases[i];
    }
    std::printf("[ vocab    ] %-15s pre=%-15s tokenize %zu/%zu, round trip %zu/%zu\n", GetParam(), voc->pre_name().c_str(),
                n_pass, cases.size(), n_roundtrip, cases.size());
}

INSTANTIATE_TEST_SUITE_P(vocab, conformance,
                         ::testing::Values("llama-spm", "phi-3", "llama-bpe", "gpt-2", "falcon", "starcoder",
                                           "deepseek-coder", "mpt", "refact"),
                         [](const ::testing::TestParamInfo<const char*>& p) {
                             std::string n = p.param;
                             for (char& c : n)
                                 if (c == '-') c = '_';
                             return n;
                         });

}  // namespace
