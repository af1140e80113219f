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

/* Speed-optimised Arm builds (DSP extension, GCC or clang, not -Os) take extra fast paths: 32-bit
   requantization and byte columns copied once per position. A size-optimised build (-Os: the build
   whose flash the memory model predicts) keeps the compact code. Results are the same bit for bit. */
#if defined(__ARM_FEATURE_DSP) && defined(__GNUC__) && !defined(__OPTIMIZE_SIZE__)
#define M2_SPEED 1
#else
#define M2_SPEED 0
#endif

/* Fixed-point requantization: clamp(round(acc * mult / 2^shift), lo, hi). */
static inline int32_t m2_requant(int64_t acc, int32_t mult, int shift, int32_t lo, int32_t hi)
{
#if M2_SPEED
    /* 32-bit arithmetic on the halves of p = acc * mult = hi * 2^32 + lo (SMULL), for shift = 32 + t
       with t >= 1 (every multiplier below 1/4: mult has 31 bits). floor(p / 2^shift) = hi >> t, and
       round-half-even adds 1 exactly when the low t bits of hi plus 2^(t-1) - 1 + e carry into bit t,
       e = 1 when lo != 0 or the floor is odd. |p| < 2^62, so hi + 2^(t-1) cannot overflow. */
    if (acc == (int32_t)acc && shift > 32) {
        const int64_t p = (int64_t)(int32_t)acc * mult;
        const int32_t ph = (int32_t)(p >> 32), t = shift - 32;
        const int32_t e = ((uint32_t)p != 0u) | ((ph >> t) & 1);
        const int32_t q = (ph + ((1 << (t - 1)) - 1) + e) >> t;
        return q < lo ? lo : (q > hi ? hi : q);
    }
#endif
#if defined(__ARM_FEATURE_DSP)
    /* Arm compilers shift signed values arithmetically (floor), so with f = floor(p / 2^s),
       round-half-even(p / 2^s) = floor((p + 2^(s-1) - 1 + (f & 1)) / 2^s): one SMULL and two 64-bit
       shifts. For an int32 accumulator |p| < 2^62, so the sum cannot overflow; otherwise (a
       saturated bias) the portable path. */
    if (acc == (int32_t)acc) {
        const int64_t p = (int64_t)(int32_t)acc * mult;
        return m2_clamp((p + ((((int64_t)1 << (shift - 1)) - 1) + ((p >> shift) & 1))) >> shift, lo, hi);
    }
#endif
    return m2_clamp(m2_rshift(acc * (int64_t)mult, shift), lo, hi);
}

/* A layer's requantization: int32 accumulator plus int32 bias (the 64-bit sum only when it overflows). */
static inline int32_t m2_requant_b(int32_t acc, int32_t bias, int32_t mult, int shift, int32_t lo, int32_t hi)
{
#if M2_SPEED
    int32_t s;
    if (!__builtin_add_overflow(acc, bias, &s))
        return m2_requant(s, mult, shift, lo, hi);
#endif
    return m2_requant((int64_t)acc + bias, mult, shift, lo, hi);
}

/* Dot products of one int8 / uint8 column with `n` (1..4) consecutive weight rows of length K:
   acc[j] = sum_k col[k * cs] * w_j[k]. The column is an im2col patch or a linear layer's input
   (cs = 1), or one position of a channel-first tensor (cs = positions: pointwise convolutions).
   Several output channels per pass load and widen each column element once; rows past `n` alias
   row 0 (their sums are dropped), so one loop body serves 1..4 channels. Integer sums in another
   order: every path gives the portable loop's result, bit for bit. */
