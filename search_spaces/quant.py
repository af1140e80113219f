"""Quantized building blocks for the m2nas search space (Brevitas, quantization-aware training).

Every candidate network is built from the factories of this module, so that *all* quantizer
choices live here. The layers are Brevitas layers (thin subclasses of ``QuantConv1d``,
``QuantConv2d``, ``QuantLinear``, ``QuantReLU``, ``QuantIdentity``, ``QuantSigmoid``) and export
with ``brevitas.export.export_onnx_qcdq`` and ``brevitas.export.export_qonnx`` unchanged.

Quantization scheme (what an integer-only runtime such as TFLite Micro / CMSIS-NN needs):

* **Weights**: signed, symmetric, *per output channel*, narrow range ``[-(2^(b-1)-1), 2^(b-1)-1]``
  (``-w`` representable; 2 bits = ternary ``{-1, 0, 1}``), zero point 0. The float scale is a
  statistic of the current weights, recomputed every step (not learned): ``max|w| / qmax`` at 4
  and 8 bits; at 2 bits the max would round almost every weight to 0, so the ternary-weight-network
  rule ``min(1.4 mean|w|, max|w|)`` (threshold ``0.7 mean|w|``). Straight-through gradient.
* **Activations**: *per tensor*, zero point 0, unsigned after ReLU (:func:`qrelu`), signed
  otherwise (:func:`qidentity`: linear bottlenecks, pooled / concatenated / summed features).
  Threshold ``t`` (scale ``t / qmax``): observed (moving average of the batch range) for the
  first ``OBSERVE_STEPS`` training steps, then learned with LSQ gradients in log domain
  (:class:`ActPerTensorQuant`). Network inputs (:func:`qinput`) and the classifier output
  (:func:`qoutput`) keep an observed range.
* **Biases**: int32 with scale ``input_scale * weight_scale[c]`` (Brevitas ``Int32Bias``), so the
  C code adds them to the int32 accumulator as they are, and PyTorch, the ONNX graphs and the
  integer code use the *same* rounded bias. (Training with a float bias and rounding it at export,
  as the TFLite converter does, was measured here to change ~half of the int8 logits of a
  mixed 8/4/2-bit model by up to 7-10 LSB and 3% of its argmax decisions: the accumulator LSB of a
  2-bit layer is coarse.) The bias needs the input scale: weight layers therefore take a
  :class:`QTensor` input (a tensor that carries its scale), which every activation quantizer
  of this module returns.
* **Rounding**: round half to even (``torch.round``), as ONNX ``QuantizeLinear`` and QONNX
  ``Quant(rounding_mode="ROUND")``; sub-8-bit values are exported as int8/uint8 + ``Clip``.
* **Requantization points**: after global average pooling, concatenation, elementwise add / mul a
  ``qidentity`` requantizes the float result to a per-tensor scale (:class:`GlobalAvgPool`,
  :class:`QuantCat`, :class:`QuantAdd`, :class:`QuantMul`); in C each is a fixed-point rescale of
  int32 sums / products. The sigmoid (:func:`qsigmoid`) has a quantized input (lookup table in C)
  and a constant power-of-two output scale.

Composition rules (``nn.Sequential`` or custom ``forward``):

* activation quantizers (``qinput``, ``qrelu``, ``qidentity``, ``qsigmoid`` and the combinators)
  return a :class:`QTensor`: a ``torch.Tensor`` of fake-quantized values that remembers its
  scale. Every torch op works on it as on any tensor (``torch.cat``, ``+``, ``*``, ``.mean``...);
  quantization-invariant ops (max pooling, flatten / view / slicing, padding, ReLU, dropout) keep
  the scale, others return plain tensors;
* weight layers (``qconv``, ``qlinear``) need such an input (their int32 bias is scaled by the
  input scale; a ``TypeError`` says so otherwise) and return the float accumulator, to be followed
  by an activation quantizer. So after ``torch.cat``, ``+``, ``*``, average pooling, requantize
  with ``qidentity`` (or use :class:`QuantCat` / :class:`QuantAdd` / :class:`QuantMul` /
  :class:`GlobalAvgPool`), which is also what the integer code does;
* :func:`qoutput` returns a plain tensor (the logits).

Speed (see ``tests/bench/test_bench_qat.py``): out of the box, Brevitas QAT ran ~6x the float
step on these tiny nets. Time went to (1) percentile statistics for activation scales
(``kthvalue`` over each activation for 300 steps), (2) ~40 small autograd nodes per quantizer
(stats, restrict, ``where``-based clamps, zero-point add/sub, each a full pass over the
activation, and comparison / ``where`` kernels are 5-10x slower than arithmetic on CPU), (3)
``QuantTensor`` bookkeeping in every layer (output scale / bit-width arithmetic, ``allclose``,
``any``, ``torch.tensor`` creations, ``__torch_function__`` dispatch), needed only because
``Int32Bias`` needs the input scale, and (4) a learned input scale, which made autograd compute the gradient w.r.t. the network input through the first
convolution (oneDNN's backward-data for 1-3 input channels is very slow). Here the quantizer
arithmetic is injected into the Brevitas quantizers as ``tensor_quant`` modules with hand-written
autograd functions (a few vectorised passes, fused ``hardtanh_backward`` mask, dot-product scale
gradient), and in *training* mode the layers run that same arithmetic directly instead of
Brevitas' generic ``QuantTensor`` path, the input scale travelling on the :class:`QTensor`. In
eval mode (validation and export) the layers run the stock Brevitas forward with the same
``tensor_quant`` modules; the tests check that both agree bit for bit.
"""

