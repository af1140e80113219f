"""What TensorFlow Lite Micro's interpreter needs for an OpGraph: its planned buffers and its
persistent part, so `m2nas memory` can say "TFLM needs X, m2nas-c needs Y" for one model.

TFLM splits one arena in two (its MicroAllocator):

* the **head**, non-persistent: every activation tensor (graph inputs and outputs included; views
  are copies, as its RESHAPE kernel copies) and every kernel scratch buffer, placed by its
  GreedyMemoryPlanner. Lifetimes are op scopes in the model's own order (TFLM never reorders):
  graph inputs are created at scope 0, op k's outputs at scope k + 1, a tensor is last used at the
  scope of its last reader, graph outputs at the last scope. Sizes are rounded up to 16 bytes. The
  planner sorts buffers by size, largest first, with a stable sort over a list it filled from the
  *last* buffer to the first, so ties go to the higher tensor index; each buffer takes the lowest
  offset where it fits between buffers whose lifetimes overlap its own (first fit). While it plans,
  the head must also hold the planner's own tables (one AllocationInfo per tensor and scratch
  buffer, 40 bytes per planned buffer), so a model with small activations needs more head than
  its plan.
* the **tail**, persistent: the allocator objects themselves; one TfLiteEvalTensor per tensor of
  the model (constants included); one NodeAndRegistration per op; each op's parsed options and its
  kernel's user data (OpData structs), plus per-channel requantization multipliers and shifts (two
  int32 per output channel) for per-channel convolutions and dense layers; one full TfLiteTensor and
  its quantization record per graph input and output (the application's `input()` / `output()`);
  the handles of scratch buffers; variable tensors (persistent state).

The struct sizes depend on the build: `TflmSizes.host64()` is TFLM's Python interpreter (x86-64, the
RecordingMicroAllocator the `tflite-micro` package uses), calibrated on its `print_allocations()`
and checked by `tests/bench/test_bench_tflm.py`; `TflmSizes.cortex_m()` halves every pointer for a
32-bit MCU build and is an estimate from the same struct layouts.
"""

from __future__ import annotations

from dataclasses import dataclass

from .graph import OpGraph
from .ops import GroupOp, OpKind

ALIGN = 16  # TFLM's MicroArenaBufferAlignment()


