/* m2nas C kernels: packed-tensor access and fixed-point requantization, emitted at the top of
   every generated model.c (see nas/export/c/kernels.py for the conventions). */
#ifndef M2_KERNELS_H
#define M2_KERNELS_H

#include <stdint.h>

/*@kernel common*/
/* Element i of a packed tensor of `bits` (2, 4, 8) bits; sign-extended when `sgn`. */
static inline int32_t m2_ld(const uint8_t *p, int32_t i, int bits, int sgn)
{
    uint32_t bit, v, m;
    if (bits == 8)
        return sgn ? (int32_t)(int8_t)p[i] : (int32_t)p[i];
    bit = (uint32_t)i * (uint32_t)bits;
    m = (1u << bits) - 1u;
    v = ((uint32_t)p[bit >> 3] >> (bit & 7u)) & m;
    if (sgn && (v >> (bits - 1)))
        return (int32_t)v - (int32_t)(1u << bits);
    return (int32_t)v;
}

/* Store v (already in range) as element i of a packed tensor of `bits` bits. */
static inline void m2_st(uint8_t *p, int32_t i, int bits, int32_t v)
{
    uint32_t bit, m, sh;
    if (bits == 8) {
        p[i] = (uint8_t)(v & 0xff);
        return;
    }
    bit = (uint32_t)i * (uint32_t)bits;
    m = (1u << bits) - 1u;
    sh = bit & 7u;
    p[bit >> 3] = (uint8_t)((p[bit >> 3] & ~(m << sh)) | (((uint32_t)v & m) << sh));
}

/* round(p / 2^shift), half to even, 1 <= shift <= 62; no undefined or implementation-defined ops. */
static inline int64_t m2_rshift(int64_t p, int shift)
{
    const int64_t one = (int64_t)1 << shift, half = (int64_t)1 << (shift - 1);
    int64_t q, r;
    q = p >= 0 ? p / one : -((-p + one - 1) / one); /* floor */
    r = p - q * one;                                /* 0 <= r < one */
    if (r > half || (r == half && (q & 1)))
        q += 1;
    return q;
}

static inline int32_t m2_clamp(int64_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : (v > hi ? hi : (int32_t)v);
}

/* Fixed-point requantization: clamp(round(acc * mult / 2^shift), lo, hi). */
static inline int32_t m2_requant(int64_t acc, int32_t mult, int shift, int32_t lo, int32_t hi)
{
    return m2_clamp(m2_rshift(acc * (int64_t)mult, shift), lo, hi);
}

/* Network input (int8 values on the input quantizer's grid) into its packed arena tensor. */
static void m2_load(const int8_t *src, int32_t n, uint8_t *y, int ybits, int32_t lo, int32_t hi)
{
    int32_t i;
    for (i = 0; i < n; ++i)
        m2_st(y, i, ybits, m2_clamp(src[i], lo, hi));
}
/*@end*/

#endif /* M2_KERNELS_H */
