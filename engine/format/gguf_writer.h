// GGUF v3 writer, the twin of format/gguf.h: metadata of every value type and tensors, laid out exactly as
// the spec says so that llama.cpp (and tfu::gguf::file) load the result unchanged.
//
// Layout written (ref: ggml docs/gguf.md; the same as ggml's gguf_write_to_buf), all little-endian:
//   "GGUF" | uint32 3 | uint64 tensor_count | uint64 kv_count
//   kvs in the order first set | tensor infos in the order added (offset relative to the data section)
//   zero padding to general.alignment | each tensor's data, zero-padded to a multiple of the alignment
// so every tensor starts at an aligned offset and the file ends on an alignment boundary.
//
// Policy (checked when a value is set, so that write() cannot produce a file the reader refuses, with the
// exception noted for uint64):
// - Keys: 1..65535 bytes of printable ASCII. Setting an existing key replaces its value in place.
// - general.alignment: uint32, a nonzero power of two (default 32 when absent).
// - Tensors: unique names of 1..63 bytes (ggml's GGML_MAX_NAME is 64 with the terminator), 1..4 dims, every
//   dim >= 1, ne[0] a multiple of the type's block size, a type this engine knows; given bytes must be exactly
//   the tensor's size.
// - uint64 values above INT64_MAX are valid GGUF and are written, but tfu::gguf::file refuses them.
// Errors: bad arguments throw tfu::error(TFU_STATUS_INVALID_ARGUMENT) naming the key or tensor; failing file
// I/O throws TFU_STATUS_IO_ERROR with the path and strerror.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "format/gguf.h"

namespace tfu::gguf {

class writer {
public:
    // Fills `dst` (nbytes of the tensor, as computed from its type and shape) with the tensor's data. Called
    // once per write()/to_bytes(); may throw (write() then removes its temporary file).
    using fill_fn = std::function<void(void* dst, size_t nbytes)>;

    writer() = default;

    // Scalars.
    void set_u8(std::string_view key, uint8_t v);
    void set_i8(std::string_view key, int8_t v);
    void set_u16(std::string_view key, uint16_t v);
    void set_i16(std::string_view key, int16_t v);
    void set_u32(std::string_view key, uint32_t v);
    void set_i32(std::string_view key, int32_t v);
    void set_u64(std::string_view key, uint64_t v);
    void set_i64(std::string_view key, int64_t v);
    void set_f32(std::string_view key, float v);
    void set_f64(std::string_view key, double v);
    void set_bool(std::string_view key, bool v);
    void set_string(std::string_view key, std::string_view v);

    // Arrays of numbers: `count` packed little-endian elements of `elem` (any numeric type or BOOL, whose
    // bytes must be 0 or 1). The typed overloads below pick `elem` from the C++ element type.
    void set_array(std::string_view key, value_type elem, const void* data, size_t count);
    void set_array(std::string_view key, const uint8_t* v, size_t n) { set_array(key, value_type::UINT8, v, n); }
    void set_array(std::string_view key, const int8_t* v, size_t n) { set_array(key, value_type::INT8, v, n); }
    void set_array(std::string_view key, const uint16_t* v, size_t n) { set_array(key, value_type::UINT16, v, n); }
    void set_array(std::string_view key, const int16_t* v, size_t n) { set_array(key, value_type::INT16, v, n); }
    void set_array(std::string_view key, const uint32_t* v, size_t n) { set_array(key, value_type::UINT32, v, n); }
    void set_array(std::string_view key, const int32_t* v, size_t n) { set_array(key, value_type::INT32, v, n); }
    void set_array(std::string_view key, const uint64_t* v, size_t n) { set_array(key, value_type::UINT64, v, n); }
    void set_array(std::string_view key, const int64_t* v, size_t n) { set_array(key, value_type::INT64, v, n); }
    void set_array(std::string_view key, const float* v, size_t n) { set_array(key, value_type::FLOAT32, v, n); }
    void set_array(std::string_view key, const double* v, size_t n) { set_array(key, value_type::FLOAT64, v, n); }
    void set_array(std::string_view key, const bool* v, size_t n);
    template <typename T>
    void set_array(std::string_view key, const std::vector<T>& v) {
        set_array(key, v.data(), v.size());
    }
    // Arrays of strings.
    void set_array(std::string_view key, const std::vector<std::string>& v);
    void set_array(std::string_view key, const std::vector<std::string_view>& v);

    // Copies a key/value read by tfu::gguf::file (any type), e.g. to re-write a model's metadata.
    void set_kv(const kv& v);
    // Removes a key; false if it was not set.
    bool remove(std::string_view key);
    bool has(std::string_view key) const;

    // Tensors, in file order. ne has n_dims (1..4) entries, innermost first (ggml order).
    // With bytes: they are copied now and must be exactly the tensor's size.
    void add_tensor(std::string_view name, dtype type, const int64_t* ne, uint32_t n_dims, const void* data,
                    size_t nbytes);
    // With a callback: the data is produced at write time (large or computed tensors).
    void add_tensor(std::string_view name, dtype type, const int64_t* ne, uint32_t n_dims, fill_fn fill);
    void add_tensor(std::string_view name, dtype type, std::initializer_list<int64_t> ne, const void* data,
                    size_t nbytes) {
        add_tensor(name, type, ne.begin(), uint32_t(ne.size()), data, nbytes);
    }

    size_t alignment() const { return alignment_; }
    size_t n_kv() const { return kvs_.size(); }
    size_t n_tensors() const { return tensors_.size(); }
    // Offset of tensor `name` from the start of the data section, as it will be written; throws if absent.
    uint64_t tensor_offset(std::string_view name) const;

    // The whole file in memory (tests, small files).
    std::vector<uint8_t> to_bytes() const;
    // Streams the file to `path` + a temporary suffix in the same directory, flushes it to disk, then renames
    // it over `path`: on any failure `path` is untouched and the temporary file removed.
    void write(const std::string& path) const;

private:
    struct entry {
        std::string key;
        value_type type = value_type::UINT8;
        value_type elem_type = value_type::UINT8;  // arrays
        uint64_t count = 0;                        // arrays
        std::vector<uint8_t> bytes;                // scalar value or packed numeric array elements
        std::vector<std::string> strings;          // string scalar (one) or string array elements
    };
    struct tensor_entry {
        std::string name;
        dtype type = dtype::F32;
        uint32_t n_dims = 0;
        int64_t ne[4] = {1, 1, 1, 1};
        size_t nbytes = 0;
        uint64_t offset = 0;  // relative to the data section
        std::vector<uint8_t> data;  // when given as bytes
        fill_fn fill;               // when given as a callback
    };

    void put(entry e);
    void set_scalar(std::string_view key, value_type t, const void* v, size_t size);
    tensor_entry& new_tensor(std::string_view name, dtype type, const int64_t* ne, uint32_t n_dims);
    void relayout();                                // recomputes tensor offsets after an alignment change
    std::vector<uint8_t> header_bytes() const;      // everything before the data section, padding included
    template <typename Sink>
    void emit_data(Sink& sink) const;               // the data section

    std::vector<entry> kvs_;
    std::vector<tensor_entry> tensors_;
    size_t alignment_ = 32;
    uint64_t data_size_ = 0;  // bytes of the data section, padding included
};

}  // namespace tfu::gguf