def _up(n: int, a: int = ALIGN) -> int:
    return -(-n // a) * a


@dataclass(frozen=True, slots=True)
class TflmSizes:
    """Byte sizes of TFLM's records on one build (pointer width and allocator)."""

    name: str
    fixed: int  # allocator objects, builtin-data allocator, subgraph allocations
    eval_tensor: int  # TfLiteEvalTensor
    tflite_tensor: int  # TfLiteTensor (persistent, per graph input / output)
    quant_record: int  # TfLiteAffineQuantization + zero-point array header
    node: int  # NodeAndRegistration
    allocation_info: int  # planner-time AllocationInfo, per tensor and scratch buffer
    planner_per_buffer: int  # GreedyMemoryPlanner::per_buffer_size()
    scratch_handle: int
    # Kernel user data (OpData) and parsed builtin options per op kind, in bytes.
    op_data: tuple[tuple[str, int], ...]
    op_data_default: int

    @classmethod
    def host64(cls) -> TflmSizes:
        return cls(
            name="tflm-host64",
            fixed=512,
            eval_tensor=24,
            tflite_tensor=64,
            quant_record=32,
            node=64,
            allocation_info=32,
            planner_per_buffer=40,
            scratch_handle=8,
            op_data=_OP_DATA_64,
            op_data_default=48,
        )

    @classmethod
    def cortex_m(cls) -> TflmSizes:
        return cls(
            name="tflm-cortex-m",
            fixed=256,
            eval_tensor=12,
            tflite_tensor=48,
            quant_record=20,
            node=36,
            allocation_info=20,
            planner_per_buffer=40,
            scratch_handle=4,
            op_data=tuple((k, v - (v // 8)) for k, v in _OP_DATA_64),
            op_data_default=40,
        )

    def op_bytes(self, kind: str) -> int:
        return dict(self.op_data).get(kind, self.op_data_default)


# OpData + parsed options per kind, each allocation rounded up to 16 as TFLM's tail does
# (conv: OpDataConv 80 + TfLiteConvParams 28; fully connected: 72 + 16; pooling: 32 + 40; ...).
_OP_DATA_64 = (
    (OpKind.CONV2D.value, 80 + 32),
    (OpKind.POINTWISE_CONV2D.value, 80 + 32),
    (OpKind.CONV1D.value, 80 + 32),
    (OpKind.POINTWISE_CONV1D.value, 80 + 32),
    (OpKind.DEPTHWISE_CONV2D.value, 80 + 32),
    (OpKind.DEPTHWISE_CONV1D.value, 80 + 32),
    (OpKind.LINEAR.value, 80 + 16),
    (OpKind.MAXPOOL2D.value, 32 + 48),
    (OpKind.AVGPOOL2D.value, 32 + 48),
    (OpKind.MAXPOOL1D.value, 32 + 48),
    (OpKind.AVGPOOL1D.value, 32 + 48),
    (OpKind.GLOBAL_AVGPOOL.value, 48 + 16),
    (OpKind.GLOBAL_MAXPOOL.value, 48 + 16),
    (OpKind.ADD.value, 64 + 16),
    (OpKind.MUL.value, 48 + 16),
    (OpKind.CONCAT.value, 48 + 16),
    (OpKind.RESHAPE.value, 48),
    (OpKind.FLATTEN.value, 48),
    (OpKind.ACTIVATION.value, 64),
)


@dataclass(slots=True)
class TflmArena:
    """TFLM's arena for one graph: what its planner places (head) and what it keeps (tail)."""

    sizes: str
    planned_bytes: int  # the GreedyMemoryPlanner's plan
    planning_bytes: int  # head needed while planning (plan tables), when more than the plan
    head_bytes: int
    tail_bytes: int
    tail: dict[str, int]
    offsets: dict[str, int]

    @property
    def arena_bytes(self) -> int:
        """The smallest `arena_size` TFLM accepts for this graph (its head + tail)."""
        return self.head_bytes + self.tail_bytes

    def to_dict(self) -> dict:
        return {
            "runtime": "tflm",
            "sizes": self.sizes,
            "arena_bytes": self.arena_bytes,
            "head_bytes": self.head_bytes,
            "planned_bytes": self.planned_bytes,
            "tail_bytes": self.tail_bytes,
            "tail": dict(self.tail),
        }


def greedy_plan(sizes: list[int], first: list[int], last: list[int]) -> tuple[list[int], int]:
    """TFLM's GreedyMemoryPlanner: offsets for buffers given in the order they were added.

    Order: by size descending, ties to the buffer added later (TFLM fills its sort array from the
    end and bubble-sorts it stably). Each buffer goes to the first gap, in offset order, between
    already placed buffers whose lifetimes overlap its own."""
    n = len(sizes)
    order = sorted(range(n), key=lambda i: (-sizes[i], -i))
    placed: list[tuple[int, int]] = []  # (offset, buffer), by offset
    offset = [0] * n
    for b in order:
        f, e, want = first[b], last[b], sizes[b]
        cand = 0
        for off, other in placed:
            if first[other] > e or f > last[other]:
                continue
            if off - cand >= want:
                break
            cand = max(cand, off + sizes[other])
        offset[b] = cand
        placed.append((cand, b))
        placed.sort()
    total = max((offset[b] + sizes[b] for b in range(n)), default=0)
    return offset, total


def _scratch(op, graph: OpGraph) -> list[int]:
    """Scratch buffers TFLM's reference kernels request in Prepare (bytes each)."""
    if op.kind == OpKind.GLOBAL_AVGPOOL or op.attrs.get("tflite_op") in ("MEAN", "SUM"):
        x = graph.tensors[op.inputs[0]]
        y = graph.tensors[op.outputs[0]]
        rank = len(x.shape) + 1
        axes = max(1, rank - 2)
        return [4 * y.numel, 4 * rank, 4 * axes]  # int32 sums, iteration index, resolved axes
    if op.kind == OpKind.GLOBAL_MAXPOOL:
        rank = len(graph.tensors[op.inputs[0]].shape) + 1
        return [4 * rank, 4 * max(1, rank - 2)]
    return []


def tflm_arena(graph: OpGraph, sizes: TflmSizes | None = None) -> TflmArena:
    """TFLM's head and tail for `graph`, run in its listed order (see the module docstring)."""
    sz = sizes or TflmSizes.host64()
    state = set(graph.state)
    index = graph.meta.get("tflite_index") or {}
    # Planned tensors in TFLite tensor order (file order when known, else inputs then op outputs).
    names: list[str] = [t for t in graph.inputs if t not in state]
    for op in graph.ops:
        names.extend(o for o in op.outputs if o not in names)
    if index:
        names.sort(key=lambda t: index.get(t, 1 << 30))
    n_ops = len(graph.ops)
    first = {t: 0 for t in graph.inputs}
    last = {t: 0 for t in graph.inputs}
    scratch: list[tuple[int, int]] = []  # (bytes, scope)
    for k, op in enumerate(graph.ops, start=1):
        for o in op.outputs:
            first.setdefault(o, k)
            last[o] = k
        for i in op.inputs:
            last[i] = k
        scratch.extend((s, k) for s in _scratch(op, graph))
    for o in graph.outputs:
        last[o] = n_ops
    bsize = [_up(graph.tensors[t].nbytes) for t in names] + [_up(s) for s, _ in scratch]
    bfirst = [first[t] for t in names] + [k for _, k in scratch]
    blast = [last[t] for t in names] + [k for _, k in scratch]
    offsets, planned = greedy_plan(bsize, bfirst, blast)

    # Tail, in the order TFLM allocates it.
    n_tensors = int(graph.meta.get("tflite_tensors") or _estimated_tensors(graph))
    io = len(graph.inputs) - len(state) + len(graph.outputs)
    per_channel = 0
    op_bytes = 0
    for op in graph.ops:
        op_bytes += sz.op_bytes(op.kind)
        if op.kind in GroupOp.WEIGHTED and op.quant == "per_channel":
            ch = op.scales or graph.tensors[op.outputs[0]].shape[0]
            per_channel += 2 * _up(4 * ch)
    tail = {
        "allocator": sz.fixed,
        "eval_tensors": _up(sz.eval_tensor * n_tensors),
        "nodes": _up(sz.node * n_ops),
        "op_data": op_bytes,
        "per_channel_quant": per_channel,
        "io_tensors": io * (_up(sz.tflite_tensor) + _up(sz.quant_record)),
        "scratch_handles": _up(sz.scratch_handle * len(scratch)) if scratch else 0,
        "variables": sum(_up(graph.tensors[t].nbytes) for t in state),
    }
    tail_bytes = sum(tail.values())
    # While planning, the head holds the planner's tables (the tail is then nearly complete: on the
    # measured models it differed from the final tail by under 60 B, so the final tail is used).
    planning = _up(sz.allocation_info * (n_tensors + len(scratch))) + sz.planner_per_buffer * len(bsize)
    head = max(planned, planning)
    return TflmArena(
        sizes=sz.name,
        planned_bytes=planned,
        planning_bytes=max(0, planning),
        head_bytes=head,
        tail_bytes=tail_bytes,
        tail=tail,
        offsets=dict(zip(names, offsets)),
    )


def _estimated_tensors(graph: OpGraph) -> int:
    """Tensors a TFLite converter would write for a graph from elsewhere: every activation, and
    a weight and a bias per weighted op, a shape / axes / paddings constant per view, pad, mean."""
    n = len(graph.inputs) + sum(len(op.outputs) for op in graph.ops)
    for op in graph.ops:
        if op.kind in GroupOp.WEIGHTED:
            n += 1 + (1 if op.bias else 0)
        elif op.kind in GroupOp.ALIAS or op.kind in (OpKind.PAD, OpKind.GLOBAL_AVGPOOL, OpKind.TRANSPOSE):
            n += 1
        elif op.weights:
            n += 1
    return n
