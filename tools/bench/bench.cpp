// tfusion-bench: prefill and decode speed, time to first token and memory of models, on the public API only.
//
// Runs every combination of model (-m), backend, thread count (-t), KV cache formats (-ctk x -ctv), and test: pp<P> (prefill P prompt tokens)
// and tg<N> (decode N tokens one at a time), each at every context depth (-d: tokens already in the context,
// filled by an untimed prefill; rows named like llama-bench's "tg128 @ d1024"). Prompts are random
// in-vocabulary tokens (no special or end-of-generation tokens), so every repetition does the same work.
// Each test: one untimed warm-up, then -r timed repetitions on the same session after tfu_session_reset;
// t/s is mean ± sample stddev. The table (markdown, llama-bench's layout) goes to stdout, JSON to --json.
// --sessions N (continuous batching): each tg test decodes N sessions, each from its own first token, with one
// tfu_session_decode_batch step for all N per token; its t/s is the aggregate, N * n / time ('tg128 x4').
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <tfusion/tfusion.h>

#include "bench_args.h"
#include "ftype.h"

namespace {

using tfu_bench::options;

// Tokens added to the context size beyond max(depth) + max(p, n): room for BOS and the sampled token.
constexpr int32_t k_ctx_margin = 16;

[[noreturn]] void die(const std::string& what, tfu_status st) {
    std::fprintf(stderr, "tfusion-bench: %s: %s: %s\n", what.c_str(), tfu_status_string(st), tfu_last_error());
    std::exit(1);
}
void check(tfu_status st, const std::string& what) {
    if (st != TFU_STATUS_OK) die(what, st);
}

double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// Peak resident set size of this process in bytes (VmHWM in /proc/self/status), 0 where unavailable.
uint64_t peak_rss_bytes() {
    std::ifstream f("/proc/self/status");
    std::string line;
    while (std::getline(f, line)) {
        if (line.rfind("VmHWM:", 0) == 0) {
            std::istringstream in(line.substr(6));
            uint64_t kib = 0;
            in >> kib;
            return kib * 1024;
        }
    }
    return 0;
}

double mean(const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return v.empty() ? 0.0 : s / double(v.size());
}
double stddev(const std::vector<double>& v) {  // sample standard deviation; 0 for fewer than 2 values
    if (v.size() < 2) return 0.0;
    const double m = mean(v);
    double s = 0;
    for (double x : v) s += (x - m) * (x - m);
    return std::sqrt(s / double(v.size() - 1));
}

struct test_spec {
    bool prefill;   // pp (true) or tg
    int32_t n;      // prompt tokens (pp) or generated tokens (tg)
    int32_t depth;  // tokens in the context before the test
    int32_t n_sessions = 1;  // tg: sessions decoded in one batch per step (--sessions)
    std::string name() const {
        std::string s = (prefill ? "pp" : "tg") + std::to_string(n);
        if (n_sessions > 1) s += " x" + std::to_string(n_sessions);
        if (depth > 0) s += " @ d" + std::to_string(depth);
        return s;
    }
};

// Everything one row of the table and one JSON object report.
struct test_result {
    std::string model_file, model_name, architecture, type, file_type_name, dominant_type, backend;
    std::string type_k, type_v;  // KV cache formats (-ctk, -ctv)
    int64_t file_type = -1;
    uint64_t size_bytes = 0, n_params = 0, peak_rss = 0, engine_memory = 0, kv_bytes = 0;
    int32_t kv_n_past = 0;  // tokens in the cache when kv_bytes was read (after the last repetition)
    int32_t n_ctx_train = 0, n_ctx = 0, threads = 0;
    double load_ms = 0;
    test_spec spec{};
    std::vector<double> ms, tps, ttft_ms;  // per repetition; ttft only for pp tests
};

// Random prompt tokens, never a special or end-of-generation token (a tokenizer would not produce those inside
// text, and EOG could change what a model does next). With with_bos the first token is BOS, where the model has one.
std::vector<tfu_token> random_tokens(const tfu_model* model, const tfu_model_info& info, int32_t n, bool with_bos,
                                     std::mt19937& gen) {
    std::uniform_int_distribution<int32_t> pick(0, info.n_vocab - 1);
    std::vector<tfu_token> t;
    if (n > 0 && with_bos && info.bos != TFU_TOKEN_NONE) t.push_back(info.bos);
    while (int32_t(t.size()) < n) {
        const tfu_token x = pick(gen);
        if (x == info.bos || x == info.eos || x == info.eot || x == info.pad || tfu_model_token_is_eog(model, x))
            continue;
        t.push_back(x);
    }
    return t;
}

struct sample {
    double ms = 0, ttft_ms = 0;
};

// The context of a test's depth, computed once per test and kept in a session file (tfu_session_save); the
// other repetitions load it (bit for bit the same cache) instead of prefilling it again: at 16K tokens the fill
// costs far more than the timed part. Where session files are not available (the contiguous cache of a device
// backend: TFU_STATUS_UNSUPPORTED), every repetition prefills the depth again.
struct depth_snapshot {
    std::string path;
    bool ready = false;
    bool unsupported = false;
};

// Resets the session and fills it to the test's depth (untimed), from the snapshot where there is one.
void fill_depth(tfu_session* ses, const tfu_model* model, const tfu_model_info& info, const test_spec& spec,
                std::mt19937& gen, depth_snapshot& snap) {
    check(tfu_session_reset(ses), "session reset");
    if (spec.depth > 0) {
        const std::vector<tfu_token> fill = random_tokens(model, info, spec.depth, true, gen);
        if (snap.ready) {
            check(tfu_session_load(ses, snap.path.c_str()), "depth snapshot load");
        } else {
            check(tfu_session_add_tokens(ses, fill.data(), fill.size()), "depth fill");
            check(tfu_session_eval(ses), "depth fill eval");
            if (!snap.unsupported) {
                const tfu_status st = tfu_session_save(ses, snap.path.c_str());
                if (st == TFU_STATUS_UNSUPPORTED) snap.unsupported = true;
                else check(st, "depth snapshot save");
                snap.ready = st == TFU_STATUS_OK;
            }
        }
    }
}

// One repetition of a tg test over several sessions (--sessions): each is filled to the depth and given its own
// first token, then n steps each decode all of them in one tfu_session_decode_batch (the tokens each session's
// sampler appended: tokens NULL), sampling timed as in run_once.
sample run_once_batched(const std::vector<tfu_session*>& ss, const tfu_model* model, const tfu_model_info& info,
                        const test_spec& spec, uint32_t seed, depth_snapshot& snap) {
    std::mt19937 gen(seed);
    for (tfu_session* ses : ss) {
        fill_depth(ses, model, info, spec, gen, snap);
        const std::vector<tfu_token> first = random_tokens(model, info, 1, spec.depth == 0, gen);
        check(tfu_session_add_tokens(ses, first.data(), first.size()), "first token");
    }
    sample s;
    const auto t0 = std::chrono::steady_clock::now();
    for (int32_t i = 0; i < spec.n; ++i) {
        check(tfu_session_decode_batch(ss.data(), nullptr, ss.size()), "batched decode");
        tfu_token t = 0;
        if (i + 1 < spec.n)
            for (tfu_session* ses : ss) check(tfu_session_sample(ses, &t), "sample");
    }
    s.ms = ms_since(t0);
    return s;
}

// One repetition of a test on a reset session: untimed prefill to the depth (or its snapshot), then the timed
// part.
sample run_once(tfu_session* ses, const tfu_model* model, const tfu_model_info& info, const test_spec& spec,
                uint32_t seed, depth_snapshot& snap) {
    std::mt19937 gen(seed);
    fill_depth(ses, model, info, spec, gen, snap);
    sample s;
    if (spec.prefill) {
        const std::vector<tfu_token> prompt = random_tokens(model, info, spec.n, spec.depth == 0, gen);
        const auto t0 = std::chrono::steady_clock::now();
        check(tfu_session_add_tokens(ses, prompt.data(), prompt.size()), "prompt");
        check(tfu_session_eval(ses), "prefill");
        s.ms = ms_since(t0);
        // Time to first token as a user sees it: the prefill plus sampling the first token.
        tfu_token t = 0;
        check(tfu_session_sample(ses, &t), "sample");
        s.ttft_ms = ms_since(t0);
    } else {
        // n decode steps of one token each: the first token is BOS (empty context) or a random token, then each
        // step's greedily sampled token is the next step's input, as in a real generation (sampling is timed).
        const std::vector<tfu_token> first = random_tokens(model, info, 1, spec.depth == 0, gen);
        check(tfu_session_add_tokens(ses, first.data(), first.size()), "first token");
        const auto t0 = std::chrono::steady_clock::now();
        for (int32_t i = 0; i < spec.n; ++i) {
            check(tfu_session_eval(ses), "decode");
            tfu_token t = 0;
            if (i + 1 < spec.n) check(tfu_session_sample(ses, &t), "sample");
        }
        s.ms = ms_since(t0);
    }
    return s;
}

std::string human_bytes(uint64_t b) {
    char buf[64];
    if (b >= (1ull << 30)) std::snprintf(buf, sizeof buf, "%.2f GiB", double(b) / double(1ull << 30));
    else if (b >= (1ull << 20)) std::snprintf(buf, sizeof buf, "%.2f MiB", double(b) / double(1ull << 20));
    else std::snprintf(buf, sizeof buf, "%.2f KiB", double(b) / 1024.0);
    return buf;
}

std::string human_count(uint64_t n) {
    char buf[64];
    if (n >= 1000000000ull) std::snprintf(buf, sizeof buf, "%.2f B", double(n) / 1e9);
    else if (n >= 1000000ull) std::snprintf(buf, sizeof buf, "%.2f M", double(n) / 1e6);
    else std::snprintf(buf, sizeof buf, "%.2f K", double(n) / 1e3);
    return buf;
}

std::string json_str(const std::string& s) {
    std::string out = "\"";
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += char(c);
        } else if (c < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
        } else {
            out += char(c);
        }
    }
    return out + "\"";
}

