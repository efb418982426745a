// GGUF v3 writer: metadata and tensor infos serialized per ggml docs/gguf.md, tensor data streamed to a
// temporary file that is renamed over the target only once complete.
#include "format/gguf_writer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <limits>
#include <system_error>

#include "core/error.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the GGUF writer assumes a little-endian host");
static_assert(sizeof(bool) == 1, "bool arrays are passed through as bytes");

namespace tfu::gguf {

namespace {

constexpr uint32_t k_version = 3;
constexpr size_t k_max_key_len = 65535;   // the spec's limit on key length
constexpr size_t k_max_name_len = 63;     // ggml: GGML_MAX_NAME (64) including the terminator
constexpr uint32_t k_max_dims = 4;
const char* const k_alignment_key = "general.alignment";

std::string errno_text(int e) { return std::error_code(e, std::generic_category()).message(); }

// Little-endian byte appender for the header region.
struct byte_sink {
    std::vector<uint8_t>& b;
    void raw(const void* p, size_t n) {
        const uint8_t* q = static_cast<const uint8_t*>(p);
        b.insert(b.end(), q, q + n);
    }
    template <typename T>
    void put(T v) {
        raw(&v, sizeof v);  // the host is little-endian (static_assert above)
    }
    void str(std::string_view s) {
        put<uint64_t>(s.size());
        raw(s.data(), s.size());
    }
    void zeros(size_t n) { b.insert(b.end(), n, uint8_t(0)); }
};

// Writes everything to a file descriptor, retrying short writes and EINTR.
struct fd_sink {
    int fd;
    const std::string& path;
    void raw(const void* p, size_t n) {
        const char* q = static_cast<const char*>(p);
        while (n > 0) {
            ssize_t w = ::write(fd, q, n);
            if (w < 0) {
                if (errno == EINTR) continue;
                fail(TFU_STATUS_IO_ERROR, path + ": write failed: " + errno_text(errno));
            }
            q += w;
            n -= size_t(w);
        }
    }
    void zeros(size_t n) {
        static const uint8_t k_zero[256] = {};
        while (n > 0) {
            size_t k = n < sizeof k_zero ? n : sizeof k_zero;
            raw(k_zero, k);
            n -= k;
        }
    }
};

size_t pad_to(uint64_t n, size_t align) { return size_t((align - n % align) % align); }

void check_key(std::string_view key) {
    if (key.empty()) fail(TFU_STATUS_INVALID_ARGUMENT, "gguf writer: empty metadata key");
    if (key.size() > k_max_key_len)
        fail(TFU_STATUS_INVALID_ARGUMENT, "gguf writer: metadata key of " + std::to_string(key.size()) +
                                              " bytes is longer than " + std::to_string(k_max_key_len));
    for (char ch : key) {
        unsigned char c = static_cast<unsigned char>(ch);
        if (c < 0x20 || c > 0x7e)
            fail(TFU_STATUS_INVALID_ARGUMENT, "gguf writer: metadata key '" + std::string(key) +
                                                  "' is not printable ASCII");
    }
}

bool is_numeric(value_type t) { return is_integer(t) || is_float(t) || t == value_type::BOOL; }

}  // namespace

// --- metadata -----------------------------------------------------------------------------------------------

void writer::put(entry e) {
    check_key(e.key);
    if (e.key == k_alignment_key) {
        if (e.type != value_type::UINT32)
            fail(TFU_STATUS_INVALID_ARGUMENT, std::string("gguf writer: '") + k_alignment_key + "' must be uint32, not " +
                                                  value_type_name(e.type));
        uint32_t a;
        std::memcpy(&a, e.bytes.data(), 4);
        if (a == 0 || (a & (a - 1)) != 0)
            fail(TFU_STATUS_INVALID_ARGUMENT, std::string("gguf writer: '") + k_alignment_key + "' = " +
                                                  std::to_string(a) + " is not a nonzero power of two");
        alignment_ = a;
    }
    for (entry& old : kvs_)
        if (old.key == e.key) {
            old = std::move(e);
            relayout();
            return;
        }
    kvs_.push_back(std::move(e));
    relayout();
}

void writer::set_scalar(std::string_view key, value_type t, const void* v, size_t size) {
    entry e;
    e.key = std::string(key);
    e.type = t;
    e.bytes.assign(static_cast<const uint8_t*>(v), static_cast<const uint8_t*>(v) + size);
    put(std::move(e));
}

void writer::set_u8(std::string_view key, uint8_t v) { set_scalar(key, value_type::UINT8, &v, 1); }
void writer::set_i8(std::string_view key, int8_t v) { set_scalar(key, value_type::INT8, &v, 1); }
void writer::set_u16(std::string_view key, uint16_t v) { set_scalar(key, value_type::UINT16, &v, 2); }
void writer::set_i16(std::string_view key, int16_t v) { set_scalar(key, value_type::INT16, &v, 2); }
void writer::set_u32(std::string_view key, uint32_t v) { set_scalar(key, value_type::UINT32, &v, 4); }
void writer::set_i32(std::string_view key, int32_t v) { set_scalar(key, value_type::INT32, &v, 4); }
void writer::set_u64(std::string_view key, uint64_t v) { set_scalar(key, value_type::UINT64, &v, 8); }
void writer::set_i64(std::string_view key, int64_t v) { set_scalar(key, value_type::INT64, &v, 8); }
void writer::set_f32(std::string_view key, float v) { set_scalar(key, value_type::FLOAT32, &v, 4); }
void writer::set_f64(std::string_view key, double v) { set_scalar(key, value_type::FLOAT64, &v, 8); }
void writer::set_bool(std::string_view key, bool v) {
    uint8_t b = v ? 1 : 0;
    set_scalar(key, value_type::BOOL, &b, 1);
}

void writer::set_string(std::string_view key, std::string_view v) {
    entry e;
    e.key = std::string(key);
    e.type = value_type::STRING;
    e.strings.emplace_back(v);
    put(std::move(e));
}

void writer::set_array(std::string_view key, value_type elem, const void* data, size_t count) {
    const std::string k(key);
    if (!is_numeric(elem))
        fail(TFU_STATUS_INVALID_ARGUMENT, "gguf writer: key '" + k + "': arrays of " + value_type_name(elem) +
                                              " are not numeric (use the string overload; nested arrays do not exist)");
    if (data == nullptr && count != 0)
        fail(TFU_STATUS_INVALID_ARGUMENT, "gguf writer: key '" + k + "': null array data of " +
                                              std::to_string(count) + " elements");
    const size_t es = value_type_size(elem);
    if (count > std::numeric_limits<size_t>::max() / es)
        fail(TFU_STATUS_INVALID_ARGUMENT, "gguf writer: key '" + k + "': array size overflows");
    entry e;
    e.key = k;
    e.type = value_type::ARRAY;
    e.elem_type = elem;
    e.count = count;
    if (count) e.bytes.assign(static_cast<const uint8_t*>(data), static_cast<const uint8_t*>(data) + count * es);
    if (elem == value_type::BOOL)
        for (size_t i = 0; i < count; ++i)
            if (e.bytes[i] > 1)
                fail(TFU_STATUS_INVALID_ARGUMENT, "gguf writer: key '" + k + "': bool element " + std::to_string(i) +
                                                      " is " + std::to_string(e.bytes[i]) + ", neither 0 nor 1");
    put(std::move(e));
}

void writer::set_array(std::string_view key, const bool* v, size_t n) {
    if (v == nullptr && n != 0) fail(TFU_STATUS_INVALID_ARGUMENT, "gguf writer: key '" + std::string(key) + "': null array");
    std::vector<uint8_t> b(n);
    for (size_t i = 0; i < n; ++i) b[i] = v[i] ? 1 : 0;
    set_array(key, value_type::BOOL, b.data(), n);
}

void writer::set_array(std::string_view key, const std::vector<std::string>& v) {
    entry e;
    e.key = std::string(key);
    e.type = value_type::ARRAY;
    e.elem_type = value_type::STRING;
    e.count = v.size();
    e.strings = v;
    put(std::move(e));
}

void writer::set_array(std::string_view key, const std::vector<std::string_view>& v) {
    entry e;
    e.key = std::string(key);
    e.type = value_type::ARRAY;
    e.elem_type = value_type::STRING;
    e.count = v.size();
    e.strings.assign(v.begin(), v.end());
    put(std::move(e));
}

void writer::set_kv(const kv& v) {
    switch (v.type) {
    case value_type::UINT8: set_u8(v.key, uint8_t(v.i)); break;
    case value_type::INT8: set_i8(v.key, int8_t(v.i)); break;
    case value_type::UINT16: set_u16(v.key, uint16_t(v.i)); break;
    case value_type::INT16: set_i16(v.key, int16_t(v.i)); break;
    case value_type::UINT32: set_u32(v.key, uint32_t(v.i)); break;
    case value_type::INT32: set_i32(v.key, int32_t(v.i)); break;
    case value_type::UINT64: set_u64(v.key, uint64_t(v.i)); break;
    case value_type::INT64: set_i64(v.key, v.i); break;
    case value_type::FLOAT32: set_f32(v.key, float(v.f)); break;  // v.f holds the float exactly
    case value_type::FLOAT64: set_f64(v.key, v.f); break;
    case value_type::BOOL: set_bool(v.key, v.i != 0); break;
    case value_type::STRING: set_string(v.key, v.str); break;
    case value_type::ARRAY:
        if (v.elem_type == value_type::STRING)
            set_array(v.key, v.strings);
        else
            set_array(v.key, v.elem_type, v.array_data, size_t(v.count));
        break;
    default:
        fail(TFU_STATUS_INVALID_ARGUMENT, "gguf writer: key '" + std::string(v.key) + "' has an unknown value type " +
                                              std::to_string(uint32_t(v.type)));
    }
}

bool writer::remove(std::string_view key) {
    for (size_t i = 0; i < kvs_.size(); ++i)
        if (kvs_[i].key == key) {
            kvs_.erase(kvs_.begin() + std::ptrdiff_t(i));
            if (key == k_alignment_key) alignment_ = 32;
            relayout();
            return true;
        }
    return false;
}

bool writer::has(std::string_view key) const {
    for (const entry& e : kvs_)
        if (e.key == key) return true;
    return false;
}

// --- tensors ------------------------------------------------------------------------------------------------

writer::tensor_entry& writer::new_tensor(std::string_view name, dtype type, const int64_t* ne, uint32_t n_dims) {
    const std::string n(name);
    const std::string label = "gguf writer: tensor '" + n + "'";
    if (n.empty()) fail(TFU_STATUS_INVALID_ARGUMENT, "gguf writer: empty tensor name");
    if (n.size() > k_max_name_len)
        fail(TFU_STATUS_INVALID_ARGUMENT, label + ": name is " + std::to_string(n.size()) + " bytes, at most " +
                                              std::to_string(k_max_name_len));
    for (const tensor_entry& t : tensors_)
        if (t.name == n) fail(TFU_STATUS_INVALID_ARGUMENT, label + " was already added");
    const dtype_traits* tr = dtype_traits_of(uint32_t(type));
    if (tr == nullptr)
        fail(TFU_STATUS_INVALID_ARGUMENT, label + ": unknown type id " + std::to_string(uint32_t(type)));
    if (ne == nullptr || n_dims < 1 || n_dims > k_max_dims)
        fail(TFU_STATUS_INVALID_ARGUMENT, label + ": n_dims " + std::to_string(n_dims) + " is outside 1..4");
    tensor_entry t;
    t.name = n;
    t.type = type;
    t.n_dims = n_dims;
    int64_t nel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
        if (ne[d] < 1) fail(TFU_STATUS_INVALID_ARGUMENT, label + ": dimension " + std::to_string(d) + " is " +
                                                              std::to_string(ne[d]) + ", must be >= 1");
        t.ne[d] = ne[d];
        if (__builtin_mul_overflow(nel, ne[d], &nel))
            fail(TFU_STATUS_INVALID_ARGUMENT, label + ": element count overflows");
    }
    if (t.ne[0] % tr->block_size != 0)
        fail(TFU_STATUS_INVALID_ARGUMENT, label + ": ne[0] " + std::to_string(t.ne[0]) + " is not a multiple of the " +
                                              tr->name + " block size " + std::to_string(tr->block_size));
    uint64_t nbytes = 0;
    if (__builtin_mul_overflow(uint64_t(nel / tr->block_size), uint64_t(tr->type_size), &nbytes) ||
        nbytes > std::numeric_limits<size_t>::max() / 2)
        fail(TFU_STATUS_INVALID_ARGUMENT, label + ": byte size overflows");
    t.nbytes = size_t(nbytes);
    tensors_.push_back(std::move(t));
    return tensors_.back();
}

