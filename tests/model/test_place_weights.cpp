// place_weights (engine/model/weights.cpp) against a recording device backend: every weight reaches the device
// with its bytes; a layer's Q/K/V and its gate/up each get one allocation, their tensors in order at 256-byte
// aligned offsets (a device backend joins their products only when they share a binding window); a tied output
// shares the embedding's copy, and so do views of one tensor inside a group; a refused allocation frees everything
// placed before it and names the tensor.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/weights.h"

namespace {

using tfu::dtype;
using tfu::tensor;

// Device memory in host buffers, with the calls recorded; alloc number fail_at (0-based) throws OUT_OF_MEMORY.
class recording_backend : public tfu::backend {
public:
    const char* name() const override { return "recording"; }
    bool supports(const tfu::op&, std::string*) const override { return false; }
    void run(const tfu::op*, size_t) override {}
    bool host_memory() const override { return false; }
    void* alloc(size_t bytes, const char* what) override {
        if (int(allocs.size()) == fail_at)
            throw tfu::error(TFU_STATUS_OUT_OF_MEMORY, std::string("no room for ") + what);
        mem.emplace_back(bytes + 256);
        // 256-byte aligned, as backend::alloc promises
        char* p = mem.back().data() + (256 - reinterpret_cast<uintptr_t>(mem.back().data()) % 256) % 256;
        allocs[p] = bytes;
        return p;
    }
    void free(void* p) noexcept override { freed.push_back(p); }
    void upload(void* dst, const void* src, size_t bytes) override {
        EXPECT_TRUE(inside(dst, bytes)) << "upload outside an allocation";
        std::memcpy(dst, src, bytes);
    }
    // Whether [p, p + bytes) lies in one allocation.
    bool inside(const void* p, size_t bytes) const {
        const char* c = static_cast<const char*>(p);
        for (const auto& [base, size] : allocs)
            if (c >= base && c + bytes <= base + size) return true;
        return false;
    }
    // The allocation holding p (nullptr if none).
    const char* owner(const void* p) const {
        const char* c = static_cast<const char*>(p);
        for (const auto& [base, size] : allocs)
            if (c >= base && c < base + size) return base;
        return nullptr;
    }

    int fail_at = -1;
    std::map<char*, size_t> allocs;
    std::vector<void*> freed;

private:
    std::vector<std::vector<char>> mem;
};

// Host weights: random bytes per tensor (odd sizes: 2-byte F16 rows of 37 elements), kept for comparison.
struct host_model {
    tfu::model_weights w;
    std::vector<std::vector<char>> bytes;
    std::mt19937_64 rng{20261125};

