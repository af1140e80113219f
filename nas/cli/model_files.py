"""Read any model description a user may hand to `m2nas memory` into an OpGraph."""

from __future__ import annotations

from pathlib import Path

from memory_models.errors import DOCUMENT_ERRORS, InputError, parse_json, read_user_text
from memory_models.graph import FORMAT as GRAPH_FORMAT
from memory_models.graph import OpGraph


def load_graph(path: str | Path) -> OpGraph:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.suffix == ".onnx":
        from memory_models.onnx_import import graph_from_onnx

        return graph_from_onnx(path)
    if path.suffix == ".tflite":
        from memory_models.tflite_import import graph_from_tflite

        return graph_from_tflite(path)
    data = parse_json(read_user_text(path, "an OpGraph or Arch JSON file"), str(path))
    fmt = data.get("format") if isinstance(data, dict) else None
    try:
        if fmt == GRAPH_FORMAT:
            return OpGraph.from_dict(data, str(path))
        if fmt == "m2nas.arch":
            from search_spaces import Arch, graph

            return graph(Arch.from_dict(data, str(path)))
    except InputError:
        raise
    except DOCUMENT_ERRORS as e:
        raise InputError(f"{path}: not a valid {fmt} document ({type(e).__name__}: {e})") from None
    raise InputError(
        f"{path}: format: expected 'm2nas.opgraph' or 'm2nas.arch' JSON (or an .onnx / .tflite file), got {fmt!r}"
    )
