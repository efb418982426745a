// GGUF writer tests: the exact bytes of a small file, writer -> reader round trips of every metadata type and
// every tensor dtype at several alignments, argument refusals, atomic write() (failures leave the target
// untouched, no temporary files), and a re-write of stories260K that the reader loads identically.
#include <gtest/gtest.h>

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/quant.h"
#include "format/gguf.h"
#include "format/gguf_writer.h"

namespace {

using tfu::dtype;
using tfu::gguf::file;
using tfu::gguf::value_type;
using tfu::gguf::writer;
using bytes = std::vector<uint8_t>;

const std::string k_stories = std::string(TFU_SHARED_DIR) + "/models/stories260K.gguf";

// Runs fn, expecting a tfu::error with `status` whose message contains `needle`.
template <typename Fn>
void expect_error(Fn&& fn, tfu_status status, const std::string& needle) {
    try {
        fn();
        ADD_FAILURE() << "no error thrown (expected status " << int(status) << ", '" << needle << "')";
    } catch (const tfu::error& e) {
        EXPECT_EQ(e.status(), status) << e.what();
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "'" << needle << "' not in: " << e.what();
    }
}

// A fresh directory under /tmp, removed (with its files) at the end of the test.
struct temp_dir {
    std::string path;
    temp_dir() {
        char tmpl[] = "/tmp/tfu_gguf_writer_XXXXXX";
        char* p = mkdtemp(tmpl);
        if (p == nullptr) throw std::runtime_error("mkdtemp failed");
        path = p;
    }
    ~temp_dir() {
        for (const std::string& f : list()) std::remove((path + "/" + f).c_str());
        ::rmdir(path.c_str());
    }
    std::vector<std::string> list() const {
        std::vector<std::string> out;
        if (DIR* d = opendir(path.c_str())) {
            while (dirent* e = readdir(d))
                if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) out.push_back(e->d_name);
            closedir(d);
        }
        return out;
    }
};

