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

/* round(p / 2^shift), half to even, 1 <= shift <= 62; no undefined or implementation-defined ops.
   No division either: a 64-bit divide is a library call of ~100 instructions on a Cortex-M, once per
   output value. Only non-negative values are shifted (~p >= 0 when p < 0, and floor(p / 2^s) =
   ~floor(~p / 2^s)); the remainder is p's low bits. */
static inline int64_t m2_rshift(int64_t p, int shift)
{
    const uint64_t mask = ((uint64_t)1 << shift) - 1u, half = (uint64_t)1 << (shift - 1);
    const uint64_t r = (uint64_t)p & mask; /* p - floor(p / 2^shift) * 2^shift, in [0, 2^shift) */
    int64_t q = p >= 0 ? p >> shift : ~(~p >> shift); /* floor */
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

/* Dot products of one int8 / uint8 column with `n` (1..4) consecutive int8 weight rows of length K:
   acc[j] = sum_k col[k] * w[j * K + k]. Several output channels per pass load each column element
   once. With the DSP extension (Cortex-M4 / M7: __ARM_FEATURE_DSP) four elements at a time: SXTB16 /
   UXTB16 split a word into two 16-bit pairs (elements 0, 2 and 1, 3), SMLAD does two MACs per
   instruction; integer sums in another order, so the result is the portable loop's, bit for bit. */
#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#include <string.h>

static inline uint32_t m2_ld32(const void *p) /* unaligned: LDR allows it on v7-M */
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline uint32_t m2_ror8(uint32_t v)
{
    return (v >> 8) | (v << 24);
}

#define M2_DOT4_DSP(EXT)                                                                       \
    for (; k + 4 <= K; k += 4) {                                                               \
        const uint32_t c = m2_ld32(col + k);                                                   \
        const int32_t c02 = (int32_t)EXT(c), c13 = (int32_t)EXT(m2_ror8(c));                   \
        uint32_t v;                                                                            \
        v = m2_ld32(w0 + k);                                                                   \
        a0 = __smlad(c02, __sxtb16((int32_t)v), __smlad(c13, __sxtb16((int32_t)m2_ror8(v)), a0)); \
        v = m2_ld32(w1 + k);                                                                   \
        a1 = __smlad(c02, __sxtb16((int32_t)v), __smlad(c13, __sxtb16((int32_t)m2_ror8(v)), a1)); \
        v = m2_ld32(w2 + k);                                                                   \
        a2 = __smlad(c02, __sxtb16((int32_t)v), __smlad(c13, __sxtb16((int32_t)m2_ror8(v)), a2)); \
        v = m2_ld32(w3 + k);                                                                   \
        a3 = __smlad(c02, __sxtb16((int32_t)v), __smlad(c13, __sxtb16((int32_t)m2_ror8(v)), a3)); \
    }
#endif

static inline void m2_dot_8(const uint8_t *col, int sgn, const int8_t *w, int32_t K, int n, int32_t acc[4])
{
    /* Rows past n alias row 0 (their sums are dropped): one loop body for 1..4 channels. */
    const int8_t *w0 = w, *w1 = n > 1 ? w + K : w, *w2 = n > 2 ? w + 2 * K : w, *w3 = n > 3 ? w + 3 * K : w;
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, k = 0;
#if defined(__ARM_FEATURE_DSP)
    if (sgn) {
        M2_DOT4_DSP(__sxtb16)
    } else {
        M2_DOT4_DSP(__uxtb16)
    }
#endif
    if (sgn) {
        const int8_t *c = (const int8_t *)col;
        for (; k < K; ++k) {
            const int32_t v = c[k];
            a0 += v * w0[k];
            a1 += v * w1[k];
            a2 += v * w2[k];
            a3 += v * w3[k];
        }
    } else {
        for (; k < K; ++k) {
            const int32_t v = col[k];
            a0 += v * w0[k];
            a1 += v * w1[k];
            a2 += v * w2[k];
            a3 += v * w3[k];
        }
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
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
