"""QCDQ ONNX (QuantizeLinear / Clip / DequantizeLinear around float ops): what any ONNX runtime runs.

Exported with the TorchScript exporter (`dynamo=False`): Brevitas' dynamo QCDQ exporter refuses the
model's int32 biases. The batch axis is dynamic, so one file serves any batch size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def export_qcdq(model, path: Path, example: list[np.ndarray]) -> None:
    import torch
    from brevitas.export import export_onnx_qcdq

    from search_spaces.builder import Positional

    names = list(model.modalities)
    axes = {n: {0: "batch"} for n in [*names, "logits"]}
    export_onnx_qcdq(
        Positional(model).eval(),
        args=tuple(torch.from_numpy(a) for a in example),
        export_path=str(path),
        input_names=names,
        output_names=["logits"],
        dynamic_axes=axes,
        dynamo=False,
    )
