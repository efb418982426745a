// Pre-tokenizer splitters. Each regex of llama.cpp's llm_tokenizer_bpe (src/llama-vocab.cpp) is applied in turn
// to every piece left by the previous one; a regex keeps both its matches and the text between them as
// pieces (std::regex_iterator semantics: leftmost match, then continue after it). The two common regexes
// (GPT-2's and Llama 3's) follow llama.cpp's hand-written versions (unicode.cpp), which the reference outputs
// in ../shared/vocab were produced with; the others follow ECMAScript regex semantics, where `\s` matches ASCII
// \t\n\v\f\r and space (C locale) plus non-ASCII whitespace, and \p{X} is the Unicode general category class.
#include "tokenizer/pre_tokenizer.h"

#include <algorithm>

#include "tokenizer/unicode.h"
#include "core/utf8.h"

namespace tfu {

namespace {

struct cpt {
    uint32_t cp;
    uint32_t nbytes;
    uint8_t flags;
};

constexpr uint32_t k_out_of_range = 0xFFFFFFFF;

// A piece of the text in code point indices [begin, end).
struct span {
    size_t begin, end;
};

using spans = std::vector<span>;

// The code points of one piece, with out-of-range reads answering "nothing" (as llama.cpp's _get_cpt).
struct view {
    const std::vector<cpt>& c;
    size_t ini, end;
    uint32_t cp(size_t pos) const { return (pos >= ini && pos < end) ? c[pos].cp : k_out_of_range; }
    uint8_t fl(size_t pos) const { return (pos >= ini && pos < end) ? c[pos].flags : 0; }
    bool in(size_t pos) const { return pos >= ini && pos < end; }
};

bool is_letter(uint8_t f) { return f & unicode::LETTER; }
bool is_number(uint8_t f) { return f & unicode::NUMBER; }
bool is_space(uint8_t f) { return f & unicode::WHITESPACE; }

// `\s` of std::regex over llama.cpp's remapped text: C-locale ASCII space class, other whitespace as \v.
bool rx_space(const view& v, size_t pos) {
    if (!v.in(pos)) return false;
    const uint32_t cp = v.cp(pos);
    if (cp < 128) return cp == ' ' || (cp >= 9 && cp <= 13);
    return is_space(v.fl(pos));
}

uint32_t ascii_lower(uint32_t cp) { return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp; }

// Length of a contraction ('s 't 're 've 'm 'll 'd) at pos, 0 if none. case_insensitive: Llama 3 / Qwen2 form.
size_t contraction(const view& v, size_t pos, bool case_insensitive) {
    if (v.cp(pos) != '\'' || pos + 1 >= v.end) return 0;
    auto lw = [&](size_t p) { return case_insensitive ? ascii_lower(v.cp(p)) : v.cp(p); };
    const uint32_t n1 = lw(pos + 1);
    if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') return 2;
    if (pos + 2 < v.end) {
        const uint32_t n2 = lw(pos + 2);
        if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l')) return 3;
    }
    return 0;
}

// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+   (GPT-2)
void split_gpt2(const view& v, spans& out) {
    size_t prev = v.ini;
    auto add = [&](size_t end) {
        if (end > prev) out.push_back({prev, end});
        prev = end;
    };
    for (size_t pos = v.ini; pos < v.end;) {
        const uint32_t cp = v.cp(pos);
        if (size_t n = contraction(v, pos, false)) {
            pos += n;
            add(pos);
            continue;
        }
        uint8_t f2 = cp == ' ' ? v.fl(pos + 1) : v.fl(pos);
        const size_t start = pos + (cp == ' ' ? 1 : 0);
        auto other = [&](size_t p) { return v.in(p) && !(v.fl(p) & (unicode::WHITESPACE | unicode::LETTER | unicode::NUMBER)); };
        if (is_letter(f2)) {
            pos = start;
            while (is_letter(v.fl(pos))) ++pos;
            add(pos);
            continue;
        }
        if (is_number(f2)) {
            pos = start;
            while (is_number(v.fl(pos))) ++pos;
            add(pos);
            continue;
        }
        if (other(start)) {
            pos = start;
            while (other(pos)) ++pos;
            add(pos);
            continue;
        }
        size_t n_ws = 0;
        while (is_space(v.fl(pos + n_ws))) ++n_ws;
        if (n_ws > 1 && v.in(pos + n_ws)) {  // \s+(?!\S): leave the last space to the next word
            pos += n_ws - 1;
            add(pos);
            continue;
        }
        if (n_ws > 0) {
            pos += n_ws;
            add(pos);
            continue;
        }
        add(++pos);
    }
}

// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,D}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
// Llama 3 (D = 3, llama.cpp's hand-written splitter, Unicode whitespace) and Qwen2 (D = 1, through std::regex in
// llama.cpp, so the regex flavour of \s).
void split_llama3(const view& v, spans& out, size_t max_digits, bool regex_space) {
    size_t prev = v.ini;
    auto add = [&](size_t end) {
        if (end > prev) out.push_back({prev, end});
        prev = end;
    };
    auto space = [&](size_t p) { return regex_space ? rx_space(v, p) : is_space(v.fl(p)); };
    for (size_t pos = v.ini; pos < v.end;) {
        const uint32_t cp = v.cp(pos);
        const uint8_t f = v.fl(pos);
        if (size_t n = contraction(v, pos, true)) {
            pos += n;
            add(pos);
            continue;
        }
        if (!(cp == '\r' || cp == '\n' || is_number(f))) {
            if (is_letter(f) || is_letter(v.fl(pos + 1))) {
                ++pos;
                while (is_letter(v.fl(pos))) ++pos;
                add(pos);
                continue;
            }
        }
        if (is_number(f)) {
            size_t ini = pos;
            while (is_number(v.fl(pos))) {
                if (++pos - ini >= max_digits) {
                    add(pos);
                    ini = pos;
                }
            }
            add(pos);
            continue;
        }
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
        auto other = [&](size_t p) { return v.in(p) && !space(p) && !(v.fl(p) & (unicode::LETTER | unicode::NUMBER)); };
        const size_t start = pos + (cp == ' ' ? 1 : 0);
        if (other(start)) {
            pos = start;
            while (other(pos)) ++pos;
            while (v.cp(pos) == '\r' || v.cp(pos) == '\n') ++pos;
            add(pos);
            continue;
        }
        size_t n_ws = 0, last_rn_end = 0;
        while (space(pos + n_ws)) {
            const uint32_t c2 = v.cp(pos + n_ws);
            if (c2 == '\r' || c2 == '\n') last_rn_end = pos + n_ws + 1;
            ++n_ws;
        }
        if (last_rn_end > 0) {  // \s*[\r\n]+
            pos = last_rn_end;
            add(pos);
            continue;
        }
        if (n_ws > 1 && v.in(pos + n_ws)) {  // \s+(?!\S)
            pos += n_ws - 1;
            add(pos);
            continue;
        }
        if (n_ws > 0) {
            pos += n_ws;
            add(pos);
            continue;
        }
        add(++pos);
    }
}

// Generic regex search: `match(v, pos)` returns the length of a match starting at pos (0 = none); the pieces
// are the matches and the gaps between them.
template <typename M>
void split_regex(const view& v, spans& out, M match) {
    size_t prev = v.ini;
    for (size_t pos = v.ini; pos < v.end;) {
        const size_t n = match(v, pos);
        if (n == 0) {
            ++pos;
            continue;
        }
        if (pos > prev) out.push_back({prev, pos});
        out.push_back({pos, pos + n});
        pos += n;
        prev = pos;
    }
    if (v.end > prev) out.push_back({prev, v.end});
}

// Run length of code points satisfying pred, starting at pos.
template <typename P>
size_t run(const view& v, size_t pos, P pred) {
    size_t n = 0;
    while (v.in(pos + n) && pred(v, pos + n)) ++n;
    return n;
}

// \s?X+ : an optional regex-space followed by a non-empty run of X.
template <typename P>
size_t opt_space_run(const view& v, size_t pos, P pred) {
    if (rx_space(v, pos) && v.in(pos + 1) && pred(v, pos + 1)) return 1 + run(v, pos + 1, pred);
    return run(v, pos, pred);
}

bool p_letter(const view& v, size_t p) { return !rx_space(v, p) && is_letter(v.fl(p)); }
bool p_number(const view& v, size_t p) { return !rx_space(v, p) && is_number(v.fl(p)); }
bool p_punct(const view& v, size_t p) { return !rx_space(v, p) && (v.fl(p) & unicode::PUNCT); }
bool p_crlf(const view& v, size_t p) { return v.cp(p) == '\r' || v.cp(p) == '\n'; }
bool p_ascii_digit(const view& v, size_t p) { return v.cp(p) >= '0' && v.cp(p) <= '9'; }

// [\p{P}\$\+<=>\^~\|]+ (default) and with ` (Falcon)
template <bool with_backtick>
size_t m_punct_sym(const view& v, size_t pos) {
    return run(v, pos, [](const view& vv, size_t p) {
        const uint32_t c = vv.cp(p);
        return p_punct(vv, p) || c == '$' || c == '+' || c == '<' || c == '=' || c == '>' || c == '^' || c == '~' ||
               c == '|' || (with_backtick && c == '`');
    });
}

// [一-龥ࠀ-一가-퟿]+ (DeepSeek): U+4E00..U+9FA5, U+0800..U+4E00, U+AC00..U+D7FF
bool p_cjk(const view& v, size_t p) {
    const uint32_t c = v.cp(p);
    return (c >= 0x0800 && c <= 0x9FA5) || (c >= 0xAC00 && c <= 0xD7FF);
}

// DeepSeek LLM's letter class (from its tokenizer.json pre-tokenizer, as listed in llama.cpp), code point ranges.
const uint32_t k_ds_letters[][2] = {
    {0x41, 0x5A}, {0x61, 0x7A}, {0xB5, 0xB5}, {0xC0, 0xD6}, {0xD8, 0xF6}, {0xF8, 0x1BA},
    {0x1BC, 0x1BF}, {0x1C4, 0x293}, {0x295, 0x2AF}, {0x370, 0x373}, {0x376, 0x377}, {0x37B, 0x37D},
    {0x37F, 0x37F}, {0x386, 0x386}, {0x388, 0x38A}, {0x38C, 0x38C}, {0x38E, 0x3A1}, {0x3A3, 0x3F5},
    {0x3F7, 0x481}, {0x48A, 0x52F}, {0x531, 0x556}, {0x10A0, 0x10C5}, {0x13A0, 0x13F5}, {0x13F8, 0x13FD},
    {0x1C90, 0x1CBA}, {0x1CBD, 0x1CBF}, {0x1D00, 0x1D2B}, {0x1D6B, 0x1D77}, {0x1D79, 0x1D9A}, {0x1E00, 0x1F15},
    {0x1F18, 0x1F1D}, {0x1F20, 0x1F45}, {0x1F48, 0x1F4D}, {0x1F50, 0x1F57}, {0x1F59, 0x1F59}, {0x1F5B, 0x1F5B},
    {0x1F5D, 0x1F5D}, {0x1F5F, 0x1F7D}, {0x1F80, 0x1FB4}, {0x1FB6, 0x1FBC}, {0x1FBE, 0x1FBE}, {0x1FC2, 0x1FC4},
    {0x1FC6, 0x1FCC}, {0x1FD0, 0x1FD3}, {0x1FD6, 0x1FDB}, {0x1FE0, 0x1FEC}, {0x1FF2, 0x1FF4}, {0x1FF6, 0x1FFC},
    {0x2102, 0x2102}, {0x2107, 0x2107}, {0x210A, 0x2113}, {0x2115, 0x2115}, {0x2119, 0x211D}, {0x2124, 0x2124},
    {0x2126, 0x2126}, {0x2128, 0x2128}, {0x212A, 0x212D}, {0x212F, 0x2134}, {0x2139, 0x2139}, {0x213C, 0x213F},
    {0x2145, 0x2149}, {0x214E, 0x214E}, {0x2183, 0x2184}, {0x2C00, 0x2C7B}, {0x2C7E, 0x2CE4}, {0x2CEB, 0x2CEE},
    {0x2CF2, 0x2CF3}, {0xA640, 0xA66D}, {0xA680, 0xA69B}, {0xA722, 0xA76F}, {0xA771, 0xA787}, {0xA78B, 0xA78E},
    {0xAB70, 0xABBF}, {0xFB00, 0xFB06}, {0xFB13, 0xFB17}, {0xFF21, 0xFF3A}, {0xFF41, 0xFF5A}, {0x10400, 0x1044F},
    {0x104B0, 0x104D3}, {0x104D8, 0x104FB}, {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2}, {0x118A0, 0x118DF},
    {0x1E900, 0x1E943},
};

bool p_ds_letter(const view& v, size_t p) {
    const uint32_t c = v.cp(p);
    for (const auto& r : k_ds_letters)
        if (c >= r[0] && c <= r[1]) return true;
    return false;
}

// [!-/:-~！-／：-～‘-‟　-。] (DeepSeek LLM)
bool p_ds_punct(const view& v, size_t p) {
    const uint32_t c = v.cp(p);
    return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x7E) || (c >= 0xFF01 && c <= 0xFF0F) ||
           (c >= 0xFF1A && c <= 0xFF5E) || (c >= 0x2018 && c <= 0x201F) || (c >= 0x3000 && c <= 0x3002);
}

// \s+$ : the trailing whitespace run of the piece (the leftmost position where the regex can match).
void split_trailing_space(const view& v, spans& out) {
    size_t b = v.end;
    while (b > v.ini && rx_space(v, b - 1)) --b;
    if (b > v.ini) out.push_back({v.ini, b});
    if (b < v.end) out.push_back({b, v.end});
}

enum class stage {
    GPT2, LLAMA3, QWEN2, PUNCT_SYM, PUNCT_SYM_BT, NUMBERS, NUMBER1, ASCII_DIGITS3, CRLF, SPACE_LETTERS, SPACE_PUNCT,
    CJK, DS_SPACE_LETTERS, DS_SPACE_PUNCT, TRAILING_SPACE,
};

std::vector<stage> stages_of(pre_type t) {
    switch (t) {
    case pre_type::DEFAULT: return {stage::PUNCT_SYM, stage::GPT2, stage::NUMBERS, stage::ASCII_DIGITS3};
    case pre_type::LLAMA3: return {stage::LLAMA3};
    case pre_type::QWEN2: return {stage::QWEN2};
    case pre_type::GPT2:
    case pre_type::MPT: return {stage::GPT2};
    case pre_type::DEEPSEEK_LLM:
        return {stage::CRLF, stage::DS_SPACE_LETTERS, stage::DS_SPACE_PUNCT, stage::TRAILING_SPACE, stage::CJK, stage::NUMBERS};
    case pre_type::DEEPSEEK_CODER: return {stage::CRLF, stage::SPACE_LETTERS, stage::SPACE_PUNCT, stage::CJK, stage::NUMBER1};
    case pre_type::STARCODER:
    case pre_type::REFACT: return {stage::NUMBER1, stage::GPT2};
    case pre_type::FALCON: return {stage::PUNCT_SYM_BT, stage::GPT2, stage::ASCII_DIGITS3};
    }
    return {stage::GPT2};
}

void apply(stage s, const view& v, spans& out) {
    switch (s) {
    case stage::GPT2: return split_gpt2(v, out);
    case stage::LLAMA3: return split_llama3(v, out, 3, false);
    case stage::QWEN2: return split_llama3(v, out, 1, true);
    case stage::PUNCT_SYM: return split_regex(v, out, m_punct_sym<false>);
    case stage::PUNCT_SYM_BT: return split_regex(v, out, m_punct_sym<true>);
    case stage::NUMBERS: return split_regex(v, out, [](const view& vv, size_t p) { return run(vv, p, p_number); });
    case stage::NUMBER1: return split_regex(v, out, [](const view& vv, size_t p) { return size_t(p_number(vv, p)); });
    case stage::ASCII_DIGITS3:
        return split_regex(v, out, [](const view& vv, size_t p) {
            return (p_ascii_digit(vv, p) && p_ascii_digit(vv, p + 1) && p_ascii_digit(vv, p + 2)) ? size_t(3) : size_t(0);
        });
    case stage::CRLF: return split_regex(v, out, [](const view& vv, size_t p) { return size_t(p_crlf(vv, p)); });
    case stage::SPACE_LETTERS: return split_regex(v, out, [](const view& vv, size_t p) { return opt_space_run(vv, p, p_letter); });
    case stage::SPACE_PUNCT: return split_regex(v, out, [](const view& vv, size_t p) { return opt_space_run(vv, p, p_punct); });
    case stage::CJK: return split_regex(v, out, [](const view& vv, size_t p) { return run(vv, p, p_cjk); });
    case stage::DS_SPACE_LETTERS:
        return split_regex(v, out, [](const view& vv, size_t p) { return opt_space_run(vv, p, p_ds_letter); });
    case stage::DS_SPACE_PUNCT:
        return split_regex(v, out, [](const view& vv, size_t p) { return opt_space_run(vv, p, p_ds_punct); });
    case stage::TRAILING_SPACE: return split_trailing_space(v, out);
    }
}

}  // namespace

