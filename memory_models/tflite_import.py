"""graph_from_tflite(path) -> OpGraph: read a TFLite flatbuffer into the memory model's graph.

So people deploying with TFLite / TFLite Micro can measure the `.tflite` file they already have
(`m2nas memory model.tflite --device NAME`), with the `tflite` package's generated flatbuffer
bindings: no TensorFlow at run time.

What is read (the main subgraph, ops in the file's order, which is the order TFLM runs them):

* Tensors at their element type: int8 / uint8 -> 8 bits, int16 -> 16, int4 -> 4, float32 / int32
  -> 32 (wider ones are counted as 32). A tensor with a buffer is a constant; a variable tensor
  (`is_variable`, an RNN's or SVDF's memory) is persistent state: a graph input listed in
  `OpGraph.state`, alive for the whole inference. Shapes lose the batch axis and become
  channels-first per sample, as every OpGraph (NHWC (1, H, W, C) -> (C, H, W)).
* Weights: the filter's element count and bits; its quantization per channel when it has more than
  one scale (the scales and zero-points are then counted in flash per channel, as the ONNX reader
  does); the bias's element count.
* Ops, one OpGraph op per TFLite op (TFLite fuses activations into the op already):
  CONV_2D -> conv2d (pointwise_conv2d for 1x1), DEPTHWISE_CONV_2D -> depthwise_conv2d,
  FULLY_CONNECTED -> linear, MAX/AVERAGE_POOL_2D -> maxpool2d / avgpool2d, MEAN / SUM and
  REDUCE_MAX -> global_avgpool / global_maxpool, ADD / SUB -> add, MUL -> mul, CONCATENATION ->
  concat, RESHAPE / SQUEEZE / EXPAND_DIMS -> reshape (a view), PAD / PADV2 -> pad, TRANSPOSE ->
  transpose, STRIDED_SLICE / SLICE -> slice, RESIZE_* -> resize, and the elementwise kernels
  (SOFTMAX, LOGISTIC, TANH, RELU, RELU6, LEAKY_RELU, HARD_SWISH, PRELU, QUANTIZE, DEQUANTIZE) ->
  activation with the function's name. Each op keeps `tflite_op` (the builtin's name) and
  `tflite_consts` (its constant inputs) in its attrs, which the `tflm` runtime profile reads.

Anything else (another builtin, a custom op, a second subgraph's control flow) is an InputError
naming the op, as the ONNX reader does; so is a file that is not a TFLite flatbuffer or is cut short.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

from .errors import InputError
from .graph import Op, OpGraph, Tensor
from .ops import GroupOp, OpKind

# tflite.TensorType -> bits (int64 and float64 are counted as 32, as the ONNX reader caps them)
_BITS = {0: 32, 1: 16, 2: 32, 3: 8, 4: 32, 6: 8, 7: 16, 9: 8, 10: 32, 15: 32, 16: 16, 17: 4, 18: 16}

_ACTIVATIONS = {
    "SOFTMAX": "softmax",
    "LOGISTIC": "sigmoid",
    "TANH": "tanh",
    "RELU": "relu",
    "RELU6": "relu6",
    "RELU_N1_TO_1": "clip",
    "LEAKY_RELU": "leaky_relu",
    "HARD_SWISH": "hard_swish",
    "PRELU": "prelu",
    "QUANTIZE": "quantize",
    "DEQUANTIZE": "dequantize",
}
_SIMPLE = {
    "ADD": OpKind.ADD,
    "SUB": OpKind.ADD,
    "MUL": OpKind.MUL,
    "CONCATENATION": OpKind.CONCAT,
    "RESHAPE": OpKind.RESHAPE,
    "SQUEEZE": OpKind.RESHAPE,
    "EXPAND_DIMS": OpKind.RESHAPE,
    "PAD": OpKind.PAD,
    "PADV2": OpKind.PAD,
    "TRANSPOSE": OpKind.TRANSPOSE,
    "STRIDED_SLICE": OpKind.SLICE,
    "SLICE": OpKind.SLICE,
    "RESIZE_NEAREST_NEIGHBOR": OpKind.RESIZE,
    "RESIZE_BILINEAR": OpKind.RESIZE,
    "MEAN": OpKind.GLOBAL_AVGPOOL,
    "SUM": OpKind.GLOBAL_AVGPOOL,
    "REDUCE_MAX": OpKind.GLOBAL_MAXPOOL,
    "MAX_POOL_2D": OpKind.MAXPOOL2D,
    "AVERAGE_POOL_2D": OpKind.AVGPOOL2D,
}
_WEIGHTED = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}
SUPPORTED = sorted({*_ACTIVATIONS, *_SIMPLE, *_WEIGHTED})
_FUSED = {0: "none", 1: "relu", 2: "clip", 3: "relu6", 4: "tanh", 5: "sign_bit"}

# What the flatbuffers runtime raises when an offset points past the end of a cut-short file.
_CORRUPT = (struct.error, IndexError, ValueError, TypeError, AttributeError, UnicodeDecodeError)


def _per_sample(shape: tuple[int, ...]) -> tuple[int, ...]:
    """TFLite's (1, H, W, C) / (1, L, C) / (1, F) -> OpGraph's (C, H, W) / (C, L) / (F,)."""
    dims = shape[1:] if len(shape) >= 2 else shape
    if len(dims) >= 2:
        dims = (dims[-1], *dims[:-1])
    return tuple(dims) or (1,)


class _Reader:
    def __init__(self, data: bytes, path: Path) -> None:
        import tflite

        self.tfl = tflite
        self.src = str(path)
        self.path = path
        self.model = tflite.Model.GetRootAs(data, 0)
        if self.model.SubgraphsLength() < 1:
            raise InputError(f"{self.src}: not a valid TFLite model (no subgraph)")
        self.g = self.model.Subgraphs(0)
        self.op_names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}

    def builtin(self, op) -> str:
        code = self.model.OperatorCodes(op.OpcodeIndex())
        b = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if b == self.tfl.BuiltinOperator.CUSTOM:
            custom = code.CustomCode()
            return f"CUSTOM {custom.decode(errors='replace') if custom else '?'}"
        return self.op_names.get(b, f"builtin {b}")

    def is_const(self, t) -> bool:
        b = t.Buffer()
        if b <= 0 or b >= self.model.BuffersLength():
            return False
        buf = self.model.Buffers(b)
        return buf.DataLength() > 0 or buf.Size() > 0

    def run(self) -> OpGraph:
        g = self.g
        n = g.TensorsLength()
        tensors = [g.Tensors(i) for i in range(n)]
        shape = [tuple(int(d) for d in (t.ShapeAsNumpy() if t.ShapeLength() else ())) for t in tensors]
        bits = [_BITS.get(t.Type(), 32) for t in tensors]
        const = [self.is_const(t) for t in tensors]
        variable = [bool(t.IsVariable()) for t in tensors]
        names: dict[int, str] = {}
        taken: set[str] = set()

        def name_of(i: int) -> str:
            if i not in names:
                base = (tensors[i].Name() or b"").decode(errors="replace") or f"tensor{i}"
                nm, k = base, 1
                while nm in taken:
                    k += 1
                    nm = f"{base}_{k}"
                taken.add(nm)
                names[i] = nm
            return names[i]

        inputs = [int(i) for i in (g.InputsAsNumpy() if g.InputsLength() else ())]
        outputs = [int(i) for i in (g.OutputsAsNumpy() if g.OutputsLength() else ())]
        ops: list[Op] = []
        state: list[int] = []
        used_tensors: set[int] = set()
        for k in range(g.OperatorsLength()):
            op = g.Operators(k)
            kind_name = self.builtin(op)
            ins = [int(i) for i in (op.InputsAsNumpy() if op.InputsLength() else ())]
            outs = [int(i) for i in (op.OutputsAsNumpy() if op.OutputsLength() else ())]
            where = f"operator {k} ({kind_name})"
            if kind_name not in SUPPORTED:
                raise InputError(
                    f"{self.src}: unsupported operator {kind_name} ({where.split(' (')[0]}); m2nas memory reads "
                    "TFLite models made of TFLM's common kernels (conv, depthwise, fully connected, pooling, "
                    "joins, activations, views)"
                )
            if len(outs) != 1:
                raise InputError(f"{self.src}: {where}: expected one output, got {len(outs)}")
            acts = [i for i in ins if i >= 0 and not const[i]]
            consts = [i for i in ins if i >= 0 and const[i]]
            for i in acts:
                if variable[i] and i not in state:
                    state.append(i)
            if not acts:
                raise InputError(f"{self.src}: {where}: no activation input (every input is a constant)")
            used_tensors.update(acts + outs)
            ops.append(self.op(k, kind_name, op, ins, acts, consts, outs[0], shape, bits, name_of))
        for i in [*inputs, *state]:
            name_of(i)
        graph_inputs = [i for i in inputs if i in used_tensors and not const[i]]
        graph_inputs += [i for i in state if i not in graph_inputs]
        table = {
            name_of(i): Tensor(name_of(i), _per_sample(shape[i]), min(32, bits[i]))
            for i in sorted(used_tensors)
        }
        meta = {
            "source": "tflite",
            "modalities": {name_of(i): list(_per_sample(shape[i])) for i in inputs if i in used_tensors},
            "tflite_tensors": n,
            "tflite_index": {name_of(i): i for i in sorted(used_tensors)},
        }
        graph = OpGraph(
            table,
            ops,
            [name_of(i) for i in graph_inputs],
            [name_of(i) for i in outputs],
            name=self.path.stem,
            meta=meta,
            state=[name_of(i) for i in state],
        )
        return graph.validate(self.src)

    def op(self, k, kind_name, op, ins, acts, consts, out, shape, bits, name_of) -> Op:
        tfl = self.tfl
        attrs: dict = {"tflite_op": kind_name, "tflite_consts": len(consts)}
        name = f"{kind_name.lower()}_{k}"
        kw: dict = {}
        opts = op.BuiltinOptions()
        if kind_name in _WEIGHTED:
            if len(ins) < 2 or ins[1] < 0 or ins[1] not in consts:
                raise InputError(f"{self.src}: operator {k} ({kind_name}): the weights must be a constant")
            w = ins[1]
            wshape = shape[w]
            q = self.g.Tensors(w).Quantization()
            nscale = q.ScaleLength() if q is not None else 0
            bias = math.prod(shape[ins[2]]) if len(ins) > 2 and ins[2] >= 0 else 0
            kw = {
                "weights": math.prod(wshape),
                "weight_bits": min(32, bits[w]),
                "bias": bias,
                "quant": "per_channel" if nscale > 1 else "per_tensor",
                "scales": max(1, nscale),
            }
            fused = 0
            if kind_name == "FULLY_CONNECTED":
                if len(wshape) != 2:
                    raise InputError(f"{self.src}: operator {k} (FULLY_CONNECTED): weights must be 2-D")
                fout, fin = wshape
                rows = math.prod(shape[out][:-1]) if len(shape[out]) > 1 else 1
                kind = OpKind.LINEAR
                kw["macs"] = fin * fout * rows
                if opts is not None:
                    o = tfl.FullyConnectedOptions()
                    o.Init(opts.Bytes, opts.Pos)
                    fused = o.FusedActivationFunction()
            else:
                if len(wshape) != 4:
                    raise InputError(f"{self.src}: operator {k} ({kind_name}): weights must be 4-D")
                kh, kwid = wshape[1], wshape[2]
                o = tfl.Conv2DOptions() if kind_name == "CONV_2D" else tfl.DepthwiseConv2DOptions()
                stride = [1, 1]
                if opts is not None:
                    o.Init(opts.Bytes, opts.Pos)
                    stride = [o.StrideH(), o.StrideW()]
                    fused = o.FusedActivationFunction()
                cin = shape[acts[0]][-1] if shape[acts[0]] else 1
                if kind_name == "DEPTHWISE_CONV_2D":
                    kind = OpKind.DEPTHWISE_CONV2D
                    groups = cin
                else:
                    kind = OpKind.POINTWISE_CONV2D if kh == kwid == 1 else OpKind.CONV2D
                    groups = max(1, cin // wshape[3]) if wshape[3] else 1
                attrs.update(kernel=[kh, kwid], stride=stride, groups=groups)
                # MACs: weights x output positions (the memory model's convention for convolutions)
                kw["macs"] = math.prod(wshape) * math.prod(shape[out][1:-1] or (1,))
            attrs["activation"] = _FUSED.get(fused, "none")
            attrs["fout"] = int(wshape[0] if kind_name != "DEPTHWISE_CONV_2D" else wshape[3])
        elif kind_name in _ACTIVATIONS:
            kind = OpKind.ACTIVATION
            attrs["function"] = _ACTIVATIONS[kind_name]
            if consts:  # PRELU's slopes
                kw = {
                    "weights": sum(math.prod(shape[c] or (1,)) for c in consts),
                    "weight_bits": bits[consts[0]],
                }
        else:
            kind = _SIMPLE[kind_name]
            if kind in (OpKind.ADD, OpKind.MUL) and consts:  # a constant operand is a weight in flash
                kw = {
                    "weights": sum(math.prod(shape[c] or (1,)) for c in consts),
                    "weight_bits": bits[consts[0]],
                }
            if kind in (OpKind.MAXPOOL2D, OpKind.AVGPOOL2D) and opts is not None:
                o = tfl.Pool2DOptions()
                o.Init(opts.Bytes, opts.Pos)
                attrs.update(kernel=[o.FilterHeight(), o.FilterWidth()], stride=[o.StrideH(), o.StrideW()])
            if kind in GroupOp.ALIAS and math.prod(shape[acts[0]] or (1,)) != math.prod(shape[out] or (1,)):
                raise InputError(f"{self.src}: operator {k} ({kind_name}): output size differs from input")
        return Op(name, kind, tuple(name_of(i) for i in acts), (name_of(out),), attrs=attrs, **kw)


def graph_from_tflite(path: str | Path) -> OpGraph:
    """The OpGraph of a TFLite flatbuffer (see the module docstring for what is read)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise InputError(f"{path}: not a TFLite flatbuffer (no 'TFL3' file identifier)")
    try:
        return _Reader(data, path).run()
    except InputError:
        raise
    except _CORRUPT as e:
        raise InputError(
            f"{path}: not a valid TFLite flatbuffer (truncated or corrupt: {type(e).__name__})"
        ) from None
