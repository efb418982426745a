// Process-wide log sink: a callback set through the C API, guarded by a mutex.
#include "core/log.h"

#include <cstdarg>
#include <cstdio>
#include <mutex>
#include <vector>

namespace tfu {
namespace {
std::mutex g_mutex;
tfu_log_callback g_callback = nullptr;
void* g_user_data = nullptr;
tfu_log_level g_min_level = TFU_LOG_INFO;
}  // namespace

void log_set_callback(tfu_log_callback callback, tfu_log_level min_level, void* user_data) {
    std::lock_guard<std::mutex> lock(g_mutex);
    g_callback = callback;
    g_min_level = min_level;
    g_user_data = user_data;
}

bool log_enabled(tfu_log_level level) {
    std::lock_guard<std::mutex> lock(g_mutex);
    return g_callback != nullptr && level >= g_min_level;
}

void log(tfu_log_level level, const std::string& message) {
    std::lock_guard<std::mutex> lock(g_mutex);
    if (g_callback != nullptr && level >= g_min_level) g_callback(level, message.c_str(), g_user_data);
}

void logf(tfu_log_level level, const char* fmt, ...) {
    if (!log_enabled(level)) return;
    va_list ap;
    va_start(ap, fmt);
    va_list ap2;
    va_copy(ap2, ap);
    int n = std::vsnprintf(nullptr, 0, fmt, ap);
    va_end(ap);
    std::vector<char> buf(n > 0 ? size_t(n) + 1 : 1, '\0');
    if (n > 0) std::vsnprintf(buf.data(), buf.size(), fmt, ap2);
    va_end(ap2);
    log(level, std::string(buf.data()));
}

}  // namespace tfu
