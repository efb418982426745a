// Per-op support checks and recording of the Vulkan backend (see vk_ops.h): one function per op of
// backend/ops.def, each naming its shader (shaders/<op>.comp), its push constants in the order the shader's
// push_constant block declares them, and its workgroup count. Strides in push constants are in 32-bit words for
// f32/i32 tensors and in bytes for weights (whose rows are blocks of any size).
#include "vk_ops.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <map>

#include "backend/attention_split.h"
#include "backend/fused_pairs.h"
#include "backend/fused_residual.h"
#include "backend/kv_format.h"
#include "core/error.h"
#include "vk_backend.h"

namespace tfu::vk {

namespace {

uint32_t fbits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}
uint64_t ceil_div(uint64_t a, uint64_t b) { return (a + b - 1) / b; }
// A tuning choice from the environment: env `name`'s number when it is one of `allowed`, else `fallback`.
uint32_t env_choice(const char* name, std::initializer_list<uint32_t> allowed, uint32_t fallback) {
    const char* e = std::getenv(name);
    const long v = e ? std::atol(e) : -1;
    for (uint32_t a : allowed)
        if (v == long(a)) return a;
    return fallback;
}
// Bytes from a tensor's first to its last element (rows may be padded: nb[1] >= row bytes).
uint64_t extent(const tensor& t) { return uint64_t(t.nrows() - 1) * t.nb[1] + t.row_bytes(); }
uint32_t words(size_t bytes) { return uint32_t(bytes / 4); }

bool weight_dtype_ok(dtype t) {
    switch (t) {
        case dtype::F32: case dtype::F16: case dtype::BF16: case dtype::Q4_0: case dtype::Q4_1: case dtype::Q5_0:
        case dtype::Q5_1: case dtype::Q8_0: case dtype::Q2_K: case dtype::Q3_K: case dtype::Q4_K: case dtype::Q5_K:
        case dtype::Q6_K: return true;
        default: return false;
    }
}

bool refuse(std::string* why, const op& o, const std::string& msg) {
    if (why) *why = std::string(op_name(o.type)) + ": " + msg;
    return false;
}

// f32/i32 tensors are read as 32-bit words and bound whole: rows 4-byte strided, within one binding.
bool activation_ok(const op& o, const tensor* t, const char* role, uint64_t max_binding, std::string* why) {
    if (!t) return true;
    if (t->nb[1] % 4 != 0) return refuse(why, o, std::string(role) + " rows are not 4-byte strided");
    if (extent(*t) + 256 > max_binding)
        return refuse(why, o, std::string(role) + " (" + std::to_string(extent(*t)) +
                                  " bytes) exceeds one storage-buffer binding; only weights are split");
    return true;
}

// The weight rows of one dispatch: rows [lo, hi) bound as one window.
struct row_piece {
    int64_t lo, hi;
};
std::vector<row_piece> split_rows(const tensor& w, uint64_t max_binding, uint64_t align) {
    const uint64_t rows_per = std::max<uint64_t>(1, (max_binding - align) / w.nb[1]);
    std::vector<row_piece> out;
    for (int64_t lo = 0; lo < w.ne[1]; lo += int64_t(rows_per))
        out.push_back({lo, std::min<int64_t>(w.ne[1], lo + int64_t(rows_per))});
    return out;
}
// Weight rows are 2-byte strided, so a later piece may start mid-word: it is bound from the word below and the
// skew added to the binding's byte offset (the shaders address weights in bytes).
binding bind_rows(vk_backend& be, const tensor& w, row_piece p) {
    const char* start = static_cast<const char*>(w.data) + uint64_t(p.lo) * w.nb[1];
    const uint32_t skew = p.lo > 0 ? uint32_t(reinterpret_cast<uintptr_t>(start) % 4) : 0;
    binding b = be.bind(start - skew, skew + uint64_t(p.hi - p.lo - 1) * w.nb[1] + w.row_bytes(),
                        "src0 (weight rows)");
    b.byte += skew;
    b.word = b.byte / 4;
    return b;
}
binding bind_whole(vk_backend& be, const tensor* t, const char* what) {
    return t ? be.bind(t->data, extent(*t), what) : binding{};
}

// ---- ops ------------------------------------------------------------------------------------------------

// dst (n_embd, n) = rows ids of src0 (n_embd, n_vocab): one thread per output element; a vocabulary larger than
// one binding is done in row pieces (each dispatch writes the ids that fall in its piece). An id outside the
// vocabulary gives NaN (the device cannot throw; the reference does).
void record_get_rows(vk_backend& be, const op& o) {
    const tensor& w = *o.src[0];
    const tensor& ids = *o.src[1];
    const tensor& d = *o.dst;
    binding b[3] = {bind_whole(be, &d, "dst"), {}, bind_whole(be, &ids, "src1 (ids)")};
    const uint64_t n = uint64_t(d.ne[0]) * uint64_t(ids.nelements());
    for (row_piece p : split_rows(w, be.max_binding(), be.caps().storage_offset_align)) {
        b[1] = bind_rows(be, w, p);
        be.dispatch("get_rows", {uint32_t(w.type)}, b, 3,
                    {uint32_t(d.ne[0]), uint32_t(ids.nelements()), b[1].byte, uint32_t(w.nb[1]), uint32_t(p.lo),
                     uint32_t(p.hi), uint32_t(w.ne[1]), b[2].word, b[0].word, words(d.nb[1])},
                    ceil_div(n, 256));
    }
}

// src1's row stride in words for ADD, MUL, SWIGLU: 0 broadcasts its one row over src0's.
uint32_t src1_stride(const tensor& a, const tensor& c) { return c.nrows() == 1 && a.nrows() > 1 ? 0u : words(c.nb[1]); }

// One workgroup (256) per row: sum of squares reduced with subgroupAdd where the device has subgroup arithmetic
// (the _subgroup variants), else in shared memory. With `add` (record_fused: ADD(y, a, b) whose y is the norm's
// src0), the add_rms_norm variant first forms y = a + b in the same workgroup: a at binding 1, b at 3, y at 5.
// Both variants of a device reduce alike, so the pair stays bit-identical to the ops one by one.
void dispatch_rms_norm(vk_backend& be, const op& norm, const op* add) {
    const tensor& x = add ? *add->src[0] : *norm.src[0];
    const tensor& d = *norm.dst;
    binding b[5] = {bind_whole(be, &d, "dst"), bind_whole(be, &x, "src0"),
                    bind_whole(be, norm.src[1], "src1 (weight)")};
    std::vector<uint32_t> push = {uint32_t(x.ne[0]), uint32_t(x.nrows()), b[1].word, words(x.nb[1]), b[2].word,
                                  b[0].word, words(d.nb[1]), fbits(norm.f[0])};
    if (add) {
        const tensor& c = *add->src[1];
        const tensor& y = *add->dst;
        b[3] = bind_whole(be, &c, "src1 (ADD)");
        b[4] = bind_whole(be, &y, "dst (ADD)");
        push.insert(push.end(), {b[3].word, src1_stride(x, c), b[4].word, words(y.nb[1])});
    }
    const char* shader = add ? (be.subgroup_ops() ? "add_rms_norm_subgroup" : "add_rms_norm")
                             : (be.subgroup_ops() ? "rms_norm_subgroup" : "rms_norm");
    be.dispatch(shader, {}, b, add ? 5 : 3, std::move(push), uint64_t(x.nrows()));
}

// ADD, MUL, SWIGLU: one thread per element; src1 stride 0 broadcasts its one row.
void record_elementwise(vk_backend& be, const op& o, const char* shader) {
    const tensor& a = *o.src[0];
    const tensor& c = *o.src[1];
    const tensor& d = *o.dst;
    binding b[3] = {bind_whole(be, &d, "dst"), bind_whole(be, &a, "src0"), bind_whole(be, &c, "src1")};
    const uint64_t n = uint64_t(a.nelements());
    be.dispatch(shader, {}, b, 3,
                {uint32_t(n), uint32_t(a.ne[0]), b[1].word, words(a.nb[1]), b[2].word, src1_stride(a, c), b[0].word,
                 words(d.nb[1])},
                ceil_div(n, 256));
}

// One thread per rotated pair (or copied dimension >= n_rot) of each (token, head) row. The frequencies
// freq_scale * base^(-2j/n_rot) are computed here in double and passed as float pairs (hi, lo), so that the
// shader forms the angle pos * freq / factor to about 48 bits before reducing it (the reference uses double).
// parts = 2 (record_fused: ROPE q, ROPE k with the same positions, factors and parameters): the rope_pair variant,
// q's workgroups then k's, k and its result at bindings 6 and 5.
// parts = 4 (record_fused: rope_store_ok; r[2], r[3] the KV_STOREs of the rotated k and of v): the rope_store
// variant, q's workgroups, then one per (token, KV head) row of k (rotated, then stored), then one per row of v;
// k and v in one window `kv` (binding 6, their byte offsets kv_byte), the caches at bindings 7 and 8, each store's
// first row as a lone KV_STORE takes it (its push constant, or its own device-read slot in a kept recording).
void dispatch_rope(vk_backend& be, const op* r, int parts, const binding* kv = nullptr,
                   const uint32_t* kv_byte = nullptr) {
    const op& o = r[0];
    const int n_rot = o.i[0];
    binding b[8] = {bind_whole(be, o.dst, "dst"), bind_whole(be, o.src[0], "src0"),
                    bind_whole(be, o.src[1], "src1 (positions)"), bind_whole(be, o.src[2], "src2 (freq factors)")};
    std::vector<uint32_t> table(static_cast<size_t>(n_rot));
    for (int j = 0; j < n_rot / 2; ++j) {
        const double w = double(o.f[1]) * std::pow(double(o.f[0]), -2.0 * j / n_rot);
        const float hi = float(w);
        const float lo = float(w - double(hi));
        table[size_t(2 * j)] = fbits(hi);
        table[size_t(2 * j + 1)] = fbits(lo);
    }
    // n, n_rot, neox, has_factors, pos_off, f_off, tab_off (dispatch fills it), groups0; then per part rows_t.
    std::vector<uint32_t> push = {uint32_t(o.src[0]->ne[2]), uint32_t(n_rot), o.i[1] == 2 ? 1u : 0u,
                                  o.src[2] ? 1u : 0u, b[2].word, b[3].word, 0u, 0u};
    uint64_t groups = 0;
    for (int p = 0; p < std::min(parts, 2); ++p) {
        const tensor& x = *r[p].src[0];
        const tensor& d = *r[p].dst;
        if (p == 1) {
            b[4] = bind_whole(be, &d, "dst (second ROPE)");
            b[5] = kv ? *kv : bind_whole(be, &x, "src0 (second ROPE)");
        }
        const binding& bd = b[p == 0 ? 0 : 4];
        const uint32_t x_word = p == 0 ? b[1].word : kv ? kv_byte[0] / 4 : b[5].word;
        push.insert(push.end(),
                    {uint32_t(x.ne[0]), uint32_t(x.ne[1]), x_word, words(x.nb[1]), bd.word, words(d.nb[1])});
        if (p == 0 || parts == 2) groups += ceil_div(uint64_t(n_rot / 2 + (x.ne[0] - n_rot)) * uint64_t(x.nrows()), 64);
        if (p == 0) push[7] = uint32_t(groups);
    }
    if (parts == 4) {
        const uint64_t rows = uint64_t(r[1].src[0]->nrows());  // (token, KV head) rows of k, and of v
        push.insert(push.end(), {uint32_t(groups + rows), uint32_t(r[2].dst->type)});  // groups1, ctype
        for (int p = 2; p < 4; ++p) {
            const tensor& c = *r[p].dst;
            binding& bc = b[p == 2 ? 6 : 7];
            bc = bind_whole(be, &c, p == 2 ? "dst (K cache)" : "dst (V cache)");
            const uint32_t dyn = be.dyn_slot();
            const uint64_t start = bc.byte + (dyn ? 0 : uint64_t(r[p].i[0]) * c.nb[1]);  // as dispatch_kv_store's
            push.insert(push.end(), {uint32_t(start), uint32_t(c.nb[1]), dyn});
        }
        push.insert(push.end(), {kv_byte[1] / 4, words(r[3].src[0]->nb[1])});
        groups += 2 * rows;
    }
    const char* shader = parts == 4 ? "rope_store" : parts == 2 ? "rope_pair" : "rope";
    be.dispatch(shader, {}, b, parts == 4 ? 8 : parts == 2 ? 6 : 4, std::move(push), groups, &table, 6);
}

// One thread per word of the stored byte range (kv_store.comp); f32 caches one per element. In a kept run
// (be.recording_kept()) the first row i0 is read on the device: start/end are passed for i0 = 0 and the launch
// covers the most words rows of this span can touch at any 2-byte aligned start (span / 4 + 2). parts = 2
// (record_fused: KV_STORE k, KV_STORE v into caches of one dtype): the kv_store_pair variant, k's workgroups then
// v's, the v cache and its source at bindings 5 and 6; each part sized as alone and with its own device-read slot
// (a kept run takes one per KV_STORE, in op order).
void dispatch_kv_store(vk_backend& be, const op* s, int parts) {
    binding b[6];
    std::vector<uint32_t> push = {uint32_t(s[0].dst->type), 0u};  // ctype, groups0; then per part part_t
    uint64_t groups = 0;
    for (int p = 0; p < parts; ++p) {
        const tensor& x = *s[p].src[0];
        const tensor& c = *s[p].dst;
        binding& bc = b[p == 0 ? 0 : 4];
        binding& bx = b[p == 0 ? 1 : 5];
        bc = bind_whole(be, &c, "dst (cache)");
        bx = bind_whole(be, &x, "src0");
        const uint32_t dyn = be.dyn_slot();
        const uint64_t start = bc.byte + (dyn ? 0 : uint64_t(s[p].i[0]) * c.nb[1]);
        const uint64_t span = uint64_t(x.nrows() - 1) * c.nb[1] + c.row_bytes();
        const uint64_t end = start + span;
        const uint64_t n_words = dyn ? span / 4 + 2 : ceil_div(end, 4) - start / 4;
        push.insert(push.end(), {uint32_t(x.ne[0]), uint32_t(start), uint32_t(end), uint32_t(c.nb[1]), bx.word,
                                 words(x.nb[1]), dyn});
        groups += ceil_div(n_words, 256);
        if (p == 0) push[1] = uint32_t(groups);
    }
    be.dispatch(parts == 2 ? "kv_store_pair" : "kv_store", {}, b, parts == 2 ? 6 : 2, std::move(push), groups);
}

// ---- MUL_MAT -------------------------------------------------------------------------------------------
//
// x of 1 .. k_mmv_max_cols columns: mul_mat_vec.comp, R rows of a matrix per slot sharing each load of x;
// one launch may hold up to 3 matrices of one x (Q/K/V) or gate/up with their SWIGLU (record_fused). More
// columns: mul_mat.comp, 64x64 to 128x128 output tiles (choose_mm_tile), k in steps of 32 through shared memory. A
// weight larger than one binding runs alone, one dispatch per row piece.

constexpr int64_t k_mmv_max_cols = 8;

// Rows of each matrix per slot for one column (R; 1 for more columns). More rows share each load of x, fewer give
// more workgroups in flight. On the H100 (NVIDIA's driver), 1B decode tg128 with 2 rows against 1 (2026-11-24,
// 128 threads, 2 units per step, calls 4 and 5): Q4_0 627 / 590, Q8_0 586 / 553, F16 511 / 493 t/s; an earlier
// shader with 4 rows was 26% slower than with 1 on F16. The shader keeps (GLU ? 2 : 1) * R * n <= 16 partial sums
// per thread. Env TFU_VK_MMV_ROWS=1|2|4 (read once).
// The int8 path (mul_mat_vec_i8) keeps 2 for Q4_0 and takes 1 for Q8_0 (its 34-byte blocks: 9 loads a lane each):
// H100 tg128, one call (2026-11-24), R = 2 / 1: 1B Q8_0 721.0 / 779.9, 1B Q4_0 906.7 / 910.1, 8B Q4_0 286.7 /
// 280.7 t/s (R = 4: 624.8, 827.2, 263.0).
uint32_t mmv_rows(int64_t n, bool glu, bool i8 = false, dtype t = dtype::F32) {
    static const char* env = std::getenv("TFU_VK_MMV_ROWS");
    static const uint32_t one_col = env_choice("TFU_VK_MMV_ROWS", {1, 2, 4}, 2);
    if (n != 1) return 1;
    if (i8 && t == dtype::Q8_0 && !(env && *env)) return 1;
    return glu ? std::min<uint32_t>(one_col, 2) : one_col;
}

// Units of 8 weights a thread loads before it computes on them (mul_mat_vec.comp's UG): more keep more bytes in
// flight per thread. 2 measured best on an H100 (kernels_vk/README.md). Env TFU_VK_MMV_UNITS=1|2|4 (read once).
uint32_t mmv_units_per_step() {
    static const uint32_t ug = env_choice("TFU_VK_MMV_UNITS", {1, 2, 4}, 2);
    return ug;
}

// One matrix of a mul_mat_vec launch: offsets into the launch's weight window (bytes) and result window (words).
struct mmv_matrix {
    uint32_t w_off, w_nb1, m, d_off, d_s;
};

// A mul_mat_vec launch's workgroup: `threads` threads, `slots` slots of R rows. Matrices of many rows (an output
// projection: at least k_mmv_slot_rows) take one slot per subgroup (no shared memory or barrier; enough rows to
// fill the device with subgroups); others all threads on one slot, WG threads (env TFU_VK_MMV_WG=64|128|256, read
// once; default 128: the fastest of the three on the H100, kernels_vk/README.md). Without subgroup arithmetic
// always one slot of 64 threads.
constexpr uint32_t k_mmv_slot_rows = 16384;
struct mmv_shape {
    uint32_t slots, threads;
};
mmv_shape mmv_shape_for(const vk_backend& be, const mmv_matrix* mats, int n_mat) {
    static const uint32_t wg = env_choice("TFU_VK_MMV_WG", {64, 128, 256}, 128);
    if (!be.subgroup_ops()) return {1, 64};
    uint32_t m = 0;
    for (int s = 0; s < n_mat; ++s) m = std::max(m, mats[s].m);
    const uint32_t sgs = std::max<uint32_t>(1, be.caps().subgroup_size);
    if (m >= k_mmv_slot_rows && sgs <= 64) return {64 / sgs, 64};
    return {1, wg};
}

// Whether a launch of `type` weights over k x n takes the int8 path (mul_mat_vec_i8: x quantized in shared memory,
// 40 bytes per block of 32 per column, packed int8 dot products): the types vk_backend::mmv_i8 allows, up to 4
// columns, x small enough for shared memory. Its workgroups hold mmv_i8_slots_per_subgroup() slots per subgroup.
// Shared memory of an int8-path launch over k x n: x quantized (40 bytes per block of 32 per column), the
// reductions' arrays (2304 bytes), and with KS > 1 the parts' sums (16 floats for each of ks_subgroups).
uint64_t mmv_i8_shared_bytes(int64_t k, int64_t n, uint32_t ks_subgroups = 0) {
    return uint64_t(n) * uint64_t(k / 32) * 40 + 2304 + uint64_t(ks_subgroups) * 16 * 4;
}
bool mmv_int8(const vk_backend& be, dtype type, int64_t k, int64_t n) {
    if (!be.mmv_i8(type) || k % 32 != 0 || n > 4) return false;
    return mmv_i8_shared_bytes(k, n) <= be.caps().max_shared_bytes;
}
// Slots per subgroup on the int8 path, for a launch that would have `groups` workgroups at one: more rows share
// one quantization of x, fewer give more workgroups. 2 where that still leaves at least 200 workgroups (the 8B
// model's gate/up and the output projections), else 1. H100 (2026-11-24, 128 and 256 threads, every launch): 1
// slot measured best overall (1B / 8B Q4_0 tg128 803 / 236 against 738 / 229 with 2). Per launch at 512 threads,
// 1 / 2 (2026-11-25, one call): 8B gate/up (448 workgroups at 1) 35.03 / 32.20 us, 8B output projection 119.4 /
// 118.1, 1B's 69.9 / 65.7; but 1B gate/up (256 at 1) 14.01 / 15.16, 8B wo/down (128) 16.0 / 22.4, 8B Q/K/V (192)
// 13.7 / 15.5. Env TFU_VK_MMV_I8_SLOTS=1|2|4 (read once) forces a count.
uint32_t mmv_i8_slots_per_subgroup(uint64_t groups) {
    static const uint32_t forced = env_choice("TFU_VK_MMV_I8_SLOTS", {1, 2, 4}, 0);
    return forced ? forced : groups >= 400 ? 2 : 1;
}
// Subgroups that share one slot's items on the int8 path (the shader's KS: each takes every KS-th run of L items,
// so its chain of dependent steps is KS times shorter, and the parts meet in shared memory): 2 for rows of at
// least 8192 weights (the feed-forward down projection), else 1. H100, per launch, KS 1 / 2 (2026-11-25, one
// call): 1B Q4_0 wo + down (k 2048, 8192) 10.01 / 8.59 us on average, 8B 16.01 / 15.09 (k 4096, 14336); but gate/up
// 14.0 / 17.8 (1B) and 35.0 / 37.1 us (8B), Q/K/V 8.5 / 9.0 (1B), the output projection 70 / 94 (1B): the shorter
// chains pay where the rows are long. Only where the workgroup's subgroups divide by it and the parts' sums fit
// the shared memory beside x. Env
// TFU_VK_MMV_I8_KSPLIT=1|2|4 (read once) forces a count.
uint32_t mmv_i8_ksplit(int64_t k) {
    static const uint32_t forced = env_choice("TFU_VK_MMV_I8_KSPLIT", {1, 2, 4}, 0);
    return forced ? forced : k >= 8192 ? 2 : 1;
}
// Threads of an int8-path workgroup (every matrix size, the output projection's too): more quantize x in fewer
// round trips each. H100, tg128 (2026-11-24): 64 / 128 / 256 threads (one call): 1B Q4_0 685 / 797 / 852, 8B Q4_0
// 162 / 233 / 265 t/s; 256 / 512 / 1024 (the next call): 1B Q4_0 895 / 891 / 842, 8B Q4_0 268 / 283 / 274. Env
// TFU_VK_MMV_I8_WG=128|256|512|1024 (read once), never above the device's maxComputeWorkGroupInvocations.
uint32_t mmv_i8_threads(const vk_backend& be) {
    static const uint32_t wg = env_choice("TFU_VK_MMV_I8_WG", {128, 256, 512, 1024}, 512);
    return std::min(wg, std::max<uint32_t>(128, be.caps().max_group_invocations));
}
// Loads of x (4 elements each) a lane of the int8 path has in flight while quantizing (and normalising) x (the
// shader's QX): the workgroup's x costs ceil(k / (4 QX threads)) round trips before its arithmetic. Env
// TFU_VK_MMV_I8_XLOADS=4|8 (read once).
uint32_t mmv_i8_x_loads() {
    static const uint32_t q = env_choice("TFU_VK_MMV_I8_XLOADS", {4, 8}, 4);
    return q;
}
// Blocks a lane loads per step on the int8 path (the shader's UG; its loads already run a step ahead). On the H100,
// tg128 with 1 against 2 (2026-11-24, one call): 1B Q4_0 773 / 729, 8B Q4_0 232 / 221, 1B Q8_0 683 / 623 t/s. Env
// TFU_VK_MMV_I8_UNITS=1|2 (read once).
uint32_t mmv_i8_units_per_step() {
    static const uint32_t ug = env_choice("TFU_VK_MMV_I8_UNITS", {1, 2}, 1);
    return ug;
}

// Records one mul_mat_vec dispatch of n_mat matrices (GLU: gate and up, n_mat = 2), their weights bound in bw and
// results in bd; glu_off/glu_s: where silu(gate) * up goes (words into bd).
// resid (one matrix): r and y bound (bindings 3 and 5) with their column strides in words, for y = r + d.
// norm (never with resid; on the unit path one slot per workgroup, see mmv_norm_fusable): x (bx) is the source of
// an RMS_NORM whose weight g (binding 3) and eps the launch applies (the int8 path before quantizing, the unit path
// as it loads x); workgroup 0 also stores the normalised x at xn (binding 5).
struct mmv_residual {
    binding r, y;
    uint32_t r_s, y_s;
};
struct mmv_norm {
    binding g, xn;
    uint32_t xn_s;
    float eps;
};
void dispatch_mmv(vk_backend& be, dtype type, int64_t k, const tensor& x, const binding& bw, const binding& bd,
                  const binding& bx, const mmv_matrix* mats, int n_mat, bool glu, uint32_t glu_off = 0,
                  uint32_t glu_s = 0, const mmv_residual* resid = nullptr, const mmv_norm* norm = nullptr) {
    const int64_t n = x.nrows();
    const bool sg = be.subgroup_ops();
    const bool i8 = mmv_int8(be, type, k, n);
    const uint32_t R = mmv_rows(n, glu, i8, type);
    mmv_shape sh = mmv_shape_for(be, mats, n_mat);
    TFU_CHECK(!norm || (!resid && (i8 || (sg && sh.slots == 1))));
    uint32_t ks = 1;
    if (i8) {
        sh.threads = mmv_i8_threads(be);
        const uint32_t subgroups = std::max<uint32_t>(1, sh.threads / std::max<uint32_t>(1, be.caps().subgroup_size));
        uint64_t groups_at_one = 0;  // workgroups with one slot per subgroup
        for (int s = 0; s < n_mat; ++s)
            if (!glu || s == 0) groups_at_one += ceil_div(mats[s].m, R * subgroups);
        const uint32_t per_subgroup = mmv_i8_slots_per_subgroup(groups_at_one);
        sh.slots = subgroups * per_subgroup;
        const uint32_t want_ks = mmv_i8_ksplit(k);
        if (want_ks > 1 && per_subgroup == 1 && subgroups % want_ks == 0 &&
            mmv_i8_shared_bytes(k, n, subgroups) <= be.caps().max_shared_bytes) {
            ks = want_ks;
            sh.slots = subgroups / ks;
        }
    }
    std::vector<uint32_t> push = {uint32_t(k), uint32_t(n_mat), bx.word, words(x.nb[1])};
    push.resize(4 + 6 * 3 + 2, 0);
    uint64_t groups = 0;
    for (int s = 0; s < 3; ++s) {
        if (s < n_mat) {
            push[size_t(4 + s)] = mats[s].w_off;
            push[size_t(7 + s)] = mats[s].w_nb1;
            push[size_t(10 + s)] = mats[s].m;
            push[size_t(13 + s)] = mats[s].d_off;
            push[size_t(16 + s)] = mats[s].d_s;
            if (!glu || s == 0) groups += ceil_div(mats[s].m, R * sh.slots);
        }
        push[size_t(19 + s)] = uint32_t(groups);
    }
    push[22] = glu_off;
    push[23] = glu_s;
    binding b[5] = {bd, bw, bx};
    if (resid) {
        b[3] = resid->r;
        b[4] = resid->y;
        push.insert(push.end(), {resid->r.word, resid->r_s, resid->y.word, resid->y_s});
    } else if (norm) {
        b[3] = norm->g;
        b[4] = norm->xn;
        push.insert(push.end(), {norm->g.word, 0u, norm->xn.word, norm->xn_s, fbits(norm->eps)});
    }
    be.dispatch(i8 ? "mul_mat_vec_i8" : sg ? "mul_mat_vec_subgroup" : "mul_mat_vec",
                {uint32_t(type), uint32_t(n), R, glu ? 1u : 0u, i8 ? mmv_i8_units_per_step() : mmv_units_per_step(),
                 sh.slots, sh.threads, resid ? 1u : 0u, i8 ? uint32_t(k / 32) : 1u, norm ? 1u : 0u,
                 i8 ? mmv_i8_x_loads() : 4u, ks},
                b, resid || norm ? 5 : 3, std::move(push), groups);
}

// The matrix-matrix shader variant for an m x n product and its tile (rows x columns per workgroup). Larger tiles
// give each thread more outputs (fewer shared-memory reads per FMA; each decoded weight serves more columns), but
// fewer workgroups: the largest of 128x128 (8x8 per thread) and 64x128 (4x8) that still makes >= 256 workgroups,
// enough to fill a large GPU (an H100 has 132 SMs), else 64x64. 64x128 before 128x64: the weight tile is the one
// that costs decoding. TFU_VK_MM_TILE = 64, 128 (128x64), 64x128, 128x128 forces one, 32 the first 32x32 shader
// (mul_mat_32.comp), for comparisons.
struct mm_tile {
    const char* shader;
    uint64_t rows, cols;
};
mm_tile choose_mm_tile(uint64_t m, uint64_t n) {
    static const mm_tile tiles[] = {{"mul_mat_32", 32, 32}, {"mul_mat", 64, 64}, {"mul_mat_l", 128, 64},
                                    {"mul_mat_w", 64, 128}, {"mul_mat_xl", 128, 128}};
    static const char* const names[] = {"32", "64", "128", "64x128", "128x128"};
    if (const char* env = std::getenv("TFU_VK_MM_TILE")) {  // read per dispatch (tests switch it): ~0.1 us of ~1 us
        for (size_t i = 0; i < 5; ++i)
            if (std::strcmp(env, names[i]) == 0) return tiles[i];
    }
    for (size_t i : {4, 3})
        if (ceil_div(m, tiles[i].rows) * ceil_div(n, tiles[i].cols) >= 256) return tiles[i];
    return tiles[1];
}

// Tensor cores (shaders/mul_mat_cm.comp; device_caps::coopmat): x of at least k_cm_min_cols columns and a weight
// that is not F32. Below 32 columns most of a 64-column tile would be padding, and 9..31 columns are few enough
// that the f32 shader's cost is small (a measure-free rule: the smallest coopmat tile is 64 columns wide, half of
// it filled at 32). F32 weights keep f32 arithmetic: rounding them to fp16 would throw away what the file asked
// for (and test_ops holds F32 MUL_MAT to 1e-5); the shader takes them when a tile is forced. Tiles by
// the same rule as choose_mm_tile: the largest of 128x128 and 64x128 that makes >= 256 workgroups and fits the
// device's shared memory, else 64x64. The variant name adds "_n8" where the device lists 16x8x16 but not 16x16x16.
// TFU_VK_MM_TILE = cm64, cm64x128, cm128x128 forces one (on a device with coopmat); any other TFU_VK_MM_TILE value
// forces that f32 tile instead (comparisons), TFU_VK_COOPMAT=0 (read at backend creation) turns the path off.
// TFU_VK_COOPMAT=emulate (tests) takes the same decisions but always runs the emulated 64x64 tile.
constexpr uint64_t k_cm_min_cols = 32;

struct cm_tile {
    const char* shader;  // without the fragment suffix
    uint64_t rows, cols;
};
// Shared memory of mul_mat_cm.comp: buffers x (rows + columns) x (TK + 8) halves (the results leave through them).
uint64_t cm_shared_bytes(uint64_t rows, uint64_t cols, uint64_t tk = 32, uint64_t buffers = 2) {
    return buffers * (rows + cols) * (tk + 8) * 2;
}

// Whether the coopmat shader takes this product, and which tile (false: the f32 shader, choose_mm_tile).
bool choose_cm_tile(const device_caps& caps, dtype type, uint64_t m, uint64_t n, std::string* shader, uint64_t* rows,
                    uint64_t* cols) {
    static const cm_tile tiles[] = {{"mul_mat_cm", 64, 64}, {"mul_mat_cm_w", 64, 128}, {"mul_mat_cm_xl", 128, 128}};
    static const char* const names[] = {"cm64", "cm64x128", "cm128x128"};
    static const cm_tile emulated = {"mul_mat_cm_emu", 64, 64};  // lavapipe's 32 KiB of shared memory: 64x64 only
    if (!caps.coopmat) return false;
    const cm_tile* pick = nullptr;
    if (const char* env = std::getenv("TFU_VK_MM_TILE"); env && *env) {
        for (size_t i = 0; i < 3; ++i)
            if (std::strcmp(env, names[i]) == 0) pick = &tiles[i];
        if (!pick) return false;  // an f32 tile forced
        if (!caps.coopmat_emulated && cm_shared_bytes(pick->rows, pick->cols) > caps.max_shared_bytes) pick = nullptr;
    }
    if (!pick) {
        if (n < k_cm_min_cols || type == dtype::F32) return false;
        pick = &tiles[0];
        for (size_t i : {2, 1})
            if (ceil_div(m, tiles[i].rows) * ceil_div(n, tiles[i].cols) >= 256 &&
                cm_shared_bytes(tiles[i].rows, tiles[i].cols) <= caps.max_shared_bytes) {
                pick = &tiles[i];
                break;
            }
    }
    if (caps.coopmat_emulated) pick = &emulated;
    *shader = std::string(pick->shader) + (caps.coopmat_n == 8 ? "_n8" : "");
    *rows = pick->rows;
    *cols = pick->cols;
    return true;
}

// The step of k on the tensor cores: choose_cm_tile's shader, or its _k64 variant (mul_mat_cm.comp TK = 64: per
// barrier twice the fragment products while the next step's loads are in flight; 64x64 double buffered, 64x128
// and 128x128 single buffered, 36 / 27 / 36 KiB of shared memory) where k is a multiple of 64, the fragments are
// 16x16x16 and the shared memory fits. H100, 8B Q4_0 pp512 (2026-11-25, one call): 7351 -> 7894 t/s; per launch
// wo/down 370 -> 301 us, Q/K/V 274 -> 209 us (64x128), but the 128x128 tile took 150 registers at 64 (one
// workgroup per SM) and its gate/up launch 908 -> 946 us, so that tile keeps 32. Emulated (tests): the 64x64 tile
// single buffered (18 KiB, lavapipe's 32 KiB). Env TFU_VK_CM_K64=0 (read per call) keeps 32 everywhere, =all takes
// 64 on the 128x128 tile too (comparisons).
std::string cm_k64(const device_caps& caps, const std::string& shader, uint64_t rows, uint64_t cols, uint64_t k) {
    const char* env = std::getenv("TFU_VK_CM_K64");
    const bool off = env && std::strcmp(env, "0") == 0, all = env && std::strcmp(env, "all") == 0;
    if (off || k % 64 != 0 || caps.coopmat_n != 16 || (rows == 128 && cols == 128 && !all)) return shader;
    const uint64_t buffers = caps.coopmat_emulated || cols == 128 ? 1 : 2;
    if (!caps.coopmat_emulated && cm_shared_bytes(rows, cols, 64, buffers) > caps.max_shared_bytes) return shader;
    return shader + "_k64";
}

// mul_mat_cm.comp's X16 form (mul_mat_cm_x16.comp first writes x as fp16 in the tiles' order into the scratch):
// the scratch bytes MUL_MAT o needs for it, 0 where it is not taken. Taken by every product on the
// cooperative-matrix shader unless env TFU_VK_CM_X16=0 (read per call, for comparisons): x is read by every
// workgroup of a row of tiles, so halving its bytes and converting it once pays for the extra launch.
// ku: 16-byte units per column (k rounded up to a step of 32).
uint64_t cm_x16_bytes(const vk_backend& be, const op& o, uint32_t* ku = nullptr) {
    if (o.type != op_type::MUL_MAT) return 0;
    const tensor& w = *o.src[0];
    const uint64_t n = uint64_t(o.src[1]->nrows());
    std::string shader;
    uint64_t rows = 0, cols = 0;
    if (n <= uint64_t(k_mmv_max_cols) || !choose_cm_tile(be.caps(), w.type, uint64_t(w.ne[1]), n, &shader, &rows, &cols))
        return 0;
    if (const char* env = std::getenv("TFU_VK_CM_X16"); env && std::strcmp(env, "0") == 0) return 0;
    const uint64_t units = ceil_div(uint64_t(w.ne[0]), 32) * 4;
    if (n * units * 16 > be.max_binding()) return 0;  // the scratch is one binding: x stays f32 then
    if (ku) *ku = uint32_t(units);
    return n * units * 16;
}

// X16: MUL_MAT o's x (bound as bx) once as fp16 into the scratch, for the coopmat launches that follow (they read
// it with x_off 0 and x_s = *ku vectors). False (nothing recorded) where o does not take it (cm_x16_bytes).
bool dispatch_cm_x16(vk_backend& be, const op& o, const binding& bx, binding* bx16, uint32_t* ku) {
    const uint64_t bytes = cm_x16_bytes(be, o, ku);
    if (!bytes) return false;
    const tensor& x = *o.src[1];
    *bx16 = be.scratch(bytes);
    const binding b[3] = {*bx16, bx, bx};
    be.dispatch("mul_mat_cm_x16", {uint32_t(o.src[0]->type)}, b, 3,
                {uint32_t(o.src[0]->ne[0]), uint32_t(x.nrows()), *ku, bx.word, words(x.nb[1])},
                ceil_div(uint64_t(x.nrows()) * *ku, 256));
    return true;
}

void record_mul_mat(vk_backend& be, const op& o) {
    const tensor& w = *o.src[0];
    const tensor& x = *o.src[1];
    const tensor& d = *o.dst;
    const uint64_t n = uint64_t(x.nrows());
    const binding bd = bind_whole(be, &d, "dst"), bx = bind_whole(be, &x, "src1");
    uint32_t ku = 0;
    binding bx16{};
    const bool x16 = dispatch_cm_x16(be, o, bx, &bx16, &ku);
    for (row_piece p : split_rows(w, be.max_binding(), be.caps().storage_offset_align)) {
        const binding bw = bind_rows(be, w, p);
        const uint64_t m = uint64_t(p.hi - p.lo);
        if (n <= uint64_t(k_mmv_max_cols)) {
            const mmv_matrix mat = {bw.byte, uint32_t(w.nb[1]), uint32_t(m), bd.word + uint32_t(p.lo), words(d.nb[1])};
            dispatch_mmv(be, w.type, w.ne[0], x, bw, bd, bx, &mat, 1, false);
            continue;
        }
        std::string cm_shader;
        mm_tile tile{};
        const bool cm = choose_cm_tile(be.caps(), w.type, m, n, &cm_shader, &tile.rows, &tile.cols);
        if (cm) {
            cm_shader = cm_k64(be.caps(), cm_shader, tile.rows, tile.cols, uint64_t(w.ne[0]));
            tile.shader = cm_shader.c_str();
        }
        else tile = choose_mm_tile(m, n);
        const bool from_x16 = cm && x16;
        const binding b[3] = {bd, bw, from_x16 ? bx16 : bx};
        std::vector<uint32_t> spec = {uint32_t(w.type)};
        if (cm) spec.push_back(from_x16 ? 1u : 0u);
        be.dispatch(tile.shader, spec, b, 3,
                    {uint32_t(w.ne[0]), uint32_t(m), uint32_t(n), bw.byte, uint32_t(w.nb[1]),
                     from_x16 ? 0u : bx.word, from_x16 ? ku : words(x.nb[1]), bd.word + uint32_t(p.lo),
                     words(d.nb[1])},
                    ceil_div(m, tile.rows) * ceil_div(n, tile.cols));
    }
}

// ---- fused matrix-vector launches -------------------------------------------------------------------------

bool overlaps(const tensor& a, const tensor& b) { return tensors_overlap(a, b); }

// Whether w is bound whole by one window (a weight that needs row pieces is never fused).
bool weight_whole(const vk_backend& be, const tensor& w) {
    return extent(w) + be.caps().storage_offset_align + 4 <= be.max_binding();
}

// Whether split_rows gives w one piece (one dispatch); the same arithmetic, without the vector.
bool one_piece(const vk_backend& be, const tensor& w) {
    const uint64_t rows_per = std::max<uint64_t>(1, (be.max_binding() - be.caps().storage_offset_align) / w.nb[1]);
    return uint64_t(w.ne[1]) <= rows_per;
}

// ops[i] is a MUL_MAT that can join ops[0]'s launch: the same x (same memory and shape), the same weight type and
// k, a weight bound whole, and a result that overlaps neither x, nor an earlier result, nor a weight of the launch
// (so that running them together is the same as running them in order).
bool joins(const vk_backend& be, const op* ops, size_t i) {
    const op& a = ops[0];
    const op& b = ops[i];
    if (b.type != op_type::MUL_MAT) return false;
    const tensor& x = *a.src[1];
    const tensor& y = *b.src[1];
    if (y.data != x.data || y.nb[1] != x.nb[1] || y.ne[0] != x.ne[0] || y.nrows() != x.nrows()) return false;
    if (b.src[0]->type != a.src[0]->type || b.src[0]->ne[0] != a.src[0]->ne[0] || !weight_whole(be, *b.src[0]))
        return false;
    if (overlaps(*b.dst, x)) return false;
    for (size_t j = 0; j <= i; ++j) {
        if (j < i && overlaps(*b.dst, *ops[j].dst)) return false;
        if (overlaps(*b.dst, *ops[j].src[0]) || overlaps(*ops[j].dst, *b.src[0])) return false;
    }
    return true;
}

// One window over tensors of one chunk: the bytes [lo, hi) they span must fit one binding. Returns false (and
// binds nothing) when they lie in different chunks or span too much; byte_of[i] is tensor i's byte offset in it.
bool bind_together(vk_backend& be, const tensor* const* ts, size_t n, const char* what, binding* out,
                   uint32_t* byte_of) {
    location loc[4];
    uint64_t lo = UINT64_MAX, hi = 0;
    for (size_t i = 0; i < n; ++i) {
        loc[i] = be.locate(ts[i]->data, extent(*ts[i]), what);
        if (loc[i].chunk != loc[0].chunk) return false;
        lo = std::min(lo, loc[i].offset);
        hi = std::max(hi, loc[i].offset + extent(*ts[i]));
    }
    const uint64_t align = be.caps().storage_offset_align;
    if ((hi + 3) / 4 * 4 - lo / align * align > be.max_binding()) return false;
    *out = be.bind_chunk(loc[0].chunk, lo, hi - lo, what);
    for (size_t i = 0; i < n; ++i) byte_of[i] = uint32_t(loc[i].offset - out->offset);
    return true;
}

// GLU: ops[0..2] are MUL_MAT gate, MUL_MAT up (same x and shape) and SWIGLU(dst, gate, up) over their results;
// its dst is gate's (in place) or memory that touches no operand of the launch.
bool glu_pattern(const vk_backend& be, const op* ops, size_t n_ops) {
    if (n_ops < 3 || !joins(be, ops, 1) || ops[1].src[0]->ne[1] != ops[0].src[0]->ne[1]) return false;
    const op& g = ops[2];
    if (g.type != op_type::SWIGLU) return false;
    const tensor& gd = *ops[0].dst;
    const tensor& ud = *ops[1].dst;
    const tensor& x = *ops[0].src[1];
    const bool same_shape = g.src[0]->data == gd.data && g.src[1]->data == ud.data && g.src[0]->nb[1] == gd.nb[1] &&
                            g.src[1]->nb[1] == ud.nb[1] && g.src[0]->ne[0] == gd.ne[0] &&
                            g.src[0]->nrows() == gd.nrows() && g.src[1]->nrows() == gd.nrows();
    if (!same_shape) return false;
    const tensor& od = *g.dst;
    const bool in_place = od.data == gd.data && od.nb[1] == gd.nb[1];
    return !overlaps(od, x) && !overlaps(od, ud) && (in_place || !overlaps(od, gd)) && !overlaps(od, *ops[0].src[0]) &&
           !overlaps(od, *ops[1].src[0]);
}

// Matrices of one x for one launch, mul_mat_vec's or mul_mat_cm's: ops[0] and up to 2 MUL_MATs after it that join,
// as many as have their weights in one window (bw) and their results in another (bd): fewer where their memory does
// not fit shared windows (weights in different chunks). Fills ws, ds and mats (offsets into the windows) and
// returns the count; below 2, nothing is bound.
size_t join_shared_x(vk_backend& be, const op* ops, size_t n_ops, const tensor** ws, const tensor** ds, binding* bw,
                     binding* bd, mmv_matrix* mats) {
    size_t n_mat = 1;
    ws[0] = ops[0].src[0];
    ds[0] = ops[0].dst;
    while (n_mat < 3 && n_mat < n_ops && joins(be, ops, n_mat)) {
        ws[n_mat] = ops[n_mat].src[0];
        ds[n_mat] = ops[n_mat].dst;
        ++n_mat;
    }
    uint32_t w_byte[3], d_byte[3];
    for (; n_mat >= 2; --n_mat)
        if (bind_together(be, ws, n_mat, "weights sharing x", bw, w_byte) &&
            bind_together(be, ds, n_mat, "results sharing x", bd, d_byte))
            break;
    for (size_t i = 0; i < n_mat && n_mat >= 2; ++i)
        mats[i] = {w_byte[i], uint32_t(ws[i]->nb[1]), uint32_t(ws[i]->ne[1]), d_byte[i] / 4, words(ds[i]->nb[1])};
    return n_mat;
}

// Whether a mul_mat_vec launch of `type` weights over k x n, whose largest matrix has `rows` rows, can apply an
// RMS_NORM of x itself (mmv_norm): on the int8 path; or on the unit path (mul_mat_vec.comp UNIT_NORM) with subgroup
// arithmetic, one slot per workgroup (rows below k_mmv_slot_rows), a type with units and k a multiple of 8 (no
// element tail). Before matrices of many rows (the output projection) the norm stays apart: each of their many
// workgroups would normalise x again (H100, 1B Q4_0: 96 -> 127 us for a 5 us RMS_NORM launch saved).
bool mmv_norm_fusable(const vk_backend& be, dtype type, int64_t k, int64_t n, uint32_t rows) {
    if (rows >= k_mmv_slot_rows) return false;
    if (mmv_int8(be, type, k, n)) return true;
    const bool unit_type = type == dtype::F32 || type == dtype::F16 || type == dtype::BF16 || type == dtype::Q4_0 ||
                           type == dtype::Q8_0 || type == dtype::Q4_K || type == dtype::Q6_K;
    return be.subgroup_ops() && be.caps().subgroup_size_min >= 2 && unit_type && k % 8 == 0;
}

// record_fused for a MUL_MAT first: Q/K/V or gate/up + SWIGLU in one mul_mat_vec launch (vk_ops.h). With nrm, an
// RMS_NORM(xn, src, g) just before ops whose x is xn: the launch normalises src itself (mmv_norm), if
// mmv_norm_fusable, on the unit path the norm's weight sits at a multiple of 16 bytes of its binding (vector loads),
// and the launch's writes (xn, the results) reach neither src nor g, which other workgroups still read, and the
// results not xn; else 0 (nothing recorded). Returns the ops computed (without the RMS_NORM).
size_t record_fused_mmv(vk_backend& be, const op* ops, size_t n_ops, const op* nrm = nullptr) {
    if (ops[0].src[1]->nrows() > k_mmv_max_cols) return 0;
    const tensor& w = *ops[0].src[0];
    const tensor& x = *ops[0].src[1];
    if (!weight_whole(be, w) || overlaps(*ops[0].dst, x) || overlaps(*ops[0].dst, w)) return 0;
    if (nrm && !mmv_norm_fusable(be, w.type, w.ne[0], x.nrows(), uint32_t(w.ne[1]))) return 0;
    const tensor* ws[3] = {&w};
    const tensor* ds[4] = {ops[0].dst};
    uint32_t w_byte[3], d_byte[4];  // the GLU and single-matrix plans' window offsets (join_shared_x keeps its own)
    binding bw, bd;
    mmv_matrix mats[3];
    auto matrix = [&](int s) {
        const op& o = ops[s];
        return mmv_matrix{w_byte[s], uint32_t(o.src[0]->nb[1]), uint32_t(o.src[0]->ne[1]), d_byte[s] / 4,
                          words(o.dst->nb[1])};
    };
    // The launch's plan: gate/up + SWIGLU, or n_mat matrices of x, or one matrix (with a residual ADD, or not).
    size_t n_mat = 1, used = 1;
    bool glu = false;
    const tensor* r = nullptr;
    if (glu_pattern(be, ops, n_ops)) {
        ws[1] = ops[1].src[0];
        ds[1] = ops[1].dst;
        ds[2] = ops[2].dst;
        glu = bind_together(be, ws, 2, "gate/up weights", &bw, w_byte) &&
              bind_together(be, ds, 3, "gate/up/swiglu results", &bd, d_byte);
        if (glu) {
            n_mat = 2, used = 3;
            mats[0] = matrix(0), mats[1] = matrix(1);
        }
    }
    if (!glu) {
        n_mat = join_shared_x(be, ops, n_ops, ws, ds, &bw, &bd, mats);
        used = n_mat;
        if (n_mat == 1) {
            // One matrix and the residual ADD of its result (backend/fused_residual.h): the launch stores y too.
            // Not after a fused RMS_NORM (the two share bindings 3 and 5); one matrix alone then.
            r = !nrm && n_ops >= 2 ? projection_residual(ops[0], ops[1]) : nullptr;
            if (!r && !nrm) return 0;
            bw = bind_whole(be, &w, "src0");
            bd = bind_whole(be, ops[0].dst, "dst");
            w_byte[0] = bw.byte;
            d_byte[0] = bd.byte;
            mats[0] = matrix(0);
        }
    }
    mmv_norm norm{};
    if (nrm) {
        const tensor& src = *nrm->src[0];
        const tensor& g = *nrm->src[1];
        const tensor& xn = *nrm->dst;
        if (overlaps(xn, src) || overlaps(xn, g)) return 0;
        uint32_t rows = 0;
        for (size_t i = 0; i < n_mat; ++i) rows = std::max(rows, mats[i].m);
        if (!mmv_norm_fusable(be, w.type, w.ne[0], x.nrows(), rows)) return 0;  // a joined matrix of many rows
        for (size_t i = 0; i < used; ++i)
            if (overlaps(*ops[i].dst, src) || overlaps(*ops[i].dst, g) || overlaps(*ops[i].dst, xn)) return 0;
        norm = {bind_whole(be, &g, "src1 (RMS_NORM weight)"), bind_whole(be, &xn, "dst (RMS_NORM)"), words(xn.nb[1]),
                nrm->f[0]};
        if (norm.g.word % 4 != 0 && !mmv_int8(be, w.type, w.ne[0], x.nrows())) return 0;  // the unit path's vec4 loads
    }
    // What the launch reads as x: the norm's source (its own row stride) when the norm is fused.
    const tensor& xin = nrm ? *nrm->src[0] : x;
    const binding bx = bind_whole(be, &xin, "src1");
    if (glu) {
        dispatch_mmv(be, w.type, w.ne[0], xin, bw, bd, bx, mats, 2, true, d_byte[2] / 4, words(ops[2].dst->nb[1]),
                     nullptr, nrm ? &norm : nullptr);
        return used;
    }
    if (r) {
        const tensor& y = *ops[1].dst;
        const mmv_residual res = {bind_whole(be, r, "src (residual ADD)"), bind_whole(be, &y, "dst (residual ADD)"),
                                  words(r->nb[1]), words(y.nb[1])};
        dispatch_mmv(be, w.type, w.ne[0], x, bw, bd, bx, mats, 1, false, 0, 0, &res);
        return 2;
    }
    dispatch_mmv(be, w.type, w.ne[0], xin, bw, bd, bx, mats, int(n_mat), false, 0, 0, nullptr, nrm ? &norm : nullptr);
    return used;
}

// Prefill products of one x on the tensor-core shader as one launch (mul_mat_cm.comp's matrices 1 and 2): ops[0..]
// MUL_MATs of more than 8 columns that join (joins: the same x, weight type and k, results apart from x, weights and
// each other), weights in one window and results in another (bind_together), 2 or 3 of them (Q/K/V, gate/up; the
// SWIGLU after gate/up stays its own launch). The launch's rows of tiles run over the matrices in turn, with the
// tile the summed rows would get, and x goes to fp16 once for all of them: the small K/V products (1024 rows by
// 512 columns on the 8B model, 128 workgroups of 64x64 alone) fill the device with Q's. Returns the ops recorded,
// 0 when it does not apply.
size_t record_fused_cm(vk_backend& be, const op* ops, size_t n_ops) {
    const tensor& w = *ops[0].src[0];
    const tensor& x = *ops[0].src[1];
    const uint64_t n = uint64_t(x.nrows());
    if (n <= uint64_t(k_mmv_max_cols) || !weight_whole(be, w) || overlaps(*ops[0].dst, x) || overlaps(*ops[0].dst, w))
        return 0;
    const tensor* ws[3];
    const tensor* ds[3];
    binding bw, bd;
    mmv_matrix mats[3] = {};
    const size_t n_mat = join_shared_x(be, ops, n_ops, ws, ds, &bw, &bd, mats);
    if (n_mat < 2) return 0;
    uint64_t m_sum = 0;
    for (size_t i = 0; i < n_mat; ++i) m_sum += mats[i].m;
    std::string shader;
    mm_tile tile{};
    if (!choose_cm_tile(be.caps(), w.type, m_sum, n, &shader, &tile.rows, &tile.cols)) return 0;
    const binding bx = bind_whole(be, &x, "src1");
    uint32_t ku = 0;
    binding bx16{};
    const bool x16 = dispatch_cm_x16(be, ops[0], bx, &bx16, &ku);
    // mul_mat_cm.comp's push constants: matrix 0 in mul_mat.comp's layout, n_mat, then matrices 1 and 2.
    std::vector<uint32_t> push = {uint32_t(w.ne[0]), mats[0].m, uint32_t(n), mats[0].w_off, mats[0].w_nb1,
                                  x16 ? 0u : bx.word, x16 ? ku : words(x.nb[1]), mats[0].d_off, mats[0].d_s,
                                  uint32_t(n_mat)};
    uint64_t tiles_m = 0;
    for (size_t i = 0; i < 3; ++i) {
        if (i > 0) push.insert(push.end(), {mats[i].m, mats[i].w_off, mats[i].w_nb1, mats[i].d_off, mats[i].d_s});
        tiles_m += ceil_div(uint64_t(mats[i].m), tile.rows);  // 0 rows past n_mat
    }
    const binding b[3] = {bd, bw, x16 ? bx16 : bx};
    shader = cm_k64(be.caps(), shader, tile.rows, tile.cols, uint64_t(w.ne[0]));
    be.dispatch(shader.c_str(), {uint32_t(w.type), x16 ? 1u : 0u}, b, 3, push, tiles_m * ceil_div(n, tile.cols));
    return n_mat;
}

// record_fused for an RMS_NORM first: the norm inside the int8 matrix-vector launch of the MUL_MATs after it
// that read its result (record_fused_mmv's nrm); those ops' x must be the norm's dst itself (same memory and
// shape). Returns the ops computed with the RMS_NORM, 0 when it does not apply.
size_t record_fused_norm_mmv(vk_backend& be, const op* ops, size_t n_ops) {
    if (n_ops < 2 || ops[1].type != op_type::MUL_MAT) return 0;
    const tensor& xn = *ops[0].dst;
    const tensor& x = *ops[1].src[1];
    const tensor& src = *ops[0].src[0];
    if (x.data != xn.data || x.nb[1] != xn.nb[1] || x.ne[0] != xn.ne[0] || x.nrows() != xn.nrows()) return 0;
    if (src.ne[0] != xn.ne[0] || src.nrows() != xn.nrows() || ops[0].src[1]->ne[0] != xn.ne[0]) return 0;
    const size_t used = record_fused_mmv(be, ops + 1, n_ops - 1, &ops[0]);
    return used ? used + 1 : 0;
}

// ---- fused row-wise launches -----------------------------------------------------------------------------

// ROPE q, ROPE k, KV_STORE k, KV_STORE v as one rope_store launch (dispatch_rope, parts 4): the shared rule
// (backend/fused_pairs.h; a kept recording stores anywhere in the caches, and 16-bit caches are written as whole
// words), and what the shader's k and v groups need: a head row of at most 256 floats (the k row kept in shared
// memory) that is whole 32-bit words of each cache (f32, or an even head size with 4-byte aligned cache rows at
// any first row), so that a group's words hold nothing of another row. k and v must also share a window
// (bind_together, at the call).
bool rope_store_ok(const vk_backend& be, const op* ops) {
    if (!rope_store_fusable(ops, 4, be.recording_kept())) return false;
    const int64_t hd = ops[1].dst->ne[0];
    if (hd > 256) return false;
    for (int p = 2; p < 4; ++p) {
        const tensor& c = *ops[p].dst;
        if (c.type != dtype::F32 &&
            (hd % 2 != 0 || c.nb[1] % 4 != 0 || reinterpret_cast<uintptr_t>(c.data) % 4 != 0))
            return false;
    }
    return true;
}

}  // namespace

