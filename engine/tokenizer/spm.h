// SentencePiece-style BPE by scores (tokenizer.ggml.model = "llama").
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace tfu {

class vocab;

// Tokenizes `text`, already normalised (spaces replaced by U+2581, prefix added), appending ids to `out`.
// Starting from UTF-8 characters, repeatedly merges the adjacent pair whose concatenation is a token with the
// highest score (leftmost on ties); pieces that are not tokens fall back to <0xXX> byte tokens.
void spm_tokenize(const vocab& v, std::string_view text, std::vector<int32_t>& out);

}  // namespace tfu
