// Lazily created compute pipelines over the embedded SPIR-V (see vk_pipelines.h).
#include "vk_pipelines.h"

#include <chrono>
#include <cstring>

#include "core/error.h"
#include "vk_shaders.h"

namespace tfu::vk {

pipelines::pipelines(context& ctx) : ctx_(ctx) {
    const fns& f = ctx_.vk();
    VkDescriptorSetLayoutBinding b[k_n_bindings]{};
    for (uint32_t i = 0; i < k_n_bindings; ++i) {
        b[i].binding = i;
        b[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
        b[i].descriptorCount = 1;
        b[i].stageFlags = VK_SHADER_STAGE_COMPUTE_BIT;
    }
    VkDescriptorSetLayoutCreateInfo dl{};
    dl.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO;
    dl.bindingCount = k_n_bindings;
    dl.pBindings = b;
    check(f.vkCreateDescriptorSetLayout(ctx_.device(), &dl, nullptr, &set_layout_), "vkCreateDescriptorSetLayout");
    VkPushConstantRange pr{};
    pr.stageFlags = VK_SHADER_STAGE_COMPUTE_BIT;
    pr.size = k_push_bytes;
    VkPipelineLayoutCreateInfo pl{};
    pl.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO;
    pl.setLayoutCount = 1;
    pl.pSetLayouts = &set_layout_;
    pl.pushConstantRangeCount = 1;
    pl.pPushConstantRanges = &pr;
    const VkResult r = f.vkCreatePipelineLayout(ctx_.device(), &pl, nullptr, &layout_);
    if (r != VK_SUCCESS) {
        f.vkDestroyDescriptorSetLayout(ctx_.device(), set_layout_, nullptr);
        check(r, "vkCreatePipelineLayout");
    }
}

pipelines::~pipelines() {
    const fns& f = ctx_.vk();
    for (auto& [key, p] : pipelines_) f.vkDestroyPipeline(ctx_.device(), p, nullptr);
    for (auto& [name, m] : modules_) f.vkDestroyShaderModule(ctx_.device(), m, nullptr);
    f.vkDestroyPipelineLayout(ctx_.device(), layout_, nullptr);
    f.vkDestroyDescriptorSetLayout(ctx_.device(), set_layout_, nullptr);
}

VkShaderModule pipelines::module(const std::string& name) {
    auto it = modules_.find(name);
    if (it != modules_.end()) return it->second;
    const shader_blob* blob = nullptr;
    for (size_t i = 0; i < k_n_shaders; ++i)
        if (name == k_shaders[i].name) blob = &k_shaders[i];
    if (!blob) fail(TFU_STATUS_INTERNAL, "vulkan: no embedded shader named " + name);
    VkShaderModuleCreateInfo ci{};
    ci.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO;
    ci.codeSize = blob->n_words * 4;
    ci.pCode = blob->code;
    VkShaderModule m = VK_NULL_HANDLE;
    check(ctx_.vk().vkCreateShaderModule(ctx_.device(), &ci, nullptr, &m), "vkCreateShaderModule");
    modules_[name] = m;
    return m;
}

VkPipeline pipelines::get(const char* name, const std::vector<uint32_t>& spec) {
    auto key = std::make_pair(std::string(name), spec);
    auto it = pipelines_.find(key);
    if (it != pipelines_.end()) return it->second;
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<VkSpecializationMapEntry> entries(spec.size());
    for (size_t i = 0; i < spec.size(); ++i) {
        entries[i].constantID = uint32_t(i);
        entries[i].offset = uint32_t(i * 4);
        entries[i].size = 4;
    }
    VkSpecializationInfo si{};
    si.mapEntryCount = uint32_t(entries.size());
    si.pMapEntries = entries.data();
    si.dataSize = spec.size() * 4;
    si.pData = spec.data();
    VkComputePipelineCreateInfo ci{};
    ci.sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO;
    ci.stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO;
    ci.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
    ci.stage.module = module(name);
    ci.stage.pName = "main";
    ci.stage.pSpecializationInfo = spec.empty() ? nullptr : &si;
    ci.layout = layout_;
    VkPipeline p = VK_NULL_HANDLE;
    check(ctx_.vk().vkCreateComputePipelines(ctx_.device(), ctx_.pipeline_cache(), 1, &ci, nullptr, &p),
          "vkCreateComputePipelines");
    pipelines_[key] = p;
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    create_ms_ += ms;
    std::string s;
    for (uint32_t v : spec) s += " " + std::to_string(v);
    ctx_.log().logf(TFU_LOG_DEBUG, "vulkan: pipeline %s [%s ] created in %.1f ms", name, s.c_str(), ms);
    return p;
}

}  // namespace tfu::vk
