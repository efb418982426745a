// libFuzzer target for the GGUF reader: parses the input bytes, then touches everything the parse vouched for.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "core/error.h"
#include "format/gguf.h"

namespace {
volatile uint64_t g_sink;  // keeps the reads below from being optimised away

void touch_kv(const tfu::gguf::file& f, const tfu::gguf::kv& v) {
    using tfu::gguf::value_type;
    if (f.find(v.key) != &v) __builtin_trap();  // keys are unique and indexed
    uint64_t h = v.key.size() + v.str.size() + uint64_t(v.i);
    if (v.type == value_type::ARRAY && v.count > 0) {
        // First and last elements (and a few in between): enough for ASan to see a bad bound.
        const uint64_t picks[] = {0, v.count / 2, v.count - 1};
        for (uint64_t k : picks) {
            if (v.elem_type == value_type::STRING) {
                std::string_view s = v.strings.at(size_t(k));
                if (!s.empty()) h += uint8_t(s.front()) + uint8_t(s.back());
            } else {
                double d = v.array_float(k);  // bits, not a cast: NaN/huge values are fine here
                uint64_t bits;
                std::memcpy(&bits, &d, sizeof bits);
                h += bits;
                if (v.elem_type != value_type::FLOAT32 && v.elem_type != value_type::FLOAT64) h += uint64_t(v.array_int(k));
            }
        }
    }
    g_sink = g_sink + h;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        auto f = tfu::gguf::file::from_memory(data, size, "fuzz.gguf");
        for (const tfu::gguf::kv& v : f->metadata()) touch_kv(*f, v);
        for (const tfu::gguf::tensor_info& t : f->tensors()) {
            const uint8_t* p = static_cast<const uint8_t*>(t.data);
            if (t.nbytes == 0 || p < data || p + t.nbytes > data + size) __builtin_trap();
            if (f->find_tensor(t.name) != &t) __builtin_trap();
            g_sink = g_sink + p[0] + p[t.nbytes - 1];
        }
        // Typed getters on common keys: a wrong type throws, which is fine.
        (void)f->get_string("general.architecture");
        (void)f->get_int("general.alignment");
    } catch (const tfu::error& e) {
        if (e.status() == TFU_STATUS_INTERNAL) __builtin_trap();  // bad input must never look like a bug
    }
    return 0;
}
