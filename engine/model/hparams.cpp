// Reads the {arch}.* hyperparameters from GGUF metadata and checks them against each other.
#include "model/hparams.h"

#include <cmath>

#include "core/error.h"
#include "format/gguf.h"
#include "model/arch.h"

namespace tfu {
namespace {

int32_t get_i32(const gguf::file& f, const std::string& key, int64_t lo, int64_t hi, const int32_t* dflt) {
    std::optional<int64_t> v = f.get_int(key);
    if (!v) {
        if (dflt) return *dflt;
        fail(TFU_STATUS_INVALID_FILE, f.path() + ": missing metadata key '" + key + "'");
    }
    if (*v < lo || *v > hi)
        fail(TFU_STATUS_INVALID_FILE, f.path() + ": metadata '" + key + "' = " + std::to_string(*v) +
                                          " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return int32_t(*v);
}

float get_f32(const gguf::file& f, const std::string& key, float dflt, float lo, float hi) {
    std::optional<double> v = f.get_float(key);
    if (!v) return dflt;
    if (!std::isfinite(*v) || *v < lo || *v > hi)
        fail(TFU_STATUS_INVALID_FILE, f.path() + ": metadata '" + key + "' = " + std::to_string(*v) + " is out of range");
    return float(*v);
}

}  // namespace

hparams read_hparams(const gguf::file& f) {
    hparams hp;
    std::optional<std::string> arch = f.get_string("general.architecture");
    if (!arch) fail(TFU_STATUS_INVALID_FILE, f.path() + ": missing metadata key 'general.architecture'");
    const arch_spec* spec = find_arch(*arch);
    if (!spec)
        fail(TFU_STATUS_UNSUPPORTED, f.path() + ": architecture '" + *arch + "' is not supported (supported: " +
                                         supported_arch_names() + ")");
    hp.arch = *arch;
    hp.name = f.get_string("general.name").value_or("");
    const std::string a = *arch + ".";
    const int32_t big = 1 << 24;
    hp.n_embd = get_i32(f, a + "embedding_length", 1, big, nullptr);
    hp.n_layer = get_i32(f, a + "block_count", 1, 4096, nullptr);
    hp.n_ff = get_i32(f, a + "feed_forward_length", 1, big, nullptr);
    hp.n_head = get_i32(f, a + "attention.head_count", 1, 4096, nullptr);
    hp.n_head_kv = get_i32(f, a + "attention.head_count_kv", 1, hp.n_head, &hp.n_head);
    const int32_t ctx_default = 2048;
    hp.n_ctx_train = get_i32(f, a + "context_length", 1, big, &ctx_default);
    if (hp.n_head % hp.n_head_kv != 0)
        fail(TFU_STATUS_INVALID_FILE, f.path() + ": head_count " + std::to_string(hp.n_head) +
                                          " is not a multiple of head_count_kv " + std::to_string(hp.n_head_kv));
    const int32_t hd_default = hp.n_embd / hp.n_head;
    hp.head_dim = get_i32(f, a + "attention.key_length", 1, 4096, &hd_default);
    const int32_t vd = get_i32(f, a + "attention.value_length", 1, 4096, &hp.head_dim);
    if (vd != hp.head_dim)
        fail(TFU_STATUS_UNSUPPORTED, f.path() + ": attention.value_length != key_length is not supported");
    if (hp.head_dim % 2 != 0) fail(TFU_STATUS_INVALID_FILE, f.path() + ": head size must be even for RoPE");
    hp.n_rot = get_i32(f, a + "rope.dimension_count", 2, hp.head_dim, &hp.head_dim);
    if (hp.n_rot % 2 != 0) fail(TFU_STATUS_INVALID_FILE, f.path() + ": rope.dimension_count must be even");
    hp.rms_eps = get_f32(f, a + "attention.layer_norm_rms_epsilon", 1e-5f, 0.0f, 1.0f);
    hp.rope_freq_base = get_f32(f, a + "rope.freq_base", 10000.0f, 1.0f, 1e12f);
    hp.rope = spec->rope;

    std::optional<std::string> scaling = f.get_string(a + "rope.scaling.type");
    if (scaling && *scaling == "linear") {
        float factor = get_f32(f, a + "rope.scaling.factor", 1.0f, 1e-3f, 1e6f);
        hp.rope_freq_scale = 1.0f / factor;
    } else if (scaling && *scaling == "llama3") {
        hp.rope_llama3 = true;
        hp.rope_scaling_factor = get_f32(f, a + "rope.scaling.factor", 8.0f, 1e-3f, 1e6f);
        hp.rope_low_freq_factor = get_f32(f, a + "rope.scaling.low_freq_factor", 1.0f, 1e-3f, 1e6f);
        hp.rope_high_freq_factor = get_f32(f, a + "rope.scaling.high_freq_factor", 4.0f, 1e-3f, 1e6f);
        const int32_t orig = 8192;
        hp.rope_orig_ctx = get_i32(f, a + "rope.scaling.original_context_length", 1, big, &orig);
        if (hp.rope_high_freq_factor <= hp.rope_low_freq_factor)
            fail(TFU_STATUS_INVALID_FILE, f.path() + ": llama3 rope scaling needs high_freq_factor > low_freq_factor");
    } else if (scaling && *scaling != "none") {
        fail(TFU_STATUS_UNSUPPORTED, f.path() + ": rope scaling type '" + *scaling + "' is not supported");
    }
    return hp;
}

}  // namespace tfu
