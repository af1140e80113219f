"""OpGraph: the operator graph every memory figure is computed from.

It is deliberately framework-free (no torch, no onnx): the search space produces it analytically from
an `Arch`, the ONNX importer produces it from a model file, and users may write it by hand. Shapes are
per sample (no batch axis): (C, L) for signals, (C, H, W) for images, (F,) for vectors.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError, check_document, parse_json
from .ops import GroupOp

FORMAT = "m2nas.opgraph"
VERSION = 1
_DOCUMENT_KEYS = {"format", "version", "name", "tensors", "ops", "inputs", "outputs", "meta", "state"}


def _int(v: Any) -> bool:
    """An integer and not a bool (JSON true is no size)."""
    return isinstance(v, int) and not isinstance(v, bool)


QUANT_GRANULARITIES = ("per_channel", "per_tensor")


@dataclass(slots=True)
class Tensor:
    """A value object (treat as immutable). `numel` and the packed `nbytes` are computed once, here,
    because the memory model reads them thousands of times per second."""

    name: str
    shape: tuple[int, ...]
    bits: int = 8
    numel: int = field(init=False, repr=False, compare=False)
    nbytes: int = field(init=False, repr=False, compare=False)  # packed: sub-byte elements share bytes

    def __post_init__(self) -> None:
        try:
            self.numel = math.prod(self.shape)
            self.nbytes = (self.numel * self.bits + 7) // 8
        except TypeError:  # malformed shape or bits; validate() reports it
            self.numel = self.nbytes = 0


@dataclass(slots=True)
class Op:
    name: str
    kind: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    weights: int = 0
    weight_bits: int = 8
    bias: int = 0
    quant: str = "per_channel"
    # Number of weight scales: output channels for per-channel quantization, 1 for per-tensor.
    scales: int = 0
    macs: int = 0
    attrs: dict[str, Any] = field(default_factory=dict)
    # Kernel scratch (im2col and the like) if the producer of the graph knows it; otherwise the
    # memory model derives it from the device's runtime.
    scratch_bytes: int | None = None

    @property
    def weight_bytes(self) -> int:
        return (self.weights * self.weight_bits + 7) // 8


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _check_attrs(op: Op, tensors: dict[str, Tensor], where: str) -> None:
    """The attributes the memory model computes with (the im2col scratch of a convolution reads the
    kernel size and the groups): a string kernel or zero groups would otherwise fail as a Python
    comparison or a division deep in the analysis. Other attributes are carried, not read."""
    if not isinstance(op.attrs, dict):
        raise InputError(f"{where}.attrs: expected an object of attributes")
    k = op.attrs.get("kernel", 1)
    if not (_positive_int(k) or (isinstance(k, list | tuple) and k and all(_positive_int(d) for d in k))):
        raise InputError(f"{where}.attrs.kernel: must be a positive integer or a list of them, got {k!r}")
    g = op.attrs.get("groups", 1)
    if not _positive_int(g):
        raise InputError(f"{where}.attrs.groups: must be a positive integer, got {g!r}")
    cin = tensors[op.inputs[0]].shape[0] if op.inputs and op.inputs[0] in tensors else g
    if isinstance(cin, int) and cin % g:
        raise InputError(f"{where}.attrs.groups: {g} does not divide the {cin} input channels")


@dataclass(slots=True)
class OpGraph:
    """Ops in a valid execution order (the "naive" order), tensors by name, graph inputs and outputs."""

    tensors: dict[str, Tensor]
    ops: list[Op]
    inputs: list[str]
    outputs: list[str]
    name: str = "graph"
    # Which modality feeds which graph input; carried for reports, not used by the analysis.
    meta: dict[str, Any] = field(default_factory=dict)
    # Persistent state (TFLite's variable tensors: an RNN's or SVDF's memory): graph inputs whose bytes
    # live for the whole inference and across inferences, so the planner never reuses them.
    state: list[str] = field(default_factory=list)

    # ---- derived figures ---------------------------------------------------------------------
    @property
    def params(self) -> int:
        return sum(op.weights + op.bias for op in self.ops)

    @property
    def macs(self) -> int:
        return sum(op.macs for op in self.ops)

    # ---- validation --------------------------------------------------------------------------
    def validate(self, source: str = "graph") -> OpGraph:
        """Check the graph is well formed; raise InputError naming the field otherwise."""
        seen_tensors = set()
        for name, tensor in self.tensors.items():
            where = f"{source}: tensors[{name!r}]"
            if name != tensor.name:
                raise InputError(f"{where}: name mismatch {tensor.name!r}")
            if not tensor.shape or any(not _int(d) or d <= 0 for d in tensor.shape):
                raise InputError(
                    f"{where}.shape: must be a non-empty list of positive integers, got {list(tensor.shape)}"
                )
            if not (_int(tensor.bits) and 1 <= tensor.bits <= 32):
                raise InputError(f"{where}.bits: must be an integer in 1..32, got {tensor.bits!r}")
            seen_tensors.add(name)
        for i, name in enumerate(self.inputs):
            if name not in self.tensors:
                raise InputError(f"{source}: inputs[{i}]: unknown tensor {name!r}")
        available = set(self.inputs)
        producers: dict[str, str] = {}
        op_names = set()
        for i, op in enumerate(self.ops):
            where = f"{source}: ops[{i}] ({op.name})"
            if op.name in op_names:
                raise InputError(f"{where}.name: duplicate op name")
            op_names.add(op.name)
            if op.kind not in GroupOp.ALL:
                raise InputError(
                    f"{where}.kind: unknown op kind {op.kind!r} (known: {', '.join(sorted(GroupOp.ALL))})"
                )
            if not op.inputs:
                raise InputError(f"{where}.inputs: an op needs at least one input")
            if not op.outputs:
                raise InputError(f"{where}.outputs: an op needs at least one output")
            for j, name in enumerate(op.inputs):
                if name not in self.tensors:
                    raise InputError(f"{where}.inputs[{j}]: unknown tensor {name!r}")
                if name not in available:
                    raise InputError(
                        f"{where}.inputs[{j}]: tensor {name!r} is used before it is produced (ops must be listed in an executable order)"
                    )
            for j, name in enumerate(op.outputs):
                if name not in self.tensors:
                    raise InputError(f"{where}.outputs[{j}]: unknown tensor {name!r}")
                if name in producers or name in self.inputs:
                    raise InputError(f"{where}.outputs[{j}]: tensor {name!r} is produced twice")
                producers[name] = op.name
                available.add(name)
            for key in ("weights", "bias", "scales", "macs"):
                value = getattr(op, key)
                if not _int(value) or value < 0:
                    raise InputError(f"{where}.{key}: must be a non-negative integer, got {value!r}")
            if op.weights and not (_int(op.weight_bits) and 1 <= op.weight_bits <= 32):
                raise InputError(f"{where}.weight_bits: must be an integer in 1..32, got {op.weight_bits!r}")
            if op.quant not in QUANT_GRANULARITIES:
                raise InputError(f"{where}.quant: must be one of {QUANT_GRANULARITIES}, got {op.quant!r}")
            if op.scratch_bytes is not None and (not _int(op.scratch_bytes) or op.scratch_bytes < 0):
                raise InputError(f"{where}.scratch_bytes: must be a non-negative integer or absent")
            _check_attrs(op, self.tensors, where)
            if op.kind in GroupOp.WEIGHTED and op.weights == 0:
                raise InputError(f"{where}.weights: a {op.kind} op must have weights")
            if op.kind in GroupOp.ALIAS:
                src, dst = self.tensors[op.inputs[0]], self.tensors[op.outputs[0]]
                if (
                    len(op.inputs) != 1
                    or len(op.outputs) != 1
                    or src.numel != dst.numel
                    or src.bits != dst.bits
                ):
                    raise InputError(
                        f"{where}: a {op.kind} must map one tensor to one of the same size and bits"
                    )
        for i, name in enumerate(self.state):
            if name not in self.inputs:
                raise InputError(f"{source}: state[{i}]: {name!r} is not a graph input")
        read = {name for op in self.ops for name in op.inputs}
        for i, name in enumerate(self.inputs):
            if name not in read:
                raise InputError(f"{source}: inputs[{i}]: graph input {name!r} is not read by any op")
        if not self.outputs:
            raise InputError(f"{source}: outputs: a graph needs at least one output")
        for i, name in enumerate(self.outputs):
            if name not in available:
                raise InputError(f"{source}: outputs[{i}]: tensor {name!r} is never produced")
        return self

    # ---- JSON --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        ops = []
        for op in self.ops:
            d: dict[str, Any] = {
                "name": op.name,
                "kind": op.kind,
                "inputs": list(op.inputs),
                "outputs": list(op.outputs),
            }
            if op.weights:
                d.update(weights=op.weights, weight_bits=op.weight_bits, quant=op.quant, scales=op.scales)
            if op.bias:
                d["bias"] = op.bias
            if op.macs:
                d["macs"] = op.macs
            if op.attrs:
                d["attrs"] = op.attrs
            if op.scratch_bytes is not None:
                d["scratch_bytes"] = op.scratch_bytes
            ops.append(d)
        out = {
            "format": FORMAT,
            "version": VERSION,
            "name": self.name,
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "tensors": [
                {"name": t.name, "shape": list(t.shape), "bits": t.bits} for t in self.tensors.values()
            ],
            "ops": ops,
        }
        if self.meta:
            out["meta"] = self.meta
        if self.state:
            out["state"] = list(self.state)
        return out

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d: Any, source: str = "graph") -> OpGraph:
        check_document(d, source, FORMAT, VERSION, "OpGraph")
        extra = sorted(set(d) - _DOCUMENT_KEYS)
        if extra:
            raise InputError(f"{source}: unknown field {extra[0]!r}")
        for key in ("tensors", "ops", "inputs", "outputs"):
            if not isinstance(d.get(key), list):
                raise InputError(f"{source}: {key}: missing or not a list")
        for key in ("inputs", "outputs"):
            if not all(isinstance(x, str) for x in d[key]):
                raise InputError(f"{source}: {key}: expected a list of tensor names")
        if not isinstance(d.get("meta", {}), dict):
            raise InputError(f"{source}: meta: expected an object")
        if not isinstance(d.get("name", "graph"), str):
            raise InputError(f"{source}: name: expected a string")
        tensors: dict[str, Tensor] = {}
        for i, t in enumerate(d["tensors"]):
            where = f"{source}: tensors[{i}]"
            if not isinstance(t, dict) or not isinstance(t.get("name"), str):
                raise InputError(f"{where}.name: missing or not a string")
            shape = t.get("shape")
            if not isinstance(shape, list):
                raise InputError(f"{where}.shape: missing or not a list")
            extra = sorted(set(t) - {"name", "shape", "bits"})
            if extra:
                raise InputError(f"{where}: unknown field {extra[0]!r}")
            if t["name"] in tensors:
                raise InputError(f"{where}.name: duplicate tensor {t['name']!r}")
            tensors[t["name"]] = Tensor(t["name"], tuple(shape), t.get("bits", 8))
        ops = []
        known = {f for f in Op.__slots__}
        for i, o in enumerate(d["ops"]):
            where = f"{source}: ops[{i}]"
            if not isinstance(o, dict):
                raise InputError(f"{where}: expected an object")
            extra = set(o) - known
            if extra:
                raise InputError(f"{where}: unknown field {sorted(extra)[0]!r}")
            for key in ("name", "kind"):
                if not isinstance(o.get(key), str):
                    raise InputError(f"{where}.{key}: missing or not a string")
            for key in ("inputs", "outputs"):
                if not isinstance(o.get(key), list) or not all(isinstance(x, str) for x in o[key]):
                    raise InputError(f"{where}.{key}: missing or not a list of tensor names")
            if not isinstance(o.get("attrs", {}), dict):
                raise InputError(f"{where}.attrs: expected an object of attributes")
            ops.append(
                Op(
                    name=o["name"],
                    kind=o["kind"],
                    inputs=tuple(o["inputs"]),
                    outputs=tuple(o["outputs"]),
                    weights=o.get("weights", 0),
                    weight_bits=o.get("weight_bits", 8),
                    bias=o.get("bias", 0),
                    quant=o.get("quant", "per_channel"),
                    scales=o.get("scales", 0),
                    macs=o.get("macs", 0),
                    attrs=dict(o.get("attrs", {})),
                    scratch_bytes=o.get("scratch_bytes"),
                )
            )
        graph = cls(
            tensors,
            ops,
            list(d["inputs"]),
            list(d["outputs"]),
            d.get("name", "graph"),
            dict(d.get("meta", {})),
            list(d.get("state", [])),
        )
        return graph.validate(source)

    @classmethod
    def from_json(cls, text: str, source: str = "graph") -> OpGraph:
        return cls.from_dict(parse_json(text, source), source)

    @classmethod
    def load(cls, path: str | Path) -> OpGraph:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as e:
            raise InputError(f"{path}: cannot read ({e.strerror})") from None
        return cls.from_json(text, str(path))
