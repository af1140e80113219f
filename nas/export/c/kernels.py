"""The C99 operator kernels of the generated code, as source text (emitted into ``model.c``).

Conventions (all kernels):

* tensors live in the static arena, channel-first (``(C, L)`` or ``(C, H, W)``; 1D runs as 2D with
  ``H = 1``), elements *packed* at their bit-width (2, 4 or 8): element ``i`` of a ``b``-bit tensor is
  bits ``(i*b) % 8 ..`` of byte ``i*b / 8`` (low bits first; 2 and 4 divide 8, so no element straddles
  two bytes). Signed tensors hold ``b``-bit two's complement fields, unsigned ones plain fields;
* weights are packed the same way (signed, narrow range), PyTorch order ``(C_out, C_in/groups, k...)``;
* accumulators are int32 (bias added in int64, so a saturated int32 bias cannot overflow);
* requantization is fixed point as in TFLite Micro / CMSIS-NN: ``q = round(acc * mult / 2^shift)``
  with a 31-bit ``mult``, evaluated exactly in int64 and rounded half to even (the rounding of
  ``torch.round`` in the Brevitas model), then clamped to the output quantizer's range. ReLU is that
  clamp at 0 (an unsigned output quantizer).

Each kernel is delimited by ``/*@kernel NAME*/`` ... ``/*@end*/`` so that the generator emits only
the kernels a model uses (``-Wall -Wextra -Werror`` rejects unused static functions, and unused code
would inflate the size figures). ``common`` is always emitted.
"""

from __future__ import annotations

import re