void writer::add_tensor(std::string_view name, dtype type, const int64_t* ne, uint32_t n_dims, const void* data,
                        size_t nbytes) {
    tensor_entry& t = new_tensor(name, type, ne, n_dims);
    if (nbytes != t.nbytes || (data == nullptr && nbytes != 0)) {
        const std::string msg = "gguf writer: tensor '" + t.name + "' of " + dtype_name(type) + " needs " +
                                std::to_string(t.nbytes) + " bytes, got " + std::to_string(nbytes) +
                                (data ? "" : " (null data)");
        tensors_.pop_back();
        fail(TFU_STATUS_INVALID_ARGUMENT, msg);
    }
    const uint8_t* p = static_cast<const uint8_t*>(data);
    t.data.assign(p, p + nbytes);
    relayout();
}

void writer::add_tensor(std::string_view name, dtype type, const int64_t* ne, uint32_t n_dims, fill_fn fill) {
    if (!fill) fail(TFU_STATUS_INVALID_ARGUMENT, "gguf writer: tensor '" + std::string(name) + "': empty fill callback");
    tensor_entry& t = new_tensor(name, type, ne, n_dims);
    t.fill = std::move(fill);
    relayout();
}

void writer::relayout() {
    uint64_t off = 0;
    for (tensor_entry& t : tensors_) {
        t.offset = off;
        off += t.nbytes + pad_to(t.nbytes, alignment_);
    }
    data_size_ = off;
}

