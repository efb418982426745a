// GET_ROWS: dst (n_embd, n) = src0 (n_embd, n_vocab; weight dtype TYPE) rows at src1 (n, i32), dequantized.
// Launch: ceil(n_embd * n / 256) groups of 256, once per row piece [row_lo, row_hi) of src0 (bound from row_lo).
#version 450
#include "common.glsl"
#include "dequant.glsl"
layout(local_size_x = 256) in;
layout(push_constant) uniform pc_t {
    uint n_embd, n_ids;
    uint w_off, w_nb1;         // bytes: row row_lo starts at w_off
    uint row_lo, row_hi, n_vocab;
    uint ids_off, d_off, d_s;  // words
} pc;

void main() {
    uint i = group_index() * 256u + gl_LocalInvocationID.x;
    if (i >= pc.n_embd * pc.n_ids) return;
    uint j = i / pc.n_embd, e = i % pc.n_embd;
    int id = int(src1_w[pc.ids_off + j]);
    if (id < 0 || id >= int(pc.n_vocab)) {  // the device cannot throw: an invalid id reads as NaN
        if (pc.row_lo == 0u) dst_set(pc.d_off + j * pc.d_s + e, uintBitsToFloat(0x7fc00000u));
        return;
    }
    if (uint(id) < pc.row_lo || uint(id) >= pc.row_hi) return;  // another piece's row
    dst_set(pc.d_off + j * pc.d_s + e, dq(pc.w_off + (uint(id) - pc.row_lo) * pc.w_nb1, e));
}
