"""Lower a trained Brevitas model + its memory report to a C99 program (``model.h`` / ``model.c``).

What the generated code is:

* one static ``uint8_t m2nas_arena[M2NAS_ARENA_SIZE]`` (``M2NAS_ARENA_SIZE`` defaults to the
  planned ``arena_bytes``); every tensor of the graph -- the inputs and the logits included -- and
  every kernel scratch (the im2col column the runtime model reserves for k > 1 convolutions) sits at
  the offset the memory model's arena plan gave it, packed at its bit-width. No other RAM but the
  stack of the kernels (a few scalars);
* the operators run in the memory model's schedule (``report.schedule``), one kernel call each;
  views (reshape / flatten) share their source's bytes and run nothing;
* constants: weights packed at 2 / 4 / 8 bits (``m2nas_w_*``, ``ceil(n * bits / 8)`` bytes each,
  so they add up to the report's ``flash.weights``), int32 biases (``m2nas_b_*``, the exact integers
  the Brevitas model adds), per-channel requantization pairs (``m2nas_m_*`` / ``m2nas_s_*``), and a
  256-entry LUT per sigmoid.

Every op kind the search spaces produce is lowered; anything else raises
``InputError("C export: unsupported operator <kind> (<op name>)")``: nothing is skipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from memory_models.errors import InputError
from memory_models.ops import BITS, GroupOp

from .kernels import kernel_source
from .packing import c_array, c_bytes, c_ident, fixed_point, pack, requant_mode, shared_shift, unpack
from .reference import Call

_WEIGHTED = GroupOp.WEIGHTED
_SUPPORTED = GroupOp.C_SUPPORTED


@dataclass
class QInfo:
    """Quantization of one tensor: real value = q * scale, q in [lo, hi], stored at `bits`."""

    scale_t: torch.Tensor  # float32 0-dim, exactly the model's
    bits: int
    signed: bool
    lo: int
    hi: int

    @property
    def scale(self) -> float:
        return float(self.scale_t)


@dataclass(frozen=True)
class TensorAt:
    """A tensor's place in the arena: `numel` elements of `bits` from byte `offset`."""

    name: str
    offset: int
    bits: int
    signed: bool
    numel: int


@dataclass
class CProgram:
    header: str
    source: str
    arena_bytes: int
    weight_arrays: dict[str, int]  # C symbol -> bytes
    weight_bytes: int
    const_bytes: dict[str, int]  # weights / biases / requant / luts
    kernels: list[str]
    schedule: list[str]
    inputs: list[dict[str, Any]]
    output: dict[str, Any]
    steps: list[dict[str, Any]] = field(default_factory=list)
    # The integer program the C runs, call for call (the loads, then the schedule): nas.export.c.reference.
    calls: list[Call] = field(default_factory=list)
    output_tensor: str = ""
    # Arena bytes each scheduled step may write (its outputs and scratch): (offset, size) pairs.
    step_writes: list[list[tuple[int, int]]] = field(default_factory=list)
    step_outputs: list[list[TensorAt]] = field(default_factory=list)  # where each step's outputs sit
    input_regions: list[tuple[int, int]] = field(default_factory=list)
    tensor_q: dict[str, QInfo] = field(default_factory=dict)  # every tensor's quantization


def act_quantizer(module):
    """The ActPerTensorQuant of an activation layer, or of a pooling / join module's requantizer."""
    from search_spaces import quant

    for m in (module, getattr(module, "q", None), getattr(module, "requant", None)):
        if m is None:
            continue
        tq = quant.act_tensor_quant(m)
        if tq is not None:
            return m, tq
    raise InputError(f"C export: no activation quantizer in module {type(module).__name__}")


def qinfo(tq) -> QInfo:
    """The tensor quantization of an activation quantizer, as the generated code needs it."""
    with torch.no_grad():
        scale = (tq.threshold().detach() / tq.qmax).to(torch.float32)
    return QInfo(scale, int(tq.bits), bool(tq.signed), int(tq.qmin), int(tq.qmax))


def _f32(x: float) -> str:
    return f"{x:.9g}f"


def groups_of(op) -> int:
    """Convolution groups of a weighted op (1 for dense layers and linear)."""
    return int(op.attrs.get("groups", 1))


