// The CUDA backend's captured runs (kernels_cuda/graph_cache.h): after its first 32 runs the backend captures
// decode-sized runs into CUDA graphs and replays them through cudaGraphExecUpdate. Here 80 runs alternate between
// two weight sets (so the cached executable graph is updated with other pointers each time), with a new x uploaded
// before each run and one run in four without a download in between; every result is compared with cpu-ref.
// Also: TFU_CUDA_GRAPHS=0 gives the same values (the op-by-op path). Skips when no CUDA device is usable.
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "ops/device_test_util.h"

namespace tfu::test {
namespace {

// One device copy of a host tensor.
struct dev_tensor {
    backend& be;
    tensor t;
    dev_tensor(backend& b, const tensor& host) : be(b), t(host) {
        t.data = be.alloc(host.nbytes(), "graph test");
        be.upload(t.data, host.data, host.nbytes());
    }
    ~dev_tensor() { be.free(t.data); }
    dev_tensor(const dev_tensor&) = delete;
    dev_tensor& operator=(const dev_tensor&) = delete;
};

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
        fill_random(rng, x.t);
        dev.upload(dx.t.data, x.t.data, x.t.nbytes());
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
