/* m2nas C kernels: packed-tensor access and fixed-point requantization, emitted at the top of
   every generated model.c (see nas/export/c/kernels.py for the conventions). */
#ifndef M2_KERNELS_H
#define M2_KERNELS_H

#include <stdint.h>

/*@kernel common*/
#if defined(__GNUC__) && !defined(__clang__)
/* GCC, specialising a dot product for one call's constant column address and stride, may find that
   some far iteration of a loop whose bound it does not know would index past the arena, and warn
   (an error under -Werror) although the loop stops at K long before; the code is defined for every
   K a layer has. */
#pragma GCC diagnostic ignored "-Waggressive-loop-optimizations"
#endif
/* The arena base as the compiler sees it: an opaque value, not the address of a known array. GCC 12.2
   (x86-64 and arm-none-eabi, -O2) miscompiles a kernel whose every call passes the same constant
   addresses: its IPA-CP clone, with those pointer parameters folded away, is summarised as writing no
   memory, and the calls are deleted (seen: two max-pooling steps at the same planned offsets in two
   branches produced nothing). Offsets from an opaque base keep every pointer a parameter; the integer
   geometry still specialises. Other compilers: a no-op. */
#if defined(__GNUC__)
#define M2_OPAQUE(p) __asm__("" : "+r"(p))
#else
#define M2_OPAQUE(p) ((void)0)
#endif
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

#if M2_SPEED
/* Speed builds, 4- and 2-bit weights (m2_mvlow): a column is widened once into 16-bit lanes on the
   stack, in the order the weight rows unpack in registers, and every output channel is computed from
   it, two rows a pass, whatever bit the rows start on (rows of odd length included); sums are
   requantized M2_MV_BLOCK (eight) at a time. Lanes come in groups of G = 32 / bits elements (one weight word):
   element j = e * b + f of a group (byte b of the word, field f of the byte, e = 8 / bits fields a
   byte) is lane 4f + 2(b & 1) + (b >> 1), so that SXTB16 of field f of every byte (moved to the
   byte's top) and of its 8-bit rotation meet the lane pairs (b = 0, 2) and (b = 1, 3) of consecutive
   words. The column past K is zeros, so a row may read on into the next row's weights to the end of
   its last group (products with zero lanes); a pair whose reads would leave the weight array stops at
   its last whole group and finishes weight by weight. Byte weights keep the paths below (measured:
   widened lanes did not make them faster). */
/* Functions with hand-scheduled loops are compiled once, not specialised per model (GCC's noipa):
   a clone specialised for some call's constants can run out of registers for a loop that needs
   thirteen of them ("impossible constraints"), and one context that compiles compiles everywhere. */
#define M2_ASM_FN __attribute__((noipa, unused))
#define M2_MV_K 160 /* im2col columns (the column itself is in the arena; its lanes, 320 B, on the stack) */
#define M2_PW_LANES 64 /* pointwise / linear columns (gathered and widened on the stack: 64 + 2 x 128 B) */

/* The lanes of `src` (K <= M2_MV_K bytes, contiguous) for `wbits`-bit rows, as words in L. */
static M2_NOINLINE void m2_widen(const uint8_t *src, int sgn, int32_t K, int wbits, int32_t *L)
{
    const int32_t G = 32 / wbits, Kg = (K + G - 1) / G * G;
    uint8_t last[16];
    int32_t k, i;
    for (k = 0; k < Kg; k += G) {
        const uint8_t *s = src + k;
        uint32_t c[4];
        int32_t a[4] = {0, 0, 0, 0}, b[4] = {0, 0, 0, 0};
        if (k + G > K) { /* the last, partial group: zeros past K */
            for (i = 0; i < G; ++i)
                last[i] = k + i < K ? src[k + i] : 0;
            s = last;
        }
        for (i = 0; i < G / 4; ++i) {
            c[i] = m2_ld32(s + 4 * i);
            a[i] = sgn ? m2_sxtb16(c[i]) : m2_uxtb16(c[i]); /* elements 4i, 4i + 2 */
            b[i] = sgn ? m2_sxtb16_hi(c[i]) : m2_uxtb16_hi(c[i]); /* 4i + 1, 4i + 3 */
        }
        if (wbits == 8) {
            L[0] = a[0];
            L[1] = b[0];
            L += 2;
        } else if (wbits == 4) { /* (0, 4), (2, 6), (1, 5), (3, 7) */
            L[0] = m2_pklo(a[0], a[1]);
            L[1] = m2_pkhi(a[0], a[1]);
            L[2] = m2_pklo(b[0], b[1]);
            L[3] = m2_pkhi(b[0], b[1]);
            L += 4;
        } else { /* field f: (f, 8 + f), (4 + f, 12 + f) */
            L[0] = m2_pklo(a[0], a[2]);
            L[1] = m2_pklo(a[1], a[3]);
            L[2] = m2_pklo(b[0], b[2]);
            L[3] = m2_pklo(b[1], b[3]);
            L[4] = m2_pkhi(a[0], a[2]);
            L[5] = m2_pkhi(a[1], a[3]);
            L[6] = m2_pkhi(b[0], b[2]);
            L[7] = m2_pkhi(b[1], b[3]);
            L += 8;
        }
    }
}

/* A dense layer's requantization and output, for m2_mvlow. */
typedef struct {
    const int32_t *bias, *mult;
    const int8_t *shift;
    int32_t lo, hi;
    const uint8_t *lut; /* sigmoid: the requantized value indexes it (minus lut_lo) */
    int32_t lut_lo;
    uint8_t *y;
    int32_t ys; /* elements from one output channel to the next */
    int ybits;
    /* the exporter's requant_mode (nas/export/c/packing.py): the shift, -1 or 0. Nonzero only with
       biases below 2^30: a bias plus a widened-lane kernel's sum (below 2^24 for up to 320 elements)
       cannot overflow. */
    int ushift;
} m2_out;