// Row-wise pairs: two ops of a decoder layer in one dispatch (no global barrier between them) under the rules of
// backend/fused_pairs.h (the CUDA backend's too), each launch a variant of the ops' own shader source, so the
// results are bit-identical; ROPE q + k followed by the KV_STORE pair of the rotated k and v, all four in one.
// kv_store.comp writes whole 32-bit words; in a kept recording each KV_STORE reads its own i[0] on the device, so
// a replay may store anywhere in the caches.
size_t record_fused(vk_backend& be, const op* ops, size_t n_ops) {
    if (n_ops < 2) return 0;
    switch (ops[0].type) {
        case op_type::MUL_MAT: {
            const size_t used = record_fused_mmv(be, ops, n_ops);
            return used ? used : record_fused_cm(be, ops, n_ops);
        }
        case op_type::RMS_NORM: return record_fused_norm_mmv(be, ops, n_ops);
        case op_type::ADD:
            if (!add_rms_norm_fusable(ops[0], ops[1])) return 0;
            dispatch_rms_norm(be, ops[1], &ops[0]);
            return 2;
        case op_type::ROPE: {
            if (!rope_pair_fusable(ops[0], ops[1])) return 0;
            binding kv;
            uint32_t kv_byte[2];
            if (n_ops >= 4 && rope_store_ok(be, ops)) {
                const tensor* kx[2] = {ops[1].src[0], ops[3].src[0]};  // k (rotated by the launch) and v
                if (bind_together(be, kx, 2, "k and v of rope_store", &kv, kv_byte)) {
                    dispatch_rope(be, ops, 4, &kv, kv_byte);
                    return 4;
                }
            }
            dispatch_rope(be, ops, 2);
            return 2;
        }
        case op_type::KV_STORE:
            if (!kv_store_pair_fusable(ops[0], ops[1], 4, be.recording_kept())) return 0;
            dispatch_kv_store(be, ops, 2);
            return 2;
        default: return 0;
    }
}

