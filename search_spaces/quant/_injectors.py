"""Brevitas quantizer classes (dependency-injection configs) that plug the `tensor_quant`
implementations into stock Brevitas layers, so export stays Brevitas' own."""

from __future__ import annotations

from brevitas.quant import (
    Int8ActPerTensorFloatMinMaxInit,
    Int8WeightPerChannelFloat,
    Int32Bias,
    Uint8ActPerTensorFloatMaxInit,
)

from ._kernels import OBSERVE_STEPS, _check_bits
from ._tensor_quant import ActPerTensorQuant, Int32BiasQuant, WeightPerChannelQuant


class WeightQuant(Int8WeightPerChannelFloat):
    """Per-channel, narrow-range signed weights; scale from max|w| (ternary: TWN rule)."""

    tensor_quant = WeightPerChannelQuant


class UnsignedActQuant(Uint8ActPerTensorFloatMaxInit):
    """Per-tensor unsigned activations (after ReLU): observed, then learned threshold."""

    tensor_quant = ActPerTensorQuant
    max_val = 6.0
    threshold_init = 6.0
    mode = "learned"
    observe_steps = OBSERVE_STEPS
    clip_gradient = True


class SignedActQuant(Int8ActPerTensorFloatMinMaxInit):
    """Per-tensor signed activations, full range ``[-2^(b-1), 2^(b-1)-1]``."""

    tensor_quant = ActPerTensorQuant
    min_val = -4.0
    max_val = 4.0
    threshold_init = 4.0
    mode = "learned"
    observe_steps = OBSERVE_STEPS
    clip_gradient = True


class BiasQuant(Int32Bias):
    """int32 bias, scale = input scale x per-channel weight scale (needs a QuantTensor input)."""

    tensor_quant = Int32BiasQuant


def _act_quant(bits: int, signed: bool, mode: str = "learned", **kw):
    return (SignedActQuant if signed else UnsignedActQuant).let(bit_width=_check_bits(bits), mode=mode, **kw)
