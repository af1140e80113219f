"""Latency of the m2nas C kernels from instruction counts measured on an emulated core (issue 15).

A kernel's instruction count on a Cortex-M is close to linear in a few quantities of its op: MACs
(the dot products), column elements (building an im2col column or gathering a pointwise column:
MACs / output channels), positions and channels (the loops' set-up), output elements (requantize and
store) and a fixed cost per call. What
changes the coefficient of a term is what selects another code path in the kernels: the op's class,
its weight and input bit-widths, the row length (sub-byte rows up to LANES_COLUMN run against a column
widened once into 16-bit lanes, whatever their alignment; longer ones need byte-aligned rows for the
register-unpacked dot products). `op_terms` names the terms of one op; a device file's `[runtime.cost]` gives
each term's instructions, fitted by ``tests/bench/test_bench_latency.py`` to the counts of QEMU's
``-icount`` on the core the device has, and the cycles-per-instruction assumption that turns
instructions into time (stated there; QEMU counts instructions, not cycles).

A term the file does not list falls back to its prefix (``mac:conv:w4:xlow`` -> ``mac:conv:w4`` ->
``mac:conv`` -> ``mac``); the bare prefixes are required, so every op gets a figure.
"""

from __future__ import annotations

from collections.abc import Mapping

from .ops import GroupOp, OpKind

# Code paths of the C kernels: dense convolutions (im2col), depthwise, pointwise / linear.
_CLASS = {
    OpKind.CONV1D.value: "conv",
    OpKind.CONV2D.value: "conv",
    OpKind.DEPTHWISE_CONV1D.value: "dw",
    OpKind.DEPTHWISE_CONV2D.value: "dw",
    OpKind.POINTWISE_CONV1D.value: "pw",
    OpKind.POINTWISE_CONV2D.value: "pw",
    OpKind.LINEAR.value: "pw",
}
_POOL_CLASS = {
    OpKind.MAXPOOL1D.value: "maxpool",
    OpKind.MAXPOOL2D.value: "maxpool",
    OpKind.GLOBAL_MAXPOOL.value: "maxpool",
    OpKind.AVGPOOL1D.value: "avgpool",
    OpKind.AVGPOOL2D.value: "avgpool",
    OpKind.GLOBAL_AVGPOOL.value: "avgpool",
}
PW_COLUMN = 64  # M2_PW_CHUNK of the C kernels: a pointwise column gathered once per position up to this
# Rows up to this long take the widened-column kernels (m2_mvlow; m2_pw8_pair, m2_lin8 for byte rows
# of a pointwise / linear layer): M2_MV_K of an im2col convolution, M2_PW_LANES of a pointwise one.
LANES_COLUMN = {"conv": 160, "pw": 64}
# Every prefix a term can fall back to; a `[runtime.cost]` table must give each.
PREFIXES = ("mac", "col", "pos", "chan", "out", "el", "op", "inference")


def _b(bits: int) -> str:
    return "8" if bits >= 8 else "low"


def op_terms(
    kind: str,
    macs: int,
    weights: int,
    weight_bits: int,
    in_bits: int,
    out_bits: int,
    in_elements: int,
    out_elements: int,
    out_channels: int,
    n_inputs: int,
) -> list[tuple[str, float]]:
    """(term, quantity) pairs of one op; `in_bits` is the narrowest input's width."""
    if kind in GroupOp.ALIAS:
        return [("op:view", 1.0)]
    cls = _CLASS.get(kind)
    if cls is not None:
        x = "x8" if in_bits >= 8 else "xlow"
        path = ""
        positions = out_elements / out_channels if out_channels else 1.0
        row = weights // out_channels if out_channels else 0  # K: inputs per output channel
        if cls != "dw" and weight_bits < 8 and row <= LANES_COLUMN[cls]:
            path = ":lanes"  # sub-byte rows against a column widened once into 16-bit lanes
        elif weight_bits == 8 and (
            (cls == "pw" and row % 4 == 0 and row <= LANES_COLUMN[cls])
            or (cls == "conv" and row <= LANES_COLUMN[cls])
        ):
            path = (
                ":lanes"  # byte rows: the same, two positions (pointwise) / four rows (linear, im2col) a pass
            )
        elif cls != "dw" and weight_bits < 8 and (row * weight_bits) % 8:
            path = ":odd"  # rows not byte-aligned: the generic per-element loop
        elif cls == "pw" and row > PW_COLUMN and (positions > 1 or in_bits < 8):
            path = ":chunked"  # the column does not fit the stack buffer: re-read per four channels
        lanes = ":lanes" if path == ":lanes" else ""  # its column and outputs cost differently too
        terms = [(f"mac:{cls}:w{weight_bits}:{x}{path}", float(macs))]
        if cls == "dw":
            # once per channel: the filter unpacked, the loops set up
            terms.append(("chan:dw", float(out_channels)))
        elif out_channels:
            terms.append((f"col:{cls}:{x}{lanes}", macs / out_channels))
            terms.append((f"pos:{cls}", positions))  # once per position: a column, the channel loop
        terms.append((f"out:{cls}:y{_b(out_bits)}{lanes}", float(out_elements)))
        terms.append((f"op:{cls}", 1.0))
        return terms
    pool = _POOL_CLASS.get(kind)
    if pool is not None:
        return [
            (f"el:{pool}:{_b(in_bits)}", float(in_elements)),
            (f"out:{pool}:y{_b(out_bits)}", float(out_elements)),
            (f"chan:{pool}", float(out_channels)),
            (f"op:{pool}", 1.0),
        ]
    if kind in (OpKind.ADD.value, OpKind.MUL.value):
        return [(f"el:{kind}:{_b(in_bits)}", float(out_elements * n_inputs)), (f"op:{kind}", 1.0)]
    if kind == OpKind.CONCAT.value:
        return [(f"el:concat:{_b(in_bits)}", float(out_elements)), ("op:concat", float(n_inputs))]
    return [(f"el:{kind}", float(out_elements)), (f"op:{kind}", 1.0)]


def graph_op_terms(op, tensors) -> list[tuple[str, float]]:
    """`op_terms` of an OpGraph op (`tensors`: the graph's)."""
    out = tensors[op.outputs[0]]
    ins = [tensors[n] for n in op.inputs]
    return op_terms(
        op.kind,
        op.macs,
        op.weights,
        op.weight_bits,
        min(t.bits for t in ins),
        out.bits,
        ins[0].numel,
        out.numel,
        out.shape[0] if out.shape else 1,
        len(op.inputs),
    )


def graph_terms(graph) -> list[tuple[str, float]]:
    """Every term of a graph: its ops' and the per-inference ones."""
    terms = inference_terms(sum(graph.tensors[x].numel for x in graph.inputs))
    for op in graph.ops:
        terms += graph_op_terms(op, graph.tensors)
    return terms


def inference_terms(input_elements: int) -> list[tuple[str, float]]:
    """Per inference: loading the inputs into the arena, the call and the read-out."""
    return [("el:load", float(input_elements)), ("inference", 1.0)]


def coefficient(table: Mapping[str, float], term: str) -> float:
    """The term's instructions, or its nearest listed prefix's."""
    while term not in table:
        cut = term.rfind(":")
        if cut < 0:
            raise KeyError(term)
        term = term[:cut]
    return table[term]


def instructions(table: Mapping[str, float], terms) -> float:
    return sum(coefficient(table, name) * value for name, value in terms)
