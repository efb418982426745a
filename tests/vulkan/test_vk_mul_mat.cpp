// The Vulkan matrix-matrix MUL_MAT (kernels_vk/shaders/mul_mat.comp, n > 8 columns: 64/128 x 64/128 tiles;
// mul_mat_32.comp, the first 32 x 32 form, TFU_VK_MM_TILE=32) against cpu-ref, for every weight type:
//  - m, n, k not multiples of the tiles (m 1..200, n 9..600; float k with k % 8 != 0 and k < 8, quant k whole
//    blocks not a multiple of the 32-element step where the block allows);
//  - weights with padded rows (blocks straddling 32-bit words row by row; 16-byte aligned rows take the 128-bit
//    loads) starting 4 bytes into their allocation; x with padded columns (scalar x loads) starting 4 bytes in;
//    results with padded columns: the padding and the bytes around the result must come back untouched;
//  - every tile forced through TFU_VK_MM_TILE (rotating over the shapes), the default choice on large products;
//  - a weight larger than one binding (TFU_VK_MAX_BINDING_BYTES): row pieces, one dispatch each.
// Inputs random from the printed seed (test_seed()). Bounds, relative L2 against cpu-ref (which dequantizes
// exactly and sums in f32 or double): the kernel dequantizes with the same f32 arithmetic and sums in f32, so the
// error is f32 rounding of k-term sums, the same for every type: 1e-6 * sqrt(k / 32), at least 4e-6 (k_bound).
// Seen on lavapipe (k <= 768): at most 3.6e-7 for F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, 6.4e-7 for the
// K-quants. A skip where no Vulkan device is present. TFU_VK_MM_BENCH=1 also times a 2048 x 2048 Q4_0 weight by
// 512 columns with each tile (printed; never asserted).
// The f32 shader's tests create their backend with TFU_VK_COOPMAT=0 where they rely on the default tile choice
// (on a device with cooperative matrices products of >= 32 columns would go to mul_mat_cm.comp).
//
// The tensor-core shader (mul_mat_cm.comp, VK_NV_cooperative_matrix; the coopmat_* tests): the same shapes and
// layouts with n >= 32, every weight type, every tile forced (TFU_VK_MM_TILE=cm64|cm64x128|cm128x128) and the
// default rule, row pieces; the log must show its pipelines created. On a device without the extension (lavapipe,
// CI) they skip and say why (the features log line). The coopmat_emulated_* tests run the same cases through the
// CM_EMULATE build of the shader (TFU_VK_COOPMAT=emulate: f32 code in place of the four cooperative-matrix
// operations, 64x64 tile), which lavapipe runs: everything but the tensor-core operations themselves. Bound: see
// k_cm_bound (seen on lavapipe, emulated, round-to-nearest fp16: at most 3.8e-4).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <sstream>

#include "ops/device_test_util.h"
#include "vulkan/vk_test_env.h"

namespace tfu::test {
namespace {

// The relative L2 bound of a k-long product (see the top of the file).
double k_bound(int64_t k) { return std::max(4e-6, 1e-6 * std::sqrt(double(k) / 32.0)); }

// The bound of the cooperative-matrix shader: every weight and x value is rounded to fp16 (unit roundoff
// u = 2^-11 with round-to-nearest-even; Vulkan also allows round-toward-zero for f32 -> f16, error below 2u and
// always toward zero), the products are exact in the f32 accumulators, the sums f32. With independent rounding
// errors per term the relative L2 error of the results is about the rms relative error of one term: two
// roundings of rms ~u/sqrt(3) each, ~4e-4 with RTE; with RTZ a bias of about -u per operand adds ~1e-3 (the
// sum shrinks by ~2u), ~1.1e-3 in all. 2e-3 covers both with margin, independent of k (the terms' errors do not
// grow relative to the sum); the f32 rounding of the sums (k_bound, < 1e-5 here) is negligible. Inputs here are
// |x| < ~5, far from fp16's 65504 limit.
constexpr double k_cm_bound = 2e-3;

// The library's log lines at DEBUG and up while the object lives (the features line is INFO, pipeline creation
// DEBUG: "vulkan: pipeline <name> [ <spec> ] created").
class debug_log {
public:
    debug_log() {
        text().clear();
        log_set_callback([](tfu_log_level, const char* m, void*) { text() += std::string(m) + "\n"; }, TFU_LOG_DEBUG,
                         nullptr);
    }
    ~debug_log() { log_set_callback(nullptr, TFU_LOG_INFO, nullptr); }
    debug_log(const debug_log&) = delete;
    debug_log& operator=(const debug_log&) = delete;
    static std::string& text() {
        static std::string s;
        return s;
    }
};

// The cooperative-matrix state of the features log line ("fp16 x fp16 -> f32 16x16x16 (...)" or "no (<why>)");
// empty if the line is not in `log`.
std::string coopmat_state(const std::string& log) {
    const std::string key = "cooperative matrix ";
    const size_t at = log.find("vulkan: features:");
    if (at == std::string::npos) return {};
    const size_t b = log.find(key, at);
    const size_t e = log.find("; maxStorageBufferRange", at);
    if (b == std::string::npos || e == std::string::npos || e < b) return {};
    return log.substr(b + key.size(), e - b - key.size());
}
bool coopmat_used(const std::string& state) { return !state.empty() && state.rfind("no (", 0) != 0; }

// A Vulkan backend without the cooperative-matrix path (TFU_VK_COOPMAT=0 at creation): the f32 shader's tests.
std::unique_ptr<backend> f32_backend(std::string* why) {
    scoped_env env("TFU_VK_COOPMAT", "0");
    return backend_or_null(TFU_BACKEND_VULKAN, why);
}

// One MUL_MAT: host tensors (run by cpu-ref) and device copies of their whole memory (lead and padding included),
// so that the result's padding can be checked byte for byte after the device run.
class mm_case {
public:
    explicit mm_case(backend& dev) : dev_(dev) {}
    ~mm_case() {
        for (auto& h : t_)
            if (h->dev) dev_.free(h->dev);
    }
    mm_case(const mm_case&) = delete;
    mm_case& operator=(const mm_case&) = delete;