from __future__ import annotations

import math

import torch
from brevitas import config as brevitas_config
from brevitas import nn as qnn
from brevitas.quant import (
    Int8ActPerTensorFloatMinMaxInit,
    Int8WeightPerChannelFloat,
    Int32Bias,
    Uint8ActPerTensorFloatMaxInit,
)
from brevitas.quant_tensor import IntQuantTensor, QuantTensor
from torch import Tensor, nn

from memory_models.ops import BITS

__all__ = [
    "WEIGHT_BITS",
    "ACT_BITS",
    "OBSERVE_STEPS",
    "qconv",
    "qlinear",
    "qrelu",
    "qidentity",
    "qinput",
    "qoutput",
    "qrequant",
    "qsigmoid",
    "qglobal_avgpool",
    "GlobalAvgPool",
    "QuantCat",
    "QuantAdd",
    "QuantMul",
    "value",
    "quant_params",
    "threshold_parameters",
    "QConv1d",
    "QConv2d",
    "QLinear",
    "QReLU",
    "QIdentity",
    "QSigmoid",
]

# Brevitas re-instantiates every quantizer's ``tensor_quant`` when a state dict is loaded (to
# recompute statistics-initialised scales). The quantizers here have nothing to recompute (live
# weight statistics, plain parameters / buffers), and re-instantiation would detach the learned
# thresholds from an optimizer built before ``load_state_dict`` (resuming from a checkpoint) and
# leave them on the CPU for a model on an accelerator. This project uses Brevitas only here.
brevitas_config.REINIT_ON_STATE_DICT_LOAD = False

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


# --------------------------------------------------------------------------------------------
# Fake-quantization kernels (autograd Functions with minimal, hand-written backward passes)
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# tensor_quant implementations injected into Brevitas quantizers
# --------------------------------------------------------------------------------------------


class WeightPerChannelQuant(nn.Module):
    """Brevitas ``tensor_quant`` for weights: per-output-channel scale from statistics.

    Returns ``(fake_quant_weight, scale, zero_point, bit_width)`` like Brevitas'
    ``RescalingIntQuant``; ``scale`` has shape ``(C_out, 1, ...)``, so the export handlers use
    ``axis=0``.
    """

    def __init__(self, bit_width: int, signed: bool, narrow_range: bool):
        super().__init__()
        self.bits = _check_bits(bit_width)
        self.qmin, self.qmax = _int_range(self.bits, signed, narrow_range)
        self.register_buffer("bit_width_t", torch.tensor(float(self.bits)), persistent=False)
        self.register_buffer("zero_point_t", torch.tensor(0.0), persistent=False)

    @torch.no_grad()
    def weight_scale(self, w: Tensor) -> Tensor:
        dims = tuple(range(1, w.dim()))
        a = w.detach().abs()
        if self.qmax == 1:  # ternary: TWN rule, bounded by the max
            stat = torch.minimum(a.mean(dim=dims, keepdim=True) * 1.4, a.amax(dim=dims, keepdim=True))
        else:
            stat = a.amax(dim=dims, keepdim=True) / self.qmax
        return stat.clamp_min_(1e-8)

    def forward(self, w: Tensor):
        scale = self.weight_scale(w)
        y = _RoundSte.apply(w, scale, float(self.qmin), float(self.qmax))
        return y, scale, self.zero_point_t, self.bit_width_t


