// Session files: a conversation's whole state on disk (tfu_session_save / tfu_session_load), so that a desktop
// app can reopen it without a new prefill.
//
// Layout (little-endian; version 1):
//   "TFUSESS\0" | u32 version | u32 header bytes (of what follows up to the sections)
//   header: u64 model fingerprint | u64 model file size | i32 n_layer, n_head_kv, head_dim, n_vocab,
//           block_tokens | u8 k format, v format, flags (1 has logits, 2 evicted, 4 scores), 0 | i32 n_tokens, n_pending,
//           final blocks, n_window | u64 rng[4] | u64 prompt, generated, prefix reused, evictions, evicted tokens
//           | f64 prefill ms, decode ms
//   sections: i32 tokens[n_tokens] | i64 origins[n_tokens] | i32 pending[n_pending] | i32 window[n_window] |
//             f32 logits[n_vocab] if flag 1 | f64 H2O scores[n_tokens] if flag 4 | the KV image (kv_block_table::write_image: blocks in table order, then the q4-key tail)
//   trailer: u64 hash64 of every byte before it
// The file's size must be exactly what the header implies; the model must be the same file (fingerprint of the
// GGUF's tensor table and of the first and last bytes of every tensor, and its size); the session must use the
// same KV formats. Writing goes to PATH.tmp, then renames over PATH, so a crash never leaves half a file.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "core/error.h"
#include "core/hash.h"
#include "runtime/session.h"