namespace {

// Split-K target (attention_splits, vk_ops.h; the rule is backend/attention_split.h's): 1024 workgroups, 8 x 128
// compute units (core Vulkan reports no count; an H100 has 132 SMs, CUDA's rule aims at 8 per SM).
constexpr int64_t k_split_target = 1024;

// Rows per lane group per step of attention_lanes (its U: the K and V loads a lane issues together). Env
// TFU_VK_ATTN_ROWS=1|2|4|8 (read per call: tests switch it), default 4.
uint32_t attention_lane_rows() {
    return env_choice("TFU_VK_ATTN_ROWS", {1, 2, 4, 8}, 4);
}

// attention_lanes.comp's MAX_SG (the most subgroups in a workgroup of 128) and its shared arrays' bytes (sm_m,
// sm_l, sm_acc) with gq heads per workgroup of head size hd.
uint32_t attention_lanes_max_sg(const device_caps& caps) { return 128 / std::max<uint32_t>(4, caps.subgroup_size_min); }
uint64_t attention_lanes_shared(const device_caps& caps, uint32_t gq, uint64_t hd) {
    return uint64_t(attention_lanes_max_sg(caps)) * gq * (2 + hd) * 4;
}

// Whether attention_lanes.comp takes ATTENTION o with K and V bound at bk, bv: f16/bf16 caches whose head rows are
// 16-byte aligned at any row (binding offset, row stride and head size multiples of 16 bytes), a head of 8 LPR
// channels with LPR a power of 2 that fits the narrowest subgroup, subgroup shuffles, and its shared arrays within
// the device's. Env TFU_VK_ATTN_LANES=0 (read per call) keeps attention.comp.
bool attention_lanes_ok(const vk_backend& be, const op& o, const binding& bk, const binding& bv) {
    if (const char* env = std::getenv("TFU_VK_ATTN_LANES"); env && std::strcmp(env, "0") == 0) return false;
    const device_caps& caps = be.caps();
    if (!be.subgroup_ops() || !caps.subgroup_shuffle || caps.subgroup_size_min < 4) return false;
    const uint64_t hd = uint64_t(o.src[0]->ne[0]), lpr = hd / 8;
    if (hd % 8 != 0 || hd > 256 || (lpr & (lpr - 1)) != 0 || lpr > caps.subgroup_size_min) return false;
    for (const tensor* c : {o.src[1], o.src[2]})
        if ((c->type != dtype::F16 && c->type != dtype::BF16) || c->nb[1] % 16 != 0) return false;
    if (bk.byte % 16 != 0 || bv.byte % 16 != 0) return false;
    return attention_lanes_shared(caps, 1, hd) <= caps.max_shared_bytes;
}

// Query heads per attention_lanes workgroup (its GQ): heads of one KV head that share each K and V row the
// workgroup loads. 4 (or the largest power of 2 dividing the group, below 4) for prefill (more than k_mmv_max_cols
// queries: workgroups enough for any device), 1 for decode, where n_head workgroups per split already leave a large
// GPU idle; fewer where the shader's shared arrays would not fit the device's. Env TFU_VK_ATTN_GQ=1|2|4 (read per
// call) asks for a count.
uint32_t attention_heads_per_group(const vk_backend& be, const op& o) {
    const tensor& q = *o.src[0];
    const int64_t group = q.ne[1] / int64_t(o.i[1]), hd = q.ne[0];
    uint32_t gq = env_choice("TFU_VK_ATTN_GQ", {1, 2, 4}, q.ne[2] > k_mmv_max_cols ? 4 : 1);
    const device_caps& caps = be.caps();
    while (gq > 1 && (group % gq != 0 || attention_lanes_shared(caps, gq, uint64_t(hd)) > caps.max_shared_bytes))
        gq /= 2;
    return gq;
}

// One workgroup (128) per (query, GQ heads, split) over the contiguous cache: attention_lanes.comp where
// attention_lanes_ok (a head row read by lane groups, 16 bytes a lane), else attention.comp (a K row per thread);
// with n_split > 1 the partials go to the backend's scratch (binding 5) and attention_merge (one workgroup of 64
// per (query, head)) writes dst. In a kept run n_past = i[0] is read on the device and the whole caches are bound.
// attention.comp's pipeline is specialized for the K and V dtypes, the head size, its team width (threads per team:
// the power of 2 covering hd / 2 channel pairs) and whether every head row of K (V) starts on a 4-byte boundary
// (16-bit pairs then load as one word); attention_lanes' for the dtypes, the head size, its rows per step and its
// heads per workgroup (attention_heads_per_group).
void record_attention(vk_backend& be, const op& o) {
    const tensor& q = *o.src[0];
    const tensor& k = *o.src[1];
    const tensor& v = *o.src[2];
    const tensor& d = *o.dst;
    const uint32_t dyn = be.dyn_slot();
    // Only rows 0 .. n_past + n - 1 are read: bind just those (the rest may be beyond one binding).
    const int64_t rows = int64_t(o.i[0]) + q.ne[2];
    const int64_t k_rows = dyn ? k.ne[1] : rows, v_rows = dyn ? v.ne[1] : rows;
    binding b[4] = {bind_whole(be, &d, "dst"), bind_whole(be, &q, "src0 (q)"),
                    be.bind(k.data, uint64_t(k_rows - 1) * k.nb[1] + k.row_bytes(), "src1 (K cache)"),
                    be.bind(v.data, uint64_t(v_rows - 1) * v.nb[1] + v.row_bytes(), "src2 (V cache)")};
    const uint32_t hd = uint32_t(q.ne[0]);
    uint32_t team = 1;
    while (2 * team < hd) team *= 2;
    auto words_aligned = [hd](const tensor& c, const binding& bc) {
        return uint32_t(c.type == dtype::F32 || (bc.byte % 4 == 0 && hd % 2 == 0));  // nb[1] % 4 == 0: supports()
    };
    const bool lanes = attention_lanes_ok(be, o, b[2], b[3]);
    const uint32_t gq = lanes ? attention_heads_per_group(be, o) : 1;
    const std::vector<uint32_t> spec =
        lanes ? std::vector<uint32_t>{uint32_t(k.type), uint32_t(v.type), hd, attention_lane_rows(), gq,
                                      attention_lanes_max_sg(be.caps())}
              : std::vector<uint32_t>{uint32_t(k.type), uint32_t(v.type), hd, team, words_aligned(k, b[2]),
                                      words_aligned(v, b[3])};
    const uint32_t n_split = attention_splits(o);
    const uint64_t blocks = uint64_t(q.ne[2]) * uint64_t(q.ne[1]);
    binding bs[5] = {b[0], b[1], b[2], b[3], binding{}};
    if (n_split > 1) bs[4] = be.scratch(scratch_bytes(be, o));
    be.dispatch(lanes ? "attention_lanes" : "attention", spec, bs, n_split > 1 ? 5 : 4,
                {uint32_t(q.ne[0]), uint32_t(q.ne[1]), uint32_t(q.ne[2]), uint32_t(o.i[0]), uint32_t(q.ne[1] / o.i[1]),
                 fbits(o.f[0]), b[1].word, words(q.nb[1]), b[0].word, words(d.nb[1]), uint32_t(k.type), b[2].byte,
                 uint32_t(k.nb[1]), uint32_t(v.type), b[3].byte, uint32_t(v.nb[1]), dyn, n_split, bs[4].word},
                blocks / gq * n_split);
    if (n_split == 1) return;
    const binding bm[2] = {b[0], bs[4]};  // dst, the partials as src0
    be.dispatch("attention_merge", {}, bm, 2,
                {hd, uint32_t(blocks), n_split, bs[4].word, b[0].word, words(d.nb[1])}, blocks);
}

// Layout code of a KV head block for the shader: 0 f16, 1 bf16, 2 q8, 3 q4 per channel (K), 4 q4 per token (V).
uint32_t kv_kind(const kv_layout& l) {
    switch (l.format) {
        case kv_format::f16: return 0;
        case kv_format::bf16: return 1;
        case kv_format::q8: return 2;
        case kv_format::q4: return l.per_token() ? 4 : 3;
    }
    return 0;
}

bool same_layout(const kv_layout& a, const kv_layout& b) {
    return a.format == b.format && a.part == b.part && a.block_tokens == b.block_tokens && a.head_dim == b.head_dim &&
           a.group == b.group && a.row_code_bytes == b.row_code_bytes && a.scale_offset == b.scale_offset &&
           a.min_offset == b.min_offset && a.code_offset == b.code_offset && a.bytes == b.bytes;
}

// One workgroup (64) per (query, head): online softmax over chunks of 64 keys, K/V dequantized in the shader from
// the head blocks. The host uploads a table to the parameter arena: k_max_layouts layout records (8 words: kind,
// group, scale, min, code offsets, row bytes) - blocks of one layer may differ (q4 keys keep their newest blocks
// as f16: kv/block_table.h) - then per (block, KV head) 4 words: K window slot | layout << 8, K byte offset in the
// window, the same for V. The head blocks may lie in up to 4 windows of device memory (bindings 5..8).
constexpr size_t k_max_layouts = 8;

void record_attention_paged(vk_backend& be, const op& o) {
    const tensor& q = *o.src[0];
    const tensor& d = *o.dst;
    const paged_kv_view& kv = *static_cast<const paged_kv_view*>(o.ext);
    const int64_t n_head = q.ne[1], n = q.ne[2];
    const int32_t n_past = o.i[0], nhk = o.i[1];
    const int64_t B = kv.block_tokens;
    const int64_t n_blocks_used = (int64_t(n_past) + n + B - 1) / B;  // blocks the last query sees
    struct window {
        uint64_t lo = UINT64_MAX, hi = 0;
        int slot = -1;
    };
    std::map<uint32_t, window> windows;  // one per chunk touched
    std::vector<kv_layout> layouts;
    const size_t n_entries = size_t(n_blocks_used) * size_t(nhk);
    std::vector<location> loc(2 * n_entries);
    std::vector<uint32_t> layout_of(2 * n_entries);
    for (size_t e = 0; e < 2 * n_entries; ++e) {
        const kv_rows& r = e < n_entries ? kv.k[e] : kv.v[e - n_entries];
        size_t li = 0;
        while (li < layouts.size() && !same_layout(layouts[li], *r.layout)) ++li;
        if (li == layouts.size()) {
            if (layouts.size() == k_max_layouts)
                fail(TFU_STATUS_UNSUPPORTED, std::string(be.name()) + ": attention_paged: more than 8 head-block layouts");
            layouts.push_back(*r.layout);
        }
        layout_of[e] = uint32_t(li);
        loc[e] = be.locate(r.data, r.layout->bytes, e < n_entries ? "a K head block" : "a V head block");
        window& w = windows[loc[e].chunk];
        w.lo = std::min(w.lo, loc[e].offset);
        w.hi = std::max(w.hi, loc[e].offset + r.layout->bytes);
    }
    if (windows.size() > 4)
        fail(TFU_STATUS_UNSUPPORTED, std::string(be.name()) + ": attention_paged: the cache spans " +
                                         std::to_string(windows.size()) + " memory chunks (at most 4 per op)");
    binding b[8] = {bind_whole(be, &d, "dst"), bind_whole(be, &q, "src0 (q)")};
    int slot = 0;
    for (auto& [chunk, w] : windows) {
        w.slot = slot;
        b[4 + slot] = be.bind_chunk(chunk, w.lo, w.hi - w.lo, "paged KV cache window");
        ++slot;
    }
    std::vector<uint32_t> table(8 * k_max_layouts + 4 * n_entries, 0);
    for (size_t li = 0; li < layouts.size(); ++li) {
        const kv_layout& l = layouts[li];
        const uint32_t rec[6] = {kv_kind(l), uint32_t(l.group), uint32_t(l.scale_offset), uint32_t(l.min_offset),
                                 uint32_t(l.code_offset), uint32_t(l.row_code_bytes)};
        std::copy(rec, rec + 6, table.begin() + long(8 * li));
    }
    for (size_t e = 0; e < n_entries; ++e)
        for (size_t part = 0; part < 2; ++part) {
            const size_t i = part * n_entries + e;
            const window& w = windows[loc[i].chunk];
            table[8 * k_max_layouts + 4 * e + 2 * part] = uint32_t(w.slot) | layout_of[i] << 8;
            table[8 * k_max_layouts + 4 * e + 2 * part + 1] = uint32_t(loc[i].offset - b[4 + w.slot].offset);
        }
    be.dispatch("attention_paged", {}, b, 8,
                {uint32_t(q.ne[0]), uint32_t(n_head), uint32_t(n), uint32_t(n_past), uint32_t(n_head / nhk),
                 uint32_t(nhk), uint32_t(B), fbits(o.f[0]), b[1].word, words(q.nb[1]), b[0].word, words(d.nb[1]), 0u},
                uint64_t(n) * uint64_t(n_head), &table, 12);
}

// ARGMAX (argmax.comp): columns up to k_argmax_one_pass long, one workgroup (256) per column; longer ones (a
// vocabulary of logits) in two launches, argmax_parts(o) workgroups per column writing (key, index) pairs to the
// scratch, then one per column reducing them. The subgroup variants where the device has subgroup arithmetic (as
// mul_mat_vec), else the shared-memory tree.
constexpr int64_t k_argmax_one_pass = 8192;
constexpr int64_t k_argmax_chunk = 1024;  // elements per workgroup of the first pass: 4 per thread

uint32_t argmax_parts(const op& o) {
    const int64_t k = o.src[0]->ne[0];
    if (k <= k_argmax_one_pass) return 1;
    return uint32_t(std::min<int64_t>(256, (k + k_argmax_chunk - 1) / k_argmax_chunk));
}

void record_argmax(vk_backend& be, const op& o) {
    const tensor& x = *o.src[0];
    const tensor& d = *o.dst;
    binding b[2] = {bind_whole(be, &d, "dst"), bind_whole(be, &x, "src0")};
    const bool sg = be.subgroup_ops();
    const uint32_t k = uint32_t(x.ne[0]), n = uint32_t(x.nrows()), parts = argmax_parts(o);
    if (parts == 1) {
        be.dispatch(sg ? "argmax_subgroup" : "argmax", {}, b, 2, {k, n, b[1].word, words(x.nb[1]), b[0].word},
                    uint64_t(n));
        return;
    }
    const uint32_t chunk = uint32_t(align_up((uint64_t(k) + parts - 1) / parts, 256));
    binding part[2] = {be.scratch(scratch_bytes(be, o)), b[1]};
    be.dispatch(sg ? "argmax_part_subgroup" : "argmax_part", {}, part, 2,
                {k, n, b[1].word, words(x.nb[1]), 0u, parts, chunk}, uint64_t(n) * parts);
    binding fin[2] = {b[0], part[0]};
    be.dispatch(sg ? "argmax_final_subgroup" : "argmax_final", {}, fin, 2, {k, n, 0u, 0u, b[0].word, parts, 0u},
                uint64_t(n));
}

}  // namespace

