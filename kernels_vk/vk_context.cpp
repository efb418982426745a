// Vulkan instance, device choice, logical device, validation messenger and the on-disk pipeline cache
// (see vk_context.h).
#include "vk_context.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <mutex>

#include "core/error.h"

namespace tfu::vk {

void logger::log(tfu_log_level level, const std::string& message) const {
    if (callback && level >= min_level) callback(level, message.c_str(), user_data);
}

void logger::logf(tfu_log_level level, const char* fmt, ...) const {
    if (!callback || level < min_level) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    callback(level, buf, user_data);
}

const char* device_type_name(VkPhysicalDeviceType t) {
    switch (t) {
        case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return "discrete GPU";
        case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return "integrated GPU";
        case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return "virtual GPU";
        case VK_PHYSICAL_DEVICE_TYPE_CPU: return "CPU";
        default: return "other";
    }
}

namespace {

bool env_on(const char* name) {
    const char* v = std::getenv(name);
    return v && *v && std::strcmp(v, "0") != 0;
}

// Lower is better: discrete, integrated, virtual, then CPU implementations, then anything else.
int type_rank(VkPhysicalDeviceType t) {
    switch (t) {
        case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return 0;
        case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return 1;
        case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return 2;
        case VK_PHYSICAL_DEVICE_TYPE_CPU: return 3;
        default: return 4;
    }
}

VKAPI_ATTR VkBool32 VKAPI_CALL debug_callback(VkDebugUtilsMessageSeverityFlagBitsEXT severity,
                                              VkDebugUtilsMessageTypeFlagsEXT, const VkDebugUtilsMessengerCallbackDataEXT* data,
                                              void* user) {
    if (user && data && data->pMessage) static_cast<context*>(user)->on_validation_message(severity, data->pMessage);
    return VK_FALSE;  // never abort the call that triggered the message
}

VkDebugUtilsMessengerCreateInfoEXT messenger_info(context* self) {
    VkDebugUtilsMessengerCreateInfoEXT mi{};
    mi.sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT;
    mi.messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT;
    mi.messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                     VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT;
    mi.pfnUserCallback = debug_callback;
    mi.pUserData = self;
    return mi;
}

// The process's VkInstances, one per validation mode (off, on, with synchronization validation), created by the
// first context that needs one and never destroyed: contexts share them. NVIDIA's driver (580, on an H100) failed
// vkCreateInstance with VK_ERROR_INCOMPATIBLE_DRIVER after about 27 instances had been created and destroyed in one
// process (2026-11-24, test_vk_module many_backends_one_after_another), so an application opening and closing
// engines would lose Vulkan; with one instance the driver is loaded once. The module stays loaded for the process
// (backend/module_loader.cpp), and with it this table.
struct kept_instance {
    VkInstance instance = VK_NULL_HANDLE;
    uint32_t api = 0;
};
std::mutex g_instances_mutex;
kept_instance g_instances[3];

// Whether exts lists the extension `name`.
bool listed(const std::vector<VkExtensionProperties>& exts, const char* name) {
    for (const VkExtensionProperties& e : exts)
        if (std::strcmp(e.extensionName, name) == 0) return true;
    return false;
}
// vkGetPhysicalDeviceFeatures2 / vkGetPhysicalDeviceProperties2 filling the structure chain that starts at `chain`.
void query_features(const fns& f, VkPhysicalDevice pd, void* chain) {
    VkPhysicalDeviceFeatures2 feat{};
    feat.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2;
    feat.pNext = chain;
    f.vkGetPhysicalDeviceFeatures2(pd, &feat);
}
VkPhysicalDeviceProperties query_properties(const fns& f, VkPhysicalDevice pd, void* chain) {
    VkPhysicalDeviceProperties2 p2{};
    p2.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2;
    p2.pNext = chain;
    f.vkGetPhysicalDeviceProperties2(pd, &p2);
    return p2.properties;
}

}  // namespace

context::context(const tfu_module_options& options, const logger& log) : log_(log) {
    try {
        load_global(f_);
        create_instance(env_on("TFU_VK_VALIDATION"));
        choose_device(options);
        create_device();
        load_pipeline_cache();
    } catch (...) {
        destroy();  // members are complete; only the Vulkan objects need undoing
        throw;
    }
}

context::~context() { destroy(); }

void context::destroy() noexcept {
    if (device_) {
        f_.vkDeviceWaitIdle(device_);
        if (pipeline_cache_) {
            save_pipeline_cache();
            f_.vkDestroyPipelineCache(device_, pipeline_cache_, nullptr);
            pipeline_cache_ = VK_NULL_HANDLE;
        }
        f_.vkDestroyDevice(device_, nullptr);
        device_ = VK_NULL_HANDLE;
    }
    if (messenger_ && f_.vkDestroyDebugUtilsMessengerEXT) {
        f_.vkDestroyDebugUtilsMessengerEXT(instance_, messenger_, nullptr);
        messenger_ = VK_NULL_HANDLE;
    }
    instance_ = VK_NULL_HANDLE;  // kept for the next context (g_instances)
}

void context::create_instance(bool validation) {
    uint32_t version = VK_API_VERSION_1_0;
    if (f_.vkEnumerateInstanceVersion) f_.vkEnumerateInstanceVersion(&version);
    if (version < VK_API_VERSION_1_1)
        fail(TFU_STATUS_BACKEND_UNAVAILABLE, "vulkan: the loader supports only Vulkan 1.0; the module needs 1.1");
    std::vector<const char*> layers, extensions;
    if (validation) {
        uint32_t n = 0;
        f_.vkEnumerateInstanceLayerProperties(&n, nullptr);
        std::vector<VkLayerProperties> props(n);
        f_.vkEnumerateInstanceLayerProperties(&n, props.data());
        bool found = false;
        for (const VkLayerProperties& p : props) found |= std::strcmp(p.layerName, "VK_LAYER_KHRONOS_validation") == 0;
        if (!found)
            fail(TFU_STATUS_BACKEND_UNAVAILABLE,
                 "vulkan: TFU_VK_VALIDATION=1 but VK_LAYER_KHRONOS_validation is not installed (vulkan-validationlayers)");
        layers.push_back("VK_LAYER_KHRONOS_validation");
        extensions.push_back(VK_EXT_DEBUG_UTILS_EXTENSION_NAME);
    }
    VkApplicationInfo app{};
    app.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO;
    app.pApplicationName = "tfusion";
    app.pEngineName = "tfusion";
    app.apiVersion = VK_API_VERSION_1_2 <= version ? VK_API_VERSION_1_2 : VK_API_VERSION_1_1;
    VkInstanceCreateInfo ci{};
    ci.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO;
    ci.pApplicationInfo = &app;
    ci.enabledLayerCount = uint32_t(layers.size());
    ci.ppEnabledLayerNames = layers.data();
    ci.enabledExtensionCount = uint32_t(extensions.size());
    ci.ppEnabledExtensionNames = extensions.data();
    VkDebugUtilsMessengerCreateInfoEXT mi = messenger_info(this);
    if (validation) ci.pNext = &mi;  // also reports vkCreateInstance / vkDestroyInstance
    // TFU_VK_VALIDATION=sync adds synchronization validation (missing or wrong barriers between dispatches/copies).
    const VkValidationFeatureEnableEXT sync_feature = VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT;
    VkValidationFeaturesEXT vf{};
    vf.sType = VK_STRUCTURE_TYPE_VALIDATION_FEATURES_EXT;
    vf.enabledValidationFeatureCount = 1;
    vf.pEnabledValidationFeatures = &sync_feature;
    const char* mode = std::getenv("TFU_VK_VALIDATION");
    const bool sync = validation && mode && std::strcmp(mode, "sync") == 0;
    std::lock_guard<std::mutex> lock(g_instances_mutex);
    kept_instance& kept = g_instances[!validation ? 0 : sync ? 2 : 1];
    if (sync) {
        vf.pNext = ci.pNext;
        ci.pNext = &vf;
        extensions.push_back(VK_EXT_VALIDATION_FEATURES_EXTENSION_NAME);
        ci.enabledExtensionCount = uint32_t(extensions.size());
        ci.ppEnabledExtensionNames = extensions.data();
    }
    if (!kept.instance) {
        const VkResult r = f_.vkCreateInstance(&ci, nullptr, &kept.instance);
        if (r == VK_ERROR_INCOMPATIBLE_DRIVER || r == VK_ERROR_INITIALIZATION_FAILED)
            fail(TFU_STATUS_BACKEND_UNAVAILABLE,
                 "vulkan: vkCreateInstance failed: " + result_name(r) + " (no Vulkan driver?)");
        check(r, "vkCreateInstance");
        kept.api = app.apiVersion;
    }
    instance_ = kept.instance;
    instance_api_ = kept.api;
    load_instance(f_, instance_);
    if (validation) {
        if (!f_.vkCreateDebugUtilsMessengerEXT)
            fail(TFU_STATUS_BACKEND_UNAVAILABLE, "vulkan: validation requested but VK_EXT_debug_utils is missing");
        check(f_.vkCreateDebugUtilsMessengerEXT(instance_, &mi, nullptr, &messenger_), "vkCreateDebugUtilsMessengerEXT");
        log_.log(TFU_LOG_INFO, std::string("vulkan: validation layer VK_LAYER_KHRONOS_validation enabled (TFU_VK_VALIDATION") +
                                   (vf.pNext || ci.pNext == &vf ? ", with synchronization validation)" : ")"));
    }
}

void context::choose_device(const tfu_module_options& options) {
    uint32_t n = 0;
    check(f_.vkEnumeratePhysicalDevices(instance_, &n, nullptr), "vkEnumeratePhysicalDevices");
    std::vector<VkPhysicalDevice> devs(n);
    if (n) check(f_.vkEnumeratePhysicalDevices(instance_, &n, devs.data()), "vkEnumeratePhysicalDevices");
    devs.resize(n);
    if (devs.empty()) fail(TFU_STATUS_BACKEND_UNAVAILABLE, "vulkan: the loader found no Vulkan device (no driver installed?)");
    const bool allow_cpu = options.allow_cpu_device || env_on("TFU_VK_ALLOW_CPU");
    std::string listing;
    int best = -1, best_rank = 99;
    for (size_t i = 0; i < devs.size(); ++i) {
        VkPhysicalDeviceProperties p{};
        f_.vkGetPhysicalDeviceProperties(devs[i], &p);
        listing += "\n  " + std::to_string(i) + ": " + p.deviceName + " (" + device_type_name(p.deviceType) + ")";
        const int rank = type_rank(p.deviceType);
        const bool usable = p.apiVersion >= VK_API_VERSION_1_1 && (rank != 3 || allow_cpu);
        if (options.device >= 0) {
            if (size_t(options.device) != i) continue;
            if (p.apiVersion < VK_API_VERSION_1_1)
                fail(TFU_STATUS_BACKEND_UNAVAILABLE, std::string("vulkan: device ") + p.deviceName + " supports only Vulkan 1.0");
            if (rank == 3 && !allow_cpu)
                fail(TFU_STATUS_BACKEND_UNAVAILABLE, std::string("vulkan: device ") + p.deviceName +
                                                         " is a CPU implementation; ask for TFU_BACKEND=vulkan to use it");
            best = int(i);
            best_rank = rank;
        } else if (usable && rank < best_rank) {
            best = int(i);
            best_rank = rank;
        }
    }
    if (options.device >= 0 && best < 0)
        fail(TFU_STATUS_BACKEND_UNAVAILABLE, "vulkan: TFU_DEVICE=" + std::to_string(options.device) +
                                                 " is not a device index; devices:" + listing);
    if (best < 0)
        fail(TFU_STATUS_BACKEND_UNAVAILABLE,
             std::string("vulkan: no usable device") +
                 (allow_cpu ? "" : " (CPU implementations such as lavapipe are used only when TFU_BACKEND=vulkan is asked for)") +
                 "; devices:" + listing);
    physical_ = devs[size_t(best)];

    // Properties and features the kernels care about. A compute shader may run in subgroups narrower than
    // subgroupSize (Intel: 8 of a reported 32) unless the pipeline asks otherwise; Vulkan 1.3 reports the narrowest
    // (kernels whose lane groups must fit a subgroup, attention_lanes, size them by it).
    VkPhysicalDeviceProperties basic{};
    f_.vkGetPhysicalDeviceProperties(physical_, &basic);
    VkPhysicalDeviceSubgroupSizeControlProperties size_control{};
    size_control.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_PROPERTIES;
    VkPhysicalDeviceSubgroupProperties sub{};
    sub.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES;
    if (basic.apiVersion >= VK_API_VERSION_1_3) sub.pNext = &size_control;
    VkPhysicalDeviceMaintenance3Properties m3{};
    m3.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES;
    m3.pNext = &sub;
    VkPhysicalDeviceIDProperties idp{};
    idp.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_ID_PROPERTIES;
    idp.pNext = &m3;
    const VkPhysicalDeviceProperties props = query_properties(f_, physical_, &idp);
    const VkPhysicalDeviceLimits& lim = props.limits;
    caps_.name = props.deviceName;
    caps_.type = props.deviceType;
    caps_.api_version = props.apiVersion;
    std::memcpy(caps_.uuid, props.pipelineCacheUUID, VK_UUID_SIZE);
    caps_.max_storage_range = lim.maxStorageBufferRange;
    caps_.storage_offset_align = lim.minStorageBufferOffsetAlignment ? lim.minStorageBufferOffsetAlignment : 1;
    caps_.max_allocation = m3.maxMemoryAllocationSize;
    for (int i = 0; i < 3; ++i) caps_.max_group_count[i] = lim.maxComputeWorkGroupCount[i];
    caps_.max_group_invocations = std::min(lim.maxComputeWorkGroupInvocations, lim.maxComputeWorkGroupSize[0]);
    caps_.max_push_constants = lim.maxPushConstantsSize;
    caps_.max_shared_bytes = lim.maxComputeSharedMemorySize;
    caps_.timestamp_period_ns = lim.timestampPeriod;
    caps_.subgroup_size = sub.subgroupSize;
    caps_.subgroup_arithmetic = (sub.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
                                (sub.supportedOperations & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT) && sub.subgroupSize >= 4;
    caps_.subgroup_shuffle = caps_.subgroup_arithmetic && (sub.supportedOperations & VK_SUBGROUP_FEATURE_SHUFFLE_BIT);
    caps_.subgroup_size_min = sub.subgroupSize;
    if (size_control.minSubgroupSize > 0) caps_.subgroup_size_min = std::min(size_control.minSubgroupSize, sub.subgroupSize);

    VkPhysicalDeviceShaderFloat16Int8Features f16i8{};
    f16i8.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES;
    VkPhysicalDevice16BitStorageFeatures s16{};
    s16.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES;
    s16.pNext = &f16i8;
    query_features(f_, physical_, &s16);
    caps_.fp16_arithmetic = f16i8.shaderFloat16;
    caps_.int8_arithmetic = f16i8.shaderInt8;
    caps_.storage_16bit = s16.storageBuffer16BitAccess;

    uint32_t ne = 0;
    f_.vkEnumerateDeviceExtensionProperties(physical_, nullptr, &ne, nullptr);
    std::vector<VkExtensionProperties> exts(ne);
    f_.vkEnumerateDeviceExtensionProperties(physical_, nullptr, &ne, exts.data());
    caps_.memory_budget = listed(exts, VK_EXT_MEMORY_BUDGET_EXTENSION_NAME);
    if (caps_.memory_budget) device_extensions_.push_back(VK_EXT_MEMORY_BUDGET_EXTENSION_NAME);
    detect_coopmat(exts);
    detect_int_dot(exts);
    detect_pipeline_stats(exts);

    log_.logf(TFU_LOG_INFO, "vulkan: device %d of %zu: %s (%s), Vulkan %u.%u", best, devs.size(), caps_.name.c_str(),
              device_type_name(caps_.type), VK_API_VERSION_MAJOR(caps_.api_version), VK_API_VERSION_MINOR(caps_.api_version));
    const std::string coopmat =
        !caps_.coopmat ? "no (" + caps_.coopmat_why + ")"
                       : "fp16 x fp16 -> f32 16x" + std::to_string(caps_.coopmat_n) + "x16 " +
                             (caps_.coopmat_emulated ? "emulated (TFU_VK_COOPMAT=emulate, tests only)"
                                                     : "(VK_NV_cooperative_matrix)");
    log_.logf(TFU_LOG_INFO,
              "vulkan: features: fp16 arithmetic %s, 16-bit storage %s, int8 %s, subgroup size %u (min %u; arithmetic "
              "%s, shuffle %s), memory budget %s, int8 dot product %s, cooperative matrix %s; maxStorageBufferRange "
              "%llu, storage offset alignment %llu",
              caps_.fp16_arithmetic ? "yes" : "no", caps_.storage_16bit ? "yes" : "no", caps_.int8_arithmetic ? "yes" : "no",
              caps_.subgroup_size, caps_.subgroup_size_min, caps_.subgroup_arithmetic ? "yes" : "no",
              caps_.subgroup_shuffle ? "yes" : "no", caps_.memory_budget ? "yes" : "no",
              !caps_.int_dot ? "no" : caps_.int_dot_fast ? "yes (accelerated)" : "yes (not accelerated)",
              coopmat.c_str(), (unsigned long long)caps_.max_storage_range, (unsigned long long)caps_.storage_offset_align);
    log_.logf(TFU_LOG_INFO,
              "vulkan: kernels: f32 arithmetic on 32-bit words (no 8/16-bit storage or fp16 needed); matrix-vector "
              "reductions %s%s; prefill MUL_MAT %s",
              caps_.subgroup_arithmetic ? "with subgroupAdd" : "in shared memory (no subgroup arithmetic: fallback)",
              caps_.int_dot_fast && caps_.subgroup_shuffle && caps_.subgroup_size_min >= 8
                  ? ", Q4_0/Q8_0 decode on int8 dot products" : "",
              caps_.coopmat ? "on cooperative matrices (fp16 inputs, f32 sums) from 32 columns, weights other than F32"
                            : "in f32 FMAs (no cooperative matrix)");
}

// The tensor-core prefill path (shaders/mul_mat_cm.comp) needs: VK_NV_cooperative_matrix with a listed fp16 x
// fp16 -> f32 (C and D) subgroup product of 16 x N x 16 (N = 16 preferred, else 8); the features
// cooperativeMatrix (VkPhysicalDeviceCooperativeMatrixFeaturesNV), shaderFloat16 (fp16 types, also in shared
// memory) and vulkanMemoryModel (glslang emits the Vulkan memory model for cooperative-matrix loads and stores),
// so a Vulkan 1.2 device and instance; the compute stage in cooperativeMatrixSupportedStages; subgroups of 32
// (the shader's 256 threads are 8 subgroups); the smallest tile's 20 KiB of shared memory. Anything missing: the
// f32 shader runs, and coopmat_why says why.
void context::detect_coopmat(const std::vector<VkExtensionProperties>& exts) {
    caps_.coopmat = false;
    caps_.coopmat_emulated = false;
    caps_.coopmat_n = 0;
    const char* mode = std::getenv("TFU_VK_COOPMAT");
    if (mode && (std::strcmp(mode, "emulate") == 0 || std::strcmp(mode, "emulate8") == 0)) {
        if (!caps_.fp16_arithmetic || caps_.api_version < VK_API_VERSION_1_2 || instance_api_ < VK_API_VERSION_1_2) {
            caps_.coopmat_why = "TFU_VK_COOPMAT=emulate needs shaderFloat16 and Vulkan 1.2";
        } else if (caps_.max_shared_bytes < 20480) {
            caps_.coopmat_why = "TFU_VK_COOPMAT=emulate: maxComputeSharedMemorySize below 20 KiB";
        } else {
            caps_.coopmat = caps_.coopmat_emulated = true;
            caps_.coopmat_n = mode[7] == '8' ? 8 : 16;
        }
        return;
    }
    auto no = [this](const std::string& why) { caps_.coopmat_why = why; };
    if (!listed(exts, VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME)) return no("no VK_NV_cooperative_matrix");
    if (mode && std::strcmp(mode, "0") == 0) return no("TFU_VK_COOPMAT=0");
    if (caps_.api_version < VK_API_VERSION_1_2 || instance_api_ < VK_API_VERSION_1_2)
        return no("needs Vulkan 1.2 for shaderFloat16 and vulkanMemoryModel");
    if (!f_.vkGetPhysicalDeviceCooperativeMatrixPropertiesNV)
        return no("the loader does not provide vkGetPhysicalDeviceCooperativeMatrixPropertiesNV");
    if (caps_.subgroup_size != 32)
        return no("subgroup size " + std::to_string(caps_.subgroup_size) + ", the shader needs 32");
    if (caps_.max_shared_bytes < 20480) return no("maxComputeSharedMemorySize below the 20 KiB of the smallest tile");

    VkPhysicalDeviceCooperativeMatrixFeaturesNV cmf{};
    cmf.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV;
    VkPhysicalDeviceVulkanMemoryModelFeatures mmf{};
    mmf.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_MEMORY_MODEL_FEATURES;
    mmf.pNext = &cmf;
    VkPhysicalDeviceShaderFloat16Int8Features f16{};
    f16.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES;
    f16.pNext = &mmf;
    query_features(f_, physical_, &f16);
    if (!cmf.cooperativeMatrix) return no("the cooperativeMatrix feature is missing");
    if (!f16.shaderFloat16) return no("the shaderFloat16 feature is missing");
    if (!mmf.vulkanMemoryModel) return no("the vulkanMemoryModel feature is missing");

    VkPhysicalDeviceCooperativeMatrixPropertiesNV cmp{};
    cmp.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_PROPERTIES_NV;
    query_properties(f_, physical_, &cmp);
    if (!(cmp.cooperativeMatrixSupportedStages & VK_SHADER_STAGE_COMPUTE_BIT))
        return no("cooperative matrices are not supported in compute shaders");

    uint32_t n = 0;
    VkResult r = f_.vkGetPhysicalDeviceCooperativeMatrixPropertiesNV(physical_, &n, nullptr);
    std::vector<VkCooperativeMatrixPropertiesNV> props(n);
    for (VkCooperativeMatrixPropertiesNV& p : props) p.sType = VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_NV;
    if (r == VK_SUCCESS && n) r = f_.vkGetPhysicalDeviceCooperativeMatrixPropertiesNV(physical_, &n, props.data());
    if (r != VK_SUCCESS && r != VK_INCOMPLETE)
        return no("vkGetPhysicalDeviceCooperativeMatrixPropertiesNV failed: " + result_name(r));
    props.resize(std::min<size_t>(n, props.size()));
    std::string listed;
    for (const VkCooperativeMatrixPropertiesNV& p : props) {
        const bool f16_f32 = p.AType == VK_COMPONENT_TYPE_FLOAT16_NV && p.BType == VK_COMPONENT_TYPE_FLOAT16_NV &&
                             p.CType == VK_COMPONENT_TYPE_FLOAT32_NV && p.DType == VK_COMPONENT_TYPE_FLOAT32_NV;
        if (f16_f32) listed += " " + std::to_string(p.MSize) + "x" + std::to_string(p.NSize) + "x" + std::to_string(p.KSize);
        if (f16_f32 && p.scope == VK_SCOPE_SUBGROUP_NV && p.MSize == 16 && p.KSize == 16 &&
            (p.NSize == 16 || (p.NSize == 8 && caps_.coopmat_n != 16)))
            caps_.coopmat_n = p.NSize;
    }
    if (!caps_.coopmat_n)
        return no("no fp16 x fp16 -> f32 subgroup product of 16x16x16 or 16x8x16 listed (fp16 -> f32:" +
                  (listed.empty() ? std::string(" none") : listed) + ")");
    caps_.coopmat = true;
    caps_.coopmat_why.clear();
    device_extensions_.push_back(VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME);
}

// The decode matrix-vector kernel's int8 path (shaders/mmv_i8.glsl) declares DotProduct and
// DotProductInput4x8BitPacked: the device must list VK_KHR_shader_integer_dot_product (reached through the
// extension, so a Vulkan 1.2 instance serves) with its shaderIntegerDotProduct feature.
void context::detect_int_dot(const std::vector<VkExtensionProperties>& exts) {
    if (!listed(exts, VK_KHR_SHADER_INTEGER_DOT_PRODUCT_EXTENSION_NAME)) return;
    VkPhysicalDeviceShaderIntegerDotProductFeatures idf{};
    idf.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_FEATURES;
    query_features(f_, physical_, &idf);
    if (!idf.shaderIntegerDotProduct) return;
    VkPhysicalDeviceShaderIntegerDotProductProperties idp{};
    idp.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_PROPERTIES;
    query_properties(f_, physical_, &idp);
    caps_.int_dot = true;
    caps_.int_dot_fast = idp.integerDotProduct4x8BitPackedSignedAccelerated;
    device_extensions_.push_back(VK_KHR_SHADER_INTEGER_DOT_PRODUCT_EXTENSION_NAME);
}

// TFU_VK_PIPELINE_STATS=1: the driver's per-pipeline statistics (VK_KHR_pipeline_executable_properties) need the
// extension and its pipelineExecutableInfo feature. Asked for but missing: one info line saying why, and pipelines
// are created as usual.
void context::detect_pipeline_stats(const std::vector<VkExtensionProperties>& exts) {
    if (!env_on("TFU_VK_PIPELINE_STATS")) return;
    auto no = [this](const char* why) {
        log_.logf(TFU_LOG_INFO, "vulkan: TFU_VK_PIPELINE_STATS=1 but %s: no pipeline statistics", why);
    };
    // Chaining the feature struct of an extension the device does not list would be invalid usage.
    if (!listed(exts, VK_KHR_PIPELINE_EXECUTABLE_PROPERTIES_EXTENSION_NAME))
        return no("the device does not list VK_KHR_pipeline_executable_properties");
    VkPhysicalDevicePipelineExecutablePropertiesFeaturesKHR pef{};
    pef.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PIPELINE_EXECUTABLE_PROPERTIES_FEATURES_KHR;
    query_features(f_, physical_, &pef);
    if (!pef.pipelineExecutableInfo) return no("the pipelineExecutableInfo feature is missing");
    caps_.pipeline_stats = true;
    device_extensions_.push_back(VK_KHR_PIPELINE_EXECUTABLE_PROPERTIES_EXTENSION_NAME);
}

void context::create_device() {
    uint32_t nq = 0;
    f_.vkGetPhysicalDeviceQueueFamilyProperties(physical_, &nq, nullptr);
    std::vector<VkQueueFamilyProperties> qf(nq);
    f_.vkGetPhysicalDeviceQueueFamilyProperties(physical_, &nq, qf.data());
    // Prefer a compute queue without graphics (async compute on discrete GPUs); any compute queue otherwise.
    int pick = -1;
    for (uint32_t i = 0; i < nq; ++i)
        if ((qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT) && !(qf[i].queueFlags & VK_QUEUE_GRAPHICS_BIT)) pick = int(i);
    for (uint32_t i = 0; i < nq && pick < 0; ++i)
        if (qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT) pick = int(i);
    if (pick < 0) fail(TFU_STATUS_BACKEND_UNAVAILABLE, "vulkan: " + caps_.name + " has no compute queue");
    queue_family_ = uint32_t(pick);
    caps_.timestamp_bits = qf[queue_family_].timestampValidBits;
    const float prio = 1.0f;
    VkDeviceQueueCreateInfo qi{};
    qi.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO;
    qi.queueFamilyIndex = queue_family_;
    qi.queueCount = 1;
    qi.pQueuePriorities = &prio;
    std::vector<const char*> exts;
    for (const std::string& e : device_extensions_) exts.push_back(e.c_str());
    VkDeviceCreateInfo ci{};
    ci.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO;
    ci.queueCreateInfoCount = 1;
    ci.pQueueCreateInfos = &qi;
    ci.enabledExtensionCount = uint32_t(exts.size());
    ci.ppEnabledExtensionNames = exts.data();
    // Features only for the shaders that declare them, and only when they are used: the cooperative-matrix shader
    // (detect_coopmat: CooperativeMatrixNV, Float16, VulkanMemoryModel; the emulated variants only Float16) and
    // the int8 dot product (detect_int_dot).
    VkPhysicalDeviceCooperativeMatrixFeaturesNV cmf{};
    cmf.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV;
    cmf.cooperativeMatrix = VK_TRUE;
    VkPhysicalDeviceVulkanMemoryModelFeatures mmf{};
    mmf.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_MEMORY_MODEL_FEATURES;
    mmf.vulkanMemoryModel = VK_TRUE;
    mmf.pNext = &cmf;
    VkPhysicalDeviceShaderFloat16Int8Features f16{};
    f16.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES;
    f16.shaderFloat16 = VK_TRUE;
    f16.pNext = &mmf;
    if (caps_.coopmat) ci.pNext = &f16;
    if (caps_.coopmat_emulated) f16.pNext = nullptr;
    VkPhysicalDeviceShaderIntegerDotProductFeatures idf{};  // the int8 dot product (detect_int_dot)
    idf.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_FEATURES;
    idf.shaderIntegerDotProduct = VK_TRUE;
    if (caps_.int_dot) {
        idf.pNext = const_cast<void*>(ci.pNext);
        ci.pNext = &idf;
    }
    VkPhysicalDevicePipelineExecutablePropertiesFeaturesKHR pef{};  // TFU_VK_PIPELINE_STATS (detect_pipeline_stats)
    pef.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PIPELINE_EXECUTABLE_PROPERTIES_FEATURES_KHR;
    pef.pipelineExecutableInfo = VK_TRUE;
    if (caps_.pipeline_stats) {
        pef.pNext = const_cast<void*>(ci.pNext);
        ci.pNext = &pef;
    }
    check(f_.vkCreateDevice(physical_, &ci, nullptr, &device_), "vkCreateDevice");
    load_device(f_, device_);
    if (caps_.pipeline_stats &&
        (!f_.vkGetPipelineExecutablePropertiesKHR || !f_.vkGetPipelineExecutableStatisticsKHR)) {
        caps_.pipeline_stats = false;
        log_.log(TFU_LOG_INFO, "vulkan: TFU_VK_PIPELINE_STATS=1 but the device does not provide "
                               "vkGetPipelineExecutable{Properties,Statistics}KHR: no pipeline statistics");
    }
    f_.vkGetDeviceQueue(device_, queue_family_, 0, &queue_);
}

std::string context::pipeline_cache_path() const {
    std::string dir;
    if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) dir = x;
    else if (const char* h = std::getenv("HOME"); h && *h) dir = std::string(h) + "/.cache";
    else return {};
    dir += "/tfusion";
    char hex[2 * VK_UUID_SIZE + 1];
    for (uint32_t i = 0; i < VK_UUID_SIZE; ++i) std::snprintf(hex + 2 * i, 3, "%02x", caps_.uuid[i]);
    return dir + "/vk-pipeline-cache-" + hex + ".bin";
}

void context::load_pipeline_cache() {
    std::vector<char> data;
    const std::string path = pipeline_cache_path();
    if (!path.empty()) {
        std::ifstream in(path, std::ios::binary);
        if (in) data.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
        // The header (Vulkan spec, vkGetPipelineCacheData): length, version, vendor, device, UUID. Data made by
        // another driver or a truncated file is dropped here rather than handed to the driver.
        if (data.size() >= 16 + VK_UUID_SIZE && std::memcmp(data.data() + 16, caps_.uuid, VK_UUID_SIZE) != 0) data.clear();
        if (!data.empty() && data.size() < 16 + VK_UUID_SIZE) data.clear();
        log_.logf(TFU_LOG_DEBUG, "vulkan: pipeline cache %s: %s", path.c_str(),
                  data.empty() ? "none usable" : (std::to_string(data.size()) + " bytes").c_str());
    }
    VkPipelineCacheCreateInfo ci{};
    ci.sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO;
    ci.initialDataSize = data.size();
    ci.pInitialData = data.empty() ? nullptr : data.data();
    if (f_.vkCreatePipelineCache(device_, &ci, nullptr, &pipeline_cache_) != VK_SUCCESS) {
        ci.initialDataSize = 0;
        ci.pInitialData = nullptr;
        check(f_.vkCreatePipelineCache(device_, &ci, nullptr, &pipeline_cache_), "vkCreatePipelineCache");
    }
}

void context::save_pipeline_cache() noexcept {
    const std::string path = pipeline_cache_path();
    if (path.empty()) return;
    size_t n = 0;
    if (f_.vkGetPipelineCacheData(device_, pipeline_cache_, &n, nullptr) != VK_SUCCESS || n == 0) return;
    std::vector<char> data(n);
    if (f_.vkGetPipelineCacheData(device_, pipeline_cache_, &n, data.data()) != VK_SUCCESS) return;
    // mkdir -p of the folder; a failure is only a log line (the cache is an optimisation).
    for (size_t i = 1; i < path.size(); ++i)
        if (path[i] == '/') {
            const std::string d = path.substr(0, i);
            if (::mkdir(d.c_str(), 0755) != 0 && errno != EEXIST) break;
        }
    const std::string tmp = path + ".tmp" + std::to_string(::getpid());
    std::ofstream out(tmp, std::ios::binary);
    if (out) out.write(data.data(), std::streamsize(n));
    if (!out || (out.close(), !out) || std::rename(tmp.c_str(), path.c_str()) != 0) {
        std::remove(tmp.c_str());
        log_.logf(TFU_LOG_DEBUG, "vulkan: cannot write the pipeline cache %s (ignored)", path.c_str());
    }
}

void context::on_validation_message(VkDebugUtilsMessageSeverityFlagBitsEXT severity, const char* message) {
    const bool is_error = severity & VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT;
    log_.log(is_error ? TFU_LOG_ERROR : TFU_LOG_WARN, std::string("vulkan validation: ") + message);
    if (!is_error) return;
    std::lock_guard<std::mutex> lock(validation_mutex_);
    ++n_validation_errors_;
    if (validation_errors_.size() < 4000) validation_errors_ += std::string(validation_errors_.empty() ? "" : "\n") + message;
}

std::string context::take_validation_errors() {
    std::lock_guard<std::mutex> lock(validation_mutex_);
    std::string s;
    if (n_validation_errors_)
        s = std::to_string(n_validation_errors_) + " Vulkan validation error(s): " + validation_errors_;
    validation_errors_.clear();
    n_validation_errors_ = 0;
    return s;
}

}  // namespace tfu::vk