namespace tfu {
namespace {

constexpr char k_magic[8] = {'T', 'F', 'U', 'S', 'E', 'S', 'S', '\0'};
constexpr uint32_t k_version = 1;

struct header {
    uint64_t fingerprint = 0, model_size = 0;
    int32_t n_layer = 0, n_head_kv = 0, head_dim = 0, n_vocab = 0, block_tokens = 0;
    uint8_t k_format = 0, v_format = 0, flags = 0, pad = 0;
    int32_t n_tokens = 0, n_pending = 0, final_blocks = 0, n_window = 0;
    uint64_t rng[4] = {0, 0, 0, 0};
    uint64_t prompt = 0, generated = 0, prefix_reused = 0, evictions = 0, evicted_tokens = 0;
    double prefill_ms = 0, decode_ms = 0;
};
static_assert(sizeof(header) == 144, "header fields are written as one block: no padding may sneak in");

constexpr uint8_t k_has_logits = 1, k_evicted = 2, k_has_scores = 4;

// Which model a file belongs to: the tensor table (names, types, shapes, offsets) and up to 64 bytes at each end
// of every tensor's data (different weights of the same shapes differ there), plus the file's size.
uint64_t model_fingerprint(const model& m) {
    hash64 h;
    const gguf::file& f = *m.file;
    const uint64_t size = f.size();
    h.update(&size, sizeof size);
    for (const gguf::tensor_info& t : f.tensors()) {
        h.update(t.name.data(), t.name.size());
        const uint32_t type = uint32_t(t.type);
        h.update(&type, sizeof type);
        h.update(t.ne, sizeof t.ne);
        h.update(&t.offset, sizeof t.offset);
        const size_t edge = std::min<size_t>(64, t.nbytes);
        h.update(t.data, edge);
        h.update(static_cast<const uint8_t*>(t.data) + t.nbytes - edge, edge);
    }
    return h.digest();
}

struct file_closer {
    void operator()(FILE* f) const {
        if (f) std::fclose(f);
    }
};
using file_ptr = std::unique_ptr<FILE, file_closer>;

// Writes through the hash; every failure is an IO_ERROR naming the file.
class writer {
public:
    writer(FILE* f, const std::string& path) : f_(f), path_(path) {}
    void put(const void* p, size_t n) {
        if (n == 0) return;
        h_.update(p, n);
        if (std::fwrite(p, 1, n, f_) != n) fail(TFU_STATUS_IO_ERROR, path_ + ": write failed: " + std::strerror(errno));
    }
    void finish() {
        const uint64_t d = h_.digest();
        if (std::fwrite(&d, 1, sizeof d, f_) != sizeof d || std::fflush(f_) != 0)
            fail(TFU_STATUS_IO_ERROR, path_ + ": write failed: " + std::strerror(errno));
    }

private:
    FILE* f_;
    const std::string& path_;
    hash64 h_;
};

// Reads through the hash; a short read is an INVALID_FILE (the size was checked first, so it means the file
// changed underneath).
class reader {
public:
    reader(FILE* f, const std::string& path) : f_(f), path_(path) {}
    void get(void* p, size_t n) {
        if (n == 0) return;
        if (std::fread(p, 1, n, f_) != n) fail(TFU_STATUS_INVALID_FILE, path_ + ": the session file is truncated");
        h_.update(p, n);
    }
    void check_trailer() {
        uint64_t want = 0;
        if (std::fread(&want, 1, sizeof want, f_) != sizeof want)
            fail(TFU_STATUS_INVALID_FILE, path_ + ": the session file is truncated (no checksum)");
        if (want != h_.digest())
            fail(TFU_STATUS_INVALID_FILE, path_ + ": the session file is corrupted (checksum mismatch)");
    }

private:
    FILE* f_;
    const std::string& path_;
    hash64 h_;
};

template <typename T>
void put_vec(writer& w, const std::vector<T>& v) {
    w.put(v.data(), v.size() * sizeof(T));
}

}  // namespace

void session::save(const std::string& path) {
    if (!table_) fail(TFU_STATUS_UNSUPPORTED, "session files need the paged KV cache");
    fetch_logits();  // a greedy device step left them in device memory
    header hd;
    hd.fingerprint = model_fingerprint(mdl);
    hd.model_size = mdl.file->size();
    const kv_pool_params& pp = table_->pool().params();
    hd.n_layer = pp.n_layer;
    hd.n_head_kv = pp.n_head_kv;
    hd.head_dim = pp.head_dim;
    hd.n_vocab = mdl.hp.n_vocab;
    hd.block_tokens = pp.block_tokens;
    hd.k_format = uint8_t(pp.k_format);
    hd.v_format = uint8_t(pp.v_format);
    const bool has_scores = !scores_.empty();
    TFU_CHECK(!has_scores || scores_.size() == tokens_.size());
    TFU_CHECK(origin_.size() == tokens_.size());
    hd.flags = uint8_t((has_logits_ ? k_has_logits : 0) | (evicted_ ? k_evicted : 0) | (has_scores ? k_has_scores : 0));
    hd.n_tokens = int32_t(tokens_.size());
    hd.n_pending = int32_t(pending_.size());
    hd.final_blocks = table_->final_blocks();
    const sampler::state st = smp_.save_state();
    hd.n_window = int32_t(st.window.size());
    std::memcpy(hd.rng, st.rng, sizeof hd.rng);
    hd.prompt = total_prompt_;
    hd.generated = total_generated_;
    hd.prefix_reused = n_prefix_reused_;
    hd.evictions = n_evictions_;
    hd.evicted_tokens = n_evicted_tokens_;
    hd.prefill_ms = total_prefill_ms_;
    hd.decode_ms = total_decode_ms_;
    TFU_CHECK(table_->n_tokens() == hd.n_tokens);

    const std::string tmp = path + ".tmp";
    {
        file_ptr f(std::fopen(tmp.c_str(), "wb"));
        if (!f) fail(TFU_STATUS_IO_ERROR, tmp + ": cannot create: " + std::strerror(errno));
        try {
            writer w(f.get(), tmp);
            const uint32_t version = k_version, hbytes = sizeof hd;
            w.put(k_magic, sizeof k_magic);
            w.put(&version, sizeof version);
            w.put(&hbytes, sizeof hbytes);
            w.put(&hd, sizeof hd);
            put_vec(w, tokens_);
            put_vec(w, origin_);
            put_vec(w, pending_);
            put_vec(w, st.window);
            if (has_logits_) put_vec(w, logits_);
            if (has_scores) put_vec(w, scores_);
            auto lock = lock_for_cache();  // a device pool's blocks come back through download()
            table_->write_image([&](const void* p, size_t n) { w.put(p, n); });
            w.finish();
            if (std::fclose(f.release()) != 0) fail(TFU_STATUS_IO_ERROR, tmp + ": close failed: " + std::strerror(errno));
        } catch (...) {
            std::remove(tmp.c_str());
            throw;
        }
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        const std::string why = std::strerror(errno);
        std::remove(tmp.c_str());
        fail(TFU_STATUS_IO_ERROR, path + ": cannot replace it with the new session file: " + why);
    }
}

void session::load(const std::string& path) {
    if (!table_) fail(TFU_STATUS_UNSUPPORTED, "session files need the paged KV cache");
    file_ptr f(std::fopen(path.c_str(), "rb"));
    if (!f) fail(errno == ENOENT ? TFU_STATUS_NOT_FOUND : TFU_STATUS_IO_ERROR, path + ": " + std::strerror(errno));
    if (std::fseek(f.get(), 0, SEEK_END) != 0) fail(TFU_STATUS_IO_ERROR, path + ": cannot seek");
    const long size = std::ftell(f.get());
    std::rewind(f.get());
    if (size < 0) fail(TFU_STATUS_IO_ERROR, path + ": cannot tell its size");
    reader r(f.get(), path);
    auto bad = [&](const std::string& why) { fail(TFU_STATUS_INVALID_FILE, path + ": " + why); };

    char magic[8];
    uint32_t version = 0, hbytes = 0;
    if (size_t(size) < sizeof magic + 8 + sizeof(header) + 8) bad("too short for a session file");
    r.get(magic, sizeof magic);
    if (std::memcmp(magic, k_magic, sizeof magic) != 0) bad("not a tfusion session file (bad magic)");
    r.get(&version, sizeof version);
    if (version != k_version)
        fail(TFU_STATUS_UNSUPPORTED, path + ": session file version " + std::to_string(version) +
                                         " (this library reads version " + std::to_string(k_version) + ")");
    r.get(&hbytes, sizeof hbytes);
    if (hbytes != sizeof(header)) bad("header size " + std::to_string(hbytes) + " is not " + std::to_string(sizeof(header)));
    header hd;
    r.get(&hd, sizeof hd);

    // What the header claims, checked before anything is allocated.
    const kv_pool_params& pp = table_->pool().params();
    if (hd.model_size != mdl.file->size() || hd.fingerprint != model_fingerprint(mdl))
        fail(TFU_STATUS_INVALID_ARGUMENT, path + ": the session was saved with another model file (this session's "
                                                 "model is " + mdl.path + ")");
    if (hd.n_layer != pp.n_layer || hd.n_head_kv != pp.n_head_kv || hd.head_dim != pp.head_dim ||
        hd.n_vocab != mdl.hp.n_vocab || hd.block_tokens != pp.block_tokens)
        bad("model dimensions in the header do not match the model");
    if (hd.k_format > 3 || hd.v_format > 3) bad("unknown KV cache format");
    if (hd.k_format != uint8_t(pp.k_format) || hd.v_format != uint8_t(pp.v_format))
        fail(TFU_STATUS_INVALID_ARGUMENT,
             path + ": the file holds a K " + kv_format_name(kv_format(hd.k_format)) + " V " +
                 kv_format_name(kv_format(hd.v_format)) + " cache; this session uses K " + kv_format_name(pp.k_format) +
                 " V " + kv_format_name(pp.v_format) + " (create the session with the same kv_type_k / kv_type_v)");
    if ((hd.flags & ~(k_has_logits | k_evicted | k_has_scores)) != 0 || hd.pad != 0) bad("unknown flags");
    if (hd.n_tokens < 0 || hd.n_pending < 0 || hd.n_window < 0 || hd.final_blocks < 0 ||
        hd.final_blocks > (int64_t(hd.n_tokens) + hd.block_tokens - 1) / hd.block_tokens)
        bad("negative or inconsistent counts");
    if (hd.n_tokens > capacity_ ||
        (policy_ == TFU_KV_POLICY_REFUSE && int64_t(hd.n_tokens) + hd.n_pending > capacity_))
        fail(TFU_STATUS_CONTEXT_FULL, path + ": the saved conversation holds " + std::to_string(hd.n_tokens) + " + " +
                                          std::to_string(hd.n_pending) + " tokens; this session's cache holds " +
                                          std::to_string(capacity_));
    if ((hd.rng[0] | hd.rng[1] | hd.rng[2] | hd.rng[3]) == 0) bad("sampler state is all zeros");
    const uint64_t expect = sizeof magic + 8 + sizeof hd + 4 * (uint64_t(hd.n_tokens) + hd.n_pending + hd.n_window) +
                            8 * uint64_t(hd.n_tokens) + ((hd.flags & k_has_logits) ? 4 * uint64_t(hd.n_vocab) : 0) +
                            ((hd.flags & k_has_scores) ? 8 * uint64_t(hd.n_tokens) : 0) +
                            table_->image_bytes(hd.n_tokens) + 8;
    if (uint64_t(size) != expect)
        bad("size " + std::to_string(size) + " bytes, but its header implies " + std::to_string(expect) +
            " (truncated or corrupted)");

    std::vector<int32_t> tokens(size_t(hd.n_tokens)), pending(size_t(hd.n_pending));
    sampler::state st;
    st.window.resize(size_t(hd.n_window));
    std::memcpy(st.rng, hd.rng, sizeof st.rng);
    std::vector<float> logits(logits_.size());
    std::vector<int64_t> origin(size_t(hd.n_tokens));
    std::vector<double> scores((hd.flags & k_has_scores) ? size_t(hd.n_tokens) : 0);
    r.get(tokens.data(), tokens.size() * 4);
    r.get(origin.data(), origin.size() * 8);
    r.get(pending.data(), pending.size() * 4);
    r.get(st.window.data(), st.window.size() * 4);
    if (hd.flags & k_has_logits) r.get(logits.data(), logits.size() * 4);
    r.get(scores.data(), scores.size() * 8);
    for (size_t i = 0; i < origin.size(); ++i)
        if (origin[i] < 0 || (i > 0 && origin[i] <= origin[i - 1])) bad("token origins are not increasing");
    for (const std::vector<int32_t>* v : {&tokens, &pending, &st.window})
        for (int32_t t : *v)
            if (t < 0 || t >= mdl.hp.n_vocab) bad("token id " + std::to_string(t) + " is outside the vocabulary");
    auto table = std::make_unique<kv_block_table>(table_->pool());
    {
        auto lock = lock_for_cache();  // a device pool's blocks go up through upload()
        table->read_image(hd.n_tokens, hd.final_blocks, [&](void* p, size_t n) { r.get(p, n); });
    }
    r.check_trailer();  // throws before anything below changes the session

    smp_.restore_state(st);
    table_ = std::move(table);
    attach_paged();
    // H2O scores: restored when the file has them and this session uses H2O (else zeros: scoring starts anew).
    if (policy_ == TFU_KV_POLICY_H2O) {
        scores_ = scores.empty() ? std::vector<double>(size_t(hd.n_tokens), 0.0) : std::move(scores);
        paged_->track_attention(&scores_);
    } else {
        scores_.clear();
    }
    n_seen_ = origin.empty() ? 0 : origin.back() + 1;
    origin_ = std::move(origin);
    tokens_ = std::move(tokens);
    pending_ = std::move(pending);
    has_logits_ = (hd.flags & k_has_logits) != 0;
    if (has_logits_) logits_ = std::move(logits);
    logits_on_host();
    evicted_ = (hd.flags & k_evicted) != 0;
    total_prompt_ = hd.prompt;
    total_generated_ = hd.generated;
    n_prefix_reused_ = hd.prefix_reused;
    n_evictions_ = hd.evictions;
    n_evicted_tokens_ = hd.evicted_tokens;
    total_prefill_ms_ = hd.prefill_ms;
    total_decode_ms_ = hd.decode_ms;
    cancel_flag.store(false);
}

}  // namespace tfu
