// The KL-divergence base file of tfusion-perplexity: writer, validating reader (format in base_file.h).
#include "base_file.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <stdexcept>

namespace tfu::ppl {

namespace {

const char k_magic[8] = {'T', 'F', 'U', 'K', 'L', 'D', '\0', '\0'};
constexpr size_t k_header_bytes = 64;
constexpr uint64_t k_fnv_offset = 0xcbf29ce484222325ull;
constexpr uint64_t k_fnv_prime = 0x100000001b3ull;

uint64_t fnv1a(uint64_t h, const uint8_t* p, size_t n) {
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * k_fnv_prime;
    return h;
}

// Little-endian encoding independent of the host's byte order.
void put_u32(uint8_t* p, uint32_t v) {
    for (int i = 0; i < 4; ++i) p[i] = uint8_t(v >> (8 * i));
}
void put_u64(uint8_t* p, uint64_t v) {
    for (int i = 0; i < 8; ++i) p[i] = uint8_t(v >> (8 * i));
}
void put_f32(uint8_t* p, float v) {
    uint32_t u;
    std::memcpy(&u, &v, 4);
    put_u32(p, u);
}
uint32_t get_u32(const uint8_t* p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= uint32_t(p[i]) << (8 * i);
    return v;
}
uint64_t get_u64(const uint8_t* p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t(p[i]) << (8 * i);
    return v;
}
float get_f32(const uint8_t* p) {
    const uint32_t u = get_u32(p);
    float v;
    std::memcpy(&v, &u, 4);
    return v;
}

void encode_header(const base_header& h, uint8_t* b) {
    std::memset(b, 0, k_header_bytes);
    std::memcpy(b, k_magic, 8);
    put_u32(b + 8, h.version);
    put_u32(b + 12, h.n_vocab);
    put_u32(b + 16, h.n_ctx);
    put_u32(b + 20, h.n_chunk);
    put_u32(b + 24, h.top_k);
    put_u32(b + 28, h.first);
    put_u32(b + 32, uint32_t(h.bos));
    put_u64(b + 40, h.tokens_hash);
    put_u64(b + 48, h.checksum);
    put_u64(b + 56, h.record_bytes);
}

std::vector<uint8_t> encode_tokens(const std::vector<int32_t>& tokens) {
    std::vector<uint8_t> b(tokens.size() * 4);
    for (size_t i = 0; i < tokens.size(); ++i) put_u32(b.data() + 4 * i, uint32_t(tokens[i]));
    return b;
}

}  // namespace

uint64_t hash_tokens(const int32_t* tokens, size_t n) {
    uint64_t h = k_fnv_offset;
    uint8_t b[4];
    for (size_t i = 0; i < n; ++i) {
        put_u32(b, uint32_t(tokens[i]));
        h = fnv1a(h, b, 4);
    }
    return h;
}

void make_base_token(const float* lp, int32_t n_vocab, int32_t target, uint32_t top_k, base_token& out) {
    const size_t V = size_t(n_vocab), K = std::min<size_t>(top_k, V);
    std::vector<int32_t> idx(V);
    std::iota(idx.begin(), idx.end(), 0);
    auto more_probable = [lp](int32_t a, int32_t b) { return lp[a] > lp[b] || (lp[a] == lp[b] && a < b); };
    std::partial_sort(idx.begin(), idx.begin() + long(K), idx.end(), more_probable);
    out.target_lp = lp[target];
    out.top_id.assign(idx.begin(), idx.begin() + long(K));
    out.top_lp.resize(K);
    for (size_t k = 0; k < K; ++k) out.top_lp[k] = lp[idx[k]];
    // the rest mass summed directly (not 1 - sum of the top), so that it keeps its precision when it is tiny
    double rest = 0;
    for (size_t k = K; k < V; ++k) rest += std::exp(double(lp[idx[k]]));
    out.rest_lp = rest > 0 ? float(std::log(rest)) : -std::numeric_limits<float>::infinity();
}

// ---- writer ------------------------------------------------------------------------------------------------

base_writer::base_writer(const std::string& path, base_header h, const std::vector<int32_t>& tokens)
    : path_(path), h_(h) {
    h_.version = 1;
    h_.record_bytes = 8 + 8 * uint64_t(h_.top_k);
    h_.tokens_hash = hash_tokens(tokens.data(), tokens.size());
    if (tokens.size() != size_t(h_.n_chunk) * h_.n_ctx)
        throw std::runtime_error("base file " + path + ": token count does not match n_chunk * n_ctx");
    f_ = std::fopen(path.c_str(), "wb");
    if (!f_) throw std::runtime_error("cannot create the base file " + path + ": " + std::strerror(errno));
    uint8_t hb[k_header_bytes];
    encode_header(h_, hb);  // checksum 0 for now; finish() patches it
    if (std::fwrite(hb, 1, sizeof hb, f_) != sizeof hb)
        throw std::runtime_error("cannot write the base file " + path);
    hash_ = k_fnv_offset;
    const std::vector<uint8_t> tb = encode_tokens(tokens);
    put(tb.data(), tb.size());
}

base_writer::~base_writer() {
    if (f_) std::fclose(f_);
}

void base_writer::put(const void* p, size_t n) {
    hash_ = fnv1a(hash_, static_cast<const uint8_t*>(p), n);
    if (std::fwrite(p, 1, n, f_) != n) throw std::runtime_error("cannot write the base file " + path_);
}

void base_writer::write(const base_token& t) {
    if (t.top_id.size() != h_.top_k || t.top_lp.size() != h_.top_k)
        throw std::runtime_error("base file " + path_ + ": record with the wrong number of entries");
    std::vector<uint8_t> b(size_t(h_.record_bytes));
    put_f32(b.data(), t.target_lp);
    put_f32(b.data() + 4, t.rest_lp);
    for (size_t k = 0; k < h_.top_k; ++k) {
        put_u32(b.data() + 8 + 8 * k, uint32_t(t.top_id[k]));
        put_f32(b.data() + 12 + 8 * k, t.top_lp[k]);
    }
    put(b.data(), b.size());
    ++n_written_;
}

void base_writer::finish() {
    const uint64_t want = uint64_t(h_.n_chunk) * (h_.n_ctx - 1 - h_.first);
    if (n_written_ != want)
        throw std::runtime_error("base file " + path_ + ": " + std::to_string(n_written_) + " records written, " +
                                 std::to_string(want) + " expected");
    h_.checksum = hash_;
    uint8_t hb[k_header_bytes];
    encode_header(h_, hb);
    if (std::fseek(f_, 0, SEEK_SET) != 0 || std::fwrite(hb, 1, sizeof hb, f_) != sizeof hb)
        throw std::runtime_error("cannot write the base file's header " + path_);
    const int rc = std::fclose(f_);
    f_ = nullptr;
    if (rc != 0) throw std::runtime_error("cannot close the base file " + path_ + ": " + std::strerror(errno));
}

// ---- reader ------------------------------------------------------------------------------------------------

void base_reader::bad(const std::string& what) const {
    throw std::runtime_error("base file " + path_ + ": " + what);
}

base_reader::base_reader(const std::string& path) : path_(path) {
    f_ = std::fopen(path.c_str(), "rb");
    if (!f_) throw std::runtime_error("cannot open the base file " + path + ": " + std::strerror(errno));
    uint8_t hb[k_header_bytes];
    if (std::fread(hb, 1, sizeof hb, f_) != sizeof hb) bad("too short for the 64-byte header (not a base file)");
    if (std::memcmp(hb, k_magic, 8) != 0) bad("wrong magic (not a tfusion-perplexity base file)");
    h_.version = get_u32(hb + 8);
    if (h_.version != 1) bad("version " + std::to_string(h_.version) + " (this program reads version 1)");
    h_.n_vocab = get_u32(hb + 12);
    h_.n_ctx = get_u32(hb + 16);
    h_.n_chunk = get_u32(hb + 20);
    h_.top_k = get_u32(hb + 24);
    h_.first = get_u32(hb + 28);
    h_.bos = int32_t(get_u32(hb + 32));
    h_.tokens_hash = get_u64(hb + 40);
    h_.checksum = get_u64(hb + 48);
    h_.record_bytes = get_u64(hb + 56);
    if (h_.n_vocab == 0 || h_.n_vocab > (1u << 24)) bad("n_vocab " + std::to_string(h_.n_vocab) + " out of range");
    if (h_.n_ctx < 4 || h_.n_ctx > (1u << 24)) bad("n_ctx " + std::to_string(h_.n_ctx) + " out of range");
    if (h_.n_chunk == 0 || h_.n_chunk > (1u << 24)) bad("n_chunk " + std::to_string(h_.n_chunk) + " out of range");
    if (h_.top_k == 0 || h_.top_k > h_.n_vocab) bad("top_k " + std::to_string(h_.top_k) + " out of range");
    if (h_.first != h_.n_ctx / 2) bad("first " + std::to_string(h_.first) + " is not n_ctx / 2");
    if (h_.bos < -1 || h_.bos >= int32_t(h_.n_vocab)) bad("bos " + std::to_string(h_.bos) + " out of range");
    if (h_.record_bytes != 8 + 8 * uint64_t(h_.top_k)) bad("record_bytes does not match top_k");

    // the exact size the header implies, then the checksum over everything after the header
    n_records_ = uint64_t(h_.n_chunk) * (h_.n_ctx - 1 - h_.first);
    const uint64_t n_tok = uint64_t(h_.n_chunk) * h_.n_ctx;
    const uint64_t want = k_header_bytes + 4 * n_tok + n_records_ * h_.record_bytes;
    if (std::fseek(f_, 0, SEEK_END) != 0) bad("cannot seek");
    const long got = std::ftell(f_);
    if (got < 0 || uint64_t(got) != want)
        bad("size " + std::to_string(got) + " bytes, the header implies " + std::to_string(want) +
            " (truncated or not written to the end)");
    std::fseek(f_, long(k_header_bytes), SEEK_SET);
    uint64_t h = k_fnv_offset;
    std::vector<uint8_t> buf(1 << 20);
    for (uint64_t left = want - k_header_bytes; left > 0;) {
        const size_t n = size_t(std::min<uint64_t>(left, buf.size()));
        if (std::fread(buf.data(), 1, n, f_) != n) bad("read error");
        h = fnv1a(h, buf.data(), n);
        left -= n;
    }
    if (h != h_.checksum) bad("checksum mismatch (the file is corrupt)");

    std::fseek(f_, long(k_header_bytes), SEEK_SET);
    std::vector<uint8_t> tb(size_t(4 * n_tok));
    if (std::fread(tb.data(), 1, tb.size(), f_) != tb.size()) bad("read error in the tokens");
    tokens_.resize(size_t(n_tok));
    for (size_t i = 0; i < tokens_.size(); ++i) {
        tokens_[i] = int32_t(get_u32(tb.data() + 4 * i));
        if (tokens_[i] < 0 || tokens_[i] >= int32_t(h_.n_vocab))
            bad("token " + std::to_string(i) + " (" + std::to_string(tokens_[i]) + ") outside the vocabulary");
    }
    if (hash_tokens(tokens_.data(), tokens_.size()) != h_.tokens_hash) bad("token hash mismatch");
    rec_.resize(size_t(h_.record_bytes));
    seen_.assign(h_.n_vocab, 0);
}

base_reader::~base_reader() {
    if (f_) std::fclose(f_);
}

void base_reader::read(base_token& t) {
    if (n_read_ >= n_records_) bad("read past the last record");
    const std::string at = "record " + std::to_string(n_read_) + ": ";
    if (std::fread(rec_.data(), 1, rec_.size(), f_) != rec_.size()) bad(at + "read error");
    t.target_lp = get_f32(rec_.data());
    t.rest_lp = get_f32(rec_.data() + 4);
    const float tol = 1e-3f;  // log-probs are <= 0 up to rounding
    if (!std::isfinite(t.target_lp) || t.target_lp > tol) bad(at + "target log-prob is not a log-probability");
    if (std::isnan(t.rest_lp) || t.rest_lp > tol || (std::isinf(t.rest_lp) && t.rest_lp > 0))
        bad(at + "rest log-mass is not a log-probability");
    const bool full = h_.top_k == h_.n_vocab;
    if (full && !std::isinf(t.rest_lp)) bad(at + "rest log-mass must be -inf when top_k = n_vocab");
    t.top_id.resize(h_.top_k);
    t.top_lp.resize(h_.top_k);
    for (size_t k = 0; k < h_.top_k; ++k) {
        const uint32_t id = get_u32(rec_.data() + 8 + 8 * k);
        const float lp = get_f32(rec_.data() + 12 + 8 * k);
        if (id >= h_.n_vocab) bad(at + "token id " + std::to_string(id) + " outside the vocabulary");
        if (seen_[id]) bad(at + "token id " + std::to_string(id) + " listed twice");
        if (!(lp <= tol) || std::isnan(lp) || (std::isinf(lp) && lp > 0)) bad(at + "log-prob out of range");
        if (k > 0 && lp > t.top_lp[k - 1]) bad(at + "log-probs not sorted");
        seen_[id] = 1;
        t.top_id[k] = int32_t(id);
        t.top_lp[k] = lp;
    }
    for (int32_t id : t.top_id) seen_[size_t(id)] = 0;
    double mass = std::isinf(t.rest_lp) ? 0.0 : std::exp(double(t.rest_lp));
    for (float lp : t.top_lp) mass += std::exp(double(lp));
    if (std::fabs(mass - 1.0) > 1e-3) bad(at + "probabilities sum to " + std::to_string(mass) + ", not 1");
    ++n_read_;
}

}  // namespace tfu::ppl
