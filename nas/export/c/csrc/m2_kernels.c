/* m2nas C kernels: one operator each, between markers; the generator emits only the ones a model
   uses (see nas/export/c/kernels.py). */
#include "m2_kernels.h"


/*@kernel conv*/
/* Standard convolution (groups 1), zero padding. With `col` (the planned im2col scratch: one
   column of cin*kh*kw bytes) each input patch is unpacked once and reused by every output
   channel; without it (1x1 kernels: the plan reserves no scratch) inputs are read in place. */
static M2_KERNEL void m2_conv(const uint8_t *x, int xbits, int xsgn, int32_t cin, int32_t ih, int32_t iw,
                              uint8_t *y, int ybits, int32_t cout, int32_t oh, int32_t ow,
                              int32_t kh, int32_t kw, int32_t sh, int32_t sw, int32_t ph, int32_t pw,
                              const uint8_t *w, int wbits, const int32_t *bias, const int32_t *mult,
                              const int8_t *shift, int32_t lo, int32_t hi, uint8_t *col, int ushift)
{
    const int32_t K = cin * kh * kw;
    int32_t oy, ox, c, ky, kx, co, k;
#if M2_SPEED
    const m2_out out = {bias, mult, shift, lo, hi, NULL, 0, y, oh * ow, ybits, ushift};
#else
    (void)ushift;
#endif
    for (oy = 0; oy < oh; ++oy) {
        for (ox = 0; ox < ow; ++ox) {
            const int32_t o = oy * ow + ox;
            if (col && xbits == 8) { /* byte inputs: copy rows of the patch, zeros outside */
                uint8_t *cp = col;
                const int32_t ix0 = ox * sw - pw;
                for (c = 0; c < cin; ++c)
                    for (ky = 0; ky < kh; ++ky) {
                        const int32_t iy = oy * sh - ph + ky;
                        const uint8_t *row = x + (c * ih + iy) * iw;
                        if (iy < 0 || iy >= ih) {
                            for (kx = 0; kx < kw; ++kx)
                                *cp++ = 0;
                        } else if (ix0 >= 0 && ix0 + kw <= iw) {
                            for (kx = 0; kx < kw; ++kx)
                                *cp++ = row[ix0 + kx];
                        } else {
                            for (kx = 0; kx < kw; ++kx) {
                                const int32_t ix = ix0 + kx;
                                *cp++ = ix >= 0 && ix < iw ? row[ix] : 0;
                            }
                        }
                    }
            } else if (col) {
                for (c = 0; c < cin; ++c)
                    for (ky = 0; ky < kh; ++ky)
                        for (kx = 0; kx < kw; ++kx) {
                            const int32_t iy = oy * sh - ph + ky, ix = ox * sw - pw + kx;
                            int32_t v = 0;
                            if (iy >= 0 && iy < ih && ix >= 0 && ix < iw)
                                v = m2_ld(x, (c * ih + iy) * iw + ix, xbits, xsgn);
                            col[(c * kh + ky) * kw + kx] = (uint8_t)(v & 0xff);
                        }
            }
#if M2_SPEED
            if (col && wbits < 8 && K <= M2_MV_K) {
                int32_t L[M2_MV_K / 2];
                m2_widen(col, xsgn, K, wbits, L);
                m2_mvlow(L, w, wbits, K, cout, &out, o);
                continue;
            }
            if (col && M2_DOT8_OK(wbits) && K <= M2_MV_K) {
                int32_t L[M2_MV_K / 2];
                m2_widen(col, xsgn, K, 8, L);
                m2_lin8(L, w, K, cout, &out, o);
                continue;
            }
            if (col && M2_DOT8_OK(wbits)) {
                m2_matvec_8(col, xsgn, (const int8_t *)w, K, cout, bias, mult, shift, lo, hi, y, o, oh * ow, ybits);
                continue;
            }
#endif
            if (col && M2_DOT8_OK(wbits)) { /* fast path: byte weights, four output channels per pass */
                for (co = 0; co < cout; co += 4) {
                    int32_t acc[4], j;
                    const int n = cout - co < 4 ? (int)(cout - co) : 4;
                    m2_dot_8(col, 1, xsgn, (const int8_t *)(w + co * K), K, K, n, acc);
                    for (j = 0; j < n; ++j)
                        m2_st(y, (co + j) * oh * ow + o, ybits,
                              m2_requant_b(acc[j], bias[co + j], mult[co + j], shift[co + j], lo, hi));
                }
                continue;
            }
            if (col && M2_DOTLOW_OK(wbits, K)) { /* 4- / 2-bit weights, byte-aligned rows */
                for (co = 0; co < cout; co += 4) {
                    int32_t acc[4], j;
                    const int n = cout - co < 4 ? (int)(cout - co) : 4;
                    m2_dot_low(col, 1, xsgn, w + co * K * wbits / 8, wbits, K * wbits / 8, K, n, acc);
                    for (j = 0; j < n; ++j)
                        m2_st(y, (co + j) * oh * ow + o, ybits,
                              m2_requant_b(acc[j], bias[co + j], mult[co + j], shift[co + j], lo, hi));
                }
                continue;
            }
            for (co = 0; co < cout; ++co) {
                int32_t acc = 0;
                const int32_t wb = co * K;
                if (col) {
                    if (xsgn) {
                        for (k = 0; k < K; ++k)
                            acc += (int32_t)(int8_t)col[k] * m2_ld(w, wb + k, wbits, 1);
                    } else {
                        for (k = 0; k < K; ++k)
                            acc += (int32_t)col[k] * m2_ld(w, wb + k, wbits, 1);
                    }
                } else {
                    for (c = 0; c < cin; ++c)
                        for (ky = 0; ky < kh; ++ky) {
                            const int32_t iy = oy * sh - ph + ky;
                            if (iy < 0 || iy >= ih)
                                continue;
                            for (kx = 0; kx < kw; ++kx) {
                                const int32_t ix = ox * sw - pw + kx;
                                if (ix < 0 || ix >= iw)
                                    continue;
                                acc += m2_ld(x, (c * ih + iy) * iw + ix, xbits, xsgn)
                                       * m2_ld(w, wb + (c * kh + ky) * kw + kx, wbits, 1);
                            }
                        }
                }
                m2_st(y, co * oh * ow + o, ybits,
                      m2_requant_b(acc, bias[co], mult[co], shift[co], lo, hi));
            }
        }
    }
}
/*@end*/

