"""Brevitas layers with a direct training path (the same arithmetic, without `QuantTensor`) and
`QTensor` inputs / outputs; eval mode runs the stock Brevitas forward."""

from __future__ import annotations

from brevitas import nn as qnn
from brevitas.quant_tensor import IntQuantTensor, QuantTensor

from ._qtensor import QTensor, _flag, _plain


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