class ActPerTensorQuant(nn.Module):
    """Brevitas ``tensor_quant`` for activations: per-tensor threshold ``t``, ``scale = t / qmax``.

    ``mode``:

    * ``"learned"`` (default): for the first ``observe_steps`` training forwards ``t`` follows an
      exponential moving average of a batch statistic (``max|x|`` at 8 bits; below, the LSQ
      initialisation ``2 sqrt(qmax) mean|x|`` bounded by the max, which clips outliers); then ``t``
      is trained with LSQ gradients. It is stored as ``log t`` so that Adam's roughly constant
      step is a *relative* change (thresholds range from 0.01 to 100 across layers). This is
      Brevitas' ``ParameterFromRuntimeStatsScaling`` scheme (statistics, then a learned
      parameter) with one cheap reduction per step instead of a ``kthvalue`` percentile;
    * ``"observed"``: ``t`` follows the moving average for ever, no gradient (TF / PyTorch QAT
      observers). For network inputs: their range is a property of the data, and a learned input
      scale would make autograd differentiate through the first convolution w.r.t. its input,
      which the float network never does (and oneDNN is very slow at for 1-3 input channels);
    * ``"const"``: ``t`` fixed at ``threshold_init`` (sigmoid outputs).

    ``clip_gradient=False``: pure straight-through input gradient, also where the value was
    clipped (used by :func:`qoutput`).
    """

    MODES = ("learned", "observed", "const")
    MOMENTUM = 0.1

    def __init__(
        self,
        bit_width: int,
        signed: bool,
        narrow_range: bool,
        threshold_init: float,
        mode: str,
        observe_steps: int,
        clip_gradient: bool,
    ):
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, got {mode!r}")
        self.bits = _check_bits(bit_width)
        self.signed = bool(signed)
        self.mode = mode
        self.clip_gradient = bool(clip_gradient)
        self.qmin, self.qmax = _int_range(self.bits, signed, narrow_range)
        self.observe_steps = {"learned": int(observe_steps), "observed": -1, "const": 0}[mode]
        init = torch.tensor(float(threshold_init))
        if mode == "learned":
            self.log_threshold = nn.Parameter(init.log())
        else:
            self.register_buffer("threshold_buf", init)
        self.register_buffer("observed", torch.tensor(0, dtype=torch.long))
        self._observed = 0  # python mirror of the buffer: no tensor read on the hot path
        self.register_buffer("bit_width_t", torch.tensor(float(self.bits)), persistent=False)
        self.register_buffer("zero_point_t", torch.tensor(0.0), persistent=False)

    @property
    def observing(self) -> bool:
        return self.observe_steps < 0 or self._observed < self.observe_steps

    def threshold(self) -> Tensor:
        return self.log_threshold.exp() if self.mode == "learned" else self.threshold_buf

    @torch.no_grad()
    def _observe(self, x: Tensor) -> None:
        x = x.detach()
        lo, hi = torch.aminmax(x)
        stat = torch.maximum(hi, -lo) if self.signed else hi
        if self.bits < 8:
            stat = torch.minimum(stat, x.abs().mean() * (2.0 * math.sqrt(self.qmax)))
        stat = stat.clamp_min(1e-6)
        if self.mode == "learned":
            t = stat if self._observed == 0 else self.log_threshold.exp().lerp_(stat, self.MOMENTUM)
            self.log_threshold.copy_(t.log())
        elif self._observed == 0:
            self.threshold_buf.copy_(stat)
        else:
            self.threshold_buf.lerp_(stat, self.MOMENTUM)
        self._observed += 1
        self.observed.fill_(self._observed)

    def forward(self, x: Tensor):
        if self.mode != "const" and self.training and self.observing and x.numel() > 1:
            self._observe(x)
        if self.mode == "learned" and not self.observing:
            scale = self.log_threshold.exp() / self.qmax
        else:
            scale = self.threshold().detach() / self.qmax
        if self.clip_gradient:
            y = _LsqFakeQuant.apply(x, scale, float(self.qmin), float(self.qmax))
        else:
            y = _RoundSte.apply(x, scale.detach(), float(self.qmin), float(self.qmax))
        return y, scale, self.zero_point_t, self.bit_width_t

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._observed = int(self.observed)


