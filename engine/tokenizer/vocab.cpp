// Vocabulary loading from GGUF metadata and the tokenize / detokenize entry points (special-token partition,
// SPM normalisation, BPE pre-tokenization). Facts follow llama.cpp's src/llama-vocab.cpp (MIT) so that the
// outputs match its test vectors.
#include "tokenizer/vocab.h"

#include <algorithm>
#include <cstdio>

#include "core/error.h"
#include "tokenizer/bpe.h"
#include "tokenizer/spm.h"
#include "core/utf8.h"

namespace tfu {

namespace {

const char* const k_spm_space = "\xE2\x96\x81";  // U+2581 LOWER ONE EIGHTH BLOCK, SentencePiece's space

// Texts that end a turn or a generation (searched when the GGUF names no eot token; all are end-of-generation).
const char* const k_eot_texts[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                                   "<EOT>", "_<EOT>", "<\xEF\xBD\x9C\x65nd\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>"};
const char* const k_eog_extra_texts[] = {"<|eom_id|>"};

std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
    std::string r;
    r.reserve(s.size() + s.size() / 4);
    size_t i = 0;
    for (;;) {
        const size_t j = s.find(from, i);
        if (j == std::string_view::npos) break;
        r.append(s.substr(i, j - i));
        r.append(to);
        i = j + from.size();
    }
    r.append(s.substr(i));
    return r;
}

}  // namespace