    void make(tensor& t, dtype type, int64_t ne0, int64_t ne1, const std::string& name) {
        bytes.emplace_back(tfu::row_size(type, ne0) * size_t(ne1));
        for (char& c : bytes.back()) c = char(rng());
        t = tfu::make_tensor(type, ne0, ne1, 1, 1, bytes.back().data(), name);
    }
    explicit host_model(int n_layer, bool tied) {
        bytes.reserve(size_t(4 + 12 * n_layer));  // data pointers stay put
        make(w.tok_embd, dtype::F16, 37, 11, "token_embd.weight");
        make(w.output_norm, dtype::F32, 37, 1, "output_norm.weight");
        if (tied) w.output = w.tok_embd;
        else make(w.output, dtype::F16, 37, 11, "output.weight");
        w.layers.resize(size_t(n_layer));
        for (int i = 0; i < n_layer; ++i) {
            tfu::layer_weights& l = w.layers[size_t(i)];
            const std::string p = "blk." + std::to_string(i) + ".";
            make(l.attn_norm, dtype::F32, 37, 1, p + "attn_norm.weight");
            make(l.wq, dtype::F16, 37, 5, p + "attn_q.weight");
            make(l.wk, dtype::F16, 37, 3, p + "attn_k.weight");
            make(l.wv, dtype::F16, 37, 3, p + "attn_v.weight");
            make(l.wo, dtype::F16, 37, 7, p + "attn_output.weight");
            make(l.ffn_norm, dtype::F32, 37, 1, p + "ffn_norm.weight");
            make(l.ffn_gate, dtype::F16, 37, 9, p + "ffn_gate.weight");
            make(l.ffn_up, dtype::F16, 37, 9, p + "ffn_up.weight");
            make(l.ffn_down, dtype::F16, 9, 37, p + "ffn_down.weight");
        }
    }
    std::vector<const tensor*> all() const {
        std::vector<const tensor*> v = {&w.tok_embd, &w.output_norm, &w.output};
        for (const tfu::layer_weights& l : w.layers)
            for (const tensor* t : {&l.attn_norm, &l.wq, &l.wk, &l.wv, &l.wo, &l.ffn_norm, &l.ffn_gate, &l.ffn_up,
                                    &l.ffn_down})
                v.push_back(t);
        return v;
    }
};

TEST(place_weights, groups_share_one_allocation_and_bytes_arrive) {
    for (bool tied : {false, true}) {
        host_model h(3, tied);
        const host_model ref(3, tied);  // the same seed: the same bytes, at host addresses
        recording_backend be;
        const std::vector<void*> owned = tfu::place_weights(h.w, be);
        // Per layer: attn_norm, Q/K/V, wo, ffn_norm, gate/up, down; then embeddings, output norm (and output).
        EXPECT_EQ(owned.size(), size_t(6 * 3 + (tied ? 2 : 3))) << "tied " << tied;
        EXPECT_EQ(be.allocs.size(), owned.size());
        const std::vector<const tensor*> got = h.all(), want = ref.all();
        for (size_t i = 0; i < got.size(); ++i) {
            ASSERT_TRUE(be.inside(got[i]->data, got[i]->nbytes())) << got[i]->name;
            EXPECT_EQ(reinterpret_cast<uintptr_t>(got[i]->data) % 256, 0u) << got[i]->name;
            EXPECT_EQ(std::memcmp(got[i]->data, want[i]->data, got[i]->nbytes()), 0) << got[i]->name;
        }
        if (tied) {
            EXPECT_EQ(h.w.output.data, h.w.tok_embd.data);
        }
        for (const tfu::layer_weights& l : h.w.layers) {
            EXPECT_EQ(be.owner(l.wq.data), be.owner(l.wk.data)) << l.wq.name;
            EXPECT_EQ(be.owner(l.wq.data), be.owner(l.wv.data)) << l.wq.name;
            EXPECT_EQ(be.owner(l.wq.data), l.wq.data) << "Q first";
            EXPECT_LT(l.wq.data, l.wk.data);
            EXPECT_LT(l.wk.data, l.wv.data);
            EXPECT_EQ(be.owner(l.ffn_gate.data), be.owner(l.ffn_up.data)) << l.ffn_gate.name;
            EXPECT_NE(be.owner(l.wo.data), be.owner(l.wq.data));
            EXPECT_NE(be.owner(l.ffn_down.data), be.owner(l.ffn_gate.data));
        }
        EXPECT_TRUE(be.freed.empty());
    }
}

// Views of one host tensor inside a group (a file whose K is its Q's data) get one device copy between them.
TEST(place_weights, same_data_twice_in_a_group) {
    host_model h(1, false);
    tfu::layer_weights& l = h.w.layers[0];
    l.wk = l.wq;
    l.wk.name = "blk.0.attn_k.weight";
    const host_model ref(1, false);
    recording_backend be;
    tfu::place_weights(h.w, be);
    EXPECT_EQ(l.wk.data, l.wq.data);
    EXPECT_EQ(be.owner(l.wv.data), be.owner(l.wq.data));
    EXPECT_EQ(std::memcmp(l.wk.data, ref.w.layers[0].wq.data, l.wq.nbytes()), 0);
    EXPECT_EQ(std::memcmp(l.wv.data, ref.w.layers[0].wv.data, l.wv.nbytes()), 0);
}

TEST(place_weights, refused_allocation_frees_the_rest) {
    for (int fail_at : {0, 4, 7}) {  // the embeddings; layer 0's Q/K/V group; layer 0's gate/up group
        host_model h(2, false);
        recording_backend be;
        be.fail_at = fail_at;
        try {
            tfu::place_weights(h.w, be);
            ADD_FAILURE() << "no error at allocation " << fail_at;
        } catch (const tfu::error& e) {
            EXPECT_EQ(e.status(), TFU_STATUS_OUT_OF_MEMORY);
            const std::string expect = fail_at == 0 ? "token_embd.weight" : fail_at == 4 ? "blk.0.attn_q.weight"
                                                                                         : "blk.0.ffn_gate.weight";
            EXPECT_NE(std::string(e.what()).find(expect), std::string::npos) << e.what();
        }
        EXPECT_EQ(be.freed.size(), size_t(fail_at)) << "allocations before the refused one";
        for (void* p : be.freed) EXPECT_EQ(be.allocs.count(static_cast<char*>(p)), 1u);
    }
}

}  // namespace