bool pre_type_from_name(std::string_view n, pre_type& out) {
    // Names as written by llama.cpp's convert_hf_to_gguf.py.
    if (n == "default") out = pre_type::DEFAULT;
    else if (n == "llama3" || n == "llama-v3" || n == "llama-bpe" || n == "falcon3" || n == "dbrx" || n == "smaug-bpe")
        out = pre_type::LLAMA3;
    else if (n == "qwen2" || n == "deepseek-r1-qwen" || n == "stablelm2" || n == "megrez") out = pre_type::QWEN2;
    else if (n == "gpt-2" || n == "phi-2" || n == "roberta-bpe" || n == "olmo" || n == "jais") out = pre_type::GPT2;
    else if (n == "mpt") out = pre_type::MPT;
    else if (n == "deepseek-llm") out = pre_type::DEEPSEEK_LLM;
    else if (n == "deepseek-coder") out = pre_type::DEEPSEEK_CODER;
    else if (n == "starcoder" || n == "smollm" || n == "codeshell" || n == "command-r") out = pre_type::STARCODER;
    else if (n == "refact") out = pre_type::REFACT;
    else if (n == "falcon") out = pre_type::FALCON;
    else return false;
    return true;
}

std::vector<size_t> pre_tokenize(pre_type type, std::string_view text) {
    std::vector<cpt> cpts;
    cpts.reserve(text.size());
    for (size_t i = 0; i < text.size();) {
        const utf8_cpt d = utf8_decode(text, i);
        // An invalid byte stands for U+FFFD (a symbol, as llama.cpp substitutes it) but keeps its own byte.
        cpts.push_back({d.cp, d.len, unicode::cpt_flags(d.cp)});
        i += d.len;
    }
    spans cur{{0, cpts.size()}};
    if (cpts.empty()) cur.clear();
    spans next;
    for (stage s : stages_of(type)) {
        next.clear();
        next.reserve(cur.size() * 2);
        for (const span& sp : cur) apply(s, view{cpts, sp.begin, sp.end}, next);
        cur.swap(next);
    }
    std::vector<size_t> lens;
    lens.reserve(cur.size());
    for (const span& sp : cur) {
        size_t n = 0;
        for (size_t i = sp.begin; i < sp.end; ++i) n += cpts[i].nbytes;
        lens.push_back(n);
    }
    return lens;
}

}  // namespace tfu
