// When a projection's residual ADD may be stored by the projection's own launch, shared by CUDA
// (kernels_cuda/mul_mat_vec.cu add_fused) and Vulkan (kernels_vk/vk_ops.cpp, mul_mat_vec's residual): the
// thread that stores d[i] = W x also stores y[i] = r[i] + d[i], the ADD's one f32 add on the value just stored,
// so the result is the ADD's bit for bit. What remains to decide is aliasing.
#pragma once

#include "backend/fused_pairs.h"

namespace tfu {

// MUL_MAT(d, W, x) then ADD(y, r, d) or ADD(y, d, r): returns r (the residual), or nullptr when the launch may not
// store y. r is f32 of d's shape (no broadcast row), apart from d (d is stored before r is read); y touches
// neither x nor W (other workgroups still read them) and is r's rows or apart from r, d's rows or apart from d.
inline const tensor* projection_residual(const op& mm, const op& add) {
    if (mm.type != op_type::MUL_MAT || add.type != op_type::ADD) return nullptr;
    const tensor& d = *mm.dst;
    const tensor& x = *mm.src[1];
    const tensor& w = *mm.src[0];
    const tensor* r = same_rows(*add.src[1], d) ? add.src[0] : same_rows(*add.src[0], d) ? add.src[1] : nullptr;
    if (!r || r->type != dtype::F32 || r->ne[0] != d.ne[0] || r->nrows() != d.nrows()) return nullptr;
    if (d.nrows() > 1 && r->nb[1] == 0) return nullptr;  // a broadcast row
    const tensor& y = *add.dst;
    if (tensors_overlap(*r, d) || tensors_overlap(y, x) || tensors_overlap(y, w)) return nullptr;
    if (!apart_or_same(y, *r) || !apart_or_same(y, d)) return nullptr;
    return r;
}

}  // namespace tfu
