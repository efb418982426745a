// KV cache formats: layouts, quantizing writers and the scalar reference readers (see kv_format.h).
#include "backend/kv_format.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "backend/cpu/cpu_ops.h"
#include "core/error.h"
#include "core/fp16.h"

namespace tfu {

namespace {

size_t round16(size_t n) { return (n + 15) & ~size_t(15); }

// f16 of a non-negative scale, clamped to the largest finite half (65504) so that huge values saturate the codes
// instead of turning into inf * 0 = nan.
uint16_t scale_to_f16(float s) { return f32_to_fp16(std::min(s, 65504.0f)); }
uint16_t min_to_f16(float m) { return f32_to_fp16(std::max(-65504.0f, std::min(m, 65504.0f))); }

const uint16_t* u16(const void* block, size_t off) {
    return reinterpret_cast<const uint16_t*>(static_cast<const uint8_t*>(block) + off);
}
uint16_t* u16(void* block, size_t off) { return reinterpret_cast<uint16_t*>(static_cast<uint8_t*>(block) + off); }

void set_nibble(uint8_t* row, int32_t c, uint32_t code) {
    uint8_t& b = row[c / 2];
    if (c % 2 == 0) b = uint8_t((b & 0xf0u) | code);
    else b = uint8_t((b & 0x0fu) | (code << 4));
}
inline uint32_t get_nibble(const uint8_t* row, int32_t c) { return (row[c / 2] >> (4 * (c % 2))) & 0xfu; }

// Asymmetric 4-bit of n values x[i * stride]: writes the f16 scale and min, returns the decoded pair through
// s_out/m_out (codes are computed against the decoded f16 values, so that the reader reproduces them exactly).
void q4_range(const float* x, int64_t n, int64_t stride, uint16_t* s_h, uint16_t* m_h, float* s_out, float* m_out) {
    float mn = x[0], mx = x[0];
    for (int64_t i = 1; i < n; ++i) {
        mn = std::min(mn, x[i * stride]);
        mx = std::max(mx, x[i * stride]);
    }
    *m_h = min_to_f16(mn);
    float m = fp16_to_f32(*m_h);
    // The f16 min may round above the true min: widen the range by that amount so codes stay in 0..15.
    *s_h = scale_to_f16((mx - std::min(m, mn)) / 15.0f);
    *s_out = fp16_to_f32(*s_h);
    *m_out = m;
}

inline uint32_t q4_code(float x, float m, float inv_s) {
    float c = std::nearbyint((x - m) * inv_s);
    return uint32_t(std::max(0.0f, std::min(15.0f, c)));
}

}  // namespace

const char* kv_format_name(kv_format f) {
    switch (f) {
        case kv_format::f16: return "f16";
        case kv_format::bf16: return "bf16";
        case kv_format::q8: return "q8";
        case kv_format::q4: return "q4";
    }
    return "?";
}

kv_format kv_format_parse(const std::string& name, const char* what) {
    for (kv_format f : {kv_format::f16, kv_format::bf16, kv_format::q8, kv_format::q4})
        if (name == kv_format_name(f)) return f;
    fail(TFU_STATUS_INVALID_ARGUMENT,
         std::string(what) + ": unknown KV cache format '" + name + "' (expected f16, bf16, q8 or q4)");
}

int32_t kv_q4_group(int32_t head_dim) {
    if (head_dim < 1) fail(TFU_STATUS_INVALID_ARGUMENT, "kv_q4_group: head_dim must be >= 1");
    for (int32_t g = std::min(head_dim, 32); g > 1; --g)
        if (head_dim % g == 0) return g;
    return 1;
}

kv_layout kv_layout_make(kv_format format, kv_part part, int32_t block_tokens, int32_t head_dim) {
    if (block_tokens < 16 || block_tokens > 4096 || (block_tokens & (block_tokens - 1)) != 0)
        fail(TFU_STATUS_INVALID_ARGUMENT, "kv layout: block_tokens must be a power of two in 16..4096, got " +
                                              std::to_string(block_tokens));
    if (head_dim < 1 || head_dim > 4096)
        fail(TFU_STATUS_INVALID_ARGUMENT, "kv layout: head_dim must be in 1..4096, got " + std::to_string(head_dim));
    if (uint8_t(format) > uint8_t(kv_format::q4)) fail(TFU_STATUS_INVALID_ARGUMENT, "kv layout: bad format");
    kv_layout l;
    l.format = format;
    l.part = part;
    l.block_tokens = block_tokens;
    l.head_dim = head_dim;
    const size_t B = size_t(block_tokens), d = size_t(head_dim);
    switch (format) {
        case kv_format::f16:
        case kv_format::bf16:
            l.row_code_bytes = int32_t(2 * d);
            l.code_offset = 0;
            l.bytes = round16(B * d * 2);
            break;
        case kv_format::q8:
            l.row_code_bytes = int32_t(d);
            l.scale_offset = 0;
            l.code_offset = B * 2;  // B >= 16: a multiple of 32
            l.bytes = round16(l.code_offset + B * d);
            break;
        case kv_format::q4: {
            l.row_code_bytes = int32_t((d + 1) / 2);
            size_t n_params;  // f16 scales (= mins) in the block
            if (part == kv_part::v) {
                l.group = kv_q4_group(head_dim);
                n_params = B * (d / size_t(l.group));
            } else {
                n_params = d;
            }
            l.scale_offset = 0;
            l.min_offset = n_params * 2;
            l.code_offset = round16(n_params * 4);
            l.bytes = round16(l.code_offset + B * size_t(l.row_code_bytes));
            break;
        }
    }
    return l;
}

size_t kv_bytes_per_block(kv_format format, kv_part part, int32_t block_tokens, int32_t head_dim) {
    return kv_layout_make(format, part, block_tokens, head_dim).bytes;
}

void kv_write_row(const kv_layout& l, void* block, int32_t t, const float* x) {
    if (!l.per_token())
        fail(TFU_STATUS_INVALID_ARGUMENT, "kv_write_row: q4 keys are quantized per block (kv_quantize_block_k)");
    TFU_CHECK(t >= 0 && t < l.block_tokens);
    const int32_t d = l.head_dim;
    uint8_t* base = static_cast<uint8_t*>(block);
    uint8_t* row = base + l.code_offset + size_t(t) * size_t(l.row_code_bytes);
    switch (l.format) {
        case kv_format::f16: {
            uint16_t* r = reinterpret_cast<uint16_t*>(row);
            for (int32_t c = 0; c < d; ++c) r[c] = f32_to_fp16(x[c]);
            break;
        }
        case kv_format::bf16: {
            uint16_t* r = reinterpret_cast<uint16_t*>(row);
            for (int32_t c = 0; c < d; ++c) r[c] = f32_to_bf16(x[c]);
            break;
        }
        case kv_format::q8: {
            float amax = 0.0f;
            for (int32_t c = 0; c < d; ++c) amax = std::max(amax, std::fabs(x[c]));
            uint16_t sh = scale_to_f16(amax / 127.0f);
            u16(block, l.scale_offset)[t] = sh;
            float s = fp16_to_f32(sh);
            float inv = s > 0.0f ? 1.0f / s : 0.0f;
            int8_t* r = reinterpret_cast<int8_t*>(row);
            for (int32_t c = 0; c < d; ++c)
                r[c] = int8_t(std::max(-127.0f, std::min(127.0f, std::nearbyint(x[c] * inv))));
            break;
        }
        case kv_format::q4: {  // V: per token, groups of g
            const int32_t g = l.group, ng = d / g;
            std::memset(row, 0, size_t(l.row_code_bytes));
            for (int32_t j = 0; j < ng; ++j) {
                float s, m;
                size_t pi = size_t(t) * size_t(ng) + size_t(j);
                q4_range(x + j * g, g, 1, u16(block, l.scale_offset) + pi, u16(block, l.min_offset) + pi, &s, &m);
                float inv = s > 0.0f ? 1.0f / s : 0.0f;
                for (int32_t c = j * g; c < (j + 1) * g; ++c) set_nibble(row, c, q4_code(x[c], m, inv));
            }
            break;
        }
    }
}

void kv_quantize_block_k(const kv_layout& l, void* block, const float* x, int64_t row_stride) {
    const int32_t B = l.block_tokens, d = l.head_dim;
    if (l.per_token()) {
        for (int32_t t = 0; t < B; ++t) kv_write_row(l, block, t, x + t * row_stride);
        return;
    }
    uint8_t* codes = static_cast<uint8_t*>(block) + l.code_offset;
    std::memset(codes, 0, size_t(B) * size_t(l.row_code_bytes));
    for (int32_t c = 0; c < d; ++c) {  // per channel c over the B rows
        float s, m;
        q4_range(x + c, B, row_stride, u16(block, l.scale_offset) + c, u16(block, l.min_offset) + c, &s, &m);
        float inv = s > 0.0f ? 1.0f / s : 0.0f;
        for (int32_t t = 0; t < B; ++t)
            set_nibble(codes + size_t(t) * size_t(l.row_code_bytes), c, q4_code(x[t * row_stride + c], m, inv));
    }
}

void kv_quantize_block_k(const kv_layout& l, void* block, const uint16_t* x_f16, int64_t row_stride) {
    const int32_t B = l.block_tokens, d = l.head_dim;
    std::vector<float> tile(size_t(B) * size_t(d));
    for (int32_t t = 0; t < B; ++t)
        for (int32_t c = 0; c < d; ++c) tile[size_t(t) * size_t(d) + size_t(c)] = fp16_to_f32(x_f16[t * row_stride + c]);
    kv_quantize_block_k(l, block, tile.data(), d);
}

void kv_read_row(const kv_layout& l, const void* block, int32_t t, float* out) {
    std::fill(out, out + l.head_dim, 0.0f);
    kv_scalar::axpy_row(l, block, t, 1.0f, out);
}

bool kv_use_avx2() { return cpu::cpu_has_avx2(); }

float kv_dot_row(const kv_layout& l, const void* block, int32_t t, const float* q) {
    return kv_use_avx2() ? kv_avx2::dot_row(l, block, t, q) : kv_scalar::dot_row(l, block, t, q);
}

void kv_axpy_row(const kv_layout& l, const void* block, int32_t t, float w, float* acc) {
    if (kv_use_avx2()) kv_avx2::axpy_row(l, block, t, w, acc);
    else kv_scalar::axpy_row(l, block, t, w, acc);
}

namespace kv_scalar {

// One reader for both: dot accumulates q[c] * x, axpy adds w * x into acc[c]. x[c] decoded per format.
template <bool DOT>
static float row_op(const kv_layout& l, const void* block, int32_t t, const float* q, float w, float* acc) {
    const int32_t d = l.head_dim;
    const uint8_t* row = static_cast<const uint8_t*>(block) + l.code_offset + size_t(t) * size_t(l.row_code_bytes);
    float sum = 0.0f;
    auto emit = [&](int32_t c, float x) {
        if constexpr (DOT) sum += q[c] * x;
        else acc[c] += w * x;
    };
    switch (l.format) {
        case kv_format::f16:
            for (int32_t c = 0; c < d; ++c) emit(c, fp16_to_f32(reinterpret_cast<const uint16_t*>(row)[c]));
            break;
        case kv_format::bf16:
            for (int32_t c = 0; c < d; ++c) emit(c, bf16_to_f32(reinterpret_cast<const uint16_t*>(row)[c]));
            break;
        case kv_format::q8: {
            float s = fp16_to_f32(u16(block, l.scale_offset)[t]);
            for (int32_t c = 0; c < d; ++c) emit(c, s * float(reinterpret_cast<const int8_t*>(row)[c]));
            break;
        }
        case kv_format::q4:
            if (l.part == kv_part::k) {
                const uint16_t* sc = u16(block, l.scale_offset);
                const uint16_t* mn = u16(block, l.min_offset);
                for (int32_t c = 0; c < d; ++c)
                    emit(c, float(get_nibble(row, c)) * fp16_to_f32(sc[c]) + fp16_to_f32(mn[c]));
            } else {
                const int32_t g = l.group, ng = d / g;
                const uint16_t* sc = u16(block, l.scale_offset) + size_t(t) * size_t(ng);
                const uint16_t* mn = u16(block, l.min_offset) + size_t(t) * size_t(ng);
                for (int32_t j = 0; j < ng; ++j) {
                    float s = fp16_to_f32(sc[j]), m = fp16_to_f32(mn[j]);
                    for (int32_t c = j * g; c < (j + 1) * g; ++c) emit(c, float(get_nibble(row, c)) * s + m);
                }
            }
            break;
    }
    return sum;
}

float dot_row(const kv_layout& l, const void* block, int32_t t, const float* q) {
    return row_op<true>(l, block, t, q, 0.0f, nullptr);
}

void axpy_row(const kv_layout& l, const void* block, int32_t t, float w, float* acc) {
    row_op<false>(l, block, t, nullptr, w, acc);
}

}  // namespace kv_scalar

}  // namespace tfu
