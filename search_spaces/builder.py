"""build(arch) -> nn.Module made of Brevitas layers with the arch's bit-widths.

Module paths mirror `graph()`: a weighted op with `attrs["module"] == "branches.acc.blocks.1.dw"` is
the layer at that path, and its output quantizer sits beside it as `dw_act`; a requantizing op
(pooling, joins) names its quantizer directly. The property test walks both.

The model takes a dict of modality tensors (batch first, float) and returns float logits; each used
modality is quantized on entry by a signed `input_bits` quantizer with an observed range (`qinput`), and the
logits leave through an observed-range output quantizer (`qoutput`).
"""

from __future__ import annotations

import torch
from torch import nn

from .arch import Arch, Block, align_window, layers_in_block


class QuantLayers:
    """Brevitas layers at the arch's bit-widths (see quant.py for the scheme)."""

    def __init__(self) -> None:
        from . import quant

        self.conv, self.linear, self.relu = quant.qconv, quant.qlinear, quant.qrelu
        self.identity, self.sigmoid = quant.qidentity, quant.qsigmoid
        self.input, self.output = quant.qinput, quant.qoutput


class FloatLayers:
    """The same topology in plain float torch layers: the teacher, and the float baseline in benchmarks."""

    @staticmethod
    def conv(dims, cin, cout, kernel, stride=1, groups=1, weight_bits=8):
        cls = nn.Conv1d if dims == 1 else nn.Conv2d
        return cls(cin, cout, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=True)

    @staticmethod
    def linear(fin, fout, weight_bits=8):
        return nn.Linear(fin, fout)

    @staticmethod
    def relu(bits):
        return nn.ReLU()

    @staticmethod
    def identity(bits, signed=True):
        return nn.Identity()

    @staticmethod
    def sigmoid(bits):
        return nn.Sigmoid()

    @staticmethod
    def input(bits):
        return nn.Identity()

    @staticmethod
    def output(bits):
        return nn.Identity()


class BlockModule(nn.Module):
    def __init__(self, blk: Block, cin: int, dims: int, L) -> None:
        super().__init__()
        qconv, qrelu, qidentity = L.conv, L.relu, L.identity
        wb, ab = blk.weight_bits, blk.act_bits
        k, s, cout = blk.kernel, blk.stride, blk.channels
        self.op = blk.op
        self.residual = False
        if blk.op == "conv":
            self.conv = qconv(dims, cin, cout, k, s, 1, wb[0])
            self.conv_act = qrelu(ab[0])
            self.signed = False
        elif blk.op == "dwsep":
            self.dw = qconv(dims, cin, cin, k, s, cin, wb[0])
            self.dw_act = qrelu(ab[0])
            self.pw = qconv(dims, cin, cout, 1, 1, 1, wb[1])
            self.pw_act = qrelu(ab[1])
            self.signed = False
        else:
            i = 0
            mid = cin
            self.has_expand = layers_in_block(blk.op, blk.expand) == 3
            if self.has_expand:
                mid = cin * blk.expand
                self.expand = qconv(dims, cin, mid, 1, 1, 1, wb[0])
                self.expand_act = qrelu(ab[0])
                i = 1
            self.dw = qconv(dims, mid, mid, k, s, mid, wb[i])
            self.dw_act = qrelu(ab[i])
            self.project = qconv(dims, mid, cout, 1, 1, 1, wb[i + 1])
            self.project_act = qidentity(ab[i + 1], signed=True)  # linear bottleneck
            self.residual = s == 1 and cin == cout
            if self.residual:
                self.add_q = qidentity(ab[i + 1], signed=True)
            self.signed = True
        pool_cls = nn.MaxPool1d if dims == 1 else nn.MaxPool2d
        self.pool = pool_cls(blk.pool) if blk.pool > 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.op == "conv":
            y = self.conv_act(self.conv(x))
        elif self.op == "dwsep":
            y = self.pw_act(self.pw(self.dw_act(self.dw(x))))
        else:
            h = self.expand_act(self.expand(x)) if self.has_expand else x
            y = self.project_act(self.project(self.dw_act(self.dw(h))))
            if self.residual:
                y = self.add_q(y + x)
        if self.pool is not None:
            y = self.pool(y)
        return y