/* Output channel co at position y0: m2_requant_b, the shift > 32 case rounded half up from the high
   word alone (exact unless the low word is 0: a tie is possible only then, and takes the exact path). */
static inline __attribute__((always_inline)) void m2_put(const m2_out *o, int32_t co, int32_t acc, int32_t y0)
{
    int32_t s, q;
    const int sh = o->shift[co];
    if (!__builtin_add_overflow(acc, o->bias[co], &s) && sh > 32) {
        const int64_t p = (int64_t)s * o->mult[co];
        q = ((int32_t)(p >> 32) + (1 << (sh - 33))) >> (sh - 32);
        if ((uint32_t)p == 0u)
            q = m2_requant(s, o->mult[co], sh, o->lo, o->hi);
        q = q < o->lo ? o->lo : (q > o->hi ? o->hi : q);
    } else {
        q = m2_requant_b(acc, o->bias[co], o->mult[co], sh, o->lo, o->hi);
    }
    if (o->lut)
        q = o->lut[q - o->lut_lo];
    if (o->ybits == 8)
        o->y[y0 + co * o->ys] = (uint8_t)q;
    else
        m2_st(o->y, y0 + co * o->ys, o->ybits, q);
}

/* 32 weight bits from bit `off` of p: off in 1..7 (m2_ldw_nz) or any (m2_ldw, p[4] only if off > 0). */
static inline uint32_t m2_ldw_nz(const uint8_t *p, uint32_t off)
{
    return (m2_ld32(p) >> off) | ((uint32_t)p[4] << (32u - off));
}

static inline uint32_t m2_ldw(const uint8_t *p, uint32_t off)
{
    return off ? m2_ldw_nz(p, off) : m2_ld32(p);
}

#define M2_MV_G4(acc, v, L)                                                                       \
    do {                                                                                          \
        const uint32_t e_ = ((v) << 4) & 0xF0F0F0F0u, o_ = (v) & 0xF0F0F0F0u;                    \
        acc = __smlad((L)[0], __sxtb16((int32_t)e_), __smlad((L)[1], m2_sxtb16_hi(e_), acc));     \
        acc = __smlad((L)[2], __sxtb16((int32_t)o_), __smlad((L)[3], m2_sxtb16_hi(o_), acc));     \
    } while (0)
#define M2_MV_G2(acc, v, L)                                                                       \
    do {                                                                                          \
        uint32_t t_ = ((v) << 6) & 0xC0C0C0C0u;                                                   \
        acc = __smlad((L)[0], __sxtb16((int32_t)t_), __smlad((L)[1], m2_sxtb16_hi(t_), acc));     \
        t_ = ((v) << 4) & 0xC0C0C0C0u;                                                            \
        acc = __smlad((L)[2], __sxtb16((int32_t)t_), __smlad((L)[3], m2_sxtb16_hi(t_), acc));     \
        t_ = ((v) << 2) & 0xC0C0C0C0u;                                                            \
        acc = __smlad((L)[4], __sxtb16((int32_t)t_), __smlad((L)[5], m2_sxtb16_hi(t_), acc));     \
        t_ = (v) & 0xC0C0C0C0u;                                                                   \
        acc = __smlad((L)[6], __sxtb16((int32_t)t_), __smlad((L)[7], m2_sxtb16_hi(t_), acc));     \
    } while (0)

/* Two rows over n weight words: LA / LB load row A's / B's word (pointer, bit offset). */
#define M2_MV_PASS(MAC, LA, LB, WORDS)                                                            \
    for (i = 0; i < n; ++i, pA += 4, pB += 4, L += WORDS) {                                       \
        const uint32_t vA_ = LA(pA, oA), vB_ = LB(pB, oB);                                        \
        MAC(aA, vA_, L);                                                                          \
        MAC(aB, vB_, L);                                                                          \
    }
#define M2_LD_AL(p, o) m2_ld32(p)
/* The sub-byte passes by the rows' bit offsets: both aligned, only B's inside a byte (4-bit rows of
   odd length), or any. */
#define M2_MV_LOW(MAC, WORDS)                                                                     \
    if ((oA | oB) == 0u) {                                                                        \
        M2_MV_PASS(MAC, M2_LD_AL, M2_LD_AL, WORDS)                                                \
    } else if (oA == 0u) {                                                                        \
        M2_MV_PASS(MAC, M2_LD_AL, m2_ldw_nz, WORDS)                                               \
    } else {                                                                                      \
        M2_MV_PASS(MAC, m2_ldw, m2_ldw, WORDS)                                                    \
    }

/* The last rows' tail, weight by weight (element k's lane; see m2_widen). */
#define M2_MV_TAIL(k0)                                                                            \
    for (k = (k0); k < K; ++k) {                                                                  \
        const int32_t j = k % G, b = j / (8 / wbits), f = j % (8 / wbits);                        \
        const int32_t lane = k - j + 4 * f + 2 * (b & 1) + (b >> 1);                              \
        const int32_t v = (int16_t)(uint16_t)(((uint32_t)L0[lane >> 1] >> (16 * (lane & 1))) & 0xFFFFu); \
        aA += v * m2_ld(w, co * K + k, wbits, 1);                                                 \
        aB += v * m2_ld(w, (co + two) * K + k, wbits, 1);                                         \
    }