uint64_t writer::tensor_offset(std::string_view name) const {
    for (const tensor_entry& t : tensors_)
        if (t.name == name) return t.offset;
    fail(TFU_STATUS_INVALID_ARGUMENT, "gguf writer: no tensor '" + std::string(name) + "'");
}

// --- serialization ------------------------------------------------------------------------------------------

std::vector<uint8_t> writer::header_bytes() const {
    std::vector<uint8_t> buf;
    byte_sink s{buf};
    s.raw("GGUF", 4);
    s.put<uint32_t>(k_version);
    s.put<uint64_t>(tensors_.size());
    s.put<uint64_t>(kvs_.size());
    for (const entry& e : kvs_) {
        s.str(e.key);
        s.put<uint32_t>(uint32_t(e.type));
        if (e.type == value_type::STRING) {
            s.str(e.strings.front());
        } else if (e.type == value_type::ARRAY) {
            s.put<uint32_t>(uint32_t(e.elem_type));
            s.put<uint64_t>(e.count);
            if (e.elem_type == value_type::STRING)
                for (const std::string& str : e.strings) s.str(str);
            else
                s.raw(e.bytes.data(), e.bytes.size());
        } else {
            s.raw(e.bytes.data(), e.bytes.size());
        }
    }
    for (const tensor_entry& t : tensors_) {
        s.str(t.name);
        s.put<uint32_t>(t.n_dims);
        for (uint32_t d = 0; d < t.n_dims; ++d) s.put<int64_t>(t.ne[d]);
        s.put<uint32_t>(uint32_t(t.type));
        s.put<uint64_t>(t.offset);
    }
    s.zeros(pad_to(buf.size(), alignment_));
    return buf;
}

