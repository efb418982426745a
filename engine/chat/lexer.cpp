// Jinja lexer (see lexer.h). ref: jinja2/lexer.py (3.1) for the whitespace-control rules reproduced here.
#include "chat/lexer.h"

#include <cstring>

#include "core/error.h"
#include "core/utf8.h"

namespace tfu::chat {

void syntax_fail(int line, const std::string& what) {
    fail(TFU_STATUS_TEMPLATE_ERROR, "chat template: line " + std::to_string(line) + ": " + what);
}

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }


class lexer {
public:
    explicit lexer(std::string_view src) {
        // Normalise newlines as Jinja does, then drop one trailing newline (keep_trailing_newline=False).
        src_.reserve(src.size());
        for (size_t i = 0; i < src.size(); ++i) {
            if (src[i] == '\r') {
                src_ += '\n';
                if (i + 1 < src.size() && src[i + 1] == '\n') ++i;
            } else {
                src_ += src[i];
            }
        }
        if (!src_.empty() && src_.back() == '\n') src_.pop_back();
    }

    std::vector<token> run() {
        size_t n = src_.size();
        while (pos_ < n) {
            size_t q = find_tag(pos_);
            if (q == std::string::npos) {
                emit_text(src_.substr(pos_), line_at(pos_));
                break;
            }
            std::string text = src_.substr(pos_, q - pos_);
            int text_line = line_at(pos_);
            char kind = src_[q + 1];
            char sign = q + 2 < n ? src_[q + 2] : 0;
            if (sign == '-') {
                size_t e = text.size();
                while (e > 0 && is_space(text[e - 1])) --e;
                text.resize(e);
            } else if (sign != '+' && kind != '{') {
                // lstrip_blocks: drop spaces between the line start and the tag when only spaces are there.
                size_t l_pos = text.rfind('\n');
                l_pos = l_pos == std::string::npos ? 0 : l_pos + 1;
                bool line_starting = pos_ == 0 || src_[pos_ - 1] == '\n';
                if (l_pos > 0 || line_starting) {
                    bool only_ws = true;
                    for (size_t i = l_pos; i < text.size(); ++i)
                        if (!is_space(text[i])) only_ws = false;
                    if (only_ws) text.resize(l_pos);
                }
            }
            emit_text(text, text_line);
            size_t body = q + 2 + ((sign == '-' || sign == '+') ? 1 : 0);
            if (kind == '#') {
                size_t e = src_.find("#}", body);
                if (e == std::string::npos) syntax_fail(line_at(q), "missing end of comment tag");
                char esign = e > body ? src_[e - 1] : 0;
                pos_ = after_end(e + 2, esign, true);
                continue;
            }
            if (kind == '%' && try_raw(body, q)) continue;
            toks_.push_back({kind == '{' ? tok::var_begin : tok::block_begin, "", 0, 0, line_at(q)});
            pos_ = body;
            lex_tag(kind == '%');
        }
        toks_.push_back({tok::eof, "", 0, 0, line_at(src_.size())});
        return std::move(toks_);
    }

private:
    std::string src_;
    size_t pos_ = 0;
    std::vector<token> toks_;
    // Line numbers by counting newlines incrementally (positions only move forward).
    size_t line_pos_ = 0;
    int line_ = 1;

    int line_at(size_t p) {
        if (p < line_pos_) {
            line_pos_ = 0;
            line_ = 1;
        }
        for (; line_pos_ < p && line_pos_ < src_.size(); ++line_pos_)
            if (src_[line_pos_] == '\n') ++line_;
        return line_;
    }

    size_t find_tag(size_t from) const {
        for (size_t q = src_.find('{', from); q != std::string::npos; q = src_.find('{', q + 1))
            if (q + 1 < src_.size() && (src_[q + 1] == '{' || src_[q + 1] == '%' || src_[q + 1] == '#')) return q;
        return std::string::npos;
    }

    void emit_text(const std::string& t, int line) {
        if (!t.empty()) toks_.push_back({tok::text, t, 0, 0, line});
    }