/*@kernel dwconv*/
#define M2_DW_TAPS 64 /* filters up to this many taps are unpacked once per channel, on the stack */
#if M2_SPEED
#define M2_DWCONV_C m2_dwconv_c /* speed builds: the portable loops below serve filters over the limits */
#else
#define M2_DWCONV_C m2_dwconv
#endif
/* Depthwise convolution (groups = channels, one filter per channel), zero padding, no scratch.
   Each channel's filter is unpacked once (not once per output); windows inside the input skip the
   bounds tests and, for byte inputs, read the bytes directly. */
/* Out of line in every build: inlined into the inference function its 256 B filter buffer would stay
   on the stack under every later kernel's frame (measured: the peak was their sum). */
static M2_KERNEL M2_NOINLINE void M2_DWCONV_C(const uint8_t *x, int xbits, int xsgn, int32_t ch, int32_t ih, int32_t iw,
                                uint8_t *y, int ybits, int32_t oh, int32_t ow,
                                int32_t kh, int32_t kw, int32_t sh, int32_t sw, int32_t ph, int32_t pw,
                                const uint8_t *w, int wbits, const int32_t *bias, const int32_t *mult,
                                const int8_t *shift, int32_t lo, int32_t hi)
{
    int32_t c, oy, ox, ky, kx, k;
    const int32_t taps = kh * kw;
    const int local = taps <= M2_DW_TAPS;
    int32_t wk[M2_DW_TAPS];
    for (c = 0; c < ch; ++c) {
        const int32_t wb = c * taps, xb = c * ih * iw, yb = c * oh * ow;
        if (local)
            for (k = 0; k < taps; ++k)
                wk[k] = m2_ld(w, wb + k, wbits, 1);
        for (oy = 0; oy < oh; ++oy)
            for (ox = 0; ox < ow; ++ox) {
                int32_t acc = 0;
                const int32_t iy0 = oy * sh - ph, ix0 = ox * sw - pw;
                if (local && xbits == 8 && iy0 >= 0 && iy0 + kh <= ih && ix0 >= 0 && ix0 + kw <= iw) {
                    const uint8_t *r = x + xb + iy0 * iw + ix0;
                    const int32_t *wr = wk;
                    for (ky = 0; ky < kh; ++ky, r += iw, wr += kw) {
                        if (xsgn) {
                            for (kx = 0; kx < kw; ++kx)
                                acc += (int32_t)(int8_t)r[kx] * wr[kx];
                        } else {
                            for (kx = 0; kx < kw; ++kx)
                                acc += (int32_t)r[kx] * wr[kx];
                        }
                    }
                } else {
                    for (ky = 0; ky < kh; ++ky) {
                        const int32_t iy = iy0 + ky;
                        if (iy < 0 || iy >= ih)
                            continue;
                        for (kx = 0; kx < kw; ++kx) {
                            const int32_t ix = ix0 + kx;
                            if (ix < 0 || ix >= iw)
                                continue;
                            acc += m2_ld(x, xb + iy * iw + ix, xbits, xsgn)
                                   * (local ? wk[ky * kw + kx] : m2_ld(w, wb + ky * kw + kx, wbits, 1));
                        }
                    }
                }
                m2_st(y, yb + oy * ow + ox, ybits, m2_requant_b(acc, bias[c], mult[c], shift[c], lo, hi));
            }
    }
}
#if M2_SPEED
/* Speed builds: each channel's filter as 16-bit pairs (rows padded to an even length with a zero tap),
   and the input rows under a run of up to M2_DW_STAGE / kh outputs (and of as many output rows as
   fit) staged as 16-bit lanes with the padding written as zeros, so that every output is SMLADs of
   whole words (two taps each) with no bounds tests, whatever the input's bit-width; a staged row is
   read by every output of the run. Filters over the limits take the portable loops above. */
#define M2_DW_STAGE 64 /* 16-bit lanes of staged input rows (128 B on the stack) */
#define M2_DW_PAIRS 32 /* filter pairs, kh x ceil(kw / 2) (128 B) */

static inline void m2_st32(int16_t *d, int32_t v)
{
    memcpy(d, &v, 4);
}