bool op_supported(const op& o, const device_caps& caps, uint64_t max_binding, std::string* why) {
    (void)caps;
    const uint64_t mb = max_binding;
    switch (o.type) {
        case op_type::GET_ROWS:
        case op_type::MUL_MAT: {
            const tensor& w = *o.src[0];
            if (!weight_dtype_ok(w.type))
                return refuse(why, o, std::string("weight dtype ") + dtype_name(w.type) + " has no Vulkan dequantizer");
            if (w.nb[1] % 2 != 0) return refuse(why, o, "src0 rows are not 2-byte strided");
            if (w.type == dtype::F32 && w.nb[1] % 4 != 0)  // f32 rows are read as whole words
                return refuse(why, o, "f32 src0 rows are not 4-byte strided");
            if (w.nb[1] + 256 > mb) return refuse(why, o, "one weight row exceeds a storage-buffer binding");
            if (w.ne[0] > int64_t(UINT32_MAX / 4) || w.ne[1] > int64_t(INT32_MAX))
                return refuse(why, o, "src0 is too large for 32-bit indices");
            return activation_ok(o, o.src[1], "src1", mb, why) && activation_ok(o, o.dst, "dst", mb, why);
        }
        case op_type::RMS_NORM:
        case op_type::ADD:
        case op_type::MUL:
        case op_type::SWIGLU:
        case op_type::ROPE:
            return activation_ok(o, o.src[0], "src0", mb, why) && activation_ok(o, o.src[1], "src1", mb, why) &&
                   activation_ok(o, o.src[2], "src2", mb, why) && activation_ok(o, o.dst, "dst", mb, why);
        case op_type::ATTENTION_PAGED: {
            const paged_kv_view& kv = *static_cast<const paged_kv_view*>(o.ext);
            if (o.src[0]->ne[0] > 256) return refuse(why, o, "head size above 256 (the kernel keeps 4 channels per thread)");
            if (kv.n_blocks < 1) return refuse(why, o, "the paged view has no blocks");
            const uint64_t table_bytes = uint64_t(kv.n_blocks) * uint64_t(kv.n_head_kv) * 16;
            if (table_bytes > (uint64_t(4) << 20)) return refuse(why, o, "the block table exceeds the 4 MiB parameter arena");
            return activation_ok(o, o.src[0], "src0", mb, why) && activation_ok(o, o.dst, "dst", mb, why);
        }
        case op_type::KV_STORE:
            if (o.dst->type != dtype::F32 && o.dst->nb[1] % 2 != 0) return refuse(why, o, "cache rows are not 2-byte strided");
            if (o.dst->type == dtype::F32 && o.dst->nb[1] % 4 != 0) return refuse(why, o, "cache rows are not 4-byte strided");
            return activation_ok(o, o.src[0], "src0", mb, why) &&
                   (extent(*o.dst) + 256 <= mb || refuse(why, o, "the cache exceeds one storage-buffer binding"));
        case op_type::ATTENTION: {
            const tensor& q = *o.src[0];
            if (q.ne[0] > 256) return refuse(why, o, "head size above 256 (the kernel keeps 4 channels per thread)");
            for (int i = 1; i < 3; ++i)
                if (o.src[i]->nb[1] % 4 != 0) return refuse(why, o, "cache rows are not 4-byte strided");
            const uint64_t rows = uint64_t(o.i[0]) + uint64_t(q.ne[2]);
            for (int i = 1; i < 3; ++i)
                if ((rows - 1) * o.src[i]->nb[1] + o.src[i]->row_bytes() + 256 > mb)
                    return refuse(why, o, "the cache rows in use exceed one storage-buffer binding");
            return activation_ok(o, o.src[0], "src0", mb, why) && activation_ok(o, o.dst, "dst", mb, why);
        }
        case op_type::ARGMAX:
            if (o.src[0]->ne[0] > int64_t(INT32_MAX)) return refuse(why, o, "src0 columns too long for 32-bit indices");
            return activation_ok(o, o.src[0], "src0", mb, why) && activation_ok(o, o.dst, "dst", mb, why);
        case op_type::KV_STORE_BLOCKS:
        case op_type::ATTENTION_BLOCKS:
            // TODO(#6): a block map holds device addresses; the shaders would need buffer device addresses or the
            // pool's chunks bound as buffers.
            return refuse(why, o, "the paged cache in device memory is not implemented on Vulkan yet");
        case op_type::COUNT: break;
    }
    return refuse(why, o, "unknown op");
}

