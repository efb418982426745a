// f32 -> f16 / bf16 with round-to-nearest-even, exactly as core/fp16.h (f32_to_fp16 / f32_to_bf16): the cache
// stores of kv_store.comp and of rope.comp's STORE variant. Results in the low 16 bits.

uint f32_to_f16(float f) {
    uint x = floatBitsToUint(f);
    uint sign = (x >> 16) & 0x8000u;
    uint a = x & 0x7fffffffu;
    if (a >= 0x7f800000u) return sign | 0x7c00u | (a > 0x7f800000u ? 0x200u : 0u);
    if (a >= 0x477ff000u) return sign | 0x7c00u;
    if (a < 0x38800000u) {
        if (a < 0x33000000u) return sign;
        uint e = a >> 23;
        uint m = (a & 0x7fffffu) | 0x800000u;
        uint shift = 126u - e;
        uint r = m >> shift;
        uint rem = m & ((1u << shift) - 1u);
        uint half_ = 1u << (shift - 1u);
        if (rem > half_ || (rem == half_ && (r & 1u) != 0u)) ++r;
        return sign | r;
    }
    uint r = a - 0x38000000u;
    uint o = r >> 13;
    uint rem = r & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (o & 1u) != 0u)) ++o;
    return sign | o;
}

uint f32_to_bf16(float f) {
    uint x = floatBitsToUint(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return ((x >> 16) | 0x40u) & 0xffffu;
    x += 0x7fffu + ((x >> 16) & 1u);
    return x >> 16;
}

// v as a cache value of GGUF type ctype (1 f16, 30 bf16).
uint f32_to_half(float v, uint ctype) { return ctype == 1u ? f32_to_f16(v) : f32_to_bf16(v); }