/* Out of line: inlined into a kernel's loop nest the dot loop's dozen live registers spill.

   In a size-optimised build (-Os) the operator kernels, the dot products and the input loader are
   also compiled without knowledge of their callers (GCC's noipa: not inlined into a single call
   site, not cloned or specialised for arguments every call site happens to share), so that a
   kernel costs the same flash in every model that links it: that is what lets the memory model
   predict flash from the kernels a graph uses (the device files' kernel sizes are measured with
   arm-none-eabi-gcc -Os). Other builds (-O2, where the emulated-core instruction counts come from)
   let the compiler specialise: measured, noipa there costs 20-50% more instructions. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__OPTIMIZE_SIZE__)
#define M2_KERNEL __attribute__((noipa))
#define M2_NOINLINE __attribute__((noipa, unused)) /* unused: not every model calls both */
#elif defined(__GNUC__)
#define M2_KERNEL
#define M2_NOINLINE __attribute__((noinline, unused))
#else
#define M2_KERNEL
#define M2_NOINLINE
#endif
/* The dot products a model links, by weight bit-width of its dense layers (conv, pointwise,
   linear): model.c defines M2_W8 / M2_W4 / M2_W2 from its layers (all on when undefined), so the
   fast path of a bit-width no layer has is dead code and is not in flash. A guarded-off path falls
   back to the generic loops: a wrong definition costs speed, never a wrong result. */
#ifndef M2_W8
#define M2_W8 1
#endif
#ifndef M2_W4
#define M2_W4 1
#endif
#ifndef M2_W2
#define M2_W2 1
#endif
#define M2_WLOW (M2_W4 || M2_W2)
#define M2_DOT8_OK(wbits) (M2_W8 && (wbits) == 8)
#define M2_DOTLOW_OK(wbits, K) (((M2_W4 && (wbits) == 4) || (M2_W2 && (wbits) == 2)) && ((K) * (wbits)) % 8 == 0)
#if defined(__ARM_FEATURE_DSP)
/* Cortex-M4 / M7 (ACLE intrinsics, compiler built-ins): SXTB16 / UXTB16 widen bytes 0, 2 (or 1, 3
   after a rotation) of a word into two 16-bit lanes, SMLAD multiplies two lane pairs and adds both
   products to a 32-bit accumulator. */
#include <arm_acle.h>
#include <string.h>

static inline uint32_t m2_ld32(const void *p) /* LDR: v7-M allows unaligned word loads */
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline int32_t m2_sxtb16(uint32_t v)
{
    return __sxtb16((int32_t)v);
}

static inline int32_t m2_uxtb16(uint32_t v)
{
    return (int32_t)__uxtb16(v);
}

/* SXTB16 / UXTB16 of bytes 1 and 3: the instructions rotate their operand for free, which the
   compiler does not fold from a C rotation (GCC 12), so say it directly. */
