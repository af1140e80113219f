"""Reading a built model's integer parameters back (the C code generator, the exporter's checks)
and the learned thresholds (optimiser set-up)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._layers import _WeightLayer
from ._tensor_quant import ActPerTensorQuant


def act_tensor_quant(module: nn.Module, which: str = "act_quant") -> ActPerTensorQuant | None:
    """The activation `tensor_quant` of a layer built here (its threshold, bits and sign), or None."""
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
            tq = act_tensor_quant(target) if target is not None else None
            if tq is not None:
                out = {"scale": tq.threshold().detach() / tq.qmax, "bits": tq.bits, "signed": tq.signed}
                itq = act_tensor_quant(target, "input_quant")
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
