// Table of dtype geometry (block size, bytes per block), as GGUF defines the formats.
#include "core/dtype.h"

#include "core/error.h"

namespace tfu {

namespace {
struct entry {
    uint32_t id;
    dtype_traits traits;
};
// type_size values follow the block layouts in core/quant.h.
const entry k_table[] = {
    {0, {"f32", 1, 4, false, true}},          {1, {"f16", 1, 2, false, true}},
    {2, {"q4_0", 32, 18, true, true}},        {3, {"q4_1", 32, 20, true, true}},
    {6, {"q5_0", 32, 22, true, true}},        {7, {"q5_1", 32, 24, true, true}},
    {8, {"q8_0", 32, 34, true, true}},        {9, {"q8_1", 32, 36, true, false}},
    {10, {"q2_K", 256, 84, true, true}},      {11, {"q3_K", 256, 110, true, true}},
    {12, {"q4_K", 256, 144, true, true}},     {13, {"q5_K", 256, 176, true, true}},
    {14, {"q6_K", 256, 210, true, true}},     {15, {"q8_K", 256, 292, true, false}},
    {24, {"i8", 1, 1, false, false}},         {25, {"i16", 1, 2, false, false}},
    {26, {"i32", 1, 4, false, false}},        {27, {"i64", 1, 8, false, false}},
    {28, {"f64", 1, 8, false, false}},        {30, {"bf16", 1, 2, false, true}},
};
}  // namespace

const dtype_traits* dtype_traits_of(uint32_t id) {
    for (const entry& e : k_table)
        if (e.id == id) return &e.traits;
    return nullptr;
}

const dtype_traits& traits(dtype t) {
    const dtype_traits* tr = dtype_traits_of(uint32_t(t));
    TFU_CHECK(tr != nullptr);
    return *tr;
}

}  // namespace tfu
