// Fast CPU kernels of the row-wise ops: get_rows, rms_norm, add, mul, swiglu, kv_store (parallel over rows,
// AVX2 helpers from elementwise_avx2.cpp where the CPU has them).
#include <cmath>
#include <string>

#include "backend/cpu/cpu_ops.h"
#include "core/error.h"
#include "core/fp16.h"
#include "core/quant.h"

namespace tfu::cpu {

namespace {
// Rows per chunk so that a chunk is at least ~16K elements (a tiny op is not worth waking the workers).
int64_t rows_per_chunk(int64_t row_len) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, row_len)); }
}  // namespace

void get_rows(context& ctx, const op& o) {
    const tensor& w = *o.src[0];
    const int32_t* ids = o.src[1]->ptr<int32_t>();
    const int64_t n = o.src[1]->nelements();
    for (int64_t j = 0; j < n; ++j)  // checked up front: no partial output on a bad id
        if (ids[j] < 0 || ids[j] >= w.ne[1])
            fail(TFU_STATUS_INVALID_ARGUMENT, "get_rows: id " + std::to_string(ids[j]) + " at " + std::to_string(j) +
                                                  " is outside " + std::to_string(w.ne[1]) + " rows of " + w.name);
    ctx.pool.parallel_for(n, [&](int64_t b, int64_t e, int) {
        for (int64_t j = b; j < e; ++j) dequantize_row(w.type, w.row(ids[j]), static_cast<float*>(o.dst->row(j)), w.ne[0]);
    });
}

void rms_norm(context& ctx, const op& o) {
    const tensor& x = *o.src[0];
    const float* g = o.src[1]->ptr<float>();
    const int64_t k = x.ne[0];
    const float eps = o.f[0];
    ctx.pool.parallel_for(x.nrows(), [&](int64_t b, int64_t e, int) {
        for (int64_t r = b; r < e; ++r) {
            const float* xr = static_cast<const float*>(x.row(r));
            float* y = static_cast<float*>(o.dst->row(r));
            float ss;
            if (ctx.avx2) {
                ss = avx2::sum_squares(xr, k);
            } else {
                double d = 0;
                for (int64_t i = 0; i < k; ++i) d += double(xr[i]) * xr[i];
                ss = float(d);
            }
            const float scale = float(1.0 / std::sqrt(double(ss) / double(k) + double(eps)));
            if (ctx.avx2) {
                avx2::scale_mul(xr, scale, g, y, k);
            } else {
                for (int64_t i = 0; i < k; ++i) y[i] = xr[i] * scale * g[i];
            }
        }
    }, rows_per_chunk(k));
}

namespace {
template <bool is_add>
void binary(context& ctx, const op& o) {
    const tensor& a = *o.src[0];
    const tensor& bt = *o.src[1];
    const int64_t k = a.ne[0];
    const bool bcast = bt.nrows() == 1;
    ctx.pool.parallel_for(a.nrows(), [&](int64_t b, int64_t e, int) {
        for (int64_t r = b; r < e; ++r) {
            const float* ar = static_cast<const float*>(a.row(r));
            const float* br = static_cast<const float*>(bt.row(bcast ? 0 : r));
            float* y = static_cast<float*>(o.dst->row(r));
            if (ctx.avx2) {
                if (is_add) avx2::add(ar, br, y, k);
                else avx2::mul(ar, br, y, k);
            } else {
                for (int64_t i = 0; i < k; ++i) y[i] = is_add ? ar[i] + br[i] : ar[i] * br[i];
            }
        }
    }, rows_per_chunk(k));
}
}  // namespace

void add(context& ctx, const op& o) { binary<true>(ctx, o); }
void mul(context& ctx, const op& o) { binary<false>(ctx, o); }

void swiglu(context& ctx, const op& o) {
    const tensor& gt = *o.src[0];
    const tensor& ut = *o.src[1];
    const int64_t k = gt.ne[0];
    ctx.pool.parallel_for(gt.nrows(), [&](int64_t b, int64_t e, int) {
        for (int64_t r = b; r < e; ++r) {
            const float* g = static_cast<const float*>(gt.row(r));
            const float* u = static_cast<const float*>(ut.row(r));
            float* y = static_cast<float*>(o.dst->row(r));
            for (int64_t i = 0; i < k; ++i) y[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
        }
    }, rows_per_chunk(k));
}

void kv_store(context& ctx, const op& o) {
    const tensor& x = *o.src[0];
    tensor& c = *o.dst;
    const int64_t k = x.ne[0];
    ctx.pool.parallel_for(x.nrows(), [&](int64_t b, int64_t e, int) {
        for (int64_t j = b; j < e; ++j) {
            const float* xr = static_cast<const float*>(x.row(j));
            void* cr = c.row(o.i[0] + j);
            if (c.type == dtype::F32) {
                std::copy(xr, xr + k, static_cast<float*>(cr));
            } else if (c.type == dtype::F16) {
                uint16_t* h = static_cast<uint16_t*>(cr);
                if (ctx.avx2) avx2::f32_to_f16(xr, h, k);
                else for (int64_t i = 0; i < k; ++i) h[i] = f32_to_fp16(xr[i]);
            } else {
                uint16_t* h = static_cast<uint16_t*>(cr);
                for (int64_t i = 0; i < k; ++i) h[i] = f32_to_bf16(xr[i]);
            }
        }
    }, rows_per_chunk(k));
}

}  // namespace tfu::cpu
