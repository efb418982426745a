// Lazily created compute pipelines over the embedded SPIR-V (see vk_pipelines.h).
#include "vk_pipelines.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "core/error.h"
#include "vk_shaders.h"

namespace tfu::vk {

namespace {

// "name=value" of one driver statistic, by its format. Integers of more than 32 bits also in hex: NVIDIA's 580
// driver (H100, 2026-11-25) reports "Local Memory Size" with bit 36 set, the bytes per thread in the low 32 bits
// (0x1000000000 for a shader without local memory, 0x1000000800 for one with a dynamically indexed float[512]).
std::string stat_text(const VkPipelineExecutableStatisticKHR& st) {
    char buf[48];
    uint64_t wide = 0;  // an integer value, shown in hex too where it passes 32 bits
    switch (st.format) {
        case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_BOOL32_KHR:
            std::snprintf(buf, sizeof buf, "%s", st.value.b32 ? "true" : "false");
            break;
        case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_INT64_KHR:
            std::snprintf(buf, sizeof buf, "%lld", (long long)st.value.i64);
            wide = st.value.i64 > 0 ? uint64_t(st.value.i64) : 0;
            break;
        case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_UINT64_KHR:
            std::snprintf(buf, sizeof buf, "%llu", (unsigned long long)st.value.u64);
            wide = st.value.u64;
            break;
        case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_FLOAT64_KHR:
            std::snprintf(buf, sizeof buf, "%g", st.value.f64);
            break;
        default: std::snprintf(buf, sizeof buf, "?");
    }
    std::string v = buf;
    if (wide >> 32) {
        std::snprintf(buf, sizeof buf, " (0x%llx)", (unsigned long long)wide);
        v += buf;
    }
    return std::string(st.name) + "=" + v;
}

// TFU_VK_PIPELINE_STATS=1 (caps().pipeline_stats; the pipeline was created with CAPTURE_STATISTICS): one info line
// per executable of `p`: "vulkan: pipeline stats <name> [<spec> ] <executable>: <stat>=<value>, ...". A diagnostic,
// so a failed query is a log line, never an error.
void log_pipeline_stats(const context& ctx, VkPipeline p, const char* name, const std::string& spec) {
    const fns& f = ctx.vk();
    VkPipelineInfoKHR pi{};
    pi.sType = VK_STRUCTURE_TYPE_PIPELINE_INFO_KHR;
    pi.pipeline = p;
    uint32_t n = 0;
    VkResult r = f.vkGetPipelineExecutablePropertiesKHR(ctx.device(), &pi, &n, nullptr);
    std::vector<VkPipelineExecutablePropertiesKHR> execs(n);
    for (VkPipelineExecutablePropertiesKHR& e : execs) e.sType = VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_PROPERTIES_KHR;
    if (r == VK_SUCCESS && n) r = f.vkGetPipelineExecutablePropertiesKHR(ctx.device(), &pi, &n, execs.data());
    if (r != VK_SUCCESS && r != VK_INCOMPLETE) {
        ctx.log().logf(TFU_LOG_INFO, "vulkan: pipeline stats %s [%s ]: vkGetPipelineExecutablePropertiesKHR failed: %s",
                       name, spec.c_str(), result_name(r).c_str());
        return;
    }
    execs.resize(std::min<size_t>(n, execs.size()));
    for (uint32_t i = 0; i < execs.size(); ++i) {
        VkPipelineExecutableInfoKHR ei{};
        ei.sType = VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_INFO_KHR;
        ei.pipeline = p;
        ei.executableIndex = i;
        uint32_t ns = 0;
        r = f.vkGetPipelineExecutableStatisticsKHR(ctx.device(), &ei, &ns, nullptr);
        std::vector<VkPipelineExecutableStatisticKHR> stats(ns);
        for (VkPipelineExecutableStatisticKHR& st : stats)
            st.sType = VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_STATISTIC_KHR;
        if (r == VK_SUCCESS && ns) r = f.vkGetPipelineExecutableStatisticsKHR(ctx.device(), &ei, &ns, stats.data());
        std::string line;
        if (r != VK_SUCCESS && r != VK_INCOMPLETE) {
            line = "vkGetPipelineExecutableStatisticsKHR failed: " + result_name(r);
        } else {
            stats.resize(std::min<size_t>(ns, stats.size()));
            for (const VkPipelineExecutableStatisticKHR& st : stats) line += (line.empty() ? "" : ", ") + stat_text(st);
        }
        // log(), not logf(): the statistics of one executable may pass logf's 1024-byte buffer.
        ctx.log().log(TFU_LOG_INFO, std::string("vulkan: pipeline stats ") + name + " [" + spec + " ] " +
                                        execs[i].name + ": " + line);
    }
}

}  // namespace

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
    if (ctx_.caps().pipeline_stats) ci.flags |= VK_PIPELINE_CREATE_CAPTURE_STATISTICS_BIT_KHR;
    VkPipeline p = VK_NULL_HANDLE;
    check(ctx_.vk().vkCreateComputePipelines(ctx_.device(), ctx_.pipeline_cache(), 1, &ci, nullptr, &p),
          "vkCreateComputePipelines");
    pipelines_[key] = p;
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    create_ms_ += ms;
    std::string s;
    for (uint32_t v : spec) s += " " + std::to_string(v);
    ctx_.log().logf(TFU_LOG_DEBUG, "vulkan: pipeline %s [%s ] created in %.1f ms", name, s.c_str(), ms);
    if (ctx_.caps().pipeline_stats) log_pipeline_stats(ctx_, p, name, s);
    return p;
}

}  // namespace tfu::vk
