// The CUDA backend's fused row-wise launches (kernels_cuda/fused_rows.h): ADD + RMS_NORM, ROPE q + ROPE k,
// KV_STORE k + KV_STORE v, the two last pairs as one launch, and ROPE q + ROPE k + KV_STORE_BLOCKS. Every case runs its ops three ways from the same initial bytes: all in one run() on the
// device (where the pairs fuse), each op alone in its own run() on the device (never fused), and on cpu-ref.
// The two device runs must leave every buffer bit-identical (the fused kernels repeat the ops' arithmetic), and the
// written tensors must match cpu-ref within test_ops' bounds (ADD 1e-6, RMS_NORM 1e-5 / 1e-4, ROPE 1e-5,
// KV_STORE 1e-6: relative L2 / max error over rms). Lookalikes that must not fuse (other positions, parameters,
// factors or rows; a second op that reads or writes what the first writes or reads) are checked the same way: a
// wrongly fused pair reads stale data or the other op's parameters and differs from the op-by-op run.
// Skips with the reason when no CUDA device is usable.
#include <deque>

#include "backend/kv_block_map.h"

#include "ops/pair_case.h"

namespace tfu::test {
namespace {

TEST(cuda_fused_rows, add_rms_norm) {
    std::string why;
    std::unique_ptr<backend> dev = backend_or_null(TFU_BACKEND_CUDA, &why);
    if (!dev) GTEST_SKIP() << why;
    std::mt19937_64 rng(test_seed() + 51);
    for (int64_t rows : {1, 3})
        for (int64_t k : {2048, 1000, 96})
            for (bool bcast : {false, true})
                for (add_norm_form f : {add_norm_form::decoder, add_norm_form::apart, add_norm_form::norm_in_place,
                                        add_norm_form::padded})
                    add_rms_norm_case(*dev, rng, rows, k, bcast, f);
}

TEST(cuda_fused_rows, rope_q_k) {
    std::string why;
    std::unique_ptr<backend> dev = backend_or_null(TFU_BACKEND_CUDA, &why);
    if (!dev) GTEST_SKIP() << why;
    std::mt19937_64 rng(test_seed() + 52);
    const rope_shape shapes[] = {
        {64, 32, 8, 64, 0, false, false, 10000.0f, 1.0f},    // llama-like, the decoder's form (out of place)
        {128, 32, 8, 128, 2, false, false, 1000000.0f, 1.0f},  // neox (qwen2)
        {64, 32, 8, 32, 0, false, false, 10000.0f, 0.25f},   // n_rot < hd (dims >= n_rot copied), scaled
        {64, 8, 8, 64, 2, true, false, 500000.0f, 1.0f},     // frequency factors (llama 3)
        {64, 32, 8, 48, 2, true, true, 10000.0f, 1.0f},      // in place, neox, n_rot < hd, factors
    };
    for (const rope_shape& s : shapes)
        for (int64_t n : {1, 3}) rope_pair_case(*dev, rng, s, n);
}

TEST(cuda_fused_rows, kv_store_k_v) {
    std::string why;
    std::unique_ptr<backend> dev = backend_or_null(TFU_BACKEND_CUDA, &why);
    if (!dev) GTEST_SKIP() << why;
    std::mt19937_64 rng(test_seed() + 53);
    for (dtype t : {dtype::F16, dtype::BF16, dtype::F32})
        for (int64_t n : {1, 3})
            for (int32_t first : {37, 61})  // 61 + 3 = 64: the last rows of the cache
                for (bool one_buffer : {false, true})  // k and v caches side by side in one allocation
                    kv_store_pair_case(*dev, rng, t, 8 * 64, n, first, one_buffer);
}

// A decoder layer's chain in one run(): ROPE q, ROPE k, KV_STORE k (of the roped k), KV_STORE v, then the
// residual ADD and the RMS_NORM of the result; the pairs feed each other through the stream order.
TEST(cuda_fused_rows, decoder_layer_chain) {
    std::string why;
    std::unique_ptr<backend> dev = backend_or_null(TFU_BACKEND_CUDA, &why);
    if (!dev) GTEST_SKIP() << why;
    std::mt19937_64 rng(test_seed() + 54);
    for (int64_t n : {1, 3}) decoder_chain_case(*dev, rng, n, 64, 32, 8);
}


// ROPE q, ROPE k, KV_STORE k, KV_STORE v in one launch (rope_store_kernel), in place and not, with f16, bf16 and
// f32 caches, and the lookalikes that must not take the four-op launch (pair_case.h rope_store_case). Each against
// the op-by-op run (bit-identical) and cpu-ref.
TEST(cuda_fused_rows, rope_store_four_ops) {
    std::string why;
    std::unique_ptr<backend> dev = backend_or_null(TFU_BACKEND_CUDA, &why);
    if (!dev) GTEST_SKIP() << why;
    std::mt19937_64 rng(test_seed() + 57);
    for (dtype t : {dtype::F16, dtype::BF16, dtype::F32})
        for (int64_t n : {1, 3})
            for (rope_store_form f : {rope_store_form::decoder, rope_store_form::in_place,
                                      rope_store_form::store_unrotated, rope_store_form::v_is_rotated_k,
                                      rope_store_form::shifted_k_rows}) {
                if (f == rope_store_form::shifted_k_rows && n == 1) continue;
                rope_store_case(*dev, rng, t, {64, 32, 8, 64, 0, false}, n, f);
            }
}

// ROPE q, ROPE k, KV_STORE_BLOCKS in one launch (fused_rope_blocks.cu) for each format pair the device cache takes,
// at positions that cross a block, and the lookalike that must not fuse (the store of the unrotated k): every
// buffer, the cache included, bit-identical to the op-by-op run (whose KV_STORE_BLOCKS test_ops compares with
// cpu-ref byte for byte), and the rotations within test_ops' bounds of cpu-ref.
TEST(cuda_fused_rows, rope_store_blocks_three_ops) {
    std::string why;
    std::unique_ptr<backend> dev = backend_or_null(TFU_BACKEND_CUDA, &why);
    if (!dev) GTEST_SKIP() << why;
    std::mt19937_64 rng(test_seed() + 71);
    const std::pair<kv_format, kv_format> pairs[] = {
        {kv_format::q8, kv_format::q8}, {kv_format::q8, kv_format::q4}, {kv_format::f16, kv_format::q4},
        {kv_format::bf16, kv_format::f16}};
    for (const auto& [kf, vf] : pairs)
        for (int64_t n : {1, 3})
            for (bool unrotated : {false, true}) {
                const int64_t hd = 64, nh = 32, nkv = 8;
                const int32_t B = 16, pos0 = 30, n_blocks = 3;
                const std::string what = std::string("K ") + kv_format_name(kf) + " V " + kv_format_name(vf) +
                                         " n=" + std::to_string(n) + (unrotated ? " unrotated k" : "");
                pair_case c(*dev);
                const size_t kb = size_t(hd * nkv * n) * 4;
                const size_t bq = c.buffer(rng, size_t(hd * nh * n) * 4, "q"), bk = c.buffer(rng, kb, "k");
                const size_t bv = c.buffer(rng, kb, "v");
                const size_t bqr = c.buffer(rng, size_t(hd * nh * n) * 4, "qr"), bkr = c.buffer(rng, kb, "kr");
                const size_t bp = c.buffer(rng, size_t(n) * 4, "pos");
                c.set(bp, 0, positions(pos0, n));
                kv_block_map m;
                m.k = kv_layout_make(kf, kv_part::k, B, int32_t(hd));
                m.v = kv_layout_make(vf, kv_part::v, B, int32_t(hd));
                m.n_head_kv = int32_t(nkv);
                m.n_blocks = n_blocks;
                m.v_offset = size_t(nkv) * m.k.bytes;
                const size_t block_bytes = (size_t(nkv) * (m.k.bytes + m.v.bytes) + 63) / 64 * 64;
                const size_t bcache = c.buffer(rng, block_bytes * n_blocks, "cache");
                const size_t baddr = c.buffer(rng, size_t(n_blocks) * 8, "block addresses");
                tensor* q3 = c.view(bq, 0, dtype::F32, hd, nh, n);
                tensor* k3 = c.view(bk, 0, dtype::F32, hd, nkv, n);
                tensor* qr = c.view(bqr, 0, dtype::F32, hd, nh, n);
                tensor* kr = c.view(bkr, 0, dtype::F32, hd, nkv, n);
                tensor* xk = c.view(unrotated ? bk : bkr, 0, dtype::F32, hd * nkv, n);
                tensor* xv = c.view(bv, 0, dtype::F32, hd * nkv, n);
                tensor* pos = c.view(bp, 0, dtype::I32, n);
                op st;
                st.type = op_type::KV_STORE_BLOCKS;
                st.src[0] = xk;
                st.src[1] = xv;
                st.i[0] = pos0;
                // Table block b is cache block (b + 1) % 3: the address array matters.
                std::deque<kv_block_map> maps;
                auto point = [&](std::vector<op>& ops, pair_case::copy cp) {
                    std::vector<uint64_t> addr(n_blocks);
                    for (int32_t b = 0; b < n_blocks; ++b)
                        addr[size_t(b)] = uint64_t(uintptr_t(c.base(bcache, cp) + size_t((b + 1) % n_blocks) * block_bytes));
                    if (cp == pair_case::copy::ref) std::memcpy(c.base(baddr, cp), addr.data(), addr.size() * 8);
                    else dev->upload(c.base(baddr, cp), addr.data(), addr.size() * 8);
                    maps.push_back(m);
                    maps.back().blocks = reinterpret_cast<const uint64_t*>(c.base(baddr, cp));
                    ops[2].ext = &maps.back();
                };
                c.run({rope_op(qr, q3, pos, nullptr, int(hd), 0, 10000.0f, 1.0f),
                       rope_op(kr, k3, pos, nullptr, int(hd), 0, 10000.0f, 1.0f), st},
                      point);
                c.expect_identical(what, {baddr});
                c.expect_close(qr, k_rope, what + " q");
                c.expect_close(kr, k_rope, what + " k");
            }
}

// Pairs that must run op by op (pair_case.h's lookalikes).
TEST(cuda_fused_rows, lookalikes_run_op_by_op) {
    std::string why;
    std::unique_ptr<backend> dev = backend_or_null(TFU_BACKEND_CUDA, &why);
    if (!dev) GTEST_SKIP() << why;
    std::mt19937_64 rng(test_seed() + 55);
    const int64_t hd = 64, nh = 32, n = 3;
    for (rope_diff d : {rope_diff::pos, rope_diff::n_rot, rope_diff::mode, rope_diff::base, rope_diff::scale,
                        rope_diff::factors, rope_diff::reads_first_dst, rope_diff::writes_first_src})
        rope_lookalike(*dev, rng, d, hd, nh, n);
    for (norm_diff d : {norm_diff::other_src, norm_diff::shifted_rows, norm_diff::dst_over_next_source})
        norm_lookalike(*dev, rng, d, hd * nh, n);
    for (store_diff d : {store_diff::first, store_diff::dtype_, store_diff::reads_first_dst}) store_lookalike(*dev, rng, d, n);
}

}  // namespace
}  // namespace tfu::test