static inline int32_t m2_sxtb16_hi(uint32_t v)
{
    int32_t r;
    __asm("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
    return r;
}

static inline int32_t m2_uxtb16_hi(uint32_t v)
{
    int32_t r;
    __asm("uxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
    return r;
}

/* Lanes (lo of a, lo of b) and (hi of a, hi of b): PKHBT / PKHTB. */
static inline int32_t m2_pklo(int32_t a, int32_t b)
{
    return (int32_t)(((uint32_t)a & 0xFFFFu) | ((uint32_t)b << 16));
}

static inline int32_t m2_pkhi(int32_t a, int32_t b)
{
    return (int32_t)(((uint32_t)b & 0xFFFF0000u) | ((uint32_t)a >> 16));
}

/* Two SMLADs of one row: 8-bit weights v (4 of them) against column lanes c02 = (c0, c2), c13. */
#define M2_MAC8(acc, wp)                                                                          \
    do {                                                                                          \
        const uint32_t v_ = m2_ld32(wp);                                                          \
        acc = __smlad(c02, __sxtb16((int32_t)v_), __smlad(c13, m2_sxtb16_hi(v_), acc));             \
    } while (0)

/* Four column elements -> lanes (c0, c2), (c1, c3): a word (contiguous) or four bytes (strided). */
#define M2_COL4(EXT, CT)                                                                          \
    if (CONTIG) {                                                                                 \
        const uint32_t c_ = m2_ld32(col + k);                                                     \
        c02 = (int32_t)EXT(c_);                                                                   \
        c13 = EXT##_hi(c_);                                                                       \
    } else {                                                                                      \
        const CT *p_ = (const CT *)col + k * cs;                                                  \
        c02 = m2_pklo(p_[0], p_[2 * cs]);                                                         \
        c13 = m2_pklo(p_[cs], p_[3 * cs]);                                                        \
    }

#define M2_DOT8_DSP(EXT, CT)                                                                      \
    for (; k + 4 <= K; k += 4) {                                                                  \
        int32_t c02, c13;                                                                         \
        M2_COL4(EXT, CT)                                                                          \
        M2_MAC8(a0, w0 + k);                                                                      \
        M2_MAC8(a1, w1 + k);                                                                      \
        M2_MAC8(a2, w2 + k);                                                                      \
        M2_MAC8(a3, w3 + k);                                                                      \
    }

/* Contiguous columns: two rows a pass, eight elements an iteration; the twelve live values fit the
   core's registers (four rows a pass spill, and cost more than reloading the column). */
#define M2_PAIR8(EXT, aA, aB, wA, wB)                                                             \
    for (k = 0; k + 8 <= K; k += 8) {                                                             \
        const uint32_t c_ = m2_ld32(col + k), d_ = m2_ld32(col + k + 4);                          \
        const int32_t c02 = EXT(c_), c13 = EXT##_hi(c_), d02 = EXT(d_), d13 = EXT##_hi(d_);       \
        uint32_t v_;                                                                              \
        v_ = m2_ld32(wA + k);                                                                     \
        aA = __smlad(c02, __sxtb16((int32_t)v_), __smlad(c13, m2_sxtb16_hi(v_), aA));             \
        v_ = m2_ld32(wB + k);                                                                     \
        aB = __smlad(c02, __sxtb16((int32_t)v_), __smlad(c13, m2_sxtb16_hi(v_), aB));             \
        v_ = m2_ld32(wA + k + 4);                                                                 \
        aA = __smlad(d02, __sxtb16((int32_t)v_), __smlad(d13, m2_sxtb16_hi(v_), aA));             \
        v_ = m2_ld32(wB + k + 4);                                                                 \
        aB = __smlad(d02, __sxtb16((int32_t)v_), __smlad(d13, m2_sxtb16_hi(v_), aB));             \
    }

#define M2_DOT8_PAIRS(EXT)                                                                        \
    do {                                                                                          \
        M2_PAIR8(EXT, a0, a1, w0, w1)                                                             \
        if (n > 2) {                                                                              \
            M2_PAIR8(EXT, a2, a3, w2, w3)                                                         \
        }                                                                                         \
        k = K & ~7;                                                                               \
    } while (0)

/* The loop once per (contiguous?, signed?) case, so that no test is left inside it. */
#define M2_DSP_CASES(LOOP)                                                                        \
    if (cs == 1) {                                                                                \
        enum { CONTIG = 1 };                                                                      \
        if (sgn) {                                                                                \
            LOOP(m2_sxtb16, int8_t)                                                                \
        } else {                                                                                  \
            LOOP(m2_uxtb16, uint8_t)                                                               \
        }                                                                                         \
    } else {                                                                                      \
        enum { CONTIG = 0 };                                                                      \
        if (sgn) {                                                                                \
            LOOP(m2_sxtb16, int8_t)                                                                \
        } else {                                                                                  \
            LOOP(m2_uxtb16, uint8_t)                                                               \
        }                                                                                         \
    }

/* 4-bit rows, 8 weights a word: each nibble moved to the top of a byte, so SXTB16 gives 16 x its
   value (lanes (n0, n4), (n2, n6) from the even nibbles, (n1, n5), (n3, n7) from the odd); the
   column lanes are paired to match, and the 16 x sums are divided back exactly at the end. */
#define M2_MAC4(acc, wp)                                                                          \
    do {                                                                                          \
        const uint32_t v_ = m2_ld32(wp), e_ = (v_ << 4) & 0xF0F0F0F0u, o_ = v_ & 0xF0F0F0F0u;     \
        acc = __smlad(c04, __sxtb16((int32_t)e_), acc);                                           \
        acc = __smlad(c26, m2_sxtb16_hi(e_), acc);                                                \
        acc = __smlad(c15, __sxtb16((int32_t)o_), acc);                                           \
        acc = __smlad(c37, m2_sxtb16_hi(o_), acc);                                                \
    } while (0)

#define M2_DOT4_DSP(EXT, CT)                                                                      \
    for (; k + 8 <= K; k += 8) {                                                                  \
        int32_t c02, c13, c04, c26, c15, c37, d02, d13;                                           \
        M2_COL4(EXT, CT)                                                                          \
        d02 = c02;                                                                                \
        d13 = c13;                                                                                \
        k += 4;                                                                                   \
        M2_COL4(EXT, CT)                                                                          \
        k -= 4;                                                                                   \
        c04 = m2_pklo(d02, c02);                                                                  \
        c26 = m2_pkhi(d02, c02);                                                                  \
        c15 = m2_pklo(d13, c13);                                                                  \
        c37 = m2_pkhi(d13, c13);                                                                  \
        M2_MAC4(a0, w0 + k / 2);                                                                  \
        M2_MAC4(a1, w1 + k / 2);                                                                  \
        M2_MAC4(a2, w2 + k / 2);                                                                  \
        M2_MAC4(a3, w3 + k / 2);                                                                  \
    }


#if M2_SPEED
/* 2-bit rows, 16 weights a word (field f of byte j is element 4j + f): field f of every byte moved
   to the byte's top, so SXTB16 gives 64 x the weights (e_f, e_8+f) and, rotated, (e_4+f, e_12+f); the
   column's lanes are paired to match once per 16 elements for all four rows, and the 64 x sums are
   divided back exactly at the end. */
#define M2_MAC2(acc, wp)                                                                          \
    do {                                                                                          \
        const uint32_t v_ = m2_ld32(wp);                                                          \
        uint32_t t_ = (v_ << 6) & 0xC0C0C0C0u;                                                    \
        acc = __smlad(l0a, __sxtb16((int32_t)t_), __smlad(l0b, m2_sxtb16_hi(t_), acc));           \
        t_ = (v_ << 4) & 0xC0C0C0C0u;                                                             \
        acc = __smlad(l1a, __sxtb16((int32_t)t_), __smlad(l1b, m2_sxtb16_hi(t_), acc));           \
        t_ = (v_ << 2) & 0xC0C0C0C0u;                                                             \
        acc = __smlad(l2a, __sxtb16((int32_t)t_), __smlad(l2b, m2_sxtb16_hi(t_), acc));           \
        t_ = v_ & 0xC0C0C0C0u;                                                                    \
        acc = __smlad(l3a, __sxtb16((int32_t)t_), __smlad(l3b, m2_sxtb16_hi(t_), acc));           \
    } while (0)

#define M2_DOT2_DSP(EXT, CT)                                                                      \
    for (; k + 16 <= K; k += 16) {                                                                \
        int32_t c02, c13, p02, p13, q02, q13, r02, r13;                                           \
        int32_t l0a, l0b, l1a, l1b, l2a, l2b, l3a, l3b;                                           \
        M2_COL4(EXT, CT)                                                                          \
        p02 = c02;                                                                                \
        p13 = c13;                                                                                \
        k += 4;                                                                                   \
        M2_COL4(EXT, CT)                                                                          \
        q02 = c02;                                                                                \
        q13 = c13;                                                                                \
        k += 4;                                                                                   \
        M2_COL4(EXT, CT)                                                                          \
        r02 = c02;                                                                                \
        r13 = c13;                                                                                \
        k += 4;                                                                                   \
        M2_COL4(EXT, CT)                                                                          \
        k -= 12;                                                                                  \
        l0a = m2_pklo(p02, r02);                                                                  \
        l0b = m2_pklo(q02, c02);                                                                  \
        l1a = m2_pklo(p13, r13);                                                                  \
        l1b = m2_pklo(q13, c13);                                                                  \
        l2a = m2_pkhi(p02, r02);                                                                  \
        l2b = m2_pkhi(q02, c02);                                                                  \
        l3a = m2_pkhi(p13, r13);                                                                  \
        l3b = m2_pkhi(q13, c13);                                                                  \
        M2_MAC2(a0, w0 + k / 4);                                                                  \
        M2_MAC2(a1, w1 + k / 4);                                                                  \
        M2_MAC2(a2, w2 + k / 4);                                                                  \
        M2_MAC2(a3, w3 + k / 4);                                                                  \
    }
#endif
#endif

#define M2_DOT8_TAIL(CT)                                                                          \
    do {                                                                                          \
        const CT *c_ = (const CT *)col;                                                           \
        for (; k < K; ++k) {                                                                      \
            const int32_t v = c_[k * cs];                                                         \
            a0 += v * w0[k];                                                                      \
            a1 += v * w1[k];                                                                      \
            a2 += v * w2[k];                                                                      \
            a3 += v * w3[k];                                                                      \
        }                                                                                         \
    } while (0)

static M2_NOINLINE void m2_dot_8(const uint8_t *col, int32_t cs, int sgn, const int8_t *w, int32_t ws, int32_t K,
                                 int n, int32_t acc[4])
{
    /* ws: bytes from one row to the next (K, or more for a slice of longer rows) */
    const int8_t *w0 = w, *w1 = n > 1 ? w + ws : w, *w2 = n > 2 ? w + 2 * ws : w, *w3 = n > 3 ? w + 3 * ws : w;
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, k = 0;
#if defined(__ARM_FEATURE_DSP)
    if (cs == 1) {
        if (sgn)
            M2_DOT8_PAIRS(m2_sxtb16);
        else
            M2_DOT8_PAIRS(m2_uxtb16);
    } else {
        M2_DSP_CASES(M2_DOT8_DSP)
    }
#endif
    if (sgn)
        M2_DOT8_TAIL(int8_t);
    else
        M2_DOT8_TAIL(uint8_t);
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

#if M2_SPEED
/* Speed builds, im2col convolutions: a contiguous byte column against `cout` 8-bit rows of length K,
   each sum requantized and stored as it is finished (output channel co is element y0 + co * ys of y),
   two rows a pass: m2_dot_8's loop without a call and an accumulator array per four channels. */
static M2_NOINLINE void m2_matvec_8(const uint8_t *col, int sgn, const int8_t *w, int32_t K, int32_t cout,
                                    const int32_t *bias, const int32_t *mult, const int8_t *shift, int32_t lo,
                                    int32_t hi, uint8_t *y, int32_t y0, int32_t ys, int ybits)
{
    const int32_t cs = 1;
    int32_t co, k, q;
    for (co = 0; co < cout; co += 2) {
        const int8_t *w0 = w + co * K, *w1 = co + 1 < cout ? w0 + K : w0, *w2 = w0, *w3 = w0;
        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        if (sgn) {
            M2_PAIR8(m2_sxtb16, a0, a1, w0, w1)
            k = K & ~7;
            M2_DOT8_TAIL(int8_t);
        } else {
            M2_PAIR8(m2_uxtb16, a0, a1, w0, w1)
            k = K & ~7;
            M2_DOT8_TAIL(uint8_t);
        }
        (void)a2;
        (void)a3;
        q = m2_requant_b(a0, bias[co], mult[co], shift[co], lo, hi);
        m2_st(y, y0 + co * ys, ybits, q);
        if (co + 1 < cout) {
            q = m2_requant_b(a1, bias[co + 1], mult[co + 1], shift[co + 1], lo, hi);
            m2_st(y, y0 + (co + 1) * ys, ybits, q);
        }
    }
}
#endif

/* 4- and 2-bit rows that start on a byte (K * bits a multiple of 8): each weight byte is loaded once
   and its fields sign-extended in registers, (f ^ s) - s with s the field's sign bit, instead of an
   addressed m2_ld per weight. */
#define M2_DOT_LOW(CT, BITS)                                                                      \
    do {                                                                                          \
        const CT *c = (const CT *)col + k * cs;                                                   \
        const uint32_t m = (1u << BITS) - 1u, sb = 1u << (BITS - 1);                              \
        for (kb = k / (8 / BITS); kb < KB; ++kb, c += (8 / BITS) * cs) {                          \
            uint32_t b0 = w0[kb], b1 = w1[kb], b2 = w2[kb], b3 = w3[kb];                          \
            for (f = 0; f < 8 / BITS; ++f) {                                                      \
                const int32_t v = c[f * cs];                                                      \
                a0 += v * ((int32_t)((b0 & m) ^ sb) - (int32_t)sb);                               \
                a1 += v * ((int32_t)((b1 & m) ^ sb) - (int32_t)sb);                               \
                a2 += v * ((int32_t)((b2 & m) ^ sb) - (int32_t)sb);                               \
                a3 += v * ((int32_t)((b3 & m) ^ sb) - (int32_t)sb);                               \
                b0 >>= BITS;                                                                      \
                b1 >>= BITS;                                                                      \
                b2 >>= BITS;                                                                      \
                b3 >>= BITS;                                                                      \
            }                                                                                     \
        }                                                                                         \
    } while (0)

static M2_NOINLINE void m2_dot_low(const uint8_t *col, int32_t cs, int sgn, const uint8_t *w, int bits,
                                   int32_t ws, int32_t K, int n, int32_t acc[4])
{
    /* ws: bytes from one row to the next; K * bits a multiple of 8 */
    const int32_t KB = K * bits / 8;
    const uint8_t *w0 = w, *w1 = n > 1 ? w + ws : w, *w2 = n > 2 ? w + 2 * ws : w, *w3 = n > 3 ? w + 3 * ws : w;
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, kb, f, k = 0;
    if (M2_W4 && (!M2_W2 || bits == 4)) { /* callers pass only the widths M2_DOTLOW_OK lets through */
#if defined(__ARM_FEATURE_DSP)
        M2_DSP_CASES(M2_DOT4_DSP)
        a0 /= 16; /* exact: every product was 16 x the weight's */
        a1 /= 16;
        a2 /= 16;
        a3 /= 16;
#endif
        if (sgn)
            M2_DOT_LOW(int8_t, 4);
        else
            M2_DOT_LOW(uint8_t, 4);
    } else {
#if M2_SPEED
        M2_DSP_CASES(M2_DOT2_DSP)
        a0 /= 64; /* exact: every product was 64 x the weight's */
        a1 /= 64;
        a2 /= 64;
        a3 /= 64;
#endif
        if (sgn)
            M2_DOT_LOW(int8_t, 2);
        else
            M2_DOT_LOW(uint8_t, 2);
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

/* Network input (int8 values on the input quantizer's grid) into its packed arena tensor. */
static M2_KERNEL void m2_load(const int8_t *src, int32_t n, uint8_t *y, int ybits, int32_t lo, int32_t hi)
{
    int32_t i;
    for (i = 0; i < n; ++i)
        m2_st(y, i, ybits, m2_clamp(src[i], lo, hi));
}
/*@end*/

#endif /* M2_KERNELS_H */
