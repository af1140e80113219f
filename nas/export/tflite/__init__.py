"""`m2nas export --tflite`: the program of model.c as an int8 `model.tflite` for TensorFlow Lite Micro.

    from nas.export.tflite import write_tflite
    info = write_tflite(prog, "out/model.tflite")

`lower` maps the integer program to TFLite operators, `flatbuffer` serialises it (the `tflite`
bindings, no TensorFlow), `check` runs it in TFLite Micro's interpreter against the integer
reference and finds the arena it needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .lower import from_tflite_logits, lower_to_tflite, tflite_inputs

__all__ = ["from_tflite_logits", "lower_to_tflite", "tflite_inputs", "write_tflite"]


def write_tflite(prog, path: str | Path) -> dict[str, Any]:
    """Write `prog` (nas.export.c.emit.CProgram) as a TFLite flatbuffer; its size and operators."""
    model = lower_to_tflite(prog)
    data = model.to_bytes()
    Path(path).write_bytes(data)
    ops: dict[str, int] = {}
    for builtin, *_ in model.ops:
        ops[builtin] = ops.get(builtin, 0) + 1
    return {"path": str(path), "bytes": len(data), "ops": ops, "tensors": len(model.tensors)}