SOURCE = r"""
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

/*@kernel conv*/
/* Standard convolution (groups 1), zero padding. With `col` (the planned im2col scratch: one
   column of cin*kh*kw bytes) each input patch is unpacked once and reused by every output
   channel; without it (1x1 kernels: the plan reserves no scratch) inputs are read in place. */
static void m2_conv(const uint8_t *x, int xbits, int xsgn, int32_t cin, int32_t ih, int32_t iw,
                    uint8_t *y, int ybits, int32_t cout, int32_t oh, int32_t ow,
                    int32_t kh, int32_t kw, int32_t sh, int32_t sw, int32_t ph, int32_t pw,
                    const uint8_t *w, int wbits, const int32_t *bias, const int32_t *mult,
                    const int8_t *shift, int32_t lo, int32_t hi, uint8_t *col)
{
    const int32_t K = cin * kh * kw;
    int32_t oy, ox, c, ky, kx, co, k;
    for (oy = 0; oy < oh; ++oy) {
        for (ox = 0; ox < ow; ++ox) {
            const int32_t o = oy * ow + ox;
            if (col) {
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
            for (co = 0; co < cout; ++co) {
                int32_t acc = 0;
                const int32_t wb = co * K;
                if (col && wbits == 8) { /* fast path: byte weights */
                    const int8_t *wr = (const int8_t *)(w + wb);
                    if (xsgn) {
                        const int8_t *cr = (const int8_t *)col;
                        for (k = 0; k < K; ++k)
                            acc += (int32_t)cr[k] * wr[k];
                    } else {
                        for (k = 0; k < K; ++k)
                            acc += (int32_t)col[k] * wr[k];
                    }
                } else if (col) {
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
                      m2_requant((int64_t)acc + bias[co], mult[co], shift[co], lo, hi));
            }
        }
    }
}
/*@end*/

/*@kernel dwconv*/
/* Depthwise convolution (groups = channels, one filter per channel), zero padding, no scratch. */
static void m2_dwconv(const uint8_t *x, int xbits, int xsgn, int32_t ch, int32_t ih, int32_t iw,
                      uint8_t *y, int ybits, int32_t oh, int32_t ow,
                      int32_t kh, int32_t kw, int32_t sh, int32_t sw, int32_t ph, int32_t pw,
                      const uint8_t *w, int wbits, const int32_t *bias, const int32_t *mult,
                      const int8_t *shift, int32_t lo, int32_t hi)
{
    int32_t c, oy, ox, ky, kx;
    for (c = 0; c < ch; ++c) {
        const int32_t wb = c * kh * kw, xb = c * ih * iw, yb = c * oh * ow;
        for (oy = 0; oy < oh; ++oy)
            for (ox = 0; ox < ow; ++ox) {
                int32_t acc = 0;
                for (ky = 0; ky < kh; ++ky) {
                    const int32_t iy = oy * sh - ph + ky;
                    if (iy < 0 || iy >= ih)
                        continue;
                    for (kx = 0; kx < kw; ++kx) {
                        const int32_t ix = ox * sw - pw + kx;
                        if (ix < 0 || ix >= iw)
                            continue;
                        acc += m2_ld(x, xb + iy * iw + ix, xbits, xsgn) * m2_ld(w, wb + ky * kw + kx, wbits, 1);
                    }
                }
                m2_st(y, yb + oy * ow + ox, ybits, m2_requant((int64_t)acc + bias[c], mult[c], shift[c], lo, hi));
            }
    }
}
/*@end*/

/*@kernel pwconv*/
/* Pointwise (1x1, stride 1) convolution over `npos` positions; a linear layer is npos = 1.
   With `lut` (sigmoid): the requantized value is the LUT index (minus `lut_lo`), the stored value
   the LUT entry. */
static void m2_pwconv(const uint8_t *x, int xbits, int xsgn, int32_t cin, int32_t npos,
                      uint8_t *y, int ybits, int32_t cout,
                      const uint8_t *w, int wbits, const int32_t *bias, const int32_t *mult,
                      const int8_t *shift, int32_t lo, int32_t hi, const uint8_t *lut, int32_t lut_lo)
{
    int32_t p, co, c;
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
            q = m2_requant((int64_t)acc + bias[co], mult[co], shift[co], lo, hi);
            if (lut)
                q = lut[q - lut_lo];
            m2_st(y, co * npos + p, ybits, q);
        }
}
/*@end*/

/*@kernel maxpool*/
/* Max pooling without padding (values keep their grid: same bits, same scale). */
static void m2_maxpool(const uint8_t *x, int bits, int sgn, int32_t ch, int32_t ih, int32_t iw,
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
static void m2_avgpool(const uint8_t *x, int xbits, int xsgn, int32_t ch, int32_t ih, int32_t iw,
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
static void m2_requant_copy(const uint8_t *x, int xbits, int xsgn, int32_t n, uint8_t *y, int ybits,
                            int32_t at, int32_t mult, int shift, int32_t lo, int32_t hi)
{
    int32_t i;
    for (i = 0; i < n; ++i)
        m2_st(y, at + i, ybits, m2_requant(m2_ld(x, i, xbits, xsgn), mult, shift, lo, hi));
}
/*@end*/

/*@kernel add*/
/* Elementwise sum of `nin` tensors with different scales: sum_i q_i * mult_i, one shared shift. */
static void m2_add(int nin, const uint8_t *const *xs, const int8_t *xbits, const int8_t *xsgn, int32_t n,
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
static void m2_mul(int nin, const uint8_t *const *xs, const int8_t *xbits, const int8_t *xsgn, int32_t n,
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
"""

_KERNEL = re.compile(r"/\*@kernel (\w+)\*/\n(.*?)/\*@end\*/\n", re.S)
KERNELS: dict[str, str] = {m.group(1): m.group(2) for m in _KERNEL.finditer(SOURCE)}


def kernel_source(names) -> str:
    """C source of the ``common`` helpers and the named kernels, in a fixed order."""
    unknown = set(names) - set(KERNELS)
    if unknown:
        raise KeyError(f"no C kernel named {sorted(unknown)}")
    return "\n".join(KERNELS[k] for k in KERNELS if k == "common" or k in names)