/* Elements ix0 .. ix0 + n - 1 of the input row whose element 0 is element r0 of x, as 16-bit lanes
   d[0 .. n - 1]: zeros where ix < 0 or ix >= iw. */
static inline void m2_dw_stage_row(const uint8_t *x, int xbits, int xsgn, int32_t r0, int32_t iw, int32_t ix0,
                                   int32_t n, int16_t *d)
{
    int32_t j = 0, a = ix0 < 0 ? -ix0 : 0, b = iw - ix0;
    if (a > n)
        a = n;
    if (b > n)
        b = n;
    if (b < a)
        b = a;
    for (; j < a; ++j)
        d[j] = 0;
    if (xbits == 8) {
        const uint8_t *s = x + r0 + ix0;
/* bytes j .. b - 1 of s as lanes, four a word: EXT_ widens bytes 0, 2 (EXT_##_hi: 1, 3), CT_ the tail */
#define M2_DW_STAGE8(EXT_, CT_)                                                                   \
    do {                                                                                          \
        for (; j + 4 <= b; j += 4) {                                                              \
            const uint32_t v = m2_ld32(s + j);                                                    \
            const int32_t e = EXT_(v), o = EXT_##_hi(v);                                          \
            m2_st32(d + j, m2_pklo(e, o));                                                        \
            m2_st32(d + j + 2, m2_pkhi(e, o));                                                    \
        }                                                                                         \
        for (; j < b; ++j)                                                                        \
            d[j] = (CT_)s[j];                                                                     \
    } while (0)
        if (xsgn)
            M2_DW_STAGE8(m2_sxtb16, int8_t);
        else
            M2_DW_STAGE8(m2_uxtb16, uint8_t);
#undef M2_DW_STAGE8
    } else {
        const int32_t per = 8 / xbits;
        int32_t i = r0 + ix0 + j;
        for (; j < b && i % per; ++j, ++i) /* to a byte boundary */
            d[j] = (int16_t)m2_ld(x, i, xbits, xsgn);
        if (xbits == 4) {
            const uint8_t *s = x + i / 2;
            if (xsgn)
                for (; j + 2 <= b; j += 2, ++s) {
                    const uint32_t v = *s;
                    m2_st32(d + j, m2_pklo((int32_t)(v << 28) >> 28, (int32_t)(v << 24) >> 28));
                }
            else
                for (; j + 2 <= b; j += 2, ++s) {
                    const uint32_t v = *s;
                    m2_st32(d + j, m2_pklo((int32_t)(v & 15u), (int32_t)(v >> 4)));
                }
            i = (int32_t)(s - x) * 2;
        } else {
            const uint8_t *s = x + i / 4;
            if (xsgn)
                for (; j + 4 <= b; j += 4, ++s) {
                    const uint32_t v = *s;
                    m2_st32(d + j, m2_pklo((int32_t)(v << 30) >> 30, (int32_t)(v << 28) >> 30));
                    m2_st32(d + j + 2, m2_pklo((int32_t)(v << 26) >> 30, (int32_t)(v << 24) >> 30));
                }
            else
                for (; j + 4 <= b; j += 4, ++s) {
                    const uint32_t v = *s;
                    m2_st32(d + j, m2_pklo((int32_t)(v & 3u), (int32_t)((v >> 2) & 3u)));
                    m2_st32(d + j + 2, m2_pklo((int32_t)((v >> 4) & 3u), (int32_t)(v >> 6)));
                }
            i = (int32_t)(s - x) * 4;
        }
        for (; j < b; ++j, ++i)
            d[j] = (int16_t)m2_ld(x, i, xbits, xsgn);
    }
    for (; j < n; ++j)
        d[j] = 0;
}

/* The `rows` rows from iy0 of the plane whose row 0 is row r0 of x, columns ix0 .. ix0 + seg - 1, into st
   (rows outside the input: zeros). */
static M2_NOINLINE void m2_dw_stage(const uint8_t *x, int xbits, int xsgn, int32_t r0, int32_t ih, int32_t iw,
                                    int32_t iy0, int32_t rows, int32_t ix0, int32_t seg, int16_t *st)
{
    int32_t ky, j;
    for (ky = 0; ky < rows; ++ky, st += seg) {
        const int32_t iy = iy0 + ky;
        if (iy < 0 || iy >= ih)
            for (j = 0; j < seg; ++j)
                st[j] = 0;
        else
            m2_dw_stage_row(x, xbits, xsgn, (r0 + iy) * iw, iw, ix0, seg, st);
    }
}

/* One run of a channel's outputs: the staged rows, the filter pairs and the requantization constants. */
typedef struct {
    const int16_t *st; /* kh staged rows of seg lanes each */
    const int32_t *wp; /* kh x kp filter pairs */
    uint8_t *y;
    int32_t yo, n, sw, kh, seg, kp, ybits;
    int32_t cb, cm, h, t, x, k; /* the requantization's constants (M2_DW_FAST_FN) */
    int32_t cs, lo, hi;
} m2_dw_run;

