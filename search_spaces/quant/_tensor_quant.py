"""The `tensor_quant` modules injected into Brevitas quantizers: the arithmetic of weights
(per channel, statistics scale), activations (per tensor, observed then learned threshold) and int32
biases, run by both the training path and Brevitas' export path."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ._kernels import _check_bits, _int_range, _LsqFakeQuant, _RoundSte


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
