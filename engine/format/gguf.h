// GGUF (v2, v3) reader over a memory map: metadata, tensor infos and data, every offset/size/count validated
// before use. The reader never trusts the file: any inconsistency throws tfu::error(TFU_STATUS_INVALID_FILE)
// naming the file and the field at fault.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"

namespace tfu::gguf {

enum class value_type : uint32_t {
    UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
    STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};
const char* value_type_name(value_type t);

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

    int64_t array_int(uint64_t idx) const;     // numeric array element as integer (idx < count)
    double array_float(uint64_t idx) const;    // numeric array element as double
};

struct tensor_info {
    std::string_view name;
    dtype type = dtype::F32;
    uint32_t n_dims = 0;
    int64_t ne[4] = {1, 1, 1, 1};
    uint64_t offset = 0;      // relative to the start of the data section
    size_t nbytes = 0;
    const void* data = nullptr;  // inside the mapping, checked to lie within the file
};

class file {
public:
    // Maps and validates the file. Missing file: TFU_STATUS_NOT_FOUND; unreadable: TFU_STATUS_IO_ERROR;
    // malformed: TFU_STATUS_INVALID_FILE; unknown tensor type id: TFU_STATUS_UNSUPPORTED.
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

    const std::vector<kv>& metadata() const { return kvs_; }
    const kv* find(std::string_view key) const;  // nullptr if absent
    // Typed getters: nullopt if absent; a present key of the wrong type throws INVALID_FILE naming the key.
    std::optional<std::string> get_string(std::string_view key) const;
    std::optional<int64_t> get_int(std::string_view key) const;  // any integer type
    std::optional<double> get_float(std::string_view key) const;  // float types (integers accepted)
    std::optional<bool> get_bool(std::string_view key) const;
    // An array whose elements are of `elem` (for integer kinds any integer element type is accepted);
    // nullptr if absent; wrong kind throws INVALID_FILE.
    const kv* get_array(std::string_view key, value_type elem) const;

    const std::vector<tensor_info>& tensors() const { return tensors_; }
    const tensor_info* find_tensor(std::string_view name) const;  // nullptr if absent

private:
    file() = default;
    void parse();

    std::string path_;
    const uint8_t* base_ = nullptr;
    size_t size_ = 0;
    bool mapped_ = false;
    uint32_t version_ = 0;
    size_t alignment_ = 32;
    std::vector<kv> kvs_;
    std::vector<tensor_info> tensors_;
};

}  // namespace tfu::gguf