/* m2_requant_b out of line: the rare case of the loop below keeps its registers free. */
static M2_NOINLINE int32_t m2_requant_slow(int32_t acc, int32_t bias, int32_t mult, int shift, int32_t lo,
                                           int32_t hi)
{
    return m2_requant_b(acc, bias, mult, shift, lo, hi);
}

/* One channel's q: m2_requant_b, the shift > 32 case rounded half up from the high word (exact unless
   the low word is 0; then the exact path). */
#define M2_RQ_CHANNEL(j)                                                                          \
    const int t = sh[j];                                                                          \
    int32_t s, q;                                                                                 \
    if (t > 32 && !__builtin_add_overflow(acc[j], b[j], &s)) {                                    \
        const int64_t p = (int64_t)s * m[j];                                                      \
        q = ((int32_t)(p >> 32) + (1 << (t - 33))) >> (t - 32);                                   \
        if ((uint32_t)p == 0u)                                                                    \
            q = m2_requant_slow(s, 0, m[j], t, lo, hi);                                           \
        q = q < lo ? lo : (q > hi ? hi : q);                                                      \
    } else {                                                                                      \
        q = m2_requant_slow(acc[j], b[j], m[j], t, lo, hi);                                       \
    }
/* m2_rq_block's 4- and 2-bit outputs without a LUT (out of line: the byte loop keeps its registers). */
static M2_NOINLINE void m2_rq_block_low(const int32_t *acc, int32_t n, const m2_out *o, int32_t co0, int32_t y0)
{
    const int32_t *b = o->bias + co0, *m = o->mult + co0;
    const int8_t *sh = o->shift + co0;
    const int32_t lo = o->lo, hi = o->hi, ys = o->ys;
    const int yb = o->ybits;
    int32_t i = y0 + co0 * ys, j;
    for (j = 0; j < n; ++j, i += ys) {
        M2_RQ_CHANNEL(j)
        m2_st(o->y, i, yb, q);
    }
}

/* Outputs co0 .. co0 + n - 1 of position y0 from their sums: m2_requant_b, with the shift > 32 case
   rounded half up from the high word alone (exact unless the low word is 0, the only case a tie is
   possible in: then the exact path). */
static M2_NOINLINE void m2_rq_block(const int32_t *acc, int32_t n, const m2_out *o, int32_t co0, int32_t y0)
{
    const int32_t *b = o->bias + co0, *m = o->mult + co0;
    const int8_t *sh = o->shift + co0;
    const int32_t lo = o->lo, hi = o->hi, ys = o->ys;
    int32_t j;
    if (o->ybits == 8 && !o->lut && o->ushift > 0) {
        /* one shift (its rounding constants hoisted), no overflow possible (see requant_mode) */
        const int t = o->ushift - 32;
        const int32_t half = 1 << (t - 1);
        uint8_t *y = o->y + y0 + co0 * ys;
#define M2_RQ_UNIFORM(CLAMP)                                                                      \
    for (j = 0; j < n; ++j) {                                                                     \
        const int32_t s = acc[j] + b[j];                                                          \
        const int64_t p = (int64_t)s * m[j];                                                      \
        int32_t q = ((int32_t)(p >> 32) + half) >> t;                                             \
        if ((uint32_t)p == 0u)                                                                    \
            q = m2_requant_slow(s, 0, m[j], t + 32, lo, hi);                                      \
        y[j * ys] = (uint8_t)(CLAMP);                                                             \
    }
        if (lo == 0 && hi == 255) {
            M2_RQ_UNIFORM(__usat(q, 8))
        } else if (lo == -128 && hi == 127) {
            M2_RQ_UNIFORM(__ssat(q, 8))
        } else {
            M2_RQ_UNIFORM(q < lo ? lo : (q > hi ? hi : q))
        }
#undef M2_RQ_UNIFORM
        return;
    }
    if (o->ybits == 8 && !o->lut) {
        uint8_t *y = o->y + y0 + co0 * ys;
        for (j = 0; j < n; ++j, y += ys) {
            M2_RQ_CHANNEL(j)
            *y = (uint8_t)q;
        }
        return;
    }
    if (!o->lut) { /* 4- or 2-bit outputs */
        m2_rq_block_low(acc, n, o, co0, y0);
        return;
    }
    for (j = 0; j < n; ++j)
        m2_put(o, co0 + j, acc[j], y0);
}
#undef M2_RQ_CHANNEL

/* The fused requantization of the widened-lane kernels: byte outputs, no LUT, every shift above 32
   (requant_mode) and a clamp to the whole int8 or uint8 range. Then each sum is requantized where
   it is computed, from registers, in assembly (after the dot-product loops GCC reloads every constant
   of it from the stack), instead of through m2_rq_block's array: 10 (one shift) or 14 (a shift per
   channel) instructions an output instead of about 25. m2_rq_fast: 1 (one shift), 2 (a shift per
   channel), 0 (m2_rq_block). */
static inline int m2_rq_fast(const m2_out *o)
{
    if (o->ybits != 8 || o->lut || !o->ushift)
        return 0;
    if (!((o->lo == 0 && o->hi == 255) || (o->lo == -128 && o->hi == 127)))
        return 0;
    return o->ushift > 0 ? 1 : 2;
}

/* The constants M2_RQ_ASM reads, as locals: x = 128 for uint8 outputs (else 0), subtracted from every
   result so that one SSAT and an EOR clamp both ranges; one shift: t = the shift - 32 and the rounding
   constant h = 2^(t - 1) - x 2^t; a shift per channel: base = 1 - 2x (then h = base 2^(t - 1)). */
