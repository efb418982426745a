// The x side of mul_mat_cm.comp, shared with mul_mat_cm_x16.comp (which writes x as the tiles take it): a unit's
// 8 values of x at the element positions of a weight unit of type TYPE, and their packing into halves.
// Needs dequant.glsl (TYPE), mmv_units.glsl (unit_x, x_vec4) and a push-constant block `pc` with k.

// Only float rows can end inside a step (k % 32 != 0) or inside a unit (k % 8 != 0).
const bool FLOAT_TYPE = TYPE == T_F32 || TYPE == T_F16 || TYPE == T_BF16;
// Q4_0 and Q8_0 weights are decoded by packed fp16 arithmetic, which yields the values of a unit in the pair order
// (0, 2), (1, 3), (4, 6), (5, 7) (value i of the unit: i < 4 pairs with x[e0 + i], else with x[e1 + i - 4]); x is
// packed in the same order, so within the step the slots of a unit hold the same values permuted alike.
const bool PAIRED = TYPE == T_Q4_0 || TYPE == T_Q8_0;
// 8 values (value i of the unit at half i of the vector: a = values 0..3, b = 4..7) as halves, in the type's order.
uvec4 pack_unit(vec4 a, vec4 b) {
    if (PAIRED)
        return uvec4(packFloat2x16(f16vec2(a.xz)), packFloat2x16(f16vec2(a.yw)), packFloat2x16(f16vec2(b.xz)),
                     packFloat2x16(f16vec2(b.yw)));
    return uvec4(packFloat2x16(f16vec2(a.xy)), packFloat2x16(f16vec2(a.zw)), packFloat2x16(f16vec2(b.xy)),
                 packFloat2x16(f16vec2(b.zw)));
}

// x at the element positions of unit u of the column at word `col` (0 past k).
void load_x_unit(uint col, uint u, bool x4, out vec4 a, out vec4 b) {
    uint e0, e1;
    unit_x(u, e0, e1);
    if (!FLOAT_TYPE || 8u * u + 8u <= pc.k) {
        a = x_vec4(col + e0, x4);
        b = x_vec4(col + e1, x4);
        return;
    }
    float v[8];
    [[unroll]] for (uint i = 0u; i < 8u; ++i) {
        uint e = 8u * u + i;
        v[i] = e < pc.k ? src1_f(col + e) : 0.0;
    }
    a = vec4(v[0], v[1], v[2], v[3]);
    b = vec4(v[4], v[5], v[6], v[7]);
}
