// mul_mat_cm.comp's x in fp16 (its X16 form, kernels_vk/README.md "Tensor cores"): the f32 columns of x rewritten
// as halves in the order the tiles take them for weights of type TYPE. Unit u of column j (the 8 values of x at
// the element positions of weight unit u, cm_x.glsl; pair order for Q4_0 / Q8_0) becomes vector j * ku + u of dst,
// ku = the units of a column with k rounded up to a step of 32 (values past k are 0). The product then loads one
// 16-byte vector per unit of x instead of two of f32 and converting them, in every workgroup of a row of tiles.
//
// Launch: one thread per (column, unit), ceil(n ku / 256) workgroups. Push: k, n, ku (units per column), x_off,
// x_s (words); dst is bound at binding 0, x at binding 2.
#version 450
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#include "common.glsl"
#include "dequant.glsl"
#include "mmv_units.glsl"
layout(local_size_x = 256) in;
layout(push_constant) uniform pc_t {
    uint k, n, ku;
    uint x_off, x_s;  // words
} pc;
#include "cm_x.glsl"
layout(set = 0, binding = 0) writeonly buffer dst_u4_buf { uvec4 dst_u4[]; };

void main() {
    uint i = group_index() * 256u + gl_LocalInvocationID.x;
    if (i >= pc.n * pc.ku) return;
    uint j = i / pc.ku, u = i % pc.ku;
    bool x4 = (pc.x_off & 3u) == 0u && (pc.x_s & 3u) == 0u;
    vec4 a = vec4(0.0), b = vec4(0.0);
    if (8u * u < pc.k) load_x_unit(pc.x_off + j * pc.x_s, u, x4, a, b);
    dst_u4[i] = pack_unit(a, b);
}
