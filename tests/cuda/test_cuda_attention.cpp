// The CUDA backend's decode attention over the contiguous cache (kernels_cuda/attention.cu), against cpu-ref with
// test_ops' ATTENTION bounds (rel L2 1e-5, max 1e-4 of the rms): the group kernel (attention_gqa.cuh: f16 or bf16
// K and V, head size 64 or 128, 1, 2 or 4 query heads per KV head) and its neighbours that take the per-head
// kernel (groups 3 and 8, head size 96, an f32 cache, mixed K/V types), 1-4 queries, contexts from a few rows to
// past 5000 (split-K over up to 64 blocks per KV head, ranges that leave lane groups and whole blocks empty).
// Rows past the last query's position hold NaN: reading one would poison the output. Skips when no CUDA device is
// usable.
#include <cmath>

#include "ops/device_test_util.h"

namespace tfu::test {
namespace {

struct shape {
    int64_t hd, n_head, n_head_kv, n, n_past;
};

// Max |got - want| over the rms of want.
double max_rms(const std::vector<float>& got, const std::vector<float>& want) {
    double mx = 0, ss = 0;
    for (size_t i = 0; i < want.size(); ++i) {
        mx = std::max(mx, std::fabs(double(got[i]) - double(want[i])));
        ss += double(want[i]) * want[i];
    }
    return mx / std::sqrt(ss / double(want.size()));
}

void run_case(backend& dev, std::mt19937_64& rng, const shape& s, dtype kt, dtype vt) {
    const int64_t n_ctx = s.n_past + s.n + 3;
    device_case c(dev);
    tensor* q = c.add(rng, dtype::F32, s.hd, s.n_head * s.n, true);
    q->ne[1] = s.n_head, q->ne[2] = s.n, q->nb[2] = q->nb[1] * size_t(s.n_head), q->nb[3] = q->nb[2] * size_t(s.n);
    tensor* k = c.add(rng, kt, s.hd * s.n_head_kv, n_ctx, true);
    tensor* v = c.add(rng, vt, s.hd * s.n_head_kv, n_ctx, true);
    std::vector<float> nan_row(size_t(s.hd * s.n_head_kv), std::nanf(""));
    for (int64_t r = s.n_past + s.n; r < n_ctx; ++r) {
        quantize_row(kt, nan_row.data(), k->row(r), k->ne[0]);
        quantize_row(vt, nan_row.data(), v->row(r), v->ne[0]);
    }
    tensor* out = c.add(rng, dtype::F32, s.hd, s.n_head * s.n, false);
    out->ne[1] = s.n_head, out->ne[2] = s.n, out->nb[2] = out->nb[1] * size_t(s.n_head);
    out->nb[3] = out->nb[2] * size_t(s.n);
    op a = make_op(op_type::ATTENTION, out, q, k, v);
    a.i[0] = int32_t(s.n_past);
    a.i[1] = int32_t(s.n_head_kv);
    a.f[0] = float(1.0 / std::sqrt(double(s.hd)));
    c.run({a});
    const std::vector<float> got = c.device_values(out), want = to_floats(*out);
    const std::string what = std::string("K ") + dtype_name(kt) + " V " + dtype_name(vt) + " hd=" +
                             std::to_string(s.hd) + " heads " + std::to_string(s.n_head) + "/" +
                             std::to_string(s.n_head_kv) + " n=" + std::to_string(s.n) + " n_past=" +
                             std::to_string(s.n_past);
    EXPECT_LE(rel_l2(got, want), 1e-5) << what;
    EXPECT_LE(max_rms(got, want), 1e-4) << what;
}

TEST(cuda_attention, decode_over_the_contiguous_cache) {
    std::string why;
    std::unique_ptr<backend> dev = backend_or_null(TFU_BACKEND_CUDA, &why);
    if (!dev) GTEST_SKIP() << why;
    std::mt19937_64 rng(test_seed() + 31);
    const shape group_shapes[] = {
        {64, 32, 8, 1, 0},     {64, 32, 8, 1, 5},     {64, 32, 8, 1, 300},  {64, 32, 8, 1, 5000}, {64, 32, 8, 3, 777},
        {128, 32, 8, 1, 2100}, {128, 28, 14, 2, 900}, {64, 8, 8, 4, 1030},  {128, 4, 4, 1, 33},   {64, 16, 4, 1, 129},
    };
    struct types {
        dtype k, v;
    };
    for (types tt : {types{dtype::F16, dtype::F16}, types{dtype::BF16, dtype::BF16}})
        for (const shape& s : group_shapes) run_case(*dev, rng, s, tt.k, tt.v);
    // The per-head kernel's shapes next to them.
    const shape other_shapes[] = {{64, 24, 8, 1, 600}, {64, 32, 4, 1, 600}, {96, 8, 4, 2, 300}};
    for (const shape& s : other_shapes) run_case(*dev, rng, s, dtype::F16, dtype::F16);
    run_case(*dev, rng, {64, 32, 8, 1, 600}, dtype::F32, dtype::F32);
    run_case(*dev, rng, {64, 32, 8, 1, 600}, dtype::F16, dtype::BF16);
}

}  // namespace
}  // namespace tfu::test
