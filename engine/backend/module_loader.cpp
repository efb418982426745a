// Loads a GPU backend module (backend/module.h) with dlopen and wraps its backend so that whatever it throws
// reaches the engine as a tfu::error.
#include <dlfcn.h>

#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "backend/module.h"
#include "core/error.h"

#ifndef TFU_MODULE_BUILD_DIR
#define TFU_MODULE_BUILD_DIR ""
#endif

namespace tfu {
namespace {

// The module's backend behind the engine's interface. A module links its own copy of core/error.h; its
// tfu::error normally matches ours (same name), and any other std::exception becomes BACKEND_ERROR.
class module_backend final : public backend {
public:
    explicit module_backend(backend* inner, std::string file) : inner_(inner), file_(std::move(file)) {}
    ~module_backend() override { delete inner_; }
    const char* name() const override { return inner_->name(); }
    bool supports(const op& o, std::string* why) const override {
        return guard([&] { return inner_->supports(o, why); });
    }
    void run(const op* ops, size_t n_ops) override { guard([&] { inner_->run(ops, n_ops); }); }
    void sync() override { guard([&] { inner_->sync(); }); }
    bool host_memory() const override { return inner_->host_memory(); }
    void* alloc(size_t bytes, const char* what) override { return guard([&] { return inner_->alloc(bytes, what); }); }
    void free(void* p) noexcept override { inner_->free(p); }
    void upload(void* dst, const void* src, size_t bytes) override {
        guard([&] { inner_->upload(dst, src, bytes); });
    }
    void download(void* dst, const void* src, size_t bytes) override {
        guard([&] { inner_->download(dst, src, bytes); });
    }
    void copy(void* dst, const void* src, size_t bytes) override { guard([&] { inner_->copy(dst, src, bytes); }); }
    void memory_info(uint64_t* total, uint64_t* free_bytes) const override {
        guard([&] { inner_->memory_info(total, free_bytes); });
    }

private:
    template <typename F>
    auto guard(F&& f) const -> decltype(f()) {
        try {
            return f();
        } catch (const error&) {
            throw;
        } catch (const std::bad_alloc&) {
            fail(TFU_STATUS_OUT_OF_MEMORY, file_ + ": out of host memory");
        } catch (const std::exception& e) {
            fail(TFU_STATUS_DEVICE_ERROR, file_ + ": " + e.what());
        }
    }
    backend* inner_;
    std::string file_;
};

std::string self_dir() {
    Dl_info info{};
    if (dladdr(reinterpret_cast<void*>(&load_module_backend), &info) == 0 || !info.dli_fname) return {};
    std::string f = info.dli_fname;
    const size_t slash = f.rfind('/');
    return slash == std::string::npos ? std::string(".") : f.substr(0, slash);
}

std::vector<std::string> search_dirs() {
    std::vector<std::string> dirs;
    if (const char* env = std::getenv("TFU_MODULE_DIR"); env && *env) return {env};  // only there when set
    if (std::string d = self_dir(); !d.empty()) dirs.push_back(d);
    if (*TFU_MODULE_BUILD_DIR) dirs.emplace_back(TFU_MODULE_BUILD_DIR);
    return dirs;
}

}  // namespace

std::unique_ptr<backend> load_module_backend(tfu_backend_kind kind, const tfu_module_options& options) {
    const char* file = kind == TFU_BACKEND_CUDA ? "libtfusion-cuda.so" : kind == TFU_BACKEND_VULKAN ? "libtfusion-vulkan.so" : nullptr;
    if (!file) fail(TFU_STATUS_INVALID_ARGUMENT, "load_module_backend: not a module kind");
    std::string tried;
    for (const std::string& dir : search_dirs()) {
        const std::string path = dir + "/" + file;
        // RTLD_LOCAL: the module's copy of the engine's internals stays private to it.
        void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            const char* why = dlerror();
            tried += "\n  " + path + ": " + (why ? why : "cannot open");
            continue;
        }
        auto create = reinterpret_cast<tfu_module_create_fn>(dlsym(h, TFU_MODULE_CREATE_SYMBOL));
        if (!create) {
            tried += "\n  " + path + ": no symbol " TFU_MODULE_CREATE_SYMBOL;
            dlclose(h);
            continue;
        }
        // The handle is kept open for the process lifetime: the backend's code and any thread it started live in
        // the module.
        backend* out = nullptr;
        char msg[1024] = {0};
        const int st = create(TFU_MODULE_ABI_VERSION, &options, &out, msg, sizeof msg);
        if (st != TFU_STATUS_OK || !out) {
            msg[sizeof msg - 1] = 0;
            fail(st == TFU_STATUS_OK ? TFU_STATUS_DEVICE_ERROR : tfu_status(st), path + ": " + msg);
        }
        return std::make_unique<module_backend>(out, path);
    }
    fail(TFU_STATUS_BACKEND_UNAVAILABLE, std::string("backend module ") + file + " not found; looked in:" + tried +
                                             "\n(set TFU_MODULE_DIR to its folder, or use TFU_BACKEND=cpu)");
}

}  // namespace tfu
