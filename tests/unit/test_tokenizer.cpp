// Tokenizer behaviour beyond the conformance vectors: UTF-8 helpers, streaming detokenization that never splits
// a character, invalid UTF-8 input, special-token parsing, BOS/EOS flags, end-of-generation ids, metadata
// refusals, stories260K's vocabulary and a large input.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <map>
#include <random>

#include "core/error.h"
#include "format/gguf.h"
#include "core/utf8.h"
#include "tokenizer/vocab.h"

namespace {

using tfu::vocab;

struct loaded {
    std::unique_ptr<tfu::gguf::file> file;
    std::unique_ptr<vocab> voc;
};

const vocab& load(const std::string& rel) {
    static std::map<std::string, loaded> cache;
    auto it = cache.find(rel);
    if (it == cache.end()) {
        loaded l;
        l.file = tfu::gguf::file::open(std::string(TFU_SHARED_DIR) + "/" + rel);
        l.voc = vocab::from_gguf(*l.file);
        it = cache.emplace(rel, std::move(l)).first;
    }
    return *it->second.voc;
}
const vocab& spm() { return load("vocab/ggml-vocab-llama-spm.gguf"); }
const vocab& bpe() { return load("vocab/ggml-vocab-llama-bpe.gguf"); }

// Random text mixing ASCII, 2-, 3- and 4-byte characters (emoji and rare CJK force byte tokens).
std::string random_text(std::mt19937& rng, size_t n_chars) {
    static const uint32_t pool[] = {'a', 'Z', ' ', ' ', '\n', '7', '.', 0xE9, 0x439, 0x5D0, 0x20AC, 0x4E2D, 0x3042, 0xD55C,
                                    0x9F98, 0x2581, 0x1F600, 0x1F999, 0x1F680, 0x10348, 0x2F800};
    std::uniform_int_distribution<size_t> pick(0, sizeof(pool) / sizeof(pool[0]) - 1);
    std::string s;
    for (size_t i = 0; i < n_chars; ++i) tfu::utf8_append(s, pool[pick(rng)]);
    return s;
}

TEST(utf8, validity) {
    EXPECT_TRUE(tfu::utf8_valid(""));
    EXPECT_TRUE(tfu::utf8_valid("plain ascii"));
    EXPECT_TRUE(tfu::utf8_valid("\xC3\xA9\xE2\x82\xAC\xF0\x9F\xA6\x99"));  // é € 🦙
    EXPECT_TRUE(tfu::utf8_valid("\xF4\x8F\xBF\xBF"));                      // U+10FFFF
    EXPECT_FALSE(tfu::utf8_valid("\xC0\x80"));                             // overlong NUL
    EXPECT_FALSE(tfu::utf8_valid("\xE0\x80\xAF"));                         // overlong '/'
    EXPECT_FALSE(tfu::utf8_valid("\xED\xA0\x80"));                         // surrogate U+D800
    EXPECT_FALSE(tfu::utf8_valid("\xF4\x90\x80\x80"));                     // > U+10FFFF
    EXPECT_FALSE(tfu::utf8_valid("\x80"));                                 // lone continuation
    EXPECT_FALSE(tfu::utf8_valid("\xE2\x82"));                             // truncated
    EXPECT_FALSE(tfu::utf8_valid("\xFF"));
    const tfu::utf8_cpt c = tfu::utf8_decode("\xF0\x9F\xA6\x99", 0);
    EXPECT_TRUE(c.valid);
    EXPECT_EQ(c.cp, 0x1F999u);
    EXPECT_EQ(c.len, 4u);
}

TEST(utf8, complete_prefix) {
    EXPECT_EQ(tfu::utf8_complete_prefix("ab"), 2u);
    EXPECT_EQ(tfu::utf8_complete_prefix("a\xE2\x82"), 1u);      // € missing its last byte
    EXPECT_EQ(tfu::utf8_complete_prefix("a\xE2"), 1u);
    EXPECT_EQ(tfu::utf8_complete_prefix("a\xE2\x82\xAC"), 4u);
    EXPECT_EQ(tfu::utf8_complete_prefix("a\xF0\x9F\xA6"), 1u);
    EXPECT_EQ(tfu::utf8_complete_prefix("a\x80"), 2u);          // invalid: never completes, not held back
    EXPECT_EQ(tfu::utf8_complete_prefix("a\xE0\x80"), 3u);      // E0 80 cannot start a valid sequence
    EXPECT_EQ(tfu::utf8_sanitize("a\xFF" "b"), "a\xEF\xBF\xBD" "b");
}

TEST(tokenizer, stories260k) {
    const vocab& v = load("models/stories260K.gguf");
    EXPECT_EQ(v.n_tokens(), 512);
    EXPECT_EQ(v.model_name(), "llama");
    EXPECT_EQ(v.tokenize("Once upon a time", true, false), (std::vector<int32_t>{1, 403, 407, 261, 378}));
    EXPECT_EQ(v.pad(), -1);  // stored as 4294967295
    EXPECT_EQ(v.detokenize({1, 403, 407, 261, 378}, false), "Once upon a time");
    EXPECT_EQ(v.detokenize({1, 403, 407, 261, 378}, true), "<s>Once upon a time");
}

TEST(tokenizer, bos_eos_flags) {
    EXPECT_TRUE(spm().add_bos());
    EXPECT_FALSE(spm().add_eos());
    EXPECT_TRUE(spm().add_space_prefix());
    EXPECT_EQ(spm().tokenize("Hello", true, false).front(), spm().bos());
    EXPECT_NE(spm().tokenize("Hello", false, false).front(), spm().bos());
    EXPECT_EQ(spm().tokenize("", true, false), std::vector<int32_t>{1});
    EXPECT_TRUE(spm().tokenize("", false, false).empty());

    EXPECT_TRUE(bpe().add_bos());  // Llama 3 pre-tokenizer
    EXPECT_EQ(bpe().bos(), 128000);
    EXPECT_EQ(bpe().tokenize("Hello", true, false).front(), 128000);
    EXPECT_FALSE(bpe().add_space_prefix());

    const vocab& g = load("vocab/ggml-vocab-gpt-2.gguf");
    EXPECT_FALSE(g.add_bos());
    EXPECT_EQ(g.tokenize("Hello", true, false), g.tokenize("Hello", false, false));
}

TEST(tokenizer, eog) {
    const vocab& phi = load("vocab/ggml-vocab-phi-3.gguf");
    EXPECT_EQ(phi.eos(), 32000);
    EXPECT_EQ(phi.eot(), 32007);  // <|end|>
    EXPECT_TRUE(phi.is_eog(32000));
    EXPECT_TRUE(phi.is_eog(32007));
    EXPECT_FALSE(phi.is_eog(1));
    EXPECT_EQ(bpe().eot(), bpe().tokenize("<|eot_id|>", false, true).at(0));
    EXPECT_TRUE(bpe().is_eog(bpe().eot()));
    EXPECT_TRUE(bpe().is_eog(128001));
    EXPECT_FALSE(bpe().is_eog(128000));
    EXPECT_TRUE(bpe().is_control(128000));
    EXPECT_FALSE(bpe().is_control(0));
}

TEST(tokenizer, parse_special) {
    const vocab& v = bpe();
    const auto with = v.tokenize("<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>", false, true);
    ASSERT_GE(with.size(), 5u);
    EXPECT_EQ(with.front(), 128006);
    EXPECT_EQ(with.back(), 128009);
    const auto without = v.tokenize("<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>", false, false);
    for (int32_t id : without) EXPECT_LT(id, 128000) << "special token matched without parse_special";
    EXPECT_EQ(v.detokenize(without, false), "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>");
    // Control tokens render only when asked.
    EXPECT_EQ(v.detokenize(with, false), "user\n\nhi");
    EXPECT_EQ(v.detokenize(with, true), "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>");

    // SPM: the text after a special token gets the space prefix again (as llama.cpp / SentencePiece).
    const vocab& phi = load("vocab/ggml-vocab-phi-3.gguf");
    const auto p = phi.tokenize("<|user|>Hi", false, true);
    ASSERT_FALSE(p.empty());
    EXPECT_EQ(p.front(), 32010);
    EXPECT_EQ(std::vector<int32_t>(p.begin() + 1, p.end()), phi.tokenize("Hi", false, false));
    EXPECT_NE(phi.tokenize("<|user|>Hi", false, false).front(), 32010);
}

TEST(tokenizer, streaming_never_splits_a_character) {
    const unsigned seed = std::random_device{}();
    std::printf("seed %u\n", seed);
    std::mt19937 rng(seed);
    for (const vocab* v : {&spm(), &bpe()}) {
        for (int iter = 0; iter < 50; ++iter) {
            const std::string text = random_text(rng, 1 + rng() % 60);
            const auto ids = v->tokenize(text, true, false);
            tfu::detokenizer d(*v, false);
            std::string streamed;
            for (int32_t id : ids) {
                const std::string piece = d.push(id);
                EXPECT_TRUE(tfu::utf8_valid(piece)) << "seed " << seed << " model " << v->model_name();
                streamed += piece;
            }
            streamed += d.flush();
            // SPM turns U+2581 in the input into a space on decoding: compare against that.
            std::string expect = text;
            if (v->model_name() == "llama") {
                for (size_t p; (p = expect.find("\xE2\x96\x81")) != std::string::npos;) expect.replace(p, 3, " ");
            }
            EXPECT_EQ(streamed, expect) << "seed " << seed << " model " << v->model_name();
            EXPECT_EQ(v->detokenize(ids, false), expect);
        }
    }
}

TEST(tokenizer, streaming_reset_and_flush) {
    const vocab& v = spm();
    const auto ids = v.tokenize("Hi there", false, false);  // "▁Hi" "▁there"
    tfu::detokenizer d(v, false);
    std::string s;
    for (int32_t id : ids) s += d.push(id);
    EXPECT_EQ(s, "Hi there");
    d.reset(false);  // continuing a text: the leading space is kept
    s.clear();
    for (int32_t id : ids) s += d.push(id);
    EXPECT_EQ(s, " Hi there");
    // A byte token that starts a 3-byte character is held back, and flushed as U+FFFD.
    d.reset(false);
    EXPECT_EQ(d.push(v.byte_token(0xE2)), "");
    EXPECT_EQ(d.push(v.byte_token(0x82)), "");
    EXPECT_EQ(d.flush(), "\xEF\xBF\xBD");
    EXPECT_EQ(d.push(v.byte_token(0xE2)), "");
    EXPECT_EQ(d.push(v.byte_token(0x82)), "");
    EXPECT_EQ(d.push(v.byte_token(0xAC)), "\xE2\x82\xAC");
}

TEST(tokenizer, invalid_utf8_does_not_crash) {
    const unsigned seed = std::random_device{}();
    std::printf("seed %u\n", seed);
    std::mt19937 rng(seed);
    std::vector<const vocab*> vocabs = {&spm(), &bpe(), &load("vocab/ggml-vocab-deepseek-coder.gguf"),
                                        &load("vocab/ggml-vocab-falcon.gguf"), &load("vocab/ggml-vocab-starcoder.gguf")};
    for (int iter = 0; iter < 200; ++iter) {
        std::string bytes(rng() % 40, '\0');
        for (char& c : bytes) c = char(rng() & 0xFF);
        for (const vocab* v : vocabs) {
            const auto ids = v->tokenize(bytes, true, iter % 2 == 0);
            for (int32_t id : ids) ASSERT_TRUE(id >= 0 && id < v->n_tokens());
            const std::string back = v->detokenize(ids, false);
            // Byte-level BPE (without user-defined tokens) is lossless on any bytes.
            for (int32_t id : ids) {
                ASSERT_TRUE(id >= 0 && id < v->n_tokens());
            }
            tfu::detokenizer d(*v, true);
            std::string s;
            for (int32_t id : ids) s += d.push(id);
            s += d.flush();
            EXPECT_TRUE(tfu::utf8_valid(s)) << "seed " << seed;
        }
    }
}

TEST(tokenizer, large_input) {
    const unsigned seed = 1234;
    std::mt19937 rng(seed);
    std::string text;
    while (text.size() < 100000) text += random_text(rng, 200) + " The quick brown fox, 12345 jumps!\n";
    std::string one_word(100000, 'a');  // a single pre-tokenizer word
    for (const vocab* v : {&spm(), &bpe()}) {
        for (const std::string* t : {&text, &one_word}) {
            const auto t0 = std::chrono::steady_clock::now();
            const auto ids = v->tokenize(*t, false, true);
            const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
            std::printf("%s: %zu bytes -> %zu tokens in %.1f ms\n", v->model_name().c_str(), t->size(), ids.size(), ms);
            EXPECT_GT(ids.size(), 0u);
        }
    }
}

// A minimal GGUF v3 writer for metadata-only files (refusal tests).
struct gguf_writer {
    std::string buf;
    uint64_t n_kv = 0;
    template <typename T>
    void raw(T v) { buf.append(reinterpret_cast<const char*>(&v), sizeof v); }
    void str(const std::string& s) {
        raw<uint64_t>(s.size());
        buf += s;
    }
    void kv_str(const std::string& k, const std::string& v) {
        str(k);
        raw<uint32_t>(8);
        str(v);
        ++n_kv;
    }
    void kv_u32(const std::string& k, uint32_t v) {
        str(k);
        raw<uint32_t>(4);
        raw<uint32_t>(v);
        ++n_kv;
    }
    void kv_strs(const std::string& k, const std::vector<std::string>& v) {
        str(k);
        raw<uint32_t>(9);
        raw<uint32_t>(8);
        raw<uint64_t>(v.size());
        for (const auto& s : v) str(s);
        ++n_kv;
    }
    std::string bytes() const {
        std::string h = "GGUF";
        uint32_t ver = 3;
        uint64_t nt = 0;
        h.append(reinterpret_cast<const char*>(&ver), 4);
        h.append(reinterpret_cast<const char*>(&nt), 8);
        h.append(reinterpret_cast<const char*>(&n_kv), 8);
        return h + buf;
    }
};

tfu_status load_status(const gguf_writer& w, std::string* msg) {
    const std::string b = w.bytes();
    try {
        auto f = tfu::gguf::file::from_memory(b.data(), b.size(), "test.gguf");
        vocab::from_gguf(*f);
    } catch (const tfu::error& e) {
        *msg = e.what();
        return e.status();
    }
    return TFU_STATUS_OK;
}

TEST(tokenizer, refusals) {
    std::string msg;
    {
        gguf_writer w;
        w.kv_str("tokenizer.ggml.model", "bert");
        w.kv_strs("tokenizer.ggml.tokens", {"a", "b"});
        EXPECT_EQ(load_status(w, &msg), TFU_STATUS_UNSUPPORTED);
        EXPECT_NE(msg.find("bert"), std::string::npos) << msg;
    }
    {
        gguf_writer w;
        w.kv_str("tokenizer.ggml.model", "gpt2");
        w.kv_str("tokenizer.ggml.pre", "no-such-pre");
        w.kv_strs("tokenizer.ggml.tokens", {"a", "b", "ab"});
        w.kv_strs("tokenizer.ggml.merges", {"a b"});
        EXPECT_EQ(load_status(w, &msg), TFU_STATUS_UNSUPPORTED);
        EXPECT_NE(msg.find("no-such-pre"), std::string::npos) << msg;
    }
    {
        gguf_writer w;
        w.kv_str("tokenizer.ggml.model", "llama");
        w.kv_strs("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>"});
        w.kv_u32("tokenizer.ggml.bos_token_id", 3);
        EXPECT_EQ(load_status(w, &msg), TFU_STATUS_INVALID_FILE);
        EXPECT_NE(msg.find("bos_token_id"), std::string::npos) << msg;
    }
    {
        gguf_writer w;
        w.kv_str("tokenizer.ggml.model", "gpt2");
        w.kv_strs("tokenizer.ggml.tokens", {"a", "b"});
        EXPECT_EQ(load_status(w, &msg), TFU_STATUS_INVALID_FILE);  // no merges
        EXPECT_NE(msg.find("merges"), std::string::npos) << msg;
    }
    {
        // A valid tiny BPE vocabulary: the merge applies, unknown bytes are dropped, out-of-range ids throw.
        gguf_writer w;
        w.kv_str("tokenizer.ggml.model", "gpt2");
        w.kv_str("tokenizer.ggml.pre", "gpt-2");
        w.kv_strs("tokenizer.ggml.tokens", {"a", "b", "ab"});
        w.kv_strs("tokenizer.ggml.merges", {"a b"});
        const std::string b = w.bytes();
        auto f = tfu::gguf::file::from_memory(b.data(), b.size(), "tiny.gguf");
        auto v = vocab::from_gguf(*f);
        EXPECT_EQ(v->tokenize("abba", true, false), (std::vector<int32_t>{2, 1, 0}));
        EXPECT_EQ(v->tokenize("ab c", false, false), (std::vector<int32_t>{2}));
        EXPECT_THROW(v->token_to_piece(3, false), tfu::error);
        EXPECT_THROW(v->token_to_piece(-1, false), tfu::error);
    }
}

}  // namespace