std::string json_num(double v) {
    if (!std::isfinite(v)) return "null";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    return buf;
}

std::string json_list(const std::vector<double>& v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + json_num(v[i]);
    return s + "]";
}

std::string to_json(const std::vector<test_result>& rows, const options& o) {
    std::ostringstream j;
    j << "[\n";
    for (size_t i = 0; i < rows.size(); ++i) {
        const test_result& r = rows[i];
        const bool pp = r.spec.prefill;
        j << "  {\n"
          << "    \"model_file\": " << json_str(r.model_file) << ",\n"
          << "    \"model_name\": " << json_str(r.model_name) << ",\n"
          << "    \"architecture\": " << json_str(r.architecture) << ",\n"
          << "    \"model_type\": " << json_str(r.type) << ",\n"
          << "    \"file_type\": " << (r.file_type >= 0 ? std::to_string(r.file_type) : "null") << ",\n"
          << "    \"file_type_name\": " << json_str(r.file_type_name) << ",\n"
          << "    \"dominant_tensor_type\": " << json_str(r.dominant_type) << ",\n"
          << "    \"model_size\": " << r.size_bytes << ",\n"
          << "    \"model_n_params\": " << r.n_params << ",\n"
          << "    \"n_ctx_train\": " << r.n_ctx_train << ",\n"
          << "    \"backend\": " << json_str(r.backend) << ",\n"
          << "    \"n_threads\": " << r.threads << ",\n"
          << "    \"n_ctx\": " << r.n_ctx << ",\n"
          << "    \"n_batch\": " << o.n_batch << ",\n"
          << "    \"type_k\": " << json_str(r.type_k) << ",\n"
          << "    \"type_v\": " << json_str(r.type_v) << ",\n"
          << "    \"test\": " << json_str(r.spec.name()) << ",\n"
          << "    \"n_prompt\": " << (pp ? r.spec.n : 0) << ",\n"
          << "    \"n_gen\": " << (pp ? 0 : r.spec.n) << ",\n"
          << "    \"n_depth\": " << r.spec.depth << ",\n"
          << "    \"n_sessions\": " << r.spec.n_sessions << ",\n"
          << "    \"repetitions\": " << r.ms.size() << ",\n"
          << "    \"warmup\": " << (o.warmup ? "true" : "false") << ",\n"
          << "    \"seed\": " << o.seed << ",\n"
          << "    \"avg_ts\": " << json_num(mean(r.tps)) << ",\n"
          << "    \"stddev_ts\": " << json_num(stddev(r.tps)) << ",\n"
          << "    \"samples_ts\": " << json_list(r.tps) << ",\n"
          << "    \"avg_ms\": " << json_num(mean(r.ms)) << ",\n"
          << "    \"stddev_ms\": " << json_num(stddev(r.ms)) << ",\n"
          << "    \"samples_ms\": " << json_list(r.ms) << ",\n"
          << "    \"ttft_avg_ms\": " << (pp ? json_num(mean(r.ttft_ms)) : "null") << ",\n"
          << "    \"ttft_stddev_ms\": " << (pp ? json_num(stddev(r.ttft_ms)) : "null") << ",\n"
          << "    \"ttft_samples_ms\": " << (pp ? json_list(r.ttft_ms) : "null") << ",\n"
          << "    \"load_ms\": " << json_num(r.load_ms) << ",\n"
          << "    \"peak_rss_bytes\": " << r.peak_rss << ",\n"
          << "    \"engine_memory_bytes\": " << r.engine_memory << ",\n"
          << "    \"kv_bytes\": " << r.kv_bytes << ",\n"
          << "    \"kv_n_past\": " << r.kv_n_past << ",\n"
          << "    \"kv_bytes_per_token\": "
          << (r.kv_n_past > 0 ? json_num(double(r.kv_bytes) / double(r.kv_n_past)) : "null") << ",\n"
          << "    \"library_version\": " << json_str(tfu_version_string()) << "\n"
          << "  }" << (i + 1 < rows.size() ? "," : "") << "\n";
    }
    j << "]\n";
    return j.str();
}

