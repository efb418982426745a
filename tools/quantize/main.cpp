// tfusion-quantize: converts a GGUF model between weight types (f32, f16, bf16, the 32-block and K-quant types,
// and llama.cpp's named mixes such as Q4_K_M), with a progress bar and a size / quality summary.
//
//   tfusion-quantize IN.gguf OUT.gguf TYPE [--threads N] [--stats] [--quiet]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/error.h"
#include "mix.h"
#include "quantize.h"

namespace {

void usage(FILE* f) {
    std::fprintf(f, "usage: tfusion-quantize IN.gguf OUT.gguf TYPE [--threads N] [--stats] [--quiet]\n"
                    "  TYPE: pure types (every quantizable tensor):");
    for (const std::string& n : tfu::quantize::mix_names())
        if (n[0] >= 'a' && n[0] <= 'z') std::fprintf(f, " %s", n.c_str());
    std::fprintf(f, "\n        llama.cpp mixes (output and sensitive tensors get more bits):");
    for (const std::string& n : tfu::quantize::mix_names())
        if (n[0] >= 'A' && n[0] <= 'Z') std::fprintf(f, " %s", n.c_str());
    std::fprintf(f, "\n  --threads N  worker threads (default: all)\n"
                    "  --stats      per-tensor relative RMSE: sqrt(mean((dequant(q) - x)^2)) / RMS(x)\n"
                    "  --quiet      no progress bar\n");
}

double mib(double bytes) { return bytes / (1024.0 * 1024.0); }

}  // namespace

int main(int argc, char** argv) {
    tfu::quantize::options opt;
    bool quiet = false;
    std::vector<std::string> pos;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--threads") {
            char* end = nullptr;
            if (i + 1 >= argc || (opt.threads = int(std::strtol(argv[i + 1], &end, 10)), *end != '\0') || opt.threads < 1) {
                std::fprintf(stderr, "tfusion-quantize: --threads needs a positive integer\n");
                return 2;
            }
            ++i;
        } else if (a == "--stats") {
            opt.stats = true;
        } else if (a == "--quiet") {
            quiet = true;
        } else if (a == "-h" || a == "--help") {
            usage(stdout);
            return 0;
        } else if (a.size() > 1 && a[0] == '-') {
            std::fprintf(stderr, "tfusion-quantize: unknown option '%s'\n", a.c_str());
            usage(stderr);
            return 2;
        } else {
            pos.push_back(a);
        }
    }
    if (pos.size() != 3) {
        usage(stderr);
        return 2;
    }
    opt.input = pos[0];
    opt.output = pos[1];
    opt.type = pos[2];
    if (!quiet)
        opt.progress = [](size_t i, size_t n, const tfu::quantize::tensor_report& t, double elapsed) {
            std::fprintf(stderr, "\r[%4zu/%4zu] %-32s %5s -> %-5s %8.2f MiB -> %8.2f MiB  %6.1fs\x1b[K", i + 1, n,
                         t.name.c_str(), tfu::dtype_name(t.src_type), tfu::dtype_name(t.dst_type), mib(double(t.src_bytes)),
                         mib(double(t.dst_bytes)), elapsed);
            if (i + 1 == n) std::fprintf(stderr, "\n");
        };
    tfu::quantize::report rep;
    try {
        rep = tfu::quantize::run(opt);
    } catch (const tfu::error& e) {
        if (!quiet) std::fprintf(stderr, "\n");
        std::fprintf(stderr, "tfusion-quantize: %s\n", e.what());
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "tfusion-quantize: %s\n", e.what());
        return 1;
    }
    if (opt.stats) {
        std::printf("%-40s %-6s %-6s %12s %12s %10s\n", "tensor", "from", "to", "elements", "bytes", "rel_rmse");
        for (const auto& t : rep.tensors)
            std::printf("%-40s %-6s %-6s %12lld %12zu %10.6f\n", t.name.c_str(), tfu::dtype_name(t.src_type),
                        tfu::dtype_name(t.dst_type), (long long)t.n_elements, t.dst_bytes, t.rel_rmse);
    }
    const double n = double(rep.n_elements > 0 ? rep.n_elements : 1);
    std::printf("%s -> %s (%s): %zu tensors, %.2f MiB (%.2f bits/weight) -> %.2f MiB (%.2f bits/weight), "
                "file %.2f MiB, %.1f s\n",
                opt.input.c_str(), opt.output.c_str(), opt.type.c_str(), rep.tensors.size(), mib(double(rep.src_bytes)),
                8.0 * double(rep.src_bytes) / n, mib(double(rep.dst_bytes)), 8.0 * double(rep.dst_bytes) / n,
                mib(double(rep.out_file_bytes)), rep.seconds);
    return 0;
}
