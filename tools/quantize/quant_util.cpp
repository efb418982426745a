// tfusion-quant-util: helpers for measuring the quantizers (scripts/quant-vs-peer.sh):
//   gen OUT.gguf [--n-embd 512] [--n-layer 4] [--n-ff 1024] [--n-head 8] [--n-head-kv 4]
//       [--dist gauss|student|outlier] [--seed S] [--vocab VOCAB.gguf]
//     writes a random F32 llama model (vocabulary and tokenizer metadata copied from VOCAB.gguf, by default
//     ../shared/models/stories260K.gguf); weights are N(0, 1/sqrt(fan_in)) ("gauss"), Student-t with 3 degrees
//     of freedom ("student"), or Gaussian with 1% of the entries multiplied by 10 ("outlier").
//   rmse REF.gguf TEST.gguf
//     per 2-D tensor of REF: the type in TEST and sqrt(mean((dequant(TEST) - dequant(REF))^2)) / RMS(REF), one
//     line each: "name type rel_rmse".
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/quant.h"
#include "format/gguf.h"
#include "format/gguf_writer.h"
#include "quantize.h"

namespace {

int gen(int argc, char** argv) {
    std::string out = argv[0], dist = "gauss", vocab = std::string(TFU_SHARED_DIR) + "/models/stories260K.gguf";
    int64_t E = 512, L = 4, F = 1024, H = 8, HKV = 4;
    unsigned seed = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string k = argv[i], v = argv[i + 1];
        if (k == "--n-embd") E = std::atoll(v.c_str());
        else if (k == "--n-layer") L = std::atoll(v.c_str());
        else if (k == "--n-ff") F = std::atoll(v.c_str());
        else if (k == "--n-head") H = std::atoll(v.c_str());
        else if (k == "--n-head-kv") HKV = std::atoll(v.c_str());
        else if (k == "--dist") dist = v;
        else if (k == "--seed") seed = unsigned(std::atoll(v.c_str()));
        else if (k == "--vocab") vocab = v;
        else {
            std::fprintf(stderr, "gen: unknown option %s\n", k.c_str());
            return 2;
        }
    }
    if (dist != "gauss" && dist != "student" && dist != "outlier") {
        std::fprintf(stderr, "gen: --dist must be gauss, student or outlier\n");
        return 2;
    }
    std::fprintf(stderr, "gen: %s n_embd %lld n_layer %lld dist %s seed %u\n", out.c_str(), (long long)E, (long long)L,
                 dist.c_str(), seed);
    std::unique_ptr<tfu::gguf::file> voc = tfu::gguf::file::open(vocab);
    const tfu::gguf::kv* tokens = voc->get_array("tokenizer.ggml.tokens", tfu::gguf::value_type::STRING);
    if (!tokens) tfu::fail(TFU_STATUS_INVALID_FILE, vocab + ": no tokenizer.ggml.tokens");
    const int64_t V = int64_t(tokens->count);