class Int32BiasQuant(nn.Module):
    """Brevitas ``tensor_quant`` for biases: int32, scale ``input_scale * weight_scale[c]``.

    ``forward(bias, input_scale)``: ``input_scale`` is the per-channel product computed by
    Brevitas' bias proxy (or by the layers' training path) from the input and weight scales.
    Straight-through gradient for the bias; the scale is a constant here.
    """

    def __init__(self, bit_width: int, signed: bool, narrow_range: bool):
        super().__init__()
        self.bits = int(bit_width)
        self.qmin, self.qmax = _int_range(self.bits, signed, narrow_range)
        self.register_buffer("bit_width_t", torch.tensor(float(self.bits)), persistent=False)
        self.register_buffer("zero_point_t", torch.tensor(0.0), persistent=False)

    def forward(self, x: Tensor, input_scale: Tensor):
        scale = input_scale.detach()
        y = _RoundSte.apply(x, scale, float(self.qmin), float(self.qmax))
        return y, scale, self.zero_point_t, self.bit_width_t


# --------------------------------------------------------------------------------------------
# Brevitas quantizer classes (dependency-injection configs) using the implementations above
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Quantized activations as tensors that remember their scale
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Layers: Brevitas layers with a direct training path and QTensor inputs / outputs
# --------------------------------------------------------------------------------------------


class _WeightLayer:
    """Forward of ``QConv1d``/``QConv2d``/``QLinear``.

    Input: a ``QTensor`` (or a Brevitas ``QuantTensor``): the int32 bias is scaled by its scale.
    Training: the same ``tensor_quant`` modules as the Brevitas path (weights, then the bias with
    scale ``input_scale * weight_scale``) and the plain convolution / linear op, skipping Brevitas'
    ``QuantTensor`` output bookkeeping (accumulator bit-width and scale arithmetic, ``allclose``,
    ``any``, ``__torch_function__`` dispatch) that nothing here reads. Eval: the stock Brevitas
    forward (which also fills the caches its export handlers use). Export: Brevitas' export path.
    Output: the float accumulator, a plain tensor.
    """

    def forward(self, x):
        if self.export_mode or self.weight_quant.export_mode:  # QCDQ / QONNX export: plain tensors
            return super().forward(_plain(x))
        if isinstance(x, QTensor):
            scale, zp, bw, signed = x.quant_scale, x.quant_zero_point, x.quant_bit_width, x.quant_signed
        elif isinstance(x, QuantTensor):
            scale, zp, bw, signed = x.scale, x.zero_point, x.bit_width, x.signed
        else:
            raise TypeError(
                f"{type(self).__name__} needs a quantized input (the output of qinput / qrelu / qidentity / "
                "qsigmoid / a combinator, possibly through max pooling, flatten, slicing, dropout): the int32 "
                f"bias is scaled by the input scale. Got a {type(x).__name__}; requantize it with qidentity."
            )
        x = _plain(x)
        if not self.training or not self.weight_quant.is_quant_enabled:
            return super().forward(IntQuantTensor(x, scale, zp, bw, _flag(signed), _flag(self.training)))
        w, w_scale, _, _ = self.weight_quant.tensor_quant(self.weight)
        b = self.bias
        if b is not None and self.bias_quant.is_quant_enabled:
            b = self.bias_quant.tensor_quant(b, w_scale.reshape(-1) * scale.reshape(-1))[0]
        return self.inner_forward_impl(x, w, b)


class QConv1d(_WeightLayer, qnn.QuantConv1d):
    pass


class QConv2d(_WeightLayer, qnn.QuantConv2d):
    pass


class QLinear(_WeightLayer, qnn.QuantLinear):
    pass


