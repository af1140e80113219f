"""Quantized activations as tensors that remember their scale: the int32 bias of the next
weight layer needs the input scale, and carrying it on the tensor avoids Brevitas' `QuantTensor`
bookkeeping in training."""

from __future__ import annotations

import torch
from brevitas.quant_tensor import QuantTensor
from torch import Tensor

# Ops that keep values on the quantization grid, so their output keeps the input's scale.
_SCALE_PRESERVING = frozenset(
    {
        "max_pool1d",
        "max_pool2d",
        "max_pool1d_with_indices",
        "max_pool2d_with_indices",
        "adaptive_max_pool1d",
        "adaptive_max_pool2d",
        "adaptive_max_pool1d_with_indices",
        "adaptive_max_pool2d_with_indices",
        "flatten",
        "view",
        "reshape",
        "squeeze",
        "unsqueeze",
        "permute",
        "transpose",
        "contiguous",
        "clone",
        "__getitem__",
        "pad",
        "relu",
        "dropout",
        "dropout1d",
        "dropout2d",
        "feature_alpha_dropout",
    }
)


class QTensor(torch.Tensor):
    """A fake-quantized activation (plain ``torch.Tensor`` values) that remembers its quantizer.

    Returned by every activation quantizer here. Any torch op works on it; ops that keep values
    on the grid (max pooling, flatten / view / reshape / slicing, padding, ReLU, dropout) return a
    ``QTensor`` with the same ``quant_scale``, all others a plain tensor. Weight layers read
    ``quant_scale`` for their int32 bias. This replaces Brevitas' ``QuantTensor`` (a named tuple,
    not a tensor: ``torch.cat``, ``+``, ``.mean`` behave differently on it, or fail in eval mode
    when scales differ) at the cost of one Python call per op on these tensors.
    """

    quant_scale: Tensor
    quant_zero_point: Tensor
    quant_bit_width: Tensor
    quant_signed: bool

    @staticmethod
    def wrap(t: Tensor, scale: Tensor, zero_point: Tensor, bit_width: Tensor, signed: bool) -> QTensor:
        with torch._C.DisableTorchFunctionSubclass():
            q = t.as_subclass(QTensor)
        q.quant_scale, q.quant_zero_point, q.quant_bit_width, q.quant_signed = (
            scale,
            zero_point,
            bit_width,
            signed,
        )
        return q

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        with torch._C.DisableTorchFunctionSubclass():
            out = func(*args, **(kwargs or {}))
        if getattr(func, "__name__", None) in _SCALE_PRESERVING and args and isinstance(args[0], QTensor):
            src = args[0]
            meta = (src.quant_scale, src.quant_zero_point, src.quant_bit_width, src.quant_signed)
            if isinstance(out, torch.Tensor) and type(out) is torch.Tensor:
                return QTensor.wrap(out, *meta)
            if isinstance(out, tuple) and out and type(out[0]) is torch.Tensor:
                return (QTensor.wrap(out[0], *meta), *out[1:])
        return out


def _plain(x):
    """The values as a plain ``torch.Tensor`` (same storage and autograd graph)."""
    if isinstance(x, QuantTensor):
        x = x.value
    if type(x) is QTensor:
        with torch._C.DisableTorchFunctionSubclass():
            return x.as_subclass(torch.Tensor)
    return x


def value(x):
    """Plain float tensor of a ``QTensor`` / Brevitas ``QuantTensor`` / tensor (fake-quantized values)."""
    return _plain(x)


def _flag(v: bool) -> Tensor:
    return _FLAGS[bool(v)]


_FLAGS = {True: torch.tensor(True), False: torch.tensor(False)}
