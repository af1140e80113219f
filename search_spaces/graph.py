"""graph(arch) -> OpGraph: shapes, parameter counts, MACs and bit-widths, worked out analytically.

This must agree layer for layer with `build(arch)` (a property test checks it on hundreds of sampled
archs): every weighted op records in `attrs["module"]` the path of the Brevitas layer it stands for.
No torch here: the search analyses thousands of candidates a second.

Spatial arithmetic: convolutions use padding k // 2 (odd k), so a stride-s conv maps n to
(n - 1) // s + 1; max-pooling by 2 maps n to n // 2; intermediate fusion average-pools each branch to
the smallest grid with a fixed window per axis (`align_window`).
"""

from __future__ import annotations

from memory_models.errors import InputError
from memory_models.graph import Op, OpGraph, Tensor
from memory_models.ops import OpKind

from .arch import Arch, Block, align_window, layers_in_block


class _Builder:
    def __init__(self) -> None:
        self.tensors: dict[str, Tensor] = {}
        self.ops: list[Op] = []

    def tensor(self, name: str, shape: tuple[int, ...], bits: int) -> str:
        self.tensors[name] = Tensor(name, shape, bits)
        return name

    def conv(self, name, module, x, kind, cout, k, s, groups, wbits, abits, activation):
        cin, *sp = self.tensors[x].shape
        d = len(sp)
        out_sp = tuple((n - 1) // s + 1 for n in sp)
        spatial = 1
        for n in out_sp:
            spatial *= n
        kk = k**d
        weights = (cin // groups) * cout * kk
        y = self.tensor(name, (cout, *out_sp), abits)
        self.ops.append(
            Op(
                name,
                OpKind(kind),
                (x,),
                (y,),
                weights=weights,
                weight_bits=wbits,
                bias=cout,
                scales=cout,
                macs=weights * spatial,
                attrs={
                    "module": module,
                    "kernel": [k] * d,
                    "stride": [s] * d,
                    "padding": [k // 2] * d,
                    "groups": groups,
                    "activation": activation,
                },
            )
        )
        return y

    def linear(self, name, module, x, fout, wbits, abits, activation):
        (fin,) = self.tensors[x].shape
        y = self.tensor(name, (fout,), abits)
        self.ops.append(
            Op(
                name,
                OpKind.LINEAR,
                (x,),
                (y,),
                weights=fin * fout,
                weight_bits=wbits,
                bias=fout,
                scales=fout,
                macs=fin * fout,
                attrs={"module": module, "activation": activation},
            )
        )
        return y

    def op(self, name, kind, inputs, shape, bits, **attrs):
        y = self.tensor(name, shape, bits)
        self.ops.append(Op(name, OpKind(kind), tuple(inputs), (y,), attrs=attrs))
        return y


def _block(g: _Builder, prefix: str, module: str, x: str, blk: Block, where: str) -> str:
    cin, *sp = g.tensors[x].shape
    d = len(sp)
    conv, dw, pw = f"conv{d}d", f"depthwise_conv{d}d", f"pointwise_conv{d}d"
    wb, ab = blk.weight_bits, blk.act_bits
    if any((n - 1) // blk.stride + 1 < 1 for n in sp):
        raise InputError(f"{where}: input grid {sp} is too small")
    if blk.op == "conv":
        y = g.conv(
            f"{prefix}.conv",
            f"{module}.conv",
            x,
            conv,
            blk.channels,
            blk.kernel,
            blk.stride,
            1,
            wb[0],
            ab[0],
            "relu",
        )
    elif blk.op == "dwsep":
        h = g.conv(
            f"{prefix}.dw", f"{module}.dw", x, dw, cin, blk.kernel, blk.stride, cin, wb[0], ab[0], "relu"
        )
        y = g.conv(f"{prefix}.pw", f"{module}.pw", h, pw, blk.channels, 1, 1, 1, wb[1], ab[1], "relu")
    else:
        i = 0
        h = x
        if layers_in_block(blk.op, blk.expand) == 3:
            h = g.conv(
                f"{prefix}.expand", f"{module}.expand", x, pw, cin * blk.expand, 1, 1, 1, wb[0], ab[0], "relu"
            )
            i = 1
        mid = g.tensors[h].shape[0]
        h = g.conv(
            f"{prefix}.dw", f"{module}.dw", h, dw, mid, blk.kernel, blk.stride, mid, wb[i], ab[i], "relu"
        )
        y = g.conv(
            f"{prefix}.project",
            f"{module}.project",
            h,
            pw,
            blk.channels,
            1,
            1,
            1,
            wb[i + 1],
            ab[i + 1],
            "none",
        )
        if blk.stride == 1 and cin == blk.channels:
            y = g.op(
                f"{prefix}.add", OpKind.ADD, (y, x), g.tensors[y].shape, ab[i + 1], module=f"{module}.add_q"
            )
    if blk.pool > 1:
        c, *sp = g.tensors[y].shape
        if any(n < blk.pool for n in sp):
            raise InputError(f"{where}: cannot max-pool a grid of {sp} by {blk.pool}")
        pooled = tuple(n // blk.pool for n in sp)
        y = g.op(
            f"{prefix}.pool",
            OpKind(f"maxpool{d}d"),
            (y,),
            (c, *pooled),
            g.tensors[y].bits,
            kernel=[blk.pool] * d,
            stride=[blk.pool] * d,
        )
    return y


def _blocks(g: _Builder, prefix: str, module: str, x: str, blocks: list[Block], where: str) -> str:
    for i, blk in enumerate(blocks):
        x = _block(g, f"{prefix}.b{i}", f"{module}.{i}", x, blk, f"{where}[{i}]")
    return x


def _global_pool(g: _Builder, name: str, module: str, x: str, bits: int) -> str:
    return g.op(name, OpKind.GLOBAL_AVGPOOL, (x,), (g.tensors[x].shape[0],), bits, module=module)


def graph(arch: Arch) -> OpGraph:
    """The OpGraph of an arch (raises InputError if its shapes do not work out)."""
    g = _Builder()
    used = arch.used
    inputs = [g.tensor(b.modality, tuple(b.input_shape), b.input_bits) for b in used]
    f = arch.fusion
    point = f.point if arch.fused else "late"

    feats: list[str] = []
    for b, x in zip(used, inputs):
        m = b.modality
        y = _blocks(g, m, f"branches.{m}.blocks", x, b.blocks, f"branches ({m}) blocks")
        if point == "late":
            last_bits = g.tensors[y].bits
            y = _global_pool(g, f"{m}.gpool", f"branches.{m}.gpool", y, last_bits)
        feats.append(y)

    if point == "intermediate":
        grid = tuple(min(g.tensors[y].shape[1 + i] for y in feats) for i in range(used[0].dims))
        aligned = []
        for b, y in zip(used, feats):
            c, *sp = g.tensors[y].shape
            if tuple(sp) != grid:
                win = [align_window(n, t) for n, t in zip(sp, grid)]
                y = g.op(
                    f"{b.modality}.align",
                    OpKind(f"avgpool{len(sp)}d"),
                    (y,),
                    (c, *grid),
                    g.tensors[y].bits,
                    kernel=[k for k, _ in win],
                    stride=[s for _, s in win],
                    module=f"branches.{b.modality}.align",
                )
            aligned.append(y)
        feats = aligned

    if arch.fused:
        x = _fuse(g, arch, feats)
    else:
        x = feats[0]
    if point in ("early", "intermediate"):
        x = _blocks(g, "trunk", "trunk.blocks", x, arch.trunk, "trunk")
        x = _global_pool(g, "trunk.gpool", "trunk.gpool", x, g.tensors[x].bits)

    h = arch.head
    for i, units in enumerate(h.hidden):
        x = g.linear(f"head.fc{i}", f"head.hidden.{i}", x, units, h.weight_bits[i], h.act_bits[i], "relu")
    x = g.linear("logits", "head.classifier", x, arch.classes, h.weight_bits[-1], h.act_bits[-1], "none")
    key = arch.key()
    meta = {"modalities": {b.modality: list(b.input_shape) for b in used}, "arch": key}
    return OpGraph(g.tensors, g.ops, inputs, [x], name=f"arch-{key}", meta=meta)


def _fuse(g: _Builder, arch: Arch, feats: list[str]) -> str:
    f = arch.fusion
    used = arch.used
    shape0 = g.tensors[feats[0]].shape
    rest = shape0[1:]
    if f.op == "concat":
        width = sum(g.tensors[y].shape[0] for y in feats)
        return g.op("fusion.concat", OpKind.CONCAT, feats, (width, *rest), f.act_bits, module="fusion.out_q")
    if f.op == "add":
        projected = []
        for b, y in zip(used, feats):
            if len(rest):  # feature maps: 1x1 convolution
                kind = f"pointwise_conv{len(rest)}d"
                p = g.conv(
                    f"fusion.proj.{b.modality}",
                    f"fusion.proj.{b.modality}",
                    y,
                    kind,
                    f.channels,
                    1,
                    1,
                    1,
                    f.weight_bits,
                    f.act_bits,
                    "none",
                )
            else:
                p = g.linear(
                    f"fusion.proj.{b.modality}",
                    f"fusion.proj.{b.modality}",
                    y,
                    f.channels,
                    f.weight_bits,
                    f.act_bits,
                    "none",
                )
            projected.append(p)
        return g.op(
            "fusion.add",
            OpKind.ADD,
            projected,
            (f.channels, *rest),
            f.act_bits,
            activation="relu",
            module="fusion.out_q",
        )
    if f.op == "gate":
        hs = [
            g.linear(
                f"fusion.h.{b.modality}",
                f"fusion.proj.{b.modality}",
                y,
                f.channels,
                f.weight_bits,
                f.act_bits,
                "relu",
            )
            for b, y in zip(used, feats)
        ]
        width = sum(g.tensors[y].shape[0] for y in feats)
        cat = g.op("fusion.concat", OpKind.CONCAT, feats, (width,), f.act_bits, module="fusion.cat_q")
        ms = []
        for b, hh in zip(used, hs):
            gate = g.linear(
                f"fusion.gate.{b.modality}",
                f"fusion.gate.{b.modality}",
                cat,
                f.channels,
                f.weight_bits,
                f.act_bits,
                "sigmoid",
            )
            ms.append(
                g.op(
                    f"fusion.mul.{b.modality}",
                    OpKind.MUL,
                    (hh, gate),
                    (f.channels,),
                    f.act_bits,
                    module=f"fusion.mul_q.{b.modality}",
                )
            )
        return g.op("fusion.add", OpKind.ADD, ms, (f.channels,), f.act_bits, module="fusion.out_q")
    # lowrank: per-modality projections to rank x channels, their elementwise product, mean over rank
    width = f.channels * f.rank
    ps = [
        g.linear(
            f"fusion.proj.{b.modality}",
            f"fusion.proj.{b.modality}",
            y,
            width,
            f.weight_bits,
            f.act_bits,
            "none",
        )
        for b, y in zip(used, feats)
    ]
    prod = g.op("fusion.mul", OpKind.MUL, ps, (width,), f.act_bits, module="fusion.mul_q")
    grid = g.op("fusion.rank", OpKind.RESHAPE, (prod,), (f.channels, f.rank), f.act_bits)
    return g.op(
        "fusion.sum", OpKind.GLOBAL_AVGPOOL, (grid,), (f.channels,), f.act_bits, module="fusion.out_q"
    )
