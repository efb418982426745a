// libFuzzer target: tokenize arbitrary bytes with the Llama 3 byte-level BPE vocabulary (special tokens parsed on
// odd first bytes), then detokenize, whole and streamed; byte-level BPE must give the input back. Never crashes.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "core/error.h"
#include "format/gguf.h"
#include "core/utf8.h"
#include "tokenizer/vocab.h"

namespace {

std::string shared_dir() {
    if (const char* e = std::getenv("TFU_SHARED_DIR")) return e;
#ifdef TFU_SHARED_DIR
    return TFU_SHARED_DIR;
#else
    return "../shared";
#endif
}

struct fixture {
    std::unique_ptr<tfu::gguf::file> file;
    std::unique_ptr<tfu::vocab> voc;
    fixture() {
        file = tfu::gguf::file::open(shared_dir() + "/vocab/ggml-vocab-llama-bpe.gguf");
        voc = tfu::vocab::from_gguf(*file);
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const fixture fx;  // loaded once; a missing file throws here and stops the run loudly
    const tfu::vocab& v = *fx.voc;
    const bool parse_special = size > 0 && (data[0] & 1);
    const std::string text(reinterpret_cast<const char*>(data), size);
    const std::vector<int32_t> ids = v.tokenize(text, true, parse_special);
    for (int32_t id : ids)
        if (id < 0 || id >= v.n_tokens()) std::abort();
    const std::string back = v.detokenize(ids, true);
    if (!parse_special && back != (v.add_bos() ? v.token_text(v.bos()) : std::string()) + text) std::abort();
    tfu::detokenizer d(v, false);
    std::string streamed;
    for (int32_t id : ids) streamed += d.push(id);
    streamed += d.flush();
    if (!tfu::utf8_valid(streamed)) std::abort();
    (void)tfu::utf8_complete_prefix(text);
    return 0;
}
