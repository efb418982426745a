// Library logging: lines go to the user's callback (tfu_set_log_callback), never to stdout/stderr.
#pragma once

#include <string>

#include "tfusion/tfusion.h"

namespace tfu {

void log_set_callback(tfu_log_callback callback, tfu_log_level min_level, void* user_data);
bool log_enabled(tfu_log_level level);
void log(tfu_log_level level, const std::string& message);

// printf-style helper: tfu::logf(TFU_LOG_INFO, "loaded %s (%d layers)", path, n).
void logf(tfu_log_level level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace tfu
