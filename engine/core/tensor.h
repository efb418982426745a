// tfu::tensor: a typed view of up to 4 dimensions over memory someone else owns (mmap, arena, backend buffer).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/dtype.h"

namespace tfu {

// ne[0] is the innermost, contiguous dimension (a weight matrix (n_in, n_out) stores n_out rows of n_in).
// nb[i] is the stride in bytes of dimension i; nb[0] is the element (or block) size.
struct tensor {
    dtype type = dtype::F32;
    int64_t ne[4] = {1, 1, 1, 1};
    size_t nb[4] = {0, 0, 0, 0};
    void* data = nullptr;
    std::string name;

    int64_t nelements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
    int64_t nrows() const { return ne[1] * ne[2] * ne[3]; }
    size_t row_bytes() const { return row_size(type, ne[0]); }
    size_t nbytes() const { return row_bytes() * size_t(nrows()); }
    template <typename T>
    T* ptr() const { return static_cast<T*>(data); }
    // Row r (flattened over dims 1..3) of a contiguous tensor.
    void* row(int64_t r) const { return static_cast<char*>(data) + size_t(r) * nb[1]; }
};

// A contiguous tensor view with strides computed from the shape.
inline tensor make_tensor(dtype type, int64_t ne0, int64_t ne1 = 1, int64_t ne2 = 1, int64_t ne3 = 1,
                          void* data = nullptr, std::string name = {}) {
    tensor t;
    t.type = type;
    t.ne[0] = ne0;
    t.ne[1] = ne1;
    t.ne[2] = ne2;
    t.ne[3] = ne3;
    t.nb[0] = traits(type).type_size;
    t.nb[1] = row_size(type, ne0);
    t.nb[2] = t.nb[1] * size_t(ne1);
    t.nb[3] = t.nb[2] * size_t(ne2);
    t.data = data;
    t.name = std::move(name);
    return t;
}

}  // namespace tfu
