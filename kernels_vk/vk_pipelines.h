// Compute pipelines of the embedded shaders, created on first use (a CPU driver compiles each one for a while)
// through the context's pipeline cache. Every pipeline shares one layout: descriptor set 0 with k_n_bindings
// storage buffers (0 dst, 1-3 src0..src2, 4 the parameter arena, 5-8 paged KV windows) and 128 bytes of push
// constants; specialization constants 0.. carry per-pipeline choices (the weight dtype of the dequantizers).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "vk_context.h"

namespace tfu::vk {

constexpr uint32_t k_n_bindings = 9;
constexpr uint32_t k_push_bytes = 128;

class pipelines {
public:
    explicit pipelines(context& ctx);
    ~pipelines();
    pipelines(const pipelines&) = delete;
    pipelines& operator=(const pipelines&) = delete;

    VkPipelineLayout layout() const { return layout_; }
    VkDescriptorSetLayout set_layout() const { return set_layout_; }
    // The pipeline of shader variant `name` (see kernels_vk/CMakeLists.txt) with specialization constants
    // spec[i] at constant_id i. Throws INTERNAL for an unknown name, DEVICE_ERROR if the driver fails.
    VkPipeline get(const char* name, const std::vector<uint32_t>& spec = {});
    // Milliseconds spent creating pipelines so far (profile: run() time without first-use compilation).
    double create_ms() const { return create_ms_; }

private:
    VkShaderModule module(const std::string& name);

    context& ctx_;
    VkDescriptorSetLayout set_layout_ = VK_NULL_HANDLE;
    VkPipelineLayout layout_ = VK_NULL_HANDLE;
    std::map<std::string, VkShaderModule> modules_;
    std::map<std::pair<std::string, std::vector<uint32_t>>, VkPipeline> pipelines_;
    double create_ms_ = 0;
};

}  // namespace tfu::vk
