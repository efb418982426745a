// The CUDA backend's captured runs (kernels_cuda/graph_cache.h): after its first 32 runs the backend captures
// decode-sized runs into CUDA graphs and replays them through cudaGraphExecUpdate. Here 80 runs alternate between
// two weight sets (so the cached executable graph is updated with other pointers each time), with a new x uploaded
// before each run and one run in four without a download in between; every result is compared with cpu-ref.
// Also: TFU_CUDA_GRAPHS=0 gives the same values (the op-by-op path). Decode steps of two layers (KV_STORE k and v,
// ATTENTION) over 300 positions, whose runs are replayed with the position read on the device (graph_key.h), past
// the split-K change at 256 rows, each step against cpu-ref; the profile log must count replays. Skips when no
// CUDA device is usable.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "ops/device_test_util.h"

namespace tfu::test {
namespace {

void replay_many(backend& dev, const char* what) {
    std::mt19937_64 rng(test_seed() + 21);
    const int64_t k = 512, m = 384;
    std::unique_ptr<backend> ref = make_cpu_ref_backend();
    owned_tensor x(dtype::F32, k), h(dtype::F32, m), g(dtype::F32, m), u(dtype::F32, m), y(dtype::F32, k);
    owned_tensor wg[2] = {owned_tensor(dtype::Q4_0, k, m), owned_tensor(dtype::Q4_0, k, m)};
    owned_tensor wu[2] = {owned_tensor(dtype::Q4_0, k, m), owned_tensor(dtype::Q4_0, k, m)};
    owned_tensor wd[2] = {owned_tensor(dtype::Q8_0, m, k), owned_tensor(dtype::Q8_0, m, k)};
    for (int s = 0; s < 2; ++s) {
        fill_random(rng, wg[s].t, 0.05f);
        fill_random(rng, wu[s].t, 0.05f);
        fill_random(rng, wd[s].t, 0.05f);
    }
    fill_random(rng, x.t);
    dev_tensor dx(dev, x.t), dg(dev, g.t), du(dev, u.t), dy(dev, y.t), dh(dev, h.t);
    std::unique_ptr<dev_tensor> dwg[2], dwu[2], dwd[2];
    for (int s = 0; s < 2; ++s) {
        dwg[s] = std::make_unique<dev_tensor>(dev, wg[s].t);
        dwu[s] = std::make_unique<dev_tensor>(dev, wu[s].t);
        dwd[s] = std::make_unique<dev_tensor>(dev, wd[s].t);
    }
    std::vector<float> got(static_cast<size_t>(k));
    for (int it = 0; it < 80; ++it) {
        const int s = it % 2;
        dx.refill(rng, x.t);
        // gate/up/SWIGLU, down, then y += x: a decode MLP.
        const std::vector<op> host_ops = {make_op(op_type::MUL_MAT, &g.t, &wg[s].t, &x.t),
                                          make_op(op_type::MUL_MAT, &u.t, &wu[s].t, &x.t),
                                          make_op(op_type::SWIGLU, &g.t, &g.t, &u.t),
                                          make_op(op_type::MUL_MAT, &y.t, &wd[s].t, &g.t),
                                          make_op(op_type::ADD, &y.t, &y.t, &x.t)};
        const std::vector<op> dev_ops = {make_op(op_type::MUL_MAT, &dg.t, &dwg[s]->t, &dx.t),
                                         make_op(op_type::MUL_MAT, &du.t, &dwu[s]->t, &dx.t),
                                         make_op(op_type::SWIGLU, &dg.t, &dg.t, &du.t),
                                         make_op(op_type::MUL_MAT, &dy.t, &dwd[s]->t, &dg.t),
                                         make_op(op_type::ADD, &dy.t, &dy.t, &dx.t)};
        ref->run(host_ops.data(), host_ops.size());
        dev.run(dev_ops.data(), dev_ops.size());
        if (it % 4 == 3) continue;  // no download: the next upload and run queue behind this one
        dev.download(got.data(), dy.t.data, got.size() * sizeof(float));
        ASSERT_LE(rel_l2(got, to_floats(y.t)), 4e-2) << what << " run " << it;
    }
}

TEST(cuda_graphs, replays_follow_new_inputs_and_weights) {
    std::string why;
    std::unique_ptr<backend> dev = backend_or_null(TFU_BACKEND_CUDA, &why);
    if (!dev) GTEST_SKIP() << why;
    replay_many(*dev, "graphs on");
}

// Decode steps of two layers at positions 0 .. n_steps - 1: each layer's run stores k and v at the position in
// its f16 cache and attends over rows 0 .. pos. Returns the largest relative L2 error against cpu-ref.
double decode_steps(backend& dev, int n_steps) {
    std::mt19937_64 rng(test_seed() + 33);
    const int64_t hd = 64, n_head = 8, n_head_kv = 2, n_ctx = 320;
    std::unique_ptr<backend> ref = make_cpu_ref_backend();
    owned_tensor q(dtype::F32, hd, n_head, 1), kx(dtype::F32, hd * n_head_kv, 1), vx(dtype::F32, hd * n_head_kv, 1);
    owned_tensor att(dtype::F32, hd, n_head, 1);
    const int64_t row = hd * n_head_kv;
    owned_tensor kc[2] = {owned_tensor(dtype::F16, row, n_ctx), owned_tensor(dtype::F16, row, n_ctx)};
    owned_tensor vc[2] = {owned_tensor(dtype::F16, row, n_ctx), owned_tensor(dtype::F16, row, n_ctx)};
    fill_random(rng, q.t);  // the device's copies are made from these (the caches' rows are all written before read)
    dev_tensor dq(dev, q.t), dkx(dev, kx.t), dvx(dev, vx.t), datt(dev, att.t);
    std::unique_ptr<dev_tensor> dkc[2], dvc[2];
    for (int l = 0; l < 2; ++l) {
        dkc[l] = std::make_unique<dev_tensor>(dev, kc[l].t);
        dvc[l] = std::make_unique<dev_tensor>(dev, vc[l].t);
    }
    std::vector<float> got(size_t(hd * n_head));
    double worst = 0;
    for (int pos = 0; pos < n_steps; ++pos) {
        for (int l = 0; l < 2; ++l) {
            dq.refill(rng, q.t);
            dkx.refill(rng, kx.t);
            dvx.refill(rng, vx.t);
            auto step = [&](tensor* a, tensor* qq, tensor* k, tensor* v, tensor* ck, tensor* cv) {
                std::vector<op> ops = {make_op(op_type::KV_STORE, ck, k), make_op(op_type::KV_STORE, cv, v),
                                       make_op(op_type::ATTENTION, a, qq, ck, cv)};
                ops[0].i[0] = ops[1].i[0] = ops[2].i[0] = pos;
                ops[2].i[1] = int32_t(n_head_kv);
                ops[2].f[0] = float(1.0 / std::sqrt(double(hd)));
                return ops;
            };
            const std::vector<op> h = step(&att.t, &q.t, &kx.t, &vx.t, &kc[l].t, &vc[l].t);
            const std::vector<op> d = step(&datt.t, &dq.t, &dkx.t, &dvx.t, &dkc[l]->t, &dvc[l]->t);
            ref->run(h.data(), h.size());
            dev.run(d.data(), d.size());
            if (pos % 7 == 3 && l == 0) continue;  // no download: the next step's uploads and run queue behind
            dev.download(got.data(), datt.t.data, got.size() * sizeof(float));
            const double e = rel_l2(got, to_floats(att.t));
            EXPECT_LE(e, 1e-5) << "position " << pos << " layer " << l;
            worst = std::max(worst, e);
        }
    }
    return worst;
}

TEST(cuda_graphs, decode_steps_replay_with_positions_on_the_device) {
    setenv("TFU_CUDA_PROFILE", "1", 1);
    start_log_capture();
    std::string why;
    std::unique_ptr<backend> dev = backend_or_null(TFU_BACKEND_CUDA, &why);
    unsetenv("TFU_CUDA_PROFILE");
    if (!dev) {
        stop_log_capture();
        GTEST_SKIP() << why;
    }
    const double worst = decode_steps(*dev, 300);
    dev.reset();  // logs the profile, with the graph counters
    stop_log_capture();
    std::printf("decode steps: max relative L2 error %.3g\n", worst);
    const size_t at = captured_log.find(" replays)");
    ASSERT_NE(at, std::string::npos) << captured_log;
    const size_t open = captured_log.rfind('(', at);
    const long replays = std::strtol(captured_log.c_str() + open + 1, nullptr, 10);
    std::printf("%s", captured_log.c_str());
    // 600 runs, the first 32 not captured; each layer's key changes once (split-K at 256 rows): at most a few
    // captures per layer, every other run a replay.
    EXPECT_GE(replays, 500) << captured_log;
}

TEST(cuda_graphs, off_by_environment_gives_the_same_values) {
    setenv("TFU_CUDA_GRAPHS", "0", 1);
    std::string why;
    std::unique_ptr<backend> dev = backend_or_null(TFU_BACKEND_CUDA, &why);
    unsetenv("TFU_CUDA_GRAPHS");
    if (!dev) GTEST_SKIP() << why;
    replay_many(*dev, "graphs off");
}

}  // namespace
}  // namespace tfu::test
