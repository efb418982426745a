// enum_value: the integer in an enum-typed field that a C caller filled. Read as bytes: loading an enum object
// whose value lies outside its enumerators' range is undefined in C++ (UBSan reports it), and a C caller may put
// any int there. Validate with this, then use the field.
#pragma once

#include <cstdint>
#include <cstring>

namespace tfu {

template <typename E>
int32_t enum_value(const E& e) {
    static_assert(sizeof(E) == sizeof(int32_t), "C enums of the ABI are int-sized");
    int32_t v;
    std::memcpy(&v, &e, sizeof v);
    return v;
}

}  // namespace tfu