/* A run whose outputs are clamped to their type's whole range, every sum in 32 bits and the shift in
   33..54 (the common case): requantized as in M2_RQ_STEP, with x = 2^(bits - 1) for unsigned outputs
   subtracted so that one SSAT and an EOR clamp both ranges (h = 2^(t - 1) - x 2^t; t <= 22 keeps
   hi + h in 32 bits), the bias as the sum's start, rounded half up from the high word hi, and half to
   even where the low word is 0 (the only case a tie is possible in): (hi + h - 1 + ((hi >> t) & 1)) >> t,
   as m2_requant. No call in the loop, so the constants stay in registers; with one filter row (1-D
   layers) and KP_ pairs, the filter too. LOW_: 1 for 4- or 2-bit outputs, 2 for any run (a shift
   below 18 or over 54, a large bias, a narrower clamp: m2_requant_b, out of line: 0.7 KB of code a
   variant inlined); SW_: the stride, 0 if any. */
#define M2_DW_FAST_FN(NAME_, KP_, ROWS_, SW_, LOW_)                                              \
    static M2_NOINLINE void NAME_(const m2_dw_run *u)                                             \
    {                                                                                             \
        const int16_t *r = u->st;                                                                 \
        const int32_t *const wp = u->wp;                                                          \
        const int32_t n = u->n, sw = (SW_) ? (SW_) : u->sw, kh = u->kh, seg = u->seg, kp = u->kp; \
        const int32_t cb = u->cb, cm = u->cm, h = u->h, t = u->t, x = u->x, yb = u->ybits, k = u->k; \
        const int32_t w0 = wp[0], w1 = (KP_) > 1 ? wp[1] : 0, w2 = (KP_) > 2 ? wp[2] : 0;         \
        const int32_t w3 = (KP_) > 3 ? wp[3] : 0;                                                 \
        uint8_t *y = u->y + u->yo, *const e = y + n;                                              \
        int32_t i = u->yo;                                                                        \
        (void)kh, (void)seg, (void)kp, (void)k, (void)w0, (void)w1, (void)w2, (void)w3, (void)yb, (void)e, (void)i; \
        for (; (LOW_) ? i < u->yo + n : y < e; r += sw) {                                         \
            /* (LOW_ 2: the loop's continue steps r as well) */                                   \
            int32_t acc = (LOW_) == 2 ? 0 : cb, v;                                                \
            int64_t p;                                                                            \
            if (ROWS_) {                                                                          \
                const int16_t *a = r;                                                             \
                const int32_t *q = wp;                                                            \
                int32_t ky, j;                                                                    \
                for (ky = 0; ky < kh; ++ky, a += seg, q += kp)                                    \
                    for (j = 0; j < ((KP_) ? (KP_) : kp); ++j)                                    \
                        acc = __smlad((int32_t)m2_ld32(a + 2 * j), q[j], acc);                    \
            } else {                                                                              \
                acc = __smlad((int32_t)m2_ld32(r), w0, acc);                                      \
                if ((KP_) > 1)                                                                    \
                    acc = __smlad((int32_t)m2_ld32(r + 2), w1, acc);                              \
                if ((KP_) > 2)                                                                    \
                    acc = __smlad((int32_t)m2_ld32(r + 4), w2, acc);                              \
                if ((KP_) > 3)                                                                    \
                    acc = __smlad((int32_t)m2_ld32(r + 6), w3, acc);                              \
            }                                                                                     \
            if ((LOW_) == 2) {                                                                    \
                m2_st(u->y, i++, yb, m2_requant_slow(acc, u->cb, cm, u->cs, u->lo, u->hi));       \
                continue;                                                                         \
            }                                                                                     \
            p = (int64_t)(int32_t)((uint32_t)acc << k) * cm;                                      \
            v = (int32_t)(p >> 32);                                                               \
            if ((uint32_t)p == 0u) /* a tie is possible: half to even */                         \
                v += ((v >> t) & 1) - 1;                                                          \
            v = (v + h) >> t;                                                                     \
            if (LOW_)                                                                             \
                m2_st(u->y, i++, yb, (yb == 4 ? __ssat(v, 4) : __ssat(v, 2)) ^ x);                \
            else                                                                                  \
                *y++ = (uint8_t)(__ssat(v, 8) ^ x);                                               \
        }                                                                                         \
    }
M2_DW_FAST_FN(m2_dw_fast1, 1, 0, 1, 0)
M2_DW_FAST_FN(m2_dw_fast2, 2, 0, 1, 0)
M2_DW_FAST_FN(m2_dw_fast3, 3, 0, 1, 0)
M2_DW_FAST_FN(m2_dw_fast4, 4, 0, 1, 0)
M2_DW_FAST_FN(m2_dw_fast1s, 1, 0, 0, 0)
M2_DW_FAST_FN(m2_dw_fast2s, 2, 0, 0, 0)
M2_DW_FAST_FN(m2_dw_fast3s, 3, 0, 0, 0)
M2_DW_FAST_FN(m2_dw_fast4s, 4, 0, 0, 0)
M2_DW_FAST_FN(m2_dw_fast_k2, 2, 1, 0, 0)
M2_DW_FAST_FN(m2_dw_fast_k3, 3, 1, 0, 0)
M2_DW_FAST_FN(m2_dw_fast_k, 0, 1, 0, 0)
M2_DW_FAST_FN(m2_dw_low1, 1, 0, 0, 1)
M2_DW_FAST_FN(m2_dw_low2, 2, 0, 0, 1)
M2_DW_FAST_FN(m2_dw_low3, 3, 0, 0, 1)
M2_DW_FAST_FN(m2_dw_low4, 4, 0, 0, 1)
M2_DW_FAST_FN(m2_dw_low_k2, 2, 1, 0, 1)
M2_DW_FAST_FN(m2_dw_low_k3, 3, 1, 0, 1)
M2_DW_FAST_FN(m2_dw_low_k, 0, 1, 0, 1)
M2_DW_FAST_FN(m2_dw_any1, 1, 0, 0, 2)
M2_DW_FAST_FN(m2_dw_any2, 2, 0, 0, 2)
M2_DW_FAST_FN(m2_dw_any3, 3, 0, 0, 2)
M2_DW_FAST_FN(m2_dw_any4, 4, 0, 0, 2)
M2_DW_FAST_FN(m2_dw_any_k2, 2, 1, 0, 2)
M2_DW_FAST_FN(m2_dw_any_k3, 3, 1, 0, 2)
M2_DW_FAST_FN(m2_dw_any_k, 0, 1, 0, 2)
#undef M2_DW_FAST_FN

