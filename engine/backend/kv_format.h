// KV cache storage formats (f16, bf16, q8, q4) for one block of B tokens of one KV head: byte layout, writers
// (one token row, or a whole block for per-channel q4 keys) and row readers that dequantize in registers.
//
// A "head block" is the bytes of one (layer, KV head, K or V) inside one paged block: B token rows of head_dim d.
// Layouts (all little-endian; f16 = IEEE half; every head block starts 16-byte aligned and its size is rounded
// up to a multiple of 16):
//   f16, bf16     : x[B][d] halves.
//   q8 (K and V)  : scale[B] f16 | code[B][d] int8.       x[t][c] = scale[t] * code[t][c]
//                   symmetric per (token, head): scale = max|x[t]| / 127, code = round(x / scale). Any d.
//   q4, V         : scale[B][ng] f16 | min[B][ng] f16 | code[B][ceil(d/2)] nibbles.
//                   per token, groups of g channels (g = largest divisor of d that is <= 32, ng = d / g),
//                   asymmetric: scale = (max - min) / 15, code = round((x - min) / scale) in 0..15,
//                   x[t][c] = code * scale[t][c/g] + min[t][c/g].
//   q4, K (KIVI)  : scale[d] f16 | min[d] f16 | code[B][ceil(d/2)] nibbles.
//                   per channel over the block's B tokens (ref: KIVI, arXiv 2402.02750, sec. 3: keys have
//                   outlier channels, so a per-channel range keeps the other channels' resolution):
//                   x[t][c] = code[t][c] * scale[c] + min[c]. Needs all B rows at once: kv_quantize_block_k().
// Nibbles: channel 2i in the low nibble of byte i of the row, channel 2i + 1 in the high nibble (so 8 channels
// are one little-endian uint32, bits 4j..4j+3 = channel j). An odd d leaves the last high nibble 0.
//
// Readers (kv_dot_row, kv_axpy_row) read one token row and never build a dequantized copy of the cache; they pick
// AVX2 (kv_format_avx2.cpp) when the CPU has it, else the scalar reference (both are exported for tests).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace tfu {

enum class kv_format : uint8_t { f16 = 0, bf16 = 1, q8 = 2, q4 = 3 };
enum class kv_part : uint8_t { k = 0, v = 1 };  // q4 differs: K per channel (per block), V per token (per group)

// "f16", "bf16", "q8", "q4".
const char* kv_format_name(kv_format f);
// Parses a name as above (what -ctk / -ctv take); throws INVALID_ARGUMENT naming `what` on anything else.
kv_format kv_format_parse(const std::string& name, const char* what);

// Group size of per-token q4: the largest divisor of d that is <= 32 (d 8 -> 8, 80 -> 20, 128 -> 32).
int32_t kv_q4_group(int32_t head_dim);

// The byte layout of one head block; made by kv_layout_make (which validates), then passed to every reader and
// writer. Plain data: a GPU kernel can take the same offsets.
struct kv_layout {
    kv_format format = kv_format::f16;
    kv_part part = kv_part::k;
    int32_t block_tokens = 0;  // B: a power of two >= 16
    int32_t head_dim = 0;      // d >= 1
    int32_t group = 0;         // q4 V: g; 0 otherwise
    int32_t row_code_bytes = 0;// q8: d; q4: ceil(d/2); f16/bf16: 2d
    size_t scale_offset = 0;   // q8: scale[B]; q4 V: scale[B][ng]; q4 K: scale[d] (f16 each)
    size_t min_offset = 0;     // q4 only: min[B][ng] (V) or min[d] (K)
    size_t code_offset = 0;    // where row 0's data starts (0 for f16/bf16)
    size_t bytes = 0;          // size of the head block, a multiple of 16

    bool per_token() const { return !(format == kv_format::q4 && part == kv_part::k); }
    bool operator==(const kv_layout& o) const {
        return format == o.format && part == o.part && block_tokens == o.block_tokens && head_dim == o.head_dim &&
               group == o.group && row_code_bytes == o.row_code_bytes && scale_offset == o.scale_offset &&
               min_offset == o.min_offset && code_offset == o.code_offset && bytes == o.bytes;
    }
};

// The rows of one (block, layer, head) of the paged cache: read with kv_dot_row / kv_axpy_row(*layout, data, t,
// ...), t < n_rows.
struct kv_rows {
    const kv_layout* layout;
    const uint8_t* data;
    int32_t n_rows;
};

// One layer's K and V as the ATTENTION_PAGED op reads them (backend/ops.def): for table block b and KV head h,
// k[b * n_head_kv + h] and v[b * n_head_kv + h]. Block b holds positions b * block_tokens ... Built by the
// runtime from the session's block table before each forward pass (kv/block_table.h).
struct paged_kv_view {
    int32_t n_blocks = 0;
    int32_t n_head_kv = 0;
    int32_t block_tokens = 0;
    const kv_rows* k = nullptr;
    const kv_rows* v = nullptr;
};

// Throws INVALID_ARGUMENT if B is not a power of two >= 16 or d < 1 (or d > 4096).
kv_layout kv_layout_make(kv_format format, kv_part part, int32_t block_tokens, int32_t head_dim);

// Bytes of one head block (= kv_layout_make(...).bytes).
size_t kv_bytes_per_block(kv_format format, kv_part part, int32_t block_tokens, int32_t head_dim);

// Writes token row t (0 <= t < B) of a per-token layout (all but q4 K; throws INVALID_ARGUMENT for q4 K):
// x is d floats. Touches only row t's bytes (and its scale/min), so rows may be written in any order.
void kv_write_row(const kv_layout& l, void* block, int32_t t, const float* x);

// Quantizes a whole q4 K head block from a full (B, d) tile whose rows are row_stride elements apart (f32 or
// f16 input: the f16 overload is what the session's residual tail holds). Throws INVALID_ARGUMENT for another
// layout. Also accepted for per-token layouts (then it writes the B rows one by one).
void kv_quantize_block_k(const kv_layout& l, void* block, const float* x, int64_t row_stride);
void kv_quantize_block_k(const kv_layout& l, void* block, const uint16_t* x_f16, int64_t row_stride);

// Dequantizes row t into out[d] (tests, truncation into a q4 K block, debugging: not for attention).
void kv_read_row(const kv_layout& l, const void* block, int32_t t, float* out);

// Attention readers: q . x[t] and acc += w * x[t] over d, dequantizing in registers. AVX2 when available.
float kv_dot_row(const kv_layout& l, const void* block, int32_t t, const float* q);
void kv_axpy_row(const kv_layout& l, const void* block, int32_t t, float w, float* acc);

// The two implementations, for tests and for callers that pick once per op (kv_use_avx2() caches nothing: it
// follows cpu_has_avx2(), which honours TFU_CPU_SIMD=scalar).
bool kv_use_avx2();
namespace kv_scalar {
float dot_row(const kv_layout& l, const void* block, int32_t t, const float* q);
void axpy_row(const kv_layout& l, const void* block, int32_t t, float w, float* acc);
}  // namespace kv_scalar
namespace kv_avx2 {  // only call when kv_use_avx2()
float dot_row(const kv_layout& l, const void* block, int32_t t, const float* q);
void axpy_row(const kv_layout& l, const void* block, int32_t t, float w, float* acc);
}  // namespace kv_avx2

}  // namespace tfu
