// CUDA kernel paths that tests/ops/test_ops.cpp's shapes do not reach, against cpu-ref: scalar fallbacks (row
// lengths not a multiple of 8, rows with padded strides), model-sized MUL_MAT (matrix-vector and GEMM), long
// contexts for ATTENTION and ATTENTION_PAGED (quantized, GQA), several paged attentions with their own block
// tables in one run() (the staging ring), and a chain of run() calls that the host does not wait for, each
// reading what the one before wrote, whose tables go round the staging ring twice while the GPU lags behind.
// Skips with the reason when no CUDA device is usable.
#include <cmath>
#include <cstring>
#include <deque>

#include "kv/block_table.h"
#include "ops/device_test_util.h"

namespace tfu::test {
namespace {

// A host tensor whose rows are `pad` bytes longer than their data (nb[1] > row_bytes), filled at random.
struct strided_tensor {
    tensor t;
    std::vector<uint8_t> mem;
    strided_tensor(std::mt19937_64& rng, dtype type, int64_t ne0, int64_t ne1, int64_t ne2, size_t pad, float sd) {
        t = make_tensor(type, ne0, ne1, ne2);
        t.nb[1] = t.row_bytes() + pad;
        t.nb[2] = t.nb[1] * size_t(ne1);
        t.nb[3] = t.nb[2] * size_t(ne2);
        mem.assign(t.nb[3] + 64, 0xff);
        t.data = mem.data();
        if (type != dtype::I32) fill_random(rng, t, sd);
    }
    size_t bytes() const { return t.nb[3]; }
};

double rel_l2(const float* got, const float* want, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; ++i) {
        if (!std::isfinite(got[i])) return INFINITY;
        num += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
        den += double(want[i]) * want[i];
    }
    return std::sqrt(num / den);
}

// Runs `o` (sources and dst host tensors, any strides) on cpu-ref and on the device, returns the relative L2
// error of the device's dst. ATTENTION_PAGED's head blocks are copied too.
class harness {
public:
    explicit harness(backend& be) : be_(be) {}
    ~harness() {
        for (void* p : allocs_) be_.free(p);
    }
    void* to_device(const void* host, size_t n) {
        void* d = be_.alloc(n, "test");
        allocs_.push_back(d);
        be_.upload(d, host, n);
        return d;
    }
    // The op rewritten to device addresses (dst included); tensors and views are kept in this harness.
    op device_op(const op& o) {
        op d = o;
        for (int i = 0; i < 3; ++i) {
            if (!o.src[i]) continue;
            tensors_.push_back(*o.src[i]);
            tensors_.back().data = to_device(o.src[i]->data, o.src[i]->nb[3]);
            d.src[i] = &tensors_.back();
        }
        tensors_.push_back(*o.dst);
        tensors_.back().data = to_device(o.dst->data, o.dst->nb[3]);
        d.dst = &tensors_.back();
        if (o.type == op_type::ATTENTION_PAGED) d.ext = device_view(*static_cast<const paged_kv_view*>(o.ext));
        return d;
    }
    // A paged view whose head blocks are device copies (the descriptors stay host memory, kept here).
    const paged_kv_view* device_view(const paged_kv_view& v) {
        const size_t n = size_t(v.n_blocks) * size_t(v.n_head_kv);
        rows_.emplace_back(v.k, v.k + n);
        rows_.emplace_back(v.v, v.v + n);
        for (size_t p = rows_.size() - 2; p < rows_.size(); ++p)
            for (kv_rows& r : rows_[p]) r.data = static_cast<const uint8_t*>(to_device(r.data, r.layout->bytes));
        views_.push_back(v);
        views_.back().k = rows_[rows_.size() - 2].data();
        views_.back().v = rows_.back().data();
        return &views_.back();
    }
    std::vector<float> read_dst(const op& d) {
        const tensor& t = *d.dst;
        std::vector<uint8_t> raw(t.nb[3]);
        be_.download(raw.data(), t.data, raw.size());
        std::vector<float> out;
        for (int64_t r = 0; r < t.nrows(); ++r)
            for (int64_t i = 0; i < t.ne[0]; ++i) {
                float x;
                std::memcpy(&x, raw.data() + size_t(r) * t.nb[1] + size_t(i) * 4, 4);
                out.push_back(x);
            }
        return out;
    }

private:
    backend& be_;
    std::vector<void*> allocs_;
    std::deque<tensor> tensors_;
    std::deque<std::vector<kv_rows>> rows_;
    std::deque<paged_kv_view> views_;
};

std::vector<float> host_floats(const tensor& t) {
    std::vector<float> out;
    for (int64_t r = 0; r < t.nrows(); ++r)
        for (int64_t i = 0; i < t.ne[0]; ++i) out.push_back(static_cast<const float*>(t.row(r))[i]);
    return out;
}

// Runs ops on cpu-ref (in place on the host tensors) and on the device; returns each op's dst error.
std::vector<double> compare_ops(backend& be, std::vector<op> ops) {
    harness h(be);
    std::vector<op> dev;
    for (const op& o : ops) dev.push_back(h.device_op(o));
    be.run(dev.data(), dev.size());
    auto ref = make_cpu_ref_backend();
    ref->run(ops.data(), ops.size());
    std::vector<double> err;
    for (size_t i = 0; i < ops.size(); ++i) {
        const std::vector<float> got = h.read_dst(dev[i]), want = host_floats(*ops[i].dst);
        err.push_back(rel_l2(got.data(), want.data(), int64_t(want.size())));
    }
    return err;
}

#define CUDA_OR_SKIP(be)                                    \
    std::string skip_why;                                   \
    auto be = backend_or_null(TFU_BACKEND_CUDA, &skip_why); \
    if (!be) GTEST_SKIP() << skip_why;

struct mm_case { dtype t; int64_t k, m, n; size_t pad; double bound; };

TEST(cuda_paths, mul_mat_scalar_tails_strides_and_model_sizes) {
    CUDA_OR_SKIP(be);
    std::mt19937_64 rng(test_seed() + 11);
    const mm_case cases[] = {
        {dtype::F32, 100, 33, 3, 0, 1e-5},    {dtype::F32, 100, 33, 20, 12, 1e-5},  // k % 8 != 0: scalar tail
        {dtype::F16, 100, 33, 3, 6, 1e-5},    {dtype::F16, 104, 33, 20, 0, 2e-3},   // unaligned rows
        {dtype::BF16, 72, 17, 5, 2, 1e-5},    {dtype::Q8_0, 96, 40, 3, 34, 1e-5},   // padded quantized rows
        // Q4_K, one column: the int8 kernel (activations rounded to int8 per 32, test_ops' MUL_MAT bound); five
        // columns: the float kernel, f32 arithmetic.
        {dtype::Q4_K, 4096, 1024, 1, 0, 2.5e-2}, {dtype::Q4_K, 4096, 1024, 5, 0, 1e-5},
        {dtype::Q6_K, 4096, 512, 8, 0, 1e-5},
        {dtype::Q4_0, 4096, 1024, 33, 0, 2e-2}, {dtype::Q5_K, 2048, 1000, 100, 0, 2e-2},
        {dtype::F16, 4096, 2048, 1, 0, 1e-5}, {dtype::BF16, 2048, 2048, 64, 0, 1.5e-2},
    };
    for (const mm_case& c : cases) {
        SCOPED_TRACE(std::string(dtype_name(c.t)) + " k=" + std::to_string(c.k) + " m=" + std::to_string(c.m) +
                     " n=" + std::to_string(c.n) + " pad=" + std::to_string(c.pad));
        strided_tensor w(rng, c.t, c.k, c.m, 1, c.pad, 0.05f), x(rng, dtype::F32, c.k, c.n, 1, c.pad ? 4 * c.pad : 0, 1.0f);
        strided_tensor d(rng, dtype::F32, c.m, c.n, 1, 8, 1.0f);
        op o;
        o.type = op_type::MUL_MAT;
        o.dst = &d.t;
        o.src[0] = &w.t;
        o.src[1] = &x.t;
        std::string why;
        ASSERT_TRUE(be->supports(o, &why)) << why;
        EXPECT_LE(compare_ops(*be, {o})[0], c.bound);
    }
}

TEST(cuda_paths, attention_long_context) {
    CUDA_OR_SKIP(be);
    std::mt19937_64 rng(test_seed() + 12);
    struct shape { int64_t hd, n_head, n_head_kv, n, n_past; dtype kt, vt; };
    for (const shape& s : {shape{128, 32, 8, 1, 4000, dtype::F16, dtype::F16}, shape{64, 8, 2, 16, 2000, dtype::BF16, dtype::F32},
                           shape{256, 4, 1, 2, 1500, dtype::F16, dtype::BF16}, shape{40, 6, 3, 3, 700, dtype::F32, dtype::F16}}) {
        SCOPED_TRACE("hd=" + std::to_string(s.hd) + " n_past=" + std::to_string(s.n_past));
        const int64_t n_ctx = s.n_past + s.n;
        strided_tensor q(rng, dtype::F32, s.hd, s.n_head, s.n, 0, 1.0f), d(rng, dtype::F32, s.hd, s.n_head, s.n, 0, 1.0f);
        strided_tensor k(rng, s.kt, s.hd * s.n_head_kv, n_ctx, 1, 0, 1.0f), v(rng, s.vt, s.hd * s.n_head_kv, n_ctx, 1, 0, 1.0f);
        op o;
        o.type = op_type::ATTENTION;
        o.dst = &d.t;
        o.src[0] = &q.t;
        o.src[1] = &k.t;
        o.src[2] = &v.t;
        o.i[0] = int32_t(s.n_past);
        o.i[1] = int32_t(s.n_head_kv);
        o.f[0] = float(1.0 / std::sqrt(double(s.hd)));
        EXPECT_LE(compare_ops(*be, {o})[0], 1e-5);
    }
}

// One layer's paged cache with random K/V for n_pos positions.
struct paged_cache {
    std::unique_ptr<kv_block_pool> pool;
    std::unique_ptr<kv_block_table> table;
    std::vector<kv_rows> k, v;
    paged_kv_view view;
    paged_cache(std::mt19937_64& rng, int32_t hd, int32_t n_head_kv, int32_t block, kv_format kf, kv_format vf, int32_t n_pos) {
        kv_pool_params pp;
        pp.n_layer = 1;
        pp.n_head_kv = n_head_kv;
        pp.head_dim = hd;
        pp.block_tokens = block;
        pp.k_format = kf;
        pp.v_format = vf;
        pool = std::make_unique<kv_block_pool>(pp);
        table = std::make_unique<kv_block_table>(*pool);
        table->append(n_pos);
        std::vector<float> rows(size_t(n_pos) * size_t(hd));
        for (int32_t h = 0; h < n_head_kv; ++h) {
            rows = random_floats(rng, rows.size());
            table->write_k(0, h, 0, n_pos, rows.data(), hd);
            rows = random_floats(rng, rows.size());
            table->write_v(0, h, 0, n_pos, rows.data(), hd);
        }
        for (int32_t b = 0; b < table->n_blocks(); ++b)
            for (int32_t h = 0; h < n_head_kv; ++h) {
                k.push_back(table->k_rows(b, 0, h));
                v.push_back(table->v_rows(b, 0, h));
            }
        view.n_blocks = table->n_blocks();
        view.n_head_kv = n_head_kv;
        view.block_tokens = block;
        view.k = k.data();
        view.v = v.data();
    }
};

// Several layers' attentions in one run: each op stages its own block table (over 1 MiB in all, so the
// staging ring wraps), long contexts, every K/V format pair.
TEST(cuda_paths, attention_paged_long_contexts_in_one_run) {
    CUDA_OR_SKIP(be);
    std::mt19937_64 rng(test_seed() + 13);
    struct shape { int32_t hd, n_head, n_head_kv, n, n_past, block; kv_format kf, vf; };
    // ~200 KiB of table each (313 blocks x 8 heads x K/V x 40 bytes): six of them wrap the 1 MiB ring.
    const shape shapes[] = {
        {128, 32, 8, 1, 5000, 16, kv_format::q4, kv_format::q4}, {128, 16, 8, 4, 5000, 16, kv_format::q8, kv_format::q4},
        {64, 8, 8, 1, 5000, 16, kv_format::f16, kv_format::q8},  {96, 8, 8, 3, 5000, 16, kv_format::bf16, kv_format::f16},
        {128, 32, 8, 1, 4900, 16, kv_format::q4, kv_format::q8}, {8, 4, 4, 2, 5000, 16, kv_format::q4, kv_format::q4},
    };
    std::vector<std::unique_ptr<paged_cache>> caches;
    std::vector<std::unique_ptr<strided_tensor>> qs, ds;
    std::vector<op> ops;
    for (const shape& s : shapes) {
        caches.push_back(std::make_unique<paged_cache>(rng, s.hd, s.n_head_kv, s.block, s.kf, s.vf, s.n_past + s.n));
        qs.push_back(std::make_unique<strided_tensor>(rng, dtype::F32, s.hd, s.n_head, s.n, 0, 1.0f));
        ds.push_back(std::make_unique<strided_tensor>(rng, dtype::F32, s.hd, s.n_head, s.n, 0, 1.0f));
        op o;
        o.type = op_type::ATTENTION_PAGED;
        o.dst = &ds.back()->t;
        o.src[0] = &qs.back()->t;
        o.ext = &caches.back()->view;
        o.i[0] = s.n_past;
        o.i[1] = s.n_head_kv;
        o.f[0] = float(1.0 / std::sqrt(double(s.hd)));
        ops.push_back(o);
    }
    const std::vector<double> err = compare_ops(*be, ops);
    for (size_t i = 0; i < err.size(); ++i)
        EXPECT_LE(err[i], 1e-5) << "op " << i << ": K " << kv_format_name(shapes[i].kf) << " V "
                                << kv_format_name(shapes[i].vf) << " n_past " << shapes[i].n_past;
}

// A chain of run() calls that the host does not wait for: run i adds attention over its own paged cache to x
// in place (a = attention_paged(x, cache i); x = x + a), so each run reads what the one before wrote. Each
// stages a ~200 KiB block table, so the ten of them go round the 1 MiB staging ring twice. A large f32
// MUL_MAT enqueued first (its result is not checked) keeps the GPU busy for about a millisecond, so the host
// runs ahead and comes round to ring bytes whose copy is still queued: without the ring's fences later runs
// would read tables the host had overwritten (another cache's blocks, another format), and x would be wrong.
TEST(cuda_paths, chained_runs_without_waits_wrap_the_staging_ring) {
    CUDA_OR_SKIP(be);
    std::mt19937_64 rng(test_seed() + 14);
    const int32_t hd = 128, n_head = 8, n_head_kv = 8, n = 2, n_past = 5000, block = 16, n_runs = 10;
    const kv_format formats[][2] = {{kv_format::q4, kv_format::q4},   {kv_format::f16, kv_format::q8},
                                    {kv_format::q8, kv_format::f16},  {kv_format::bf16, kv_format::q4},
                                    {kv_format::q4, kv_format::bf16}};
    std::vector<std::unique_ptr<paged_cache>> caches;
    for (int32_t i = 0; i < n_runs; ++i) {
        const kv_format* f = formats[size_t(i) % (sizeof formats / sizeof formats[0])];
        caches.push_back(std::make_unique<paged_cache>(rng, hd, n_head_kv, block, f[0], f[1], n_past + n));
    }
    strided_tensor x(rng, dtype::F32, hd, n_head, n, 0, 1.0f), a(rng, dtype::F32, hd, n_head, n, 0, 1.0f);
    harness h(*be);
    tensor dx = x.t, da = a.t;
    dx.data = h.to_device(x.t.data, x.bytes());
    da.data = h.to_device(a.t.data, a.bytes());
    auto layer = [&](tensor& tx, tensor& ta, const paged_kv_view* view) {
        std::vector<op> ops(2);
        ops[0].type = op_type::ATTENTION_PAGED, ops[0].dst = &ta, ops[0].src[0] = &tx, ops[0].ext = view;
        ops[0].i[0] = n_past, ops[0].i[1] = n_head_kv, ops[0].f[0] = float(1.0 / std::sqrt(double(hd)));
        ops[1].type = op_type::ADD, ops[1].dst = &tx, ops[1].src[0] = &tx, ops[1].src[1] = &ta;
        return ops;
    };
    std::vector<const paged_kv_view*> dviews;
    for (auto& c : caches) dviews.push_back(h.device_view(c->view));

    // The delay: (4096 x 4096) f32 weights times 1024 columns, f32 GEMM (about 34 GFLOP).
    strided_tensor w(rng, dtype::F32, 4096, 4096, 1, 0, 0.02f), wx(rng, dtype::F32, 4096, 1024, 1, 0, 1.0f);
    strided_tensor wy(rng, dtype::F32, 4096, 1024, 1, 0, 1.0f);
    tensor dw = w.t, dwx = wx.t, dwy = wy.t;
    dw.data = h.to_device(w.t.data, w.bytes());
    dwx.data = h.to_device(wx.t.data, wx.bytes());
    dwy.data = h.to_device(wy.t.data, wy.bytes());
    op mm;
    mm.type = op_type::MUL_MAT, mm.dst = &dwy, mm.src[0] = &dw, mm.src[1] = &dwx;
    be->run(&mm, 1);
    for (int32_t i = 0; i < n_runs; ++i) {
        const std::vector<op> ops = layer(dx, da, dviews[size_t(i)]);
        be->run(ops.data(), ops.size());
    }
    std::vector<float> got(size_t(x.t.nelements()));
    be->download(got.data(), dx.data, got.size() * sizeof(float));

    auto ref = make_cpu_ref_backend();
    for (int32_t i = 0; i < n_runs; ++i) {
        std::vector<op> ops = layer(x.t, a.t, &caches[size_t(i)]->view);
        ref->run(ops.data(), ops.size());
    }
    const std::vector<float> want = host_floats(x.t);
    EXPECT_LE(rel_l2(got.data(), want.data(), int64_t(want.size())), 1e-4)
        << n_runs << " dependent runs, errors of each attention compound";
}

}  // namespace
}  // namespace tfu::test
