"""graph_from_onnx(path) -> OpGraph: read a float or QCDQ ONNX model into the memory model's graph.

So users can measure models they did not search for (`m2nas memory MODEL.onnx --device NAME`), and so
that an exported model can be checked against the figures it was selected with.

What is read:

* **Float ONNX**: weights and activations at their element type (float32: 32 bits).
* **QCDQ ONNX** (Brevitas `export_onnx_qcdq`, onnxruntime's QDQ format): a `QuantizeLinear ->
  (Clip) -> DequantizeLinear` chain on an activation gives that tensor its bit-width (8 from the
  int8 / uint8 type, fewer from the Clip range: `ceil(log2(hi - lo + 1))`); the same chain on a
  constant gives the weight bit-width, and the scale's size per-channel or per-tensor
  quantization. The chains themselves are not ops: the runtime stores the integers.
* A weighted op (Conv, Gemm, MatMul with a constant matrix) and the elementwise activation after it
  (Relu, Clip, Sigmoid, ...) are one op, as integer kernels fuse them; so are an Add / Mul and its
  activation. In QCDQ graphs a chain of Add (Mul) whose partial sums are not quantized is one n-ary
  add (mul): the runtime sums in int32 and requantizes once.
* Kinds: Conv -> conv1d/2d, depthwise (group == input channels), pointwise (1x1, group 1); Gemm /
  MatMul -> linear (a following constant Add is its bias, a BatchNormalization after a weighted op is
  folded into it); MaxPool / AveragePool -> maxpool / avgpool{1,2}d; GlobalAveragePool / GlobalMaxPool
  and ReduceMean / ReduceMax over every axis after the channels -> global_avgpool / global_maxpool;
  Concat, Add / Sub, Mul / Div, activations, Flatten / Reshape / Squeeze / Unsqueeze (views), Resize;
  a standalone BatchNormalization (one not after a weighted op) -> mul with its per-channel scale and
  shift as constants. Shape arithmetic on constants (Shape, Gather, Concat of shapes, ...) is folded
  away.
* Transpose (the NHWC <-> NCHW edges of TF-converted models) -> transpose, a copy with its own output
  buffer, as every integer runtime executes it; one that only moves size-1 axes changes no byte
  order and is a view. Pad -> pad, a copy into the larger tensor (converters emit it before a
  convolution for asymmetric "same" padding; TFLite Micro runs it as its own op too).

Shapes are per sample: the first axis of every activation is the batch. Anything else (an operator
outside this list, a custom domain such as QONNX's `Quant`) is an
InputError naming the operator and the node.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError
from .graph import Op, OpGraph, Tensor
from .ops import GroupOp, OpKind

# onnx.TensorProto element types -> bits
_FLOAT_BITS = {1: 32, 10: 16, 11: 32, 16: 16}  # float, float16, double (counted as 32), bfloat16
_INT_BITS = {2: 8, 3: 8, 4: 16, 5: 16, 6: 32, 7: 32, 12: 32, 13: 32, 21: 4, 22: 4, 9: 8}
# uint8, int8, uint16, int16, int32, int64 (capped), uint32, uint64, uint4, int4, bool

_TRANSPARENT = {"Identity", "Dropout"}
_VIEWS = {"Flatten": "flatten", "Reshape": "reshape", "Squeeze": "reshape", "Unsqueeze": "reshape"}
_ACTIVATIONS = {
    "Relu": "relu",
    "LeakyRelu": "leaky_relu",
    "PRelu": "prelu",
    "Sigmoid": "sigmoid",
    "HardSigmoid": "hard_sigmoid",
    "HardSwish": "hard_swish",
    "Tanh": "tanh",
    "Elu": "elu",
    "Selu": "selu",
    "Gelu": "gelu",
    "Softplus": "softplus",
    "Softmax": "softmax",
    "LogSoftmax": "log_softmax",
}
_NOT_FUSED = {"softmax", "log_softmax"}  # separate kernels that need the whole vector
_BITS_PRESERVING = GroupOp.BITS_PRESERVING
SUPPORTED = sorted(
    {
        "Conv",
        "Gemm",
        "MatMul",
        "BatchNormalization",
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "GlobalMaxPool",
        "ReduceMean",
        "ReduceMax",
        "Concat",
        "Add",
        "Sub",
        "Mul",
        "Div",
        "Clip",
        "Resize",
        "Upsample",
        "Transpose",
        "Pad",
        "QuantizeLinear",
        "DequantizeLinear",
        "Cast",
        *_TRANSPARENT,
        *_VIEWS,
        *_ACTIVATIONS,
    }
)


def _text(v: Any) -> Any:
    return v.decode() if isinstance(v, bytes) else v


def _bits_for_range(lo: float, hi: float) -> int:
    return max(1, math.ceil(math.log2(hi - lo + 1)))


@dataclass
class _Proto:
    """An op under construction (one or several ONNX nodes)."""

    name: str
    kind: str
    inputs: list[str]
    output: str
    index: int
    weights: int = 0
    weight_bits: int = 8
    bias: int = 0
    quant: str = "per_tensor"
    scales: int = 1
    macs: int = 0
    attrs: dict[str, Any] = field(default_factory=dict)
    alive: bool = True


class _Importer:
    def __init__(self, model, path: Path) -> None:
        import onnx

        self.onnx = onnx
        self.path = path
        self.src = str(path)
        self.model = model
        g = model.graph
        self.graph = g
        self.inits = {t.name: t for t in g.initializer}
        self.const_nodes: dict[str, Any] = {}  # output name -> Constant node
        self.static: set[str] = set(self.inits) | {""}
        self.static_producer: dict[str, Any] = {}
        self.types: dict[str, tuple[int, tuple | None]] = {}  # name -> (elem_type, dims incl. batch)
        self.canon: dict[str, str] = {}  # ONNX activation value -> graph tensor id
        self.shape: dict[str, tuple[int, ...] | None] = {}
        self.bits: dict[str, int] = {}
        self.quantized: set[str] = set()
        self.protos: list[_Proto] = []
        self.producer: dict[str, _Proto] = {}
        self.onnx_name: dict[str, str] = {}  # tensor id -> an ONNX value name it stands for
        self.any_quant = False
        self.names: set[str] = set()
        self.input_names: dict[str, str] = {}

    # ---- helpers ------------------------------------------------------------------------------
    def fail(self, node, why: str) -> InputError:
        return InputError(f"{self.src}: node {node.name or node.output[0]!r} ({node.op_type}): {why}")

    def const(self, name: str):
        """Numeric value of a constant (initializer or Constant node), or None."""
        from onnx import numpy_helper

        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        node = self.const_nodes.get(name)
        if node is not None:
            for a in node.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
                if a.name in ("value_float", "value_int"):
                    import numpy as np

                    return np.array(a.f if a.name == "value_float" else a.i)
        p = self.static_producer.get(name)
        if p is not None and p.op_type in ("Identity", "Cast") and p.input:
            return self.const(p.input[0])
        return None

    def dims(self, name: str) -> tuple | None:
        if name in self.inits:
            return tuple(self.inits[name].dims)
        v = self.const(name) if name in self.const_nodes else None
        if v is not None:
            return tuple(v.shape)
        t = self.types.get(name)
        return t[1] if t else None

    def elem_type(self, name: str) -> int | None:
        if name in self.inits:
            return self.inits[name].data_type
        t = self.types.get(name)
        return t[0] if t else None

    def static_bits(self, name: str) -> tuple[int, Any]:
        """(bits, DequantizeLinear node or None) of a constant, following its quantization chain."""
        dq = None
        seen = 0
        while seen < 16:
            seen += 1
            p = self.static_producer.get(name)
            if p is None:
                t = self.elem_type(name)
                return _FLOAT_BITS.get(t, _INT_BITS.get(t, 32)), dq
            if p.op_type == "DequantizeLinear":
                dq = dq or p
                name = p.input[0]
            elif p.op_type == "Clip" and len(p.input) >= 3:
                lo, hi = self.const(p.input[1]), self.const(p.input[2])
                if lo is not None and hi is not None and self.elem_type(p.input[0]) in _INT_BITS:
                    return _bits_for_range(float(lo), float(hi)), dq
                name = p.input[0]
            elif p.op_type == "QuantizeLinear":
                return self.quant_bits(p), dq
            elif p.input:
                name = p.input[0]
            else:
                break
        return 32, dq

    def quant_bits(self, node) -> int:
        for a in node.attribute:
            if a.name == "output_dtype" and a.i:
                return _INT_BITS.get(a.i, 8)
        if len(node.input) >= 3 and node.input[2]:
            return _INT_BITS.get(self.elem_type(node.input[2]), 8)
        return 8  # ONNX default: uint8

    def attr(self, node, name: str, default=None):
        for a in node.attribute:
            if a.name == name:
                return self.onnx.helper.get_attribute_value(a)
        return default

    def unique(self, base: str) -> str:
        name = base or "op"
        k = 1
        while name in self.names:
            k += 1
            name = f"{base}_{k}"
        self.names.add(name)
        return name

    def per_sample(self, name: str, node=None) -> tuple[int, ...] | None:
        d = self.types.get(name)
        if d is None or d[1] is None:
            return None
        dims = d[1]
        if len(dims) < 2:
            return tuple(dims) if dims and all(isinstance(x, int) and x > 0 for x in dims) else None
        rest = dims[1:]
        if not all(isinstance(x, int) and x > 0 for x in rest):
            return None
        return tuple(rest)

    def act(self, name: str, node) -> str:
        """The graph tensor of an activation input."""
        if name not in self.canon:
            raise self.fail(node, f"input {name!r} is neither a graph input, a constant nor an op output")
        return self.canon[name]

    def new_tensor(self, onnx_name: str, bits: int) -> str:
        tid = f"t{len(self.shape)}"
        self.shape[tid] = None
        self.bits[tid] = bits
        self.onnx_name[tid] = onnx_name
        self.canon[onnx_name] = tid
        return tid

    def emit(
        self, node, kind: str, inputs: list[str], out_name: str, bits: int | None = None, **kw
    ) -> _Proto:
        if bits is None:
            if kind in _BITS_PRESERVING and inputs:
                bits = max(self.bits[t] for t in inputs)
            else:
                bits = _FLOAT_BITS.get(self.elem_type(out_name), 32)
        out = self.new_tensor(out_name, bits)
        p = _Proto(
            self.unique(node.name or f"{node.op_type}_{len(self.protos)}"),
            kind,
            inputs,
            out,
            len(self.protos),
            **kw,
        )
        self.protos.append(p)
        self.producer[out] = p
        return p

    # ---- the walk -----------------------------------------------------------------------------
    def run(self) -> OpGraph:
        onnx = self.onnx
        g = self.graph
        for node in g.node:
            if node.op_type == "Constant":
                for o in node.output:
                    self.const_nodes[o] = node
        try:
            inferred = onnx.shape_inference.infer_shapes(self.model, data_prop=True)
        except Exception:  # a model shape inference cannot follow: shapes come from onnxruntime
            inferred = self.model
        for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
            tt = v.type.tensor_type
            dims = None
            if tt.HasField("shape"):
                dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim)
            self.types[v.name] = (tt.elem_type, dims)

        inputs = []
        for inp in g.input:
            if inp.name in self.inits:
                continue
            et = inp.type.tensor_type.elem_type
            tid = self.new_tensor(inp.name, _FLOAT_BITS.get(et, _INT_BITS.get(et, 32)))
            self.input_names[tid] = inp.name
            inputs.append(tid)

        for node in g.node:
            if node.domain not in ("", "ai.onnx"):
                self.unsupported(node)
            if node.op_type in ("Constant", "Shape", "Size") or all(i in self.static for i in node.input):
                for o in node.output:
                    self.static.add(o)
                    self.static_producer[o] = node
                continue
            self.visit(node)

        self.fuse()
        return self.assemble(inputs)

    def unsupported(self, node) -> None:
        where = f"node {node.name or node.output[0]!r}"
        if node.domain not in ("", "ai.onnx"):
            raise InputError(
                f"{self.src}: unsupported operator {node.op_type} (domain {node.domain}, {where}); "
                "m2nas memory reads float ONNX and QCDQ ONNX (export QONNX models as QCDQ)"
            )
        raise InputError(
            f"{self.src}: unsupported operator {node.op_type} ({where}); m2nas memory reads float and QCDQ "
            "ONNX made of convolutions, dense layers, pooling, joins, activations and views"
        )

    def visit(self, node) -> None:  # noqa: C901 (one branch per operator family)
        op = node.op_type
        ins = [i for i in node.input]
        out = node.output[0]
        if op == "QuantizeLinear":
            self.any_quant = True
            src = self.act(ins[0], node)
            bits = self.quant_bits(node)
            if src in self.quantized:  # requantizing an already quantized tensor: a real op
                p = self.emit(node, "activation", [src], out, bits, attrs={"function": "requantize"})
                self.quantized.add(p.output)
                return
            self.canon[out] = src
            self.bits[src] = bits
            self.quantized.add(src)
            self.onnx_name[src] = out
            return
        if op == "Clip" and self.elem_type(ins[0]) in _INT_BITS:
            lo = self.const(ins[1]) if len(ins) > 1 and ins[1] else None
            hi = self.const(ins[2]) if len(ins) > 2 and ins[2] else None
            src = self.act(ins[0], node)
            if lo is not None and hi is not None:
                self.bits[src] = _bits_for_range(float(lo), float(hi))
            self.canon[out] = src
            return
        if op in ("DequantizeLinear", *_TRANSPARENT):
            src = self.act(ins[0], node)
            self.canon[out] = src
            self.onnx_name[src] = out
            return
        if op == "Cast":
            src = self.act(ins[0], node)
            to = self.attr(node, "to")
            self.canon[out] = src
            if src not in self.quantized:
                self.bits[src] = _FLOAT_BITS.get(to, _INT_BITS.get(to, 32))
            return
        if op == "Conv":
            return self.conv(node)
        if op in ("Gemm", "MatMul"):
            return self.dense(node)
        if op == "BatchNormalization":
            x = self.act(ins[0], node)
            p = self.producer.get(x)
            if p is None or p.kind not in GroupOp.WEIGHTED or p.attrs.get("activation", "none") != "none":
                # unfused: an elementwise affine map, per-channel scale and shift
                n = 2 * math.prod(self.dims(ins[1]) or (1,))
                bits, _ = self.static_bits(ins[1])
                self.emit(node, "mul", [x], out, attrs={"onnx_op": op}, weights=n, weight_bits=bits)
                return
            p.bias = p.bias or p.attrs.get("_cout") or p.attrs.get("fout") or 0
            self.canon[out] = x
            self.onnx_name[x] = out
            return
        if op in ("MaxPool", "AveragePool"):
            kernel = list(self.attr(node, "kernel_shape"))
            d = len(kernel)
            if d not in (1, 2):
                raise self.fail(node, f"{d}-D pooling is not supported (1-D and 2-D only)")
            kind = f"{'max' if op == 'MaxPool' else 'avg'}pool{d}d"
            pads = list(self.attr(node, "pads", [0] * 2 * d))
            attrs = {
                "kernel": kernel,
                "stride": list(self.attr(node, "strides", [1] * d)),
                "padding": pads[:d],
            }
            self.emit(node, kind, [self.act(ins[0], node)], out, attrs=attrs)
            return
        if op in ("GlobalAveragePool", "GlobalMaxPool"):
            kind = "global_avgpool" if op == "GlobalAveragePool" else "global_maxpool"
            self.emit(node, kind, [self.act(ins[0], node)], out)
            return
        if op in ("ReduceMean", "ReduceMax"):
            axes = self.attr(node, "axes")
            if axes is None and len(ins) > 1 and ins[1]:
                v = self.const(ins[1])
                axes = None if v is None else [int(a) for a in v.reshape(-1)]
            dims = self.types.get(ins[0], (None, None))[1]
            if axes is None or dims is None:
                raise self.fail(node, "only a reduction over every axis after the channels is supported")
            rank = len(dims)
            axes = sorted(a % rank for a in axes)
            if axes != list(range(2, rank)) or rank < 3:
                raise self.fail(
                    node,
                    f"reduces axes {axes} of a rank-{rank} tensor; only global pooling (axes 2..) is supported",
                )
            kind = "global_avgpool" if op == "ReduceMean" else "global_maxpool"
            self.emit(node, kind, [self.act(ins[0], node)], out)
            return
        if op in _VIEWS:
            src = self.act(ins[0], node)
            self.emit(node, _VIEWS[op], [src], out, self.bits[src])
            return
        if op == "Concat":
            if any(i in self.static for i in ins):
                raise self.fail(node, "concatenation with a constant is not supported")
            self.emit(
                node, "concat", [self.act(i, node) for i in ins], out, attrs={"axis": self.attr(node, "axis")}
            )
            return
        if op in ("Add", "Sub", "Mul", "Div"):
            kind = "add" if op in ("Add", "Sub") else "mul"
            acts = [i for i in ins if i not in self.static]
            consts = [i for i in ins if i in self.static]
            if kind == "add" and len(acts) == 1 and consts:  # a bias after MatMul
                p = self.producer.get(self.act(acts[0], node))
                n = math.prod(self.dims(consts[0]) or (0,))
                if p is not None and p.kind == "linear" and not p.bias and p.attrs.get("fout") == n:
                    x = p.output
                    if len([q for q in self.protos if q.alive and x in q.inputs]) == 0:
                        self.canon[out] = x
                        self.onnx_name[x] = out
                        p.bias = n
                        return
            kw = {}
            if consts:
                n = sum(math.prod(self.dims(c) or (1,)) for c in consts)
                bits, _ = self.static_bits(consts[0])
                kw = {"weights": n, "weight_bits": bits}
            self.emit(node, kind, [self.act(i, node) for i in acts], out, attrs={"onnx_op": op}, **kw)
            return
        if op in _ACTIVATIONS or op == "Clip":
            fn = _ACTIVATIONS.get(op)
            if op == "Clip":
                lo = self.const(ins[1]) if len(ins) > 1 and ins[1] else self.attr(node, "min")
                hi = self.const(ins[2]) if len(ins) > 2 and ins[2] else self.attr(node, "max")
                fn = (
                    "relu6"
                    if lo is not None and hi is not None and float(lo) == 0 and float(hi) == 6
                    else "clip"
                )
            src = self.act(ins[0], node)
            kw = {}
            if op == "PRelu" and len(ins) > 1:
                kw = {
                    "weights": math.prod(self.dims(ins[1]) or (1,)),
                    "weight_bits": self.static_bits(ins[1])[0],
                }
            keep = src in self.quantized and fn in ("relu", "relu6", "clip")
            self.emit(
                node, "activation", [src], out, self.bits[src] if keep else None, attrs={"function": fn}, **kw
            )
            return
        if op == "Transpose":
            src = self.act(ins[0], node)
            dims = self.types.get(ins[0], (None, None))[1]
            perm = self.attr(node, "perm")
            if dims is None or perm is None:
                raise self.fail(node, "a Transpose needs a known input shape and an explicit perm")
            full = (1, *dims)  # with the batch axis, which perm addresses as axis 0
            if list(perm)[0] != 0:
                raise self.fail(node, f"perm {list(perm)} moves the batch axis")
            moved = [a for a in perm if full[a] != 1]
            if moved == sorted(moved):  # only size-1 axes move: the bytes keep their order
                self.emit(node, "reshape", [src], out, self.bits[src])
            else:
                self.emit(node, "transpose", [src], out, self.bits[src], attrs={"perm": list(perm)[1:]})
            return
        if op == "Pad":
            mode = _text(self.attr(node, "mode", "constant"))
            pads = self.attr(node, "pads")
            if pads is None and len(ins) > 1 and ins[1]:
                v = self.const(ins[1])
                pads = None if v is None else [int(a) for a in v.reshape(-1)]
            if pads is None:
                raise self.fail(node, "a Pad needs constant pads")
            src = self.act(ins[0], node)
            self.emit(node, "pad", [src], out, self.bits[src], attrs={"pads": list(pads), "mode": mode})
            return
        if op in ("Resize", "Upsample"):
            self.emit(
                node,
                "resize",
                [self.act(ins[0], node)],
                out,
                attrs={"mode": _text(self.attr(node, "mode", "nearest"))},
            )
            return
        self.unsupported(node)

    def weight_info(self, node, w: str) -> tuple[int, str, int]:
        """(bits, quant granularity, scales) of a weight constant."""
        bits, dq = self.static_bits(w)
        if dq is None:
            return bits, "per_tensor", 1
        scale = self.dims(dq.input[1])
        n = math.prod(scale) if scale else 1
        return bits, ("per_channel" if n > 1 else "per_tensor"), max(1, n)

    def conv(self, node) -> None:
        ins = list(node.input)
        if len(ins) < 2 or ins[1] not in self.static:
            raise self.fail(node, "the weights must be a constant")
        x = self.act(ins[0], node)
        wdims = self.dims(ins[1])
        if not wdims or len(wdims) not in (3, 4):
            raise self.fail(node, "only 1-D and 2-D convolutions are supported")
        d = len(wdims) - 2
        cout, cin_g, *k = wdims
        groups = int(self.attr(node, "group", 1))
        xs = self.per_sample(ins[0])
        cin = xs[0] if xs else cin_g * groups
        weights = math.prod(wdims)
        bias = math.prod(self.dims(ins[2]) or (0,)) if len(ins) > 2 and ins[2] else 0
        bits, quant, scales = self.weight_info(node, ins[1])
        if groups > 1 and groups == cin:
            kind = f"depthwise_conv{d}d"
        elif groups == 1 and all(v == 1 for v in k):
            kind = f"pointwise_conv{d}d"
        else:
            kind = f"conv{d}d"
        pads = list(self.attr(node, "pads", [0] * 2 * d))
        attrs = {
            "kernel": list(k),
            "stride": list(self.attr(node, "strides", [1] * d)),
            "padding": pads[:d],
            "groups": groups,
            "activation": "none",
        }
        dil = list(self.attr(node, "dilations", [1] * d))
        if any(v != 1 for v in dil):
            attrs["dilation"] = dil
        p = self.emit(
            node,
            kind,
            [x],
            node.output[0],
            None,
            weights=weights,
            weight_bits=bits,
            bias=bias,
            quant=quant,
            scales=scales if quant == "per_channel" else 1,
            attrs=attrs,
        )
        p.attrs["_cout"] = cout

    def dense(self, node) -> None:
        ins = list(node.input)
        if ins[1] not in self.static:
            raise self.fail(
                node, "products of two activations are not supported (the second operand must be a constant)"
            )
        if node.op_type == "Gemm" and self.attr(node, "transA", 0):
            raise self.fail(node, "transA=1 is not supported")
        wdims = self.dims(ins[1])
        if not wdims or len(wdims) != 2:
            raise self.fail(node, "the weight matrix must be 2-D")
        trans_b = node.op_type == "Gemm" and self.attr(node, "transB", 0)
        fout, fin = (wdims[0], wdims[1]) if trans_b else (wdims[1], wdims[0])
        x = self.act(ins[0], node)
        bias = 0
        if len(ins) > 2 and ins[2]:
            if ins[2] not in self.static:
                raise self.fail(node, "the bias must be a constant")
            bias = math.prod(self.dims(ins[2]) or (0,))
        bits, quant, scales = self.weight_info(node, ins[1])
        xs = self.per_sample(ins[0])
        rows = math.prod(xs[:-1]) if xs and len(xs) > 1 else 1
        self.emit(
            node,
            "linear",
            [x],
            node.output[0],
            None,
            weights=fin * fout,
            weight_bits=bits,
            bias=bias,
            quant=quant,
            scales=scales if quant == "per_channel" else 1,
            macs=fin * fout * rows,
            attrs={"activation": "none", "fout": fout},
        )

    # ---- fusion -------------------------------------------------------------------------------
    def consumers(self) -> dict[str, list[_Proto]]:
        out: dict[str, list[_Proto]] = {}
        for p in self.protos:
            if p.alive:
                for t in p.inputs:
                    out.setdefault(t, []).append(p)
        return out

    def fuse(self) -> None:
        outputs = {self.canon.get(o.name) for o in self.graph.output}
        changed = True
        while changed:
            changed = False
            cons = self.consumers()
            for a in self.protos:
                if not a.alive:
                    continue
                if a.kind == "activation" and a.attrs.get("function") not in _NOT_FUSED | {"requantize"}:
                    t = a.inputs[0]
                    p = self.producer.get(t)
                    if (
                        p is not None
                        and p.alive
                        and (p.kind in GroupOp.WEIGHTED or p.kind in (OpKind.ADD, OpKind.MUL))
                        and p.attrs.get("activation", "none") == "none"
                        and len(cons.get(t, [])) == 1
                        and t not in outputs
                        and not a.weights
                    ):
                        p.output = a.output
                        p.attrs["activation"] = a.attrs["function"]
                        self.producer[a.output] = p
                        a.alive = False
                        changed = True
                elif self.any_quant and a.kind in ("add", "mul") and not a.weights:
                    for i, t in enumerate(a.inputs):
                        p = self.producer.get(t)
                        if (
                            p is not None
                            and p.alive
                            and p.kind == a.kind
                            and not p.weights
                            and p.attrs.get("activation", "none") == "none"
                            and p.attrs.get("onnx_op") == a.attrs.get("onnx_op")
                            and t not in self.quantized
                            and len(cons.get(t, [])) == 1
                            and t not in outputs
                        ):
                            a.inputs = a.inputs[:i] + p.inputs + a.inputs[i + 1 :]
                            p.alive = False
                            changed = True
                            break
                if changed:
                    break

    # ---- the OpGraph --------------------------------------------------------------------------
    def assemble(self, inputs: list[str]) -> OpGraph:
        live = [p for p in self.protos if p.alive]
        used = {t for p in live for t in p.inputs}
        inputs = [t for t in inputs if t in used]
        outputs = []
        for o in self.graph.output:
            t = self.canon.get(o.name)
            if t is None:
                raise InputError(
                    f"{self.src}: graph output {o.name!r} is a constant or is not computed by supported ops"
                )
            if t not in outputs:
                outputs.append(t)
        # names: graph inputs and outputs keep theirs; other tensors are named after their op
        final: dict[str, str] = {}
        taken: set[str] = set()
        for t in inputs:
            final[t] = self.input_names[t]
            taken.add(final[t])
        for o in self.graph.output:
            t = self.canon[o.name]
            if t not in final:
                final[t] = o.name
                taken.add(o.name)
        for p in live:
            if p.output not in final:
                name = p.name
                while name in taken:
                    name += "_out"
                final[p.output] = name
                taken.add(name)

        shapes = {t: self.per_sample(self.onnx_name[t]) for t in final}
        for p in live:  # the op's own ONNX output, when the alias chain has no shape
            if shapes.get(p.output) is None:
                shapes[p.output] = self.per_sample(self.onnx_name[p.output])
        missing = [t for t, s in shapes.items() if s is None]
        if missing:
            filled = self.ort_shapes([self.onnx_name[t] for t in missing])
            for t in missing:
                shapes[t] = filled.get(self.onnx_name[t])
                if shapes[t] is None:
                    raise InputError(
                        f"{self.src}: cannot work out the shape of tensor {self.onnx_name[t]!r} (dynamic shapes are not supported)"
                    )

        tensors = {
            final[t]: Tensor(final[t], shapes[t], min(32, self.bits[t]))
            for t in [*inputs, *(p.output for p in live)]
        }
        ops = []
        for p in live:
            attrs = {k: v for k, v in p.attrs.items() if not k.startswith("_") and k not in ("fout",)}
            macs = p.macs
            if p.kind in GroupOp.CONV:
                macs = p.weights * math.prod(shapes[p.output][1:])
            ops.append(
                Op(
                    p.name,
                    p.kind,
                    tuple(final[t] for t in p.inputs),
                    (final[p.output],),
                    weights=p.weights,
                    weight_bits=p.weight_bits if p.weights else 8,
                    bias=p.bias,
                    quant=p.quant,
                    scales=p.scales if p.weights else 0,
                    macs=macs,
                    attrs=attrs,
                )
            )
        meta = {"source": "onnx", "modalities": {final[t]: list(shapes[t]) for t in inputs}}
        name = self.graph.name or self.path.stem
        graph = OpGraph(
            tensors, ops, [final[t] for t in inputs], [final[t] for t in outputs], name=name, meta=meta
        )
        return graph.validate(self.src)

    def ort_shapes(self, names: list[str]) -> dict[str, tuple[int, ...]]:
        """Shapes the static inference could not give, from one onnxruntime run on zeros."""
        import numpy as np

        try:
            import onnxruntime as ort

            m = self.onnx.ModelProto()
            m.CopyFrom(self.model)
            have = {o.name for o in m.graph.output}
            for n in names:
                if n not in have:
                    m.graph.output.append(self.onnx.helper.make_empty_tensor_value_info(n))
            so = ort.SessionOptions()
            so.log_severity_level = 3
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
            feeds = {}
            for i in sess.get_inputs():
                shape = [d if isinstance(d, int) and d > 0 else 1 for d in i.shape]
                dtype = np.float32 if "float" in i.type else np.int64
                feeds[i.name] = np.zeros(shape, dtype=dtype)
            res = sess.run(names, feeds)
        except Exception:
            return {}
        return {n: tuple(r.shape[1:]) if r.ndim > 1 else tuple(r.shape) for n, r in zip(names, res)}


def graph_from_onnx(path: str | Path) -> OpGraph:
    """The OpGraph of a float or QCDQ ONNX model (see the module docstring for what is read)."""
    import onnx

    path = Path(path)
    try:
        model = onnx.load(str(path))
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    except Exception as e:  # protobuf DecodeError and friends
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{path}: not a valid ONNX model ({msg})") from None
    if not model.graph.node:
        raise InputError(f"{path}: not a valid ONNX model (no graph nodes)")
    return _Importer(model, path).run()
