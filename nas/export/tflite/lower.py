"""The lowered integer program (`nas.export.c.emit.CProgram`) as an int8 TFLite model.

The same calls, constants and quantization the C runs, in TFLite's terms:

* activations are int8 in NHWC: a (C, L) tensor is [1, 1, L, C], (C, H, W) is [1, H, W, C], a
  vector (C,) is [1, C]; the (C, R) grid of low-rank fusion is [1, C, R]. An unsigned m2nas tensor
  u in [0, 255] of scale s is the int8 value u - 128 with zero point -128 (the same real values);
  a signed one has zero point 0. Sub-byte activations have no TFLite Micro kernel: refused, naming
  the layer and the study option that keeps them at 8 bits;
* weights are int8, per output channel (2- and 4-bit values are stored in int8 too: the file is
  larger than the C's packed weights; TFLite's INT4 filter storage is not written), biases int32 at
  s_in * s_w; padding is TFLite's SAME where that is the same window as the C's (odd kernels at
  stride 1), otherwise an explicit PAD (zero point) before a VALID convolution;
* average pooling keeps its input's scale in TFLite Micro, so a QUANTIZE follows it; global pooling
  is MEAN; a concatenation's inputs are requantized to its output first (QUANTIZE); the sigmoid of
  gate fusion is the layer at the sigmoid's input scale, LOGISTIC (output 1/256, zero point -128),
  then QUANTIZE to the gate's scale.

TFLite Micro requantizes with its own multiplier and rounding (from the same float scales), so its
logits may differ from the integer reference by a step where a value sits on a rounding tie: the
export measures that (`nas.export.tflite.check`).
"""

from __future__ import annotations

import numpy as np
import tflite

from memory_models.errors import InputError

from .flatbuffer import TfModel, TfTensor

_SIGMOID_SCALE = 1.0 / 256.0


