// Command-line options of tfusion-perplexity.
#pragma once

#include <cstdint>
#include <string>

#include "tfusion/tfusion.h"

namespace tfu::ppl {

struct options {
    std::string model;        // -m
    std::string text;         // -f
    int32_t n_ctx = 512;      // -c: chunk length
    bool n_ctx_given = false; // -c was on the command line (else --kl-base takes the base file's)
    int32_t n_batch = 0;      // -b: prefill batch; 0 = n_ctx
    int32_t n_threads = 0;    // -t: 0 = all cores
    int32_t n_chunks = -1;    // --chunks: -1 = all
    std::string kl_base;      // --kl-base FILE
    bool save_base = false;   // --save-base: write FILE instead of comparing against it
    int32_t top_k = 0;        // --kl-top-k: log-probs kept per token in a saved base; 0 = min(n_vocab, 1024)
    tfu_backend_kind backend = TFU_BACKEND_AUTO;
    tfu_kv_type kv_type_k = TFU_KV_F16;  // -ctk, --cache-type-k
    tfu_kv_type kv_type_v = TFU_KV_F16;  // -ctv, --cache-type-v
    tfu_kv_policy kv_policy = TFU_KV_POLICY_REFUSE;  // --kv-policy refuse|window|h2o|summary
    int32_t kv_window = 0;    // --kv-window N: cache capacity in tokens (with a policy); 0 = N_CTX
    int32_t kv_sink = 4;      // --kv-sink N
    int32_t kv_recent = 0;    // --kv-recent N (0: a quarter of the cache)
    int32_t kv_chunk = 8;     // --kv-chunk N
    bool help = false;
};

// Parses argv; throws std::invalid_argument with a message naming the bad argument.
options parse_options(int argc, char** argv);
const char* usage_text();
// The command-line name of a KV cache format: "f16", "bf16", "q8", "q4".
const char* kv_type_name(tfu_kv_type t);
// The command-line name of a cache policy: "refuse", "window", "h2o", "summary".
const char* kv_policy_name(tfu_kv_policy p);

}  // namespace tfu::ppl
