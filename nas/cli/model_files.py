"""Read any model description a user may hand to `m2nas memory` into an OpGraph."""

from __future__ import annotations

import json
from pathlib import Path

from memory_models.errors import InputError
from memory_models.graph import FORMAT as GRAPH_FORMAT
from memory_models.graph import OpGraph


def load_graph(path: str | Path) -> OpGraph:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.suffix == ".onnx":
        from memory_models.onnx_import import graph_from_onnx

        return graph_from_onnx(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read ({e})") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    fmt = data.get("format") if isinstance(data, dict) else None
    if fmt == GRAPH_FORMAT:
        return OpGraph.from_dict(data, str(path))
    if fmt == "m2nas.arch":
        from search_spaces import Arch, graph

        return graph(Arch.from_dict(data, str(path)))
    raise InputError(
        f"{path}: format: expected 'm2nas.opgraph' or 'm2nas.arch' JSON (or an .onnx file), got {fmt!r}"
    )