    tfu::gguf::writer w;
    w.set_string("general.architecture", "llama");
    w.set_string("general.name", "random llama " + dist);
    w.set_u32("general.file_type", 0);
    w.set_u32("llama.context_length", 256);
    w.set_u32("llama.embedding_length", uint32_t(E));
    w.set_u32("llama.block_count", uint32_t(L));
    w.set_u32("llama.feed_forward_length", uint32_t(F));
    w.set_u32("llama.attention.head_count", uint32_t(H));
    w.set_u32("llama.attention.head_count_kv", uint32_t(HKV));
    w.set_u32("llama.rope.dimension_count", uint32_t(E / H));
    w.set_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
    w.set_f32("llama.rope.freq_base", 10000.0f);
    for (const auto& kv : voc->metadata())
        if (kv.key.substr(0, 10) == "tokenizer.") w.set_kv(kv);

    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::student_t_distribution<float> student(3.0f);
    std::uniform_real_distribution<float> uni(0.0f, 1.0f);
    const float t_scale = 1.0f / std::sqrt(3.0f);  // Student-t(3) has variance 3
    auto add = [&](const std::string& name, std::vector<int64_t> ne, bool matrix) {
        const int64_t n = ne[0] * (ne.size() > 1 ? ne[1] : 1);
        std::vector<float> v(static_cast<size_t>(n));
        const float sd = 1.0f / std::sqrt(float(ne[0]));
        for (float& x : v) {
            if (!matrix) x = 1.0f + 0.1f * normal(rng);
            else if (dist == "gauss") x = sd * normal(rng);
            else if (dist == "student") x = sd * t_scale * student(rng);
            else x = sd * normal(rng) * (uni(rng) < 0.01f ? 10.0f : 1.0f);
        }
        w.add_tensor(name, tfu::dtype::F32, ne.data(), uint32_t(ne.size()), v.data(), v.size() * sizeof(float));
    };
    const int64_t KV = E / H * HKV;
    add("token_embd.weight", {E, V}, true);
    for (int64_t l = 0; l < L; ++l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        add(p + "attn_norm.weight", {E}, false);
        add(p + "attn_q.weight", {E, E}, true);
        add(p + "attn_k.weight", {E, KV}, true);
        add(p + "attn_v.weight", {E, KV}, true);
        add(p + "attn_output.weight", {E, E}, true);
        add(p + "ffn_norm.weight", {E}, false);
        add(p + "ffn_gate.weight", {E, F}, true);
        add(p + "ffn_up.weight", {E, F}, true);
        add(p + "ffn_down.weight", {F, E}, true);
    }
    add("output_norm.weight", {E}, false);
    add("output.weight", {E, V}, true);
    w.write(out);
    return 0;
}

int rmse(const char* ref_path, const char* test_path) {
    std::unique_ptr<tfu::gguf::file> ref = tfu::gguf::file::open(ref_path), test = tfu::gguf::file::open(test_path);
    for (const tfu::gguf::tensor_info& r : ref->tensors()) {
        if (r.n_dims < 2) continue;
        const tfu::gguf::tensor_info* t = test->find_tensor(r.name);
        if (!t || t->nelements() != r.nelements() || t->ne[0] != r.ne[0]) {
            std::printf("%.*s missing-or-reshaped nan\n", int(r.name.size()), r.name.data());
            continue;
        }
        const int64_t ne0 = r.ne[0], rows = r.nelements() / ne0;
        std::vector<float> a(static_cast<size_t>(ne0)), b(static_cast<size_t>(ne0));
        double err = 0.0, sq = 0.0;
        for (int64_t i = 0; i < rows; ++i) {
            tfu::dequantize_row(r.type, static_cast<const uint8_t*>(r.data) + size_t(i) * tfu::row_size(r.type, ne0), a.data(), ne0);
            tfu::dequantize_row(t->type, static_cast<const uint8_t*>(t->data) + size_t(i) * tfu::row_size(t->type, ne0), b.data(), ne0);
            for (int64_t j = 0; j < ne0; ++j) {
                const double e = double(b[size_t(j)]) - double(a[size_t(j)]);
                err += e * e;
                sq += double(a[size_t(j)]) * double(a[size_t(j)]);
            }
        }
        std::printf("%.*s %s %.7f\n", int(r.name.size()), r.name.data(), tfu::dtype_name(t->type),
                    sq > 0.0 ? std::sqrt(err / sq) : 0.0);
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        if (argc >= 3 && std::string(argv[1]) == "gen") return gen(argc - 2, argv + 2);
        if (argc == 4 && std::string(argv[1]) == "rmse") return rmse(argv[2], argv[3]);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "tfusion-quant-util: %s\n", e.what());
        return 1;
    }
    std::fprintf(stderr, "usage: tfusion-quant-util gen OUT.gguf [options] | rmse REF.gguf TEST.gguf\n");
    return 2;
}
