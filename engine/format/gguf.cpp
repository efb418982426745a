// GGUF v2/v3 parser: header, metadata and tensor infos, validated with overflow-safe arithmetic before use.
// ref: ggml docs/gguf.md (file layout); the acceptance policy is documented in format/gguf.h.
#include "format/gguf.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <new>

#include "core/error.h"
#include "format/mapped_file.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the GGUF reader assumes a little-endian host");

namespace tfu::gguf {

namespace {

constexpr uint64_t k_max_key_len = 65535;  // the spec's limit on key length
constexpr uint32_t k_max_dims = 4;
// Smallest possible encodings, used to refuse counts the remaining bytes cannot hold before allocating:
// a key/value is at least key length (8) + 1 key byte + value type (4) + a 1-byte value; a tensor info at
// least name length (8) + 1 name byte + n_dims (4) + one dim (8) + type (4) + offset (8).
constexpr uint64_t k_min_kv_bytes = 8 + 1 + 4 + 1;
constexpr uint64_t k_min_tensor_info_bytes = 8 + 1 + 4 + 8 + 4 + 8;
// Those bounds are loose in a multi-GB file (the tensor data counts as "remaining bytes"), so vectors are
// reserved at most this many entries up front and otherwise grow with what was actually parsed.
constexpr uint64_t k_max_reserve = 1 << 16;

size_t reserve_count(uint64_t n) { return size_t(std::min(n, k_max_reserve)); }

// Untrusted bytes made safe for a message: non-printable bytes as \xNN, long text cut.
std::string printable(std::string_view s) {
    static const char hex[] = "0123456789abcdef";
    constexpr size_t k_max = 80;
    std::string out;
    for (size_t i = 0; i < s.size() && i < k_max; ++i) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            out += char(c);
        } else {
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    if (s.size() > k_max) out += "...";
    return out;
}

// Bounds-checked little-endian cursor over the file. `where` names the record being read (header, a key, a
// tensor) so that a truncation message says what was cut.
class reader {
public:
    reader(const uint8_t* base, size_t size, const std::string& path) : base_(base), size_(size), path_(path) {}

    std::string where = "header";

    size_t pos() const { return pos_; }
    size_t left() const { return size_ - pos_; }

    [[noreturn]] void fail_here(tfu_status st, const std::string& msg) const { fail(st, path_ + ": " + where + ": " + msg); }

    [[noreturn]] void truncated(const std::string& what, uint64_t need) const {
        fail_here(TFU_STATUS_INVALID_FILE, what + " needs " + std::to_string(need) + " bytes at offset " +
                                               std::to_string(pos_) + " but only " + std::to_string(left()) +
                                               " remain (file truncated? size " + std::to_string(size_) + ")");
    }

    const uint8_t* take(uint64_t n, const char* what) {
        if (n > left()) truncated(what, n);
        const uint8_t* p = base_ + pos_;
        pos_ += size_t(n);
        return p;
    }
    template <typename T>
    T get(const char* what) {
        T v;
        std::memcpy(&v, take(sizeof(T), what), sizeof(T));
        return v;
    }
    uint32_t u32(const char* what) { return get<uint32_t>(what); }
    uint64_t u64(const char* what) { return get<uint64_t>(what); }

    // A gguf string: uint64 length + bytes. `index` names the element of a string array in messages.
    std::string_view str(const char* what, uint64_t index = k_no_index) {
        if (left() < 8) truncated(label(what, index) + " length", 8);
        uint64_t n = u64(what);
        if (n > left())
            fail_here(TFU_STATUS_INVALID_FILE, label(what, index) + " length " + std::to_string(n) + " at offset " +
                                                   std::to_string(pos_ - 8) + " exceeds the " +
                                                   std::to_string(left()) + " bytes left in the file");
        return std::string_view(reinterpret_cast<const char*>(take(n, what)), size_t(n));
    }