/* The run function for a layer's shape (kh, kp, sw), output bits and (fast = 0) the general case. */
static void (*m2_dw_pick(int32_t kh, int32_t kp, int32_t sw, int ybits, int fast))(const m2_dw_run *)
{
    typedef void (*fn)(const m2_dw_run *);
    /* [kind: 8-bit stride 1, 8-bit, 4 / 2-bit, any][one row and 1..4 pairs | rows and 2, 3, any pairs] */
    static const fn table[4][7] = {
        {m2_dw_fast1, m2_dw_fast2, m2_dw_fast3, m2_dw_fast4, m2_dw_fast_k2, m2_dw_fast_k3, m2_dw_fast_k},
        {m2_dw_fast1s, m2_dw_fast2s, m2_dw_fast3s, m2_dw_fast4s, m2_dw_fast_k2, m2_dw_fast_k3, m2_dw_fast_k},
        {m2_dw_low1, m2_dw_low2, m2_dw_low3, m2_dw_low4, m2_dw_low_k2, m2_dw_low_k3, m2_dw_low_k},
        {m2_dw_any1, m2_dw_any2, m2_dw_any3, m2_dw_any4, m2_dw_any_k2, m2_dw_any_k3, m2_dw_any_k}};
    const int kind = !fast ? 3 : ybits != 8 ? 2 : sw != 1;
    return table[kind][kh == 1 && kp <= 4 ? kp - 1 : kp == 2 ? 4 : kp == 3 ? 5 : 6];
}

/* Channel c's filter (from element i0 of w) as pairs, rows padded with a zero tap to an even length. */
static M2_NOINLINE void m2_dw_filter(const uint8_t *w, int wbits, int32_t i0, int32_t kh, int32_t kw, int32_t *wp)
{
    int32_t ky, kx;
    for (ky = 0; ky < kh; ++ky, i0 += kw)
        for (kx = 0; kx < kw; kx += 2)
            *wp++ = m2_pklo(m2_ld(w, i0 + kx, wbits, 1), kx + 1 < kw ? m2_ld(w, i0 + kx + 1, wbits, 1) : 0);
}

static M2_KERNEL M2_NOINLINE void m2_dwconv(const uint8_t *x, int xbits, int xsgn, int32_t ch, int32_t ih, int32_t iw,
                                            uint8_t *y, int ybits, int32_t oh, int32_t ow, int32_t kh, int32_t kw,
                                            int32_t sh, int32_t sw, int32_t ph, int32_t pw, const uint8_t *w,
                                            int wbits, const int32_t *bias, const int32_t *mult,
                                            const int8_t *shift, int32_t lo, int32_t hi)
{
    const int32_t kp = (kw + 1) / 2, seg_max = M2_DW_STAGE / kh;
    const int32_t full = (lo == 0 && hi == (1 << ybits) - 1) || (lo == -(1 << (ybits - 1)) && hi == (1 << (ybits - 1)) - 1);
    int32_t run = (seg_max - 2 * kp) / sw + 1, c, oy, t0;
    int32_t wp[M2_DW_PAIRS];
    int16_t st[M2_DW_STAGE];
    const uint32_t amax = (uint32_t)(kh * kw) * 255u * 128u; /* |sum| bound: < 2^21 */
    m2_dw_run u;
    if (kh * kw > M2_DW_TAPS || kh * kp > M2_DW_PAIRS) {
        m2_dwconv_c(x, xbits, xsgn, ch, ih, iw, y, ybits, oh, ow, kh, kw, sh, sw, ph, pw, w, wbits, bias, mult, shift,
                    lo, hi);
        return;
    }
    if (run > ow)
        run = ow;
    u.wp = wp;
    u.y = y;
    u.sw = sw;
    u.kh = kh;
    u.kp = kp;
    u.ybits = ybits;
    u.lo = lo;
    u.hi = hi;
    u.x = lo == 0 ? 1 << (ybits - 1) : 0;
    for (c = 0; c < ch; ++c) {
        void (*f)(const m2_dw_run *);
        u.cb = bias[c];
        u.cm = mult[c];
        u.cs = shift[c];
        /* A shift s up to 32 becomes 33 with the sum scaled by 2^k, k = 33 - s (the same quotient, the
           same rounding) where the scaled sum stays within 2^30: |bias| + kh kw 255 128 < 2^(30 - k). */
        u.k = u.cs > 32 ? 0 : 33 - u.cs;
        u.t = u.cs + u.k - 32;
        f = m2_dw_pick(kh, kp, sw, ybits,
                       full && u.cs <= 54 && u.cs >= 18 && (uint32_t)(u.cb < 0 ? -(int64_t)u.cb : u.cb) + amax < (1u << (30 - u.k)));
        u.h = u.t > 0 && u.t <= 22 ? (int32_t)((1u << (u.t - 1)) - (uint32_t)u.x * (1u << u.t)) : 0;
        m2_dw_filter(w, wbits, c * kh * kw, kh, kw, wp);
        for (t0 = 0; t0 < ow; t0 += run) {
            int32_t m;
            u.n = ow - t0 < run ? ow - t0 : run;
            u.seg = (u.n - 1) * sw + 2 * kp;
            m = (M2_DW_STAGE / u.seg - kh) / sh + 1; /* output rows per staging (>= 1: seg <= seg_max) */
            for (oy = 0; oy < oh; oy += m) {
                const int32_t mb = oh - oy < m ? oh - oy : m;
                int32_t k;
                m2_dw_stage(x, xbits, xsgn, c * ih, ih, iw, oy * sh - ph, (mb - 1) * sh + kh, t0 * sw - pw, u.seg, st);
                for (k = 0; k < mb; ++k) {
                    u.st = st + k * sh * u.seg;
                    u.yo = (c * oh + oy + k) * ow + t0;
                    f(&u);
                }
            }
        }
    }
}