std::unique_ptr<vocab> vocab::from_gguf(const gguf::file& f) {
    const std::string& path = f.path();
    std::unique_ptr<vocab> v(new vocab());
    const auto model = f.get_string("tokenizer.ggml.model");
    if (!model) fail(TFU_STATUS_INVALID_FILE, path + ": missing tokenizer.ggml.model");
    v->model_ = *model;
    if (v->model_ == "llama") v->spm_ = true;
    else if (v->model_ == "gpt2") v->spm_ = false;
    else fail(TFU_STATUS_UNSUPPORTED, path + ": unsupported tokenizer.ggml.model '" + v->model_ + "'");

    const gguf::kv* toks = f.get_array("tokenizer.ggml.tokens", gguf::value_type::STRING);
    if (!toks || toks->strings.empty()) fail(TFU_STATUS_INVALID_FILE, path + ": missing tokenizer.ggml.tokens");
    if (toks->strings.size() > size_t(INT32_MAX))
        fail(TFU_STATUS_INVALID_FILE, path + ": tokenizer.ggml.tokens has too many entries");
    const size_t n = toks->strings.size();
    v->tokens_.reserve(n);
    for (const auto& s : toks->strings) v->tokens_.emplace_back(s);

    if (const gguf::kv* sc = f.get_array("tokenizer.ggml.scores", gguf::value_type::FLOAT32)) {
        if (sc->count != n) fail(TFU_STATUS_INVALID_FILE, path + ": tokenizer.ggml.scores count differs from tokens");
        v->scores_.resize(n);
        for (size_t i = 0; i < n; ++i) v->scores_[i] = float(sc->array_float(i));
    }
    v->types_.assign(n, token_type::NORMAL);
    if (const gguf::kv* ty = f.get_array("tokenizer.ggml.token_type", gguf::value_type::INT32)) {
        if (ty->count != n) fail(TFU_STATUS_INVALID_FILE, path + ": tokenizer.ggml.token_type count differs from tokens");
        for (size_t i = 0; i < n; ++i) {
            const int64_t t = ty->array_int(i);
            if (t < 0 || t > 6) fail(TFU_STATUS_INVALID_FILE, path + ": tokenizer.ggml.token_type[" + std::to_string(i) + "] = " + std::to_string(t));
            v->types_[i] = token_type(t);
        }
    }
    // Later duplicates win, as in llama.cpp.
    v->token_ids_.reserve(n);
    for (size_t i = 0; i < n; ++i) v->token_ids_[v->tokens_[i]] = int32_t(i);

    if (v->spm_) {
        v->add_bos_ = true;
        v->add_space_prefix_ = true;
        v->bos_ = n > 1 ? 1 : -1;
        v->eos_ = n > 2 ? 2 : -1;
        v->unk_ = 0;
        v->pre_ = f.get_string("tokenizer.ggml.pre").value_or("default");
    } else {
        const gguf::kv* merges = f.get_array("tokenizer.ggml.merges", gguf::value_type::STRING);
        if (!merges) fail(TFU_STATUS_INVALID_FILE, path + ": missing tokenizer.ggml.merges");
        v->merge_ranks_.reserve(merges->strings.size());
        for (size_t i = 0; i < merges->strings.size(); ++i) {
            const std::string_view m = merges->strings[i];
            const size_t sp = m.size() > 1 ? m.find(' ', 1) : std::string_view::npos;
            if (sp == std::string_view::npos)
                fail(TFU_STATUS_INVALID_FILE, path + ": tokenizer.ggml.merges[" + std::to_string(i) + "] has no space");
            v->merge_ranks_.emplace(bpe_merge_key(m.substr(0, sp), m.substr(sp + 1)), int32_t(i));
        }
        v->pre_ = f.get_string("tokenizer.ggml.pre").value_or("default");
        if (!pre_type_from_name(v->pre_, v->pre_type_))
            fail(TFU_STATUS_UNSUPPORTED, path + ": unsupported tokenizer.ggml.pre '" + v->pre_ + "'");
        v->ignore_merges_ = v->pre_type_ == pre_type::LLAMA3;
        v->add_bos_ = v->pre_type_ == pre_type::LLAMA3;
    }

    auto read_id = [&](const char* key, int32_t& dst) {
        const auto val = f.get_int(key);
        if (!val) return;
        if (*val == -1 || *val == int64_t(UINT32_MAX)) {  // "none" as written by some converters
            dst = -1;
            return;
        }
        if (*val < 0 || *val >= int64_t(n))
            fail(TFU_STATUS_INVALID_FILE, path + ": " + key + " = " + std::to_string(*val) + " is not a token id (n_tokens " + std::to_string(n) + ")");
        dst = int32_t(*val);
    };
    read_id("tokenizer.ggml.bos_token_id", v->bos_);
    read_id("tokenizer.ggml.eos_token_id", v->eos_);
    read_id("tokenizer.ggml.unknown_token_id", v->unk_);
    read_id("tokenizer.ggml.padding_token_id", v->pad_);
    read_id("tokenizer.ggml.eot_token_id", v->eot_);
    if (v->unk_ >= int32_t(n)) v->unk_ = -1;
    v->add_bos_ = f.get_bool("tokenizer.ggml.add_bos_token").value_or(v->add_bos_);
    v->add_eos_ = f.get_bool("tokenizer.ggml.add_eos_token").value_or(v->add_eos_);
    v->add_space_prefix_ = f.get_bool("tokenizer.ggml.add_space_prefix").value_or(v->add_space_prefix_);

    // Byte tokens: SPM <0xAB>, falling back to a one-byte token; BPE: the byte's mapped character.
    for (int b = 0; b < 256; ++b) {
        int32_t id = -1;
        if (v->spm_) {
            char hex[8];
            std::snprintf(hex, sizeof hex, "<0x%02X>", b);
            id = v->find(hex);
            if (id < 0) {
                const char c = char(b);
                id = v->find(std::string_view(&c, 1));
            }
        } else {
            id = v->find(bpe_byte_to_utf8(uint8_t(b)));
        }
        v->byte_tokens_[size_t(b)] = id;
    }

    // Special tokens matched in text, longest first (ties by id, for a deterministic order).
    for (size_t i = 0; i < n; ++i) {
        const token_type t = v->types_[i];
        if ((t == token_type::CONTROL || t == token_type::USER_DEFINED || t == token_type::UNKNOWN) && !v->tokens_[i].empty())
            v->special_order_.push_back(int32_t(i));
    }
    std::stable_sort(v->special_order_.begin(), v->special_order_.end(),
                     [&](int32_t a, int32_t b) { return v->tokens_[size_t(a)].size() > v->tokens_[size_t(b)].size(); });

    // End of turn / generation.
    auto special_text_id = [&](const char* text) {
        const int32_t id = v->find(text);
        return (id >= 0 && v->types_[size_t(id)] != token_type::NORMAL && v->types_[size_t(id)] != token_type::BYTE) ? id : -1;
    };
    if (v->eot_ < 0) {
        for (const char* t : k_eot_texts) {
            const int32_t id = special_text_id(t);
            if (id >= 0) {
                v->eot_ = id;
                break;
            }
        }
    }
    auto add_eog = [&](int32_t id) {
        if (id >= 0 && std::find(v->eog_ids_.begin(), v->eog_ids_.end(), id) == v->eog_ids_.end()) v->eog_ids_.push_back(id);
    };
    add_eog(v->eos_);
    add_eog(v->eot_);
    for (const char* t : k_eot_texts) add_eog(special_text_id(t));
    for (const char* t : k_eog_extra_texts) add_eog(special_text_id(t));
    return v;
}

int32_t vocab::find(std::string_view text) const {
    const auto it = token_ids_.find(text);
    return it == token_ids_.end() ? -1 : it->second;
}

int32_t vocab::bpe_rank(std::string_view left, std::string_view right) const {
    const auto it = merge_ranks_.find(bpe_merge_key(left, right));
    return it == merge_ranks_.end() ? -1 : it->second;
}

void vocab::check_id(int32_t id) const {
    if (id < 0 || id >= n_tokens())
        fail(TFU_STATUS_INVALID_ARGUMENT, "token id " + std::to_string(id) + " out of range (n_tokens " + std::to_string(n_tokens()) + ")");
}

token_type vocab::type(int32_t id) const {
    check_id(id);
    return types_[size_t(id)];
}

bool vocab::is_control(int32_t id) const { return type(id) == token_type::CONTROL; }

