// The Vulkan instance, the chosen physical device and its logical device with one compute queue: device choice
// (discrete, integrated, virtual; a CPU implementation such as lavapipe only when allowed), the features the
// shaders may use, validation layers with a debug messenger (env TFU_VK_VALIDATION=1) and the on-disk pipeline
// cache. Everything that outlives one op; no op logic here.
#pragma once

#include <cstdarg>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "backend/module.h"
#include "vk_loader.h"

namespace tfu::vk {

// Where the module's log lines go: the callback of tfu_module_options (never stdout/stderr).
struct logger {
    tfu_log_callback callback = nullptr;
    tfu_log_level min_level = TFU_LOG_INFO;
    void* user_data = nullptr;
    void log(tfu_log_level level, const std::string& message) const;
    void logf(tfu_log_level level, const char* fmt, ...) const __attribute__((format(printf, 3, 4)));
};

// What the chosen device offers (logged at creation; the kernels pick variants from it).
struct device_caps {
    std::string name;            // VkPhysicalDeviceProperties::deviceName
    VkPhysicalDeviceType type = VK_PHYSICAL_DEVICE_TYPE_OTHER;
    uint32_t api_version = 0;
    uint8_t uuid[VK_UUID_SIZE] = {};
    uint64_t max_storage_range = 0;       // maxStorageBufferRange
    uint64_t storage_offset_align = 1;    // minStorageBufferOffsetAlignment
    uint64_t max_allocation = 0;          // maxMemoryAllocationSize (Vulkan 1.1)
    uint32_t max_group_count[3] = {};     // maxComputeWorkGroupCount
    uint32_t max_group_invocations = 0;   // maxComputeWorkGroupInvocations (at least 128 by the spec)
    uint32_t max_push_constants = 0;
    uint32_t subgroup_size = 0;
    uint32_t subgroup_size_min = 0;       // narrowest compute subgroups: minSubgroupSize (1.3), else subgroup_size
    bool subgroup_arithmetic = false;     // subgroupAdd in compute shaders
    bool subgroup_shuffle = false;        // and subgroupShuffleXor
    bool fp16_arithmetic = false;         // shaderFloat16
    bool storage_16bit = false;           // storageBuffer16BitAccess
    bool int8_arithmetic = false;         // shaderInt8
    bool memory_budget = false;           // VK_EXT_memory_budget
    // 4 x int8 packed dot products in shaders (SPIR-V OpSDot, the decode matrix-vector kernel's mmv_i8.glsl):
    // VK_KHR_shader_integer_dot_product with its shaderIntegerDotProduct feature (enabled at device creation);
    // int_dot_fast: the device reports the signed 4 x 8-bit packed form as accelerated (a native instruction).
    bool int_dot = false;
    bool int_dot_fast = false;
    uint32_t max_shared_bytes = 0;        // maxComputeSharedMemorySize
    float timestamp_period_ns = 0;        // timestampPeriod: nanoseconds per timestamp tick
    uint32_t timestamp_bits = 0;          // the compute queue's timestampValidBits (0: no timestamps)
    // Tensor cores for prefill (shaders/mul_mat_cm.comp): VK_NV_cooperative_matrix lists an fp16 x fp16 -> f32,
    // subgroup-scope 16 x coopmat_n x 16 product, the cooperativeMatrix, shaderFloat16 and vulkanMemoryModel
    // features are there (and enabled at device creation), the subgroup size is 32, Vulkan >= 1.2, and
    // TFU_VK_COOPMAT is not 0. coopmat_why says why not otherwise (logged). TFU_VK_COOPMAT=emulate (or emulate8:
    // N = 8), for tests on devices without the extension: the CM_EMULATE variants (plain f32 code in place of the
    // cooperative-matrix operations), needing only shaderFloat16 (enabled then).
    bool coopmat = false;
    bool coopmat_emulated = false;
    uint32_t coopmat_n = 0;               // fragment columns N of the 16 x N x 16 product: 16, or 8 where only 16x8x16
    std::string coopmat_why;
    // TFU_VK_PIPELINE_STATS=1 and the device lists VK_KHR_pipeline_executable_properties with its
    // pipelineExecutableInfo feature (both enabled at device creation): every pipeline is created with
    // CAPTURE_STATISTICS and its executables' statistics are logged (vk_pipelines.cpp), e.g. NVIDIA's register
    // count, shared memory and spills per shader variant. A diagnostic: off by default, as capturing may cost
    // compile time.
    bool pipeline_stats = false;
};

// "discrete GPU", "integrated GPU", "virtual GPU", "CPU", "other".
const char* device_type_name(VkPhysicalDeviceType t);

class context {
public:
    // Creates everything; throws BACKEND_UNAVAILABLE (no loader, no device, CPU device not allowed, validation
    // requested but not installed) or DEVICE_ERROR/OUT_OF_MEMORY for failed calls.
    context(const tfu_module_options& options, const logger& log);
    ~context();
    context(const context&) = delete;
    context& operator=(const context&) = delete;

    const fns& vk() const { return f_; }
    VkDevice device() const { return device_; }
    VkPhysicalDevice physical() const { return physical_; }
    VkQueue queue() const { return queue_; }
    uint32_t queue_family() const { return queue_family_; }
    VkPipelineCache pipeline_cache() const { return pipeline_cache_; }
    const device_caps& caps() const { return caps_; }
    const logger& log() const { return log_; }

    // Validation (TFU_VK_VALIDATION=1): error messages seen since the last call, joined; empty if none. The
    // backend throws DEVICE_ERROR with them at its next run/upload/download.
    std::string take_validation_errors();
    bool validation_enabled() const { return messenger_ != VK_NULL_HANDLE; }
    // Called by the debug messenger.
    void on_validation_message(VkDebugUtilsMessageSeverityFlagBitsEXT severity, const char* message);

private:
    void destroy() noexcept;
    void create_instance(bool validation);
    void choose_device(const tfu_module_options& options);
    void detect_coopmat(const std::vector<VkExtensionProperties>& exts);
    void detect_int_dot(const std::vector<VkExtensionProperties>& exts);
    void detect_pipeline_stats(const std::vector<VkExtensionProperties>& exts);
    void create_device();
    void load_pipeline_cache();
    void save_pipeline_cache() noexcept;
    std::string pipeline_cache_path() const;

    logger log_;
    fns f_;
    VkInstance instance_ = VK_NULL_HANDLE;  // the process's, shared by contexts, never destroyed (vk_context.cpp)
    uint32_t instance_api_ = 0;  // the apiVersion the instance was created with
    VkDebugUtilsMessengerEXT messenger_ = VK_NULL_HANDLE;
    VkPhysicalDevice physical_ = VK_NULL_HANDLE;
    VkDevice device_ = VK_NULL_HANDLE;
    VkQueue queue_ = VK_NULL_HANDLE;
    uint32_t queue_family_ = 0;
    VkPipelineCache pipeline_cache_ = VK_NULL_HANDLE;
    device_caps caps_;
    std::vector<std::string> device_extensions_;  // enabled
    std::mutex validation_mutex_;
    std::string validation_errors_;
    size_t n_validation_errors_ = 0;
};

}  // namespace tfu::vk
