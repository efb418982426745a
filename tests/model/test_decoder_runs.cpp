// How the decoder cuts a forward pass into run()s (model/decoder.cpp): one run per layer, each from the layer's
// attention norm to its last residual ADD (the embedding lookup in the first, the output norm and projection in
// the last), which is what lets the CUDA backend fuse each norm into the projections after it and each residual
// ADD into the projection before it (kernels_cuda/mul_mat_vec.h). On stories260K through the fast CPU kernels
// behind a backend that records each run's first and last op, for a prompt and for a decode step; the logits
// equal the CPU backend's own (the recording changes nothing).
//
// Measured and left out: the whole pass as one run (one CUDA graph per step instead of one per layer) was slower
// on the H100, 1B Q4_0 tg128 1181 against 1245 t/s in one call: the host then builds every layer's ops before the
// GPU starts, where per-layer runs let it prepare layer l + 1 while the GPU computes layer l.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "backend/backend.h"
#include "kv/kv_cache.h"
#include "model/decoder.h"
#include "model/stories_fixture.h"

namespace tfu::test {
namespace {

// The CPU backend, remembering each run's first and last op types.
class counting_backend : public backend {
public:
    counting_backend() : inner_(make_cpu_backend(2)) {}
    const char* name() const override { return "counting"; }
    bool supports(const op& o, std::string* why) const override { return inner_->supports(o, why); }
    void run(const op* ops, size_t n_ops) override {
        firsts.push_back(ops[0].type);
        lasts.push_back(ops[n_ops - 1].type);
        inner_->run(ops, n_ops);
    }
    std::vector<op_type> firsts, lasts;

private:
    std::unique_ptr<backend> inner_;
};

struct pass {
    std::vector<float> logits;
    std::vector<op_type> firsts, lasts;
};

pass forward(const tfu::model& mdl, backend& be, int32_t n) {
    kv_cache cache(mdl.hp.n_layer, mdl.hp.n_embd_kv(), 64, dtype::F32);
    std::vector<kv_layer> layers;
    for (int32_t l = 0; l < mdl.hp.n_layer; ++l) layers.push_back(kv_layer{&cache.k(l), &cache.v(l)});
    kv_target target;
    target.contiguous = layers.data();
    decoder dec(mdl.hp, mdl.weights, 16);
    std::vector<int32_t> ids;
    for (int32_t i = 0; i < n; ++i) ids.push_back(3 + (i * 37) % (mdl.hp.n_vocab - 3));
    pass p;
    p.logits.resize(size_t(mdl.hp.n_vocab) * size_t(n));
    dec.forward(be, target, ids.data(), n, 0, true, p.logits.data(), nullptr);
    // A second step at the next position, one token: the decode shape.
    std::vector<float> last(size_t(mdl.hp.n_vocab));
    dec.forward(be, target, ids.data(), 1, n, false, last.data(), nullptr);
    p.logits.insert(p.logits.end(), last.begin(), last.end());
    return p;
}

TEST_F(stories_fixture, one_run_per_layer_from_its_norm_to_its_residual_add) {
    const int32_t L = mdl->hp.n_layer;
    ASSERT_GE(L, 2);
    counting_backend rec;
    const pass recorded = forward(*mdl, rec, 7);
    std::unique_ptr<backend> cpu = make_cpu_backend(2);
    EXPECT_EQ(recorded.logits, forward(*mdl, *cpu, 7).logits);

    ASSERT_EQ(rec.firsts.size(), size_t(2 * L));  // a prompt of 7 tokens, then one decode step
    for (int step = 0; step < 2; ++step)
        for (int32_t l = 0; l < L; ++l) {
            const size_t r = size_t(step * L + l);
            EXPECT_EQ(rec.firsts[r], l == 0 ? op_type::GET_ROWS : op_type::RMS_NORM) << "run " << r;
            // The last run ends with the output projection (host logits: no ARGMAX).
            EXPECT_EQ(rec.lasts[r], l + 1 == L ? op_type::MUL_MAT : op_type::ADD) << "run " << r;
        }
}

}  // namespace
}  // namespace tfu::test