bool replay_safe(const vk_backend& be, const op& o) {
    switch (o.type) {
        case op_type::GET_ROWS: return one_piece(be, *o.src[0]);
        case op_type::MUL_MAT: return o.src[1]->nrows() <= k_mmv_max_cols && one_piece(be, *o.src[0]);
        case op_type::RMS_NORM:
        case op_type::ADD:
        case op_type::MUL:
        case op_type::SWIGLU:
        case op_type::ROPE:
        case op_type::KV_STORE:
        case op_type::ARGMAX: return true;
        case op_type::ATTENTION:
            for (int i = 1; i < 3; ++i)
                if (extent(*o.src[i]) + 256 > be.max_binding()) return false;
            return true;
        case op_type::ATTENTION_PAGED:
        case op_type::KV_STORE_BLOCKS:
        case op_type::ATTENTION_BLOCKS:
        case op_type::COUNT: break;
    }
    return false;
}

uint32_t attention_splits(const op& o) {
    if (o.type != op_type::ATTENTION) return 1;
    if (const char* env = std::getenv("TFU_VK_ATTN_SPLIT"); env && std::strcmp(env, "0") == 0) return 1;
    const tensor& q = *o.src[0];
    return uint32_t(attention_split_count(q.ne[1] * q.ne[2], int64_t(o.i[0]) + q.ne[2], k_split_target));
}

