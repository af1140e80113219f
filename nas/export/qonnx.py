"""QONNX (`Quant` nodes): the same model for FINN and other QONNX tools, cleaned up with qonnx."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np


def export_qonnx_file(model, path: Path, example: list[np.ndarray]) -> None:
    """QONNX export at batch size 1 (what FINN expects), cleaned up with qonnx; inputs keep the modality
    names and the output is `logits`."""
    import torch
    from brevitas.export import export_qonnx
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    from search_spaces.builder import Positional

    names = list(model.modalities)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        export_qonnx(
            Positional(model).eval(),
            args=tuple(torch.from_numpy(a[:1]) for a in example),
            export_path=str(raw),
            input_names=names,
            output_names=["logits"],
            dynamo=False,
        )
        mw = cleanup_model(ModelWrapper(str(raw)))
    for inp, name in zip(list(mw.graph.input), names):
        if inp.name != name:
            mw.rename_tensor(inp.name, name)
    if mw.graph.output[0].name != "logits":
        mw.rename_tensor(mw.graph.output[0].name, "logits")
    mw.save(str(path))