    // Position after a closing delimiter ending at `p`: '-' strips all whitespace, '+' keeps it, else
    // trim_blocks drops a single newline (blocks and comments only).
    size_t after_end(size_t p, char sign, bool trim) const {
        if (sign == '-') {
            while (p < src_.size() && is_space(src_[p])) ++p;
        } else if (sign != '+' && trim && p < src_.size() && src_[p] == '\n') {
            ++p;
        }
        return p;
    }

    // {% raw %}...{% endraw %}: the content is text, untouched. Returns false if this tag is not raw.
    bool try_raw(size_t body, size_t tag_start) {
        size_t p = body;
        while (p < src_.size() && is_space(src_[p])) ++p;
        if (src_.compare(p, 3, "raw") != 0 || (p + 3 < src_.size() && is_name_char(src_[p + 3]))) return false;
        p += 3;
        while (p < src_.size() && is_space(src_[p])) ++p;
        char sign = 0;
        if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) sign = src_[p++];
        if (src_.compare(p, 2, "%}") != 0) syntax_fail(line_at(tag_start), "expected '%}' after raw");
        p = after_end(p + 2, sign, false);
        // Find {% endraw %} (with optional whitespace control signs).
        for (size_t q = src_.find("{%", p); q != std::string::npos; q = src_.find("{%", q + 2)) {
            size_t r = q + 2;
            char open_sign = 0;
            if (r < src_.size() && (src_[r] == '-' || src_[r] == '+')) open_sign = src_[r++];
            while (r < src_.size() && is_space(src_[r])) ++r;
            if (src_.compare(r, 6, "endraw") != 0) continue;
            r += 6;
            while (r < src_.size() && is_space(src_[r])) ++r;
            char close_sign = 0;
            if (r < src_.size() && (src_[r] == '-' || src_[r] == '+')) close_sign = src_[r++];
            if (src_.compare(r, 2, "%}") != 0) continue;
            std::string content = src_.substr(p, q - p);
            if (open_sign == '-') {
                size_t e = content.size();
                while (e > 0 && is_space(content[e - 1])) --e;
                content.resize(e);
            }
            emit_text(content, line_at(p));
            pos_ = after_end(r + 2, close_sign, true);
            return true;
        }
        syntax_fail(line_at(tag_start), "missing endraw tag");
    }

    void lex_tag(bool block) {
        int depth = 0;  // open brackets: end delimiters inside them are not ends (as in Jinja)
        const size_t n = src_.size();
        for (;;) {
            while (pos_ < n && is_space(src_[pos_])) ++pos_;
            if (pos_ >= n) syntax_fail(line_at(pos_), block ? "unexpected end of template, expected '%}'"
                                                            : "unexpected end of template, expected '}}'");
            int line = line_at(pos_);
            char c = src_[pos_];
            if (depth == 0) {
                const char* end = block ? "%}" : "}}";
                char sign = (c == '-' || c == '+') ? c : 0;
                size_t at = pos_ + (sign ? 1 : 0);
                if (src_.compare(at, 2, end) == 0 && !(sign == '+' && !block)) {
                    toks_.push_back({block ? tok::block_end : tok::var_end, "", 0, 0, line});
                    pos_ = after_end(at + 2, sign, block);
                    return;
                }
            }
            if (is_name_start(c)) {
                size_t s = pos_;
                while (pos_ < n && is_name_char(src_[pos_])) ++pos_;
                toks_.push_back({tok::name, src_.substr(s, pos_ - s), 0, 0, line});
                continue;
            }
            if (is_digit(c)) {
                lex_number(line);
                continue;
            }
            if (c == '\'' || c == '"') {
                lex_string(line);
                continue;
            }
            static const char* const ops2[] = {"//", "**", "==", "!=", "<=", ">="};
            bool matched = false;
            for (const char* o : ops2) {
                if (src_.compare(pos_, 2, o) == 0) {
                    toks_.push_back({tok::op, o, 0, 0, line});
                    pos_ += 2;
                    matched = true;
                    break;
                }
            }
            if (matched) continue;
            if (std::strchr("+-*/%~<>=.,:|()[]{}", c) && c != 0) {
                if (c == '(' || c == '[' || c == '{') ++depth;
                if ((c == ')' || c == ']' || c == '}') && depth > 0) --depth;
                toks_.push_back({tok::op, std::string(1, c), 0, 0, line});
                ++pos_;
                continue;
            }
            syntax_fail(line, std::string("unexpected character '") +
                                  ((unsigned char)c >= 0x20 && (unsigned char)c < 0x7f ? std::string(1, c)
                                                                                        : std::string("?")) +
                                  "'");
        }
    }

    void lex_number(int line) {
        const size_t n = src_.size();
        bool after_dot = !toks_.empty() && toks_.back().type == tok::op && toks_.back().s == ".";
        std::string digits;
        auto take_digits = [&]() {
            while (pos_ < n && (is_digit(src_[pos_]) || (src_[pos_] == '_' && pos_ + 1 < n && is_digit(src_[pos_ + 1])))) {
                if (src_[pos_] != '_') digits += src_[pos_];
                ++pos_;
            }
        };
        take_digits();
        bool is_float = false;
        if (!after_dot && pos_ + 1 < n && src_[pos_] == '.' && is_digit(src_[pos_ + 1])) {
            is_float = true;
            digits += '.';
            ++pos_;
            take_digits();
        }
        if (!after_dot && pos_ < n && (src_[pos_] == 'e' || src_[pos_] == 'E')) {
            size_t save = pos_;
            std::string save_digits = digits;
            digits += 'e';
            ++pos_;
            if (pos_ < n && (src_[pos_] == '+' || src_[pos_] == '-')) digits += src_[pos_++];
            if (pos_ < n && is_digit(src_[pos_])) {
                is_float = true;
                take_digits();
            } else {
                pos_ = save;
                digits = save_digits;
            }
        }
        token t{is_float ? tok::floating : tok::integer, digits, 0, 0, line};
        if (is_float) {
            t.d = std::strtod(digits.c_str(), nullptr);
        } else {
            // Python ints are unbounded; templates never need more than int64.
            errno = 0;
            unsigned long long v = std::strtoull(digits.c_str(), nullptr, 10);
            if (errno == ERANGE || v > uint64_t(INT64_MAX)) syntax_fail(line, "integer literal too large");
            t.i = int64_t(v);
        }
        toks_.push_back(std::move(t));
    }

    static int hex_val(char c) {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    }

    // Python string-literal escapes (Jinja decodes literals with "unicode-escape").
    void lex_string(int line) {
        const size_t n = src_.size();
        char q = src_[pos_++];
        std::string out;
        for (;;) {
            if (pos_ >= n) syntax_fail(line, "unterminated string literal");
            char c = src_[pos_++];
            if (c == q) break;
            if (c != '\\') {
                out += c;
                continue;
            }
            if (pos_ >= n) syntax_fail(line, "unterminated string literal");
            char e = src_[pos_++];
            switch (e) {
                case 'n': out += '\n'; break;
                case 't': out += '\t'; break;
                case 'r': out += '\r'; break;
                case '0': out += '\0'; break;
                case 'a': out += '\a'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'v': out += '\v'; break;
                case '\\': out += '\\'; break;
                case '\'': out += '\''; break;
                case '"': out += '"'; break;
                case '\n': break;  // line continuation
                case 'x':
                case 'u':
                case 'U': {
                    int len = e == 'x' ? 2 : e == 'u' ? 4 : 8;
                    uint32_t cp = 0;
                    for (int k = 0; k < len; ++k) {
                        int h = pos_ < n ? hex_val(src_[pos_]) : -1;
                        if (h < 0) syntax_fail(line, std::string("truncated \\") + e + " escape in string literal");
                        cp = cp * 16 + uint32_t(h);
                        ++pos_;
                    }
                    utf8_append(out, cp);
                    break;
                }
                default:
                    out += '\\';
                    out += e;
            }
        }
        toks_.push_back({tok::string, std::move(out), 0, 0, line});
    }
};

}  // namespace

std::vector<token> lex(std::string_view source) { return lexer(source).run(); }

}  // namespace tfu::chat
