// The KL-divergence base file of tfusion-perplexity (--save-base writes it, --kl-base reads it): the token
// stream and, per scored token, the base run's top-K log-probabilities plus the mass of the rest.
//
// Format, version 1 (all integers and floats little-endian; floats IEEE-754 binary32):
//   header, 64 bytes:
//     0  char[8]  magic "TFUKLD\0\0"
//     8  u32      version (1)
//    12  u32      n_vocab          vocabulary size of the base model
//    16  u32      n_ctx            chunk length in tokens
//    20  u32      n_chunk          number of chunks
//    24  u32      top_k            log-probs kept per scored token (1 .. n_vocab)
//    28  u32      first            first scored position of a chunk (n_ctx / 2)
//    32  i32      bos              the token that replaced each chunk's first token, or -1 (none)
//    36  u32      reserved (0)
//    40  u64      tokens_hash      FNV-1a 64 of the token ids (as u32 LE)
//    48  u64      checksum         FNV-1a 64 of every byte after the header
//    56  u64      record_bytes     bytes per scored-token record (8 + 8 * top_k)
//   tokens: n_chunk * n_ctx i32, the text's tokens as tokenized (before the BOS replacement)
//   records: n_chunk * (n_ctx - 1 - first), chunk by chunk, position by position:
//     f32 target_lp   log p(the next token)
//     f32 rest_lp     log of the probability mass outside the top-K (-inf when K = n_vocab)
//     top_k * { u32 id, f32 lp }   the K most probable tokens, most probable first (ties: lower id first)
// Why top-K + rest instead of llama.cpp's full uint16 log-probs: with K = n_vocab (the default for vocabularies
// of up to 1024 tokens) the file is exact (fp32), so a run against its own base gives KL = 0; for large
// vocabularies K = 1024 keeps the file 30x smaller than full fp16 while the rest bucket keeps the KL a proper
// divergence of two distributions (over the top-K tokens and one "other" outcome: a lower bound of the full KL).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace tfu::ppl {

struct base_header {
    uint32_t version = 1;
    uint32_t n_vocab = 0;
    uint32_t n_ctx = 0;
    uint32_t n_chunk = 0;
    uint32_t top_k = 0;
    uint32_t first = 0;
    int32_t bos = -1;
    uint64_t tokens_hash = 0;
    uint64_t checksum = 0;
    uint64_t record_bytes = 0;
};

// One scored token of the base run.
struct base_token {
    float target_lp = 0;
    float rest_lp = 0;
    std::vector<int32_t> top_id;  // (top_k,) most probable first
    std::vector<float> top_lp;    // (top_k,)
};

// Fills `out` from one row of log-probs (n_vocab floats, from log_probs()) and the scored token.
void make_base_token(const float* lp, int32_t n_vocab, int32_t target, uint32_t top_k, base_token& out);

uint64_t hash_tokens(const int32_t* tokens, size_t n);

// Writes a base file; the checksum is patched into the header by finish(). Errors throw std::runtime_error
// naming the file.
class base_writer {
public:
    base_writer(const std::string& path, base_header h, const std::vector<int32_t>& tokens);
    ~base_writer();
    base_writer(const base_writer&) = delete;
    base_writer& operator=(const base_writer&) = delete;
    void write(const base_token& t);
    void finish();  // checks the record count, writes the checksum, closes

private:
    void put(const void* p, size_t n);
    std::string path_;
    FILE* f_ = nullptr;
    base_header h_;
    uint64_t hash_;
    uint64_t n_written_ = 0;
};

// Reads a base file. The constructor validates the whole file before anything is used: magic, version, field
// ranges, the exact size the header implies, the checksum and the token hash. read() validates each record
// (ids in the vocabulary and distinct, log-probs finite, <= 0 and sorted). Errors throw std::runtime_error
// naming the file and what is wrong.
class base_reader {
public:
    explicit base_reader(const std::string& path);
    ~base_reader();
    base_reader(const base_reader&) = delete;
    base_reader& operator=(const base_reader&) = delete;
    const base_header& header() const { return h_; }
    const std::vector<int32_t>& tokens() const { return tokens_; }
    void read(base_token& t);  // the next record

private:
    [[noreturn]] void bad(const std::string& what) const;
    std::string path_;
    FILE* f_ = nullptr;
    base_header h_;
    std::vector<int32_t> tokens_;
    std::vector<uint8_t> rec_;
    std::vector<uint8_t> seen_;
    uint64_t n_read_ = 0;
    uint64_t n_records_ = 0;
};

}  // namespace tfu::ppl
