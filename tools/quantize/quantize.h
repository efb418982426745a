// tfusion-quantize's library: converts a GGUF model between weight types, streaming one tensor at a time.
//
// Each tensor is read row by row from the memory-mapped input (any source weight type is dequantized to f32),
// quantized to the type the mix picks (tools/quantize/mix.h) on a thread pool, and written by the GGUF writer's
// fill callback, so only one tensor's output is in memory at a time. All metadata is copied; general.file_type
// is set to the mix's LLAMA_FTYPE value and general.quantization_version to 2. The output is written to a
// temporary file and renamed into place, so a failure never leaves a partial OUT.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace tfu::quantize {

struct tensor_report {
    std::string name;
    dtype src_type = dtype::F32;
    dtype dst_type = dtype::F32;
    int64_t n_elements = 0;
    size_t src_bytes = 0, dst_bytes = 0;
    // With options::stats: sqrt(mean((dequant(q) - x)^2)) / sqrt(mean(x^2)), x the dequantized source (0 when
    // x is all zero and reproduced exactly); -1 when not measured.
    double rel_rmse = -1.0;
};

struct report {
    std::vector<tensor_report> tensors;
    size_t src_bytes = 0, dst_bytes = 0;  // tensor data only
    int64_t n_elements = 0;
    uint64_t out_file_bytes = 0;
    double seconds = 0.0;
};

struct options {
    std::string input, output, type;
    int threads = 0;     // <= 0: all hardware threads
    bool stats = false;  // measure per-tensor relative RMSE (dequantizes the output again)
    // Called before each tensor is converted: index (0-based), count, and the tensor's report so far (name,
    // types, sizes), plus seconds since the start.
    std::function<void(size_t i, size_t n, const tensor_report& t, double elapsed)> progress;
};

// Runs the conversion. Bad TYPE: TFU_STATUS_INVALID_ARGUMENT; missing/invalid input: the reader's status;
// unwritable output: TFU_STATUS_IO_ERROR (OUT untouched, no temporary left behind).
report run(const options& opt);

// sqrt(sum (a - b)^2 / sum b^2) over n values, accumulated in double (0 when both are zero).
double relative_rmse(const float* a, const float* b, int64_t n);

}  // namespace tfu::quantize