#endif
#undef M2_DWCONV_C
/*@end*/

/*@kernel pwconv*/
#define M2_PW_CHUNK 64 /* stack bytes of a sub-byte input's unpacked column; a multiple of 8 */
/* Position p's output channels, four a pass, from its column `col` (stride `cs` between channels):
   the dot products, requantization, the sigmoid LUT and the store (a macro: -Os code stays as it was). */
#define M2_PW_GROUPS(col, cs)                                                                     \
    for (co = 0; co < cout; co += 4) {                                                            \
        int32_t acc[4], j, q;                                                                     \
        const int n = cout - co < 4 ? (int)(cout - co) : 4;                                       \
        if (!M2_WLOW || M2_DOT8_OK(wbits))                                                        \
            m2_dot_8(col, cs, xsgn, (const int8_t *)(w + co * cin), cin, cin, n, acc);            \
        else                                                                                      \
            m2_dot_low(col, cs, xsgn, w + co * cin * wbits / 8, wbits, cin * wbits / 8, cin, n, acc); \
        for (j = 0; j < n; ++j) {                                                                 \
            q = m2_requant_b(acc[j], bias[co + j], mult[co + j], shift[co + j], lo, hi);          \
            if (lut)                                                                              \
                q = lut[q - lut_lo];                                                              \
            m2_st(y, (co + j) * npos + p, ybits, q);                                              \
        }                                                                                         \
    }
#if M2_SPEED
/* Position p's column (K bytes) into buf, unless it is x itself (a linear layer's byte input). */
static const uint8_t *m2_pw_column(const uint8_t *x, int xbits, int xsgn, int32_t cin, int32_t npos, int32_t p,
                                   uint8_t *buf)
{
    int32_t c;
    if (npos == 1 && xbits == 8)
        return x;
    if (xbits == 8) {
        for (c = 0; c < cin; ++c)
            buf[c] = x[c * npos + p];
    } else {
        for (c = 0; c < cin; ++c)
            buf[c] = (uint8_t)(m2_ld(x, c * npos + p, xbits, xsgn) & 0xff);
    }
    return buf;
}

/* Speed builds, sub-byte weights and columns up to M2_PW_LANES: the column widened once per position
   (see m2_mvlow); out of line, so that m2_pwconv stays small enough to be specialised per call. */
static M2_NOINLINE void m2_pw_low(const uint8_t *x, int xbits, int xsgn, int32_t cin, int32_t npos, uint8_t *y,
                                  int ybits, int32_t cout, const uint8_t *w, int wbits, const int32_t *bias,
                                  const int32_t *mult, const int8_t *shift, int32_t lo, int32_t hi,
                                  const uint8_t *lut, int32_t lut_lo, int ushift)
{
    int32_t p;
    const m2_out out = {bias, mult, shift, lo, hi, lut, lut_lo, y, npos, ybits, ushift};
    uint8_t buf[M2_PW_LANES];
    int32_t L[M2_PW_LANES / 2];
    for (p = 0; p < npos; ++p) {
        m2_widen(m2_pw_column(x, xbits, xsgn, cin, npos, p, buf), xsgn, cin, wbits, L);
        m2_mvlow(L, w, wbits, cin, cout, &out, p);
    }
}
/* Speed builds, byte weights (see m2_pw8_pair, m2_lin8). */
static M2_NOINLINE void m2_pw_8(const uint8_t *x, int xbits, int xsgn, int32_t cin, int32_t npos, uint8_t *y,
                                int ybits, int32_t cout, const uint8_t *w, const int32_t *bias, const int32_t *mult,
                                const int8_t *shift, int32_t lo, int32_t hi, const uint8_t *lut, int32_t lut_lo,
                                int ushift)
{
    const m2_out out = {bias, mult, shift, lo, hi, lut, lut_lo, y, npos, ybits, ushift};
    uint8_t buf[M2_PW_LANES];
    int32_t L[2 * M2_L2], p;
    if (npos == 1) {
        m2_widen(m2_pw_column(x, xbits, xsgn, cin, npos, 0, buf), xsgn, cin, 8, L);
        m2_lin8(L, w, cin, cout, &out, 0);
        return;
    }
    for (p = 0; p < npos; p += 2) {
        const int both = p + 1 < npos;
        m2_widen(m2_pw_column(x, xbits, xsgn, cin, npos, p, buf), xsgn, cin, 8, L);
        m2_widen(m2_pw_column(x, xbits, xsgn, cin, npos, both ? p + 1 : p, buf), xsgn, cin, 8, L + M2_L2);
        m2_pw8_pair(L, w, cin, cout, &out, p, both);
    }
}
#endif
/* Pointwise (1x1, stride 1) convolution over `npos` positions; a linear layer is npos = 1.
   With `lut` (sigmoid): the requantized value is the LUT index (minus `lut_lo`), the stored value
   the LUT entry. */
