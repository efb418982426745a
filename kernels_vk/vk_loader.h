// Reaches the Vulkan loader at run time only: dlopen("libvulkan.so.1") + vkGetInstanceProcAddr, and every
// function the module calls loaded through it into one table (the module never links libvulkan; VK_NO_PROTOTYPES).
// Also: VkResult -> tfu::error mapping (vk_check).
#pragma once

#include <vulkan/vulkan_core.h>

#include <string>

namespace tfu::vk {

// Loaded before an instance exists (vkGetInstanceProcAddr(NULL, ...)).
#define TFU_VK_GLOBAL_FNS(X)                 \
    X(vkCreateInstance)                      \
    X(vkEnumerateInstanceExtensionProperties) \
    X(vkEnumerateInstanceLayerProperties)    \
    X(vkEnumerateInstanceVersion)

// Loaded with the instance.
#define TFU_VK_INSTANCE_FNS(X)                  \
    X(vkDestroyInstance)                        \
    X(vkEnumeratePhysicalDevices)               \
    X(vkGetPhysicalDeviceProperties)            \
    X(vkGetPhysicalDeviceProperties2)           \
    X(vkGetPhysicalDeviceFeatures)              \
    X(vkGetPhysicalDeviceFeatures2)             \
    X(vkGetPhysicalDeviceMemoryProperties)      \
    X(vkGetPhysicalDeviceMemoryProperties2)     \
    X(vkGetPhysicalDeviceQueueFamilyProperties) \
    X(vkEnumerateDeviceExtensionProperties)     \
    X(vkCreateDevice)                           \
    X(vkGetDeviceProcAddr)

// Optional instance functions (VK_EXT_debug_utils, only with validation).
#define TFU_VK_DEBUG_FNS(X)             \
    X(vkCreateDebugUtilsMessengerEXT)   \
    X(vkDestroyDebugUtilsMessengerEXT)

// Optional instance functions of device extensions (null when the loader or no driver has them): the cooperative
// matrix properties of VK_NV_cooperative_matrix (vk_context.cpp, coopmat detection).
#define TFU_VK_OPTIONAL_INSTANCE_FNS(X) \
    X(vkGetPhysicalDeviceCooperativeMatrixPropertiesNV)

// Loaded with the device (vkGetDeviceProcAddr).
#define TFU_VK_DEVICE_FNS(X)          \
    X(vkDestroyDevice)                \
    X(vkGetDeviceQueue)               \
    X(vkDeviceWaitIdle)               \
    X(vkAllocateMemory)               \
    X(vkFreeMemory)                   \
    X(vkMapMemory)                    \
    X(vkUnmapMemory)                  \
    X(vkFlushMappedMemoryRanges)      \
    X(vkInvalidateMappedMemoryRanges) \
    X(vkCreateBuffer)                 \
    X(vkDestroyBuffer)                \
    X(vkGetBufferMemoryRequirements)  \
    X(vkBindBufferMemory)             \
    X(vkCreateShaderModule)           \
    X(vkDestroyShaderModule)          \
    X(vkCreatePipelineCache)          \
    X(vkDestroyPipelineCache)         \
    X(vkGetPipelineCacheData)         \
    X(vkCreateComputePipelines)       \
    X(vkDestroyPipeline)              \
    X(vkCreatePipelineLayout)         \
    X(vkDestroyPipelineLayout)        \
    X(vkCreateDescriptorSetLayout)    \
    X(vkDestroyDescriptorSetLayout)   \
    X(vkCreateDescriptorPool)         \
    X(vkDestroyDescriptorPool)        \
    X(vkResetDescriptorPool)          \
    X(vkAllocateDescriptorSets)       \
    X(vkUpdateDescriptorSets)         \
    X(vkCreateCommandPool)            \
    X(vkDestroyCommandPool)           \
    X(vkAllocateCommandBuffers)       \
    X(vkFreeCommandBuffers)           \
    X(vkResetCommandBuffer)           \
    X(vkBeginCommandBuffer)           \
    X(vkEndCommandBuffer)             \
    X(vkCmdBindPipeline)              \
    X(vkCmdBindDescriptorSets)        \
    X(vkCmdPushConstants)             \
    X(vkCmdDispatch)                  \
    X(vkCmdPipelineBarrier)           \
    X(vkCmdCopyBuffer)                \
    X(vkQueueSubmit)                  \
    X(vkCreateFence)                  \
    X(vkDestroyFence)                 \
    X(vkWaitForFences)                \
    X(vkResetFences)                  \
    X(vkCreateQueryPool)              \
    X(vkDestroyQueryPool)             \
    X(vkCmdResetQueryPool)            \
    X(vkCmdWriteTimestamp)            \
    X(vkGetQueryPoolResults)

// Optional device functions (null when the driver lacks them; loading never fails):
// VK_KHR_pipeline_executable_properties, for TFU_VK_PIPELINE_STATS=1 (vk_pipelines.cpp logs each pipeline's
// register, shared memory and spill counts).
#define TFU_VK_OPTIONAL_DEVICE_FNS(X)       \
    X(vkGetPipelineExecutablePropertiesKHR) \
    X(vkGetPipelineExecutableStatisticsKHR)

// The function table. One per backend (a device's functions belong to that device).
struct fns {
    PFN_vkGetInstanceProcAddr vkGetInstanceProcAddr = nullptr;
#define TFU_VK_DECLARE(name) PFN_##name name = nullptr;
    TFU_VK_GLOBAL_FNS(TFU_VK_DECLARE)
    TFU_VK_INSTANCE_FNS(TFU_VK_DECLARE)
    TFU_VK_DEBUG_FNS(TFU_VK_DECLARE)
    TFU_VK_OPTIONAL_INSTANCE_FNS(TFU_VK_DECLARE)
    TFU_VK_DEVICE_FNS(TFU_VK_DECLARE)
    TFU_VK_OPTIONAL_DEVICE_FNS(TFU_VK_DECLARE)
#undef TFU_VK_DECLARE
};

// Opens the loader (once per process; the handle stays open) and fills the global functions. Throws
// TFU_STATUS_BACKEND_UNAVAILABLE naming what is missing (no libvulkan.so.1, no vkGetInstanceProcAddr).
void load_global(fns& f);
// Fills the instance functions (the debug and optional ones may stay null); throws BACKEND_UNAVAILABLE if a required one is
// missing.
void load_instance(fns& f, VkInstance instance);
// Fills the device functions; throws BACKEND_UNAVAILABLE if a required one is missing (the optional ones may stay
// null).
void load_device(fns& f, VkDevice device);

// "VK_ERROR_OUT_OF_DEVICE_MEMORY", ... (or the number).
std::string result_name(VkResult r);
// Throws for a failed VkResult: OUT_OF_MEMORY for the out-of-memory results, DEVICE_ERROR otherwise, with the
// call's name and the result: "vulkan: vkQueueSubmit failed: VK_ERROR_DEVICE_LOST".
void check(VkResult r, const char* call);

}  // namespace tfu::vk