namespace {

std::vector<std::string> split(tfu::pre_type t, const std::string& s) {
    std::vector<std::string> out;
    size_t off = 0;
    for (size_t n : tfu::pre_tokenize(t, s)) {
        out.push_back(s.substr(off, n));
        off += n;
    }
    EXPECT_EQ(off, s.size());
    return out;
}

using words = std::vector<std::string>;

// Pre-tokenizers without a vector file in ../shared/vocab, checked against their regexes by hand.
TEST(pre_tokenizer, regex_semantics) {
    // Qwen2: Llama 3's regex with single digits.
    EXPECT_EQ(split(tfu::pre_type::QWEN2, "I'VE 12345 cats!!\n\n  x"),
              (words{"I", "'VE", " ", "1", "2", "3", "4", "5", " cats", "!!\n\n", " ", " x"}));
    EXPECT_EQ(split(tfu::pre_type::LLAMA3, "12345 cats"), (words{"123", "45", " cats"}));
    // DeepSeek LLM: [\r\n] | \s?letters | \s?punct | \s+$ | CJK | \p{N}+
    EXPECT_EQ(split(tfu::pre_type::DEEPSEEK_LLM, "Hi, 你好 42  "), (words{"Hi", ",", " ", "你好", " ", "42", "  "}));
    // GPT-2 (and its default pre): contractions, ' ?\p{L}+', '\s+(?!\S)'.
    EXPECT_EQ(split(tfu::pre_type::GPT2, "it's   ok"), (words{"it", "'s", "  ", " ok"}));
    EXPECT_EQ(split(tfu::pre_type::DEFAULT, "a...b 1234"), (words{"a", "...", "b", " ", "123", "4"}));
    // Invalid bytes are kept, each as its own symbol character.
    EXPECT_EQ(split(tfu::pre_type::GPT2, "a\xFF\xFE b"), (words{"a", "\xFF\xFE", " b"}));
    tfu::pre_type t;
    EXPECT_FALSE(tfu::pre_type_from_name("nonexistent", t));
    EXPECT_TRUE(tfu::pre_type_from_name("qwen2", t));
    EXPECT_EQ(t, tfu::pre_type::QWEN2);
}

}  // namespace
