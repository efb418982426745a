// Labels for bench rows: llama.cpp's file-type names (general.file_type) and tensor type names in its spelling.
#pragma once

#include <cstdint>
#include <string>

namespace tfu_bench {

// LLAMA_FTYPE id -> "Q4_K_M" ("" when unknown or -1).
std::string llama_ftype_name(int64_t ftype);
// The engine's type name ("q4_K", as tfu_model_info.weight_type gives it) in llama-bench's spelling ("Q4_K").
std::string type_label(const char* weight_type);

}  // namespace tfu_bench
