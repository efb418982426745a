// GGUF reader tests: files built in memory by a small writer, round trips of every value type, tensor
// layout and alignment, every refusal (truncation at every length, overflowing counts, bad offsets, ...), and
// the real files in ../shared.
#include <gtest/gtest.h>

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "format/gguf.h"

namespace {

using tfu::dtype;
using tfu::gguf::file;
using tfu::gguf::value_type;
using bytes = std::vector<uint8_t>;

constexpr uint64_t k_u64_max = std::numeric_limits<uint64_t>::max();

// ---------------------------------------------------------------------------------------------------------
// A little-endian GGUF serializer (test-only; the engine's writer is separate).
struct out_buf {
    bytes b;
    template <typename T>
    void put(T v) {
        uint8_t tmp[sizeof(T)];
        std::memcpy(tmp, &v, sizeof(T));  // the host is little-endian, as the reader assumes
        b.insert(b.end(), tmp, tmp + sizeof(T));
    }
    void u32(uint32_t v) { put(v); }
    void u64(uint64_t v) { put(v); }
    void str(std::string_view s) {
        u64(s.size());
        b.insert(b.end(), s.begin(), s.end());
    }
};

// Where the writer put some fields, so that tests can corrupt them.
struct layout {
    size_t tensor_count_pos = 0, kv_count_pos = 0, header_end = 0, data_offset = 0;
    std::vector<size_t> n_dims_pos, dims_pos, type_pos, offset_pos;
    std::vector<uint64_t> offsets;
};

struct tensor_spec {
    std::string name;
    uint32_t type;
    std::vector<int64_t> dims;
    bytes data;
};

class gguf_builder {
public:
    uint32_t version = 3;
    uint32_t alignment = 32;     // used to lay out tensor data
    bool alignment_key = false;  // also write general.alignment

    template <typename T>
    gguf_builder& scalar(const std::string& key, value_type t, T v) {
        kvs_.str(key);
        kvs_.u32(uint32_t(t));
        kvs_.put(v);
        ++n_kv_;
        return *this;
    }
    gguf_builder& string(const std::string& key, std::string_view v) {
        kvs_.str(key);
        kvs_.u32(uint32_t(value_type::STRING));
        kvs_.str(v);
        ++n_kv_;
        return *this;
    }
    template <typename T>
    gguf_builder& array(const std::string& key, value_type et, const std::vector<T>& v) {
        kvs_.str(key);
        kvs_.u32(uint32_t(value_type::ARRAY));
        kvs_.u32(uint32_t(et));
        kvs_.u64(v.size());
        for (const T& x : v) kvs_.put(x);
        ++n_kv_;
        return *this;
    }
    gguf_builder& strings(const std::string& key, const std::vector<std::string>& v) {
        kvs_.str(key);
        kvs_.u32(uint32_t(value_type::ARRAY));
        kvs_.u32(uint32_t(value_type::STRING));
        kvs_.u64(v.size());
        for (const std::string& s : v) kvs_.str(s);
        ++n_kv_;
        return *this;
    }
    gguf_builder& tensor(const std::string& name, uint32_t type, std::vector<int64_t> dims, bytes data) {
        tensors_.push_back({name, type, std::move(dims), std::move(data)});
        return *this;
    }

