// Streaming detokenizer: token pieces are appended to a byte buffer and only its complete UTF-8 prefix is
// released, so a character split over several byte tokens is never emitted in halves.
#include "core/utf8.h"
#include "tokenizer/vocab.h"

namespace tfu {

detokenizer::detokenizer(const vocab& v, bool render_special) : v_(v), render_special_(render_special) {}

std::string detokenizer::push(int32_t id) {
    std::string piece = v_.token_to_piece(id, render_special_);
    if (at_start_ && !piece.empty()) {  // same rule as vocab::detokenize
        if (v_.strips_leading_space(id) && piece[0] == ' ') piece.erase(0, 1);
        if (v_.types_[size_t(id)] != token_type::CONTROL) at_start_ = false;
    }
    pending_ += piece;
    const size_t n = utf8_complete_prefix(pending_);
    if (n == 0) return std::string();
    std::string out = utf8_sanitize(std::string_view(pending_).substr(0, n));
    pending_.erase(0, n);
    return out;
}

std::string detokenizer::flush() {
    std::string out = utf8_sanitize(pending_);
    pending_.clear();
    return out;
}

void detokenizer::reset(bool at_start) {
    pending_.clear();
    at_start_ = at_start;
}

}  // namespace tfu
