// Body of the row-wise binary kernels (add.comp, mul.comp, swiglu.comp): dst (k, rows) = OP(src0, src1), src1
// row stride 0 broadcasting its single row. One thread per element; may run in place (dst == src0).
layout(local_size_x = 256) in;
layout(push_constant) uniform pc_t {
    uint n;      // elements
    uint k;      // row length
    uint a_off, a_s, b_off, b_s, d_off, d_s;  // word offsets and row strides
} pc;

void main() {
    uint i = group_index() * 256u + gl_LocalInvocationID.x;
    if (i >= pc.n) return;
    uint r = i / pc.k, c = i % pc.k;
    float a = src0_f(pc.a_off + r * pc.a_s + c);
    float b = src1_f(pc.b_off + r * pc.b_s + c);
    dst_set(pc.d_off + r * pc.d_s + c, OP(a, b));
}
