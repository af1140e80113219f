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
/* Depthwise convolution (groups = channels, one filter per channel), zero padding, no scratch.
   Each channel's filter is unpacked once (not once per output); windows inside the input skip the
   bounds tests and, for byte inputs, read the bytes directly. */
/* Out of line in every build: inlined into the inference function its 256 B filter buffer would stay
   on the stack under every later kernel's frame (measured: the peak was their sum). */
static M2_KERNEL M2_NOINLINE void m2_dwconv(const uint8_t *x, int xbits, int xsgn, int32_t ch, int32_t ih, int32_t iw,
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
#if M2_SPEED
                } else if (local && iy0 >= 0 && iy0 + kh <= ih && ix0 >= 0 && ix0 + kw <= iw) {
                    /* sub-byte inputs, a window inside the input: no bounds tests, filter from the stack */
                    const int32_t *wr = wk;
                    for (ky = 0; ky < kh; ++ky, wr += kw) {
                        const int32_t i0 = xb + (iy0 + ky) * iw + ix0;
                        for (kx = 0; kx < kw; ++kx)
                            acc += m2_ld(x, i0 + kx, xbits, xsgn) * wr[kx];
                    }
#endif
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
