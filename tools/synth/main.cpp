// tfusion-synth: writes a GGUF model with a real model's shapes and metadata, random seeded weights and the
// tokenizer of a vocabulary GGUF (for benchmarks and tests without downloading weights).
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/error.h"
#include "synth.h"

namespace {

void usage(FILE* f) {
    std::fprintf(f,
                 "usage: tfusion-synth --preset NAME --vocab VOCAB.gguf --type TYPE -o OUT.gguf\n"
                 "                     [--seed S] [--layers N] [--ctx N] [--threads N]\n"
                 "       tfusion-synth --list\n"
                 "  --preset NAME   model shape (see --list)\n"
                 "  --vocab FILE    GGUF whose tokenizer.* metadata is copied (e.g. ../shared/vocab/*.gguf)\n"
                 "  --type TYPE     type of the matrices and token_embd: %s\n"
                 "  --seed S        random seed (default 1)\n"
                 "  --layers N      write only N layers (same random draws as the full model's first N)\n"
                 "  --ctx N         context_length to record (default: the model's)\n"
                 "  --threads N     worker threads (default: all)\n",
                 tfu::synth::type_names().c_str());
}

void list_presets() {
    std::printf("%-15s %-6s %6s %5s %5s %5s %6s %7s %7s %10s %6s %5s %-8s %8s %9s  %s\n", "preset", "arch", "n_embd",
                "layer", "head", "kv", "n_ff", "vocab", "ctx", "rope_base", "eps", "tied", "extras", "params",
                "q4_0 MB", "vocab file");
    for (const tfu::synth::preset& p : tfu::synth::presets()) {
        const int64_t v = p.n_vocab ? p.n_vocab : 32000;
        uint64_t bytes = 0;
        for (const auto& t : tfu::synth::plan_tensors(p, p.n_layer, v, tfu::dtype::Q4_0)) bytes += t.nbytes();
        std::string extras = p.qkv_bias ? "qkv_bias" : (p.rope_llama3 ? "llama3" : "-");
        char vocab[16];
        std::snprintf(vocab, sizeof vocab, p.n_vocab ? "%d" : "(%d)", int(v));
        std::printf("%-15s %-6s %6d %5d %5d %5d %6d %7s %7d %10.0f %6.0e %5s %-8s %7.1fM %9.1f  %s\n", p.name, p.arch,
                    p.n_embd, p.n_layer, p.n_head, p.n_head_kv, p.n_ff, vocab, p.n_ctx, double(p.rope_base),
                    double(p.rms_eps), p.tied ? "yes" : "no", extras.c_str(),
                    double(tfu::synth::n_params(p, p.n_layer, v)) / 1e6, double(bytes) / 1e6, p.vocab_hint);
    }
    std::printf("(tiny-* take the vocabulary size of --vocab; shown with 32000. q4_0 MB: tensor data; rows that are\n"
                " not a multiple of 32 fall back to f16)\n");
}

bool parse_int(const char* s, long long lo, long long hi, long long* out) {
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(s, &end, 0);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    tfu::synth::options opt;
    std::string type_name;
    bool list = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> const char* {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "tfusion-synth: %s needs a value\n", a.c_str());
                std::exit(2);
            }
            return argv[++i];
        };
        auto number = [&](long long lo, long long hi) -> long long {
            const char* s = value();
            long long v = 0;
            if (!parse_int(s, lo, hi, &v)) {
                std::fprintf(stderr, "tfusion-synth: %s: '%s' is not a number in [%lld, %lld]\n", a.c_str(), s, lo, hi);
                std::exit(2);
            }
            return v;
        };
        if (a == "--list") list = true;
        else if (a == "--preset") opt.preset = value();
        else if (a == "--vocab") opt.vocab_path = value();
        else if (a == "--type") type_name = value();
        else if (a == "-o" || a == "--output") opt.out_path = value();
        else if (a == "--seed") opt.seed = uint64_t(number(0, INT64_MAX));
        else if (a == "--layers") opt.n_layer = int32_t(number(1, 4096));
        else if (a == "--ctx") opt.n_ctx = int32_t(number(1, 1 << 24));
        else if (a == "--threads") opt.n_threads = int(number(1, 1024));
        else if (a == "-h" || a == "--help") {
            usage(stdout);
            return 0;
        } else {
            std::fprintf(stderr, "tfusion-synth: unknown argument '%s'\n", a.c_str());
            usage(stderr);
            return 2;
        }
    }
    if (list) {
        list_presets();
        return 0;
    }
    if (opt.preset.empty() || opt.vocab_path.empty() || type_name.empty() || opt.out_path.empty()) {
        std::fprintf(stderr, "tfusion-synth: --preset, --vocab, --type and -o are required\n");
        usage(stderr);
        return 2;
    }
    try {
        opt.type = tfu::synth::parse_type(type_name);
        opt.on_note = [](const std::string& s) { std::fprintf(stderr, "%s\n", s.c_str()); };
        // One line rewritten in place; at most one update per percent of the data (and the last tensor).
        int last_pct = -1;
        opt.on_progress = [&last_pct](size_t i, size_t n, const std::string& name, uint64_t done, uint64_t total) {
            const int pct = total ? int(100 * done / total) : 100;
            if (pct == last_pct && i != n) return;
            last_pct = pct;
            std::fprintf(stderr, "\r[%4zu/%zu] %-28s %9.1f / %.1f MB", i, n, name.c_str(), double(done) / 1e6,
                         double(total) / 1e6);
            if (i == n) std::fprintf(stderr, "\n");
        };
        const tfu::synth::result r = tfu::synth::write_model(opt);
        std::fprintf(stderr, "wrote %s: %s, %d layers, vocab %" PRId64 ", %.1fM params, %zu tensors, %.1f MB of %s\n",
                     opt.out_path.c_str(), opt.preset.c_str(), r.n_layer, r.n_vocab, double(r.n_params) / 1e6,
                     r.n_tensors, double(r.data_bytes) / 1e6, type_name.c_str());
    } catch (const tfu::error& e) {
        std::fprintf(stderr, "\ntfusion-synth: %s\n", e.what());
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "\ntfusion-synth: %s\n", e.what());
        return 1;
    }
    return 0;
}
