// Byte-level BPE merges over a linked list of symbols with a priority queue of ranked pairs, as described for
// GPT-2 (openai/gpt-2 encoder.py) and implemented by llama.cpp's llm_tokenizer_bpe_session.
#include "tokenizer/bpe.h"

#include <array>
#include <queue>

#include "core/utf8.h"
#include "tokenizer/vocab.h"

namespace tfu {

namespace {

struct byte_maps {
    std::array<std::string, 256> to_utf8;
    std::array<int16_t, 512> from_cpt;  // code points < 512 only: the mapping never goes above U+0143
};

const byte_maps& maps() {
    static const byte_maps m = [] {
        byte_maps r;
        r.from_cpt.fill(-1);
        int extra = 0;
        for (int b = 0; b < 256; ++b) {
            const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            const uint32_t cp = printable ? uint32_t(b) : uint32_t(256 + extra++);
            utf8_append(r.to_utf8[size_t(b)], cp);
            r.from_cpt[cp] = int16_t(b);
        }
        return r;
    }();
    return m;
}

struct symbol {
    int32_t prev, next;
    size_t off, n;
};

struct bigram {
    int32_t left, right;
    int32_t rank;
    size_t size;
};

struct bigram_greater {
    // Lowest rank first, then leftmost.
    bool operator()(const bigram& a, const bigram& b) const {
        return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
    }
};

}  // namespace

const std::string& bpe_byte_to_utf8(uint8_t b) { return maps().to_utf8[b]; }

int bpe_cpt_to_byte(uint32_t cp) { return cp < 512 ? maps().from_cpt[cp] : -1; }

std::string bpe_merge_key(std::string_view left, std::string_view right) {
    std::string k;
    k.reserve(4 + left.size() + right.size());
    const auto n = uint32_t(left.size());
    k.append(reinterpret_cast<const char*>(&n), sizeof n);
    k.append(left);
    k.append(right);
    return k;
}

void bpe_tokenize_word(const vocab& v, std::string_view word, bool ignore_merges, std::vector<int32_t>& out) {
    std::string text;  // the word in the byte-level alphabet
    text.reserve(word.size() * 2);
    for (char c : word) text += bpe_byte_to_utf8(uint8_t(c));

    if (ignore_merges) {
        const int32_t id = v.find(text);
        if (id >= 0) {
            out.push_back(id);
            return;
        }
    }

    // One symbol per mapped character (= per input byte).
    std::vector<symbol> syms;
    syms.reserve(word.size());
    for (size_t off = 0; off < text.size();) {
        const size_t n = std::min(text.size() - off, utf8_seq_len(uint8_t(text[off])));
        const auto idx = int32_t(syms.size());
        syms.push_back({idx - 1, off + n == text.size() ? -1 : idx + 1, off, n});
        off += n;
    }
    std::priority_queue<bigram, std::vector<bigram>, bigram_greater> queue;
    auto try_add = [&](int32_t l, int32_t r) {
        if (l < 0 || r < 0) return;
        const symbol& a = syms[size_t(l)];
        const symbol& b = syms[size_t(r)];
        const int32_t rank = v.bpe_rank(std::string_view(text).substr(a.off, a.n), std::string_view(text).substr(b.off, b.n));
        if (rank < 0) return;
        queue.push({l, r, rank, a.n + b.n});
    };
    for (size_t i = 1; i < syms.size(); ++i) try_add(int32_t(i - 1), int32_t(i));

    while (!queue.empty()) {
        const bigram bg = queue.top();
        queue.pop();
        symbol& left = syms[size_t(bg.left)];
        symbol& right = syms[size_t(bg.right)];
        if (left.n == 0 || right.n == 0 || left.n + right.n != bg.size) continue;  // stale
        left.n += right.n;
        right.n = 0;
        left.next = right.next;
        if (right.next >= 0) syms[size_t(right.next)].prev = bg.left;
        try_add(left.prev, bg.left);
        try_add(bg.left, left.next);
    }

    for (int32_t i = syms.empty() ? -1 : 0; i >= 0; i = syms[size_t(i)].next) {
        const symbol& s = syms[size_t(i)];
        const std::string_view piece = std::string_view(text).substr(s.off, s.n);
        const int32_t id = v.find(piece);
        if (id >= 0) {
            out.push_back(id);
            continue;
        }
        // Not a token (a vocabulary without some byte characters): as llama.cpp, try each single byte.
        for (char c : piece) {
            const int32_t bt = v.find(std::string_view(&c, 1));
            if (bt >= 0) out.push_back(bt);
        }
    }
}

}  // namespace tfu