uint64_t scratch_bytes(const vk_backend& be, const op& o) {
    if (o.type == op_type::MUL_MAT) return cm_x16_bytes(be, o);
    if (o.type == op_type::ARGMAX) {
        const uint32_t parts = argmax_parts(o);
        return parts > 1 ? uint64_t(o.src[0]->nrows()) * parts * 8 : 0;
    }
    const uint32_t n_split = attention_splits(o);
    if (n_split <= 1) return 0;
    const tensor& q = *o.src[0];
    return uint64_t(q.ne[1]) * uint64_t(q.ne[2]) * n_split * (uint64_t(q.ne[0]) + 2) * 4;
}

// The ops with scratch are the two-launch ones (split ATTENTION: its merge; long ARGMAX: its final pass; a
// prefill MUL_MAT's x in fp16 first, which a kept run never holds: over 8 columns).
uint32_t max_dispatches(const vk_backend& be, const op& o) { return scratch_bytes(be, o) > 0 ? 2 : 1; }

uint64_t replay_param_bytes(const op& o) {
    return o.type == op_type::ROPE ? align_up(uint64_t(o.i[0] < 0 ? 0 : o.i[0]) * 4, 16) : 0;
}

void record_op(vk_backend& be, const op& o) {
    switch (o.type) {
        case op_type::GET_ROWS: record_get_rows(be, o); return;
        case op_type::RMS_NORM: dispatch_rms_norm(be, o, nullptr); return;
        case op_type::MUL_MAT: record_mul_mat(be, o); return;
        case op_type::ADD: record_elementwise(be, o, "add"); return;
        case op_type::MUL: record_elementwise(be, o, "mul"); return;
        case op_type::ROPE: dispatch_rope(be, &o, 1); return;
        case op_type::SWIGLU: record_elementwise(be, o, "swiglu"); return;
        case op_type::ATTENTION_PAGED: record_attention_paged(be, o); return;
        case op_type::KV_STORE: dispatch_kv_store(be, &o, 1); return;
        case op_type::ATTENTION: record_attention(be, o); return;
        case op_type::ARGMAX: record_argmax(be, o); return;
        case op_type::KV_STORE_BLOCKS:
        case op_type::ATTENTION_BLOCKS:
        case op_type::COUNT: break;
    }
    fail(TFU_STATUS_UNSUPPORTED, std::string(be.name()) + ": " + op_name(o.type) + " is not implemented");
}

}  // namespace tfu::vk