class _Lowering:
    def __init__(self, prog) -> None:
        self.prog = prog
        self.m = TfModel(description="m2nas: int8, from the program of model.c")
        self.index: dict[str, int] = {}
        self.layout: dict[str, str] = {}
        self.q = prog.tensor_q

    # ---- tensors ------------------------------------------------------------------------------
    def tf_shape(self, name: str, shape: tuple[int, ...], layout: str) -> tuple[int, ...]:
        if layout == "rows":
            return (1, *shape)
        if len(shape) == 1:
            return (1, shape[0])
        if len(shape) == 2:
            return (1, 1, shape[1], shape[0])
        if len(shape) == 3:
            return (1, shape[1], shape[2], shape[0])
        raise InputError(f"TFLite export: tensor {name!r} has an unsupported rank {len(shape)}")

    def quant(self, name: str, where: str) -> tuple[float, int]:
        qi = self.q[name]
        if qi.bits != 8:
            raise InputError(
                f"TFLite export: {where}: tensor {name!r} is {qi.bits}-bit; TFLite Micro's kernels take "
                "int8 activations: search with [search_space] act_bits = [8]"
            )
        return qi.scale, 0 if qi.signed else -128

    def activation(self, name: str, shape, where: str, layout: str | None = None) -> int:
        scale, zp = self.quant(name, where)
        layout = layout or ("vector" if len(shape) == 1 else "nhwc")
        t = TfTensor(name, self.tf_shape(name, tuple(shape), layout), np.dtype(np.int8), [scale], [zp])
        self.index[name] = self.m.tensor(t)
        self.layout[name] = layout
        return self.index[name]

    def extra(self, like: int, name: str, scale: float, zp: int, shape=None) -> int:
        t = self.m.tensors[like]
        return self.m.tensor(TfTensor(name, tuple(shape or t.shape), np.dtype(np.int8), [scale], [zp]))

    def requantized(self, src: int, name: str, scale: float, zp: int) -> int:
        t = self.m.tensors[src]
        if abs(t.scale[0] - scale) <= 1e-12 * scale and t.zero_point[0] == zp:
            return src
        dst = self.extra(src, name, scale, zp)
        self.m.op("QUANTIZE", [src], [dst])
        return dst

    # ---- ops ----------------------------------------------------------------------------------
    def conv(self, c, where: str) -> None:
        p = c.params
        (x,) = c.inputs
        xi = self.index[x]
        cout, _, kh, kw = p["weights"].shape
        x_scale = self.quant(x, where)[0]
        out_final = c.output
        sig = p.get("lut") is not None
        shape_out = p["out_shape"]
        if sig:  # the layer lands at the sigmoid's input scale; LOGISTIC and QUANTIZE follow
            yi_acc = self.m.tensor(
                TfTensor(
                    f"{out_final}.pre_sigmoid",
                    self.tf_shape(out_final, tuple(shape_out), "vector" if len(shape_out) == 1 else "nhwc"),
                    np.dtype(np.int8),
                    [p["acc_scale"]],
                    [0 if p["lo"] < 0 else -128],
                )
            )
        else:
            yi_acc = self.activation(out_final, shape_out, where)
        w = p["weights"].astype(np.int8)
        bias = p["bias"].astype(np.int32)
        w_scale = [float(s) for s in p["w_scale"]]
        b_scale = [x_scale * s for s in w_scale]
        name = f"{out_final}.w"
        bt = self.m.const(f"{out_final}.b", bias, b_scale, [0] * cout)
        vector_in = self.layout[x] == "vector"
        if vector_in:  # a dense layer
            wt = self.m.const(name, w.reshape(cout, -1), w_scale, [0] * cout, axis=0)
            self.m.op("FULLY_CONNECTED", [xi, wt, bt], [yi_acc])
        else:
            xi = self.padded(x, xi, p)
            pad = "SAME" if self.same(p) else "VALID"
            padding = getattr(tflite.Padding, pad)
            if p["groups"] == 1:
                wt = self.m.const(name, w.transpose(0, 2, 3, 1), w_scale, [0] * cout, axis=0)
                self.m.op("CONV_2D", [xi, wt, bt], [yi_acc], padding=padding, stride=p["stride"])
            else:
                wt = self.m.const(
                    name, w.reshape(cout, kh, kw).transpose(1, 2, 0)[None], w_scale, [0] * cout, axis=3
                )
                self.m.op("DEPTHWISE_CONV_2D", [xi, wt, bt], [yi_acc], padding=padding, stride=p["stride"])
        if sig:
            s_out = self.extra(yi_acc, f"{out_final}.sigmoid", _SIGMOID_SCALE, -128)
            self.m.op("LOGISTIC", [yi_acc], [s_out])
            final = self.activation(out_final, shape_out, where)
            self.m.op("QUANTIZE", [s_out], [final])

    @staticmethod
    def same(p) -> bool:
        """TFLite SAME pads (k - 1) // 2 before at stride 1: the C's k // 2 for odd kernels."""
        (kh, kw), (sh, sw), (ph, pw) = p["kernel"], p["stride"], p["pad"]
        return (
            (ph, pw) != (0, 0) and sh == sw == 1 and kh % 2 == kw % 2 == 1 and (ph, pw) == (kh // 2, kw // 2)
        )

    def padded(self, x: str, xi: int, p) -> int:
        ph, pw = p["pad"]
        if (ph, pw) == (0, 0) or self.same(p):
            return xi
        t = self.m.tensors[xi]
        _, h, w, c = t.shape
        pads = self.m.const(f"{x}.pads", np.array([[0, 0], [ph, ph], [pw, pw], [0, 0]], np.int32))
        out = self.extra(xi, f"{x}.padded", t.scale[0], t.zero_point[0], (1, h + 2 * ph, w + 2 * pw, c))
        self.m.op("PAD", [xi, pads], [out])
        return out

    def pool(self, c, where: str) -> None:
        p = c.params
        (x,) = c.inputs
        xi = self.index[x]
        if c.kernel == "maxpool":
            y = self.activation(c.output, p["out_shape"], where)
            self.m.op("MAX_POOL_2D", [xi], [y], kernel=p["kernel"], stride=p["stride"])
            return
        t = self.m.tensors[xi]
        if len(p["out_shape"]) == 1:  # global pooling: MEAN
            axes = [2] if self.layout[x] == "rows" else [1, 2]
            ax = self.m.const(f"{c.output}.axes", np.array(axes, np.int32))
            y = self.activation(c.output, p["out_shape"], where)
            self.m.op("MEAN", [xi, ax], [y])
            return
        pooled = self.extra(
            xi,
            f"{c.output}.avg",
            t.scale[0],
            t.zero_point[0],
            self.tf_shape(c.output, p["out_shape"], "nhwc"),
        )
        self.m.op("AVERAGE_POOL_2D", [xi], [pooled], kernel=p["kernel"], stride=p["stride"])
        y = self.activation(c.output, p["out_shape"], where)
        self.m.op("QUANTIZE", [pooled], [y])

    def join(self, c, where: str) -> None:
        y = self.activation(c.output, c.params["out_shape"], where)
        ys = self.m.tensors[y]
        xs = [self.index[x] for x in c.inputs]
        if c.kernel == "concat":
            xs = [
                self.requantized(i, f"{x}.for_{c.output}", ys.scale[0], ys.zero_point[0])
                for i, x in zip(xs, c.inputs, strict=True)
            ]
            self.m.op("CONCATENATION", xs, [y], axis=len(ys.shape) - 1)
            return
        if len(xs) != 2:
            for_two = xs[0]
            for k, nxt in enumerate(xs[1:], 1):  # a chain of binary ops at the output's scale
                mid = (
                    y
                    if k == len(xs) - 1
                    else self.extra(y, f"{c.output}.part{k}", ys.scale[0], ys.zero_point[0])
                )
                self.m.op("ADD" if c.kernel == "add" else "MUL", [for_two, nxt], [mid])
                for_two = mid
            return
        self.m.op("ADD" if c.kernel == "add" else "MUL", xs, [y])

    def view(self, c, where: str) -> None:
        (x,) = c.inputs
        shape = c.params["out_shape"]
        layout = "rows" if len(shape) == 2 and self.layout[x] == "vector" else None
        if layout is None and len(shape) != 1:
            raise InputError(f"TFLite export: {where}: a reshape to {list(shape)} has no NHWC equivalent")
        y = self.activation(c.output, shape, where, layout)
        self.m.op("RESHAPE", [self.index[x]], [y], shape=self.m.tensors[y].shape)

    # ---- the model ----------------------------------------------------------------------------
    def lower(self) -> TfModel:
        for c in self.prog.calls:
            where = f"{c.kernel} -> {c.output}"
            if c.kernel == "load":
                (x,) = c.inputs
                self.m.inputs.append(
                    self.activation(x, self.prog.inputs[len(self.m.inputs)]["shape"], f"input {x}")
                )
            elif c.kernel == "conv":
                self.conv(c, where)
            elif c.kernel in ("maxpool", "avgpool"):
                self.pool(c, where)
            elif c.kernel in ("concat", "add", "mul"):
                self.join(c, where)
            elif c.kernel == "view":
                self.view(c, where)
            else:
                raise InputError(f"TFLite export: no TFLite operator for {c.kernel} ({c.output})")
        self.m.outputs = [self.index[self.prog.output_tensor]]
        return self.m


def lower_to_tflite(prog) -> TfModel:
    """The TFLite model of the C program `prog` (inputs and logits as in model.h, NHWC)."""
    return _Lowering(prog).lower()


def tflite_inputs(prog, q: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The int8 NHWC input tensors of the TFLite model for m2nas's quantized inputs `q`."""
    out = []
    for d in prog.inputs:
        x = np.asarray(q[d["modality"]], dtype=np.int64)
        if not prog.tensor_q[d["modality"]].signed:
            x = x - 128
        x = np.moveaxis(x, 1, -1)  # (N, C, L) -> (N, L, C); (N, C, H, W) -> (N, H, W, C)
        if x.ndim == 3:
            x = x[:, None]
        out.append(x.astype(np.int8))
    return out


def from_tflite_logits(prog, y: np.ndarray) -> np.ndarray:
    """TFLite's int8 logits back on m2nas's output grid (unsigned outputs shifted back by 128)."""
    y = np.asarray(y, dtype=np.int64).reshape(len(y), -1)
    return y if prog.tensor_q[prog.output_tensor].signed else y + 128
