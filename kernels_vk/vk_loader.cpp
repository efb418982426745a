// dlopen of the Vulkan loader and the function table (see vk_loader.h).
#include "vk_loader.h"

#include <dlfcn.h>

#include <mutex>

#include "core/error.h"

namespace tfu::vk {

namespace {

// The loader stays open for the life of the process (a device's functions live in it).
void* open_loader(std::string* why) {
    static std::once_flag once;
    static void* handle = nullptr;
    static std::string error;
    std::call_once(once, [] {
        for (const char* name : {"libvulkan.so.1", "libvulkan.so"}) {
            handle = dlopen(name, RTLD_NOW | RTLD_LOCAL);
            if (handle) return;
            const char* e = dlerror();
            error += std::string("\n  ") + name + ": " + (e ? e : "cannot open");
        }
    });
    if (!handle && why) *why = error;
    return handle;
}

}  // namespace

void load_global(fns& f) {
    std::string why;
    void* h = open_loader(&why);
    if (!h) fail(TFU_STATUS_BACKEND_UNAVAILABLE, "vulkan: no Vulkan loader (install libvulkan1 and a driver):" + why);
    f.vkGetInstanceProcAddr = reinterpret_cast<PFN_vkGetInstanceProcAddr>(dlsym(h, "vkGetInstanceProcAddr"));
    if (!f.vkGetInstanceProcAddr)
        fail(TFU_STATUS_BACKEND_UNAVAILABLE, "vulkan: the loader libvulkan.so.1 has no vkGetInstanceProcAddr");
#define TFU_VK_LOAD(name)                                                                             \
    f.name = reinterpret_cast<PFN_##name>(f.vkGetInstanceProcAddr(VK_NULL_HANDLE, #name));            \
    if (!f.name && std::string(#name) != "vkEnumerateInstanceVersion")                                \
        fail(TFU_STATUS_BACKEND_UNAVAILABLE, "vulkan: the loader does not provide " #name);
    TFU_VK_GLOBAL_FNS(TFU_VK_LOAD)
#undef TFU_VK_LOAD
}

void load_instance(fns& f, VkInstance instance) {
#define TFU_VK_LOAD(name)                                                                     \
    f.name = reinterpret_cast<PFN_##name>(f.vkGetInstanceProcAddr(instance, #name));          \
    if (!f.name) fail(TFU_STATUS_BACKEND_UNAVAILABLE, "vulkan: the instance does not provide " #name);
    TFU_VK_INSTANCE_FNS(TFU_VK_LOAD)
#undef TFU_VK_LOAD
#define TFU_VK_LOAD_OPTIONAL(name) f.name = reinterpret_cast<PFN_##name>(f.vkGetInstanceProcAddr(instance, #name));
    TFU_VK_DEBUG_FNS(TFU_VK_LOAD_OPTIONAL)
    TFU_VK_OPTIONAL_INSTANCE_FNS(TFU_VK_LOAD_OPTIONAL)
#undef TFU_VK_LOAD_OPTIONAL
}

void load_device(fns& f, VkDevice device) {
#define TFU_VK_LOAD(name)                                                                 \
    f.name = reinterpret_cast<PFN_##name>(f.vkGetDeviceProcAddr(device, #name));          \
    if (!f.name) fail(TFU_STATUS_BACKEND_UNAVAILABLE, "vulkan: the device does not provide " #name);
    TFU_VK_DEVICE_FNS(TFU_VK_LOAD)
#undef TFU_VK_LOAD
#define TFU_VK_LOAD_OPTIONAL(name) f.name = reinterpret_cast<PFN_##name>(f.vkGetDeviceProcAddr(device, #name));
    TFU_VK_OPTIONAL_DEVICE_FNS(TFU_VK_LOAD_OPTIONAL)
#undef TFU_VK_LOAD_OPTIONAL
}

std::string result_name(VkResult r) {
    switch (r) {
#define TFU_VK_CASE(x) \
    case x: return #x;
        TFU_VK_CASE(VK_SUCCESS)
        TFU_VK_CASE(VK_NOT_READY)
        TFU_VK_CASE(VK_TIMEOUT)
        TFU_VK_CASE(VK_INCOMPLETE)
        TFU_VK_CASE(VK_ERROR_OUT_OF_HOST_MEMORY)
        TFU_VK_CASE(VK_ERROR_OUT_OF_DEVICE_MEMORY)
        TFU_VK_CASE(VK_ERROR_INITIALIZATION_FAILED)
        TFU_VK_CASE(VK_ERROR_DEVICE_LOST)
        TFU_VK_CASE(VK_ERROR_MEMORY_MAP_FAILED)
        TFU_VK_CASE(VK_ERROR_LAYER_NOT_PRESENT)
        TFU_VK_CASE(VK_ERROR_EXTENSION_NOT_PRESENT)
        TFU_VK_CASE(VK_ERROR_FEATURE_NOT_PRESENT)
        TFU_VK_CASE(VK_ERROR_INCOMPATIBLE_DRIVER)
        TFU_VK_CASE(VK_ERROR_TOO_MANY_OBJECTS)
        TFU_VK_CASE(VK_ERROR_FORMAT_NOT_SUPPORTED)
        TFU_VK_CASE(VK_ERROR_FRAGMENTED_POOL)
        TFU_VK_CASE(VK_ERROR_OUT_OF_POOL_MEMORY)
        TFU_VK_CASE(VK_ERROR_UNKNOWN)
#undef TFU_VK_CASE
        default: return "VkResult " + std::to_string(int(r));
    }
}

void check(VkResult r, const char* call) {
    if (r == VK_SUCCESS) return;
    const std::string msg = std::string("vulkan: ") + call + " failed: " + result_name(r);
    if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY) fail(TFU_STATUS_OUT_OF_MEMORY, msg);
    fail(TFU_STATUS_DEVICE_ERROR, msg);
}

}  // namespace tfu::vk
