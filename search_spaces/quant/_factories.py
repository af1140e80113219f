"""The factories the search-space builder calls (`qconv`, `qrelu`, ...) and the requantizing
combinators (`QuantCat`, `QuantAdd`, `QuantMul`, `GlobalAvgPool`): every quantizer choice is made here."""

from __future__ import annotations

import torch
from torch import nn

from ._injectors import BiasQuant, WeightQuant, _act_quant
from ._kernels import _check_bits
from ._layers import QConv1d, QConv2d, QIdentity, QLinear, QReLU, QSigmoid
from ._qtensor import value


def qconv(
    dims: int,
    cin: int,
    cout: int,
    kernel: int,
    stride: int = 1,
    groups: int = 1,
    weight_bits: int = 8,
    bias: bool = True,
) -> nn.Module:
    """Quantized Conv1d/Conv2d: standard, depthwise (``groups=cin``) or pointwise (``kernel=1``).

    ``padding = kernel // 2``; int32 bias. Input: a ``QuantTensor``; output: the float accumulator
    (follow it with ``qrelu`` / ``qidentity``, where the integer kernel requantizes).
    """
    if dims not in (1, 2):
        raise ValueError(f"dims must be 1 or 2, got {dims!r}")
    cls = QConv1d if dims == 1 else QConv2d
    return cls(
        cin,
        cout,
        kernel,
        stride=stride,
        padding=kernel // 2,
        groups=groups,
        bias=bias,
        weight_quant=WeightQuant.let(bit_width=_check_bits(weight_bits)),
        bias_quant=BiasQuant if bias else None,
        return_quant_tensor=False,
    )


def qlinear(fin: int, fout: int, weight_bits: int = 8, bias: bool = True) -> nn.Module:
    """Quantized fully connected layer (``QuantTensor`` input, float accumulator output)."""
    return QLinear(
        fin,
        fout,
        bias=bias,
        weight_quant=WeightQuant.let(bit_width=_check_bits(weight_bits)),
        bias_quant=BiasQuant if bias else None,
        return_quant_tensor=False,
    )


def qrelu(bits: int) -> nn.Module:
    """ReLU, then unsigned per-tensor quantization to ``bits`` (observed, then learned threshold)."""
    return QReLU(act_quant=_act_quant(bits, signed=False), return_quant_tensor=True)


def qidentity(bits: int, signed: bool = True) -> nn.Module:
    """Per-tensor (re)quantization to ``bits``: signed for linear bottlenecks, sums, products."""
    return QIdentity(act_quant=_act_quant(bits, signed), return_quant_tensor=True)


def qrequant(bits: int, signed: bool = True) -> nn.Module:
    """Requantization after pooling / concat / add / mul: same as :func:`qidentity`."""
    return qidentity(bits, signed)


def qinput(bits: int = 8) -> nn.Module:
    """Quantizer for a float network input: signed, per tensor, range observed from the data.

    The threshold is an exponential moving average of the per-batch ``max|x|`` in training mode,
    never learned (see :class:`ActPerTensorQuant`, mode ``"observed"``).
    """
    return QIdentity(act_quant=_act_quant(bits, True, mode="observed"), return_quant_tensor=True)


def qoutput(bits: int = 8) -> nn.Module:
    """Requantization of the classifier logits: signed, observed range, straight-through; plain tensor out.

    A learned or gradient-clipping output quantizer holds the logits inside the range it started
    with (a fraction of what cross-entropy wants) and training stalls; here the range follows a
    moving average of ``max|logit|`` and the gradient passes the clipping, so the classifier
    learns as in float and the int8 output scale tracks it.
    """
    aq = _act_quant(bits, True, mode="observed", clip_gradient=False)
    return QIdentity(act_quant=aq, return_quant_tensor=False)


def qsigmoid(bits: int = 8, input_bits: int = 8) -> nn.Module:
    """Sigmoid with quantized input and output (for gating).

    Input: signed ``input_bits`` per-tensor quantizer, so that the integer runtime implements the
    sigmoid as a ``2^input_bits`` lookup table (as TFLite Micro's int8 logistic). Output: unsigned
    ``bits`` with the constant power-of-two scale ``2^-bits`` (range ``[0, 1 - 2^-bits]``).
    Returns a ``QuantTensor``.
    """
    bits = _check_bits(bits)
    out_q = _act_quant(bits, False, mode="const", threshold_init=(2**bits - 1) / 2**bits)
    return QSigmoid(act_quant=out_q, input_quant=_act_quant(input_bits, True), return_quant_tensor=True)


class GlobalAvgPool(nn.Module):
    """Mean over the length (1D) or H x W (2D), then requantization; ``(N, C)`` output by default.

    The int runtime sums in int32 and rescales once by ``in_scale / (N * out_scale)``.
    """

    def __init__(self, dims: int, bits: int, signed: bool = False, flatten: bool = True):
        super().__init__()
        if dims not in (1, 2):
            raise ValueError(f"dims must be 1 or 2, got {dims!r}")
        self.reduce_dims = (-1,) if dims == 1 else (-2, -1)
        self.flatten = flatten
        self.requant = qidentity(bits, signed)

    def forward(self, x):
        return self.requant(value(x).mean(dim=self.reduce_dims, keepdim=not self.flatten))


def qglobal_avgpool(dims: int, bits: int, signed: bool = False, flatten: bool = True) -> nn.Module:
    """Global average pool + requantization (see :class:`GlobalAvgPool`)."""
    return GlobalAvgPool(dims, bits, signed, flatten)


def _inputs(xs):
    if len(xs) == 1 and isinstance(xs[0], (list, tuple)):
        xs = tuple(xs[0])
    if not xs:
        raise ValueError("at least one input is required")
    return [value(x) for x in xs]


class QuantCat(nn.Module):
    """Concatenation (channels by default) of differently scaled tensors, then requantization."""

    def __init__(self, bits: int, signed: bool = True, dim: int = 1):
        super().__init__()
        self.dim = dim
        self.requant = qidentity(bits, signed)

    def forward(self, *xs):
        return self.requant(torch.cat(_inputs(xs), dim=self.dim))


class QuantAdd(nn.Module):
    """Elementwise sum (e.g. of per-branch projections), then requantization."""

    def __init__(self, bits: int, signed: bool = True):
        super().__init__()
        self.requant = qidentity(bits, signed)

    def forward(self, *xs):
        xs = _inputs(xs)
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return self.requant(out)


class QuantMul(nn.Module):
    """Elementwise product (gating, product fusion), then requantization."""

    def __init__(self, bits: int, signed: bool = True):
        super().__init__()
        self.requant = qidentity(bits, signed)

    def forward(self, *xs):
        xs = _inputs(xs)
        out = xs[0]
        for x in xs[1:]:
            out = out * x
        return self.requant(out)
