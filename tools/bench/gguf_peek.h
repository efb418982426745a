// gguf_peek: reads only the header of a GGUF file (general.file_type and the tensor types) to label bench rows.
//
// tfu_model_info (tfusion.h) has no weight type yet, so tfusion-bench reads it from the file itself rather than
// from engine internals. Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md (v2/v3, little endian).
#pragma once

#include <cstdint>
#include <string>

namespace tfu_bench {

struct gguf_types {
    int64_t file_type = -1;        // general.file_type (llama.cpp's LLAMA_FTYPE_*), -1 when absent
    std::string file_type_name;    // "Q4_K_M", "F16", ...; "" when absent or unknown
    std::string dominant_type;     // ggml type holding the most weights among matrices (>= 2 dims): "Q8_0", ...
    std::string label;             // file_type_name if known, else dominant_type
};

// Reads the header of `path`. Returns false and sets *err (naming the file and what is wrong) on a missing,
// truncated or malformed file; every length and count is checked against the file size before use.
bool gguf_peek_types(const std::string& path, gguf_types* out, std::string* err);

// Names: ggml tensor type id -> "Q4_K" ("type<N>" for unknown ids); LLAMA_FTYPE id -> "Q4_K_M" ("" unknown).
std::string ggml_type_name(uint32_t type);
std::string llama_ftype_name(int64_t ftype);

}  // namespace tfu_bench
