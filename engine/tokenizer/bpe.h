// Byte-level BPE (tokenizer.ggml.model = "gpt2"): the GPT-2 byte <-> unicode mapping and the merge loop.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tfu {

class vocab;

// GPT-2's bytes_to_unicode(): printable bytes map to themselves, the others to U+0100 + k; as UTF-8.
const std::string& bpe_byte_to_utf8(uint8_t b);
// Inverse mapping for one code point; -1 if the code point is not the image of a byte.
int bpe_cpt_to_byte(uint32_t cp);

// Tokenizes one pre-tokenized word (raw bytes) by merges in rank order (lowest rank first, leftmost on ties);
// with ignore_merges a word that is a whole token is emitted as is (Llama 3). Appends ids to `out`.
void bpe_tokenize_word(const vocab& v, std::string_view word, bool ignore_merges, std::vector<int32_t>& out);

// Key of a merge pair in the rank table (length-prefixed, so that no two pairs share a key).
std::string bpe_merge_key(std::string_view left, std::string_view right);

}  // namespace tfu