bytes read_all(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// --- exact layout ----------------------------------------------------------------------------------------

struct expected_bytes {
    bytes b;
    template <typename T>
    void put(T v) {
        uint8_t t[sizeof(T)];
        std::memcpy(t, &v, sizeof(T));
        b.insert(b.end(), t, t + sizeof(T));
    }
    void str(const std::string& s) {
        put<uint64_t>(s.size());
        b.insert(b.end(), s.begin(), s.end());
    }
    void pad(size_t a) {
        while (b.size() % a) b.push_back(0);
    }
};

// The spec's layout, byte by byte, built independently of the writer and of the reader.
TEST(gguf_writer, exact_bytes_of_a_small_file) {
    writer w;
    w.set_u32("a.n", 7);
    w.set_string("a.s", "hi");
    const float t0[3] = {1.0f, -2.0f, 0.5f};
    const uint16_t t1[2] = {0x3c00, 0xc000};
    w.add_tensor("t0", dtype::F32, {3}, t0, sizeof t0);
    w.add_tensor("t1", dtype::F16, {1, 2}, t1, sizeof t1);

    expected_bytes e;
    e.b = {'G', 'G', 'U', 'F'};
    e.put<uint32_t>(3);
    e.put<uint64_t>(2);  // tensors
    e.put<uint64_t>(2);  // kvs
    e.str("a.n");
    e.put<uint32_t>(4);  // UINT32
    e.put<uint32_t>(7);
    e.str("a.s");
    e.put<uint32_t>(8);  // STRING
    e.str("hi");
    e.str("t0");
    e.put<uint32_t>(1);
    e.put<int64_t>(3);
    e.put<uint32_t>(0);  // F32
    e.put<uint64_t>(0);
    e.str("t1");
    e.put<uint32_t>(2);
    e.put<int64_t>(1);
    e.put<int64_t>(2);
    e.put<uint32_t>(1);   // F16
    e.put<uint64_t>(32);  // 12 bytes of t0 padded to 32
    e.pad(32);
    e.b.insert(e.b.end(), reinterpret_cast<const uint8_t*>(t0), reinterpret_cast<const uint8_t*>(t0) + 12);
    e.pad(32);
    e.b.insert(e.b.end(), reinterpret_cast<const uint8_t*>(t1), reinterpret_cast<const uint8_t*>(t1) + 4);
    e.pad(32);
    EXPECT_EQ(w.to_bytes(), e.b);
    EXPECT_EQ(w.tensor_offset("t1"), 32u);
}

// --- metadata round trip ---------------------------------------------------------------------------------

template <typename T>
std::vector<T> random_values(std::mt19937_64& rng, size_t n) {
    std::vector<T> v(n);
    for (size_t i = 0; i < n; ++i) {
        if constexpr (std::is_floating_point_v<T>) {
            v[i] = T(std::uniform_real_distribution<double>(-1e6, 1e6)(rng));
        } else {
            uint64_t r = rng();
            std::memcpy(&v[i], &r, sizeof(T));
        }
    }
    if (n >= 2) {
        v[0] = std::numeric_limits<T>::lowest();
        v[1] = std::numeric_limits<T>::max();
    }
    return v;
}

template <typename T>
void check_array(const file& f, const std::string& key, value_type et, const std::vector<T>& want) {
    SCOPED_TRACE(key);
    const tfu::gguf::kv* v = f.find(key);
    ASSERT_NE(v, nullptr);
    ASSERT_EQ(v->type, value_type::ARRAY);
    EXPECT_EQ(v->elem_type, et);
    ASSERT_EQ(v->count, want.size());
    for (size_t i = 0; i < want.size(); ++i) {
        T got;
        std::memcpy(&got, v->array_data + i * sizeof(T), sizeof(T));
        ASSERT_EQ(got, want[i]) << "element " << i;
    }
}

TEST(gguf_writer, every_metadata_type_round_trips) {
    const uint64_t seed = std::random_device{}();
    std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
    std::mt19937_64 rng(seed);

    writer w;
    w.set_u8("s.u8", 255);
    w.set_i8("s.i8", -128);
    w.set_u16("s.u16", 65535);
    w.set_i16("s.i16", -32768);
    w.set_u32("s.u32", 4294967295u);
    w.set_i32("s.i32", std::numeric_limits<int32_t>::min());
    w.set_u64("s.u64", uint64_t(std::numeric_limits<int64_t>::max()));  // the reader's limit
    w.set_i64("s.i64", std::numeric_limits<int64_t>::min());
    w.set_f32("s.f32", -3.25e-7f);
    w.set_f64("s.f64", 1.0 / 3.0);
    w.set_bool("s.true", true);
    w.set_bool("s.false", false);
    const std::string odd("nul\0 and \xC3\xA9 and \xFF", 16);  // string values are bytes, not checked
    w.set_string("s.str", odd);
    w.set_string("s.empty", "");

    const auto u8 = random_values<uint8_t>(rng, 33);
    const auto i8 = random_values<int8_t>(rng, 5);
    const auto u16 = random_values<uint16_t>(rng, 7);
    const auto i16 = random_values<int16_t>(rng, 9);
    const auto u32 = random_values<uint32_t>(rng, 11);
    const auto i32 = random_values<int32_t>(rng, 13);
    auto u64 = random_values<uint64_t>(rng, 15);
    for (uint64_t& x : u64) x >>= 1;  // <= INT64_MAX: the reader refuses larger uint64 values
    const auto i64 = random_values<int64_t>(rng, 17);
    const auto f32 = random_values<float>(rng, 19);
    const auto f64 = random_values<double>(rng, 21);
    const bool bools[5] = {true, false, false, true, true};
    const std::vector<std::string> strs = {"a", "", std::string("x\0y", 3), "\xE2\x96\x81hello", std::string(300, 'z')};

    w.set_array("a.u8", u8);
    w.set_array("a.i8", i8);
    w.set_array("a.u16", u16);
    w.set_array("a.i16", i16);
    w.set_array("a.u32", u32);
    w.set_array("a.i32", i32);
    w.set_array("a.u64", u64);
    w.set_array("a.i64", i64);
    w.set_array("a.f32", f32);
    w.set_array("a.f64", f64);
    w.set_array("a.bool", bools, 5);
    w.set_array("a.str", strs);
    w.set_array("a.empty", std::vector<int32_t>{});
    w.set_array("a.empty_str", std::vector<std::string>{});
    // Replacing a value keeps the key's position and changes its type.
    w.set_u8("s.replaced", 1);
    w.set_string("s.replaced", "now a string");
    w.set_u8("s.removed", 1);
    EXPECT_TRUE(w.remove("s.removed"));
    EXPECT_FALSE(w.remove("s.removed"));

    const bytes buf = w.to_bytes();
    EXPECT_EQ(buf.size() % 32, 0u);
    std::unique_ptr<file> f = file::from_memory(buf.data(), buf.size(), "mem");
    EXPECT_EQ(f->version(), 3u);
    EXPECT_TRUE(f->tensors().empty());
    ASSERT_EQ(f->metadata().size(), w.n_kv());

    EXPECT_EQ(f->find("s.u8")->type, value_type::UINT8);
    EXPECT_EQ(f->get_int("s.u8"), 255);
    EXPECT_EQ(f->find("s.i8")->type, value_type::INT8);
    EXPECT_EQ(f->get_int("s.i8"), -128);
    EXPECT_EQ(f->find("s.u16")->type, value_type::UINT16);
    EXPECT_EQ(f->get_int("s.u16"), 65535);
    EXPECT_EQ(f->find("s.i16")->type, value_type::INT16);
    EXPECT_EQ(f->get_int("s.i16"), -32768);
    EXPECT_EQ(f->find("s.u32")->type, value_type::UINT32);
    EXPECT_EQ(f->get_int("s.u32"), 4294967295LL);
    EXPECT_EQ(f->find("s.i32")->type, value_type::INT32);
    EXPECT_EQ(f->get_int("s.i32"), std::numeric_limits<int32_t>::min());
    EXPECT_EQ(f->find("s.u64")->type, value_type::UINT64);
    EXPECT_EQ(f->get_int("s.u64"), std::numeric_limits<int64_t>::max());
    EXPECT_EQ(f->find("s.i64")->type, value_type::INT64);
    EXPECT_EQ(f->get_int("s.i64"), std::numeric_limits<int64_t>::min());
    EXPECT_EQ(f->find("s.f32")->type, value_type::FLOAT32);
    EXPECT_EQ(f->get_float("s.f32"), double(-3.25e-7f));
    EXPECT_EQ(f->find("s.f64")->type, value_type::FLOAT64);
    EXPECT_EQ(f->get_float("s.f64"), 1.0 / 3.0);
    EXPECT_EQ(f->get_bool("s.true"), true);
    EXPECT_EQ(f->get_bool("s.false"), false);
    EXPECT_EQ(f->get_string("s.str"), odd);
    EXPECT_EQ(f->get_string("s.empty"), "");
    EXPECT_EQ(f->get_string("s.replaced"), "now a string");
    EXPECT_EQ(f->find("s.removed"), nullptr);

    check_array(*f, "a.u8", value_type::UINT8, u8);
    check_array(*f, "a.i8", value_type::INT8, i8);
    check_array(*f, "a.u16", value_type::UINT16, u16);
    check_array(*f, "a.i16", value_type::INT16, i16);
    check_array(*f, "a.u32", value_type::UINT32, u32);
    check_array(*f, "a.i32", value_type::INT32, i32);
    check_array(*f, "a.u64", value_type::UINT64, u64);
    check_array(*f, "a.i64", value_type::INT64, i64);
    check_array(*f, "a.f32", value_type::FLOAT32, f32);
    check_array(*f, "a.f64", value_type::FLOAT64, f64);
    check_array(*f, "a.bool", value_type::BOOL, std::vector<uint8_t>{1, 0, 0, 1, 1});
    check_array(*f, "a.empty", value_type::INT32, std::vector<int32_t>{});
    const tfu::gguf::kv* s = f->get_array("a.str", value_type::STRING);
    ASSERT_NE(s, nullptr);
    ASSERT_EQ(s->strings.size(), strs.size());
    for (size_t i = 0; i < strs.size(); ++i) EXPECT_EQ(std::string(s->strings[i]), strs[i]);
    EXPECT_EQ(f->get_array("a.empty_str", value_type::STRING)->count, 0u);

    // Key order is the order of first set, "s.replaced" included.
    std::vector<std::string> keys;
    for (const auto& v : f->metadata()) keys.emplace_back(v.key);
    EXPECT_EQ(keys.front(), "s.u8");
    EXPECT_EQ(keys[14], "a.u8");
    EXPECT_EQ(keys.back(), "s.replaced");

    // set_kv copies every kind back into an identical file.
    writer w2;
    for (const auto& v : f->metadata()) w2.set_kv(v);
    EXPECT_EQ(w2.to_bytes(), buf);
}

// --- tensors ---------------------------------------------------------------------------------------------

const dtype k_all_types[] = {dtype::F32,  dtype::F16,  dtype::BF16, dtype::Q8_0, dtype::Q4_0, dtype::Q4_1, dtype::Q5_0,
                             dtype::Q5_1, dtype::Q2_K, dtype::Q3_K, dtype::Q4_K, dtype::Q5_K, dtype::Q6_K};

// Quantized rows of random floats: n_rows x ne0 of `type`.
bytes random_tensor(std::mt19937_64& rng, dtype type, int64_t ne0, int64_t n_rows) {
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> x(static_cast<size_t>(ne0));
    const size_t rs = tfu::row_size(type, ne0);
    bytes out(rs * size_t(n_rows));
    for (int64_t r = 0; r < n_rows; ++r) {
        for (float& v : x) v = nd(rng);
        tfu::quantize_row(type, x.data(), out.data() + size_t(r) * rs, ne0);
    }
    return out;
}

class gguf_writer_align : public ::testing::TestWithParam<uint32_t> {};

TEST_P(gguf_writer_align, every_tensor_type_round_trips) {
    const uint32_t align = GetParam();
    const uint64_t seed = std::random_device{}();
    std::printf("seed %llu, alignment %u\n", static_cast<unsigned long long>(seed), align);
    std::mt19937_64 rng(seed);

    writer w;
    w.set_string("general.architecture", "test");
    if (align != 32) w.set_u32("general.alignment", align);
    EXPECT_EQ(w.alignment(), align);
    struct spec {
        std::string name;
        dtype type;
        std::vector<int64_t> ne;
        bytes data;
    };
    std::vector<spec> specs;
    for (dtype t : k_all_types) {
        const int64_t bs = tfu::traits(t).block_size;
        // 1 to 4 dims with odd sizes, so that tensor sizes are not multiples of the alignment.
        std::vector<std::vector<int64_t>> shapes = {{bs * 3}, {bs, 5}, {bs * 2, 3, 2}, {bs, 1, 3, 1}};
        for (size_t k = 0; k < shapes.size(); ++k) {
            spec s;
            s.name = std::string(tfu::dtype_name(t)) + "." + std::to_string(k);
            s.type = t;
            s.ne = shapes[k];
            int64_t rows = 1;
            for (size_t d = 1; d < s.ne.size(); ++d) rows *= s.ne[d];
            s.data = random_tensor(rng, t, s.ne[0], rows);
            specs.push_back(s);
        }
    }
    // Half as bytes, half through the fill callback.
    for (size_t i = 0; i < specs.size(); ++i) {
        const spec& s = specs[i];
        if (i % 2 == 0) {
            w.add_tensor(s.name, s.type, s.ne.data(), uint32_t(s.ne.size()), s.data.data(), s.data.size());
        } else {
            const bytes* src = &s.data;
            w.add_tensor(s.name, s.type, s.ne.data(), uint32_t(s.ne.size()), [src](void* dst, size_t n) {
                ASSERT_EQ(n, src->size());
                std::memcpy(dst, src->data(), n);
            });
        }
    }
    const bytes buf = w.to_bytes();
    EXPECT_EQ(buf.size() % align, 0u);
    std::unique_ptr<file> f = file::from_memory(buf.data(), buf.size(), "mem");
    EXPECT_EQ(f->alignment(), align);
    EXPECT_EQ(f->data_offset() % align, 0u);
    ASSERT_EQ(f->tensors().size(), specs.size());
    size_t expected_end = f->data_offset();
    for (size_t i = 0; i < specs.size(); ++i) {
        const spec& s = specs[i];
        const tfu::gguf::tensor_info& ti = f->tensors()[i];
        SCOPED_TRACE(s.name);
        EXPECT_EQ(ti.name, s.name);
        EXPECT_EQ(ti.type, s.type);
        ASSERT_EQ(ti.n_dims, s.ne.size());
        for (size_t d = 0; d < 4; ++d) EXPECT_EQ(ti.ne[d], d < s.ne.size() ? s.ne[d] : 1);
        EXPECT_EQ(ti.offset % align, 0u);
        EXPECT_EQ(ti.offset, w.tensor_offset(s.name));
        ASSERT_EQ(ti.nbytes, s.data.size());
        EXPECT_EQ(std::memcmp(ti.data, s.data.data(), ti.nbytes), 0);
        // Tensors are packed in order, each padded with zeros to the alignment.
        EXPECT_EQ(f->data_offset() + ti.offset, expected_end);
        const uint8_t* end = static_cast<const uint8_t*>(ti.data) + ti.nbytes;
        expected_end = f->data_offset() + ti.offset + ti.nbytes;
        while (expected_end % align) {
            EXPECT_EQ(*end++, 0) << "padding byte at " << expected_end;
            ++expected_end;
        }
    }
    EXPECT_EQ(expected_end, buf.size());
}

INSTANTIATE_TEST_SUITE_P(alignments, gguf_writer_align, ::testing::Values(32u, 1u, 8u, 64u, 4096u));

// --- refusals --------------------------------------------------------------------------------------------

TEST(gguf_writer, refuses_bad_arguments) {
    writer w;
    const float x[32] = {};
    expect_error([&] { w.set_u32("", 1); }, TFU_STATUS_INVALID_ARGUMENT, "empty metadata key");
    expect_error([&] { w.set_u32("bad\nkey", 1); }, TFU_STATUS_INVALID_ARGUMENT, "not printable");
    expect_error([&] { w.set_u32(std::string(65536, 'k'), 1); }, TFU_STATUS_INVALID_ARGUMENT, "longer than 65535");
    expect_error([&] { w.set_u64("general.alignment", 32); }, TFU_STATUS_INVALID_ARGUMENT, "must be uint32");
    expect_error([&] { w.set_u32("general.alignment", 48); }, TFU_STATUS_INVALID_ARGUMENT, "power of two");
    expect_error([&] { w.set_u32("general.alignment", 0); }, TFU_STATUS_INVALID_ARGUMENT, "power of two");
    EXPECT_EQ(w.alignment(), 32u);
    EXPECT_FALSE(w.has("general.alignment"));
    const uint8_t bad_bool[2] = {1, 2};
    expect_error([&] { w.set_array("k", value_type::BOOL, bad_bool, 2); }, TFU_STATUS_INVALID_ARGUMENT,
                 "bool element 1");
    expect_error([&] { w.set_array("k", value_type::STRING, x, 1); }, TFU_STATUS_INVALID_ARGUMENT, "not numeric");
    expect_error([&] { w.set_array("k", value_type::ARRAY, x, 1); }, TFU_STATUS_INVALID_ARGUMENT, "not numeric");
    expect_error([&] { w.set_array("k", value_type::INT32, nullptr, 3); }, TFU_STATUS_INVALID_ARGUMENT, "null");
    EXPECT_EQ(w.n_kv(), 0u);

    expect_error([&] { w.add_tensor("t", dtype::F32, {32}, x, 64); }, TFU_STATUS_INVALID_ARGUMENT, "needs 128 bytes");
    expect_error([&] { w.add_tensor("t", dtype::F32, {32}, nullptr, 128); }, TFU_STATUS_INVALID_ARGUMENT, "null");
    expect_error([&] { w.add_tensor("", dtype::F32, {32}, x, 128); }, TFU_STATUS_INVALID_ARGUMENT, "empty tensor name");
    expect_error([&] { w.add_tensor(std::string(64, 'n'), dtype::F32, {32}, x, 128); }, TFU_STATUS_INVALID_ARGUMENT,
                 "at most 63");
    expect_error([&] { w.add_tensor("t", dtype(99), {32}, x, 128); }, TFU_STATUS_INVALID_ARGUMENT, "unknown type id 99");
    expect_error([&] { w.add_tensor("t", dtype::F32, {32, 0}, x, 0); }, TFU_STATUS_INVALID_ARGUMENT, "dimension 1");
    expect_error([&] { w.add_tensor("t", dtype::F32, {1, 1, 1, 1, 32}, x, 128); }, TFU_STATUS_INVALID_ARGUMENT,
                 "n_dims 5");
    expect_error([&] { w.add_tensor("q", dtype::Q4_K, {32}, x, 18); }, TFU_STATUS_INVALID_ARGUMENT,
                 "not a multiple of the q4_K block size 256");
    expect_error([&] { w.add_tensor("big", dtype::F32, {int64_t(1) << 40, int64_t(1) << 40}, x, 0); },
                 TFU_STATUS_INVALID_ARGUMENT, "overflows");
    EXPECT_EQ(w.n_tensors(), 0u);
    w.add_tensor("t", dtype::F32, {32}, x, 128);
    expect_error([&] { w.add_tensor("t", dtype::F32, {32}, x, 128); }, TFU_STATUS_INVALID_ARGUMENT, "already added");
    const int64_t ne32[1] = {32};
    expect_error([&] { w.add_tensor("u", dtype::F32, ne32, 1, writer::fill_fn()); }, TFU_STATUS_INVALID_ARGUMENT,
                 "empty fill callback");
    expect_error([&] { (void)w.tensor_offset("nope"); }, TFU_STATUS_INVALID_ARGUMENT, "nope");
    EXPECT_EQ(w.n_tensors(), 1u);
    // The refused calls left a writer that still produces a valid file.
    const bytes buf = w.to_bytes();
    EXPECT_EQ(file::from_memory(buf.data(), buf.size(), "mem")->tensors().size(), 1u);
}

// Changing the alignment after adding tensors re-lays them out.
TEST(gguf_writer, alignment_set_after_tensors) {
    writer w;
    const float x[3] = {1, 2, 3};
    w.add_tensor("a", dtype::F32, {3}, x, sizeof x);
    w.add_tensor("b", dtype::F32, {3}, x, sizeof x);
    EXPECT_EQ(w.tensor_offset("b"), 32u);
    w.set_u32("general.alignment", 128);
    EXPECT_EQ(w.tensor_offset("b"), 128u);
    w.remove("general.alignment");
    EXPECT_EQ(w.tensor_offset("b"), 32u);
    w.set_u32("general.alignment", 4);
    EXPECT_EQ(w.tensor_offset("b"), 12u);
    const bytes buf = w.to_bytes();
    std::unique_ptr<file> f = file::from_memory(buf.data(), buf.size(), "mem");
    EXPECT_EQ(f->find_tensor("b")->offset, 12u);
    EXPECT_EQ(std::memcmp(f->find_tensor("b")->data, x, sizeof x), 0);
}

// --- write() ---------------------------------------------------------------------------------------------

TEST(gguf_writer, write_creates_the_file_and_replaces_atomically) {
    temp_dir dir;
    const std::string path = dir.path + "/m.gguf";
    writer w;
    w.set_string("general.name", "first");
    const float x[32] = {1.5f};
    w.add_tensor("t", dtype::F32, {32}, x, sizeof x);
    w.write(path);
    EXPECT_EQ(read_all(path), w.to_bytes());
    EXPECT_EQ(file::open(path)->get_string("general.name"), "first");
    struct stat st{};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    const mode_t um = ::umask(022);
    ::umask(um);
    EXPECT_EQ(st.st_mode & 0777, 0666u & ~um);

    // A fill callback that throws: the old file stays as it was, no temporary file is left.
    const bytes before = read_all(path);
    writer w2;
    w2.set_string("general.name", "second");
    w2.add_tensor("t", dtype::F32, {32}, x, sizeof x);
    const int64_t ne[1] = {64};
    w2.add_tensor("u", dtype::F32, ne, 1, [](void*, size_t) {
        tfu::fail(TFU_STATUS_INVALID_ARGUMENT, "fill failed on purpose");
    });
    expect_error([&] { w2.write(path); }, TFU_STATUS_INVALID_ARGUMENT, "fill failed on purpose");
    EXPECT_EQ(read_all(path), before);
    EXPECT_EQ(dir.list(), std::vector<std::string>{"m.gguf"});

    // A successful rewrite replaces it.
    writer w3;
    w3.set_string("general.name", "third");
    w3.write(path);
    EXPECT_EQ(file::open(path)->get_string("general.name"), "third");
    EXPECT_EQ(dir.list(), std::vector<std::string>{"m.gguf"});
}

TEST(gguf_writer, write_errors_name_the_path_and_the_reason) {
    temp_dir dir;
    writer w;
    w.set_u32("k", 1);
    const std::string missing = dir.path + "/no/such/dir/m.gguf";
    expect_error([&] { w.write(missing); }, TFU_STATUS_IO_ERROR, missing);
    expect_error([&] { w.write(missing); }, TFU_STATUS_IO_ERROR, "No such file or directory");
    // The target is a directory: rename fails; the temporary file is removed.
    const std::string sub = dir.path + "/sub";
    ASSERT_EQ(::mkdir(sub.c_str(), 0755), 0);
    expect_error([&] { w.write(sub); }, TFU_STATUS_IO_ERROR, sub);
    std::vector<std::string> left = dir.list();
    EXPECT_EQ(left, std::vector<std::string>{"sub"});
    ::rmdir(sub.c_str());
}

// --- stories260K -----------------------------------------------------------------------------------------

// Re-writing a real model's metadata and tensors (as read by the reader) gives a file that the reader loads
// with identical metadata and tensor bytes; the original was written by llama.cpp's writer with the same
// layout rules, so the bytes are identical too.
TEST(gguf_writer, rewrite_stories260k) {
    std::unique_ptr<file> src = file::open(k_stories);
    writer w;
    for (const auto& v : src->metadata()) w.set_kv(v);
    for (const auto& t : src->tensors())
        w.add_tensor(t.name, t.type, t.ne, t.n_dims, t.data, t.nbytes);

    temp_dir dir;
    const std::string path = dir.path + "/stories260K.copy.gguf";
    w.write(path);
    std::unique_ptr<file> dst = file::open(path);

    EXPECT_EQ(dst->version(), 3u);
    EXPECT_EQ(dst->alignment(), src->alignment());
    ASSERT_EQ(dst->metadata().size(), src->metadata().size());
    for (size_t i = 0; i < src->metadata().size(); ++i) {
        const auto& a = src->metadata()[i];
        const auto& b = dst->metadata()[i];
        SCOPED_TRACE(std::string(a.key));
        EXPECT_EQ(a.key, b.key);
        ASSERT_EQ(a.type, b.type);
        EXPECT_EQ(a.i, b.i);
        if (std::isnan(a.f)) {
            EXPECT_TRUE(std::isnan(b.f));
        } else {
            EXPECT_EQ(a.f, b.f);
        }
        EXPECT_EQ(a.str, b.str);
        if (a.type == value_type::ARRAY) {
            ASSERT_EQ(a.elem_type, b.elem_type);
            ASSERT_EQ(a.count, b.count);
            EXPECT_EQ(a.strings, b.strings);
            if (a.elem_type != value_type::STRING) {
                EXPECT_EQ(std::memcmp(a.array_data, b.array_data, size_t(a.count) * value_type_size(a.elem_type)), 0);
            }
        }
    }
    ASSERT_EQ(dst->tensors().size(), src->tensors().size());
    for (size_t i = 0; i < src->tensors().size(); ++i) {
        const auto& a = src->tensors()[i];
        const auto& b = dst->tensors()[i];
        SCOPED_TRACE(std::string(a.name));
        EXPECT_EQ(a.name, b.name);
        EXPECT_EQ(a.type, b.type);
        EXPECT_EQ(a.n_dims, b.n_dims);
        for (int d = 0; d < 4; ++d) EXPECT_EQ(a.ne[d], b.ne[d]);
        EXPECT_EQ(b.offset % dst->alignment(), 0u);
        ASSERT_EQ(a.nbytes, b.nbytes);
        EXPECT_EQ(std::memcmp(a.data, b.data, a.nbytes), 0);
    }
    const bytes orig = read_all(k_stories);
    const bytes copy = read_all(path);
    EXPECT_EQ(copy.size(), orig.size());
    EXPECT_TRUE(copy == orig) << "the re-written file differs from the original byte for byte";
}

}  // namespace