static M2_KERNEL void m2_pwconv(const uint8_t *x, int xbits, int xsgn, int32_t cin, int32_t npos,
                                uint8_t *y, int ybits, int32_t cout,
                                const uint8_t *w, int wbits, const int32_t *bias, const int32_t *mult,
                                const int8_t *shift, int32_t lo, int32_t hi, const uint8_t *lut, int32_t lut_lo,
                                int ushift)
{
    int32_t p, co, c;
#if M2_SPEED
    if (wbits < 8 && cin <= M2_PW_LANES) {
        m2_pw_low(x, xbits, xsgn, cin, npos, y, ybits, cout, w, wbits, bias, mult, shift, lo, hi, lut, lut_lo,
                  ushift);
        return;
    }
    if (M2_DOT8_OK(wbits) && cin % 4 == 0 && cin <= M2_PW_LANES) {
        m2_pw_8(x, xbits, xsgn, cin, npos, y, ybits, cout, w, bias, mult, shift, lo, hi, lut, lut_lo, ushift);
        return;
    }
    if ((npos > 1 || xbits != 8) && cin <= M2_PW_CHUNK && M2_DOT8_OK(wbits)) {
        /* byte weights, the column fits the stack buffer: gathered (and unpacked) once per position,
           not once per four output channels, and the dot products read it contiguously */
        uint8_t buf[M2_PW_CHUNK];
        for (p = 0; p < npos; ++p) {
            const uint8_t *col = m2_pw_column(x, xbits, xsgn, cin, npos, p, buf); /* buf: npos > 1 or sub-byte x */
            M2_PW_GROUPS(col, 1);
        }
        return;
    }
#else
    (void)ushift;
#endif
    if (xbits == 8 && (M2_DOT8_OK(wbits) || M2_DOTLOW_OK(wbits, cin))) {
        /* byte inputs: position p's column is x[p], x[p + npos], ...; four output channels a pass */
        for (p = 0; p < npos; ++p)
            M2_PW_GROUPS(x + p, npos);
        return;
    }
    if (M2_DOT8_OK(wbits) || M2_DOTLOW_OK(wbits, cin)) {
        /* 4- / 2-bit inputs: position p's column unpacked M2_PW_CHUNK elements at a time into a
           byte column on the stack (the arena has no scratch for this op), then the same dot
           products; the chunks' sums add up exactly. */
        uint8_t buf[M2_PW_CHUNK];
        for (p = 0; p < npos; ++p)
            for (co = 0; co < cout; co += 4) {
                int32_t acc[4] = {0, 0, 0, 0}, part[4], j, q, c0;
                const int n = cout - co < 4 ? (int)(cout - co) : 4;
                for (c0 = 0; c0 < cin; c0 += M2_PW_CHUNK) {
                    const int32_t len = cin - c0 < M2_PW_CHUNK ? cin - c0 : M2_PW_CHUNK;
                    for (c = 0; c < len; ++c)
                        buf[c] = (uint8_t)(m2_ld(x, (c0 + c) * npos + p, xbits, xsgn) & 0xff);
                    if (!M2_WLOW || M2_DOT8_OK(wbits))
                        m2_dot_8(buf, 1, xsgn, (const int8_t *)(w + co * cin + c0), cin, len, n, part);
                    else
                        m2_dot_low(buf, 1, xsgn, w + (co * cin + c0) * wbits / 8, wbits, cin * wbits / 8, len, n,
                                   part);
                    for (j = 0; j < 4; ++j)
                        acc[j] += part[j];
                }
                for (j = 0; j < n; ++j) {
                    q = m2_requant_b(acc[j], bias[co + j], mult[co + j], shift[co + j], lo, hi);
                    if (lut)
                        q = lut[q - lut_lo];
                    m2_st(y, (co + j) * npos + p, ybits, q);
                }
            }
        return;
    }
    for (p = 0; p < npos; ++p)
        for (co = 0; co < cout; ++co) {
            int32_t acc = 0, q;
            const int32_t wb = co * cin;
            if (xbits == 8 && wbits == 8) { /* fast path: bytes in, byte weights */
                const int8_t *wr = (const int8_t *)(w + wb);
                if (xsgn) {
                    const int8_t *xr = (const int8_t *)(x + p);
                    for (c = 0; c < cin; ++c)
                        acc += (int32_t)xr[c * npos] * wr[c];
                } else {
                    for (c = 0; c < cin; ++c)
                        acc += (int32_t)x[c * npos + p] * wr[c];
                }
            } else {
                for (c = 0; c < cin; ++c)
                    acc += m2_ld(x, c * npos + p, xbits, xsgn) * m2_ld(w, wb + c, wbits, 1);
            }
            q = m2_requant_b(acc, bias[co], mult[co], shift[co], lo, hi);
            if (lut)
                q = lut[q - lut_lo];
            m2_st(y, co * npos + p, ybits, q);
        }
}
/*@end*/

