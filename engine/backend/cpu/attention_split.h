// The frame both CPU attention kernels (contiguous ATTENTION and paged ATTENTION_PAGED) share: GQA head groups
// decoded once per K/V row, and split-K over the key range for decode, with a log-sum-exp merge.
//
// Work: a unit is one query j and a sub-group of up to 8 heads h0 .. h0 + G - 1 that read the same kv head (so
// each K/V row is decoded once per sub-group, in registers, and its G dot products / axpys reuse it). When there
// are few units for the threads (decode: n = 1, 14 heads on 2 kv heads gives 2 units) and the context is long,
// each unit's key range 0 .. n_kv is split into chunks of chunk_rows rows (a multiple of the tile alignment);
// each task (unit, chunk) runs an online softmax (Milakov & Gimelshein, arXiv 1805.02867) and leaves its partial
// state (m = running max, l = sum of exp(s - m), acc = sum of exp(s - m) v) in scratch; the partials of a unit
// are then merged: M = max m_c, out = sum_c exp(m_c - M) acc_c / sum_c exp(m_c - M) l_c (as in Flash-Decoding).
#pragma once

#include <cstdint>
#include <functional>

#include "backend/cpu/cpu_ops.h"

namespace tfu::cpu {

// How a tile of cache rows of one kv head is stored (the kv_format layouts of backend/kv_format.h, or a dense
// cache row slice).
enum class tile_kind : uint8_t {
    f32,
    f16,
    bf16,
    q8,          // int8 codes; x = scale[row] * code
    q4_channel,  // nibbles; x = code * scale[c] + min[c] (q4 keys, per channel over the block)
    q4_group,    // nibbles; x = code * scale[row][c / g] + min[row][c / g] (q4 values, per token and group)
};

// Rows 0 .. tn - 1 of a tile: row t's data (values or codes) at rows + t * stride.
struct kv_tile {
    tile_kind kind = tile_kind::f32;
    const uint8_t* rows = nullptr;
    size_t stride = 0;
    const uint16_t* scale = nullptr;  // f16: q8 [row]; q4_channel [c]; q4_group [row * (hd / group) + j]
    const uint16_t* min = nullptr;    // f16: q4_channel [c]; q4_group [row * (hd / group) + j]
    int32_t group = 0;                // q4_group: g
};

// The per-ISA row kernels over a tile, for G (1..8) heads of one sub-group. `work` holds attn_work_floats().
struct attn_kernels {
    // s[hh * ld + t] = q[hh] . x_t for hh < G, t < tn; q: G rows of hd floats (the softmax scale folded in).
    void (*scores)(const kv_tile& x, int64_t tn, int64_t hd, int G, const float* q, float* s, int64_t ld,
                   float* work);
    // acc[hh * hd + c] += sum_t p[hh * ld + t] * x_t[c]; p is scratch and may be changed. Between the calls of a
    // task (tiles of one kind) acc may be kept in another channel order; finish puts it back.
    void (*accum)(const kv_tile& x, int64_t tn, int64_t hd, int G, float* p, int64_t ld, float* acc, float* work);
    // Puts acc (G, hd) back in channel order after a task's accum calls over tiles like v (AVX2 q4 values keep
    // each 16-channel block in even/odd order while they accumulate). Scaling acc in between is order-free.
    void (*finish)(const kv_tile& v, int64_t hd, int G, float* acc);
    float (*max)(const float* s, int64_t n);             // max of s[0 .. n)
    float (*exp_sum)(float* s, int64_t n, float m);      // s[i] = exp(s[i] - m); returns the sum
    void (*scale)(float* x, float a, int64_t n);         // x *= a
};
const attn_kernels& attn_kernels_scalar();
const attn_kernels& attn_kernels_avx2();    // only when ctx.avx2
const attn_kernels& attn_kernels_avx512();  // only when cpu_has_avx512() (kinds it lacks go to the AVX2 ones)
// AVX-512 F + BW + VL + DQ + VNNI (CPUID leaf 7) with the OS saving the zmm and mask state (XGETBV bits 1-2 and
// 5-7) and not turned off by TFU_CPU_SIMD=avx2 or scalar (read at each call, like cpu_has_avx2()). Defined in
// simd.cpp; the attention frame's level is AVX-512 when this holds and ctx.avx2, else AVX2 or scalar by ctx.avx2.
bool cpu_has_avx512();
// The same without TFU_CPU_SIMD (what the CPU and OS allow), for tests that run every level the CPU has.
bool cpu_has_avx512_hw();
// The kernels attn_run uses for ctx when attn_split_options::kernels is null.
const attn_kernels& attn_kernels_for(const context& ctx);
// Floats of `work` the kernels need for tiles of up to `tile` rows.
int64_t attn_work_floats(int64_t tile, int64_t hd);

// One attention op as the frame sees it: dst (hd, n_head, n) from q (hd, n_head, n) and the cache of rows
// 0 .. n_past + n - 1, read through tile_at.
struct attn_problem {
    const tensor* q = nullptr;
    const tensor* dst = nullptr;
    int64_t hd = 0, n_head = 0, n_head_kv = 0, n = 0, n_past = 0;
    float scale = 1.0f;
    int64_t tile = 64;   // rows per kernel step
    int64_t align = 64;  // chunk starts are multiples of this (a multiple of tile; the paged block size)
    // The tile of kv head h starting at row0 (a multiple of tile); part 0 = K, 1 = V.
    std::function<kv_tile(int part, int64_t h, int64_t row0)> tile_at;
};

// The shapes and parameters both attention ops share (ops.def: q = src0 (hd, n_head, n), i[0] = position of query 0,
// i[1] = n_head_kv, f[0] = scale); tile, align and tile_at are the caller's.
attn_problem attn_problem_of(const op& o);

// When to split the key range: into chunks of at least min_chunk_rows rows, aiming at tasks_per_thread tasks per
// thread. Tests force the split on short contexts with a small min_chunk_rows and a large tasks_per_thread.
struct attn_split_options {
    int64_t min_chunk_rows = 512;
    int64_t tasks_per_thread = 4;
    const attn_kernels* kernels = nullptr;  // a level forced (tests, benchmarks); null: attn_kernels_for(ctx)
};

struct attn_plan {
    int64_t group = 1;       // heads per kv head
    int64_t n_sub = 1;       // sub-groups per kv head
    int64_t hpt = 1;         // heads per sub-group (the last may have fewer)
    int64_t n_units = 0;     // n * n_head_kv * n_sub
    int64_t n_chunks = 1;    // key chunks per unit
    int64_t chunk_rows = 0;  // rows per chunk (a multiple of align)
};
attn_plan attn_make_plan(const attn_problem& p, int n_threads, const attn_split_options& opt);

// Runs the op described by p on ctx's pool (ctx.scratch holds the per-thread state and the partials).
void attn_run(context& ctx, const attn_problem& p, const attn_split_options& opt);

// The op kernels with explicit split options (cpu::attention / cpu::attention_paged pass the defaults).
void attention_with(context& ctx, const op& o, const attn_split_options& opt);
void attention_paged_with(context& ctx, const op& o, const attn_split_options& opt);

}  // namespace tfu::cpu
