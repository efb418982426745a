// The fast CPU kernels (one file per op family: matmul.cpp, attention.cpp, elementwise.cpp, rope.cpp) and
// their AVX2 row helpers (*_avx2.cpp, compiled with -mavx2 -mfma -mf16c, called only when the CPU has them).
#pragma once

#include <cstdint>
#include <vector>

#include "backend/op.h"
#include "core/threads.h"

namespace tfu::cpu {

// What a kernel may use: the backend's pool, whether the AVX2 helpers may run, and per-backend scratch
// memory (grown on demand, reused across calls; the backend serialises run() so one op uses it at a time).
struct context {
    thread_pool& pool;
    bool avx2;
    std::vector<uint8_t>& scratch;
};

// Kernels take an op that check_op() accepted.
#define TFU_OP(NAME, name, n_src) void name(context& ctx, const op& o);
#include "backend/ops.def"
#undef TFU_OP

void scale_scalar(float* x, float s, int64_t n);

// The frame both attention kernels (contiguous and paged) share. A task is one query j and hpt heads h0 ..
// h0 + hpt - 1 that read the same kv head kvh (GQA: each K/V row is decoded once for the group); hpt is the whole
// group unless that leaves fewer than 2 tasks per thread. Per task, an online softmax (Milakov & Gimelshein,
// arXiv 1805.02867) runs over tiles of up to tile_rows cache rows: the kernel fills scores(hh)[0..tn), calls
// softmax_tile(tn) (scores become weights, the running max/sum and acc are rescaled), adds weight * V rows into
// acc(hh), and finally finish() writes acc / sum into dst.
class attention_task {
public:
    attention_task(int64_t n, int64_t n_head, int64_t group, int n_threads, int64_t hd, int64_t tile_rows);
    int64_t n_tasks() const { return n_ * tasks_per_query_; }
    int64_t heads() const { return hpt_; }
    void start(int64_t task, int64_t n_past);  // sets j, h0, kvh, n_kv and clears the state
    float* scores(int64_t hh) { return &s_[size_t(hh * tile_)]; }
    float* acc(int64_t hh) { return &acc_[size_t(hh * hd_)]; }
    void softmax_tile(int64_t tn, void (*scale)(float*, float, int64_t));
    void finish(const tensor& dst, int64_t n_head) const;
    int64_t j = 0, h0 = 0, kvh = 0, n_kv = 0;

private:
    int64_t n_, group_, hpt_, tasks_per_query_, hd_, tile_;
    std::vector<float> acc_, s_, m_, l_;
};

// AVX2 + FMA + F16C present and not disabled by TFU_CPU_SIMD=scalar (read at each call: backends made after
// setenv see it).
bool cpu_has_avx2();

namespace avx2 {
float sum_squares(const float* x, int64_t n);                               // sum x^2
void scale_mul(const float* x, float s, const float* g, float* y, int64_t n);  // y = x * s * g
void add(const float* a, const float* b, float* y, int64_t n);               // y = a + b
void mul(const float* a, const float* b, float* y, int64_t n);               // y = a * b
void f32_to_f16(const float* x, uint16_t* y, int64_t n);                    // round to nearest even
// Attention helpers on a cache row slice of dtype t (f32, f16, bf16).
float dot_cache(dtype t, const float* q, const void* k, int64_t n);        // q . k
void axpy_cache(dtype t, float a, const void* v, float* acc, int64_t n);    // acc += a * v
void scale(float* x, float s, int64_t n);                                  // x *= s
}  // namespace avx2

}  // namespace tfu::cpu
