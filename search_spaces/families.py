"""Hand-designed architecture families a search starts from (warm start).

`tinym2net`: the seed paper's design (TinyM2Net): one branch per modality, a convolution stem then
two depthwise-separable blocks, each followed by 2x max-pooling while the grid allows it; global
pooling, late concatenation, a small dense head. The family is a grid over the branch width and the
weight bit-width (the stem and the classifier stay 8-bit, as in the paper's mixed-precision
models); `scaled_to` picks the members that fit a budget, so a study evaluates the strongest
hand design each device can hold before its sampler proposes anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .arch import Arch, Block, Branch, Fusion, Head

WIDTHS = (4, 8, 12, 16, 24, 32, 48)
WEIGHT_BITS = (8, 4, 2)
FAMILIES = ("tinym2net",)


def _branch_blocks(shape: tuple[int, ...], width: int, bits: int) -> list[Block]:
    dims = len(shape) - 1
    kernel = 5 if dims == 1 else 3
    grid = list(shape[1:])
    stride = 2 if min(grid) >= 32 else 1
    blocks = []
    for i, (op, ch) in enumerate((("conv", width), ("dwsep", 2 * width), ("dwsep", 2 * width))):
        s = stride if i == 0 else 1
        grid = [(g - 1) // s + 1 for g in grid]
        pool = 2 if min(grid) >= 2 else 1
        grid = [g // pool for g in grid]
        n = 1 if op == "conv" else 2
        wbits = [8] if i == 0 else [bits] * n
        blocks.append(Block(op, kernel, ch, s, pool, 1, wbits, [8] * n))
    return blocks


def tinym2net(inputs: dict[str, tuple[int, ...]], classes: int, width: int, bits: int) -> Arch:
    """One member: every modality used, branches of `width` (stem) and 2 x `width` channels."""
    branches = [
        Branch(m, list(shape), True, 8, _branch_blocks(tuple(shape), width, bits))
        for m, shape in inputs.items()
    ]
    hidden = max(8, width)
    return Arch(
        classes=classes,
        branches=branches,
        fusion=Fusion(point="late", op="concat"),
        head=Head(hidden=[hidden], weight_bits=[bits, 8], act_bits=[8, 8]),
    ).validate("tinym2net family")


def family(name: str, inputs: dict[str, tuple[int, ...]], classes: int) -> list[Arch]:
    """Every member of a named family, smallest first."""
    if name != "tinym2net":
        raise ValueError(f"unknown family {name!r} (known: {', '.join(FAMILIES)})")
    return [tinym2net(inputs, classes, w, b) for w in WIDTHS for b in WEIGHT_BITS]


def scaled_to(
    members: Iterable[Arch], fits: Callable[[Arch], bool], per_bits: int = 1, bits: tuple[int, ...] = (8, 4)
) -> list[Arch]:
    """The widest `per_bits` members that fit, for each weight bit-width in `bits`: the family scaled
    to a budget (a wider branch at 4 bits and a narrower one at 8 bits reach the same size; which is
    more accurate depends on the data, so both are tried). W2 members are left out by default: each
    seed costs a full training, and 2-bit weights rarely beat 4-bit ones of the same size."""
    by_bits: dict[int, list[Arch]] = {}
    for arch in members:
        b = arch.head.weight_bits[0]
        if b in bits and fits(arch):
            by_bits.setdefault(b, []).append(arch)
    out = []
    for b in sorted(by_bits, reverse=True):
        widest = sorted(by_bits[b], key=lambda a: a.used[0].blocks[0].channels, reverse=True)
        out.extend(widest[:per_bits])
    return out