#define M2_RQ_CONSTANTS(o, y0)                                                                    \
    const int32_t x_rq = (o)->lo == 0 ? 128 : 0, ys_rq = (o)->ys, base_rq = 1 - 2 * x_rq;         \
    const int32_t t_rq = (o)->ushift - 32;                                                        \
    const int32_t h_rq = (o)->ushift > 0 ? (int32_t)((1u << (t_rq - 1)) - (uint32_t)x_rq * (1u << t_rq)) : 0; \
    const int8_t *const sh_rq = (o)->shift;                                                       \
    const int32_t *const m_rq = (o)->mult;                                                        \
    uint8_t *const y_rq = (o)->y + (y0);                                                          \
    (void)x_rq, (void)base_rq, (void)t_rq, (void)h_rq

/* One output: the sum in operand S_ (bias included), the multiplier at [m] and (PC_ 1) the shift at
   [sh] (both advance), the byte at [y] (which advances by [ys]). m2_rq_block's path: rounded half up
   from the high word, except where the low word is 0 (the only case a tie is possible in), there half
   to even, exactly as m2_requant: (hi + h - 1 + ((hi >> t) & 1)) >> t. */
#define M2_RQ_PRE0
#define M2_RQ_PRE1                                                                                \
    "ldrsb %[t], [%[sh]], #1\n\t"                                                                 \
    "sub %[h], %[t], #33\n\t"                                                                     \
    "sub %[t], %[t], #32\n\t"                                                                     \
    "lsl %[h], %[base], %[h]\n\t"
#define M2_RQ_STEP(PC_, S_)                                                                       \
    M2_RQ_PRE##PC_                                                                                \
    "ldr %[lo], [%[m]], #4\n\t"                                                                   \
    "smull %[lo], %[q], %[" S_ "], %[lo]\n\t"                                                     \
    "add %[q], %[q], %[h]\n\t"                                                                    \
    "cmp %[lo], #0\n\t"                                                                           \
    "bne 2f\n\t"                                                                                  \
    "sub %[lo], %[q], %[h]\n\t"                                                                   \
    "asr %[lo], %[lo], %[t]\n\t"                                                                  \
    "and %[lo], %[lo], #1\n\t"                                                                    \
    "sub %[lo], %[lo], #1\n\t"                                                                    \
    "add %[q], %[q], %[lo]\n"                                                                     \
    "2:\n\t"                                                                                      \
    "asr %[q], %[q], %[t]\n\t"                                                                    \
    "ssat %[q], #8, %[q]\n\t"                                                                     \
    "eor %[q], %[q], %[x]\n\t"                                                                    \
    "strb %[q], [%[y]]\n\t"                                                                       \
    "add %[y], %[y], %[ys]\n\t"
#define M2_RQ_OUT0 [lo] "=&r"(lo_), [q] "=&r"(q_), [m] "+&r"(m_), [y] "+&r"(y_)
#define M2_RQ_IN0 [ys] "r"(ys_rq), [h] "r"(h_rq), [t] "r"(t_rq), [x] "r"(x_rq)
#define M2_RQ_OUT1 [lo] "=&r"(lo_), [q] "=&r"(q_), [t] "=&r"(t_), [h] "=&r"(h_), [m] "+&r"(m_), [y] "+&r"(y_), \
                   [sh] "+&r"(s_)