/*@kernel maxpool*/
/* Max pooling without padding (values keep their grid: same bits, same scale). */
static M2_KERNEL void m2_maxpool(const uint8_t *x, int bits, int sgn, int32_t ch, int32_t ih, int32_t iw,
                                 uint8_t *y, int32_t oh, int32_t ow, int32_t kh, int32_t kw, int32_t sh, int32_t sw)
{
    int32_t c, oy, ox, ky, kx;
    for (c = 0; c < ch; ++c)
        for (oy = 0; oy < oh; ++oy)
            for (ox = 0; ox < ow; ++ox) {
                int32_t m = -2147483647 - 1;
                for (ky = 0; ky < kh; ++ky)
                    for (kx = 0; kx < kw; ++kx) {
                        const int32_t v = m2_ld(x, (c * ih + oy * sh + ky) * iw + ox * sw + kx, bits, sgn);
                        if (v > m)
                            m = v;
                    }
                m2_st(y, (c * oh + oy) * ow + ox, bits, m);
            }
}
/*@end*/

/*@kernel avgpool*/
/* Average pooling without padding (global pooling: one window of the whole grid): int32 window
   sum, one fixed-point rescale by in_scale / (window * out_scale). */
static M2_KERNEL void m2_avgpool(const uint8_t *x, int xbits, int xsgn, int32_t ch, int32_t ih, int32_t iw,
                                 uint8_t *y, int ybits, int32_t oh, int32_t ow, int32_t kh, int32_t kw,
                                 int32_t sh, int32_t sw, int32_t mult, int shift, int32_t lo, int32_t hi)
{
    int32_t c, oy, ox, ky, kx;
    for (c = 0; c < ch; ++c)
        for (oy = 0; oy < oh; ++oy)
            for (ox = 0; ox < ow; ++ox) {
                int32_t acc = 0;
                for (ky = 0; ky < kh; ++ky)
                    for (kx = 0; kx < kw; ++kx)
                        acc += m2_ld(x, (c * ih + oy * sh + ky) * iw + ox * sw + kx, xbits, xsgn);
                m2_st(y, (c * oh + oy) * ow + ox, ybits, m2_requant(acc, mult, shift, lo, hi));
            }
}
/*@end*/

/*@kernel requant*/
/* Copy with rescaling into elements [at, at + n) of y (one input of a concatenation). */
static M2_KERNEL void m2_requant_copy(const uint8_t *x, int xbits, int xsgn, int32_t n, uint8_t *y, int ybits,
                                      int32_t at, int32_t mult, int shift, int32_t lo, int32_t hi)
{
    int32_t i;
    for (i = 0; i < n; ++i)
        m2_st(y, at + i, ybits, m2_requant(m2_ld(x, i, xbits, xsgn), mult, shift, lo, hi));
}
/*@end*/

/*@kernel add*/
/* Elementwise sum of `nin` tensors with different scales: sum_i q_i * mult_i, one shared shift. */
static M2_KERNEL void m2_add(int nin, const uint8_t *const *xs, const int8_t *xbits, const int8_t *xsgn, int32_t n,
                             uint8_t *y, int ybits, const int32_t *mult, int shift, int32_t lo, int32_t hi)
{
    int32_t i;
    int j;
    for (i = 0; i < n; ++i) {
        int64_t acc = 0;
        for (j = 0; j < nin; ++j)
            acc += (int64_t)m2_ld(xs[j], i, xbits[j], xsgn[j]) * mult[j];
        m2_st(y, i, ybits, m2_clamp(m2_rshift(acc, shift), lo, hi));
    }
}
/*@end*/

/*@kernel mul*/
/* Elementwise product of `nin` tensors, rescaled once by prod(in_scales) / out_scale. */
static M2_KERNEL void m2_mul(int nin, const uint8_t *const *xs, const int8_t *xbits, const int8_t *xsgn, int32_t n,
                             uint8_t *y, int ybits, int32_t mult, int shift, int32_t lo, int32_t hi)
{
    int32_t i;
    int j;
    for (i = 0; i < n; ++i) {
        int64_t acc = 1;
        for (j = 0; j < nin; ++j)
            acc *= m2_ld(xs[j], i, xbits[j], xsgn[j]);
        m2_st(y, i, ybits, m2_requant(acc, mult, shift, lo, hi));
    }
}
/*@end*/

#ifdef M2_KERNELS_STANDALONE
/* Standalone build (the tests): reference every kernel so -Wunused-function holds. */
void (*const m2_all_kernels[])(void) = {
    (void (*)(void))m2_load,
    (void (*)(void))m2_conv,
    (void (*)(void))m2_dwconv,
    (void (*)(void))m2_pwconv,
    (void (*)(void))m2_maxpool,
    (void (*)(void))m2_avgpool,
    (void (*)(void))m2_requant_copy,
    (void (*)(void))m2_add,
    (void (*)(void))m2_mul,
};
#endif
