// The tokenizer vocabulary read from GGUF metadata (tokenizer.ggml.*): text <-> token ids for SentencePiece-style
// ("llama") and byte-level BPE ("gpt2") vocabularies, and a streaming detokenizer that never splits a UTF-8
// character. Outputs conform to llama.cpp's tokenizers (test vectors in ../shared/vocab).
//
// Threading: a vocab is immutable after from_gguf(); its const methods may be called from many threads at once.
// A detokenizer is single-threaded state (one per session).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "format/gguf.h"
#include "tokenizer/pre_tokenizer.h"

namespace tfu {

// tokenizer.ggml.token_type values (llama.cpp's llama_token_type).
enum class token_type : int32_t { UNDEFINED = 0, NORMAL = 1, UNKNOWN = 2, CONTROL = 3, USER_DEFINED = 4, UNUSED = 5, BYTE = 6 };

class vocab {
public:
    // Reads tokenizer.ggml.* metadata: model ("llama" = SentencePiece, "gpt2" = byte-level BPE; anything else throws
    // TFU_STATUS_UNSUPPORTED naming it), tokens, scores, token_type, merges, pre (unknown -> UNSUPPORTED naming it),
    // bos/eos/unknown/padding/eot ids (4294967295 or -1 = none; other ids >= n_tokens throw INVALID_FILE naming the
    // key; eot falls back to a token with a known end-of-turn text), add_bos_token / add_eos_token (defaults as
    // llama.cpp: SPM adds BOS, BPE only for Llama-3-style pre-tokenizers), add_space_prefix (default: SPM yes).
    // Missing or inconsistent arrays throw INVALID_FILE naming the key.
    static std::unique_ptr<vocab> from_gguf(const gguf::file& f);

    int32_t n_tokens() const { return int32_t(tokens_.size()); }

    // text -> ids. add_special: BOS/EOS per the add_* flags. parse_special: text equal to a control token becomes
    // that token; user-defined tokens are always matched (as llama.cpp does). Any bytes are accepted.
    std::vector<int32_t> tokenize(std::string_view text, bool add_special, bool parse_special) const;

    // The bytes of one token as they appear in text (may be partial UTF-8). Control/unknown/unused tokens give ""
    // unless render_special (then their text). Out-of-range ids throw INVALID_ARGUMENT.
    std::string token_to_piece(int32_t id, bool render_special) const;

    // Whole sequence -> text. For SPM with add_space_prefix the leading space of the first text piece is removed.
    std::string detokenize(const std::vector<int32_t>& ids, bool render_special) const;

    int32_t bos() const { return bos_; }
    int32_t eos() const { return eos_; }
    int32_t eot() const { return eot_; }
    int32_t pad() const { return pad_; }
    int32_t unk() const { return unk_; }
    bool add_bos() const { return add_bos_; }
    bool add_eos() const { return add_eos_; }
    bool add_space_prefix() const { return add_space_prefix_; }
    bool is_eog(int32_t id) const;
    bool is_control(int32_t id) const;
    token_type type(int32_t id) const;
    const std::string& token_text(int32_t id) const;
    const std::string& model_name() const { return model_; }
    const std::string& pre_name() const { return pre_; }
    bool is_spm() const { return spm_; }

    // Internals used by the SPM/BPE algorithms.
    int32_t find(std::string_view text) const;           // token id with exactly this text, -1 if none
    float score(int32_t id) const { return scores_.empty() ? 0.0f : scores_[size_t(id)]; }
    int32_t bpe_rank(std::string_view left, std::string_view right) const;  // merge rank, -1 if none
    int32_t byte_token(uint8_t b) const { return byte_tokens_[b]; }         // -1 if the vocab has none

private:
    vocab() = default;
    void check_id(int32_t id) const;
    // The SPM "leading space of the first piece" rule applies to this token (a text token under SPM + prefix).
    bool strips_leading_space(int32_t id) const;
    friend class detokenizer;

    std::string model_, pre_;
    bool spm_ = true;
    pre_type pre_type_ = pre_type::DEFAULT;
    bool ignore_merges_ = false;  // Llama 3: a word that is a whole token is not split into merges
    std::vector<std::string> tokens_;
    std::vector<float> scores_;
    std::vector<token_type> types_;
    std::unordered_map<std::string_view, int32_t> token_ids_;  // views into tokens_
    std::unordered_map<std::string, int32_t> merge_ranks_;     // key: merge_key(left, right)
    std::array<int32_t, 256> byte_tokens_{};
    std::vector<int32_t> special_order_;  // control/user-defined/unknown ids, longest text first
    std::vector<int32_t> eog_ids_;
    int32_t bos_ = -1, eos_ = -1, eot_ = -1, pad_ = -1, unk_ = -1;
    bool add_bos_ = false, add_eos_ = false, add_space_prefix_ = false;
};

// Streaming detokenization for generation: push() returns only complete UTF-8 characters; an incomplete tail
// is held back until the next token completes it. Invalid bytes in the output are replaced by U+FFFD.
class detokenizer {
public:
    detokenizer(const vocab& v, bool render_special);
    // Adds one token; returns the text that is now complete (possibly ""). The SPM leading-space rule applies to
    // the first text token after construction or reset(true).
    std::string push(int32_t id);
    // Returns what is held back (invalid/incomplete bytes replaced by U+FFFD) and empties it.
    std::string flush();
    // Drops held-back bytes. at_start: the next token is the first of the text (strip SPM's leading space).
    void reset(bool at_start);

private:
    const vocab& v_;
    bool render_special_;
    bool at_start_ = true;
    std::string pending_;
};

}  // namespace tfu