    bytes build(layout* lay = nullptr) const {
        layout l;
        out_buf o;
        o.b = {'G', 'G', 'U', 'F'};
        o.u32(version);
        l.tensor_count_pos = o.b.size();
        o.u64(tensors_.size());
        l.kv_count_pos = o.b.size();
        o.u64(n_kv_ + (alignment_key ? 1 : 0));
        o.b.insert(o.b.end(), kvs_.b.begin(), kvs_.b.end());
        if (alignment_key) {
            o.str("general.alignment");
            o.u32(uint32_t(value_type::UINT32));
            o.u32(alignment);
        }
        uint64_t off = 0;
        for (const tensor_spec& t : tensors_) {
            o.str(t.name);
            l.n_dims_pos.push_back(o.b.size());
            o.u32(uint32_t(t.dims.size()));
            l.dims_pos.push_back(o.b.size());
            for (int64_t d : t.dims) o.put(d);
            l.type_pos.push_back(o.b.size());
            o.u32(t.type);
            l.offset_pos.push_back(o.b.size());
            o.u64(off);
            l.offsets.push_back(off);
            off += (t.data.size() + alignment - 1) / alignment * alignment;
        }
        l.header_end = o.b.size();
        if (!tensors_.empty()) {
            while (o.b.size() % alignment != 0) o.b.push_back(0);
            l.data_offset = o.b.size();
            for (size_t k = 0; k < tensors_.size(); ++k) {
                o.b.resize(l.data_offset + l.offsets[k], 0);  // padding between tensors; none after the last
                o.b.insert(o.b.end(), tensors_[k].data.begin(), tensors_[k].data.end());
            }
        }
        if (lay) *lay = l;
        return o.b;
    }

private:
    out_buf kvs_;
    uint64_t n_kv_ = 0;
    std::vector<tensor_spec> tensors_;
};

template <typename T>
void poke(bytes& b, size_t pos, T v) {
    ASSERT_LE(pos + sizeof(T), b.size());
    std::memcpy(b.data() + pos, &v, sizeof(T));
}

bytes random_bytes(std::mt19937& rng, size_t n) {
    bytes b(n);
    for (uint8_t& x : b) x = uint8_t(rng());
    return b;
}

std::unique_ptr<file> parse(const bytes& b, const std::string& name = "test.gguf") {
    return file::from_memory(b.data(), b.size(), name);
}

// Parses b expecting a tfu::error with `status` whose message contains every string in `parts`.
void expect_fail(const bytes& b, tfu_status status, std::vector<std::string> parts) {
    try {
        parse(b);
        ADD_FAILURE() << "parsed without error; expected status " << status;
    } catch (const tfu::error& e) {
        EXPECT_EQ(e.status(), status) << e.what();
        for (const std::string& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos)
                                               << "message '" << e.what() << "' lacks '" << p << "'";
    }
}

// A small valid file with metadata of every kind and tensors of several dtypes.
gguf_builder small_file(std::mt19937& rng) {
    gguf_builder g;
    g.string("general.architecture", "llama")
        .scalar("llama.block_count", value_type::UINT32, uint32_t(5))
        .scalar("x.f", value_type::FLOAT32, 1.5f)
        .scalar("x.b", value_type::BOOL, uint8_t(1))
        .array("x.ai", value_type::INT32, std::vector<int32_t>{-1, 2, 3})
        .array("x.af", value_type::FLOAT32, std::vector<float>{0.5f, -2.0f})
        .strings("x.as", {"a", "", "ccc"});
    g.tensor("t.f32", uint32_t(dtype::F32), {4, 2}, random_bytes(rng, 32))
        .tensor("t.q8", uint32_t(dtype::Q8_0), {32}, random_bytes(rng, 34));
    return g;
}

// ---------------------------------------------------------------------------------------------------------

TEST(gguf, scalar_round_trip_v2_v3) {
    for (uint32_t version : {2u, 3u}) {
        SCOPED_TRACE("version " + std::to_string(version));
        gguf_builder g;
        g.version = version;
        const std::string with_nul("a\0b\xff", 4);
        g.scalar("k.u8", value_type::UINT8, uint8_t(250))
            .scalar("k.i8", value_type::INT8, int8_t(-128))
            .scalar("k.u16", value_type::UINT16, uint16_t(65535))
            .scalar("k.i16", value_type::INT16, int16_t(-32768))
            .scalar("k.u32", value_type::UINT32, uint32_t(4000000000u))
            .scalar("k.i32", value_type::INT32, int32_t(-2000000000))
            .scalar("k.u64", value_type::UINT64, uint64_t(std::numeric_limits<int64_t>::max()))
            .scalar("k.i64", value_type::INT64, std::numeric_limits<int64_t>::min())
            .scalar("k.f32", value_type::FLOAT32, -3.25f)
            .scalar("k.f64", value_type::FLOAT64, 1e300)
            .scalar("k.bt", value_type::BOOL, uint8_t(1))
            .scalar("k.bf", value_type::BOOL, uint8_t(0))
            .string("k.s", "h\xc3\xa9llo")
            .string("k.s_nul", with_nul)
            .string("k.empty", "");
        bytes b = g.build();
        auto f = parse(b);
        EXPECT_EQ(f->version(), version);
        EXPECT_EQ(f->metadata().size(), 15u);
        EXPECT_TRUE(f->tensors().empty());
        EXPECT_EQ(f->get_int("k.u8"), 250);
        EXPECT_EQ(f->get_int("k.i8"), -128);
        EXPECT_EQ(f->get_int("k.u16"), 65535);
        EXPECT_EQ(f->get_int("k.i16"), -32768);
        EXPECT_EQ(f->get_int("k.u32"), 4000000000LL);
        EXPECT_EQ(f->get_int("k.i32"), -2000000000);
        EXPECT_EQ(f->get_int("k.u64"), std::numeric_limits<int64_t>::max());
        EXPECT_EQ(f->get_int("k.i64"), std::numeric_limits<int64_t>::min());
        EXPECT_EQ(f->get_float("k.f32"), -3.25);
        EXPECT_EQ(f->get_float("k.f64"), 1e300);
        EXPECT_EQ(f->get_float("k.u32"), 4e9);  // integers accepted as floats
        EXPECT_EQ(f->get_bool("k.bt"), true);
        EXPECT_EQ(f->get_bool("k.bf"), false);
        EXPECT_EQ(f->get_string("k.s"), "h\xc3\xa9llo");
        EXPECT_EQ(f->get_string("k.s_nul"), with_nul);
        EXPECT_EQ(f->get_string("k.empty"), "");
        EXPECT_EQ(f->get_string("absent"), std::nullopt);
        EXPECT_EQ(f->get_int("absent"), std::nullopt);
        EXPECT_EQ(f->find("absent"), nullptr);
        const tfu::gguf::kv* v = f->find("k.i16");
        ASSERT_NE(v, nullptr);
        EXPECT_EQ(v->type, value_type::INT16);
        EXPECT_EQ(v->key, "k.i16");
        // kvs keep file order
        EXPECT_EQ(f->metadata().front().key, "k.u8");
        EXPECT_EQ(f->metadata().back().key, "k.empty");
    }
}

TEST(gguf, getters_refuse_wrong_types) {
    gguf_builder g;
    g.string("s", "x").scalar("i", value_type::INT32, int32_t(3)).scalar("b", value_type::BOOL, uint8_t(0));
    g.array("a", value_type::UINT8, std::vector<uint8_t>{1});
    bytes b = g.build();
    auto f = parse(b);
    auto status_of = [](auto&& fn) {
        try {
            fn();
        } catch (const tfu::error& e) {
            EXPECT_NE(std::string(e.what()).find("test.gguf"), std::string::npos) << e.what();
            return e.status();
        }
        return TFU_STATUS_OK;
    };
    EXPECT_EQ(status_of([&] { f->get_string("i"); }), TFU_STATUS_INVALID_FILE);
    EXPECT_EQ(status_of([&] { f->get_int("s"); }), TFU_STATUS_INVALID_FILE);
    EXPECT_EQ(status_of([&] { f->get_int("b"); }), TFU_STATUS_INVALID_FILE);
    EXPECT_EQ(status_of([&] { f->get_bool("i"); }), TFU_STATUS_INVALID_FILE);
    EXPECT_EQ(status_of([&] { f->get_float("s"); }), TFU_STATUS_INVALID_FILE);
    EXPECT_EQ(status_of([&] { f->get_array("s", value_type::STRING); }), TFU_STATUS_INVALID_FILE);
    EXPECT_EQ(status_of([&] { f->get_array("a", value_type::STRING); }), TFU_STATUS_INVALID_FILE);
    EXPECT_EQ(status_of([&] { f->get_array("a", value_type::FLOAT32); }), TFU_STATUS_INVALID_FILE);
    EXPECT_EQ(status_of([&] { f->get_string("a"); }), TFU_STATUS_INVALID_FILE);
    EXPECT_EQ(status_of([&] { f->get_array("a", value_type::INT64); }), TFU_STATUS_OK);  // any integer kind
    const tfu::gguf::kv* a = f->get_array("a", value_type::UINT8);
    ASSERT_NE(a, nullptr);
    try {  // index out of range: a caller bug (the kv does not know its file, the message names the key)
        a->array_int(1);
        ADD_FAILURE() << "array_int(1) of a 1-element array";
    } catch (const tfu::error& e) {
        EXPECT_EQ(e.status(), TFU_STATUS_INVALID_ARGUMENT);
        EXPECT_NE(std::string(e.what()).find("key 'a'"), std::string::npos) << e.what();
    }
    EXPECT_EQ(f->get_array("absent", value_type::UINT8), nullptr);
}

TEST(gguf, array_round_trip) {
    std::mt19937 rng(1234);
    std::printf("seed 1234\n");
    gguf_builder g;
    std::vector<uint8_t> au8 = {0, 1, 255};
    std::vector<int8_t> ai8 = {-128, 0, 127};
    std::vector<uint16_t> au16 = {0, 65535};
    std::vector<int16_t> ai16 = {-32768, 32767, 5};
    std::vector<uint32_t> au32 = {4294967295u, 7};
    std::vector<int32_t> ai32;
    for (int k = 0; k < 100; ++k) ai32.push_back(int32_t(rng()));
    std::vector<uint64_t> au64 = {0, uint64_t(std::numeric_limits<int64_t>::max())};
    std::vector<int64_t> ai64 = {std::numeric_limits<int64_t>::min(), -1, 42};
    std::vector<float> af32;
    for (int k = 0; k < 50; ++k) af32.push_back(std::uniform_real_distribution<float>(-10, 10)(rng));
    std::vector<double> af64 = {1e-300, -2.5, 3.0};
    std::vector<uint8_t> abool = {1, 0, 1, 1};
    std::vector<std::string> astr = {"hello", "", std::string("\0\x80", 2), "\xe2\x96\x81the"};
    g.array("a.u8", value_type::UINT8, au8)
        .array("a.i8", value_type::INT8, ai8)
        .array("a.u16", value_type::UINT16, au16)
        .array("a.i16", value_type::INT16, ai16)
        .array("a.u32", value_type::UINT32, au32)
        .array("a.i32", value_type::INT32, ai32)
        .array("a.u64", value_type::UINT64, au64)
        .array("a.i64", value_type::INT64, ai64)
        .array("a.f32", value_type::FLOAT32, af32)
        .array("a.f64", value_type::FLOAT64, af64)
        .array("a.bool", value_type::BOOL, abool)
        .array("a.empty", value_type::INT32, std::vector<int32_t>{})
        .strings("a.str", astr)
        .strings("a.str_empty", {});
    bytes b = g.build();
    auto f = parse(b);

    auto check_ints = [&](const char* key, value_type et, const auto& want) {
        SCOPED_TRACE(key);
        const tfu::gguf::kv* v = f->get_array(key, et);
        ASSERT_NE(v, nullptr);
        EXPECT_EQ(v->type, value_type::ARRAY);
        EXPECT_EQ(v->elem_type, et);
        ASSERT_EQ(v->count, want.size());
        for (size_t k = 0; k < want.size(); ++k) {
            EXPECT_EQ(v->array_int(k), int64_t(want[k])) << k;
            EXPECT_EQ(v->array_float(k), double(int64_t(want[k]))) << k;
        }
    };
    check_ints("a.u8", value_type::UINT8, au8);
    check_ints("a.i8", value_type::INT8, ai8);
    check_ints("a.u16", value_type::UINT16, au16);
    check_ints("a.i16", value_type::INT16, ai16);
    check_ints("a.u32", value_type::UINT32, au32);
    check_ints("a.i32", value_type::INT32, ai32);
    check_ints("a.u64", value_type::UINT64, au64);
    check_ints("a.i64", value_type::INT64, ai64);
    check_ints("a.bool", value_type::BOOL, abool);
    check_ints("a.empty", value_type::INT32, std::vector<int32_t>{});

    const tfu::gguf::kv* vf = f->get_array("a.f32", value_type::FLOAT32);
    ASSERT_NE(vf, nullptr);
    ASSERT_EQ(vf->count, af32.size());
    for (size_t k = 0; k < af32.size(); ++k) EXPECT_EQ(vf->array_float(k), double(af32[k]));  // exact: same bits
    const tfu::gguf::kv* vd = f->get_array("a.f64", value_type::FLOAT32);  // any float kind accepted
    ASSERT_NE(vd, nullptr);
    ASSERT_EQ(vd->count, af64.size());
    for (size_t k = 0; k < af64.size(); ++k) EXPECT_EQ(vd->array_float(k), af64[k]);
    EXPECT_THROW(vf->array_int(0), tfu::error);  // floats are not integers

    const tfu::gguf::kv* vs = f->get_array("a.str", value_type::STRING);
    ASSERT_NE(vs, nullptr);
    ASSERT_EQ(vs->count, astr.size());
    ASSERT_EQ(vs->strings.size(), astr.size());
    for (size_t k = 0; k < astr.size(); ++k) EXPECT_EQ(vs->strings[k], astr[k]);
    EXPECT_THROW(vs->array_int(0), tfu::error);
    const tfu::gguf::kv* ve = f->get_array("a.str_empty", value_type::STRING);
    ASSERT_NE(ve, nullptr);
    EXPECT_EQ(ve->count, 0u);
    EXPECT_TRUE(ve->strings.empty());
}

TEST(gguf, tensors_of_several_dtypes) {
    std::mt19937 rng(99);
    std::printf("seed 99\n");
    struct case_t {
        const char* name;
        dtype type;
        std::vector<int64_t> dims;
    };
    const std::vector<case_t> cases = {
        {"a.f32", dtype::F32, {8, 3}},      {"b.f16", dtype::F16, {5}},          {"c.bf16", dtype::BF16, {4, 2, 2, 2}},
        {"d.q8_0", dtype::Q8_0, {64, 2}},   {"e.q4_0", dtype::Q4_0, {32, 3}},    {"f.q4_k", dtype::Q4_K, {256, 1, 2}},
        {"g.q6_k", dtype::Q6_K, {512}},     {"h.i32", dtype::I32, {7, 1, 1, 1}},
    };
    for (uint32_t version : {2u, 3u}) {
        gguf_builder g;
        g.version = version;
        std::vector<bytes> data;
        for (const case_t& c : cases) {
            int64_t rows = 1;
            for (size_t d = 1; d < c.dims.size(); ++d) rows *= c.dims[d];
            data.push_back(random_bytes(rng, tfu::row_size(c.type, c.dims[0]) * size_t(rows)));
            g.tensor(c.name, uint32_t(c.type), c.dims, data.back());
        }
        layout lay;
        bytes b = g.build(&lay);
        auto f = parse(b);
        EXPECT_EQ(f->alignment(), 32u);
        EXPECT_EQ(f->data_offset(), lay.data_offset);
        EXPECT_EQ(f->data_offset() % 32, 0u);
        ASSERT_EQ(f->tensors().size(), cases.size());
        for (size_t k = 0; k < cases.size(); ++k) {
            SCOPED_TRACE(cases[k].name);
            const tfu::gguf::tensor_info* t = f->find_tensor(cases[k].name);
            ASSERT_NE(t, nullptr);
            EXPECT_EQ(t, &f->tensors()[k]);  // file order kept
            EXPECT_EQ(t->type, cases[k].type);
            EXPECT_EQ(t->n_dims, cases[k].dims.size());
            for (size_t d = 0; d < 4; ++d) EXPECT_EQ(t->ne[d], d < cases[k].dims.size() ? cases[k].dims[d] : 1);
            EXPECT_EQ(t->offset, lay.offsets[k]);
            EXPECT_EQ(t->offset % 32, 0u);
            EXPECT_EQ(t->nbytes, data[k].size());
            EXPECT_EQ(t->data, b.data() + lay.data_offset + lay.offsets[k]);
            EXPECT_EQ(std::memcmp(t->data, data[k].data(), data[k].size()), 0);
        }
        EXPECT_EQ(f->find_tensor("nope"), nullptr);
    }
}

TEST(gguf, custom_alignment) {
    std::mt19937 rng(7);
    std::printf("seed 7\n");
    for (uint32_t align : {1u, 8u, 64u, 256u}) {
        SCOPED_TRACE("alignment " + std::to_string(align));
        gguf_builder g;
        g.alignment = align;
        g.alignment_key = true;
        g.string("general.name", "x");
        bytes d1 = random_bytes(rng, 4 * 3), d2 = random_bytes(rng, 2 * 17);
        g.tensor("w1", uint32_t(dtype::F32), {3}, d1).tensor("w2", uint32_t(dtype::F16), {17}, d2);
        layout lay;
        bytes b = g.build(&lay);
        auto f = parse(b);
        EXPECT_EQ(f->alignment(), align);
        EXPECT_EQ(f->get_int("general.alignment"), align);
        EXPECT_EQ(f->data_offset(), lay.data_offset);
        EXPECT_EQ(f->data_offset() % align, 0u);
        const tfu::gguf::tensor_info* t2 = f->find_tensor("w2");
        ASSERT_NE(t2, nullptr);
        EXPECT_EQ(t2->offset, lay.offsets[1]);
        EXPECT_EQ(t2->offset % align, 0u);
        EXPECT_EQ(std::memcmp(t2->data, d2.data(), d2.size()), 0);
    }
    // An offset that is a multiple of 32 but not of the declared 64 is refused.
    gguf_builder g;
    g.alignment = 64;
    g.alignment_key = true;
    g.tensor("a", uint32_t(dtype::F32), {16}, bytes(64)).tensor("b", uint32_t(dtype::F32), {16}, bytes(64));
    layout lay;
    bytes b = g.build(&lay);
    poke<uint64_t>(b, lay.offset_pos[1], 96);
    expect_fail(b, TFU_STATUS_INVALID_FILE, {"test.gguf", "tensor 'b'", "offset 96", "alignment 64"});
}

TEST(gguf, bad_alignment_values) {
    for (uint32_t align : {0u, 3u, 48u, 0x80000001u}) {
        SCOPED_TRACE(align);
        gguf_builder g;
        g.scalar("general.alignment", value_type::UINT32, align);
        expect_fail(g.build(), TFU_STATUS_INVALID_FILE, {"general.alignment", "power of two"});
    }
    gguf_builder g;
    g.scalar("general.alignment", value_type::UINT64, uint64_t(32));
    expect_fail(g.build(), TFU_STATUS_INVALID_FILE, {"general.alignment", "uint64", "expected uint32"});
}

TEST(gguf, every_truncation_fails_cleanly) {
    std::mt19937 rng(5);
    std::printf("seed 5\n");
    gguf_builder g = small_file(rng);
    bytes full = g.build();
    ASSERT_NO_THROW(parse(full));
    for (size_t n = 0; n < full.size(); ++n) {
        bytes prefix(full.begin(), full.begin() + n);  // its own allocation: ASan sees reads past n
        try {
            parse(prefix);
            ADD_FAILURE() << "prefix of " << n << " bytes parsed";
        } catch (const tfu::error& e) {
            EXPECT_EQ(e.status(), TFU_STATUS_INVALID_FILE) << "prefix " << n << ": " << e.what();
            EXPECT_EQ(std::string(e.what()).rfind("test.gguf: ", 0), 0u) << e.what();
        }
    }
}

TEST(gguf, random_corruption_never_crashes) {
    const unsigned seed = 2024;
    std::printf("seed %u\n", seed);
    std::mt19937 rng(seed);
    gguf_builder g = small_file(rng);
    const bytes full = g.build();
    int parsed = 0, refused = 0;
    for (int iter = 0; iter < 3000; ++iter) {
        bytes b = full;
        int flips = 1 + int(rng() % 4);
        for (int k = 0; k < flips; ++k) {
            size_t pos = rng() % b.size();
            b[pos] = (rng() % 3 == 0) ? 0xff : uint8_t(rng());
        }
        try {
            auto f = parse(b);
            for (const tfu::gguf::tensor_info& t : f->tensors()) {  // everything claimed must be inside b
                ASSERT_GE(static_cast<const uint8_t*>(t.data), b.data());
                ASSERT_LE(static_cast<const uint8_t*>(t.data) + t.nbytes, b.data() + b.size());
            }
            ++parsed;
        } catch (const tfu::error& e) {
            EXPECT_NE(e.status(), TFU_STATUS_INTERNAL) << e.what();
            ++refused;
        }
    }
    std::printf("parsed %d, refused %d\n", parsed, refused);
    EXPECT_GT(refused, 0);
}

TEST(gguf, bad_magic_and_versions) {
    std::mt19937 rng(3);
    bytes b = small_file(rng).build();
    bytes m = b;
    m[0] = 'X';
    expect_fail(m, TFU_STATUS_INVALID_FILE, {"not a GGUF file", "expected 'GGUF'"});
    expect_fail(bytes{}, TFU_STATUS_INVALID_FILE, {"empty"});
    bytes v = b;
    poke<uint32_t>(v, 4, 1);
    expect_fail(v, TFU_STATUS_UNSUPPORTED, {"version 1", "not supported"});
    poke<uint32_t>(v, 4, 99);
    expect_fail(v, TFU_STATUS_INVALID_FILE, {"version 99"});
    poke<uint32_t>(v, 4, 0);
    expect_fail(v, TFU_STATUS_INVALID_FILE, {"version 0"});
    poke<uint32_t>(v, 4, 0x03000000);  // a big-endian v3 header
    expect_fail(v, TFU_STATUS_INVALID_FILE, {"big-endian"});
}

TEST(gguf, impossible_counts_fail_fast) {
    std::mt19937 rng(11);
    layout lay;
    bytes b = small_file(rng).build(&lay);
    for (uint64_t n : {uint64_t(1) << 63, k_u64_max, uint64_t(1) << 40}) {
        bytes c = b;
        poke<uint64_t>(c, lay.kv_count_pos, n);
        expect_fail(c, TFU_STATUS_INVALID_FILE, {"kv_count " + std::to_string(n)});
        c = b;
        poke<uint64_t>(c, lay.tensor_count_pos, n);
        expect_fail(c, TFU_STATUS_INVALID_FILE, {"tensor_count " + std::to_string(n)});
    }
    // Raw headers followed by one key/value with a huge length or count, then a little padding.
    auto one_kv = [](auto&& body) {
        out_buf o;
        o.b = {'G', 'G', 'U', 'F'};
        o.u32(3);
        o.u64(0);
        o.u64(1);
        body(o);
        o.b.resize(o.b.size() + 64, 0);
        return o.b;
    };
    expect_fail(one_kv([](out_buf& o) { o.u64(k_u64_max); }), TFU_STATUS_INVALID_FILE,
                {"key/value 0", "key length 18446744073709551615"});
    expect_fail(one_kv([](out_buf& o) {
                    o.str("k");
                    o.u32(uint32_t(value_type::STRING));
                    o.u64(k_u64_max);
                }),
                TFU_STATUS_INVALID_FILE, {"key 'k'", "string value length 18446744073709551615"});
    for (value_type et : {value_type::UINT8, value_type::UINT32, value_type::FLOAT64, value_type::STRING}) {
        for (uint64_t n : {uint64_t(1) << 62, k_u64_max, k_u64_max / 4 + 1}) {
            SCOPED_TRACE(std::string(tfu::gguf::value_type_name(et)) + " x " + std::to_string(n));
            expect_fail(one_kv([&](out_buf& o) {
                            o.str("arr");
                            o.u32(uint32_t(value_type::ARRAY));
                            o.u32(uint32_t(et));
                            o.u64(n);
                        }),
                        TFU_STATUS_INVALID_FILE, {"key 'arr'", "array of " + std::to_string(n)});
        }
    }
    // A string array whose count fits the bytes but whose elements do not.
    expect_fail(one_kv([](out_buf& o) {
                    o.str("arr");
                    o.u32(uint32_t(value_type::ARRAY));
                    o.u32(uint32_t(value_type::STRING));
                    o.u64(3);
                    o.str("ok");
                    o.u64(1000);
                }),
                TFU_STATUS_INVALID_FILE, {"key 'arr'", "string element 1 length 1000"});
}

TEST(gguf, tensor_shape_refusals) {
    auto with_dims = [](uint32_t type, std::vector<int64_t> dims) {
        gguf_builder g;
        g.tensor("w", type, std::move(dims), bytes(64));
        return g.build();
    };
    const int64_t big = int64_t(1) << 32;
    expect_fail(with_dims(uint32_t(dtype::F32), {big, big, big}), TFU_STATUS_INVALID_FILE,
                {"tensor 'w'", "element count overflows"});
    expect_fail(with_dims(uint32_t(dtype::F32), {int64_t(1) << 62}), TFU_STATUS_INVALID_FILE,
                {"tensor 'w'", "byte size overflows"});
    expect_fail(with_dims(uint32_t(dtype::F32), {16, 0}), TFU_STATUS_INVALID_FILE, {"dimension 1 is 0"});
    expect_fail(with_dims(uint32_t(dtype::F32), {-4}), TFU_STATUS_INVALID_FILE, {"dimension 0 is -4"});
    expect_fail(with_dims(uint32_t(dtype::F32), {}), TFU_STATUS_INVALID_FILE, {"n_dims 0"});
    expect_fail(with_dims(uint32_t(dtype::F32), {1, 1, 1, 1, 1}), TFU_STATUS_INVALID_FILE, {"n_dims 5"});
    expect_fail(with_dims(uint32_t(dtype::Q8_0), {33}), TFU_STATUS_INVALID_FILE,
                {"tensor 'w'", "not a multiple of the q8_0 block size 32"});
    expect_fail(with_dims(77, {16}), TFU_STATUS_UNSUPPORTED, {"test.gguf", "tensor 'w'", "type id 77"});
    expect_fail(with_dims(4, {16}), TFU_STATUS_UNSUPPORTED, {"tensor 'w'", "type id 4"});  // removed Q4_2
}

TEST(gguf, tensor_data_refusals) {
    std::mt19937 rng(13);
    gguf_builder g;
    g.tensor("blk.0.attn_q.weight", uint32_t(dtype::F32), {8}, random_bytes(rng, 32))
        .tensor("blk.0.attn_k.weight", uint32_t(dtype::F32), {8}, random_bytes(rng, 32));
    layout lay;
    const bytes b = g.build(&lay);
    ASSERT_NO_THROW(parse(b));

    bytes c = b;
    poke<uint64_t>(c, lay.offset_pos[1], 4096);
    expect_fail(c, TFU_STATUS_INVALID_FILE,
                {"test.gguf: tensor 'blk.0.attn_k.weight': data (offset 4096, 32 bytes) runs past the end of the "
                 "file (size " + std::to_string(b.size())});
    c = b;
    poke<uint64_t>(c, lay.offset_pos[1], k_u64_max - 31);  // offset + nbytes wraps around
    expect_fail(c, TFU_STATUS_INVALID_FILE, {"runs past the end"});
    c = b;
    poke<uint64_t>(c, lay.offset_pos[1], 4);
    expect_fail(c, TFU_STATUS_INVALID_FILE, {"offset 4 is not a multiple of the alignment 32"});
    c = b;
    poke<uint64_t>(c, lay.offset_pos[1], 0);  // both tensors at 0
    expect_fail(c, TFU_STATUS_INVALID_FILE, {"overlaps"});
    c = b;
    c.pop_back();  // last tensor one byte short
    expect_fail(c, TFU_STATUS_INVALID_FILE, {"tensor 'blk.0.attn_k.weight'", "runs past the end"});
    c.assign(b.begin(), b.begin() + lay.header_end + 1);  // padding cut: data section starts past the end
    expect_fail(c, TFU_STATUS_INVALID_FILE, {"data section would start"});
}

TEST(gguf, duplicate_and_malformed_names) {
    {
        gguf_builder g;
        g.tensor("w", uint32_t(dtype::F32), {8}, bytes(32)).tensor("w", uint32_t(dtype::F32), {8}, bytes(32));
        expect_fail(g.build(), TFU_STATUS_INVALID_FILE, {"tensor 'w'", "duplicate tensor name"});
    }
    {
        gguf_builder g;
        g.tensor("", uint32_t(dtype::F32), {8}, bytes(32));
        expect_fail(g.build(), TFU_STATUS_INVALID_FILE, {"tensor info 0", "empty tensor name"});
    }
    {
        gguf_builder g;
        g.scalar("a.b", value_type::INT32, int32_t(1)).scalar("a.b", value_type::INT32, int32_t(2));
        expect_fail(g.build(), TFU_STATUS_INVALID_FILE, {"key 'a.b'", "duplicate key"});
    }
    {
        gguf_builder g;
        g.string("bad\nkey", "v");
        expect_fail(g.build(), TFU_STATUS_INVALID_FILE, {"key/value 0", "bad\\x0akey", "not printable"});
    }
    {
        gguf_builder g;
        g.string("", "v");
        expect_fail(g.build(), TFU_STATUS_INVALID_FILE, {"empty key"});
    }
}

TEST(gguf, malformed_values) {
    {
        gguf_builder g;
        g.scalar("k", value_type::BOOL, uint8_t(2));
        expect_fail(g.build(), TFU_STATUS_INVALID_FILE, {"key 'k'", "bool value 2"});
    }
    {
        gguf_builder g;
        g.array("k", value_type::BOOL, std::vector<uint8_t>{0, 1, 7});
        expect_fail(g.build(), TFU_STATUS_INVALID_FILE, {"key 'k'", "bool element 2"});
    }
    {
        gguf_builder g;
        g.scalar("k", value_type::UINT64, k_u64_max);
        expect_fail(g.build(), TFU_STATUS_INVALID_FILE, {"key 'k'", "larger than INT64_MAX"});
    }
    {
        gguf_builder g;
        g.array("k", value_type::UINT64, std::vector<uint64_t>{1, uint64_t(1) << 63});
        expect_fail(g.build(), TFU_STATUS_INVALID_FILE, {"key 'k'", "uint64 element 1"});
    }
    {
        gguf_builder g;
        g.scalar("k", value_type(13), uint32_t(0));
        expect_fail(g.build(), TFU_STATUS_INVALID_FILE, {"key 'k'", "unknown value type id 13"});
    }
    {
        gguf_builder g;
        g.array("k", value_type(200), std::vector<uint32_t>{0});
        expect_fail(g.build(), TFU_STATUS_INVALID_FILE, {"key 'k'", "unknown array element type id 200"});
    }
    {
        gguf_builder g;  // an array of arrays
        g.array("k", value_type::ARRAY, std::vector<uint32_t>{uint32_t(value_type::UINT8), 0, 0});
        expect_fail(g.build(), TFU_STATUS_UNSUPPORTED, {"key 'k'", "nested arrays"});
    }
}

// ---------------------------------------------------------------------------------------------------------
// open(): the mmap path.

std::string temp_path(const char* name) {
    return (testing::TempDir().empty() ? std::string("/tmp/") : testing::TempDir()) + "tfu_gguf_" +
           std::to_string(getpid()) + "_" + name;
}

TEST(gguf, open_maps_a_file) {
    std::mt19937 rng(17);
    gguf_builder g = small_file(rng);
    const bytes b = g.build();
    const std::string path = temp_path("ok.gguf");
    {
        std::ofstream out(path, std::ios::binary);
        out.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
    }
    {
        auto f = file::open(path);
        EXPECT_EQ(f->path(), path);
        EXPECT_EQ(f->size(), b.size());
        EXPECT_EQ(f->get_string("general.architecture"), "llama");
        EXPECT_EQ(f->get_int("llama.block_count"), 5);
        const tfu::gguf::kv* as = f->get_array("x.as", value_type::STRING);
        ASSERT_NE(as, nullptr);
        EXPECT_EQ(as->strings.at(2), "ccc");
        const tfu::gguf::tensor_info* t = f->find_tensor("t.q8");
        ASSERT_NE(t, nullptr);
        EXPECT_EQ(t->data, f->base() + f->data_offset() + t->offset);
        auto m = parse(b);
        EXPECT_EQ(std::memcmp(t->data, m->find_tensor("t.q8")->data, t->nbytes), 0);
    }
    // A corrupt file on disk: same refusal, named by its path.
    bytes c = b;
    c.resize(c.size() - 3);
    {
        std::ofstream out(path, std::ios::binary | std::ios::trunc);
        out.write(reinterpret_cast<const char*>(c.data()), std::streamsize(c.size()));
    }
    try {
        file::open(path);
        ADD_FAILURE() << "truncated file opened";
    } catch (const tfu::error& e) {
        EXPECT_EQ(e.status(), TFU_STATUS_INVALID_FILE);
        EXPECT_EQ(std::string(e.what()).rfind(path + ": ", 0), 0u) << e.what();
    }
    // An empty file.
    { std::ofstream out(path, std::ios::binary | std::ios::trunc); }
    try {
        file::open(path);
        ADD_FAILURE() << "empty file opened";
    } catch (const tfu::error& e) {
        EXPECT_EQ(e.status(), TFU_STATUS_INVALID_FILE) << e.what();
    }
    std::remove(path.c_str());
}

TEST(gguf, open_reads_only_the_header) {
    // A 5 GiB f32 tensor in a sparse file: open() validates it without touching a single data page.
    gguf_builder g;
    g.string("general.architecture", "llama");
    const int64_t ne0 = int64_t(1) << 28, ne1 = 5;
    g.tensor("big", uint32_t(dtype::F32), {ne0, ne1}, bytes{});  // data added below as a hole
    layout lay;
    const bytes header = g.build(&lay);
    const std::string path = temp_path("sparse.gguf");
    {
        std::ofstream out(path, std::ios::binary);
        out.write(reinterpret_cast<const char*>(header.data()), std::streamsize(header.size()));
    }
    const size_t nbytes = size_t(ne0 * ne1 * 4);
    if (truncate(path.c_str(), off_t(lay.data_offset + nbytes)) != 0) {
        std::remove(path.c_str());
        GTEST_SKIP() << "cannot make a sparse 5 GiB file in " << path;
    }
    {
        auto f = file::open(path);
        const tfu::gguf::tensor_info* t = f->find_tensor("big");
        ASSERT_NE(t, nullptr);
        EXPECT_EQ(t->nbytes, nbytes);
        EXPECT_EQ(f->size(), lay.data_offset + nbytes);
        // Page-cache residency of the data past the first 64 MiB (kernel read-ahead may pull in some pages
        // after the header): none may be resident, as nothing read them.
        const size_t page = size_t(sysconf(_SC_PAGESIZE));
        const size_t skip = size_t(64) << 20;
        const uint8_t* begin = f->base() + skip;
        const size_t len = f->size() - skip;
        std::vector<unsigned char> resident((len + page - 1) / page);
        ASSERT_EQ(mincore(const_cast<uint8_t*>(begin), len, resident.data()), 0) << std::strerror(errno);
        size_t n_resident = 0;
        for (unsigned char r : resident) n_resident += r & 1;
        EXPECT_EQ(n_resident, 0u) << "of " << resident.size() << " pages";
    }
    std::remove(path.c_str());
}

TEST(gguf, open_missing_file_and_directory) {
    const std::string missing = temp_path("does_not_exist.gguf");
    try {
        file::open(missing);
        ADD_FAILURE() << "opened a missing file";
    } catch (const tfu::error& e) {
        EXPECT_EQ(e.status(), TFU_STATUS_NOT_FOUND);
        EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
    }
    try {
        file::open("/tmp");
        ADD_FAILURE() << "opened a directory";
    } catch (const tfu::error& e) {
        EXPECT_EQ(e.status(), TFU_STATUS_IO_ERROR) << e.what();
        EXPECT_NE(std::string(e.what()).find("/tmp"), std::string::npos) << e.what();
    }
}

// ---------------------------------------------------------------------------------------------------------
// The real files in ../shared.

TEST(gguf, stories260k) {
    const std::string path = std::string(TFU_SHARED_DIR) + "/models/stories260K.gguf";
    auto f = file::open(path);
    EXPECT_EQ(f->version(), 3u);
    EXPECT_EQ(f->get_string("general.architecture"), "llama");
    EXPECT_EQ(f->get_int("llama.embedding_length"), 64);
    EXPECT_EQ(f->get_int("llama.block_count"), 5);
    EXPECT_EQ(f->get_int("llama.attention.head_count"), 8);
    EXPECT_EQ(f->get_int("llama.attention.head_count_kv"), 4);
    const tfu::gguf::kv* tokens = f->get_array("tokenizer.ggml.tokens", value_type::STRING);
    ASSERT_NE(tokens, nullptr);
    EXPECT_EQ(tokens->count, 512u);
    EXPECT_EQ(tokens->strings[0], "<unk>");
    const tfu::gguf::kv* scores = f->get_array("tokenizer.ggml.scores", value_type::FLOAT32);
    ASSERT_NE(scores, nullptr);
    EXPECT_EQ(scores->count, 512u);
    const tfu::gguf::tensor_info* emb = f->find_tensor("token_embd.weight");
    ASSERT_NE(emb, nullptr);
    EXPECT_EQ(emb->type, dtype::F32);
    EXPECT_EQ(emb->n_dims, 2u);
    EXPECT_EQ(emb->ne[0], 64);
    EXPECT_EQ(emb->ne[1], 512);
    EXPECT_EQ(emb->nbytes, size_t(64 * 512 * 4));
    // The weights are trained values: finite and not all zero.
    const float* w = static_cast<const float*>(emb->data);
    double sum_abs = 0;
    for (int64_t k = 0; k < 64 * 512; ++k) {
        ASSERT_TRUE(std::isfinite(w[k])) << k;
        sum_abs += std::fabs(w[k]);
    }
    EXPECT_GT(sum_abs, 1.0);
    EXPECT_NE(f->find_tensor("blk.4.ffn_down.weight"), nullptr);
    EXPECT_EQ(f->find_tensor("blk.5.ffn_down.weight"), nullptr);
    size_t total = 0;
    for (const tfu::gguf::tensor_info& t : f->tensors()) total += t.nbytes;
    EXPECT_LE(f->data_offset() + total, f->size());
    std::printf("%s: v%u, %zu kvs, %zu tensors, %zu bytes of data from %zu\n", path.c_str(), f->version(),
                f->metadata().size(), f->tensors().size(), total, f->data_offset());
}

TEST(gguf, shared_vocab_files) {
    const std::string dir = std::string(TFU_SHARED_DIR) + "/vocab";
    DIR* d = opendir(dir.c_str());
    ASSERT_NE(d, nullptr) << dir;
    std::vector<std::string> names;
    while (dirent* e = readdir(d)) {
        std::string n = e->d_name;
        if (n.size() > 5 && n.compare(n.size() - 5, 5, ".gguf") == 0) names.push_back(n);
    }
    closedir(d);
    ASSERT_GE(names.size(), 5u);
    for (const std::string& n : names) {
        SCOPED_TRACE(n);
        std::unique_ptr<file> f;
        ASSERT_NO_THROW(f = file::open(dir + "/" + n));
        std::optional<std::string> model = f->get_string("tokenizer.ggml.model");
        ASSERT_TRUE(model.has_value());
        const tfu::gguf::kv* tokens = f->get_array("tokenizer.ggml.tokens", value_type::STRING);
        ASSERT_NE(tokens, nullptr);
        EXPECT_GT(tokens->count, 100u);
        std::printf("%s: v%u, %zu kvs, %zu tensors, model %s, %llu tokens\n", n.c_str(), f->version(),
                    f->metadata().size(), f->tensors().size(), model->c_str(), (unsigned long long)tokens->count);
    }
}

}  // namespace
