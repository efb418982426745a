// The Vulkan context with TFU_VK_VALIDATION=1 (kernels_vk/vk_context.h): the Khronos validation layer is on, its
// error messages reach the log callback and are collected for the backend to throw at its next call. Provokes
// one error on purpose (a buffer with no usage flags). Skipped without a device or without the layer installed.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "core/error.h"
#include "vk_context.h"

namespace tfu::vk {
namespace {

void capture(tfu_log_level level, const char* message, void* user) {
    static_cast<std::vector<std::pair<tfu_log_level, std::string>>*>(user)->push_back({level, message});
}

TEST(vk_validation, errors_are_logged_and_collected) {
    std::vector<std::pair<tfu_log_level, std::string>> lines;
    logger log;
    log.callback = capture;
    log.min_level = TFU_LOG_DEBUG;
    log.user_data = &lines;
    tfu_module_options o{};
    o.struct_size = sizeof o;
    o.device = -1;
    o.allow_cpu_device = true;
    setenv("TFU_VK_VALIDATION", "1", 1);
    std::unique_ptr<context> ctx;
    try {
        ctx = std::make_unique<context>(o, log);
    } catch (const error& e) {
        unsetenv("TFU_VK_VALIDATION");
        if (e.status() == TFU_STATUS_BACKEND_UNAVAILABLE) GTEST_SKIP() << e.what();
        throw;
    }
    unsetenv("TFU_VK_VALIDATION");
    ASSERT_TRUE(ctx->validation_enabled());
    bool device_logged = false;
    for (const auto& [lvl, s] : lines) device_logged |= s.find("vulkan: device") != std::string::npos;
    EXPECT_TRUE(device_logged) << "the chosen device is logged";
    EXPECT_EQ(ctx->take_validation_errors(), "") << "no errors from creating the device";

    VkBufferCreateInfo bi{};
    bi.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO;
    bi.size = 256;
    bi.usage = 0;  // invalid: VUID-VkBufferCreateInfo-usage-requiredbitmask
    bi.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
    VkBuffer buf = VK_NULL_HANDLE;
    const size_t before = lines.size();
    ctx->vk().vkCreateBuffer(ctx->device(), &bi, nullptr, &buf);
    if (buf) ctx->vk().vkDestroyBuffer(ctx->device(), buf, nullptr);
    const std::string errors = ctx->take_validation_errors();
    EXPECT_NE(errors.find("VUID-VkBufferCreateInfo-usage"), std::string::npos) << errors;
    bool logged_error = false;
    for (size_t i = before; i < lines.size(); ++i) logged_error |= lines[i].first == TFU_LOG_ERROR;
    EXPECT_TRUE(logged_error) << "validation errors go to the log at error level";
    EXPECT_EQ(ctx->take_validation_errors(), "") << "taken once";
}

}  // namespace
}  // namespace tfu::vk
