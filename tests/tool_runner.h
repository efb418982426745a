// Running the built tools (tfusion-bench, -quantize, -synth, ...) from tests: their path relative to the test
// binary (<build>/tests/<test> -> <build>/tools/<dir>/<tool>) and a popen wrapper that collects the output.
#pragma once

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>

namespace tfu::test {

// <build>/tools/<rel>, e.g. built_tool("bench/tfusion-bench"); "" if /proc/self/exe cannot be read.
inline std::string built_tool(const std::string& rel) {
    char buf[4096];
    const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) return "";
    const std::string self(buf, size_t(n));
    return self.substr(0, self.rfind('/')) + "/../tools/" + rel;
}

inline bool file_exists(const std::string& p) {
    struct stat st {};
    return !p.empty() && ::stat(p.c_str(), &st) == 0;
}

struct tool_result {
    int rc = -1;      // exit status, -1 if the tool did not exit normally
    std::string out;  // stdout, and stderr where asked
};

// Runs "'tool' args" through the shell (args are passed as written: quote paths yourself).
inline tool_result run_tool(const std::string& tool, const std::string& args, bool with_stderr = true) {
    const std::string cmd = "'" + tool + "' " + args + (with_stderr ? " 2>&1" : " 2>/dev/null");
    tool_result r;
    FILE* p = ::popen(cmd.c_str(), "r");
    if (!p) return r;
    char buf[4096];
    size_t k;
    while ((k = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, k);
    const int st = ::pclose(p);
    r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return r;
}

}  // namespace tfu::test