#define M2_RQ_IN1 [ys] "r"(ys_rq), [base] "r"(base_rq), [x] "r"(x_rq)
/* Outputs co (and co + 1: n = 2) at position offset P_, sums A_ (, B_). */
#define M2_RQ_ASM(PC_, n, co, P_, A_, B_)                                                         \
    do {                                                                                          \
        uint32_t lo_, q_, t_, h_;                                                                 \
        const int32_t *m_ = m_rq + (co);                                                          \
        const int8_t *s_ = sh_rq + (co);                                                          \
        uint8_t *y_ = y_rq + (P_) + (co) * ys_rq;                                                 \
        if ((n) == 1)                                                                             \
            __asm volatile(M2_RQ_STEP(PC_, "a") : M2_RQ_OUT##PC_ : [a] "r"(A_), M2_RQ_IN##PC_ : "cc", "memory"); \
        else                                                                                      \
            __asm volatile(M2_RQ_STEP(PC_, "a") M2_RQ_STEP(PC_, "b")                              \
                           : M2_RQ_OUT##PC_                                                       \
                           : [a] "r"(A_), [b] "r"(B_), M2_RQ_IN##PC_                              \
                           : "cc", "memory");                                                     \
        (void)t_, (void)h_, (void)s_;                                                             \
    } while (0)
/* Outputs co .. co + 3 at position offset 0, sums A_ .. D_ (two statements: GCC finds no registers
   for one). */
#define M2_RQ4(PC_, co, A_, B_, C_, D_)                                                           \
    do {                                                                                          \
        M2_RQ_ASM(PC_, 2, co, 0, A_, B_);                                                         \
        M2_RQ_ASM(PC_, 2, (co) + 2, 0, C_, D_);                                                   \
    } while (0)

/* A_, B_ += 16 x the dot products of the 4-bit lanes from L_ to E_ (four words, eight elements, at a
   time; at least one) with the 4-bit rows at P_ and P_ + K_ (whole words each); L_, P_ advance. */
#define M2_LIN4_LOOP(L_, E_, P_, K_, A_, B_)                                                      \
    do {                                                                                          \
        uint32_t x0_, x1_, x2_, x3_, v_, u_, t_;                                                  \
        __asm volatile("1:\n\t"                                                                   \
                       "ldrd %[x0], %[x1], [%[l]], #8\n\t"                                        \
                       "ldrd %[x2], %[x3], [%[l]], #8\n\t"                                        \
                       "ldr %[v], [%[p]]\n\t"                                                     \
                       "lsl %[u], %[v], #4\n\t"                                                   \
                       "and %[u], %[u], #0xF0F0F0F0\n\t"                                          \
                       "and %[v], %[v], #0xF0F0F0F0\n\t"                                          \
                       "sxtb16 %[t], %[u]\n\t"                                                    \
                       "smlad %[a], %[x0], %[t], %[a]\n\t"                                        \
                       "sxtb16 %[t], %[u], ror #8\n\t"                                            \
                       "smlad %[a], %[x1], %[t], %[a]\n\t"                                        \
                       "sxtb16 %[t], %[v]\n\t"                                                    \
                       "smlad %[a], %[x2], %[t], %[a]\n\t"                                        \
                       "sxtb16 %[t], %[v], ror #8\n\t"                                            \
                       "smlad %[a], %[x3], %[t], %[a]\n\t"                                        \
                       "ldr %[v], [%[p], %[k]]\n\t"                                               \
                       "lsl %[u], %[v], #4\n\t"                                                   \
                       "and %[u], %[u], #0xF0F0F0F0\n\t"                                          \
                       "and %[v], %[v], #0xF0F0F0F0\n\t"                                          \
                       "sxtb16 %[t], %[u]\n\t"                                                    \
                       "smlad %[b], %[x0], %[t], %[b]\n\t"                                        \
                       "sxtb16 %[t], %[u], ror #8\n\t"                                            \
                       "smlad %[b], %[x1], %[t], %[b]\n\t"                                        \
                       "sxtb16 %[t], %[v]\n\t"                                                    \
                       "smlad %[b], %[x2], %[t], %[b]\n\t"                                        \
                       "sxtb16 %[t], %[v], ror #8\n\t"                                            \
                       "smlad %[b], %[x3], %[t], %[b]\n\t"                                        \
                       "adds %[p], %[p], #4\n\t"                                                  \
                       "cmp %[l], %[e]\n\t"                                                       \
                       "bne 1b"                                                                   \
                       : [l] "+&r"(L_), [p] "+&r"(P_), [a] "+&r"(A_), [b] "+&r"(B_), [x0] "=&r"(x0_), \
                         [x1] "=&r"(x1_), [x2] "=&r"(x2_), [x3] "=&r"(x3_), [v] "=&r"(v_),        \
                         [u] "=&r"(u_), [t] "=&r"(t_)                                             \
                       : [e] "r"(E_), [k] "r"(K_)                                                 \
                       : "cc", "memory");                                                         \
    } while (0)

#define M2_MV_BLOCK 8 /* output channels summed before they are requantized together (stack: 32 B) */

/* Every output channel of one widened column L0 (K elements) against `cout` rows of 4- or 2-bit
   weights (rows may start inside a byte), stored at position y0 of o->y. The loops are one body for
   both ways to store: PUT2_(co, A, B, two) takes the sums of channels co and (if two) co + 1, FLUSH_
   ends each block of M2_MV_BLOCK channels. */
#define M2_MVLOW_BODY(PUT2_, FLUSH_)                                                              \
    const int32_t G = 32 / wbits, rowbits = K * wbits, nbytes = (cout * rowbits + 7) / 8;         \
    const int32_t nall = (K + G - 1) / G, nwhole = K / G;                                         \
    int32_t co0, co;                                                                              \
    if (wbits == 4 && K % 8 == 0) { /* rows of whole words: two a pass in assembly */             \
        const int32_t rb = K / 2;                                                                 \
        for (co0 = 0; co0 < cout; co0 += M2_MV_BLOCK) {                                           \
            const int32_t end = cout - co0 < M2_MV_BLOCK ? cout : co0 + M2_MV_BLOCK;              \
            for (co = co0; co < end; co += 2) {                                                   \
                const uint8_t *p = w + co * rb;                                                   \
                const int32_t *l = L0, *lend = L0 + K / 2, d = co + 1 < end ? rb : 0;             \
                int32_t aA = 0, aB = 0;                                                           \
                M2_LIN4_LOOP(l, lend, p, d, aA, aB);                                              \
                /* exact: 16 x (arithmetic shift: GCC, clang) */                                  \
                PUT2_(co, aA >> 4, aB >> 4, co + 1 < end);                                        \
            }                                                                                     \
            FLUSH_;                                                                               \
        }                                                                                         \
        return;                                                                                   \
    }                                                                                             \
    for (co0 = 0; co0 < cout; co0 += M2_MV_BLOCK) {                                               \
        const int32_t end = cout - co0 < M2_MV_BLOCK ? cout : co0 + M2_MV_BLOCK;                  \
        for (co = co0; co < end; co += 2) {                                                       \
            const int two = co + 1 < end;                                                         \
            const uint32_t bitA = (uint32_t)(co * rowbits), bitB = bitA + (two ? (uint32_t)rowbits : 0u); \
            const uint8_t *pA = w + (bitA >> 3), *pB = w + (bitB >> 3);                           \
            const uint32_t oA = bitA & 7u, oB = bitB & 7u;                                        \
            /* a row's lanes to the end of its group: past the row, when that stays inside the array */ \
            const int32_t n = (int32_t)(bitB >> 3) + 4 * nall + 1 <= nbytes ? nall : nwhole;      \
            const int32_t *L = L0;                                                                \
            int32_t aA = 0, aB = 0, i, k;                                                         \
            if (wbits == 4) {                                                                     \
                M2_MV_LOW(M2_MV_G4, 4)                                                            \
                aA >>= 4; /* exact: every product was 16 x the weight's (arithmetic shift) */     \
                aB >>= 4;                                                                         \
            } else {                                                                              \
                M2_MV_LOW(M2_MV_G2, 8)                                                            \
                aA >>= 6; /* exact: 64 x */                                                       \
                aB >>= 6;                                                                         \
            }                                                                                     \
            if (n < nall)                                                                         \
                M2_MV_TAIL(n * G)                                                                 \
            PUT2_(co, aA, aB, two);                                                               \
        }                                                                                         \
        FLUSH_;                                                                                   \
    }

#define M2_MV_ACC2(co, A, B, two)                                                                 \
    do {                                                                                          \
        acc[(co) - co0] = (A);                                                                    \
        if (two)                                                                                  \
            acc[(co) - co0 + 1] = (B);                                                            \
    } while (0)
static M2_ASM_FN void m2_mvlow_blocks(const int32_t *L0, const uint8_t *w, int wbits, int32_t K, int32_t cout,
                                      const m2_out *o, int32_t y0)
{
    int32_t acc[M2_MV_BLOCK];
    M2_MVLOW_BODY(M2_MV_ACC2, m2_rq_block(acc, end - co0, o, co0, y0))
}
#undef M2_MV_ACC2

/* m2_mvlow with the fused requantization (PC_: see M2_RQ_ASM); the bias is added to the shifted sums
   (no overflow: see requant_mode). Both forms: the one-shift copy costs 3 KB of speed-build code and
   saves 4 instructions an output (a 2-bit pointwise layer of 32 channels: 6.00 -> 5.88 per MAC). */
#define M2_MV_RQ2(PC_, co, A, B, two)                                                             \
    M2_RQ_ASM(PC_, (two) ? 2 : 1, co, 0, (A) + o->bias[co], (B) + o->bias[(two) ? (co) + 1 : (co)])
#define M2_MV_RQ2_0(co, A, B, two) M2_MV_RQ2(0, co, A, B, two)
#define M2_MV_RQ2_1(co, A, B, two) M2_MV_RQ2(1, co, A, B, two)
#define M2_MVLOW_FAST_FN(NAME_, PC_)                                                              \
    static M2_ASM_FN void NAME_(const int32_t *L0, const uint8_t *w, int wbits, int32_t K, int32_t cout, \
                                const m2_out *o, int32_t y0)                                      \
    {                                                                                             \
        M2_RQ_CONSTANTS(o, y0);                                                                   \
        M2_MVLOW_BODY(M2_MV_RQ2_##PC_, (void)0)                                                   \
    }
M2_MVLOW_FAST_FN(m2_mvlow_one, 0)
M2_MVLOW_FAST_FN(m2_mvlow_pc, 1)
#undef M2_MVLOW_FAST_FN
#undef M2_MV_RQ2_0
#undef M2_MV_RQ2_1
#undef M2_MV_RQ2

static void m2_mvlow(const int32_t *L0, const uint8_t *w, int wbits, int32_t K, int32_t cout, const m2_out *o,
                     int32_t y0)
{
    const int fast = m2_rq_fast(o);
    (fast == 1 ? m2_mvlow_one : fast == 2 ? m2_mvlow_pc : m2_mvlow_blocks)(L0, w, wbits, K, cout, o, y0);
}

/* Byte weights (speed builds): the columns widened into lanes as for m2_mvlow (8-bit order: (c0, c2),
   (c1, c3) a word). A pointwise layer (K % 4 == 0, K <= M2_PW_LANES) takes two positions a pass
   (columns L and L + M2_PW_LANES / 2), so that each weight word is widened once for both; a linear
   layer (one position) and an im2col convolution (K <= M2_MV_K) four rows a pass, so that each lane
   pair is loaded once for four. The inner loops are assembly: GCC 12 spills their thirteen live
   values. Early clobbers: no input may share a register with them. With m2_rq_fast the sums start
   at their biases (no overflow: see requant_mode) and are requantized from registers (M2_RQ_ASM);
   otherwise M2_MV_BLOCK channels at a time by m2_rq_block. */
#define M2_L2 (M2_PW_LANES / 2) /* words from one position's lanes to the next's */

/* A0_, B0_ (position 0, lanes from L_ to E_) and A1_, B1_ (position 1, lanes M2_L2 words on) += the
   dot products with the 8-bit rows at P_ and P_ + K_ (four elements a pass, at least one); L_, P_
   advance. */
#define M2_PW8_LOOP(L_, E_, P_, K_, A0_, A1_, B0_, B1_)                                           \
    do {                                                                                          \
        uint32_t x_, y_, v_, t_, u_;                                                              \
        __asm volatile("1:\n\t"                                                                   \
                       "ldr %[v], [%[p], %[k]]\n\t"                                               \
                       "ldr %[u], [%[p]], #4\n\t"                                                 \
                       "ldrd %[x], %[y], [%[l], #%c[o1]]\n\t"                                     \
                       "sxtb16 %[t], %[u]\n\t"                                                    \
                       "sxtb16 %[u], %[u], ror #8\n\t"                                            \
                       "smlad %[a1], %[x], %[t], %[a1]\n\t"                                       \
                       "smlad %[a1], %[y], %[u], %[a1]\n\t"                                       \
                       "ldrd %[x], %[y], [%[l]], #8\n\t"                                          \
                       "smlad %[a0], %[x], %[t], %[a0]\n\t"                                       \
                       "smlad %[a0], %[y], %[u], %[a0]\n\t"                                       \
                       "sxtb16 %[t], %[v]\n\t"                                                    \
                       "sxtb16 %[v], %[v], ror #8\n\t"                                            \
                       "smlad %[b0], %[x], %[t], %[b0]\n\t"                                       \
                       "smlad %[b0], %[y], %[v], %[b0]\n\t"                                       \
                       "ldrd %[x], %[y], [%[l], #%c[o2]]\n\t"                                     \
                       "smlad %[b1], %[x], %[t], %[b1]\n\t"                                       \
                       "smlad %[b1], %[y], %[v], %[b1]\n\t"                                       \
                       "cmp %[l], %[e]\n\t"                                                       \
                       "bne 1b"                                                                   \
                       : [l] "+&r"(L_), [p] "+&r"(P_), [a0] "+&r"(A0_), [a1] "+&r"(A1_),          \
                         [b0] "+&r"(B0_), [b1] "+&r"(B1_), [x] "=&r"(x_), [y] "=&r"(y_), [v] "=&r"(v_), \
                         [t] "=&r"(t_), [u] "=&r"(u_)                                             \
                       : [e] "r"(E_), [k] "r"(K_), [o1] "i"(4 * M2_L2), [o2] "i"(4 * M2_L2 - 8)   \
                       : "cc", "memory");                                                         \
    } while (0)

/* m2_pw8_pair with the fused requantization (PC_: see M2_RQ_ASM). */
#define M2_PW8_FAST_FN(NAME_, PC_)                                                                \
    static M2_ASM_FN void NAME_(const int32_t *L, const uint8_t *w, int32_t K, int32_t cout, const m2_out *o, \
                                int32_t p0, int both)                                             \
    {                                                                                             \
        const int32_t *b = o->bias;                                                               \
        int32_t co;                                                                               \
        M2_RQ_CONSTANTS(o, p0);                                                                   \
        for (co = 0; co < cout; co += 2) {                                                        \
            const int two = co + 1 < cout;                                                        \
            const uint8_t *pA = w + co * K;                                                       \
            const int32_t *l = L, *lend = L + K / 2, d = two ? K : 0;                             \
            int32_t a0 = b[co], a1 = a0, b0 = b[two ? co + 1 : co], b1 = b0; /* row A / B, p0 / p0 + 1 */ \
            M2_PW8_LOOP(l, lend, pA, d, a0, a1, b0, b1);                                          \
            M2_RQ_ASM(PC_, two ? 2 : 1, co, 0, a0, b0);                                           \
            if (both)                                                                             \
                M2_RQ_ASM(PC_, two ? 2 : 1, co, 1, a1, b1);                                       \
        }                                                                                         \
    }
M2_PW8_FAST_FN(m2_pw8_one, 0)
M2_PW8_FAST_FN(m2_pw8_pc, 1)
#undef M2_PW8_FAST_FN

static M2_ASM_FN void m2_pw8_pair(const int32_t *L, const uint8_t *w, int32_t K, int32_t cout, const m2_out *o,
                                  int32_t p0, int both)
{
    int32_t acc0[M2_MV_BLOCK], acc1[M2_MV_BLOCK], co0, co;
    const int fast = m2_rq_fast(o);
    if (fast) {
        (fast == 1 ? m2_pw8_one : m2_pw8_pc)(L, w, K, cout, o, p0, both);
        return;
    }
    for (co0 = 0; co0 < cout; co0 += M2_MV_BLOCK) {
        const int32_t end = cout - co0 < M2_MV_BLOCK ? cout : co0 + M2_MV_BLOCK;
        for (co = co0; co < end; co += 2) {
            const int two = co + 1 < end;
            const uint8_t *pA = w + co * K;
            const int32_t *l = L, *lend = L + K / 2, d = two ? K : 0;
            int32_t a0 = 0, a1 = 0, b0 = 0, b1 = 0;
            M2_PW8_LOOP(l, lend, pA, d, a0, a1, b0, b1);
            acc0[co - co0] = a0;
            acc1[co - co0] = a1;
            if (two) {
                acc0[co - co0 + 1] = b0;
                acc1[co - co0 + 1] = b1;
            }
        }
        m2_rq_block(acc0, end - co0, o, co0, p0);
        if (both)
            m2_rq_block(acc1, end - co0, o, co0, p0 + 1);
    }
}

/* A_ .. D_ += the dot products of the lanes from L_ to E_ (two words, four elements, at a time; at
   least one) with the 8-bit rows at P_, P_ + K_, Q_, Q_ + K_; L_, P_, Q_ advance. */
#define M2_LIN8_LOOP(L_, E_, P_, Q_, K_, A_, B_, C_, D_)                                          \
    do {                                                                                          \
        uint32_t x_, y_, v_, t_;                                                                  \
        __asm volatile("1:\n\t"                                                                   \
                       "ldrd %[x], %[y], [%[l]], #8\n\t"                                          \
                       "ldr %[v], [%[p], %[k]]\n\t"                                               \
                       "sxtb16 %[t], %[v]\n\t"                                                    \
                       "sxtb16 %[v], %[v], ror #8\n\t"                                            \
                       "smlad %[b], %[x], %[t], %[b]\n\t"                                         \
                       "smlad %[b], %[y], %[v], %[b]\n\t"                                         \
                       "ldr %[v], [%[p]], #4\n\t"                                                 \
                       "sxtb16 %[t], %[v]\n\t"                                                    \
                       "sxtb16 %[v], %[v], ror #8\n\t"                                            \
                       "smlad %[a], %[x], %[t], %[a]\n\t"                                         \
                       "smlad %[a], %[y], %[v], %[a]\n\t"                                         \
                       "ldr %[v], [%[q], %[k]]\n\t"                                               \
                       "sxtb16 %[t], %[v]\n\t"                                                    \
                       "sxtb16 %[v], %[v], ror #8\n\t"                                            \
                       "smlad %[d], %[x], %[t], %[d]\n\t"                                         \
                       "smlad %[d], %[y], %[v], %[d]\n\t"                                         \
                       "ldr %[v], [%[q]], #4\n\t"                                                 \
                       "sxtb16 %[t], %[v]\n\t"                                                    \
                       "sxtb16 %[v], %[v], ror #8\n\t"                                            \
                       "smlad %[c], %[x], %[t], %[c]\n\t"                                         \
                       "smlad %[c], %[y], %[v], %[c]\n\t"                                         \
                       "cmp %[l], %[e]\n\t"                                                       \
                       "bne 1b"                                                                   \
                       : [l] "+&r"(L_), [p] "+&r"(P_), [q] "+&r"(Q_), [a] "+&r"(A_), [b] "+&r"(B_),  \
                         [c] "+&r"(C_), [d] "+&r"(D_), [x] "=&r"(x_), [y] "=&r"(y_), [v] "=&r"(v_),   \
                         [t] "=&r"(t_)                                                            \
                       : [e] "r"(E_), [k] "r"(K_)                                                 \
                       : "cc", "memory");                                                         \
    } while (0)

/* One row r of K 8-bit weights against the lanes L, exactly (m2_lin8's rows past the four-row passes). */
static inline int32_t m2_lin8_row(const int32_t *L, const int8_t *r, int32_t K, int32_t a)
{
    int32_t i, k;
    for (i = 0; 4 * i + 4 <= K; ++i) {
        const uint32_t v = m2_ld32(r + 4 * i);
        a = __smlad(L[2 * i], __sxtb16((int32_t)v), __smlad(L[2 * i + 1], m2_sxtb16_hi(v), a));
    }
    for (k = 4 * i; k < K; ++k) { /* element k is lane k - j + 2 (j & 1) + (j >> 1), j = k % 4 */
        const int32_t j = k % 4, lane = k - j + 2 * (j & 1) + (j >> 1);
        a += (int16_t)(uint16_t)(((uint32_t)L[lane >> 1] >> (16 * (lane & 1))) & 0xFFFFu) * r[k];
    }
    return a;
}

/* Four rows a pass while the fourth row's reads (to the end of its last lane group: the lanes past K
   are zeros) stay inside the array. */
#define M2_LIN8_FOURS(co, end) ((co) + 4 <= (end) && ((co) + 3) * K + 4 * nw <= total)

/* m2_lin8 with the fused requantization (PC_: see M2_RQ_ASM). */
#define M2_LIN8_FAST_FN(NAME_, PC_)                                                               \
    static M2_ASM_FN void NAME_(const int32_t *L, const uint8_t *w, int32_t K, int32_t cout, const m2_out *o, \
                                int32_t y0)                                                       \
    {                                                                                             \
        const int32_t nw = (K + 3) / 4, total = cout * K, *b = o->bias;                           \
        int32_t co;                                                                               \
        M2_RQ_CONSTANTS(o, y0);                                                                   \
        for (co = 0; M2_LIN8_FOURS(co, cout); co += 4) {                                          \
            const uint8_t *pA = w + co * K, *pC = pA + 2 * K;                                     \
            const int32_t *l = L, *lend = L + 2 * nw;                                             \
            int32_t aA = b[co], aB = b[co + 1], aC = b[co + 2], aD = b[co + 3];                   \
            M2_LIN8_LOOP(l, lend, pA, pC, K, aA, aB, aC, aD);                                     \
            M2_RQ4(PC_, co, aA, aB, aC, aD);                                                      \
        }                                                                                         \
        for (; co < cout; ++co)                                                                   \
            M2_RQ_ASM(PC_, 1, co, 0, m2_lin8_row(L, (const int8_t *)w + co * K, K, b[co]), 0);    \
    }
M2_LIN8_FAST_FN(m2_lin8_one, 0)
M2_LIN8_FAST_FN(m2_lin8_pc, 1)
#undef M2_LIN8_FAST_FN

static M2_ASM_FN void m2_lin8(const int32_t *L, const uint8_t *w, int32_t K, int32_t cout, const m2_out *o,
                              int32_t y0)
{
    const int32_t nw = (K + 3) / 4, total = cout * K;
    int32_t acc[M2_MV_BLOCK], co0, co;
    const int fast = m2_rq_fast(o);
    if (fast) {
        (fast == 1 ? m2_lin8_one : m2_lin8_pc)(L, w, K, cout, o, y0);
        return;
    }
    for (co0 = 0; co0 < cout; co0 += M2_MV_BLOCK) {
        const int32_t end = cout - co0 < M2_MV_BLOCK ? cout : co0 + M2_MV_BLOCK;
        for (co = co0; M2_LIN8_FOURS(co, end); co += 4) {
            const uint8_t *pA = w + co * K, *pC = pA + 2 * K;
            const int32_t *l = L, *lend = L + 2 * nw;
            int32_t aA = 0, aB = 0, aC = 0, aD = 0;
            M2_LIN8_LOOP(l, lend, pA, pC, K, aA, aB, aC, aD);
            acc[co - co0] = aA;
            acc[co - co0 + 1] = aB;
            acc[co - co0 + 2] = aC;
            acc[co - co0 + 3] = aD;
        }
        for (; co < end; ++co)
            acc[co - co0] = m2_lin8_row(L, (const int8_t *)w + co * K, K, 0);
        m2_rq_block(acc, end - co0, o, co0, y0);
    }
}
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