template <typename Sink>
void writer::emit_data(Sink& sink) const {
    std::vector<uint8_t> scratch;
    for (const tensor_entry& t : tensors_) {
        if (t.fill) {
            scratch.assign(t.nbytes, 0);
            t.fill(scratch.data(), scratch.size());
            sink.raw(scratch.data(), scratch.size());
        } else {
            sink.raw(t.data.data(), t.data.size());
        }
        sink.zeros(pad_to(t.nbytes, alignment_));
    }
}

std::vector<uint8_t> writer::to_bytes() const {
    std::vector<uint8_t> buf = header_bytes();
    buf.reserve(buf.size() + size_t(data_size_));
    byte_sink s{buf};
    emit_data(s);
    return buf;
}

void writer::write(const std::string& path) const {
    // A unique temporary name next to the target (same file system, so rename is atomic). O_EXCL with mode
    // 0666 lets the umask decide the permissions, as for any newly created file.
    static std::atomic<uint64_t> counter{0};
    std::string tmp;
    int fd = -1;
    for (int attempt = 0; fd < 0; ++attempt) {
        tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter.fetch_add(1));
        fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && (errno != EEXIST || attempt >= 100))
            fail(TFU_STATUS_IO_ERROR, path + ": cannot create temporary file '" + tmp + "': " + errno_text(errno));
    }
    // Removes the temporary file on every failure path (I/O errors and exceptions from fill callbacks).
    struct temp_guard {
        int fd;
        const std::string& tmp;
        bool committed = false;
        ~temp_guard() {
            if (fd >= 0) ::close(fd);
            if (!committed) ::unlink(tmp.c_str());
        }
    } guard{fd, tmp};

    fd_sink sink{fd, path};
    const std::vector<uint8_t> header = header_bytes();
    sink.raw(header.data(), header.size());
    emit_data(sink);
    if (::fsync(fd) != 0) fail(TFU_STATUS_IO_ERROR, path + ": fsync failed: " + errno_text(errno));
    const int fd_to_close = guard.fd;
    guard.fd = -1;
    if (::close(fd_to_close) != 0) fail(TFU_STATUS_IO_ERROR, path + ": close failed: " + errno_text(errno));
    if (::rename(tmp.c_str(), path.c_str()) != 0)
        fail(TFU_STATUS_IO_ERROR, path + ": cannot rename the temporary file over it: " + errno_text(errno));
    guard.committed = true;
}

}  // namespace tfu::gguf
