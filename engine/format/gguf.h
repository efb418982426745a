// GGUF (v2, v3) reader over a memory map: metadata, tensor infos and data, every offset/size/count validated
// before use. The reader never trusts the file: any inconsistency throws tfu::error(TFU_STATUS_INVALID_FILE)
// naming the file and the field at fault.
//
// Format (ref: ggml docs/gguf.md), all little-endian:
//   "GGUF" | uint32 version | uint64 tensor_count | uint64 kv_count
//   kv_count x  { string key | uint32 value_type | value }
//   tensor_count x { string name | uint32 n_dims | int64 ne[n_dims] | uint32 type | uint64 offset }
//   padding to general.alignment (uint32 key, default 32) | data section (tensor offsets are relative to it)
// where string = uint64 length + bytes (no terminator) and an array value = uint32 elem_type + uint64 count +
// elements.
//
// Policy (what this reader accepts; stricter than the spec where the spec is silent):
// - Versions 2 and 3 only (v1 used 32-bit counts: UNSUPPORTED; any other version: INVALID_FILE).
// - Little-endian host and file (a big-endian file shows up as an invalid version and is refused).
// - Keys: 1..65535 bytes of printable ASCII (0x20..0x7E), no duplicates. String values are not checked
//   (the tokenizer deals with their bytes).
// - Scalars: bool is 0 or 1; a uint64 above INT64_MAX is refused (also inside uint64 arrays), so kv::i and
//   array_int() are always exact. Nested arrays: UNSUPPORTED.
// - general.alignment, if present, is a UINT32, nonzero power of two.
// - Tensors: non-empty unique names, 1 <= n_dims <= 4, every dim >= 1 (zero-size tensors are refused: no model
//   has them and they would make "data inside the file" vacuous), element count and byte size without
//   overflow, ne[0] a multiple of the type's block size, offset a multiple of the alignment, data inside the
//   file, no two tensors' data overlapping. Unknown type id: UNSUPPORTED naming the tensor and the id.
// - Opening reads only the header region; tensor data pages are not touched until used.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/dtype.h"

namespace tfu {
class mapped_file;
}

namespace tfu::gguf {

enum class value_type : uint32_t {
    UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
    STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};
// "uint8", "string", ...; "unknown" for ids outside the enum.
const char* value_type_name(value_type t);
// Bytes of one element of a fixed-size type; 0 for STRING, ARRAY and unknown ids.
size_t value_type_size(value_type t);
bool is_integer(value_type t);  // UINT8..INT64 (not BOOL)
bool is_float(value_type t);    // FLOAT32, FLOAT64

// One metadata key/value. Scalars are decoded; strings and arrays point into the mapping (valid while the
// file object lives). For arrays, `type` is ARRAY and `elem_type` the element type (nested arrays refused).
struct kv {
    std::string_view key;
    value_type type = value_type::UINT8;
    value_type elem_type = value_type::UINT8;  // arrays only
    uint64_t count = 0;                        // arrays only: number of elements
    int64_t i = 0;                             // integer and bool scalars (uint64 above INT64_MAX is refused)
    double f = 0;                              // FLOAT32/FLOAT64 scalars
    std::string_view str;                      // STRING scalars
    const uint8_t* array_data = nullptr;       // numeric arrays: packed little-endian elements (maybe unaligned)
    std::vector<std::string_view> strings;     // STRING arrays: the elements

    // Numeric (integer or bool) array element as integer; idx < count, else TFU_STATUS_INVALID_ARGUMENT.
    int64_t array_int(uint64_t idx) const;
    // Numeric array element (float, integer or bool) as double; idx < count.
    double array_float(uint64_t idx) const;
};

struct tensor_info {
    std::string_view name;
    dtype type = dtype::F32;
    uint32_t n_dims = 0;
    int64_t ne[4] = {1, 1, 1, 1};
    uint64_t offset = 0;         // relative to the start of the data section
    size_t nbytes = 0;
    const void* data = nullptr;  // inside the mapping, checked to lie within the file

    int64_t nelements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }  // checked not to overflow
};

class file {
public:
    // Maps and validates the file. Missing file: TFU_STATUS_NOT_FOUND; unreadable: TFU_STATUS_IO_ERROR;
    // malformed: TFU_STATUS_INVALID_FILE; unknown tensor type id, GGUF v1 or nested arrays:
    // TFU_STATUS_UNSUPPORTED; metadata larger than memory: TFU_STATUS_OUT_OF_MEMORY.
    static std::unique_ptr<file> open(const std::string& path);
    // Parses a buffer the caller keeps alive (tests, fuzzing); same validation; `name` is used in messages.
    static std::unique_ptr<file> from_memory(const void* data, size_t size, const std::string& name);
    ~file();
    file(const file&) = delete;
    file& operator=(const file&) = delete;

    const std::string& path() const { return path_; }
    uint32_t version() const { return version_; }
    size_t alignment() const { return alignment_; }
    size_t size() const { return size_; }
    // Start of the data section (bytes from the start of the file); tensor_info::offset is relative to it.
    size_t data_offset() const { return data_offset_; }
    const uint8_t* base() const { return base_; }  // the whole file's bytes (size() of them)

    const std::vector<kv>& metadata() const { return kvs_; }
    const kv* find(std::string_view key) const;  // nullptr if absent
    // Typed getters: nullopt if absent; a present key of the wrong type throws INVALID_FILE naming the key.
    std::optional<std::string> get_string(std::string_view key) const;
    std::optional<int64_t> get_int(std::string_view key) const;  // any integer type (not bool)
    std::optional<double> get_float(std::string_view key) const;  // float types (integers accepted)
    std::optional<bool> get_bool(std::string_view key) const;
    // An array whose elements are of `elem`: for integer kinds any integer element type is accepted, for
    // float kinds any float element type; nullptr if absent; wrong kind throws INVALID_FILE.
    const kv* get_array(std::string_view key, value_type elem) const;

    const std::vector<tensor_info>& tensors() const { return tensors_; }
    const tensor_info* find_tensor(std::string_view name) const;  // nullptr if absent

private:
    file() = default;
    void parse();
    void parse_checked();  // parse(), with std::bad_alloc turned into TFU_STATUS_OUT_OF_MEMORY

    std::string path_;
    std::unique_ptr<mapped_file> map_;  // null for from_memory()
    const uint8_t* base_ = nullptr;
    size_t size_ = 0;
    uint32_t version_ = 0;
    size_t alignment_ = 32;
    size_t data_offset_ = 0;
    std::vector<kv> kvs_;
    std::vector<tensor_info> tensors_;
    std::unordered_map<std::string_view, size_t> kv_index_;      // key -> index in kvs_
    std::unordered_map<std::string_view, size_t> tensor_index_;  // name -> index in tensors_
};

}  // namespace tfu::gguf
