// Command-line options of tfusion-perplexity: strict parsing (whole-string numbers, ranges, known flags).
#include "options.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace tfu::ppl {

namespace {

int32_t parse_int(const std::string& flag, const char* s, long lo, long hi) {
    errno = 0;
    char* end = nullptr;
    const long v = std::strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        throw std::invalid_argument(flag + " wants an integer in " + std::to_string(lo) + " .. " +
                                    std::to_string(hi) + ", got '" + s + "'");
    return int32_t(v);
}

// A KV cache format by name (the names of llama.cpp's -ctk/-ctv where they mean the same thing).
tfu_kv_type parse_kv_type(const std::string& flag, const std::string& v) {
    if (v == "f16") return TFU_KV_F16;
    if (v == "bf16") return TFU_KV_BF16;
    if (v == "q8") return TFU_KV_Q8;
    if (v == "q4") return TFU_KV_Q4;
    throw std::invalid_argument(flag + ": unknown KV cache type '" + v + "' (f16, bf16, q8, q4)");
}

}  // namespace

const char* kv_type_name(tfu_kv_type t) {
    switch (t) {
        case TFU_KV_F16: return "f16";
        case TFU_KV_BF16: return "bf16";
        case TFU_KV_Q8: return "q8";
        case TFU_KV_Q4: return "q4";
    }
    return "?";
}

const char* kv_policy_name(tfu_kv_policy p) {
    switch (p) {
        case TFU_KV_POLICY_REFUSE: return "refuse";
        case TFU_KV_POLICY_SLIDING_WINDOW: return "window";
        case TFU_KV_POLICY_H2O: return "h2o";
        case TFU_KV_POLICY_CHUNK_SUMMARY: return "summary";
    }
    return "?";
}

const char* usage_text() {
    return "usage: tfusion-perplexity -m MODEL -f TEXT [-c N_CTX] [-b N_BATCH] [-t THREADS] [--chunks N]\n"
           "                          [--kl-base FILE [--save-base] [--kl-top-k K]] [--backend NAME]\n"
           "                          [-ctk TYPE] [-ctv TYPE] [--kv-policy P [--kv-window N] [--kv-sink N] [--kv-recent N]\n"
           "                          [--kv-chunk N]]\n"
           "\n"
           "Perplexity over TEXT the way llama.cpp's llama-perplexity computes it: the text is tokenized (with BOS\n"
           "if the vocabulary adds one), cut into chunks of N_CTX tokens whose first token becomes BOS, each chunk\n"
           "is evaluated in a fresh context and its second half is scored. Progress on stderr, the result\n"
           "'PPL = x +/- y' on stdout.\n"
           "\n"
           "  -m, --model FILE   GGUF model\n"
           "  -f, --file FILE    UTF-8 text (one trailing newline is dropped, as llama.cpp does)\n"
           "  -c, --ctx-size N   chunk length in tokens (default 512; with --kl-base: the base file's)\n"
           "  -b, --batch-size N prefill batch in tokens (default N_CTX)\n"
           "  -t, --threads N    CPU threads (default 0 = all cores)\n"
           "      --chunks N     evaluate at most N chunks (default all)\n"
           "      --kl-base FILE with --save-base: write this run's log-probabilities to FILE; without: compare\n"
           "                     this run against FILE (KL divergence, delta-p, same top token, PPL ratio)\n"
           "      --save-base    see --kl-base\n"
           "      --kl-top-k K   log-probs kept per token in a saved base (default min(n_vocab, 1024))\n"
           "      --backend NAME auto (default), cpu, cpu-ref, cuda, vulkan\n"
           "  -ctk, --cache-type-k TYPE  KV cache format of keys: f16 (default), bf16, q8, q4\n"
           "  -ctv, --cache-type-v TYPE  KV cache format of values: f16 (default), bf16, q8, q4\n"
           "                     (compare formats with --kl-base FILE against a saved f16 run)\n"
           "      --kv-policy P  what a full cache does: refuse (default); window (sliding window with attention\n"
           "                     sinks); h2o (drop the tokens with the least accumulated attention); summary\n"
           "                     (mean-pool old chunks into one slot each); a quarter of the cache at a time\n"
           "      --kv-window N  with a policy: the cache holds N tokens (default N_CTX: nothing is dropped);\n"
           "                     N < N_CTX measures what the policy costs\n"
           "      --kv-sink N    tokens kept at the start (default 4; window: rounded up to a 32-token block)\n"
           "      --kv-recent N  h2o, summary: newest tokens always kept (default a quarter of the cache)\n"
           "      --kv-chunk N   summary: tokens pooled per slot (default 8)\n"
           "  -h, --help         this text\n";
}

