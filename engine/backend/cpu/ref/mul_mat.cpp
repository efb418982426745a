// ref::mul_mat: dst (m, n) = src0 (k, m; any weight dtype) . src1 (k, n): dst[j][i] = w_i . x_j.
#include <vector>

#include "backend/cpu/ref/ref_ops.h"
#include "core/quant.h"

namespace tfu::ref {

void mul_mat(const op& o) {
    const tensor& w = *o.src[0];
    const tensor& x = *o.src[1];
    const int64_t k = w.ne[0], m = w.ne[1], n = x.nrows();
    std::vector<float> wrow(w.type == dtype::F32 ? 0 : size_t(k));
    for (int64_t i = 0; i < m; ++i) {
        // Quantized rows go through the scalar block dot product; plain f32/f16/bf16 rows are widened and
        // summed in double.
        const bool quantized = traits(w.type).quantized;
        const float* wf = static_cast<const float*>(w.row(i));
        if (!quantized && w.type != dtype::F32) {
            dequantize_row(w.type, w.row(i), wrow.data(), k);
            wf = wrow.data();
        }
        for (int64_t j = 0; j < n; ++j) {
            const float* xj = static_cast<const float*>(x.row(j));
            float* yj = static_cast<float*>(o.dst->row(j));
            if (quantized) {
                yj[i] = vec_dot_f32(w.type, w.row(i), xj, k);
            } else {
                double s = 0;
                for (int64_t l = 0; l < k; ++l) s += double(wf[l]) * xj[l];
                yj[i] = float(s);
            }
        }
    }
}

}  // namespace tfu::ref
