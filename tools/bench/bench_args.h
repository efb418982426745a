// tfusion-bench command line: llama-bench-like options with comma lists, validated with messages naming them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <tfusion/tfusion.h>

namespace tfu_bench {

struct options {
    std::vector<std::string> models;            // -m A.gguf -m B.gguf or -m A.gguf,B.gguf
    std::vector<int32_t> n_prompt = {512};      // -p: prefill test sizes (0 = none)
    std::vector<int32_t> n_gen = {128};         // -n: decode test sizes (0 = none)
    std::vector<int32_t> depth = {0};           // -d: tokens already in the context before each test
    std::vector<int32_t> threads = {0};         // -t: 0 = number of cores
    std::vector<tfu_backend_kind> backends = {TFU_BACKEND_AUTO};
    std::vector<tfu_kv_type> type_k = {TFU_KV_F16};  // -ctk f16,q8: KV cache formats of keys
    std::vector<tfu_kv_type> type_v = {TFU_KV_F16};  // -ctv: of values (every K x V pair is run)
    tfu_kv_policy kv_policy = TFU_KV_POLICY_REFUSE;  // --kv-policy refuse|window|h2o|summary
    int32_t kv_window = 0;                      // --kv-window N: window policy's cache size (0 = what tests need)
    int32_t n_batch = 512;                      // -b: prompt tokens per prefill step
    int32_t reps = 5;                           // -r
    int32_t n_sessions = 1;                     // --sessions N: tg tests decode N sessions in one batch per step
    bool warmup = true;                         // --no-warmup turns the untimed run before each test off
    bool verbose = false;                       // -v: library log lines to stderr
    std::string json;                           // --json FILE, "-" = stdout (the table then goes to stderr)
    uint32_t seed = 1234;
};

// Parses argv. Returns 1 to run, 0 on a bad command line (message on stderr), -1 for --help.
// Checks that every model file exists and is readable.
int parse_args(int argc, char** argv, options& o);
void usage(FILE* f);
const char* backend_arg_name(tfu_backend_kind b);
// "f16", "bf16", "q8", "q4": the -ctk / -ctv name of a KV cache format.
const char* kv_type_arg_name(tfu_kv_type t);

}  // namespace tfu_bench