    // An (ne0, ne1) tensor with row stride nb1, `lead` bytes into its memory, every byte `fill` before filling.
    tensor* add(dtype type, int64_t ne0, int64_t ne1, size_t nb1, size_t lead, uint8_t fill) {
        t_.push_back(std::make_unique<item>());
        item& h = *t_.back();
        h.t = make_tensor(type, ne0, ne1);
        h.t.nb[1] = nb1;
        h.t.nb[2] = h.t.nb[3] = nb1 * size_t(ne1);
        h.lead = lead;
        h.mem.assign(lead + size_t(ne1 - 1) * nb1 + h.t.row_bytes() + 16, fill);  // 16 bytes of tail guard
        h.t.data = h.mem.data() + lead;
        return &h.t;
    }
    // Runs op `type` (dst, w, x) on cpu-ref (host) and on the device; returns the device's copy of dst's memory.
    std::vector<uint8_t> run(tensor* dst, tensor* w, tensor* x, op_type type = op_type::MUL_MAT) {
        for (auto& h : t_) {
            h->dev = dev_.alloc(h->mem.size(), "mul_mat test");
            dev_.upload(h->dev, h->mem.data(), h->mem.size());
            h->dev_t = h->t;
            h->dev_t.data = static_cast<uint8_t*>(h->dev) + h->lead;
        }
        const op host_op = make_op(type, dst, w, x);
        const op dev_op = make_op(type, &find(dst).dev_t, &find(w).dev_t, &find(x).dev_t);
        std::string why;
        if (!dev_.supports(dev_op, &why)) throw std::runtime_error("refused: " + why);
        make_cpu_ref_backend()->run(&host_op, 1);
        dev_.run(&dev_op, 1);
        dev_.sync();
        item& d = find(dst);
        std::vector<uint8_t> out(d.mem.size());
        dev_.download(out.data(), d.dev, out.size());
        return out;
    }
    // The host memory (after run: the reference result, padding untouched).
    const std::vector<uint8_t>& host_mem(const tensor* t) { return find(t).mem; }
    size_t lead(const tensor* t) { return find(t).lead; }

private:
    struct item {
        tensor t, dev_t;
        std::vector<uint8_t> mem;
        size_t lead = 0;
        void* dev = nullptr;
    };
    item& find(const tensor* t) {
        for (auto& h : t_)
            if (&h->t == t) return *h;
        throw std::runtime_error("mm_case: unknown tensor");
    }
    backend& dev_;
    std::vector<std::unique_ptr<item>> t_;
};

struct shape {
    int64_t k, m, n;
    size_t w_pad, w_lead, x_pad_floats, x_lead, d_pad_floats;
};

// Case idx's k x m x n with its layout: row padding (2 shifts blocks across word boundaries row by row; f32 rows
// stay 4-byte strided), leading bytes and padded x / dst columns, cycling with idx.
shape padded_shape(dtype t, int idx, int64_t k, int64_t m, int64_t n) {
    shape s{};
    s.k = k;
    s.m = m;
    s.n = n;
    const size_t pads[] = {0, 2, 4, 16}, f32_pads[] = {0, 4, 16, 4};
    s.w_pad = t == dtype::F32 ? f32_pads[idx % 4] : pads[idx % 4];
    s.w_lead = size_t(idx % 2) * 4;
    s.x_pad_floats = size_t((idx + 1) % 3 == 0 ? 1 : ((idx + 1) % 3 == 1 ? 0 : 4));
    s.x_lead = size_t((idx / 2) % 2) * 4;
    s.d_pad_floats = size_t(idx % 3);
    return s;
}

// The largest relative L2 error seen per type (printed by every_type_odd_shapes).
std::map<dtype, double>& worst_error() {
    static std::map<dtype, double> w;
    return w;
}

// Runs one case; compares the result elements by relative L2 (at most `bound`, default k_bound(k)) and every other
// byte of dst's memory exactly. Returns the error.
double check_case(backend& dev, std::mt19937_64& rng, dtype type, const shape& s, const std::string& what,
                  double bound = 0) {
    mm_case c(dev);
    tensor* w = c.add(type, s.k, s.m, row_size(type, s.k) + s.w_pad, s.w_lead, 0xA5);
    fill_random(rng, *w, 0.05f);
    tensor* x = c.add(dtype::F32, s.k, s.n, sizeof(float) * size_t(s.k + int64_t(s.x_pad_floats)), s.x_lead, 0xA5);
    fill_random(rng, *x, 1.0f);
    const size_t d_lead = s.d_pad_floats ? 4 : 0;
    tensor* d = c.add(dtype::F32, s.m, s.n, sizeof(float) * size_t(s.m + int64_t(s.d_pad_floats)), d_lead, 0x5A);
    const std::vector<uint8_t> got_mem = c.run(d, w, x);
    const std::vector<uint8_t>& want_mem = c.host_mem(d);
    std::vector<float> got, want;
    std::vector<bool> is_elem(want_mem.size(), false);
    for (int64_t j = 0; j < s.n; ++j)
        for (int64_t i = 0; i < s.m; ++i) {
            const size_t b = d_lead + size_t(j) * d->nb[1] + size_t(i) * 4;
            float g, v;
            std::memcpy(&g, &got_mem[b], 4);
            std::memcpy(&v, &want_mem[b], 4);
            got.push_back(g);
            want.push_back(v);
            for (size_t q = 0; q < 4; ++q) is_elem[b + q] = true;
        }
    size_t stray = 0;
    for (size_t b = 0; b < want_mem.size(); ++b)
        if (!is_elem[b] && got_mem[b] != want_mem[b]) ++stray;
    const double err = rel_l2(got, want);
    worst_error()[type] = std::max(worst_error()[type], err);
    EXPECT_LE(err, bound > 0 ? bound : k_bound(s.k)) << what;
    EXPECT_EQ(stray, 0u) << what << ": bytes outside the result changed";
    return err;
}

std::string describe(dtype t, const shape& s, const char* tile) {
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "%s k=%lld m=%lld n=%lld w_pad=%zu w_lead=%zu x_pad=%zu x_lead=%zu d_pad=%zu tile=%s", dtype_name(t),
                  (long long)s.k, (long long)s.m, (long long)s.n, s.w_pad, s.w_lead, s.x_pad_floats, s.x_lead,
                  s.d_pad_floats, tile);
    return buf;
}

// Row lengths per type: float types with k % 8 != 0 (a partial last unit), k < 8 and k % 32 != 0 (a partial last
// step); 32-element blocks: 1, 3 and 9 blocks; K-quants: 1 and 3 super-blocks.
std::vector<int64_t> ks_of(dtype t) {
    switch (t) {
        case dtype::F32: case dtype::F16: case dtype::BF16: return {5, 37, 264, 128};
        case dtype::Q2_K: case dtype::Q3_K: case dtype::Q4_K: case dtype::Q5_K: case dtype::Q6_K: return {256, 768};
        default: return {32, 96, 288, 192};
    }
}

const dtype k_types[] = {dtype::F32,  dtype::F16,  dtype::BF16, dtype::Q4_0, dtype::Q4_1, dtype::Q5_0, dtype::Q5_1,
                         dtype::Q8_0, dtype::Q2_K, dtype::Q3_K, dtype::Q4_K, dtype::Q5_K, dtype::Q6_K};

// The tiles of mul_mat.comp as TFU_VK_MM_TILE names them: 64x64, 128x64, 64x128, 128x128.
const char* const k_tiles[] = {"64", "128", "64x128", "128x128"};

// Every type, several shapes each, each under one of the tiles forced.
TEST(vk_mul_mat, every_type_odd_shapes) {
    std::string why;
    std::unique_ptr<backend> dev = backend_or_null(TFU_BACKEND_VULKAN, &why);
    if (!dev) GTEST_SKIP() << why;
    std::mt19937_64 rng(test_seed() + 60);
    int cases = 0;
    for (dtype t : k_types) {
        const std::vector<int64_t> ks = ks_of(t);
        for (size_t ki = 0; ki < ks.size(); ++ki) {
            // (m, n) pairs: one tile and a bit, a partial tile, many tiles; row/column padding varies per case.
            const int64_t ms[] = {37, 130, 1, 200}, ns[] = {9, 67, 130, 17};
            for (int v = 0; v < 2; ++v) {
                const int idx = int(ki) * 2 + v;
                const shape s = padded_shape(t, idx, ks[ki], ms[idx % 4], ns[(idx + int(t)) % 4]);
                // Each type meets every tile over its 4 or 6 cases (each (type, tile) pair is a pipeline to
                // compile: lavapipe takes ~1 s each).
                const char* tile = k_tiles[size_t(idx + int(t)) % 4];
                scoped_env env("TFU_VK_MM_TILE", tile);
                check_case(*dev, rng, t, s, describe(t, s, tile));
                ++cases;
            }
        }
    }
    std::printf("%d cases; largest relative L2 error per type:", cases);
    for (dtype t : k_types) std::printf(" %s %.2g", dtype_name(t), worst_error()[t]);
    std::printf("\n");
}

// n from 9 to 600 for the common model types, default tile choice (and the old 32 x 32 shader on one shape).
TEST(vk_mul_mat, column_counts) {
    std::string why;
    std::unique_ptr<backend> dev = f32_backend(&why);
    if (!dev) GTEST_SKIP() << why;
    std::mt19937_64 rng(test_seed() + 61);
    for (dtype t : {dtype::F16, dtype::Q4_0, dtype::Q8_0, dtype::Q4_K, dtype::Q6_K})
        for (int64_t n : {9, 10, 31, 64, 65, 127, 129, 600}) {
            const int64_t k = traits(t).block_size >= 256 ? 256 : 96;
            const shape s{k, 70, n, 0, 0, 0, 0, 0};
            scoped_env env("TFU_VK_MM_TILE", nullptr);
            check_case(*dev, rng, t, s, describe(t, s, "default"));
        }
    const shape s{96, 70, 100, 2, 4, 1, 4, 3};
    scoped_env env("TFU_VK_MM_TILE", "32");
    check_case(*dev, rng, dtype::Q4_0, s, describe(dtype::Q4_0, s, "32"));
}

// Large products take the larger tiles by default (>= 256 workgroups); m and n not multiples of them.
TEST(vk_mul_mat, default_large_tiles) {
    std::string why;
    std::unique_ptr<backend> dev = f32_backend(&why);
    if (!dev) GTEST_SKIP() << why;
    std::mt19937_64 rng(test_seed() + 62);
    scoped_env env("TFU_VK_MM_TILE", nullptr);
    const shape wide{64, 4100, 520, 2, 4, 0, 0, 1};   // 64x128: 65 x 5 = 325 workgroups (128x128: 165)
    const shape large{32, 4100, 1030, 0, 0, 1, 4, 0};  // 128x128: 33 x 9 = 297 workgroups
    check_case(*dev, rng, dtype::Q4_0, wide, describe(dtype::Q4_0, wide, "default"));
    check_case(*dev, rng, dtype::Q8_0, large, describe(dtype::Q8_0, large, "default"));
}

// Weights larger than one binding (forced to 64 KiB): row pieces, one dispatch each, every tile and the
// matrix-vector path (n = 3). Rows of 290 and 422 bytes (2-byte padded) make pieces that start mid-word; GET_ROWS
// shares the piece binding (bind_rows), so it is checked on the same weights.
TEST(vk_mul_mat, row_pieces) {
    std::string why;
    std::unique_ptr<backend> dev;
    {
        scoped_env env("TFU_VK_MAX_BINDING_BYTES", "65536");
        env.set("TFU_VK_MMV_I8", "0");  // the float path (k_bound: exact products); int8 row pieces: test_vk_mmv_units
        dev = backend_or_null(TFU_BACKEND_VULKAN, &why);
    }
    if (!dev) GTEST_SKIP() << why;
    std::mt19937_64 rng(test_seed() + 63);
    for (dtype t : {dtype::Q4_0, dtype::F32, dtype::Q6_K}) {
        const int64_t k = t == dtype::F32 ? 256 : 512;
        const shape s{k, 300, 20, t == dtype::F32 ? 4u : 2u, 0, 0, 0, 1};
        ASSERT_GT(uint64_t(row_size(t, k) + s.w_pad) * uint64_t(s.m), 65536u);
        for (const char* tile : k_tiles) {
            scoped_env env("TFU_VK_MM_TILE", tile);
            check_case(*dev, rng, t, s, describe(t, s, tile));
        }
        shape mmv = s;
        mmv.n = 3;
        check_case(*dev, rng, t, mmv, describe(t, mmv, "mul_mat_vec"));

        mm_case c(*dev);  // GET_ROWS of ids in every piece
        tensor* w = c.add(t, k, s.m, row_size(t, k) + s.w_pad, 0, 0xA5);
        fill_random(rng, *w, 1.0f);
        tensor* ids = c.add(dtype::I32, 7, 1, 7 * sizeof(int32_t), 0, 0);
        const int32_t pick[7] = {0, 1, 151, 152, 226, 298, 299};
        std::memcpy(ids->data, pick, sizeof pick);
        tensor* d = c.add(dtype::F32, k, 7, sizeof(float) * size_t(k), 0, 0x5A);
        const std::vector<uint8_t> got = c.run(d, w, ids, op_type::GET_ROWS);
        EXPECT_EQ(got, c.host_mem(d)) << dtype_name(t) << " GET_ROWS over row pieces";
    }
}

// The features line names the cooperative-matrix state on every device; TFU_VK_COOPMAT=0 turns it off.
TEST(vk_mul_mat, coopmat_detection_logged) {
    std::string why, state;
    {
        debug_log log;
        std::unique_ptr<backend> dev = backend_or_null(TFU_BACKEND_VULKAN, &why);
        if (!dev) GTEST_SKIP() << why;
        state = coopmat_state(log.text());
        ASSERT_FALSE(state.empty()) << "no cooperative-matrix state in the features line:\n" << log.text();
    }
    std::printf("cooperative matrix: %s\n", state.c_str());
    if (!coopmat_used(state)) {
        EXPECT_GT(state.size(), std::string("no ()").size()) << "a reason is given";
    }
    debug_log log;
    std::unique_ptr<backend> off = f32_backend(&why);
    ASSERT_TRUE(off) << why;
    const std::string off_state = coopmat_state(log.text());
    EXPECT_TRUE(off_state == "no (TFU_VK_COOPMAT=0)" || (!coopmat_used(state) && off_state == state)) << off_state;
}

// The coopmat tests run in two modes: "device", the real cooperative-matrix path (skipped where the device lacks
// VK_NV_cooperative_matrix), and "emulate", TFU_VK_COOPMAT=emulate / emulate8 at backend creation: mul_mat_cm.comp
// built with CM_EMULATE (the four cooperative-matrix operations as plain f32 code over the same fp16 tiles,
// 64x64 tile only), which lavapipe runs. Creates the backend (null: skip, *state says why), with env `name` set to
// `value` while it is created where given; *state: the features line's cooperative-matrix state. A debug_log must
// be capturing (the tests look for pipeline lines).
std::unique_ptr<backend> coopmat_backend(const char* mode, std::string* state, const char* name = nullptr,
                                         const char* value = nullptr) {
    std::string why;
    std::unique_ptr<backend> dev;
    {
        scoped_env env("TFU_VK_COOPMAT", mode);
        scoped_env extra;
        if (name) extra.set(name, value);
        dev = backend_or_null(TFU_BACKEND_VULKAN, &why);
    }
    if (!dev) {
        *state = why;
        return nullptr;
    }
    *state = coopmat_state(debug_log::text());
    if (!coopmat_used(*state)) return nullptr;
    return dev;
}

// The variant the backend of `state` runs for tile `base` (emulated: always the 64x64 one; _n8 for 16x8x16) where
// k steps by 32; with k64, the one stepping k by 64 (vk_ops.cpp cm_k64: k a multiple of 64 on 16x16x16 fragments,
// not the 128x128 tile), else the same.
std::string cm_shader(const std::string& state, const char* base, bool k64 = false) {
    const bool emu = state.find("emulated") != std::string::npos, n8 = state.find("16x8x16") != std::string::npos;
    const std::string name = emu ? "mul_mat_cm_emu" : base;
    if (k64 && !n8 && name != "mul_mat_cm_xl") return name + "_k64";
    return name + (n8 ? "_n8" : "");
}
bool pipeline_created(const std::string& name) {
    return debug_log::text().find("pipeline " + name + " [") != std::string::npos;
}
// Whether a variant of tile `base` (cm_shader's, either step) was created.
bool tile_created(const std::string& state, const char* base) {
    return pipeline_created(cm_shader(state, base)) || pipeline_created(cm_shader(state, base, true));
}

// Every weight type through mul_mat_cm.comp: odd m, n (>= 32), k; padded/offset weights, x and results; each tile
// forced and the default rule (F32 weights only under a forced tile: the default keeps them in f32). `types`:
// the weight types to run.
void cm_every_type(const char* mode, const std::vector<dtype>& types) {
    debug_log log;
    std::string state;
    std::unique_ptr<backend> dev = coopmat_backend(mode, &state);
    if (!dev) GTEST_SKIP() << "cooperative matrix: " << state << ": mul_mat_cm.comp not run";
    std::mt19937_64 rng(test_seed() + 65);
    const char* const tiles[] = {"cm64", "cm64x128", "cm128x128", nullptr};
    std::map<dtype, double> worst;
    int cases = 0;
    for (dtype t : types) {
        const std::vector<int64_t> ks = ks_of(t);
        for (size_t ki = 0; ki < ks.size(); ++ki) {
            // The emulated shader (64x64 tile, f32 loops in place of the tensor-core operations) is slow on a CPU
            // driver: smaller shapes, still partial tiles in both directions.
            const bool emu = mode != nullptr;
            const int64_t ms[] = {37, emu ? 70 : 130, 1, emu ? 100 : 200}, ns[] = {32, 67, emu ? 100 : 130, 33, 200};
            for (int v = 0; v < 2; ++v) {
                const int idx = int(ki) * 2 + v;
                const int64_t n = ns[(idx + int(t)) % 5];
                const shape s = padded_shape(t, idx, ks[ki], ms[idx % 4], emu ? std::min<int64_t>(n, 100) : n);
                const char* tile = tiles[size_t(idx + int(t)) % 4];
                if (!tile && t == dtype::F32) tile = "cm64x128";
                scoped_env env("TFU_VK_MM_TILE", tile);
                // x in fp16 first (mul_mat_cm_x16.comp, the default) or read as f32 by the product itself.
                scoped_env x16("TFU_VK_CM_X16", v == 1 ? "0" : nullptr);
                const std::string what = std::string(tile ? tile : "default") + (v == 1 ? ", f32 x" : ", fp16 x");
                const double err = check_case(*dev, rng, t, s, describe(t, s, what.c_str()), k_cm_bound);
                worst[t] = std::max(worst[t], err);
                ++cases;
            }
        }
    }
    std::printf("%d coopmat cases (%s); largest relative L2 error per type:", cases, state.c_str());
    for (dtype t : types) std::printf(" %s %.2g", dtype_name(t), worst[t]);
    std::printf("\n");
    for (const char* base : {"mul_mat_cm", "mul_mat_cm_w", "mul_mat_cm_xl"}) {
        EXPECT_TRUE(tile_created(state, base)) << base << " was never created: the coopmat path did not run";
        for (bool k64 : {false, true})  // both steps of k ran (each k of ks_of has a multiple of 64)
            EXPECT_TRUE(pipeline_created(cm_shader(state, base, k64))) << cm_shader(state, base, k64) << " never ran";
    }
    EXPECT_TRUE(pipeline_created("mul_mat_cm_x16")) << "x never went through fp16 first";
}

// The rule: fewer than 32 columns, F32 weights and a forced f32 tile keep the f32 shader (its k_bound holds and no
// coopmat pipeline is created); 32 columns take mul_mat_cm.comp (64x64: 2 workgroups).
void cm_rule(const char* mode) {
    debug_log log;
    std::string state;
    std::unique_ptr<backend> dev = coopmat_backend(mode, &state);
    if (!dev) GTEST_SKIP() << "cooperative matrix: " << state << ": mul_mat_cm.comp not run";
    std::mt19937_64 rng(test_seed() + 66);
    scoped_env none("TFU_VK_MM_TILE", nullptr);
    const shape few{96, 70, 31, 2, 4, 1, 4, 3};
    check_case(*dev, rng, dtype::Q8_0, few, describe(dtype::Q8_0, few, "default"));
    const shape f32w{96, 70, 200, 4, 0, 0, 0, 1};
    check_case(*dev, rng, dtype::F32, f32w, describe(dtype::F32, f32w, "default"));
    {
        scoped_env env("TFU_VK_MM_TILE", "64x128");
        const shape forced{96, 70, 200, 0, 0, 0, 0, 0};
        check_case(*dev, rng, dtype::Q4_0, forced, describe(dtype::Q4_0, forced, "64x128"));
    }
    EXPECT_EQ(log.text().find("pipeline mul_mat_cm"), std::string::npos) << "a coopmat pipeline ran too early";
    const shape at32{96, 70, 32, 0, 0, 0, 0, 0};
    check_case(*dev, rng, dtype::Q4_0, at32, describe(dtype::Q4_0, at32, "default"), k_cm_bound);
    EXPECT_TRUE(pipeline_created(cm_shader(state, "mul_mat_cm"))) << "32 columns did not take the 64x64 coopmat tile";
}

// Weights larger than one binding (forced to 64 KiB) through every coopmat tile: row pieces, pieces starting
// mid-word (2-byte padded rows).
void cm_row_pieces(const char* mode) {
    debug_log log;
    std::string state;
    std::unique_ptr<backend> dev = coopmat_backend(mode, &state, "TFU_VK_MAX_BINDING_BYTES", "65536");
    if (!dev) GTEST_SKIP() << "cooperative matrix: " << state << ": mul_mat_cm.comp not run";
    std::mt19937_64 rng(test_seed() + 67);
    for (dtype t : {dtype::Q4_0, dtype::F16, dtype::Q6_K}) {
        const int64_t k = 256;  // x (32 KiB) and the result (62.6 KiB) fit the 64 KiB binding, the weight does not
        const shape s{k, 500, 32, 2, 0, 0, 0, 1};
        ASSERT_GT(uint64_t(row_size(t, k) + s.w_pad) * uint64_t(s.m), 65536u);
        for (const char* tile : {"cm64", "cm64x128", "cm128x128"}) {
            scoped_env env("TFU_VK_MM_TILE", tile);
            check_case(*dev, rng, t, s, describe(t, s, tile), k_cm_bound);
        }
    }
    EXPECT_TRUE(tile_created(state, "mul_mat_cm"));
}

// Q/K/V and gate/up shapes on the tensor-core shader: 2 or 3 MUL_MATs of one x (over 8 columns) in one run() are
// one launch (vk_ops.cpp record_fused_cm) with x converted to fp16 once: odd rows per matrix (tiles that end inside a
// matrix, then the next matrix's first tile), padded and offset weights, both x forms; against cpu-ref, and from the
// per-shader dispatch counts (TFU_VK_PROFILE=1) one product launch and one conversion per group. Look-alikes that
// must stay apart: two products of different x of one shape.
void cm_shared_x(const char* mode) {
    debug_log log;
    std::string state;
    std::unique_ptr<backend> dev = coopmat_backend(mode, &state, "TFU_VK_PROFILE", "1");
    if (!dev) GTEST_SKIP() << "cooperative matrix: " << state << ": mul_mat_cm.comp not run";
    std::mt19937_64 rng(test_seed() + 68);
    struct group {
        dtype t;
        int64_t k, rows[3], n;
        bool x16;
    };
    const group groups[] = {{dtype::Q4_0, 96, {70, 37, 37}, 67, true},
                            {dtype::F16, 37, {100, 33, 0}, 40, true},
                            {dtype::Q8_0, 64, {45, 45, 45}, 32, false},
                            {dtype::Q6_K, 256, {33, 65, 0}, 50, true}};
    unsigned long long launches = 0, converted = 0;
    for (const group& g : groups) {
        scoped_env x16("TFU_VK_CM_X16", g.x16 ? nullptr : "0");
        device_case c(*dev);
        tensor* x = c.add(rng, dtype::F32, g.k, g.n, true);
        std::vector<op> ops;
        std::vector<tensor*> ws, ds;
        for (int i = 0; i < 3 && g.rows[i] > 0; ++i) {
            const size_t pad = i == 1 ? 2 : 0, lead = i == 2 ? 4 : 0;  // rows shifted across words, an offset
            ws.push_back(c.add_strided(g.t, g.k, g.rows[i], row_size(g.t, g.k) + pad, lead, 0xA5));
            fill_random(rng, *ws.back(), 0.05f);
            ds.push_back(c.add(rng, dtype::F32, g.rows[i], g.n, false));
            ops.push_back(make_op(op_type::MUL_MAT, ds.back(), ws.back(), x));
        }
        c.run(ops);
        for (size_t i = 0; i < ds.size(); ++i)
            EXPECT_LE(rel_l2(c.device_values(ds[i]), to_floats(*ds[i])), k_cm_bound)
                << dtype_name(g.t) << " k=" << g.k << " matrix " << i << (g.x16 ? ", fp16 x" : ", f32 x");
        ++launches;
        converted += g.x16 ? 1 : 0;
    }
    {
        device_case c(*dev);  // the same shapes, two different x: two launches
        tensor* x1 = c.add(rng, dtype::F32, 64, 40, true);
        tensor* x2 = c.add(rng, dtype::F32, 64, 40, true);
        tensor* w1 = c.add(rng, dtype::Q4_0, 64, 48, true, 0.05f);
        tensor* w2 = c.add(rng, dtype::Q4_0, 64, 48, true, 0.05f);
        tensor* d1 = c.add(rng, dtype::F32, 48, 40, false);
        tensor* d2 = c.add(rng, dtype::F32, 48, 40, false);
        c.run({make_op(op_type::MUL_MAT, d1, w1, x1), make_op(op_type::MUL_MAT, d2, w2, x2)});
        EXPECT_LE(rel_l2(c.device_values(d1), to_floats(*d1)), k_cm_bound) << "x1";
        EXPECT_LE(rel_l2(c.device_values(d2), to_floats(*d2)), k_cm_bound) << "x2";
        launches += 2;
        converted += 2;
    }
    dev.reset();  // logs the per-shader counts
    std::set<std::string> names;
    for (const char* base : {"mul_mat_cm", "mul_mat_cm_w", "mul_mat_cm_xl"})
        for (bool k64 : {false, true}) names.insert(cm_shader(state, base, k64));
    unsigned long long seen = 0, seen_x16 = 0;
    std::istringstream lines(log.text());
    for (std::string l; std::getline(lines, l);) {
        for (const std::string& name : names) seen += recorded_in(l, name);
        seen_x16 += recorded_in(l, "mul_mat_cm_x16");
    }
    EXPECT_EQ(seen, launches) << "tensor-core product launches";
    EXPECT_EQ(seen_x16, converted) << "x conversions";
}

const std::vector<dtype> k_all_types(std::begin(k_types), std::end(k_types));

TEST(vk_mul_mat, coopmat_every_type_odd_shapes) { cm_every_type(nullptr, k_all_types); }
TEST(vk_mul_mat, coopmat_rule) { cm_rule(nullptr); }
TEST(vk_mul_mat, coopmat_row_pieces) { cm_row_pieces(nullptr); }
TEST(vk_mul_mat, coopmat_shared_x) { cm_shared_x(nullptr); }
TEST(vk_mul_mat, coopmat_emulated_every_type_odd_shapes) { cm_every_type("emulate", k_all_types); }
TEST(vk_mul_mat, coopmat_emulated_n8) {
    cm_every_type("emulate8", {dtype::F16, dtype::Q4_0, dtype::Q4_1, dtype::Q4_K, dtype::Q6_K});
}
TEST(vk_mul_mat, coopmat_emulated_rule) { cm_rule("emulate"); }
TEST(vk_mul_mat, coopmat_emulated_row_pieces) { cm_row_pieces("emulate"); }
TEST(vk_mul_mat, coopmat_emulated_shared_x) { cm_shared_x("emulate"); }

// TFU_VK_MM_BENCH=1: the time of one MUL_MAT per tile variant, the coopmat tiles too where the device has them:
// 10 copies of the op in one run() (one submission, one wait), a warm-up run, then the best of 3, divided by 10.
// Printed only. TFU_VK_MM_BENCH_SHAPES="MxK,..." (default 2048x2048), TFU_VK_MM_BENCH_N (default 512),
// TFU_VK_MM_BENCH_TYPE (a dtype name as dtype_name prints it, default q4_0), TFU_VK_MM_BENCH_TILES="cm64,..."
// (TFU_VK_MM_TILE values; default every tile). Each tile's result is checked against the first tile's.
std::vector<std::string> split_list(const char* s, const char* fallback) {
    std::string text = s && *s ? s : fallback;
    std::vector<std::string> out;
    size_t start = 0;
    while (start <= text.size()) {
        const size_t comma = text.find(',', start);
        const std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        if (!item.empty()) out.push_back(item);
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    return out;
}

TEST(vk_mul_mat, bench_tiles) {
    const char* on = std::getenv("TFU_VK_MM_BENCH");
    if (!on || std::string(on) != "1") GTEST_SKIP() << "set TFU_VK_MM_BENCH=1 to time";
    std::string why, state;
    std::unique_ptr<backend> dev;
    {
        debug_log log;
        dev = backend_or_null(TFU_BACKEND_VULKAN, &why);
        state = coopmat_state(log.text());
    }
    if (!dev) GTEST_SKIP() << why;
    dtype type = dtype::Q4_0;
    if (const char* t = std::getenv("TFU_VK_MM_BENCH_TYPE"); t && *t) {
        bool found = false;
        for (dtype c : k_types)
            if (std::string(dtype_name(c)) == t) type = c, found = true;
        ASSERT_TRUE(found) << "TFU_VK_MM_BENCH_TYPE=" << t << " is not a weight type of this test";
    }
    const char* n_env = std::getenv("TFU_VK_MM_BENCH_N");
    const int64_t n = n_env && *n_env ? std::atoll(n_env) : 512;
    ASSERT_GT(n, 0);
    std::vector<std::string> tiles = split_list(std::getenv("TFU_VK_MM_BENCH_TILES"), "32,64,128,64x128,128x128");
    if (!std::getenv("TFU_VK_MM_BENCH_TILES") && coopmat_used(state))
        for (const char* cm : {"cm64", "cm64x128", "cm128x128"}) tiles.push_back(cm);
    std::mt19937_64 rng(test_seed() + 64);
    for (const std::string& sh : split_list(std::getenv("TFU_VK_MM_BENCH_SHAPES"), "2048x2048")) {
        const int64_t m = std::atoll(sh.c_str()), k = std::atoll(sh.c_str() + sh.find('x') + 1);
        ASSERT_TRUE(sh.find('x') != std::string::npos && m > 0 && k > 0) << "shape " << sh << ": want MxK";
        owned_tensor w(type, k, m), x(dtype::F32, k, n);
        fill_random(rng, w.t, 0.05f);
        fill_random(rng, x.t, 1.0f);
        void* dw = dev->alloc(w.t.nbytes(), "bench w");
        void* dx = dev->alloc(x.t.nbytes(), "bench x");
        void* dd = dev->alloc(size_t(m * n) * 4, "bench d");
        dev->upload(dw, w.t.data, w.t.nbytes());
        dev->upload(dx, x.t.data, x.t.nbytes());
        tensor tw = w.t, tx = x.t, td = make_tensor(dtype::F32, m, n);
        tw.data = dw, tx.data = dx, td.data = dd;
        const std::vector<op> ops(10, make_op(op_type::MUL_MAT, &td, &tw, &tx));
        std::vector<float> first;
        for (const std::string& tile : tiles) {
            scoped_env env("TFU_VK_MM_TILE", tile.c_str());
            dev->run(ops.data(), ops.size());
            dev->sync();
            double best = 1e30;
            for (int r = 0; r < 3; ++r) {
                const auto t0 = std::chrono::steady_clock::now();
                dev->run(ops.data(), ops.size());
                dev->sync();
                best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
            }
            best /= double(ops.size());
            std::vector<float> out(size_t(m * n));
            dev->download(out.data(), dd, out.size() * 4);
            if (first.empty()) first = out;
            else
                EXPECT_LE(rel_l2(out, first), tile[0] == 'c' || tiles[0][0] == 'c' ? k_cm_bound : k_bound(k))
                    << "tile " << tile << " against " << tiles[0];
            std::printf("mul_mat %s %lldx%lld by %lld, tile %s: %.1f us (%.1f TFLOP/s)\n", dtype_name(type),
                        (long long)m, (long long)k, (long long)n, tile.c_str(), best * 1e6,
                        2.0 * double(m) * double(k) * double(n) / best * 1e-12);
        }
        dev->free(dw);
        dev->free(dx);
        dev->free(dd);
    }
}

}  // namespace
}  // namespace tfu::test
