"""Quantized building blocks for the m2nas search space (Brevitas, quantization-aware training).

Every candidate network is built from the factories of this package, so that *all* quantizer
choices live here. One concern per private module, re-exported here: `_kernels` (autograd
fake-quantization), `_tensor_quant` (the arithmetic injected into Brevitas), `_injectors` (the
Brevitas quantizer configs), `_qtensor` (tensors that carry their scale), `_layers`, `_factories`
and `_inspect` (integer parameters for code generation). The layers are Brevitas layers (thin subclasses of ``QuantConv1d``,
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

from brevitas import config as brevitas_config

# Brevitas re-instantiates every quantizer's ``tensor_quant`` when a state dict is loaded (to
# recompute statistics-initialised scales). The quantizers here have nothing to recompute (live
# weight statistics, plain parameters / buffers), and re-instantiation would detach the learned
# thresholds from an optimizer built before ``load_state_dict`` (resuming from a checkpoint) and
# leave them on the CPU for a model on an accelerator. This project uses Brevitas only here.
brevitas_config.REINIT_ON_STATE_DICT_LOAD = False

from ._factories import (  # noqa: E402
    GlobalAvgPool,
    QuantAdd,
    QuantCat,
    QuantMul,
    qconv,
    qglobal_avgpool,
    qidentity,
    qinput,
    qlinear,
    qoutput,
    qrelu,
    qrequant,
    qsigmoid,
)
from ._inspect import act_tensor_quant, int32_bias, quant_params, threshold_parameters  # noqa: E402
from ._kernels import ACT_BITS, OBSERVE_STEPS, WEIGHT_BITS, _LsqFakeQuant, _RoundSte  # noqa: E402, F401
from ._layers import QConv1d, QConv2d, QIdentity, QLinear, QReLU, QSigmoid  # noqa: E402
from ._qtensor import QTensor, value  # noqa: E402
from ._tensor_quant import ActPerTensorQuant, Int32BiasQuant, WeightPerChannelQuant  # noqa: E402

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
    "QTensor",
    "value",
    "quant_params",
    "int32_bias",
    "act_tensor_quant",
    "threshold_parameters",
    "ActPerTensorQuant",
    "Int32BiasQuant",
    "WeightPerChannelQuant",
    "QConv1d",
    "QConv2d",
    "QLinear",
    "QReLU",
    "QIdentity",
    "QSigmoid",
]