void print_header(FILE* out) {
    std::fprintf(out, "| %-24s | %-8s | %10s | %10s | %-8s | %7s | %-6s | %-6s | %-16s | %20s |\n", "model", "type",
                 "size", "params", "backend", "threads", "type_k", "type_v", "test", "t/s");
    std::fprintf(out, "| %s | %s | %s: | %s: | %s | %s: | %s | %s | %s | %s: |\n", std::string(24, '-').c_str(),
                 std::string(8, '-').c_str(), std::string(9, '-').c_str(), std::string(9, '-').c_str(),
                 std::string(8, '-').c_str(), std::string(6, '-').c_str(), std::string(6, '-').c_str(),
                 std::string(6, '-').c_str(), std::string(16, '-').c_str(), std::string(19, '-').c_str());
    std::fflush(out);
}

void print_row(FILE* out, const test_result& r) {
    char tps[64];
    std::snprintf(tps, sizeof tps, "%.2f ± %.2f", mean(r.tps), stddev(r.tps));
    // "±" is 2 bytes in UTF-8, one column: pad by one more byte.
    std::fprintf(out, "| %-24.24s | %-8.8s | %10s | %10s | %-8s | %7d | %-6s | %-6s | %-16s | %21s |\n",
                 r.model_name.c_str(), r.type.c_str(), human_bytes(r.size_bytes).c_str(),
                 human_count(r.n_params).c_str(), r.backend.c_str(), r.threads, r.type_k.c_str(), r.type_v.c_str(),
                 r.spec.name().c_str(), tps);
    std::fflush(out);
}

