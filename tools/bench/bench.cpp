// tfusion-bench: prefill and decode speed, time to first token and memory of a model, on the public API only.
//
// Per repetition: a fresh session gets a prompt of p random in-vocabulary tokens (tfu_session_add_tokens +
// tfu_session_eval: prefill), then decodes exactly n tokens greedily with tfu_session_sample + tfu_session_eval
// (no stop at EOG, so every run does the same work). Figures are mean ± sample stddev over the repetitions,
// after one untimed warm-up run. With --json - the JSON goes to stdout and the table to stderr.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <tfusion/tfusion.h>

namespace {

struct options {
    std::string model;
    int32_t n_prompt = 128;
    int32_t n_gen = 64;
    int32_t reps = 3;
    int32_t n_threads = 0;
    tfu_backend_kind backend = TFU_BACKEND_AUTO;
    std::string json;  // "" = none, "-" = stdout
    uint32_t seed = 1234;
};

void usage(FILE* f) {
    std::fprintf(f,
                 "usage: tfusion-bench -m MODEL [-p 128] [-n 64] [-r 3] [-t THREADS]\n"
                 "                     [--backend auto|cpu|cpu-ref|cuda|vulkan] [--json FILE|-] [--seed S]\n"
                 "  -p N   prompt tokens for the prefill test (0 = skip)\n"
                 "  -n N   tokens to decode for the generation test (0 = skip)\n"
                 "  -r N   repetitions (mean and stddev are reported)\n");
}

bool parse_int(const char* s, long lo, long hi, long* out) {
    char* end = nullptr;
    long v = std::strtol(s, &end, 0);
    if (end == s || *end != '\0' || v < lo || v > hi) return false;
    *out = v;
    return true;
}

// Returns 1 ok, 0 bad command line, -1 help.
int parse_args(int argc, char** argv, options& o) {
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "-h" || a == "--help") return -1;
        if (i + 1 >= argc) {
            std::fprintf(stderr, "tfusion-bench: missing value for %s\n", a.c_str());
            return 0;
        }
        const char* v = argv[++i];
        long n = 0;
        bool ok = true;
        if (a == "-m" || a == "--model") o.model = v;
        else if (a == "-p") ok = parse_int(v, 0, 1 << 20, &n) && ((o.n_prompt = int32_t(n)), true);
        else if (a == "-n") ok = parse_int(v, 0, 1 << 20, &n) && ((o.n_gen = int32_t(n)), true);
        else if (a == "-r") ok = parse_int(v, 1, 10000, &n) && ((o.reps = int32_t(n)), true);
        else if (a == "-t") ok = parse_int(v, 0, 4096, &n) && ((o.n_threads = int32_t(n)), true);
        else if (a == "--seed") ok = parse_int(v, 0, 0x7fffffffL, &n) && ((o.seed = uint32_t(n)), true);
        else if (a == "--json") o.json = v;
        else if (a == "--backend") {
            const std::string b = v;
            if (b == "auto") o.backend = TFU_BACKEND_AUTO;
            else if (b == "cpu") o.backend = TFU_BACKEND_CPU;
            else if (b == "cpu-ref") o.backend = TFU_BACKEND_CPU_REF;
            else if (b == "cuda") o.backend = TFU_BACKEND_CUDA;
            else if (b == "vulkan") o.backend = TFU_BACKEND_VULKAN;
            else ok = false;
        } else {
            std::fprintf(stderr, "tfusion-bench: unknown option %s\n", a.c_str());
            return 0;
        }
        if (!ok) {
            std::fprintf(stderr, "tfusion-bench: bad value for %s: '%s'\n", a.c_str(), v);
            return 0;
        }
    }
    if (o.model.empty()) {
        std::fprintf(stderr, "tfusion-bench: -m MODEL is required\n");
        return 0;
    }
    return 1;
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

struct stat_acc {
    std::vector<double> v;
    double mean() const {
        double s = 0;
        for (double x : v) s += x;
        return v.empty() ? 0.0 : s / double(v.size());
    }
    double stddev() const {  // sample standard deviation; 0 for fewer than 2 values
        if (v.size() < 2) return 0.0;
        const double m = mean();
        double s = 0;
        for (double x : v) s += (x - m) * (x - m);
        return std::sqrt(s / double(v.size() - 1));
    }
};

struct run_result {
    double prefill_tps = 0, decode_tps = 0, ttft_ms = 0;
    int32_t n_generated = 0;
};

double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

