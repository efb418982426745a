// GGUF metadata access: value type names and sizes, array element decoding, typed getters and lookups.
#include <cstring>

#include "core/error.h"
#include "format/gguf.h"

namespace tfu::gguf {

const char* value_type_name(value_type t) {
    switch (t) {
    case value_type::UINT8: return "uint8";
    case value_type::INT8: return "int8";
    case value_type::UINT16: return "uint16";
    case value_type::INT16: return "int16";
    case value_type::UINT32: return "uint32";
    case value_type::INT32: return "int32";
    case value_type::FLOAT32: return "float32";
    case value_type::BOOL: return "bool";
    case value_type::STRING: return "string";
    case value_type::ARRAY: return "array";
    case value_type::UINT64: return "uint64";
    case value_type::INT64: return "int64";
    case value_type::FLOAT64: return "float64";
    }
    return "unknown";
}

size_t value_type_size(value_type t) {
    switch (t) {
    case value_type::UINT8:
    case value_type::INT8:
    case value_type::BOOL: return 1;
    case value_type::UINT16:
    case value_type::INT16: return 2;
    case value_type::UINT32:
    case value_type::INT32:
    case value_type::FLOAT32: return 4;
    case value_type::UINT64:
    case value_type::INT64:
    case value_type::FLOAT64: return 8;
    case value_type::STRING:
    case value_type::ARRAY: return 0;
    }
    return 0;
}

bool is_integer(value_type t) {
    switch (t) {
    case value_type::UINT8:
    case value_type::INT8:
    case value_type::UINT16:
    case value_type::INT16:
    case value_type::UINT32:
    case value_type::INT32:
    case value_type::UINT64:
    case value_type::INT64: return true;
    default: return false;
    }
}

bool is_float(value_type t) { return t == value_type::FLOAT32 || t == value_type::FLOAT64; }

namespace {

template <typename T>
T load(const uint8_t* p) {
    T v;
    std::memcpy(&v, p, sizeof(T));  // array data may be unaligned
    return v;
}

void check_index(const kv& v, uint64_t idx, const char* fn) {
    if (v.type != value_type::ARRAY || idx >= v.count)
        fail(TFU_STATUS_INVALID_ARGUMENT, std::string(fn) + ": key '" + std::string(v.key) + "': index " +
                                              std::to_string(idx) + " outside the array (count " +
                                              std::to_string(v.type == value_type::ARRAY ? v.count : 0) + ")");
}

[[noreturn]] void wrong_elem(const kv& v, const char* fn) {
    fail(TFU_STATUS_INVALID_ARGUMENT, std::string(fn) + ": key '" + std::string(v.key) + "' is an array of " +
                                          value_type_name(v.elem_type));
}

}  // namespace

int64_t kv::array_int(uint64_t idx) const {
    check_index(*this, idx, "array_int");
    const uint8_t* p = array_data + idx * value_type_size(elem_type);
    switch (elem_type) {
    case value_type::UINT8:
    case value_type::BOOL: return load<uint8_t>(p);
    case value_type::INT8: return load<int8_t>(p);
    case value_type::UINT16: return load<uint16_t>(p);
    case value_type::INT16: return load<int16_t>(p);
    case value_type::UINT32: return load<uint32_t>(p);
    case value_type::INT32: return load<int32_t>(p);
    case value_type::UINT64: return int64_t(load<uint64_t>(p));  // checked <= INT64_MAX when parsed
    case value_type::INT64: return load<int64_t>(p);
    default: wrong_elem(*this, "array_int");
    }
}

double kv::array_float(uint64_t idx) const {
    check_index(*this, idx, "array_float");
    if (elem_type == value_type::FLOAT32) return load<float>(array_data + idx * 4);
    if (elem_type == value_type::FLOAT64) return load<double>(array_data + idx * 8);
    if (is_integer(elem_type) || elem_type == value_type::BOOL) return double(array_int(idx));
    wrong_elem(*this, "array_float");
}

const kv* file::find(std::string_view key) const {
    auto it = kv_index_.find(key);
    return it == kv_index_.end() ? nullptr : &kvs_[it->second];
}

namespace {
[[noreturn]] void wrong_type(const std::string& path, const kv& v, const std::string& expected) {
    std::string got = value_type_name(v.type);
    if (v.type == value_type::ARRAY) got += std::string(" of ") + value_type_name(v.elem_type);
    fail(TFU_STATUS_INVALID_FILE, path + ": key '" + std::string(v.key) + "' has type " + got + ", expected " + expected);
}
}  // namespace

std::optional<std::string> file::get_string(std::string_view key) const {
    const kv* v = find(key);
    if (v == nullptr) return std::nullopt;
    if (v->type != value_type::STRING) wrong_type(path_, *v, "string");
    return std::string(v->str);
}

std::optional<int64_t> file::get_int(std::string_view key) const {
    const kv* v = find(key);
    if (v == nullptr) return std::nullopt;
    if (!is_integer(v->type)) wrong_type(path_, *v, "an integer");
    return v->i;
}

std::optional<double> file::get_float(std::string_view key) const {
    const kv* v = find(key);
    if (v == nullptr) return std::nullopt;
    if (is_float(v->type)) return v->f;
    if (is_integer(v->type)) return double(v->i);
    wrong_type(path_, *v, "a number");
}

std::optional<bool> file::get_bool(std::string_view key) const {
    const kv* v = find(key);
    if (v == nullptr) return std::nullopt;
    if (v->type != value_type::BOOL) wrong_type(path_, *v, "bool");
    return v->i != 0;
}

const kv* file::get_array(std::string_view key, value_type elem) const {
    if (elem == value_type::ARRAY) fail(TFU_STATUS_INVALID_ARGUMENT, "get_array: arrays of arrays do not exist");
    const kv* v = find(key);
    if (v == nullptr) return nullptr;
    const std::string expected = std::string("array of ") + value_type_name(elem);
    if (v->type != value_type::ARRAY) wrong_type(path_, *v, expected);
    bool ok = v->elem_type == elem || (is_integer(elem) && is_integer(v->elem_type)) ||
              (is_float(elem) && is_float(v->elem_type));
    if (!ok) wrong_type(path_, *v, expected);
    return v;
}

const tensor_info* file::find_tensor(std::string_view name) const {
    auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace tfu::gguf
