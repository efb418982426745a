// BPE pre-tokenizers: split text into words before byte-level BPE, one hand-written splitter per regex that
// llama.cpp uses for each `tokenizer.ggml.pre` value (no std::regex: it is slow and lacks \p{L}).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tfu {

enum class pre_type {
    DEFAULT, LLAMA3, QWEN2, GPT2, DEEPSEEK_LLM, DEEPSEEK_CODER, STARCODER, FALCON, REFACT, MPT,
};

// Maps a `tokenizer.ggml.pre` name to its pre-tokenizer; false if the name is not known.
bool pre_type_from_name(std::string_view name, pre_type& out);

// Splits `text` (any bytes; invalid UTF-8 bytes count as one symbol code point each, like U+FFFD) into
// consecutive non-empty pieces covering all of it; returns the byte length of each piece.
std::vector<size_t> pre_tokenize(pre_type type, std::string_view text);

}  // namespace tfu