[[noreturn]] void die(const char* what, tfu_status st) {
    std::fprintf(stderr, "tfusion-bench: %s: %s: %s\n", what, tfu_status_string(st), tfu_last_error());
    std::exit(1);
}

// One repetition on a fresh session: prefill p random tokens, then decode n greedily.
run_result run_once(tfu_model* model, const tfu_model_info& info, const options& o, uint32_t seed) {
    tfu_session_params sp = tfu_session_params_default();
    sp.n_ctx = std::max(o.n_prompt + o.n_gen + 8, 64);
    sp.n_batch = std::max(1, std::min(o.n_prompt, 512));
    sp.sampler.temperature = 0.0f;
    tfu_session* ses = nullptr;
    tfu_status st = tfu_session_create(model, &sp, &ses);
    if (st != TFU_STATUS_OK) die("session", st);
    run_result r;

    // A prompt of random tokens avoiding the specials (BOS/EOS/EOT/PAD), which a tokenizer would not produce
    // inside text; at least one token so that there are logits to decode from.
    std::mt19937 gen(seed);
    std::uniform_int_distribution<int32_t> pick(0, info.n_vocab - 1);
    std::vector<tfu_token> prompt;
    if (info.bos != TFU_TOKEN_NONE) prompt.push_back(info.bos);
    while (int32_t(prompt.size()) < std::max(o.n_prompt, 1)) {
        const tfu_token t = pick(gen);
        if (t == info.bos || t == info.eos || t == info.eot || t == info.pad) continue;
        prompt.push_back(t);
    }
    const auto t0 = std::chrono::steady_clock::now();
    if ((st = tfu_session_add_tokens(ses, prompt.data(), prompt.size())) != TFU_STATUS_OK) die("add_tokens", st);
    if ((st = tfu_session_eval(ses)) != TFU_STATUS_OK) die("eval", st);
    const double prefill_ms = ms_since(t0);
    r.prefill_tps = prefill_ms > 0 ? 1000.0 * double(prompt.size()) / prefill_ms : 0.0;

    if (o.n_gen > 0) {
        // Decode: sample + eval, one token per step, timing the first step separately (time to first token is
        // prefill + the first sampled token, as a user sees it).
        const auto t1 = std::chrono::steady_clock::now();
        double first_ms = 0;
        for (int32_t i = 0; i < o.n_gen; ++i) {
            tfu_token t = 0;
            if ((st = tfu_session_sample(ses, &t)) != TFU_STATUS_OK) die("sample", st);
            if (i == 0) first_ms = ms_since(t1);
            if ((st = tfu_session_eval(ses)) != TFU_STATUS_OK) die("eval", st);
            ++r.n_generated;
        }
        const double decode_ms = ms_since(t1);
        r.decode_tps = decode_ms > 0 ? 1000.0 * r.n_generated / decode_ms : 0.0;
        r.ttft_ms = prefill_ms + first_ms;
    } else {
        r.ttft_ms = prefill_ms;
    }
    tfu_session_destroy(ses);
    return r;
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

std::string json_escape(const std::string& s) {
    std::string out;
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
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    options o;
    const int parsed = parse_args(argc, argv, o);
    if (parsed < 0) {
        usage(stdout);
        return 0;
    }
    if (parsed == 0) {
        usage(stderr);
        return 2;
    }
    if (tfu_version() != TFU_VERSION_NUMBER)
        std::fprintf(stderr, "tfusion-bench: warning: header %s, library %s\n", TFU_VERSION_STRING,
                     tfu_version_string());

    tfu_engine_params ep = tfu_engine_params_default();
    ep.backend = o.backend;
    ep.n_threads = o.n_threads;
    tfu_engine* eng = nullptr;
    tfu_status st = tfu_engine_create(&ep, &eng);
    if (st != TFU_STATUS_OK) die("engine", st);
    tfu_model* model = nullptr;
    const auto t_load = std::chrono::steady_clock::now();
    tfu_model_params mp = tfu_model_params_default();
    if ((st = tfu_model_load(eng, o.model.c_str(), &mp, &model)) != TFU_STATUS_OK) die(o.model.c_str(), st);
    const double load_ms = ms_since(t_load);
    tfu_model_info info{};
    info.struct_size = sizeof info;
    if ((st = tfu_model_get_info(model, &info)) != TFU_STATUS_OK) die("model info", st);
    const int32_t threads = o.n_threads > 0 ? o.n_threads : int32_t(std::max(1u, std::thread::hardware_concurrency()));

    run_once(model, info, o, o.seed ^ 0x5eedu);  // warm-up: page in the weights, start the workers
    stat_acc pp, tg, ttft;
    for (int32_t r = 0; r < o.reps; ++r) {
        const run_result rr = run_once(model, info, o, o.seed + uint32_t(r));
        if (o.n_prompt > 0) pp.v.push_back(rr.prefill_tps);
        if (o.n_gen > 0) tg.v.push_back(rr.decode_tps);
        ttft.v.push_back(rr.ttft_ms);
    }
    const uint64_t peak = peak_rss_bytes();
    const std::string backend = tfu_engine_backend_name(eng);
    const std::string model_name = info.name[0] ? info.name : info.architecture;

    // The table, laid out like llama-bench's.
    FILE* out = o.json == "-" ? stderr : stdout;
    std::fprintf(out, "| %-28s | %10s | %10s | %-8s | %7s | %8s | %20s |\n", "model", "size", "params", "backend",
                "threads", "test", "t/s");
    std::fprintf(out, "| %.28s | %.10s | %.10s | %.8s | %.7s | %.8s | %.20s |\n", "-------------------------------",
                "-------------", "-------------", "-----------", "-----------", "-----------",
                "-------------------------");
    auto row = [&](const std::string& test, const stat_acc& s) {
        char tps[64];
        std::snprintf(tps, sizeof tps, "%.2f ± %.2f", s.mean(), s.stddev());
        std::fprintf(out, "| %-28.28s | %10s | %10s | %-8s | %7d | %8s | %21s |\n", model_name.c_str(),
                    human_bytes(info.size_bytes).c_str(), human_count(info.n_params).c_str(), backend.c_str(),
                    threads, test.c_str(), tps);
    };
    if (o.n_prompt > 0) row("pp" + std::to_string(o.n_prompt), pp);
    if (o.n_gen > 0) row("tg" + std::to_string(o.n_gen), tg);
    std::fprintf(out, "\ntime to first token (pp%d + 1 token): %.2f ± %.2f ms; load %.1f ms; peak RSS %s; engine memory "
                "%s\n",
                o.n_prompt, ttft.mean(), ttft.stddev(), load_ms, human_bytes(peak).c_str(),
                human_bytes(tfu_engine_memory_used(eng)).c_str());

    if (!o.json.empty()) {
        std::ostringstream j;
        j.precision(6);
        auto stat_json = [&](const stat_acc& s) {
            std::ostringstream x;
            x.precision(6);
            x << "{\"mean\": " << s.mean() << ", \"stddev\": " << s.stddev() << ", \"values\": [";
            for (size_t i = 0; i < s.v.size(); ++i) x << (i ? ", " : "") << s.v[i];
            x << "]}";
            return x.str();
        };
        j << "{\n  \"model\": \"" << json_escape(o.model) << "\",\n"
          << "  \"architecture\": \"" << json_escape(info.architecture) << "\",\n"
          << "  \"name\": \"" << json_escape(info.name) << "\",\n"
          << "  \"size_bytes\": " << info.size_bytes << ",\n"
          << "  \"n_params\": " << info.n_params << ",\n"
          << "  \"backend\": \"" << json_escape(backend) << "\",\n"
          << "  \"threads\": " << threads << ",\n"
          << "  \"n_prompt\": " << o.n_prompt << ",\n"
          << "  \"n_gen\": " << o.n_gen << ",\n"
          << "  \"repetitions\": " << o.reps << ",\n"
          << "  \"library_version\": \"" << json_escape(tfu_version_string()) << "\",\n"
          << "  \"load_ms\": " << load_ms << ",\n"
          << "  \"prefill_tokens_per_s\": " << (o.n_prompt > 0 ? stat_json(pp) : "null") << ",\n"
          << "  \"decode_tokens_per_s\": " << (o.n_gen > 0 ? stat_json(tg) : "null") << ",\n"
          << "  \"time_to_first_token_ms\": " << stat_json(ttft) << ",\n"
          << "  \"peak_rss_bytes\": " << peak << ",\n"
          << "  \"engine_memory_bytes\": " << tfu_engine_memory_used(eng) << "\n}\n";
        if (o.json == "-") {
            std::fputs(j.str().c_str(), stdout);
        } else {
            std::ofstream f(o.json);
            f << j.str();
            if (!f) {
                std::fprintf(stderr, "tfusion-bench: cannot write %s\n", o.json.c_str());
                return 1;
            }
        }
    }
    tfu_model_unload(model);
    tfu_engine_destroy(eng);
    return 0;
}
