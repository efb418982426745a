// MUL_MAT, the first tiled matrix-matrix form (n > 8), kept for comparison (TFU_VK_MM_TILE=32; mul_mat.comp is the
// default): dst[j][i] = w_i . x_j. Each group of 256 threads computes a 32 x 32 tile of (rows i, columns j),
// stepping k by 32: the weight tile is dequantized (dtype TYPE, one dq() per element) into shared memory
// once per step and reused by 32 columns. Launch: ceil(m / 32) * ceil(n / 32) groups, index = tn * tiles_m + tm.
#version 450
#include "common.glsl"
#include "dequant.glsl"
layout(local_size_x = 256) in;
layout(push_constant) uniform pc_t {
    uint k, m, n;
    uint w_off, w_nb1;
    uint x_off, x_s, d_off, d_s;
} pc;
const uint TM = 32u, TN = 32u, TK = 32u;
shared float ws[TK][TM + 1u];
shared float xs[TK][TN + 1u];

void main() {
    uint tiles_m = (pc.m + TM - 1u) / TM;
    uint g = group_index();
    uint tm = g % tiles_m, tn = g / tiles_m;
    if (tn * TN >= pc.n) return;
    uint t = gl_LocalInvocationID.x;
    uint tr = t % 16u, tc = t / 16u;  // this thread's outputs: rows tr, tr + 16; columns tc, tc + 16
    float acc[2][2] = {{0.0, 0.0}, {0.0, 0.0}};
    for (uint k0 = 0u; k0 < pc.k; k0 += TK) {
        [[unroll]] for (uint q = 0u; q < 4u; ++q) {
            uint idx = t + 256u * q;
            uint r = idx / TK, kk = idx % TK;
            uint gi = tm * TM + r, gj = tn * TN + r, gk = k0 + kk;
            ws[kk][r] = (gi < pc.m && gk < pc.k) ? dq(pc.w_off + gi * pc.w_nb1, gk) : 0.0;
            xs[kk][r] = (gj < pc.n && gk < pc.k) ? src1_f(pc.x_off + gj * pc.x_s + gk) : 0.0;
        }
        barrier();
        [[unroll]] for (uint kk = 0u; kk < TK; ++kk) {
            float w0 = ws[kk][tr], w1 = ws[kk][tr + 16u];
            float x0 = xs[kk][tc], x1 = xs[kk][tc + 16u];
            acc[0][0] += w0 * x0;
            acc[0][1] += w0 * x1;
            acc[1][0] += w1 * x0;
            acc[1][1] += w1 * x1;
        }
        barrier();
    }
    [[unroll]] for (uint a = 0u; a < 2u; ++a)
        [[unroll]] for (uint b = 0u; b < 2u; ++b) {
            uint i = tm * TM + tr + 16u * a, j = tn * TN + tc + 16u * b;
            if (i < pc.m && j < pc.n) dst_set(pc.d_off + j * pc.d_s + i, acc[a][b]);
        }
}
