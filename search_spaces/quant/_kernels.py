"""Fake-quantization kernels: autograd Functions with minimal, hand-written backward passes
(a few vectorised passes instead of Brevitas' ~40 autograd nodes per quantizer), and the bit-width
and integer-range rules every quantizer shares."""

from __future__ import annotations

import torch
from torch import Tensor

from memory_models.ops import BITS

WEIGHT_BITS = BITS
ACT_BITS = BITS
OBSERVE_STEPS = 100  # training steps of range observation before activation thresholds are learned


def _check_bits(bits: int, allowed: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8)) -> int:
    if isinstance(bits, bool) or int(bits) != bits or int(bits) not in allowed:
        raise ValueError(f"bit-width must be one of {allowed}, got {bits!r}")
    return int(bits)


def _int_range(bits: int, signed: bool, narrow: bool) -> tuple[int, int]:
    if signed:
        qmax = 2 ** (bits - 1) - 1
        return (-qmax if narrow else -qmax - 1), qmax
    return 0, 2**bits - 1


class _RoundSte(torch.autograd.Function):
    """``clamp(round(x / s), qmin, qmax) * s``, pure straight-through gradient for ``x``.

    For weights (scale = statistic, no gradient; with max scaling nothing is clipped anyway), int32
    biases, and the classifier output (:func:`qoutput`). One allocation, four in-place vectorised
    passes, no backward work.
    """

    @staticmethod
    def forward(ctx, x: Tensor, scale: Tensor, qmin: float, qmax: float) -> Tensor:
        return torch.div(x, scale).round_().clamp_(qmin, qmax).mul_(scale)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad, None, None, None


class _LsqFakeQuant(torch.autograd.Function):
    """``clamp(round(x / s), qmin, qmax) * s`` with LSQ gradients (Esser et al., 2020).

    d/dx: 1 where ``round(x/s)`` lies in ``[qmin, qmax]``, else 0, as one fused
    ``hardtanh_backward`` on ``x`` with the bounds scaled by ``s``. d/ds: ``round(x/s) - x/s``
    inside the range, ``qmin``/``qmax`` outside, reduced with two dot products. Forward: one
    allocation, four in-place passes. Saved: ``x`` (kept alive by its producer anyway) and the
    output. These are the same values and gradients as Brevitas' ``RoundSte`` + ``TensorClamp``
    path; comparison / ``where`` kernels and temporaries are what is avoided.
    """

    @staticmethod
    def forward(ctx, x: Tensor, scale: Tensor, qmin: float, qmax: float) -> Tensor:
        y = torch.div(x, scale).round_().clamp_(qmin, qmax).mul_(scale)
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            ctx.save_for_backward(x, y, scale)
            ctx.bounds = (qmin - 0.5, qmax + 0.5)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, y, scale = ctx.saved_tensors
        lo, hi = ctx.bounds
        grad = grad.contiguous()
        if x.device.type == "cpu":  # bounds scaled by s: no extra pass over x
            s = float(scale)
            gx = torch.ops.aten.hardtanh_backward(grad, x, lo * s, hi * s)
        else:  # no host synchronisation on accelerators
            gx = torch.ops.aten.hardtanh_backward(grad, x / scale, lo, hi)
        gs = None
        if ctx.needs_input_grad[1]:
            gs = (torch.dot(grad.view(-1), y.reshape(-1)) - torch.dot(gx.view(-1), x.reshape(-1))) / scale
        return (gx if ctx.needs_input_grad[0] else None), gs, None, None
