// C ABI: engines and models.
#include "api/guard.h"
#include "runtime/stats.h"

using tfu::api::guard;
using tfu::api::need;

extern "C" {

TFU_API tfu_engine_params tfu_engine_params_default(void) {
    tfu_engine_params p{};
    p.struct_size = sizeof p;
    p.backend = TFU_BACKEND_AUTO;
    p.n_threads = 0;
    p.memory_budget = 0;
    p.offload_policy = TFU_OFFLOAD_LRU;
    return p;
}

TFU_API tfu_status tfu_engine_create(const tfu_engine_params* params, tfu_engine** out_engine) {
    return guard([&] {
        need(out_engine, "out_engine");
        *out_engine = nullptr;
        tfu_engine_params p = tfu::api::read_params(params, tfu_engine_params_default(), "tfu_engine_params");
        auto e = std::make_unique<tfu_engine>();
        e->impl = std::make_unique<tfu::engine>(p);
        *out_engine = e.release();
    });
}

TFU_API tfu_status tfu_engine_destroy(tfu_engine* engine) {
    return guard([&] {
        if (!engine) return;
        if (engine->impl->n_models() != 0)
            tfu::fail(TFU_STATUS_BUSY, "tfu_engine_destroy: " + std::to_string(engine->impl->n_models()) +
                                           " model(s) are still loaded; unload them first");
        delete engine;
    });
}

TFU_API const char* tfu_engine_backend_name(const tfu_engine* engine) {
    return engine ? engine->impl->backend_name() : "";
}

TFU_API uint64_t tfu_engine_memory_used(const tfu_engine* engine) { return engine ? engine->impl->memory_used() : 0; }

TFU_API tfu_status tfu_engine_get_stats_json(const tfu_engine* engine, char* out_json, size_t capacity,
                                             size_t* out_len) {
    return guard([&] {
        need(engine, "engine");
        need(out_len, "out_len");
        tfu::api::copy_out_text(tfu::engine_stats_json(*engine->impl), out_json, capacity, out_len);
    });
}

TFU_API tfu_model_params tfu_model_params_default(void) {
    tfu_model_params p{};
    p.struct_size = sizeof p;
    p.use_mmap = true;
    return p;
}

TFU_API tfu_status tfu_model_load(tfu_engine* engine, const char* path, const tfu_model_params* params,
                                  tfu_model** out_model) {
    return guard([&] {
        need(out_model, "out_model");
        *out_model = nullptr;
        need(engine, "engine");
        need(path, "path");
        tfu_model_params p = tfu::api::read_params(params, tfu_model_params_default(), "tfu_model_params");
        auto m = std::make_unique<tfu_model>();
        m->owner = engine;
        m->impl = std::make_unique<tfu::model>(*engine->impl, path, p);
        *out_model = m.release();
    });
}

TFU_API tfu_status tfu_model_unload(tfu_model* model) {
    return guard([&] {
        if (!model) return;
        int32_t n = model->impl->n_sessions.load();
        if (n != 0)
            tfu::fail(TFU_STATUS_BUSY, "tfu_model_unload: " + std::to_string(n) +
                                           " session(s) of this model still exist; destroy them first");
        delete model;
    });
}

TFU_API tfu_status tfu_model_get_info(const tfu_model* model, tfu_model_info* out_info) {
    return guard([&] {
        need(model, "model");
        need(out_info, "out_info");
        const tfu::model& m = *model->impl;
        tfu_model_info info{};
        info.struct_size = sizeof info;
        info.architecture = m.hp.arch.c_str();
        info.name = m.hp.name.c_str();
        info.n_params = m.weights.n_params;
        info.size_bytes = m.weights.n_bytes;
        info.n_ctx_train = m.hp.n_ctx_train;
        info.n_vocab = m.hp.n_vocab;
        info.n_layer = m.hp.n_layer;
        info.n_embd = m.hp.n_embd;
        info.n_head = m.hp.n_head;
        info.n_head_kv = m.hp.n_head_kv;
        info.bos = m.voc->bos();
        info.eos = m.voc->eos();
        info.eot = m.voc->eot();
        info.pad = m.voc->pad();
        info.add_bos = m.voc->add_bos();
        info.add_eos = m.voc->add_eos();
        info.has_chat_template = !m.chat_template.empty();
        const std::optional<int64_t> ft = m.file->get_int("general.file_type");
        info.file_type = ft && *ft >= 0 && *ft <= INT32_MAX ? int32_t(*ft) : -1;
        info.weight_type = tfu::dtype_name(m.weights.main_type);
        // Callers with an older, smaller struct get the prefix they know about (0 = "all of it").
        size_t n = out_info->struct_size == 0 ? sizeof info : std::min<size_t>(out_info->struct_size, sizeof info);
        if (out_info->struct_size != 0 && out_info->struct_size < sizeof(uint32_t))
            tfu::fail(TFU_STATUS_INVALID_ARGUMENT, "tfu_model_info.struct_size is too small");
        info.struct_size = uint32_t(n);
        std::memcpy(static_cast<void*>(out_info), &info, n);
    });
}

TFU_API bool tfu_model_token_is_eog(const tfu_model* model, tfu_token token) {
    if (!model || token < 0 || token >= model->impl->hp.n_vocab) return false;
    return model->impl->voc->is_eog(token);
}

}  // extern "C"