std::string base_name(const std::string& path) {
    const size_t slash = path.rfind('/');
    std::string b = slash == std::string::npos ? path : path.substr(slash + 1);
    if (b.size() > 5 && b.compare(b.size() - 5, 5, ".gguf") == 0) b.resize(b.size() - 5);
    return b;
}

}  // namespace

int main(int argc, char** argv) {
    options o;
    const int parsed = tfu_bench::parse_args(argc, argv, o);
    if (parsed < 0) {
        tfu_bench::usage(stdout);
        return 0;
    }
    if (parsed == 0) {
        std::fprintf(stderr, "(tfusion-bench --help for usage)\n");
        return 2;
    }
    if (o.verbose)
        tfu_set_log_callback([](tfu_log_level, const char* msg, void*) { std::fprintf(stderr, "tfusion: %s\n", msg); },
                             TFU_LOG_INFO, nullptr);
    if (tfu_version() != TFU_VERSION_NUMBER)
        std::fprintf(stderr, "tfusion-bench: warning: header %s, library %s\n", TFU_VERSION_STRING,
                     tfu_version_string());

    // Tests in llama-bench's order: prefill sizes, then decode sizes, each at every depth.
    std::vector<test_spec> tests;
    int32_t max_tokens = 0, max_depth = 0;
    for (int32_t p : o.n_prompt)
        if (p > 0)
            for (int32_t d : o.depth) tests.push_back({true, p, d});
    for (int32_t n : o.n_gen)
        if (n > 0)
            for (int32_t d : o.depth) tests.push_back({false, n, d, o.n_sessions});
    for (const test_spec& t : tests) max_tokens = std::max(max_tokens, t.n), max_depth = std::max(max_depth, t.depth);
    // Every -ctk x -ctv pair, K outer (llama-bench's order).
    std::vector<std::pair<tfu_kv_type, tfu_kv_type>> kv_pairs;
    for (tfu_kv_type k : o.type_k)
        for (tfu_kv_type v : o.type_v) kv_pairs.emplace_back(k, v);
    // One context size holds every test: the deepest fill plus the longest test plus a margin.
    const int32_t n_ctx = max_depth + max_tokens + k_ctx_margin;

    if (!o.json.empty() && o.json != "-" && !std::ofstream(o.json)) {  // fail now, not after the run
        std::fprintf(stderr, "tfusion-bench: --json: cannot write '%s'\n", o.json.c_str());
        return 1;
    }
    FILE* out = o.json == "-" ? stderr : stdout;
    print_header(out);
    std::vector<test_result> rows;
    for (size_t mi = 0; mi < o.models.size(); ++mi) {
        const std::string& path = o.models[mi];
        for (tfu_backend_kind backend : o.backends) {
            for (int32_t threads : o.threads) {
                tfu_engine_params ep = tfu_engine_params_default();
                ep.backend = backend;
                ep.n_threads = threads;
                tfu_engine* eng = nullptr;
                check(tfu_engine_create(&ep, &eng), std::string("engine (backend ") +
                                                        tfu_bench::backend_arg_name(backend) + ", " +
                                                        std::to_string(threads) + " threads)");
                const auto t_load = std::chrono::steady_clock::now();
                tfu_model_params mp = tfu_model_params_default();
                tfu_model* model = nullptr;
                check(tfu_model_load(eng, path.c_str(), &mp, &model), path);
                const double load_ms = ms_since(t_load);
                tfu_model_info info{};
                info.struct_size = sizeof info;
                check(tfu_model_get_info(model, &info), path + ": model info");
                if (info.n_ctx_train > 0 && n_ctx > info.n_ctx_train) {
                    std::fprintf(stderr,
                                 "tfusion-bench: %s: depth %d + %d tokens + margin %d = context %d exceeds the "
                                 "model's training context %d; lower -d, -p or -n\n",
                                 path.c_str(), max_depth, max_tokens, k_ctx_margin, n_ctx, info.n_ctx_train);
                    return 1;
                }
                test_result base;
                base.model_file = path;
                base.model_name = info.name[0] ? info.name : base_name(path);
                base.architecture = info.architecture;
                base.file_type = info.file_type;
                base.file_type_name = tfu_bench::llama_ftype_name(info.file_type);
                base.dominant_type = tfu_bench::type_label(info.weight_type);
                base.type = !base.file_type_name.empty() ? base.file_type_name : base.dominant_type;
                base.backend = tfu_engine_backend_name(eng);
                base.size_bytes = info.size_bytes;
                base.n_params = info.n_params;
                base.n_ctx_train = info.n_ctx_train;
                base.n_ctx = o.kv_window > 0 ? o.kv_window : n_ctx;
                base.threads = threads > 0 ? threads : int32_t(std::max(1u, std::thread::hardware_concurrency()));
                base.load_ms = load_ms;

                for (const std::pair<tfu_kv_type, tfu_kv_type>& kv : kv_pairs) {
                    const tfu_kv_type type_k = kv.first, type_v = kv.second;
                    tfu_session_params sp = tfu_session_params_default();
                    sp.n_ctx = o.kv_window > 0 ? o.kv_window : n_ctx;
                    sp.n_batch = std::min(o.n_batch, sp.n_ctx);
                    sp.kv_policy = o.kv_policy;
                    sp.sampler.temperature = 0.0f;  // greedy: deterministic, and the cheapest sampler
                    sp.kv_type_k = type_k;
                    sp.kv_type_v = type_v;
                    tfu_session* ses = nullptr;
                    check(tfu_session_create(model, &sp, &ses), path + ": session (n_ctx " + std::to_string(n_ctx) +
                                                                    ", KV cache K " +
                                                                    tfu_bench::kv_type_arg_name(type_k) + " V " +
                                                                    tfu_bench::kv_type_arg_name(type_v) + ")");
                    // --sessions: the other sessions of the tg tests, with the same parameters.
                    std::vector<tfu_session*> batch{ses};
                    for (int32_t k = 1; k < o.n_sessions; ++k) {
                        tfu_session* extra = nullptr;
                        check(tfu_session_create(model, &sp, &extra),
                              path + ": session " + std::to_string(k + 1) + " of --sessions " +
                                  std::to_string(o.n_sessions));
                        batch.push_back(extra);
                    }
                    base.type_k = tfu_bench::kv_type_arg_name(type_k);
                    base.type_v = tfu_bench::kv_type_arg_name(type_v);
                    for (size_t ti = 0; ti < tests.size(); ++ti) {
                        test_result r = base;
                        r.spec = tests[ti];
                        depth_snapshot snap;
                        snap.path = "/tmp/tfusion-bench-" + std::to_string(getpid()) + "-depth.tfs";
                        const bool batched = r.spec.n_sessions > 1;
                        auto once = [&](uint32_t seed) {
                            return batched ? run_once_batched(batch, model, info, r.spec, seed, snap)
                                           : run_once(ses, model, info, r.spec, seed, snap);
                        };
                        if (o.warmup) once(o.seed ^ 0x5eedu);
                        for (int32_t rep = 0; rep < o.reps; ++rep) {
                            const sample s = once(o.seed + uint32_t(rep));
                            r.ms.push_back(s.ms);
                            r.tps.push_back(s.ms > 0 ? 1000.0 * r.spec.n * r.spec.n_sessions / s.ms : 0.0);
                            if (r.spec.prefill) r.ttft_ms.push_back(s.ttft_ms);
                        }
                        if (snap.ready) std::remove(snap.path.c_str());
                        tfu_session_stats ss{};
                        ss.struct_size = sizeof ss;
                        check(tfu_session_get_stats(ses, &ss), "session stats");
                        r.kv_bytes = ss.kv_bytes;
                        r.kv_n_past = ss.n_past;
                        r.engine_memory = tfu_engine_memory_used(eng);
                        r.peak_rss = peak_rss_bytes();
                        print_row(out, r);
                        rows.push_back(std::move(r));
                    }
                    for (tfu_session* b : batch) tfu_session_destroy(b);
                }
                tfu_model_unload(model);
                tfu_engine_destroy(eng);
            }
        }
    }

    // Below the table: time to first token per prefill test, load time and memory.
    std::fprintf(out, "\n");
    for (const test_result& r : rows)
        if (r.spec.prefill)
            std::fprintf(out, "%s %s %s t%d K %s V %s %s: time to first token %.2f ± %.2f ms\n",
                         r.model_name.c_str(), r.type.c_str(), r.backend.c_str(), r.threads, r.type_k.c_str(),
                         r.type_v.c_str(), r.spec.name().c_str(), mean(r.ttft_ms), stddev(r.ttft_ms));
    for (size_t i = 0; i < rows.size(); ++i)
        if (i == 0 || rows[i].model_file != rows[i - 1].model_file || rows[i].threads != rows[i - 1].threads ||
            rows[i].backend != rows[i - 1].backend || rows[i].type_k != rows[i - 1].type_k ||
            rows[i].type_v != rows[i - 1].type_v)
            std::fprintf(out, "%s %s %s t%d K %s V %s: load %.1f ms, engine memory %s, KV %s (n_ctx %d)\n",
                         rows[i].model_name.c_str(), rows[i].type.c_str(), rows[i].backend.c_str(), rows[i].threads,
                         rows[i].type_k.c_str(), rows[i].type_v.c_str(), rows[i].load_ms,
                         human_bytes(rows[i].engine_memory).c_str(), human_bytes(rows[i].kv_bytes).c_str(),
                         rows[i].n_ctx);
    std::fprintf(out, "peak RSS %s\n", human_bytes(peak_rss_bytes()).c_str());

    if (!o.json.empty()) {
        const std::string j = to_json(rows, o);
        if (o.json == "-") {
            std::fputs(j.c_str(), stdout);
        } else {
            std::ofstream f(o.json);
            f << j;
            f.close();
            if (!f) {
                std::fprintf(stderr, "tfusion-bench: cannot write %s\n", o.json.c_str());
                return 1;
            }
        }
    }
    return 0;
}
