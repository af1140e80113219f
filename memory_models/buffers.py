"""Turn an OpGraph into the index form the scheduler, planner, flash and cost models work on.

A *buffer* is a region of the tensor arena: one per produced tensor, except that views (flatten,
reshape) share their source's buffer, plus one scratch buffer per op whose kernel needs one. Sizes are
packed (sub-byte elements share bytes) and rounded up to the runtime's tensor alignment, so every
offset the planner hands out is aligned too.

Everything per op is gathered in this one pass: the memory model must analyse thousands of graphs a
second in plain Python, and each extra walk over the ops costs as much as the arithmetic itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from .devices import Device
from .graph import OpGraph
from .latency import coefficient, graph_op_terms, inference_terms
from .ops import GroupOp

# Requantization (multiplier, shift) pairs: per output channel (or tensor) for weighted ops, one per
# input for joins, one for ops that change the scale, none for ops that keep it.
_ONE_PAIR = GroupOp.RESCALE
_PAIR_PER_INPUT = GroupOp.JOIN
_IM2COL_KINDS = GroupOp.IM2COL


@dataclass(slots=True)
class Buffers:
    names: list[str]
    size: list[int]
    producer: list[int]  # op index; -1 for a graph input
    consumers: list[list[int]]  # op indices that read the buffer
    pinned: list[bool]  # graph outputs stay live to the end
    is_scratch: list[bool]
    op_in: list[list[int]]  # buffers each op reads
    op_new: list[list[int]]  # buffers each op creates (outputs and scratch)
    op_preds: list[list[int]]  # ops each op depends on (through any tensor, views included)
    inputs: list[int]
    tensor_info: dict[str, tuple[int, int, int, int]]  # name -> (buffer, producer, bytes, bits)
    alignment: int
    op_is_view: list[bool]
    # Totals for the cost model: compute cycles (MACs at the rate of each op's narrowest operand, or
    # elements for ops without MACs, plus the runtime's per-op overhead), constant bytes read (weights,
    # biases, requantization pairs) and activation bytes read and written.
    compute_cycles: float
    const_bytes: int
    act_bytes: int
    # Totals for the flash model and the per-layer formula.
    weight_bytes: int
    bias_bytes: int
    requant_pairs: int
    kernel_kinds: frozenset[str]
    per_layer_peak_bytes: int
    # The kernels' bit-width variants a graph needs (`kind@weight_bits` of every weighted op), the
    # runtime's per-op code (calls, descriptors) and lookup tables (sigmoid), for the flash model.
    weighted_bits: frozenset[str] = frozenset()
    op_code_bytes: int = 0
    lut_bytes: int = 0
    # Instructions of the runtime's kernels from its measured cost table (None without one).
    instructions: float | None = None

    @property
    def n_ops(self) -> int:
        return len(self.op_in)

    @property
    def tensor_buffer(self) -> dict[str, int]:
        """Which buffer holds each tensor (views share their source's)."""
        return {name: v[0] for name, v in self.tensor_info.items()}


def align(n: int, alignment: int) -> int:
    return -(-n // alignment) * alignment


def compile_buffers(graph: OpGraph, device: Device) -> Buffers:
    runtime = device.runtime
    a = runtime.tensor_alignment
    im2col_cols = runtime.im2col_columns
    im2col_bytes = runtime.im2col_element_bytes
    pair_bytes = runtime.requant_param_bytes
    code_per_op, code_per_input = runtime.op_code_bytes, runtime.op_input_code_bytes
    code_default = runtime.op_table_bytes
    lut = runtime.sigmoid_lut_bytes
    tensors = graph.tensors
    names: list[str] = []
    size: list[int] = []
    producer: list[int] = []
    consumers: list[list[int]] = []
    is_scratch: list[bool] = []
    # tensor name -> (buffer, producing op or -1, packed bytes, bits): one lookup per read
    info: dict[str, tuple[int, int, int, int]] = {}
    alias_kinds, weighted_kinds, pool_kinds = GroupOp.ALIAS, GroupOp.WEIGHTED, GroupOp.POOL

    inputs = []
    for name in graph.inputs:
        t = tensors[name]
        info[name] = (len(names), -1, t.nbytes, t.bits)
        inputs.append(len(names))
        names.append(name)
        size.append(-(-t.nbytes // a) * a)
        producer.append(-1)
        consumers.append([])
        is_scratch.append(False)

    cost = runtime.cost.instructions if runtime.cost is not None else None
    instr = 0.0
    if cost is not None:
        instr = sum(
            coefficient(cost, n) * v for n, v in inference_terms(sum(tensors[x].numel for x in graph.inputs))
        )
    rates = {b: device.macs_rate(b) for b in (2, 4, 8, 16, 32)}
    elementwise = device.elementwise_per_cycle
    overhead = runtime.op_overhead_cycles
    op_in, op_new, op_preds, op_view = [], [], [], []
    weight_bytes = bias_bytes = total_pairs = per_layer = const_bytes = act_bytes = 0
    cycles = 0.0
    kinds = set()
    wkinds = set()
    op_code = lut_bytes = 0
    for i, op in enumerate(graph.ops):
        kind = op.kind
        ins: list[int] = []
        preds: list[int] = []
        in_bytes = 0
        in_bits = 64
        for name in op.inputs:
            b, p, nb, bits = info[name]
            if b not in ins:
                ins.append(b)
                consumers[b].append(i)
                in_bytes += nb
                if bits < in_bits:
                    in_bits = bits
            if p >= 0 and p not in preds:
                preds.append(p)
        new: list[int] = []
        outs = op.outputs
        if kind in alias_kinds:
            if cost is not None:
                instr += coefficient(cost, "op:view")
            src = info[op.inputs[0]]
            info[outs[0]] = (src[0], i, src[2], src[3])
            op_view.append(True)
        else:
            kinds.add(kind)
            op_code += code_per_op.get(kind, code_default)
            if code_per_input and kind in code_per_input:
                op_code += code_per_input[kind] * len(op.inputs)
            out_bytes = 0
            for name in outs:
                t = tensors[name]
                nb = t.nbytes
                out_bytes += nb
                b = len(names)
                info[name] = (b, i, nb, t.bits)
                new.append(b)
                names.append(name)
                size.append(-(-nb // a) * a)
                producer.append(i)
                consumers.append([])
                is_scratch.append(False)
            # Kernel scratch: the producer's figure wins; otherwise im2col for spatial convolutions.
            s = op.scratch_bytes
            if s is None:
                s = 0
                if im2col_cols and kind in _IM2COL_KINDS:
                    k = op.attrs.get("kernel", 1)
                    if k.__class__ is not int:
                        kk = 1
                        for d in k:
                            kk *= d
                        k = kk
                    if k > 1:
                        cin = tensors[op.inputs[0]].shape[0] // op.attrs.get("groups", 1)
                        s = im2col_cols * cin * k * im2col_bytes
            if s:
                new.append(len(names))
                names.append(f"{op.name}.scratch")
                size.append(-(-s // a) * a)
                producer.append(i)
                consumers.append([])
                is_scratch.append(True)
            if in_bytes + out_bytes > per_layer:
                per_layer = in_bytes + out_bytes
            bias = op.bias
            if kind in weighted_kinds:
                wbits = op.weight_bits
                wb = (op.weights * wbits + 7) // 8
                pairs = op.scales or (tensors[outs[0]].shape[0] if op.quant == "per_channel" else 1)
                if wbits < in_bits:
                    in_bits = wbits
                wkinds.add(f"{kind}@{wbits}")
                if lut and op.attrs.get("activation") == "sigmoid":
                    lut_bytes += lut
            else:
                wb = (op.weights * op.weight_bits + 7) // 8 if op.weights else 0
                pairs = len(op.inputs) if kind in _PAIR_PER_INPUT else (1 if kind in _ONE_PAIR else 0)
            macs = op.macs
            if macs:
                cycles += (
                    macs / (rates[in_bits] if in_bits in rates else device.macs_rate(in_bits)) + overhead
                )
            else:
                elements = tensors[op.inputs[0]].numel if kind in pool_kinds else tensors[outs[0]].numel
                cycles += elements / elementwise + overhead
            if cost is not None:
                for n, v in graph_op_terms(op, tensors):
                    instr += coefficient(cost, n) * v
            weight_bytes += wb
            bias_bytes += 4 * bias
            total_pairs += pairs
            const_bytes += wb + 4 * bias + pairs * pair_bytes
            act_bytes += in_bytes + out_bytes
            op_view.append(False)
        op_in.append(ins)
        op_new.append(new)
        op_preds.append(preds)

    pinned = [False] * len(names)
    for name in (*graph.outputs, *graph.state):  # state lives from step 0 (an input) to the end
        pinned[info[name][0]] = True
    return Buffers(
        names=names,
        size=size,
        producer=producer,
        consumers=consumers,
        pinned=pinned,
        is_scratch=is_scratch,
        op_in=op_in,
        op_new=op_new,
        op_preds=op_preds,
        inputs=inputs,
        tensor_info=info,
        alignment=a,
        op_is_view=op_view,
        compute_cycles=cycles,
        const_bytes=const_bytes,
        act_bytes=act_bytes,
        weight_bytes=weight_bytes,
        bias_bytes=bias_bytes,
        requant_pairs=total_pairs,
        kernel_kinds=frozenset(kinds),
        instructions=instr if cost is not None else None,
        per_layer_peak_bytes=per_layer,
        weighted_bits=frozenset(wkinds),
        op_code_bytes=op_code,
        lut_bytes=lut_bytes,
    )


def lifetimes(bufs: Buffers, order: list[int]) -> tuple[list[int], list[int]]:
    """First and last schedule step at which each buffer must hold its bytes.

    Graph inputs are live from step 0, outputs to the last step; a buffer nobody reads (scratch, or
    an unused output) lives only during the op that writes it.
    """
    n = len(order)
    step = [0] * len(order)
    for s, op in enumerate(order):
        step[op] = s
    first, last = [], []
    pinned = bufs.pinned
    for b, prod in enumerate(bufs.producer):
        f = 0 if prod < 0 else step[prod]
        if pinned[b]:
            e = n - 1
        else:
            e = f
            for c in bufs.consumers[b]:
                if step[c] > e:
                    e = step[c]
        first.append(f)
        last.append(e)
    return first, last
