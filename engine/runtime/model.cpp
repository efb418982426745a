// Model loading: GGUF -> hparams -> weights -> vocabulary, all validated before the model is handed out.
#include "runtime/model.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "core/error.h"
#include "core/log.h"
#include "runtime/paged_kv.h"

namespace tfu {
namespace {

std::vector<uint8_t> read_whole_file(const std::string& path) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) {
        if (errno == ENOENT) fail(TFU_STATUS_NOT_FOUND, path + ": no such file");
        fail(TFU_STATUS_IO_ERROR, path + ": " + std::strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) fail(TFU_STATUS_IO_ERROR, path + ": not a regular file");
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in) fail(TFU_STATUS_NOT_FOUND, path + ": cannot open file");
    std::streamoff size = in.tellg();
    if (size < 0) fail(TFU_STATUS_IO_ERROR, path + ": cannot determine the file size");
    std::vector<uint8_t> data(static_cast<size_t>(size));
    in.seekg(0);
    if (size > 0 && !in.read(reinterpret_cast<char*>(data.data()), size))
        fail(TFU_STATUS_IO_ERROR, path + ": read failed");
    return data;
}

}  // namespace

model::model(engine& e, const std::string& path, const tfu_model_params& p) : eng(e) {
    if (p.use_mmap) {
        file = gguf::file::open(path);
    } else {
        owned_ = read_whole_file(path);
        file = gguf::file::from_memory(owned_.data(), owned_.size(), path);
    }
    hp = read_hparams(*file);
    const arch_spec* arch = find_arch(hp.arch);
    TFU_CHECK(arch != nullptr);
    weights = load_weights(*file, *arch, hp);
    budget_ = std::make_unique<reservation>(eng, weights.n_bytes, "model '" + path + "' (weights)");
    voc = vocab::from_gguf(*file);
    if (voc->n_tokens() != hp.n_vocab)
        fail(TFU_STATUS_INVALID_FILE, path + ": the vocabulary has " + std::to_string(voc->n_tokens()) +
                                          " tokens but token_embd.weight has " + std::to_string(hp.n_vocab) + " rows");
    chat_template = file->get_string("tokenizer.chat_template").value_or("");
    // A device backend reads the weights from its own memory (last of the steps that may throw: it frees its
    // copies itself when it fails).
    if (!eng.device().host_memory()) device_weights_ = place_weights(weights, eng.device());
    this->path = path;
    eng.add_model(this);  // last: a constructor that throws never leaves a registered model behind
    logf(TFU_LOG_INFO, "loaded %s: %s, %d layers, n_embd %d, %d heads (%d kv), vocab %d, %.1f M params, %.1f MiB",
         path.c_str(), hp.arch.c_str(), hp.n_layer, hp.n_embd, hp.n_head, hp.n_head_kv, hp.n_vocab,
         double(weights.n_params) / 1e6, double(weights.n_bytes) / (1 << 20));
}

model::~model() {
    eng.remove_model(this);
    for (void* p : device_weights_) eng.device().free(p);
}

kv_block_pool& model::kv_pool(kv_format k, kv_format v) {
    std::lock_guard<std::mutex> lock(pools_mutex_);
    std::unique_ptr<kv_block_pool>& p = pools_[{k, v}];
    if (!p) {
        kv_pool_params pp;
        pp.n_layer = hp.n_layer;
        pp.n_head_kv = hp.n_head_kv;
        pp.head_dim = hp.head_dim;
        pp.k_format = k;
        pp.v_format = v;
        // A device engine's sessions read the paged cache on the device (session.cpp: device_cache); with
        // TFU_KV_BLOCK_OPS=1 (when the pool is made) a host engine's per-token-key pools take the same path.
        if (!eng.device().host_memory() || (paged_kv::host_test_mode() && k != kv_format::q4))
            pp.device = &eng.device();
        p = std::make_unique<kv_block_pool>(pp);
    }
    return *p;
}

decoder& model::batch_decoder() {
    if (!batch_dec_) batch_dec_ = std::make_unique<decoder>(hp, weights, TFU_DECODE_BATCH_MAX, &eng.device());
    return *batch_dec_;
}

}  // namespace tfu