    static constexpr uint64_t k_no_index = std::numeric_limits<uint64_t>::max();

private:
    static std::string label(const char* what, uint64_t index) {
        return index == k_no_index ? std::string(what) : std::string(what) + " " + std::to_string(index);
    }

    const uint8_t* base_;
    size_t size_;
    size_t pos_ = 0;
    const std::string& path_;
};

bool is_known(uint32_t t) { return t <= uint32_t(value_type::FLOAT64); }

void check_key(const reader& r, std::string_view key) {
    if (key.empty()) r.fail_here(TFU_STATUS_INVALID_FILE, "empty key");
    if (key.size() > k_max_key_len)
        r.fail_here(TFU_STATUS_INVALID_FILE, "key '" + printable(key) + "' is " + std::to_string(key.size()) +
                                                 " bytes long (at most " + std::to_string(k_max_key_len) + ")");
    for (char ch : key) {
        unsigned char c = static_cast<unsigned char>(ch);
        if (c < 0x20 || c > 0x7e)
            r.fail_here(TFU_STATUS_INVALID_FILE, "key '" + printable(key) + "' is not printable ASCII");
    }
}

// Reads one scalar of type t into v (the value type id itself has been read already).
void read_scalar(reader& r, uint32_t t, kv& v) {
    switch (value_type(t)) {
    case value_type::UINT8: v.i = r.get<uint8_t>("uint8 value"); break;
    case value_type::INT8: v.i = r.get<int8_t>("int8 value"); break;
    case value_type::UINT16: v.i = r.get<uint16_t>("uint16 value"); break;
    case value_type::INT16: v.i = r.get<int16_t>("int16 value"); break;
    case value_type::UINT32: v.i = r.get<uint32_t>("uint32 value"); break;
    case value_type::INT32: v.i = r.get<int32_t>("int32 value"); break;
    case value_type::INT64: v.i = r.get<int64_t>("int64 value"); break;
    case value_type::UINT64: {
        uint64_t u = r.get<uint64_t>("uint64 value");
        if (u > uint64_t(std::numeric_limits<int64_t>::max()))
            r.fail_here(TFU_STATUS_INVALID_FILE, "uint64 value " + std::to_string(u) + " is larger than INT64_MAX");
        v.i = int64_t(u);
        break;
    }
    case value_type::FLOAT32: v.f = r.get<float>("float32 value"); break;
    case value_type::FLOAT64: v.f = r.get<double>("float64 value"); break;
    case value_type::BOOL: {
        uint8_t b = r.get<uint8_t>("bool value");
        if (b > 1) r.fail_here(TFU_STATUS_INVALID_FILE, "bool value " + std::to_string(b) + " is neither 0 nor 1");
        v.i = b;
        break;
    }
    case value_type::STRING: v.str = r.str("string value"); break;
    case value_type::ARRAY: break;  // handled by the caller
    default: r.fail_here(TFU_STATUS_INVALID_FILE, "unknown value type id " + std::to_string(t));
    }
}

void read_array(reader& r, kv& v) {
    uint32_t et = r.u32("array element type");
    if (et == uint32_t(value_type::ARRAY)) r.fail_here(TFU_STATUS_UNSUPPORTED, "nested arrays are not supported");
    if (!is_known(et)) r.fail_here(TFU_STATUS_INVALID_FILE, "unknown array element type id " + std::to_string(et));
    v.elem_type = value_type(et);
    v.count = r.u64("array count");
    const std::string what_n = "array of " + std::to_string(v.count) + " " + value_type_name(v.elem_type);
    if (v.elem_type == value_type::STRING) {
        // Each element is at least its 8-byte length: a count the rest of the file cannot hold fails here,
        // before anything is allocated for it.
        if (v.count > r.left() / 8)
            r.fail_here(TFU_STATUS_INVALID_FILE, what_n + " needs at least " + std::to_string(v.count) +
                                                     " x 8 bytes but only " + std::to_string(r.left()) + " remain");
        v.strings.reserve(reserve_count(v.count));
        for (uint64_t k = 0; k < v.count; ++k) v.strings.push_back(r.str("string element", k));
        return;
    }
    const size_t es = value_type_size(v.elem_type);
    if (v.count > r.left() / es)
        r.fail_here(TFU_STATUS_INVALID_FILE, what_n + " needs " + std::to_string(v.count) + " x " +
                                                 std::to_string(es) + " bytes but only " + std::to_string(r.left()) +
                                                 " remain");
    v.array_data = r.take(v.count * es, "array data");
    // Keep the scalar promises for array elements too, so that array_int() is always exact.
    if (v.elem_type == value_type::BOOL) {
        for (uint64_t k = 0; k < v.count; ++k)
            if (v.array_data[k] > 1)
                r.fail_here(TFU_STATUS_INVALID_FILE, "bool element " + std::to_string(k) + " is " +
                                                         std::to_string(v.array_data[k]) + ", neither 0 nor 1");
    } else if (v.elem_type == value_type::UINT64) {
        for (uint64_t k = 0; k < v.count; ++k) {
            uint64_t u;
            std::memcpy(&u, v.array_data + k * 8, 8);
            if (u > uint64_t(std::numeric_limits<int64_t>::max()))
                r.fail_here(TFU_STATUS_INVALID_FILE, "uint64 element " + std::to_string(k) + " (" +
                                                         std::to_string(u) + ") is larger than INT64_MAX");
        }
    }
}

std::string tensor_label(std::string_view name) { return "tensor '" + printable(name) + "'"; }

}  // namespace

std::unique_ptr<file> file::open(const std::string& path) {
    std::unique_ptr<file> f(new file());
    f->path_ = path;
    f->map_ = std::make_unique<mapped_file>(path);
    f->base_ = f->map_->data();
    f->size_ = f->map_->size();
    f->parse_checked();
    return f;
}

std::unique_ptr<file> file::from_memory(const void* data, size_t size, const std::string& name) {
    if (data == nullptr && size != 0) fail(TFU_STATUS_INVALID_ARGUMENT, name + ": null buffer of size " + std::to_string(size));
    std::unique_ptr<file> f(new file());
    f->path_ = name;
    f->base_ = static_cast<const uint8_t*>(data);
    f->size_ = size;
    f->parse_checked();
    return f;
}

file::~file() = default;

void file::parse_checked() {
    try {
        parse();
    } catch (const std::bad_alloc&) {
        // A file can legitimately describe more metadata than memory holds; say so instead of escaping.
        fail(TFU_STATUS_OUT_OF_MEMORY, path_ + ": out of memory while reading the GGUF header");
    }
}

void file::parse() {
    if (size_ == 0) fail(TFU_STATUS_INVALID_FILE, path_ + ": file is empty, not a GGUF file");
    reader r(base_, size_, path_);

    // --- header ---
    const uint8_t* magic = r.take(4, "magic");
    if (std::memcmp(magic, "GGUF", 4) != 0)
        fail(TFU_STATUS_INVALID_FILE, path_ + ": not a GGUF file (magic '" +
                                          printable(std::string_view(reinterpret_cast<const char*>(magic), 4)) +
                                          "', expected 'GGUF')");
    version_ = r.u32("version");
    if (version_ == 1)
        fail(TFU_STATUS_UNSUPPORTED, path_ + ": GGUF version 1 is not supported (only versions 2 and 3; "
                                             "re-convert the model with a current llama.cpp)");
    if (version_ != 2 && version_ != 3) {
        std::string hint;
        uint32_t swapped = __builtin_bswap32(version_);
        if (swapped >= 1 && swapped <= 3) hint = " (a big-endian GGUF file? only little-endian files are supported)";
        fail(TFU_STATUS_INVALID_FILE,
             path_ + ": invalid GGUF version " + std::to_string(version_) + ", expected 2 or 3" + hint);
    }
    const uint64_t n_tensors = r.u64("tensor_count");
    const uint64_t n_kv = r.u64("kv_count");
    if (n_kv > r.left() / k_min_kv_bytes || n_tensors > r.left() / k_min_tensor_info_bytes ||
        n_kv * k_min_kv_bytes + n_tensors * k_min_tensor_info_bytes > r.left())
        fail(TFU_STATUS_INVALID_FILE, path_ + ": header: kv_count " + std::to_string(n_kv) + " and tensor_count " +
                                          std::to_string(n_tensors) + " cannot fit in the " +
                                          std::to_string(r.left()) + " bytes after the header (file truncated?)");

    // --- metadata ---
    kvs_.reserve(reserve_count(n_kv));
    for (uint64_t k = 0; k < n_kv; ++k) {
        r.where = "key/value " + std::to_string(k);
        kv v;
        v.key = r.str("key");
        check_key(r, v.key);
        r.where = "key '" + std::string(v.key) + "'";
        uint32_t t = r.u32("value type");
        if (!is_known(t)) r.fail_here(TFU_STATUS_INVALID_FILE, "unknown value type id " + std::to_string(t));
        v.type = value_type(t);
        if (v.type == value_type::ARRAY)
            read_array(r, v);
        else
            read_scalar(r, t, v);
        if (!kv_index_.emplace(v.key, kvs_.size()).second) r.fail_here(TFU_STATUS_INVALID_FILE, "duplicate key");
        kvs_.push_back(std::move(v));
    }

    if (const kv* a = find("general.alignment")) {
        if (a->type != value_type::UINT32)
            fail(TFU_STATUS_INVALID_FILE, path_ + ": key 'general.alignment' has type " +
                                              value_type_name(a->type) + ", expected uint32");
        if (a->i == 0 || (a->i & (a->i - 1)) != 0)
            fail(TFU_STATUS_INVALID_FILE, path_ + ": key 'general.alignment': " + std::to_string(a->i) +
                                              " is not a nonzero power of two");
        alignment_ = size_t(a->i);
    }

    // --- tensor infos ---
    tensors_.reserve(reserve_count(n_tensors));
    for (uint64_t k = 0; k < n_tensors; ++k) {
        r.where = "tensor info " + std::to_string(k);
        tensor_info ti;
        ti.name = r.str("name");
        if (ti.name.empty()) r.fail_here(TFU_STATUS_INVALID_FILE, "empty tensor name");
        r.where = tensor_label(ti.name);
        ti.n_dims = r.u32("n_dims");
        if (ti.n_dims < 1 || ti.n_dims > k_max_dims)
            r.fail_here(TFU_STATUS_INVALID_FILE,
                        "n_dims " + std::to_string(ti.n_dims) + " is outside 1.." + std::to_string(k_max_dims));
        for (uint32_t d = 0; d < ti.n_dims; ++d) {
            uint64_t n = r.u64("dimension");
            if (n == 0 || n > uint64_t(std::numeric_limits<int64_t>::max()))
                r.fail_here(TFU_STATUS_INVALID_FILE, "dimension " + std::to_string(d) + " is " +
                                                         std::to_string(int64_t(n)) + ", must be >= 1");
            ti.ne[d] = int64_t(n);
        }
        const uint32_t type_id = r.u32("type");
        ti.offset = r.u64("data offset");

        const dtype_traits* tr = dtype_traits_of(type_id);
        if (tr == nullptr)
            fail(TFU_STATUS_UNSUPPORTED,
                 path_ + ": " + r.where + ": unknown tensor type id " + std::to_string(type_id));
        ti.type = dtype(type_id);

        const std::string shape = "shape {" + std::to_string(ti.ne[0]) + ", " + std::to_string(ti.ne[1]) + ", " +
                                  std::to_string(ti.ne[2]) + ", " + std::to_string(ti.ne[3]) + "}";
        int64_t nrows = 0, nel = 0;
        if (__builtin_mul_overflow(ti.ne[1], ti.ne[2], &nrows) || __builtin_mul_overflow(nrows, ti.ne[3], &nrows) ||
            __builtin_mul_overflow(nrows, ti.ne[0], &nel))
            r.fail_here(TFU_STATUS_INVALID_FILE, shape + ": element count overflows int64");
        if (ti.ne[0] % tr->block_size != 0)
            r.fail_here(TFU_STATUS_INVALID_FILE, shape + ": ne[0] " + std::to_string(ti.ne[0]) +
                                                     " is not a multiple of the " + tr->name + " block size " +
                                                     std::to_string(tr->block_size));
        uint64_t row_bytes = 0, nbytes = 0;
        if (__builtin_mul_overflow(uint64_t(ti.ne[0] / tr->block_size), uint64_t(tr->type_size), &row_bytes) ||
            __builtin_mul_overflow(row_bytes, uint64_t(nrows), &nbytes) || nbytes > size_t(-1))
            r.fail_here(TFU_STATUS_INVALID_FILE, shape + " of " + tr->name + ": byte size overflows");
        ti.nbytes = size_t(nbytes);

        if (!tensor_index_.emplace(ti.name, tensors_.size()).second)
            r.fail_here(TFU_STATUS_INVALID_FILE, "duplicate tensor name");
        tensors_.push_back(ti);
    }

    // --- data section: starts at the end of the header padded to the alignment ---
    const size_t header_end = r.pos();
    const size_t pad = (alignment_ - header_end % alignment_) % alignment_;
    if (pad > std::numeric_limits<size_t>::max() - header_end)
        fail(TFU_STATUS_INVALID_FILE, path_ + ": data section offset overflows");
    data_offset_ = header_end + pad;
    if (tensors_.empty()) {
        // Files without tensors (vocabularies) may end right after the header, without padding.
        data_offset_ = std::min(data_offset_, size_);
        return;
    }
    if (data_offset_ > size_)
        fail(TFU_STATUS_INVALID_FILE, path_ + ": data section would start at " + std::to_string(data_offset_) +
                                          " (header end " + std::to_string(header_end) + " padded to " +
                                          std::to_string(alignment_) + "), past the end of the file (size " +
                                          std::to_string(size_) + ")");
    const size_t data_size = size_ - data_offset_;
    for (tensor_info& ti : tensors_) {
        if (ti.offset % alignment_ != 0)
            fail(TFU_STATUS_INVALID_FILE, path_ + ": " + tensor_label(ti.name) + ": data offset " +
                                              std::to_string(ti.offset) + " is not a multiple of the alignment " +
                                              std::to_string(alignment_));
        if (ti.offset > data_size || ti.nbytes > data_size - ti.offset)
            fail(TFU_STATUS_INVALID_FILE, path_ + ": " + tensor_label(ti.name) + ": data (offset " +
                                              std::to_string(ti.offset) + ", " + std::to_string(ti.nbytes) +
                                              " bytes) runs past the end of the file (size " +
                                              std::to_string(size_) + ", data section at " +
                                              std::to_string(data_offset_) + ")");
        ti.data = base_ + data_offset_ + ti.offset;
    }
    // No two tensors may share bytes: a writer never does that, and a reader that trusted it could have one
    // tensor's in-place conversion corrupt another.
    std::vector<const tensor_info*> by_offset;
    by_offset.reserve(tensors_.size());
    for (const tensor_info& ti : tensors_) by_offset.push_back(&ti);
    std::sort(by_offset.begin(), by_offset.end(),
              [](const tensor_info* a, const tensor_info* b) { return a->offset < b->offset; });
    for (size_t k = 1; k < by_offset.size(); ++k) {
        const tensor_info* a = by_offset[k - 1];
        const tensor_info* b = by_offset[k];
        if (a->offset + a->nbytes > b->offset)  // both within the data section: no overflow
            fail(TFU_STATUS_INVALID_FILE, path_ + ": " + tensor_label(a->name) + " (offset " +
                                              std::to_string(a->offset) + ", " + std::to_string(a->nbytes) +
                                              " bytes) overlaps " + tensor_label(b->name) + " (offset " +
                                              std::to_string(b->offset) + ")");
    }
}

}  // namespace tfu::gguf
