// tfusion-perplexity: perplexity of a model over a text file, and KL divergence against a saved base run, computed
// the way llama.cpp's llama-perplexity does so that the figures compare directly. Public API (tfusion.h) only.
// ref: llama.cpp tools/perplexity/perplexity.cpp, perplexity() and kl_divergence() (the method; our own code).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "base_file.h"
#include "kl_report.h"
#include "options.h"
#include "scoring.h"
#include "tfusion/tfusion.h"

namespace {

using namespace tfu::ppl;

void check(tfu_status st, const std::string& what) {
    if (st != TFU_STATUS_OK)
        throw std::runtime_error(what + ": " + tfu_status_string(st) + ": " + tfu_last_error());
}

// The whole file; one trailing '\n' is dropped (llama.cpp's -f does the same).
std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open the text file " + path);
    std::ostringstream ss;
    ss << in.rdbuf();
    std::string s = ss.str();
    if (!s.empty() && s.back() == '\n') s.pop_back();
    return s;
}

// Tokenizes like llama.cpp's common_tokenize(ctx, text, add_special = true, parse_special = false).
std::vector<tfu_token> tokenize(const tfu_model* mdl, const std::string& text) {
    std::vector<tfu_token> toks(text.size() + 16);
    size_t n = 0;
    tfu_status st = tfu_tokenize(mdl, text.data(), text.size(), true, false, toks.data(), toks.size(), &n);
    if (st == TFU_STATUS_BUFFER_TOO_SMALL) {
        toks.resize(n);
        st = tfu_tokenize(mdl, text.data(), text.size(), true, false, toks.data(), toks.size(), &n);
    }
    check(st, "tokenizing the text");
    toks.resize(n);
    return toks;
}

struct handles {
    tfu_engine* eng = nullptr;
    tfu_model* mdl = nullptr;
    tfu_session* ses = nullptr;
    ~handles() {
        tfu_session_destroy(ses);
        tfu_model_unload(mdl);
        tfu_engine_destroy(eng);
    }
};

// Checks that a base file describes the same evaluation as this run; returns the number of chunks to compare.
int32_t check_base(const base_reader& br, const tfu_model_info& info, tfu_token chunk_bos,
                   const std::vector<tfu_token>& tokens, int32_t n_ctx, int32_t n_chunks_opt, const std::string& path) {
    const base_header& h = br.header();
    const std::string pre = "base file " + path + " does not match this run: ";
    if (int64_t(h.n_vocab) != info.n_vocab)
        throw std::runtime_error(pre + "its vocabulary has " + std::to_string(h.n_vocab) + " tokens, the model's " +
                                 std::to_string(info.n_vocab));
    if (int64_t(h.n_ctx) != n_ctx)
        throw std::runtime_error(pre + "it was computed with -c " + std::to_string(h.n_ctx) + ", this run uses -c " +
                                 std::to_string(n_ctx));
    if (h.bos != chunk_bos)
        throw std::runtime_error(pre + "its chunks start with token " + std::to_string(h.bos) + ", this run's with " +
                                 std::to_string(chunk_bos));
    int32_t n_chunk = int32_t(h.n_chunk);
    if (n_chunks_opt > 0) {
        if (n_chunks_opt > n_chunk)
            throw std::runtime_error(pre + "--chunks " + std::to_string(n_chunks_opt) + " but it holds only " +
                                     std::to_string(n_chunk) + " chunks");
        n_chunk = n_chunks_opt;
    }
    const size_t n_tok = size_t(n_chunk) * size_t(n_ctx);
    if (tokens.size() < n_tok)
        throw std::runtime_error(pre + "the text has " + std::to_string(tokens.size()) + " tokens, the base " +
                                 std::to_string(n_tok));
    for (size_t i = 0; i < n_tok; ++i)
        if (tokens[i] != br.tokens()[i])
            throw std::runtime_error(pre + "token " + std::to_string(i) + " is " + std::to_string(tokens[i]) +
                                     " here and " + std::to_string(br.tokens()[i]) +
                                     " in the base (different text or tokenizer)");
    return n_chunk;
}

