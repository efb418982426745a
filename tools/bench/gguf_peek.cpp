// gguf_peek: a bounds-checked scan of a GGUF header for general.file_type and the tensor types (see gguf_peek.h).
#include "gguf_peek.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <map>

namespace tfu_bench {

namespace {

// A cursor over the mapped bytes; every read checks the remaining length and sets `bad` instead of overrunning.
struct cursor {
    const uint8_t* p;
    uint64_t left;
    bool bad = false;

    bool take(void* dst, uint64_t n) {
        if (bad || n > left) return !(bad = true);
        if (dst) std::memcpy(dst, p, size_t(n));
        p += n;
        left -= n;
        return true;
    }
    uint32_t u32() {
        uint32_t v = 0;
        take(&v, 4);
        return v;
    }
    uint64_t u64() {
        uint64_t v = 0;
        take(&v, 8);
        return v;
    }
    std::string str() {
        const uint64_t n = u64();
        if (bad || n > left) {
            bad = true;
            return {};
        }
        std::string s(reinterpret_cast<const char*>(p), size_t(n));
        take(nullptr, n);
        return s;
    }
};

// Byte size of a scalar GGUF value type (0 for string/array/unknown).
uint64_t scalar_size(uint32_t t) {
    switch (t) {
        case 0: case 1: case 7: return 1;    // u8 i8 bool
        case 2: case 3: return 2;            // u16 i16
        case 4: case 5: case 6: return 4;    // u32 i32 f32
        case 10: case 11: case 12: return 8; // u64 i64 f64
        default: return 0;
    }
}

// Skips one value of type t (strings and arrays included); reads integer scalars into *as_int.
bool skip_value(cursor& c, uint32_t t, int64_t* as_int, int depth) {
    if (depth > 4) return !(c.bad = true);
    if (t == 8) {
        const uint64_t n = c.u64();
        return c.take(nullptr, n);
    }
    if (t == 9) {
        const uint32_t et = c.u32();
        const uint64_t n = c.u64();
        if (c.bad) return false;
        if (const uint64_t sz = scalar_size(et)) {
            if (n > c.left / sz) return !(c.bad = true);
            return c.take(nullptr, n * sz);
        }
        if (et != 8 && et != 9) return !(c.bad = true);
        for (uint64_t i = 0; i < n && !c.bad; ++i) skip_value(c, et, nullptr, depth + 1);
        return !c.bad;
    }
    const uint64_t sz = scalar_size(t);
    if (sz == 0) return !(c.bad = true);
    uint8_t buf[8] = {};
    if (!c.take(buf, sz)) return false;
    if (as_int && t != 6 && t != 12 && t != 7) {
        uint64_t u = 0;
        std::memcpy(&u, buf, size_t(sz));  // little endian
        const bool is_signed = t == 1 || t == 3 || t == 5 || t == 11;
        if (is_signed && sz < 8 && (u >> (8 * sz - 1)) & 1) u |= ~uint64_t(0) << (8 * sz);
        *as_int = int64_t(u);
    }
    return true;
}

}  // namespace

std::string ggml_type_name(uint32_t type) {
    // ref: ggml.h enum ggml_type
    static const std::map<uint32_t, const char*> names = {
        {0, "F32"},   {1, "F16"},   {2, "Q4_0"},  {3, "Q4_1"},  {6, "Q5_0"},  {7, "Q5_1"},  {8, "Q8_0"},
        {9, "Q8_1"},  {10, "Q2_K"}, {11, "Q3_K"}, {12, "Q4_K"}, {13, "Q5_K"}, {14, "Q6_K"}, {15, "Q8_K"},
        {24, "I8"},   {25, "I16"},  {26, "I32"},  {27, "I64"},  {28, "F64"},  {30, "BF16"}};
    const auto it = names.find(type);
    return it != names.end() ? it->second : "type" + std::to_string(type);
}

std::string llama_ftype_name(int64_t ftype) {
    // ref: llama.h enum llama_ftype
    static const std::map<int64_t, const char*> names = {
        {0, "F32"},     {1, "F16"},     {2, "Q4_0"},    {3, "Q4_1"},    {7, "Q8_0"},    {8, "Q5_0"},
        {9, "Q5_1"},    {10, "Q2_K"},   {11, "Q3_K_S"}, {12, "Q3_K_M"}, {13, "Q3_K_L"}, {14, "Q4_K_S"},
        {15, "Q4_K_M"}, {16, "Q5_K_S"}, {17, "Q5_K_M"}, {18, "Q6_K"},   {32, "BF16"}};
    const auto it = names.find(ftype);
    return it != names.end() ? it->second : "";
}

bool gguf_peek_types(const std::string& path, gguf_types* out, std::string* err) {
    *out = gguf_types{};
    const int fd = ::open(path.c_str(), O_RDONLY);
    if (fd < 0) {
        *err = path + ": cannot open: " + std::strerror(errno);
        return false;
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0 || st.st_size < 24) {
        ::close(fd);
        *err = path + ": not a GGUF file (too short)";
        return false;
    }
    void* map = ::mmap(nullptr, size_t(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    if (map == MAP_FAILED) {
        *err = path + ": mmap failed: " + std::strerror(errno);
        return false;
    }
    cursor c{static_cast<const uint8_t*>(map), uint64_t(st.st_size)};
    bool ok = false;
    do {
        if (c.u32() != 0x46554747u) {  // "GGUF"
            *err = path + ": not a GGUF file (bad magic)";
            break;
        }
        const uint32_t version = c.u32();
        if (version != 2 && version != 3) {
            *err = path + ": GGUF version " + std::to_string(version) + " (2 and 3 are supported)";
            break;
        }
        const uint64_t n_tensors = c.u64(), n_kv = c.u64();
        for (uint64_t i = 0; i < n_kv && !c.bad; ++i) {
            const std::string key = c.str();
            const uint32_t t = c.u32();
            int64_t v = -1;
            if (!skip_value(c, t, &v, 0)) break;
            if (key == "general.file_type") out->file_type = v;
        }
        std::map<uint32_t, uint64_t> weights_by_type;  // elements of matrices per ggml type
        for (uint64_t i = 0; i < n_tensors && !c.bad; ++i) {
            c.str();
            const uint32_t n_dims = c.u32();
            if (n_dims > 8) c.bad = true;
            uint64_t n = 1;
            for (uint32_t d = 0; d < n_dims && !c.bad; ++d) {
                const uint64_t dim = c.u64();
                n = (dim != 0 && n > UINT64_MAX / dim) ? UINT64_MAX : n * dim;
            }
            const uint32_t type = c.u32();
            c.u64();  // offset
            if (!c.bad && n_dims >= 2) weights_by_type[type] += n;
        }
        if (c.bad) {
            *err = path + ": truncated or malformed GGUF header";
            break;
        }
        uint64_t best = 0;
        for (const auto& [type, n] : weights_by_type)
            if (n > best) best = n, out->dominant_type = ggml_type_name(type);
        if (out->file_type >= 0) out->file_type_name = llama_ftype_name(out->file_type);
        out->label = !out->file_type_name.empty() ? out->file_type_name : out->dominant_type;
        ok = true;
    } while (false);
    ::munmap(map, size_t(st.st_size));
    return ok;
}

}  // namespace tfu_bench