bool vocab::is_eog(int32_t id) const {
    return id >= 0 && std::find(eog_ids_.begin(), eog_ids_.end(), id) != eog_ids_.end();
}

const std::string& vocab::token_text(int32_t id) const {
    check_id(id);
    return tokens_[size_t(id)];
}

std::vector<int32_t> vocab::tokenize(std::string_view text, bool add_special, bool parse_special) const {
    // 1. Partition: special tokens found in the text split it into raw fragments and token fragments. Each
    //    special token, longest first, is searched in every remaining raw fragment (llama.cpp's
    //    tokenizer_st_partition). Control/unknown tokens only with parse_special; user-defined ones always.
    struct fragment {
        int32_t id;  // -1: raw text [off, off + len)
        size_t off, len;
    };
    std::vector<fragment> frags;
    if (!text.empty()) frags.push_back({-1, 0, text.size()});
    std::vector<fragment> next;
    for (const int32_t sid : special_order_) {
        const token_type t = types_[size_t(sid)];
        if (!parse_special && t != token_type::USER_DEFINED) continue;
        const std::string& st = tokens_[size_t(sid)];
        next.clear();
        bool found_any = false;
        for (const fragment& fr : frags) {
            if (fr.id >= 0 || fr.len < st.size()) {
                next.push_back(fr);
                continue;
            }
            const std::string_view raw = text.substr(fr.off, fr.len);
            size_t pos = 0;
            for (;;) {
                const size_t hit = raw.find(st, pos);
                if (hit == std::string_view::npos) break;
                found_any = true;
                if (hit > pos) next.push_back({-1, fr.off + pos, hit - pos});
                next.push_back({sid, 0, 0});
                pos = hit + st.size();
            }
            if (pos < raw.size()) next.push_back({-1, fr.off + pos, raw.size() - pos});
        }
        if (found_any) frags.swap(next);
    }

    // 2. Tokenize the raw fragments.
    std::vector<int32_t> out;
    out.reserve(text.size() / 3 + 4);
    if (add_special && add_bos_ && bos_ >= 0) out.push_back(bos_);
    bool prev_special = true;  // SPM: a fragment at the start or after a special token gets the space prefix
    for (const fragment& fr : frags) {
        if (fr.id >= 0) {
            out.push_back(fr.id);
            prev_special = true;
            continue;
        }
        const std::string_view raw = text.substr(fr.off, fr.len);
        if (spm_) {
            std::string norm;
            if (add_space_prefix_ && prev_special) norm = k_spm_space;
            norm += replace_all(raw, " ", k_spm_space);
            spm_tokenize(*this, norm, out);
        } else {
            size_t off = 0;
            for (const size_t len : pre_tokenize(pre_type_, raw)) {
                bpe_tokenize_word(*this, raw.substr(off, len), ignore_merges_, out);
                off += len;
            }
        }
        prev_special = false;
    }
    if (add_special && add_eos_ && eos_ >= 0) out.push_back(eos_);
    return out;
}

std::string vocab::token_to_piece(int32_t id, bool render_special) const {
    check_id(id);
    const std::string& text = tokens_[size_t(id)];
    switch (types_[size_t(id)]) {
    case token_type::CONTROL:
    case token_type::UNKNOWN:
    case token_type::UNUSED: return render_special ? text : std::string();
    case token_type::USER_DEFINED: return text;  // matched verbatim in text, so rendered verbatim
    case token_type::BYTE:
        if (spm_ && text.size() == 6 && text.compare(0, 3, "<0x") == 0 && text[5] == '>') {
            return std::string(1, char(std::stoi(text.substr(3, 2), nullptr, 16)));
        }
        break;
    case token_type::UNDEFINED:
    case token_type::NORMAL: break;
    }
    if (spm_) return replace_all(text, k_spm_space, " ");
    // Byte-level BPE: undo the byte -> character mapping; characters outside it are kept as they are.
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size();) {
        const utf8_cpt c = utf8_decode(text, i);
        const int b = c.valid ? bpe_cpt_to_byte(c.cp) : -1;
        if (b >= 0) out += char(b);
        else out.append(text, i, c.len);
        i += c.len;
    }
    return out;
}

bool vocab::strips_leading_space(int32_t id) const {
    const token_type t = types_[size_t(id)];
    return spm_ && add_space_prefix_ && (t == token_type::NORMAL || t == token_type::UNDEFINED || t == token_type::BYTE);
}

std::string vocab::detokenize(const std::vector<int32_t>& ids, bool render_special) const {
    std::string out;
    bool at_start = true;
    for (const int32_t id : ids) {
        std::string piece = token_to_piece(id, render_special);
        if (at_start && !piece.empty()) {
            if (strips_leading_space(id) && piece[0] == ' ') piece.erase(0, 1);
            if (types_[size_t(id)] != token_type::CONTROL) at_start = false;
        }
        out += piece;
    }
    return out;
}

}  // namespace tfu
