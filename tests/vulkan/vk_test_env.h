// Helpers of the Vulkan module's tests: environment variables set for a scope (the backend reads its tuning and
// path choices at creation) and the library's log lines captured, with the backend's TFU_VK_PROFILE=1 counters
// read back from them.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#include "core/log.h"

namespace tfu::test {

// Sets environment variables for the lifetime of the object, then restores them.
class scoped_env {
public:
    scoped_env() = default;
    scoped_env(const char* name, const char* value) { set(name, value); }
    scoped_env(const scoped_env&) = delete;
    scoped_env& operator=(const scoped_env&) = delete;
    // value nullptr: unset for the object's lifetime.
    void set(const char* name, const char* value) {
        const char* old = std::getenv(name);
        saved_.push_back({name, old ? old : "", old != nullptr});
        if (value) setenv(name, value, 1);
        else unsetenv(name);
    }
    ~scoped_env() {
        for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) {
            if (it->had) setenv(it->name.c_str(), it->value.c_str(), 1);
            else unsetenv(it->name.c_str());
        }
    }

private:
    struct saved {
        std::string name, value;
        bool had;
    };
    std::vector<saved> saved_;
};

// The backend's profile lines: "vulkan: profile: R run() calls, O ops, D dispatches; F fused launches computed
// P ops" and "vulkan: replay on: N runs replayed, ...".
struct profile_counts {
    unsigned long long runs = 0, ops = 0, dispatches = 0, fused = 0, fused_ops = 0, replayed = 0;
    bool seen = false;
};

// Dispatches of shader variant `shader` in one log line "vulkan: profile: dispatches recorded per shader: a N, b M"
// (TFU_VK_PROFILE=1, logged when a backend is destroyed); 0 for other lines and unlisted shaders.
inline unsigned long long recorded_in(const std::string& line, const std::string& shader) {
    const std::string head = "vulkan: profile: dispatches recorded per shader:";
    const size_t at = line.find(head);
    if (at == std::string::npos) return 0;
    const std::string list = line.substr(at + head.size()) + ",";
    const size_t p = list.find(" " + shader + " ");
    return p == std::string::npos ? 0 : std::strtoull(list.c_str() + p + shader.size() + 2, nullptr, 10);
}

// Collects the library's log lines (the module's included) while alive.
class log_capture {
public:
    log_capture() { log_set_callback(&log_capture::cb, TFU_LOG_INFO, this); }
    ~log_capture() { log_set_callback(nullptr, TFU_LOG_INFO, nullptr); }
    profile_counts profile() {
        std::lock_guard<std::mutex> lock(mutex_);
        profile_counts p;
        for (const std::string& l : lines_) {
            const size_t at = l.find("vulkan: profile: ");
            if (at != std::string::npos &&
                std::sscanf(l.c_str() + at,
                            "vulkan: profile: %llu run() calls, %llu ops, %llu dispatches; %llu fused launches computed "
                            "%llu ops",
                            &p.runs, &p.ops, &p.dispatches, &p.fused, &p.fused_ops) == 5)
                p.seen = true;
            const size_t rp = l.find("vulkan: replay on: ");
            if (rp != std::string::npos) std::sscanf(l.c_str() + rp, "vulkan: replay on: %llu runs replayed", &p.replayed);
        }
        return p;
    }
    // Dispatches of shader variant `shader` in the profile lines (recorded_in), summed over the backends seen.
    unsigned long long recorded(const std::string& shader) {
        std::lock_guard<std::mutex> lock(mutex_);
        unsigned long long n = 0;
        for (const std::string& l : lines_) n += recorded_in(l, shader);
        return n;
    }
    // The first line logged that contains `text`; empty if none.
    std::string line(const std::string& text) {
        std::lock_guard<std::mutex> lock(mutex_);
        for (const std::string& l : lines_)
            if (l.find(text) != std::string::npos) return l;
        return {};
    }
    // Whether a line containing `text` was logged.
    bool saw(const std::string& text) {
        std::lock_guard<std::mutex> lock(mutex_);
        for (const std::string& l : lines_)
            if (l.find(text) != std::string::npos) return true;
        return false;
    }

private:
    static void cb(tfu_log_level, const char* message, void* user) {
        auto* self = static_cast<log_capture*>(user);
        std::lock_guard<std::mutex> lock(self->mutex_);
        self->lines_.emplace_back(message);
    }
    std::mutex mutex_;
    std::vector<std::string> lines_;
};

}  // namespace tfu::test