// "kv: K q8 V q4, 360.0 bytes/token (46080 bytes, 128 tokens)": what the session's cache holds after a whole
// chunk (kv_bytes / n_past from tfu_session_get_stats; includes the f16 tail that q4 keys keep per session).
void print_kv_line(const tfu_session* ses, const options& o) {
    tfu_session_stats st{};
    st.struct_size = sizeof st;
    check(tfu_session_get_stats(ses, &st), "session stats");
    const double per_token = st.n_past > 0 ? double(st.kv_bytes) / double(st.n_past) : 0.0;
    std::fprintf(stderr, "kv: K %s V %s, %.1f bytes/token (%llu bytes, %d tokens)", kv_type_name(o.kv_type_k),
                 kv_type_name(o.kv_type_v), per_token, static_cast<unsigned long long>(st.kv_bytes), st.n_past);
    if (st.n_evictions > 0)
        std::fprintf(stderr, "; the policy dropped %llu tokens in %llu evictions",
                     static_cast<unsigned long long>(st.n_evicted_tokens), static_cast<unsigned long long>(st.n_evictions));
    std::fprintf(stderr, "\n");
}

int run(const options& o) {
    const std::string text = read_text(o.text);

    handles h;
    tfu_engine_params ep = tfu_engine_params_default();
    ep.backend = o.backend;
    ep.n_threads = o.n_threads;
    check(tfu_engine_create(&ep, &h.eng), "creating the engine");
    check(tfu_model_load(h.eng, o.model.c_str(), nullptr, &h.mdl), "loading " + o.model);
    tfu_model_info info{};
    info.struct_size = sizeof info;
    check(tfu_model_get_info(h.mdl, &info), "model info");

    std::vector<tfu_token> tokens = tokenize(h.mdl, text);
    if (info.add_eos && !tokens.empty() && tokens.back() == info.eos) tokens.pop_back();  // text, not a turn
    const bool add_bos = info.add_bos && info.bos != TFU_TOKEN_NONE;
    const tfu_token chunk_bos = add_bos ? info.bos : TFU_TOKEN_NONE;

    std::unique_ptr<base_reader> reader;
    int32_t n_ctx = o.n_ctx;
    if (!o.kl_base.empty() && !o.save_base) {
        reader = std::make_unique<base_reader>(o.kl_base);
        if (!o.n_ctx_given) n_ctx = int32_t(reader->header().n_ctx);
    }
    if (tokens.size() < 2 * size_t(n_ctx))
        throw std::runtime_error("the text tokenizes to " + std::to_string(tokens.size()) + " tokens; perplexity with " +
                                 "-c " + std::to_string(n_ctx) + " needs at least " + std::to_string(2 * n_ctx));
    if (n_ctx > info.n_ctx_train)
        std::fprintf(stderr, "warning: -c %d is longer than the model's training context (%d)\n", n_ctx,
                     info.n_ctx_train);
    int32_t n_chunk = int32_t(tokens.size() / size_t(n_ctx));
    if (o.n_chunks > 0 && o.n_chunks < n_chunk) n_chunk = o.n_chunks;
    if (reader) n_chunk = check_base(*reader, info, chunk_bos, tokens, n_ctx, o.n_chunks, o.kl_base);

    const int32_t first = n_ctx / 2;            // scored positions: first .. n_ctx-2, predicting first+1 .. n_ctx-1
    const int32_t n_scored = n_ctx - 1 - first;  // per chunk
    const int32_t n_vocab = info.n_vocab;

    std::unique_ptr<base_writer> writer;
    const uint32_t top_k = uint32_t(o.top_k > 0 ? std::min(o.top_k, n_vocab) : std::min(n_vocab, 1024));
    if (o.save_base) {
        base_header bh;
        bh.n_vocab = uint32_t(n_vocab);
        bh.n_ctx = uint32_t(n_ctx);
        bh.n_chunk = uint32_t(n_chunk);
        bh.top_k = top_k;
        bh.first = uint32_t(first);
        bh.bos = chunk_bos;
        writer = std::make_unique<base_writer>(
            o.kl_base, bh, std::vector<int32_t>(tokens.begin(), tokens.begin() + long(n_chunk) * n_ctx));
    }

    tfu_session_params sp = tfu_session_params_default();
    sp.n_ctx = o.kv_window > 0 ? std::min(o.kv_window, n_ctx) : n_ctx;
    sp.n_batch = o.n_batch > 0 ? o.n_batch : n_ctx;
    sp.kv_type_k = o.kv_type_k;
    sp.kv_type_v = o.kv_type_v;
    sp.kv_policy = o.kv_policy;
    sp.kv_n_sink = o.kv_sink;
    sp.kv_n_recent = o.kv_recent;
    sp.kv_chunk = o.kv_chunk;
    check(tfu_session_create(h.mdl, &sp, &h.ses), "creating a session with -c " + std::to_string(n_ctx) +
                                                       ", KV cache K " + kv_type_name(o.kv_type_k) + " V " +
                                                       kv_type_name(o.kv_type_v));

    std::fprintf(stderr,
                 "perplexity: %s, backend %s, KV cache K %s V %s%s, %zu tokens, %d chunks of %d, scoring %d tokens "
                 "per chunk%s\n",
                 o.model.c_str(), tfu_engine_backend_name(h.eng), kv_type_name(o.kv_type_k),
                 kv_type_name(o.kv_type_v),
                 o.kv_policy != TFU_KV_POLICY_REFUSE
                     ? (", policy " + std::string(kv_policy_name(o.kv_policy)) + " in " + std::to_string(sp.n_ctx) +
                        " tokens, " + std::to_string(o.kv_sink) + " sinks").c_str()
                     : "",
                 tokens.size(), n_chunk, n_ctx, n_scored, add_bos ? ", BOS first" : "");

    std::vector<tfu_token> chunk(static_cast<size_t>(n_ctx));
    std::vector<float> logits(size_t(n_ctx - first) * size_t(n_vocab));  // (n_ctx - first, n_vocab)
    std::vector<float> lp(static_cast<size_t>(n_vocab));
    nll_accum acc;
    kl_accum kl(n_vocab);
    base_token bt;
    const auto t0 = std::chrono::steady_clock::now();
    if (reader)
        std::fprintf(stderr, "chunk          PPL                ln(PPL(Q)/PPL(base))          KL divergence"
                             "              RMS dp                 same top\n");
    for (int32_t c = 0; c < n_chunk; ++c) {
        std::copy(tokens.begin() + long(c) * n_ctx, tokens.begin() + long(c + 1) * n_ctx, chunk.begin());
        if (add_bos) chunk[0] = info.bos;  // llama.cpp: every chunk starts with BOS
        check(tfu_session_reset(h.ses), "resetting the session");
        check(tfu_session_add_tokens(h.ses, chunk.data(), size_t(first)), "chunk " + std::to_string(c + 1));
        check(tfu_session_eval_logits(h.ses, chunk.data() + first, size_t(n_ctx - first), logits.data()),
              "evaluating chunk " + std::to_string(c + 1));
        for (int32_t j = 0; j < n_scored; ++j) {
            const float* row = logits.data() + size_t(j) * size_t(n_vocab);  // position first + j
            const tfu_token target = chunk[size_t(first + j + 1)];
            const row_stats rs = row_summary(row, n_vocab);
            acc.add(rs.lse - double(row[target]));
            if (writer || reader) {
                log_probs(row, n_vocab, rs, lp.data());
                if (writer) {
                    make_base_token(lp.data(), n_vocab, target, top_k, bt);
                    writer->write(bt);
                } else {
                    reader->read(bt);
                    kl.add(bt, lp.data(), rs.argmax, target);
                }
            }
        }
        if (c == 0) {
            const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            std::fprintf(stderr, "perplexity: %.2f seconds per pass - ETA %.2f minutes\n", s, s * n_chunk / 60.0);
            print_kv_line(h.ses, o);
        }
        if (reader) kl.print_chunk_line(stderr, c + 1);
        else std::fprintf(stderr, "[%d]%.4f,", c + 1, acc.ppl());
        std::fflush(stderr);
    }
    std::fprintf(stderr, "\n");
    if (writer) {
        writer->finish();
        std::fprintf(stderr, "perplexity: saved the base log-probabilities (top %u) of %zu tokens to %s\n", top_k,
                     acc.count, o.kl_base.c_str());
    }
    std::printf("PPL = %.4f +/- %.5f\n", acc.ppl(), acc.ppl_err());
    if (reader) {
        std::printf("\n");
        kl.print_final(stdout);
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    options o;
    try {
        o = parse_options(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "tfusion-perplexity: %s\n\n%s", e.what(), usage_text());
        return 2;
    }
    if (o.help) {
        std::fputs(usage_text(), stdout);
        return 0;
    }
    try {
        return run(o);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "\ntfusion-perplexity: error: %s\n", e.what());
        return 1;
    }
}
