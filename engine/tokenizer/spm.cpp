// SentencePiece BPE merge loop over a linked list of symbols with a priority queue of candidate pairs, as in
// llama.cpp's llm_tokenizer_spm (itself after SentencePiece's bpe_model.cc). O(n log n) in the text length.
#include "tokenizer/spm.h"

#include <queue>
#include <string>

#include "tokenizer/vocab.h"

namespace tfu {

namespace {

struct symbol {
    int32_t prev, next;
    size_t off, n;  // bytes [off, off + n) of the text; n == 0 once merged into its left neighbour
};

struct bigram {
    int32_t left, right;
    float score;
    size_t size;  // byte length of the pair when queued: a later mismatch means the entry is stale
};

struct bigram_less {
    // Highest score first, then leftmost.
    bool operator()(const bigram& a, const bigram& b) const {
        return a.score < b.score || (a.score == b.score && a.left > b.left);
    }
};

// Byte length of a UTF-8 sequence from its lead byte's high nibble (no validation: invalid bytes form symbols
// that are not tokens and so fall back to byte tokens).
size_t lead_len(uint8_t c) {
    static const uint8_t lens[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lens[c >> 4];
}

}  // namespace

void spm_tokenize(const vocab& v, std::string_view text, std::vector<int32_t>& out) {
    std::vector<symbol> syms;
    syms.reserve(text.size());
    for (size_t off = 0; off < text.size();) {
        const size_t n = std::min(text.size() - off, lead_len(uint8_t(text[off])));
        const auto idx = int32_t(syms.size());
        syms.push_back({idx - 1, off + n == text.size() ? -1 : idx + 1, off, n});
        off += n;
    }
    std::priority_queue<bigram, std::vector<bigram>, bigram_less> queue;
    auto try_add = [&](int32_t l, int32_t r) {
        if (l < 0 || r < 0) return;
        const std::string_view pair = text.substr(syms[size_t(l)].off, syms[size_t(l)].n + syms[size_t(r)].n);
        const int32_t id = v.find(pair);
        if (id < 0) return;
        queue.push({l, r, v.score(id), pair.size()});
    };
    for (size_t i = 1; i < syms.size(); ++i) try_add(int32_t(i - 1), int32_t(i));

    while (!queue.empty()) {
        const bigram b = queue.top();
        queue.pop();
        symbol& left = syms[size_t(b.left)];
        symbol& right = syms[size_t(b.right)];
        if (left.n == 0 || right.n == 0 || left.n + right.n != b.size) continue;  // stale
        left.n += right.n;
        right.n = 0;
        left.next = right.next;
        if (right.next >= 0) syms[size_t(right.next)].prev = b.left;
        try_add(left.prev, b.left);
        try_add(b.left, left.next);
    }

    for (int32_t i = syms.empty() ? -1 : 0; i >= 0; i = syms[size_t(i)].next) {
        const symbol& s = syms[size_t(i)];
        const std::string_view piece = text.substr(s.off, s.n);
        const int32_t id = v.find(piece);
        if (id >= 0) {
            out.push_back(id);
            continue;
        }
        // Every merged symbol is a token, so only single characters get here: emit their bytes.
        for (char c : piece) {
            const int32_t bt = v.byte_token(uint8_t(c));
            if (bt >= 0) out.push_back(bt);
            else if (v.unk() >= 0) out.push_back(v.unk());
        }
    }
}

}  // namespace tfu