options parse_options(int argc, char** argv) {
    options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> const char* {
            if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
            return argv[++i];
        };
        if (a == "-h" || a == "--help") {
            o.help = true;
        } else if (a == "-m" || a == "--model") {
            o.model = value();
        } else if (a == "-f" || a == "--file") {
            o.text = value();
        } else if (a == "-c" || a == "--ctx-size") {
            o.n_ctx = parse_int(a, value(), 4, 1 << 20);
            o.n_ctx_given = true;
        } else if (a == "-b" || a == "--batch-size") {
            o.n_batch = parse_int(a, value(), 1, 1 << 20);
        } else if (a == "-t" || a == "--threads") {
            o.n_threads = parse_int(a, value(), 0, 1024);
        } else if (a == "--chunks") {
            o.n_chunks = parse_int(a, value(), 1, 1 << 24);
        } else if (a == "--kl-base") {
            o.kl_base = value();
        } else if (a == "--save-base") {
            o.save_base = true;
        } else if (a == "--kl-top-k") {
            o.top_k = parse_int(a, value(), 1, 1 << 24);
        } else if (a == "-ctk" || a == "--cache-type-k") {
            o.kv_type_k = parse_kv_type(a, value());
        } else if (a == "-ctv" || a == "--cache-type-v") {
            o.kv_type_v = parse_kv_type(a, value());
        } else if (a == "--kv-policy") {
            const std::string pv = value();
            if (pv == "refuse") o.kv_policy = TFU_KV_POLICY_REFUSE;
            else if (pv == "window") o.kv_policy = TFU_KV_POLICY_SLIDING_WINDOW;
            else if (pv == "h2o") o.kv_policy = TFU_KV_POLICY_H2O;
            else if (pv == "summary") o.kv_policy = TFU_KV_POLICY_CHUNK_SUMMARY;
            else throw std::invalid_argument("--kv-policy: unknown policy '" + pv + "' (refuse, window, h2o, summary)");
        } else if (a == "--kv-window") {
            o.kv_window = parse_int(a, value(), 1, 1 << 24);
        } else if (a == "--kv-sink") {
            o.kv_sink = parse_int(a, value(), 0, 1 << 24);
        } else if (a == "--kv-recent") {
            o.kv_recent = parse_int(a, value(), 0, 1 << 24);
        } else if (a == "--kv-chunk") {
            o.kv_chunk = parse_int(a, value(), 2, 1 << 24);
        } else if (a == "--backend") {
            const std::string b = value();
            if (b == "auto") o.backend = TFU_BACKEND_AUTO;
            else if (b == "cpu") o.backend = TFU_BACKEND_CPU;
            else if (b == "cpu-ref") o.backend = TFU_BACKEND_CPU_REF;
            else if (b == "cuda") o.backend = TFU_BACKEND_CUDA;
            else if (b == "vulkan") o.backend = TFU_BACKEND_VULKAN;
            else throw std::invalid_argument("--backend: unknown backend '" + b + "' (auto, cpu, cpu-ref, cuda, vulkan)");
        } else {
            throw std::invalid_argument("unknown argument '" + a + "'");
        }
    }
    if (o.help) return o;
    if (o.model.empty()) throw std::invalid_argument("no model: pass -m MODEL");
    if (o.text.empty()) throw std::invalid_argument("no text: pass -f TEXT");
    if (o.save_base && o.kl_base.empty()) throw std::invalid_argument("--save-base needs --kl-base FILE");
    if (o.kv_window != 0 && o.kv_policy == TFU_KV_POLICY_REFUSE)
        throw std::invalid_argument("--kv-window needs an eviction policy (--kv-policy window, h2o or summary)");
    if (o.top_k != 0 && !o.save_base) throw std::invalid_argument("--kl-top-k applies only with --save-base");
    return o;
}

}  // namespace tfu::ppl
