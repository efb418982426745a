// Validation of ops against the contract in backend/ops.def (dtypes, shapes, strides, parameters).
#include "backend/cpu/ref/op_check.h"

#include <sstream>

#include "backend/kv_block_map.h"
#include "backend/kv_format.h"
#include "core/error.h"

namespace tfu {

std::string describe_tensor(const tensor* t) {
    if (!t) return "(null)";
    std::ostringstream s;
    s << (t->name.empty() ? "tensor" : t->name) << " (" << t->ne[0] << ", " << t->ne[1] << ", " << t->ne[2] << ", "
      << t->ne[3] << ") " << (dtype_traits_of(uint32_t(t->type)) ? dtype_name(t->type) : "unknown-dtype");
    return s.str();
}

namespace {

// Collects the first failure as "<op>: <message>".
struct checker {
    const op& o;
    std::string* why;
    bool ok = true;

    bool fail_with(const std::string& msg) {
        if (ok && why) *why = std::string(op_name(o.type)) + ": " + msg;
        ok = false;
        return false;
    }

    // Layout every op relies on: rows of ne[0] elements (whole blocks), nb[0] the element/block size,
    // rows evenly strided by nb[1] across dims 1..3 (so tensor::row(r) addresses row r).
    bool layout(const tensor* t, const char* role) {
        if (!t) return fail_with(std::string(role) + " is missing");
        const dtype_traits* tr = dtype_traits_of(uint32_t(t->type));
        if (!tr) return fail_with(std::string(role) + " has an unknown dtype " + std::to_string(uint32_t(t->type)));
        for (int d = 0; d < 4; ++d)
            if (t->ne[d] < 1) return fail_with(std::string(role) + " has an empty dimension: " + describe_tensor(t));
        if (t->ne[0] % tr->block_size != 0)
            return fail_with(std::string(role) + " row length is not a multiple of the block size " +
                             std::to_string(tr->block_size) + ": " + describe_tensor(t));
        if (t->nb[0] != tr->type_size || t->nb[1] < t->row_bytes() || t->nb[2] != t->nb[1] * size_t(t->ne[1]) ||
            t->nb[3] != t->nb[2] * size_t(t->ne[2]))
            return fail_with(std::string(role) + " is not a row-major tensor with evenly strided rows: " +
                             describe_tensor(t));
        if (!t->data) return fail_with(std::string(role) + " has no data: " + describe_tensor(t));
        return true;
    }
    bool is_type(const tensor* t, const char* role, dtype want) {
        if (t->type != want)
            return fail_with(std::string(role) + " must be " + dtype_name(want) + ": " + describe_tensor(t));
        return true;
    }
    bool is_cache_type(const tensor* t, const char* role) {
        if (t->type != dtype::F32 && t->type != dtype::F16 && t->type != dtype::BF16)
            return fail_with(std::string(role) + " must be an f32, f16 or bf16 cache: " + describe_tensor(t));
        return true;
    }
    bool is_weight_type(const tensor* t, const char* role) {
        if (!traits(t->type).weight_type)
            return fail_with(std::string(role) + " must have a weight dtype: " + describe_tensor(t));
        return true;
    }
    bool same_shape(const tensor* a, const char* ra, const tensor* b, const char* rb) {
        for (int d = 0; d < 4; ++d)
            if (a->ne[d] != b->ne[d])
                return fail_with(std::string(ra) + " and " + rb + " shapes differ: " + describe_tensor(a) + " vs " +
                                 describe_tensor(b));
        return true;
    }
    // The message is built only on failure: checks run on every op of every forward pass.
    template <typename Msg>
    bool expect(bool cond, Msg&& msg) {
        return cond || fail_with(msg());
    }
};

std::string shapes(const op& o) {
    std::string s = " [dst " + describe_tensor(o.dst);
    for (int i = 0; i < op_n_src(o.type); ++i) s += ", src" + std::to_string(i) + " " + describe_tensor(o.src[i]);
    return s + "]";
}

// The parts of a kv_block_map both *_BLOCKS ops rely on: per-token layouts of one head size and block size.
bool check_block_map(checker& c, const kv_block_map* m, const op& o) {
    if (!c.expect(m != nullptr && m->blocks != nullptr, [] { return std::string("ext must be a kv_block_map"); }))
        return false;
    const kv_layout& k = m->k;
    const kv_layout& v = m->v;
    const int32_t B = k.block_tokens;
    // kv_layout_make's own limits first: it throws outside them, and check_op must not.
    return c.expect(k.part == kv_part::k && v.part == kv_part::v && k.head_dim == v.head_dim &&
                        B == v.block_tokens && k.head_dim >= 1 && k.head_dim <= 4096 && B >= 16 && B <= 4096 &&
                        (B & (B - 1)) == 0 &&
                        uint8_t(k.format) <= uint8_t(kv_format::q4) && uint8_t(v.format) <= uint8_t(kv_format::q4),
                    [&] { return "the map's K and V layouts disagree" + shapes(o); }) &&
           c.expect(k.per_token(), [&] { return "per-channel q4 keys cannot be addressed by a block map" + shapes(o); }) &&
           c.expect(k == kv_layout_make(k.format, k.part, k.block_tokens, k.head_dim) &&
                        v == kv_layout_make(v.format, v.part, v.block_tokens, v.head_dim),
                    [&] { return "the map's layouts are not kv_layout_make's" + shapes(o); }) &&
           c.expect(m->n_head_kv >= 1 && m->n_blocks >= 0, [&] { return "bad n_head_kv or n_blocks" + shapes(o); });
}

}  // namespace

bool check_op(const op& o, std::string* why) {
    checker c{o, why};
    if (o.type >= op_type::COUNT) return c.fail_with("unknown op type " + std::to_string(uint32_t(o.type)));
    const tensor* d = o.dst;
    const tensor* s0 = o.src[0];
    const tensor* s1 = o.src[1];
    const tensor* s2 = o.src[2];
    if ((o.type != op_type::KV_STORE_BLOCKS && !c.layout(d, "dst")) || !c.layout(s0, "src0")) return false;
    if (op_n_src(o.type) >= 2 && !c.layout(s1, "src1")) return false;
    switch (o.type) {
        case op_type::GET_ROWS:
            // dst (n_embd, n) = src0 (n_embd, n_vocab) rows at src1 (n, i32)
            return c.is_weight_type(s0, "src0") && c.is_type(s1, "src1", dtype::I32) &&
                   c.is_type(d, "dst", dtype::F32) &&
                   c.expect(s0->ne[2] == 1 && s0->ne[3] == 1, [&] { return std::string("src0 must be 2-D" + shapes(o)); }) &&
                   c.expect(d->ne[0] == s0->ne[0] && d->nrows() == s1->nelements(), [&] { return std::string("dst must be (src0.ne[0], number of ids)" + shapes(o)); });
        case op_type::RMS_NORM:
            return c.is_type(s0, "src0", dtype::F32) && c.is_type(s1, "src1", dtype::F32) &&
                   c.is_type(d, "dst", dtype::F32) && c.same_shape(d, "dst", s0, "src0") &&
                   c.expect(s1->ne[0] == s0->ne[0] && s1->nrows() == 1, [&] { return std::string("src1 must be (src0.ne[0])" + shapes(o)); });
        case op_type::MUL_MAT:
            // dst (m, n) = src0 (k, m) . src1 (k, n)
            return c.is_weight_type(s0, "src0") && c.is_type(s1, "src1", dtype::F32) &&
                   c.is_type(d, "dst", dtype::F32) &&
                   c.expect(s0->ne[2] == 1 && s0->ne[3] == 1, [&] { return std::string("src0 must be 2-D" + shapes(o)); }) &&
                   c.expect(s1->ne[0] == s0->ne[0], [&] { return std::string("src1.ne[0] must equal src0.ne[0] (k)" + shapes(o)); }) &&
                   c.expect(d->ne[0] == s0->ne[1] && d->nrows() == s1->nrows(), [&] { return std::string("dst must be (src0.ne[1], src1 rows)" + shapes(o)); });
        case op_type::ADD:
        case op_type::MUL:
            return c.is_type(s0, "src0", dtype::F32) && c.is_type(s1, "src1", dtype::F32) &&
                   c.is_type(d, "dst", dtype::F32) && c.same_shape(d, "dst", s0, "src0") &&
                   c.expect(s1->ne[0] == s0->ne[0] && (s1->nrows() == 1 || s1->nrows() == s0->nrows()), [&] { return std::string("src1 must be (k, rows of src0 or 1)" + shapes(o)); });
        case op_type::ROPE: {
            // dst (hd, n_head, n) = rope(src0 (hd, n_head, n)) at src1 (n, i32); src2 (n_rot/2) optional
            const int n_rot = o.i[0];
            if (!(c.is_type(s0, "src0", dtype::F32) && c.is_type(s1, "src1", dtype::I32) &&
                  c.is_type(d, "dst", dtype::F32) && c.same_shape(d, "dst", s0, "src0") &&
                  c.expect(s0->ne[3] == 1, [&] { return std::string("src0 must be (hd, n_head, n)" + shapes(o)); }) &&
                  c.expect(s1->nelements() == s0->ne[2], [&] { return std::string("src1 must hold one position per token" + shapes(o)); }) &&
                  c.expect(n_rot >= 2 && n_rot % 2 == 0 && n_rot <= s0->ne[0], [&] { return std::string("n_rot (i[0]) = " + std::to_string(n_rot) + " must be even and in [2, hd]" + shapes(o)); }) &&
                  c.expect(o.i[1] == 0 || o.i[1] == 2, [&] { return std::string("mode (i[1]) = " + std::to_string(o.i[1]) +
                                                           " must be 0 (normal) or 2 (neox)"); }) &&
                  c.expect(o.f[0] > 0.0f, [&] { return std::string("freq_base (f[0]) must be > 0"); })))
                return false;
            if (!s2) return true;
            return c.layout(s2, "src2") && c.is_type(s2, "src2", dtype::F32) &&
                   c.expect(s2->nelements() == n_rot / 2, [&] { return std::string("src2 (freq factors) must hold n_rot/2 values" + shapes(o)); });
        }
        case op_type::SWIGLU:
            return c.is_type(s0, "src0", dtype::F32) && c.is_type(s1, "src1", dtype::F32) &&
                   c.is_type(d, "dst", dtype::F32) && c.same_shape(d, "dst", s0, "src0") &&
                   c.same_shape(s1, "src1", s0, "src0");
        case op_type::KV_STORE:
            // dst (hd * n_head_kv, n_ctx) rows i[0] .. i[0] + n - 1 = src0 (hd * n_head_kv, n)
            return c.is_type(s0, "src0", dtype::F32) && c.is_cache_type(d, "dst") &&
                   c.expect(d->ne[2] == 1 && d->ne[3] == 1, [&] { return std::string("dst must be a 2-D cache (row, n_ctx)" + shapes(o)); }) &&
                   c.expect(d->ne[0] == s0->ne[0], [&] { return std::string("dst.ne[0] must equal src0.ne[0]" + shapes(o)); }) &&
                   c.expect(o.i[0] >= 0 && int64_t(o.i[0]) + s0->nrows() <= d->ne[1], [&] { return std::string("rows i[0] = " + std::to_string(o.i[0]) + " .. +" + std::to_string(s0->nrows()) +
                                " do not fit the cache" + shapes(o)); });
        case op_type::ATTENTION: {
            // dst (hd, n_head, n) = attention(src0 (hd, n_head, n), K = src1, V = src2 (hd * n_head_kv, n_ctx))
            if (!c.layout(s2, "src2")) return false;
            const int64_t hd = s0->ne[0], n_head = s0->ne[1], n = s0->ne[2];
            const int n_head_kv = o.i[1];
            return c.is_type(s0, "src0", dtype::F32) && c.is_type(d, "dst", dtype::F32) &&
                   c.is_cache_type(s1, "src1") && c.is_cache_type(s2, "src2") && c.same_shape(d, "dst", s0, "src0") &&
                   c.expect(s0->ne[3] == 1, [&] { return std::string("src0 must be (hd, n_head, n)" + shapes(o)); }) &&
                   c.expect(n_head_kv >= 1 && n_head % n_head_kv == 0, [&] { return std::string("n_head_kv (i[1]) = " + std::to_string(n_head_kv) + " must divide n_head" + shapes(o)); }) &&
                   c.expect(s1->ne[0] == hd * n_head_kv && s2->ne[0] == hd * n_head_kv, [&] { return std::string("K and V rows must be hd * n_head_kv" + shapes(o)); }) &&
                   c.expect(s1->ne[2] == 1 && s1->ne[3] == 1 && s2->ne[2] == 1 && s2->ne[3] == 1, [&] { return std::string("K and V must be 2-D caches" + shapes(o)); }) &&
                   c.expect(o.i[0] >= 0 && int64_t(o.i[0]) + n <= s1->ne[1] && int64_t(o.i[0]) + n <= s2->ne[1], [&] { return std::string("n_past (i[0]) = " + std::to_string(o.i[0]) + " + n exceeds the cache" + shapes(o)); });
        }
        case op_type::ATTENTION_PAGED: {
            // dst (hd, n_head, n) = attention(src0 (hd, n_head, n), K/V through ext = paged_kv_view)
            const paged_kv_view* kv = static_cast<const paged_kv_view*>(o.ext);
            const int64_t hd = s0->ne[0], n_head = s0->ne[1], n = s0->ne[2];
            const int n_head_kv = o.i[1];
            if (!c.is_type(s0, "src0", dtype::F32) || !c.is_type(d, "dst", dtype::F32) ||
                !c.same_shape(d, "dst", s0, "src0"))
                return false;
            if (!c.expect(kv != nullptr && kv->k && kv->v, [] { return std::string("ext must be a paged_kv_view"); }))
                return false;
            const int64_t B = kv->block_tokens;
            return c.expect(s0->ne[3] == 1, [&] { return "src0 must be (hd, n_head, n)" + shapes(o); }) &&
                   c.expect(n_head_kv >= 1 && n_head % n_head_kv == 0 && kv->n_head_kv == n_head_kv,
                            [&] { return "n_head_kv (i[1]) must divide n_head and match the view" + shapes(o); }) &&
                   c.expect(B >= 1 && o.i[0] >= 0 && int64_t(o.i[0]) + n <= int64_t(kv->n_blocks) * B,
                            [&] { return "positions i[0] + n exceed the paged cache's blocks" + shapes(o); }) &&
                   c.expect(kv->n_blocks == 0 || (kv->k[0].layout->head_dim == hd && kv->v[0].layout->head_dim == hd),
                            [&] { return "the cache's head size differs from q's" + shapes(o); });
        }
        case op_type::KV_STORE_BLOCKS: {
            // K rows src0 and V rows src1 (hd * n_head_kv, n) of positions i[0].. into ext = kv_block_map
            const kv_block_map* m = static_cast<const kv_block_map*>(o.ext);
            if (!c.is_type(s0, "src0", dtype::F32) || !c.is_type(s1, "src1", dtype::F32) ||
                !c.same_shape(s0, "src0", s1, "src1") || !check_block_map(c, m, o))
                return false;
            return c.expect(s0->ne[2] == 1 && s0->ne[3] == 1, [&] { return "src0 must be (hd * n_head_kv, n)" + shapes(o); }) &&
                   c.expect(s0->ne[0] == int64_t(m->k.head_dim) * m->n_head_kv, [&] { return "rows must be hd * n_head_kv of the cache" + shapes(o); }) &&
                   c.expect(o.i[0] >= 0 && int64_t(o.i[0]) + s0->nrows() <= int64_t(m->n_blocks) * m->k.block_tokens,
                            [&] { return "positions i[0] = " + std::to_string(o.i[0]) + " .. + n exceed the map's blocks" + shapes(o); });
        }
        case op_type::ATTENTION_BLOCKS: {
            // dst (hd, n_head, n) = attention(src0 (hd, n_head, n), K/V through ext = kv_block_map)
            const kv_block_map* m = static_cast<const kv_block_map*>(o.ext);
            const int64_t hd = s0->ne[0], n_head = s0->ne[1], n = s0->ne[2];
            if (!c.is_type(s0, "src0", dtype::F32) || !c.is_type(d, "dst", dtype::F32) ||
                !c.same_shape(d, "dst", s0, "src0") || !check_block_map(c, m, o))
                return false;
            return c.expect(s0->ne[3] == 1, [&] { return "src0 must be (hd, n_head, n)" + shapes(o); }) &&
                   c.expect(o.i[1] >= 1 && n_head % o.i[1] == 0 && m->n_head_kv == o.i[1],
                            [&] { return "n_head_kv (i[1]) must divide n_head and match the map" + shapes(o); }) &&
                   c.expect(m->k.head_dim == hd, [&] { return "the cache's head size differs from q's" + shapes(o); }) &&
                   c.expect(o.i[0] >= 0 && int64_t(o.i[0]) + n <= int64_t(m->n_blocks) * m->k.block_tokens,
                            [&] { return "positions i[0] + n exceed the map's blocks" + shapes(o); });
        }
        case op_type::ARGMAX:
            // dst (n, i32) = index of the largest value of each column of src0 (k, n) f32
            return c.is_type(s0, "src0", dtype::F32) && c.is_type(d, "dst", dtype::I32) &&
                   c.expect(s0->ne[0] <= INT32_MAX, [&] { return std::string("src0 columns must be shorter than 2^31" + shapes(o)); }) &&
                   c.expect(d->nrows() == 1 && d->ne[0] == s0->nrows(), [&] { return std::string("dst must be (src0 rows)" + shapes(o)); });
        case op_type::COUNT: break;
    }
    return c.fail_with("unknown op type");
}

void require_op(const char* backend_name, const op& o) {
    std::string why;
    if (!check_op(o, &why)) fail(TFU_STATUS_UNSUPPORTED, std::string(backend_name) + ": " + why);
}

}  // namespace tfu