class _ActLayer:
    """Forward of the activation quantizers: returns a ``QTensor`` (``qoutput``: a plain tensor).

    Training (no input quantizer): the activation and the ``tensor_quant`` module directly.
    Eval: the stock Brevitas forward, its ``QuantTensor`` converted to a ``QTensor``. Export:
    Brevitas' export path, plain values.
    """

    def forward(self, x):
        x = _plain(x)
        if self.export_mode or self.act_quant.export_mode:
            return _plain(super().forward(x))
        if self.training and self.act_quant.is_quant_enabled and not self.input_quant.is_quant_enabled:
            proxy = self.act_quant.fused_activation_quant_proxy
            y, scale, zp, bw = proxy.tensor_quant(proxy.activation_impl(x))
        else:
            out = super().forward(x)
            if not isinstance(out, QuantTensor):
                return out
            y, scale, zp, bw = out.value, out.scale, out.zero_point, out.bit_width
        if not self.return_quant_tensor:
            return y
        return QTensor.wrap(y, scale, zp, bw, bool(self.act_quant.is_signed))


class QReLU(_ActLayer, qnn.QuantReLU):
    pass


class QIdentity(_ActLayer, qnn.QuantIdentity):
    pass


class QSigmoid(_ActLayer, qnn.QuantSigmoid):
    pass


# --------------------------------------------------------------------------------------------
# Factories
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Helpers (integer code generation, optimiser set-up)
# --------------------------------------------------------------------------------------------


def _act_tensor_quant(module: nn.Module, which: str = "act_quant") -> ActPerTensorQuant | None:
    proxy = getattr(module, which, None)
    fused = getattr(proxy, "fused_activation_quant_proxy", None)
    tq = getattr(fused, "tensor_quant", None)
    return tq if isinstance(tq, ActPerTensorQuant) else None


def quant_params(module: nn.Module) -> dict:
    """Integer parameters of a layer built here, as tensors / Python values.

    ``qconv`` / ``qlinear``: ``weight_scale`` (C_out,), ``weight_int`` (integer-valued float
    tensor), ``weight_bits``; with ``input_scale=`` given (the scale of the quantizer feeding the
    layer) also ``bias_int32`` and ``bias_scale``: see :func:`int32_bias`. Activation layers:
    ``scale`` (0-dim), ``bits``, ``signed`` (and ``input_*`` for ``qsigmoid``).
    """
    with torch.no_grad():
        if isinstance(module, _WeightLayer):
            tq = module.weight_quant.tensor_quant
            w = module.weight.detach()
            scale = tq.weight_scale(w)
            w_int = torch.round(w / scale).clamp_(tq.qmin, tq.qmax)
            return {"weight_scale": scale.flatten(), "weight_int": w_int, "weight_bits": tq.bits}
        for target in (module, getattr(module, "requant", None)):
            tq = _act_tensor_quant(target) if target is not None else None
            if tq is not None:
                out = {"scale": tq.threshold().detach() / tq.qmax, "bits": tq.bits, "signed": tq.signed}
                itq = _act_tensor_quant(target, "input_quant")
                if itq is not None:
                    out.update(input_scale=itq.threshold().detach() / itq.qmax, input_bits=itq.bits)
                return out
    raise TypeError(f"not a quantized layer built by search_spaces.quant: {type(module).__name__}")


def int32_bias(module: nn.Module, input_scale: Tensor | float) -> tuple[Tensor, Tensor]:
    """``(bias_int32, bias_scale)`` of a ``qconv`` / ``qlinear`` fed by a quantizer of scale ``input_scale``.

    Exactly the values the layer adds in PyTorch (``bias_int32 * bias_scale``), for the C code.
    """
    if not isinstance(module, _WeightLayer) or module.bias is None:
        raise TypeError("int32_bias needs a qconv / qlinear layer with a bias")
    with torch.no_grad():
        w_scale = quant_params(module)["weight_scale"]
        s = w_scale * torch.as_tensor(input_scale, dtype=w_scale.dtype).reshape(-1)
        q = module.bias_quant.tensor_quant
        b_int = torch.round(module.bias.detach() / s).clamp_(q.qmin, q.qmax)
        return b_int.to(torch.int64).to(torch.int32), s


def threshold_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The learned activation thresholds (``log t``), e.g. to exclude them from weight decay."""
    return [
        p for m in model.modules() if isinstance(m, ActPerTensorQuant) for p in m.parameters(recurse=False)
    ]