class _Lowering:
    def __init__(self, model, arch, report, dataset=None) -> None:
        self.model = model
        self.arch = arch
        self.report = report
        self.dataset = dataset
        self.g = report.graph
        self.bufs = report.buffers
        self.plan = report.plan
        self.buf_index = {n: i for i, n in enumerate(self.bufs.names)}
        self.q: dict[str, QInfo] = {}
        self.consts: list[str] = []
        self.body: list[str] = []
        self.kernels: set[str] = set()
        self.dense_bits: set[int] = set()  # weight bit-widths of the layers m2_conv / m2_pwconv run
        self.weight_arrays: dict[str, int] = {}
        self.const_bytes = {"weights": 0, "biases": 0, "requant": 0, "luts": 0}
        self.steps: list[dict[str, Any]] = []
        self.calls: list[Call] = []  # of the op being lowered; lower() files them by op
        self.scheduled_calls: list[Call] = []
        self.step_writes: list[list[tuple[int, int]]] = []
        self.step_outputs: list[list[TensorAt]] = []

    # ---- helpers -----------------------------------------------------------------------------
    def module(self, path: str, op=None):
        try:
            return self.model.get_submodule(path)
        except AttributeError:
            where = f" ({op.name})" if op is not None else ""
            raise InputError(f"C export: the model has no module {path!r}{where}") from None

    def ptr(self, tensor: str) -> str:
        b = self.bufs.tensor_info[tensor][0]
        return f"A + {self.plan.offset[b]}"

    def check_bits(self, tensor: str, qi: QInfo, op) -> None:
        bits = self.g.tensors[tensor].bits
        if bits != qi.bits:
            raise InputError(
                f"C export: tensor {tensor!r} is {bits}-bit in the graph but its quantizer is {qi.bits}-bit "
                f"({op.name if op is not None else 'input'})"
            )
        if bits not in BITS:
            raise InputError(f"C export: unsupported activation bit-width {bits} ({tensor})")

    def const(self, ctype: str, name: str, values, kind: str, nbytes: int) -> str:
        self.consts.append(f"const {ctype} {name}[{max(len(values), 1)}] = {{{c_array(values)}}};")
        self.const_bytes[kind] += nbytes
        return name

    @staticmethod
    def grid(shape) -> tuple[int, int, int]:
        c, *sp = shape
        if len(sp) == 1:
            return c, 1, sp[0]
        if len(sp) == 2:
            return c, sp[0], sp[1]
        raise InputError(f"C export: unsupported tensor rank {len(shape)} (shape {list(shape)})")

    def region(self, buffer: int) -> tuple[int, int]:
        return self.plan.offset[buffer], self.plan.size[buffer]

    def tensor_at(self, t: str) -> TensorAt:
        qi = self.q[t]
        return TensorAt(
            t, self.plan.offset[self.bufs.tensor_info[t][0]], qi.bits, qi.signed, self.g.tensors[t].numel
        )

    def call(self, fn: str, inputs: list[str], output: str, /, **params) -> None:
        """Record the kernel call just emitted, for the integer reference (`params`: its constants)."""
        params.setdefault("out_shape", tuple(self.g.tensors[output].shape))
        self.calls.append(Call(fn, list(inputs), output, params))

    # ---- ops ---------------------------------------------------------------------------------
    def lower(self) -> None:
        g = self.g
        for name in g.inputs:
            m = name
            mod = self.module(f"branches.{m}.input_q")
            _, tq = act_quantizer(mod)
            qi = qinfo(tq)
            self.check_bits(name, qi, None)
            self.q[name] = qi
        # Quantization info follows the graph order (producers first); code follows the schedule.
        emitted: dict[int, list[str]] = {}
        calls: dict[int, list[Call]] = {}
        for i, op in enumerate(g.ops):
            if op.kind not in _SUPPORTED:
                raise InputError(f"C export: unsupported operator {op.kind} ({op.name})")
            start = len(self.body)
            self.calls = []
            self.lower_op(i, op)
            emitted[i] = self.body[start:]
            calls[i] = self.calls
            del self.body[start:]
        for step, i in enumerate(self.report.schedule_.order):
            op = g.ops[i]
            self.scheduled_calls.extend(calls[i])
            self.step_writes.append([self.region(b) for b in self.bufs.op_new[i]])
            self.step_outputs.append([self.tensor_at(t) for t in op.outputs])
            self.body.append(f"    /* step {step}: {op.name} ({op.kind}) */")
            self.body.append(f"    M2NAS_OP_HOOK({step});")
            self.body.extend(emitted[i])
            self.steps.append(
                {
                    "step": step,
                    "op": op.name,
                    "kind": op.kind,
                    "macs": op.macs,
                    "weight_bits": op.weight_bits if op.weights else None,
                    "in_bits": [g.tensors[t].bits for t in op.inputs],
                    "out_bits": g.tensors[op.outputs[0]].bits,
                    "elements": g.tensors[op.outputs[0]].numel,
                }
            )
        self.body.append(f"    M2NAS_OP_HOOK({len(self.steps)});")

    def lower_op(self, idx: int, op) -> None:
        kind = op.kind
        if kind in _WEIGHTED:
            return self.weighted(idx, op)
        if kind in ("reshape", "flatten"):
            (x,), (y,) = op.inputs, op.outputs
            if self.bufs.tensor_info[x][0] != self.bufs.tensor_info[y][0]:
                raise InputError(f"C export: view {op.name} does not share its input's buffer")
            self.q[y] = self.q[x]
            self.call("view", [x], y)
            self.body.append("    /* view: shares its input's bytes */")
            return
        if kind.startswith("maxpool"):
            return self.maxpool(op)
        if kind.startswith("avgpool") or kind == "global_avgpool":
            return self.avgpool(op)
        if kind == "concat":
            return self.concat(op)
        if kind == "add":
            return self.add(op)
        if kind == "mul":
            return self.mul(op)
        raise InputError(f"C export: unsupported operator {kind} ({op.name})")

    def out_quant(self, op, path: str) -> QInfo:
        _, tq = act_quantizer(self.module(path, op))
        qi = qinfo(tq)
        (y,) = op.outputs
        self.check_bits(y, qi, op)
        self.q[y] = qi
        return qi

    def weighted(self, idx: int, op) -> None:
        from search_spaces import quant

        a = op.attrs
        path = a.get("module")
        if not path:
            raise InputError(f"C export: {op.name} names no module")
        layer = self.module(path, op)
        (x,), (y,) = op.inputs, op.outputs
        xi = self.q[x]
        act = self.module(path + "_act", op)
        activation = a.get("activation", "none")
        is_sigmoid = isinstance(act, quant.QSigmoid)
        if activation not in ("relu", "none", "sigmoid") or (activation == "sigmoid") != is_sigmoid:
            raise InputError(
                f"C export: unsupported operator {op.kind} with activation {activation} ({op.name})"
            )
        qp = quant.quant_params(layer)
        w_int, w_scale, wbits = qp["weight_int"], qp["weight_scale"].to(torch.float32), qp["weight_bits"]
        if wbits not in BITS:
            raise InputError(f"C export: unsupported weight bit-width {wbits} ({op.name})")
        if w_int.numel() != op.weights or wbits != op.weight_bits:
            raise InputError(
                f"C export: {op.name}: the model's layer has {w_int.numel()} {wbits}-bit weights, the graph "
                f"{op.weights} {op.weight_bits}-bit"
            )
        b_int, _ = quant.int32_bias(layer, xi.scale_t)
        cout = w_int.shape[0]
        _, tq = act_quantizer(act)
        yi = qinfo(tq)
        self.check_bits(y, yi, op)
        self.q[y] = yi
        lut = "NULL"
        lut_lo = 0
        target_scale, lo, hi = yi.scale, yi.lo, yi.hi
        if is_sigmoid:
            itq = quant.act_tensor_quant(act, "input_quant")
            ii = qinfo(itq)
            target_scale, lo, hi = ii.scale, ii.lo, ii.hi
            with torch.no_grad():
                v = torch.arange(ii.lo, ii.hi + 1, dtype=torch.float32) * ii.scale_t
                s = torch.sigmoid(v)
                table = torch.div(s, yi.scale_t).round_().clamp_(yi.lo, yi.hi).to(torch.int64).tolist()
            lut = self.const("uint8_t", f"m2nas_lut_{idx}", table, "luts", len(table))
            lut_lo = ii.lo
        mults, shifts = [], []
        for c in range(cout):
            m, s = fixed_point(xi.scale * float(w_scale[c]) / target_scale, where=f"{op.name} channel {c}")
            mults.append(m)
            shifts.append(s)
        wname = f"m2nas_w_{idx}"
        data = pack(w_int.to(torch.int64).numpy(), wbits)
        self.consts.append(f"const uint8_t {wname}[{len(data)}] = {{{c_bytes(data)}}};")
        self.weight_arrays[wname] = len(data)
        self.const_bytes["weights"] += len(data)
        bname = self.const("int32_t", f"m2nas_b_{idx}", b_int.tolist(), "biases", 4 * cout)
        mname = self.const("int32_t", f"m2nas_m_{idx}", mults, "requant", 4 * cout)
        sname = self.const("int8_t", f"m2nas_s_{idx}", shifts, "requant", cout)
        xs = self.g.tensors[x].shape
        ys = self.g.tensors[y].shape
        common_w = f"{wname}, {wbits}, {bname}, {mname}, {sname}, {lo}, {hi}"
        mode = requant_mode(shifts, b_int.tolist())  # the speed build's fused requantization
        xarg = f"{self.ptr(x)}, {xi.bits}, {int(xi.signed)}"
        if groups_of(op) == 1:
            self.dense_bits.add(wbits)
        ref = {
            "bias": b_int.to(torch.int64).numpy().copy(),
            "mult": np.array(mults, dtype=np.int64),
            "shift": np.array(shifts, dtype=np.int64),
            "lo": lo,
            "hi": hi,
            "lut": None if lut == "NULL" else np.array(table, dtype=np.int64),
            "lut_lo": lut_lo,
            # for other writers of the same program (nas.export.tflite): the real scales behind it
            "w_scale": w_scale.to(torch.float64).numpy().reshape(-1).copy(),
            "acc_scale": target_scale,
        }
        w_ref = unpack(data, wbits, w_int.numel(), signed=True)
        if op.kind == "linear":
            if len(xs) != 1:
                raise InputError(f"C export: linear {op.name} needs a vector input, got shape {list(xs)}")
            self.call(
                "conv",
                [x],
                y,
                in_grid=(xs[0], 1, 1),
                out_grid=(1, 1),
                kernel=(1, 1),
                stride=(1, 1),
                pad=(0, 0),
                groups=1,
                weights=w_ref.reshape(cout, xs[0], 1, 1),
                **ref,
            )
            self.kernels.add("pwconv")
            self.body.append(
                f"    m2_pwconv({xarg}, {xs[0]}, 1, {self.ptr(y)}, {yi.bits}, {cout}, {common_w}, {lut}, {lut_lo}, {mode});"
            )
            return
        if is_sigmoid:
            raise InputError(f"C export: unsupported operator {op.kind} with a sigmoid ({op.name})")
        cin, ih, iw = self.grid(xs)
        _, oh, ow = self.grid(ys)
        d = len(xs) - 1
        k = list(a.get("kernel", [1] * d))
        st = list(a.get("stride", [1] * d))
        pd = list(a.get("padding", [kk // 2 for kk in k]))
        groups = int(a.get("groups", 1))
        if d == 1:
            k, st, pd = [1, *k], [1, *st], [0, *pd]
        kh, kw = k
        sh, sw = st
        ph, pw = pd
        if (ih + 2 * ph - kh) // sh + 1 != oh or (iw + 2 * pw - kw) // sw + 1 != ow:
            raise InputError(f"C export: {op.name}: output grid does not match kernel / stride / padding")
        geo = f"{kh}, {kw}, {sh}, {sw}, {ph}, {pw}"
        self.call(
            "conv",
            [x],
            y,
            in_grid=(cin, ih, iw),
            out_grid=(oh, ow),
            kernel=(kh, kw),
            stride=(sh, sw),
            pad=(ph, pw),
            groups=groups,
            weights=w_ref.reshape(cout, cin // groups, kh, kw),
            **ref,
        )
        scratch = self.buf_index.get(f"{op.name}.scratch")
        if groups == 1 and kh == kw == 1 and sh == sw == 1 and ph == pw == 0 and scratch is None:
            self.kernels.add("pwconv")
            self.body.append(
                f"    m2_pwconv({xarg}, {cin}, {ih * iw}, {self.ptr(y)}, {yi.bits}, {cout}, {common_w}, NULL, 0, {mode});"
            )
        elif groups == 1:
            col = "NULL"
            if scratch is not None:
                need = cin * kh * kw
                if self.plan.size[scratch] < need:
                    raise InputError(
                        f"C export: {op.name}: the plan reserves {self.plan.size[scratch]} B of im2col scratch, "
                        f"the kernel needs {need} B (one int8 column)"
                    )
                col = f"A + {self.plan.offset[scratch]}"
            self.kernels.add("conv")
            self.body.append(
                f"    m2_conv({xarg}, {cin}, {ih}, {iw}, {self.ptr(y)}, {yi.bits}, {cout}, {oh}, {ow}, {geo},\n"
                f"            {common_w}, {col}, {mode});"
            )
        elif groups == cin == cout:
            if scratch is not None:
                raise InputError(
                    f"C export: {op.name}: the plan reserves scratch for a depthwise convolution"
                )
            self.kernels.add("dwconv")
            self.body.append(
                f"    m2_dwconv({xarg}, {cin}, {ih}, {iw}, {self.ptr(y)}, {yi.bits}, {oh}, {ow}, {geo},\n"
                f"              {common_w});"
            )
        else:
            raise InputError(
                f"C export: unsupported operator grouped {op.kind} (groups {groups}) ({op.name})"
            )

    def maxpool(self, op) -> None:
        (x,), (y,) = op.inputs, op.outputs
        xi = self.q[x]
        self.q[y] = xi
        self.check_bits(y, xi, op)
        c, ih, iw = self.grid(self.g.tensors[x].shape)
        _, oh, ow = self.grid(self.g.tensors[y].shape)
        k, st = list(op.attrs.get("kernel", [])), list(op.attrs.get("stride", []))
        if not k:
            raise InputError(f"C export: {op.name}: max pooling without a kernel size")
        st = st or k
        if len(k) == 1:
            k, st = [1, *k], [1, *st]
        if (ih - k[0]) // st[0] + 1 != oh or (iw - k[1]) // st[1] + 1 != ow or op.attrs.get("padding"):
            raise InputError(f"C export: unsupported operator {op.kind} geometry ({op.name})")
        self.call(
            "maxpool", [x], y, in_grid=(c, ih, iw), out_grid=(oh, ow), kernel=tuple(k), stride=tuple(st)
        )
        self.kernels.add("maxpool")
        self.body.append(
            f"    m2_maxpool({self.ptr(x)}, {xi.bits}, {int(xi.signed)}, {c}, {ih}, {iw}, {self.ptr(y)}, {oh}, {ow}, "
            f"{k[0]}, {k[1]}, {st[0]}, {st[1]});"
        )

    def avgpool(self, op) -> None:
        (x,), (y,) = op.inputs, op.outputs
        xi = self.q[x]
        path = op.attrs.get("module")
        if not path:
            raise InputError(f"C export: {op.name} names no requantization module")
        yi = self.out_quant(op, path)
        c, ih, iw = self.grid(self.g.tensors[x].shape)
        if op.kind == "global_avgpool":
            if self.g.tensors[y].shape != (c,):
                raise InputError(f"C export: {op.name}: global pooling output shape mismatch")
            k, st, oh, ow = [ih, iw], [1, 1], 1, 1
        else:
            _, oh, ow = self.grid(self.g.tensors[y].shape)
            k, st = list(op.attrs["kernel"]), list(op.attrs["stride"])
            if len(k) == 1:
                k, st = [1, *k], [1, *st]
            if (ih - k[0]) // st[0] + 1 != oh or (iw - k[1]) // st[1] + 1 != ow or op.attrs.get("padding"):
                raise InputError(f"C export: unsupported operator {op.kind} geometry ({op.name})")
        m, s = fixed_point(xi.scale / (k[0] * k[1] * yi.scale), where=op.name)
        self.call(
            "avgpool",
            [x],
            y,
            in_grid=(c, ih, iw),
            out_grid=(oh, ow),
            kernel=tuple(k),
            stride=tuple(st),
            mult=m,
            shift=s,
            lo=yi.lo,
            hi=yi.hi,
        )
        self.kernels.add("avgpool")
        self.body.append(
            f"    m2_avgpool({self.ptr(x)}, {xi.bits}, {int(xi.signed)}, {c}, {ih}, {iw}, {self.ptr(y)}, {yi.bits}, "
            f"{oh}, {ow}, {k[0]}, {k[1]}, {st[0]}, {st[1]}, {m}, {s}, {yi.lo}, {yi.hi});"
        )

    def concat(self, op) -> None:
        (y,) = op.outputs
        yi = self.out_quant(op, op.attrs.get("module", ""))
        rest = self.g.tensors[y].shape[1:]
        at = 0
        self.kernels.add("requant")
        pairs = []
        for x in op.inputs:
            xi = self.q[x]
            t = self.g.tensors[x]
            if t.shape[1:] != rest:
                raise InputError(f"C export: {op.name}: concatenated tensors differ beyond the channel axis")
            m, s = fixed_point(xi.scale / yi.scale, where=op.name)
            pairs.append((m, s))
            self.body.append(
                f"    m2_requant_copy({self.ptr(x)}, {xi.bits}, {int(xi.signed)}, {t.numel}, {self.ptr(y)}, "
                f"{yi.bits}, {at}, {m}, {s}, {yi.lo}, {yi.hi});"
            )
            at += t.numel
        if at != self.g.tensors[y].numel:
            raise InputError(f"C export: {op.name}: concatenation sizes do not add up")
        self.call("concat", list(op.inputs), y, pairs=pairs, lo=yi.lo, hi=yi.hi)

    def _join_args(self, op) -> tuple[str, list[QInfo]]:
        (y,) = op.outputs
        infos = []
        for x in op.inputs:
            if self.g.tensors[x].numel != self.g.tensors[y].numel:
                raise InputError(f"C export: unsupported operator {op.kind} with broadcasting ({op.name})")
            infos.append(self.q[x])
        n = len(op.inputs)
        ptrs = ", ".join(self.ptr(x) for x in op.inputs)
        bits = ", ".join(str(qi.bits) for qi in infos)
        sgn = ", ".join(str(int(qi.signed)) for qi in infos)
        decl = (
            f"        const uint8_t *const xs[{n}] = {{{ptrs}}};\n"
            f"        static const int8_t xb[{n}] = {{{bits}}}, xg[{n}] = {{{sgn}}};\n"
        )
        return decl, infos

    def add(self, op) -> None:
        (y,) = op.outputs
        yi = self.out_quant(op, op.attrs.get("module", ""))
        decl, infos = self._join_args(op)
        mults, shift = shared_shift([qi.scale / yi.scale for qi in infos], where=op.name)
        n = len(infos)
        self.call("add", list(op.inputs), y, mults=list(mults), shift=shift, lo=yi.lo, hi=yi.hi)
        self.kernels.add("add")
        self.body.append(
            "    {\n" + decl + f"        static const int32_t mu[{n}] = {{{', '.join(map(str, mults))}}};\n"
            f"        m2_add({n}, xs, xb, xg, {self.g.tensors[y].numel}, {self.ptr(y)}, {yi.bits}, mu, {shift}, "
            f"{yi.lo}, {yi.hi});\n    }}"
        )

    def mul(self, op) -> None:
        (y,) = op.outputs
        yi = self.out_quant(op, op.attrs.get("module", ""))
        decl, infos = self._join_args(op)
        mant = min(31, 62 - sum(qi.bits for qi in infos))
        if mant < 8:
            raise InputError(
                f"C export: unsupported operator mul of {len(infos)} inputs ({op.name}): int64 range"
            )
        m, s = fixed_point(math.prod(qi.scale for qi in infos) / yi.scale, mant_bits=mant, where=op.name)
        n = len(infos)
        self.call("mul", list(op.inputs), y, mult=m, shift=s, lo=yi.lo, hi=yi.hi)
        self.kernels.add("mul")
        self.body.append(
            "    {\n" + decl + f"        m2_mul({n}, xs, xb, xg, {self.g.tensors[y].numel}, {self.ptr(y)}, "
            f"{yi.bits}, {m}, {s}, {yi.lo}, {yi.hi});\n    }}"
        )

    # ---- the program -------------------------------------------------------------------------
    def program(self) -> CProgram:
        self.lower()
        g, rep = self.g, self.report
        if len(g.outputs) != 1:
            raise InputError(
                f"C export: the graph has {len(g.outputs)} outputs; one (the logits) is supported"
            )
        out = g.outputs[0]
        oq = self.q[out]
        n_classes = g.tensors[out].numel
        if n_classes != self.arch.classes:
            raise InputError(
                f"C export: the graph output has {n_classes} values for {self.arch.classes} classes"
            )
        arena = rep.plan.arena_bytes
        inputs = []
        for name in g.inputs:
            qi = self.q[name]
            t = g.tensors[name]
            inputs.append(
                {
                    "modality": name,
                    "ident": c_ident(name),
                    "shape": list(t.shape),
                    "size": t.numel,
                    "scale": qi.scale,
                    "bits": qi.bits,
                    "min": qi.lo,
                    "max": qi.hi,
                    "offset": self.plan.offset[self.bufs.tensor_info[name][0]],
                }
            )
        classes = list(getattr(self.dataset, "classes", None) or [str(i) for i in range(n_classes)])
        if len(classes) != n_classes:
            classes = [str(i) for i in range(n_classes)]
        loads = [
            Call("load", [d["modality"]], d["modality"], {"lo": d["min"], "hi": d["max"]}) for d in inputs
        ]
        header = _header(self.arch, rep, inputs, oq, n_classes, classes, self.weight_arrays, len(self.steps))
        load = "\n".join(
            f"    m2_load(inputs[{i}], {d['size']}, {self.ptr(d['modality'])}, {d['bits']}, {d['min']}, {d['max']});"
            for i, d in enumerate(inputs)
        )
        params = ", ".join(f"const int8_t *{d['ident']}" for d in inputs)
        names = ", ".join(d["ident"] for d in inputs)
        src = [
            "/* Generated by m2nas (nas.export.c): integer-only inference in one static arena. Do not edit. */",
            '#include "model.h"',
            "#include <stddef.h>",
            "",
            "#ifndef M2NAS_ARENA_SIZE",
            f"#define M2NAS_ARENA_SIZE {arena} /* the memory model's planned arena_bytes */",
            "#endif",
            "#ifndef M2NAS_ARENA_ATTR",
            '#define M2NAS_ARENA_ATTR /* e.g. __attribute__((aligned(4), section(".sram"))) */',
            "#endif",
            "#ifndef M2NAS_BEGIN_HOOK",
            "#define M2NAS_BEGIN_HOOK() /* the arena trace fills a canary here (nas.export.c.verify) */",
            "#endif",
            "#ifndef M2NAS_OP_HOOK",
            "#define M2NAS_OP_HOOK(step) /* a profiling build times each step here (nas.export.c.cortexm) */",
            "#endif",
            "",
            "static uint8_t m2nas_arena[M2NAS_ARENA_SIZE] M2NAS_ARENA_ATTR;",
            "",
            "const int32_t m2nas_input_sizes[M2NAS_NUM_INPUTS] = {"
            + ", ".join(str(d["size"]) for d in inputs)
            + "};",
            "const float m2nas_input_scales[M2NAS_NUM_INPUTS] = {"
            + ", ".join(_f32(d["scale"]) for d in inputs)
            + "};",
            "const char *const m2nas_class_names[M2NAS_NUM_CLASSES] = {"
            + ", ".join(_c_string(c) for c in classes)
            + "};",
            "",
            "/* ---- constants (flash) ---- */",
            *self.consts,
            "",
            "/* ---- kernels ---- */",
            "/* the dot products of the dense layers' weight bit-widths (m2_kernels.h: M2_W8, M2_W4, M2_W2) */",
            *(f"#define M2_W{b} {int(b in self.dense_bits)}" for b in (8, 4, 2)),
            kernel_source(self.kernels),
            "/* ---- the network, in the planned schedule ---- */",
            "int m2nas_infer_all(const int8_t *const inputs[], int8_t logits[])",
            "{",
            "    uint8_t *A = m2nas_arena;",
            "    M2_OPAQUE(A); /* kernels never see a constant arena address (m2_kernels.h) */",
            "    int32_t i, best = 0;",
            "    M2NAS_BEGIN_HOOK();",
            load,
            *self.body,
            "    /* logits: the graph output, in the arena too */",
            f"    for (i = 0; i < {n_classes}; ++i) {{",
            f"        logits[i] = (int8_t)m2_ld({self.ptr(out)}, i, {oq.bits}, {int(oq.signed)});",
            "        if (logits[i] > logits[best])",
            "            best = i;",
            "    }",
            "    return (int)best;",
            "}",
            "",
            f"int m2nas_infer({params}, int8_t logits[M2NAS_NUM_CLASSES])",
            "{",
            f"    const int8_t *const inputs[M2NAS_NUM_INPUTS] = {{{names}}};",
            "    return m2nas_infer_all(inputs, logits);",
            "}",
            "",
        ]
        return CProgram(
            header=header,
            source="\n".join(src),
            arena_bytes=arena,
            weight_arrays=dict(self.weight_arrays),
            weight_bytes=sum(self.weight_arrays.values()),
            const_bytes=dict(self.const_bytes),
            kernels=sorted(self.kernels),
            schedule=list(rep.schedule),
            inputs=inputs,
            output={"bits": oq.bits, "scale": oq.scale, "min": oq.lo, "max": oq.hi, "classes": classes},
            steps=self.steps,
            calls=loads + self.scheduled_calls,
            output_tensor=out,
            step_writes=self.step_writes,
            step_outputs=self.step_outputs,
            input_regions=[self.region(self.bufs.tensor_info[d["modality"]][0]) for d in inputs],
            tensor_q=dict(self.q),
        )


def _c_string(s: str) -> str:
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _header(arch, rep, inputs, oq: QInfo, n_classes: int, classes, weight_arrays, n_steps: int) -> str:
    lines = [
        "/* Generated by m2nas (nas.export.c). Do not edit.",
        "",
        f"   Arch {arch.key()}: {arch.summary()}",
        f"   Device {rep.device}: planned arena {rep.plan.arena_bytes} B (alignment {rep.buffers.alignment}),",
        f"   packed weights {sum(weight_arrays.values())} B, {len(rep.schedule)} scheduled ops.",
        "",
        "   Inputs: int8 values already quantized with the model's input quantizer of each modality:",
        "       q = clamp(round_half_even(x / M2NAS_INPUT_<M>_SCALE), M2NAS_INPUT_<M>_MIN, M2NAS_INPUT_<M>_MAX)",
        "   in float32, channel-first (C, L) or (C, H, W), C order. Output: int8 logits on the output",
        "   quantizer's grid (logit = q * M2NAS_OUTPUT_SCALE); the return value is the arg max (first",
        "   on ties). Not reentrant: all tensors live in one static arena. */",
        "#ifndef M2NAS_MODEL_H",
        "#define M2NAS_MODEL_H",
        "",
        "#include <stdint.h>",
        "",
        f"#define M2NAS_ARENA_BYTES {rep.plan.arena_bytes}",
        f"#define M2NAS_WEIGHT_BYTES {sum(weight_arrays.values())}",
        f"#define M2NAS_NUM_INPUTS {len(inputs)}",
        f"#define M2NAS_NUM_CLASSES {n_classes}",
        f"#define M2NAS_NUM_STEPS {n_steps}",
        f"#define M2NAS_OUTPUT_SCALE {_f32(oq.scale)}",
        f"#define M2NAS_OUTPUT_MIN {oq.lo}",
        f"#define M2NAS_OUTPUT_MAX {oq.hi}",
    ]
    size_sum = 0
    for i, d in enumerate(inputs):
        u = d["ident"].upper()
        shape = "x".join(map(str, d["shape"]))
        lines += [
            "",
            f"/* input {i}: {d['modality']}, shape {shape}, {d['bits']}-bit */",
            f"#define M2NAS_INPUT_{u}_SIZE {d['size']}",
            f"#define M2NAS_INPUT_{u}_SCALE {_f32(d['scale'])}",
            f"#define M2NAS_INPUT_{u}_MIN {d['min']}",
            f"#define M2NAS_INPUT_{u}_MAX {d['max']}",
        ]
        size_sum += d["size"]
    params = ", ".join(f"const int8_t *{d['ident']}" for d in inputs)
    lines += [
        "",
        f"#define M2NAS_INPUT_TOTAL_SIZE {size_sum}",
        "",
        "extern const int32_t m2nas_input_sizes[M2NAS_NUM_INPUTS];",
        "extern const float m2nas_input_scales[M2NAS_NUM_INPUTS];",
        "extern const char *const m2nas_class_names[M2NAS_NUM_CLASSES];",
        "",
        "/* One inference; returns the predicted class. */",
        f"int m2nas_infer({params}, int8_t logits[M2NAS_NUM_CLASSES]);",
        "/* The same, inputs in the order above. */",
        "int m2nas_infer_all(const int8_t *const inputs[], int8_t logits[]);",
        "",
        "#endif /* M2NAS_MODEL_H */",
        "",
    ]
    return "\n".join(lines)


def lower(model, arch, report, dataset=None) -> CProgram:
    """The C program of a trained Brevitas `model` of `arch`, laid out as `report` planned it."""
    meta_key = report.graph.meta.get("arch") if report.graph.meta else None
    if meta_key is not None and meta_key != arch.key():
        raise InputError("C export: the memory report was computed for another arch")
    return _Lowering(model, arch, report, dataset).program()
