// tfusion-bench command line parsing (see bench_args.h); option names and list syntax follow llama-bench.
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unistd.h>

#include "bench_args.h"

namespace tfu_bench {

namespace {

std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> out;
    size_t start = 0;
    while (true) {
        const size_t comma = s.find(',', start);
        out.push_back(s.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    return out;
}

bool parse_int(const std::string& s, long lo, long hi, int32_t* out) {
    if (s.empty()) return false;
    char* end = nullptr;
    errno = 0;
    const long v = std::strtol(s.c_str(), &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi) return false;
    *out = int32_t(v);
    return true;
}

// A comma list of integers in [lo, hi]; prints what is wrong and returns false on a bad element.
bool parse_list(const char* opt, const std::string& v, long lo, long hi, std::vector<int32_t>* out) {
    out->clear();
    for (const std::string& e : split(v)) {
        int32_t n = 0;
        if (!parse_int(e, lo, hi, &n)) {
            std::fprintf(stderr, "tfusion-bench: %s: '%s' is not an integer in [%ld, %ld] (in '%s')\n", opt,
                         e.c_str(), lo, hi, v.c_str());
            return false;
        }
        out->push_back(n);
    }
    return true;
}

// A comma list of KV cache formats; prints what is wrong and returns false on a bad element.
bool parse_kv_types(const std::string& opt, const std::string& v, std::vector<tfu_kv_type>* out) {
    out->clear();
    for (const std::string& e : split(v)) {
        if (e == "f16") out->push_back(TFU_KV_F16);
        else if (e == "bf16") out->push_back(TFU_KV_BF16);
        else if (e == "q8") out->push_back(TFU_KV_Q8);
        else if (e == "q4") out->push_back(TFU_KV_Q4);
        else {
            std::fprintf(stderr, "tfusion-bench: %s: unknown KV cache type '%s' (f16, bf16, q8, q4; in '%s')\n",
                         opt.c_str(), e.c_str(), v.c_str());
            return false;
        }
    }
    return true;
}

}  // namespace

void usage(FILE* f) {
    std::fprintf(f,
                 "usage: tfusion-bench -m MODEL[,MODEL...] [-m MODEL ...] [options]\n"
                 "  -p N[,N...]      prefill tests: prompt lengths (default 512; 0 = none)\n"
                 "  -n N[,N...]      decode tests: tokens to generate (default 128; 0 = none)\n"
                 "  -d N[,N...]      context depths: tokens already in the context before each test, filled by an\n"
                 "                   untimed prefill; rows are named like 'tg128 @ d1024' (default 0)\n"
                 "  -t N[,N...]      CPU threads (default 0 = number of cores)\n"
                 "  -b N             prompt tokens per prefill step (default 512)\n"
                 "  -r N             repetitions; t/s is mean +/- sample stddev (default 5)\n"
                 "  --sessions N     tg tests decode N sessions at once, one tfu_session_decode_batch step for all\n"
                 "                   (continuous batching; 1 .. TFU_DECODE_BATCH_MAX, default 1); t/s is then the\n"
                 "                   aggregate (N x tokens / time) and the test is named like 'tg128 x4'\n"
                 "  --backend B[,B]  auto|cpu|cpu-ref|cuda|vulkan (default auto)\n"
                 "  -ctk, --cache-type-k T[,T]  KV cache format of keys: f16|bf16|q8|q4 (default f16)\n"
                 "  -ctv, --cache-type-v T[,T]  KV cache format of values (default f16); every K x V pair runs\n"
                 "  --kv-policy P    refuse (default), window, h2o or summary: what a full cache does\n"
                 "  --kv-window N    with a policy: the cache holds N tokens (default: what the longest test needs),\n"
                 "                   so tests past N measure decoding with evictions\n"
                 "  --no-warmup      skip the untimed run before each test\n"
                 "  -v, --verbose    the library's log lines (backend, device, timings) on stderr\n"
                 "  --json FILE|-    also write JSON (one object per test, with every sample); '-' = stdout,\n"
                 "                   the table then goes to stderr\n"
                 "  --seed S         seed of the random prompt tokens (default 1234)\n");
}

const char* backend_arg_name(tfu_backend_kind b) {
    switch (b) {
        case TFU_BACKEND_AUTO: return "auto";
        case TFU_BACKEND_CPU: return "cpu";
        case TFU_BACKEND_CPU_REF: return "cpu-ref";
        case TFU_BACKEND_CUDA: return "cuda";
        case TFU_BACKEND_VULKAN: return "vulkan";
    }
    return "?";
}

const char* kv_type_arg_name(tfu_kv_type t) {
    switch (t) {
        case TFU_KV_F16: return "f16";
        case TFU_KV_BF16: return "bf16";
        case TFU_KV_Q8: return "q8";
        case TFU_KV_Q4: return "q4";
    }
    return "?";
}

int parse_args(int argc, char** argv, options& o) {
    bool models_given = false;
    constexpr long k_max_tokens = 1L << 20;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "-h" || a == "--help") return -1;
        if (a == "--no-warmup") {
            o.warmup = false;
            continue;
        }
        if (a == "-v" || a == "--verbose") {
            o.verbose = true;
            continue;
        }
        const bool known = a == "-m" || a == "--model" || a == "-p" || a == "-n" || a == "-d" || a == "-t" ||
                           a == "-b" || a == "-r" || a == "--backend" || a == "--json" || a == "--seed" ||
                           a == "-ctk" || a == "--cache-type-k" || a == "-ctv" || a == "--cache-type-v" ||
                           a == "--kv-policy" || a == "--kv-window" || a == "--sessions";
        if (!known) {
            std::fprintf(stderr, "tfusion-bench: unknown option '%s'\n", a.c_str());
            return 0;
        }
        if (i + 1 >= argc) {
            std::fprintf(stderr, "tfusion-bench: missing value for %s\n", a.c_str());
            return 0;
        }
        const std::string v = argv[++i];
        bool ok = true;
        if (a == "-m" || a == "--model") {
            if (!models_given) o.models.clear();
            models_given = true;
            for (const std::string& m : split(v)) {
                if (m.empty()) {
                    std::fprintf(stderr, "tfusion-bench: -m: empty model path in '%s'\n", v.c_str());
                    return 0;
                }
                o.models.push_back(m);
            }
        } else if (a == "-p") {
            ok = parse_list("-p", v, 0, k_max_tokens, &o.n_prompt);
        } else if (a == "-n") {
            ok = parse_list("-n", v, 0, k_max_tokens, &o.n_gen);
        } else if (a == "-d") {
            ok = parse_list("-d", v, 0, k_max_tokens, &o.depth);
        } else if (a == "-t") {
            ok = parse_list("-t", v, 0, 4096, &o.threads);
        } else if (a == "-b") {
            std::vector<int32_t> b;
            ok = parse_list("-b", v, 1, k_max_tokens, &b) && b.size() == 1;
            if (ok) o.n_batch = b[0];
            else if (b.size() > 1) std::fprintf(stderr, "tfusion-bench: -b takes one value, not a list\n");
        } else if (a == "-r") {
            std::vector<int32_t> r;
            ok = parse_list("-r", v, 1, 100000, &r) && r.size() == 1;
            if (ok) o.reps = r[0];
            else if (r.size() > 1) std::fprintf(stderr, "tfusion-bench: -r takes one value, not a list\n");
        } else if (a == "--sessions") {
            std::vector<int32_t> n;
            ok = parse_list("--sessions", v, 1, TFU_DECODE_BATCH_MAX, &n) && n.size() == 1;
            if (ok) o.n_sessions = n[0];
            else if (n.size() > 1) std::fprintf(stderr, "tfusion-bench: --sessions takes one value, not a list\n");
        } else if (a == "--seed") {
            std::vector<int32_t> s;
            ok = parse_list("--seed", v, 0, 0x7fffffffL, &s) && s.size() == 1;
            if (ok) o.seed = uint32_t(s[0]);
        } else if (a == "-ctk" || a == "--cache-type-k") {
            ok = parse_kv_types(a, v, &o.type_k);
        } else if (a == "-ctv" || a == "--cache-type-v") {
            ok = parse_kv_types(a, v, &o.type_v);
        } else if (a == "--kv-policy") {
            if (v == "refuse") o.kv_policy = TFU_KV_POLICY_REFUSE;
            else if (v == "window") o.kv_policy = TFU_KV_POLICY_SLIDING_WINDOW;
            else if (v == "h2o") o.kv_policy = TFU_KV_POLICY_H2O;
            else if (v == "summary") o.kv_policy = TFU_KV_POLICY_CHUNK_SUMMARY;
            else {
                std::fprintf(stderr, "tfusion-bench: --kv-policy: '%s' is not refuse, window, h2o or summary\n",
                             v.c_str());
                ok = false;
            }
        } else if (a == "--kv-window") {
            std::vector<int32_t> w;
            ok = parse_list("--kv-window", v, 1, k_max_tokens, &w) && w.size() == 1;
            if (ok) o.kv_window = w[0];
        } else if (a == "--json") {
            if (v.empty()) {
                std::fprintf(stderr, "tfusion-bench: --json: empty file name\n");
                return 0;
            }
            o.json = v;
        } else if (a == "--backend") {
            o.backends.clear();
            for (const std::string& b : split(v)) {
                if (b == "auto") o.backends.push_back(TFU_BACKEND_AUTO);
                else if (b == "cpu") o.backends.push_back(TFU_BACKEND_CPU);
                else if (b == "cpu-ref") o.backends.push_back(TFU_BACKEND_CPU_REF);
                else if (b == "cuda") o.backends.push_back(TFU_BACKEND_CUDA);
                else if (b == "vulkan") o.backends.push_back(TFU_BACKEND_VULKAN);
                else {
                    std::fprintf(stderr,
                                 "tfusion-bench: --backend: unknown backend '%s' (auto, cpu, cpu-ref, cuda, vulkan)\n",
                                 b.c_str());
                    return 0;
                }
            }
        }
        if (!ok) return 0;
    }
    if (o.models.empty()) {
        std::fprintf(stderr, "tfusion-bench: -m MODEL is required\n");
        return 0;
    }
    for (const std::string& m : o.models) {
        if (::access(m.c_str(), R_OK) != 0) {
            std::fprintf(stderr, "tfusion-bench: model file '%s': %s\n", m.c_str(), std::strerror(errno));
            return 0;
        }
    }
    bool any_test = false;
    for (int32_t p : o.n_prompt) any_test = any_test || p > 0;
    for (int32_t n : o.n_gen) any_test = any_test || n > 0;
    if (!any_test) {
        std::fprintf(stderr, "tfusion-bench: nothing to run: every -p and -n value is 0\n");
        return 0;
    }
    return 1;
}

}  // namespace tfu_bench