class GlobalPool(nn.Module):
    """Average over the time / spatial axes, then requantize."""

    def __init__(self, bits: int, signed: bool, L) -> None:
        super().__init__()
        self.q = L.identity(bits, signed=signed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.q(x.mean(dim=tuple(range(2, x.dim()))))


class Align(nn.Module):
    """Average pooling to the fusion grid with a fixed window per axis (`align_window`), then requantize."""

    def __init__(self, dims: int, size: list[int], grid: list[int], bits: int, signed: bool, L) -> None:
        super().__init__()
        win = [align_window(n, t) for n, t in zip(size, grid)]
        kernel, stride = tuple(k for k, _ in win), tuple(st for _, st in win)
        self.pool = nn.AvgPool1d(kernel, stride) if dims == 1 else nn.AvgPool2d(kernel, stride)
        self.q = L.identity(bits, signed=signed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.q(self.pool(x))


class BranchModule(nn.Module):
    def __init__(self, branch, late: bool, align_grid: list[int] | None, L) -> None:
        super().__init__()
        dims = branch.dims
        self.input_q = L.input(branch.input_bits)
        cin = branch.input_shape[0]
        blocks = []
        signed, bits = True, branch.input_bits
        grid = list(branch.input_shape[1:])
        for blk in branch.blocks:
            blocks.append(BlockModule(blk, cin, dims, L))
            cin, signed, bits = blk.channels, blocks[-1].signed, blk.act_bits[-1]
            grid = [(g - 1) // blk.stride + 1 for g in grid]
            grid = [g // blk.pool for g in grid]
        self.blocks = nn.ModuleList(blocks)
        self.out_channels, self.signed, self.bits = cin, signed, bits
        self.gpool = GlobalPool(bits, signed, L) if late else None
        self.align = (
            Align(dims, grid, align_grid, bits, signed, L)
            if align_grid is not None and align_grid != grid
            else None
        )
        self.grid = grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_q(x)
        for blk in self.blocks:
            x = blk(x)
        if self.gpool is not None:
            x = self.gpool(x)
        if self.align is not None:
            x = self.align(x)
        return x


def _grid_after(branch) -> list[int]:
    grid = list(branch.input_shape[1:])
    for blk in branch.blocks:
        grid = [((g - 1) // blk.stride + 1) // blk.pool for g in grid]
    return grid


class Fusion(nn.Module):
    def __init__(self, arch: Arch, widths: dict[str, int], signed: dict[str, bool], dims: int, L) -> None:
        super().__init__()
        qconv, qlinear, qrelu, qidentity, qsigmoid = L.conv, L.linear, L.relu, L.identity, L.sigmoid
        f = arch.fusion
        self.op = f.op
        self.mods = [b.modality for b in arch.used]
        self.vector = dims == 0
        unsigned_in = not any(signed.values())
        if f.op == "concat":
            self.out_q = qidentity(f.act_bits, signed=not unsigned_in)
            self.out_width = sum(widths.values())
            self.signed = not unsigned_in
        elif f.op == "add":
            self.proj = nn.ModuleDict()
            for m in self.mods:
                layer = (
                    qlinear(widths[m], f.channels, f.weight_bits)
                    if dims == 0
                    else qconv(dims, widths[m], f.channels, 1, 1, 1, f.weight_bits)
                )
                self.proj[m] = layer
                self.proj[f"{m}_act"] = qidentity(f.act_bits, signed=True)
            self.out_q = qrelu(f.act_bits)
            self.out_width, self.signed = f.channels, False
        elif f.op == "gate":
            self.proj = nn.ModuleDict()
            self.gate = nn.ModuleDict()
            self.mul_q = nn.ModuleDict()
            total = sum(widths.values())
            self.cat_q = qidentity(f.act_bits, signed=not unsigned_in)
            for m in self.mods:
                self.proj[m] = qlinear(widths[m], f.channels, f.weight_bits)
                self.proj[f"{m}_act"] = qrelu(f.act_bits)
                self.gate[m] = qlinear(total, f.channels, f.weight_bits)
                self.gate[f"{m}_act"] = qsigmoid(f.act_bits)
                self.mul_q[m] = qidentity(f.act_bits, signed=False)
            self.out_q = qidentity(f.act_bits, signed=False)
            self.out_width, self.signed = f.channels, False
        else:  # lowrank
            self.proj = nn.ModuleDict()
            self.rank, self.channels = f.rank, f.channels
            for m in self.mods:
                self.proj[m] = qlinear(widths[m], f.channels * f.rank, f.weight_bits)
                self.proj[f"{m}_act"] = qidentity(f.act_bits, signed=True)
            self.mul_q = qidentity(f.act_bits, signed=True)
            self.out_q = qidentity(f.act_bits, signed=True)
            self.out_width, self.signed = f.channels, True

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        if self.op == "concat":
            return self.out_q(torch.cat(feats, dim=1))
        if self.op == "add":
            total = None
            for m, x in zip(self.mods, feats):
                p = self.proj[f"{m}_act"](self.proj[m](x))
                total = p if total is None else total + p
            return self.out_q(total)
        if self.op == "gate":
            cat = self.cat_q(torch.cat(feats, dim=1))
            total = None
            for m, x in zip(self.mods, feats):
                h = self.proj[f"{m}_act"](self.proj[m](x))
                g = self.gate[f"{m}_act"](self.gate[m](cat))
                p = self.mul_q[m](h * g)
                total = p if total is None else total + p
            return self.out_q(total)
        prod = None
        for m, x in zip(self.mods, feats):
            p = self.proj[f"{m}_act"](self.proj[m](x))
            prod = p if prod is None else prod * p
        prod = self.mul_q(prod)
        return self.out_q(prod.view(prod.shape[0], self.channels, self.rank).mean(dim=2))


class Model(nn.Module):
    def __init__(self, arch: Arch, quantized: bool = True) -> None:
        super().__init__()
        L = QuantLayers() if quantized else FloatLayers()
        self.arch = arch
        self.quantized = quantized
        used = arch.used
        self.modalities = [b.modality for b in used]
        point = arch.fusion.point if arch.fused else "late"
        self.point = point
        align_grid = None
        if point == "intermediate":
            grids = [_grid_after(b) for b in used]
            align_grid = [min(g[i] for g in grids) for i in range(used[0].dims)]
        self.branches = nn.ModuleDict(
            {b.modality: BranchModule(b, point == "late", align_grid, L) for b in used}
        )
        widths = {m: br.out_channels for m, br in self.branches.items()}
        signed = {m: br.signed for m, br in self.branches.items()}
        if point == "early":  # branches only quantize their inputs
            widths = {b.modality: b.input_shape[0] for b in used}
        dims = 0 if point == "late" else used[0].dims
        self.fusion = Fusion(arch, widths, signed, dims, L) if arch.fused else None
        if self.fusion is not None:
            width, is_signed = self.fusion.out_width, self.fusion.signed
        else:
            only = self.branches[self.modalities[0]]
            width, is_signed = only.out_channels, only.signed
        bits = arch.fusion.act_bits if self.fusion is not None else self.branches[self.modalities[0]].bits
        self.trunk = None
        if point in ("early", "intermediate"):
            trunk = nn.Module()
            blocks = []
            for blk in arch.trunk:
                blocks.append(BlockModule(blk, width, dims, L))
                width, is_signed, bits = blk.channels, blocks[-1].signed, blk.act_bits[-1]
            trunk.blocks = nn.ModuleList(blocks)
            trunk.gpool = GlobalPool(bits, is_signed, L)
            self.trunk = trunk
        head = nn.Module()
        head.hidden = nn.ModuleDict()
        h = arch.head
        for i, units in enumerate(h.hidden):
            head.hidden[str(i)] = L.linear(width, units, h.weight_bits[i])
            head.hidden[f"{i}_act"] = L.relu(h.act_bits[i])
            width = units
        head.classifier = L.linear(width, arch.classes, h.weight_bits[-1])
        head.classifier_act = L.output(h.act_bits[-1])
        self.head = head
        self.n_hidden = len(h.hidden)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        feats = [self.branches[m](inputs[m]) for m in self.modalities]
        x = self.fusion(feats) if self.fusion is not None else feats[0]
        if self.trunk is not None:
            for blk in self.trunk.blocks:
                x = blk(x)
            x = self.trunk.gpool(x)
        for i in range(self.n_hidden):
            x = self.head.hidden[f"{i}_act"](self.head.hidden[str(i)](x))
        return self.head.classifier_act(self.head.classifier(x))


class Positional(nn.Module):
    """The same model taking one tensor per used modality, in `modalities` order (for ONNX export)."""

    def __init__(self, model: Model) -> None:
        super().__init__()
        self.model = model
        self.modalities = list(model.modalities)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.model(dict(zip(self.modalities, xs)))


def build(arch: Arch, quantized: bool = True) -> Model:
    """The Brevitas model of `arch` (or, with quantized=False, the same topology in float layers)."""
    return Model(arch, quantized)
