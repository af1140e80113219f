"""Hand-designed architecture families a search starts from (warm start) and is measured against.

`tinym2net`: the seed paper's design (TinyM2Net): one branch per modality, a convolution stem then
two depthwise-separable blocks, each followed by 2x max-pooling while the grid allows it; global
pooling, late concatenation, a small dense head.

`lateconv`: the plain hand design an embedded engineer writes first (and the fixed student of the
distillation and training benches: `lateconv` at width 16, 4-bit weights): per modality an 8-bit
convolution stem and one convolution of twice the width, each followed by 2x max-pooling; late
concatenation; a small dense head. It has no depthwise layers, so it trades flash for accuracy
differently from `tinym2net`; which of the two is better at a size depends on the data (README,
"Training that ranks").

Each family is a grid over the branch width and the weight bit-width (the stem and the classifier
stay 8-bit, as in the paper's mixed-precision models); `scaled_to` picks the members that fit a
budget, so a study evaluates the strongest hand design each device can hold before its sampler
proposes anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import StrEnum

from .arch import Arch, Block, Branch, Fusion, Head

WIDTHS = (4, 8, 12, 16, 24, 32, 48)
WEIGHT_BITS = (8, 4, 2)


class Family(StrEnum):
    TINYM2NET = "tinym2net"
    LATECONV = "lateconv"


FAMILIES = tuple(f.value for f in Family)

# per family: the (op, channels as a multiple of the stem width) of a branch's blocks
_BLOCKS = {
    Family.TINYM2NET: (("conv", 1), ("dwsep", 2), ("dwsep", 2)),
    Family.LATECONV: (("conv", 1), ("conv", 2)),
}


def _branch_blocks(name: Family, shape: tuple[int, ...], width: int, bits: int) -> list[Block]:
    dims = len(shape) - 1
    kernel = 5 if dims == 1 else 3
    grid = list(shape[1:])
    stride = 2 if min(grid) >= 32 else 1
    blocks = []
    for i, (op, mult) in enumerate(_BLOCKS[name]):
        s = stride if i == 0 else 1
        grid = [(g - 1) // s + 1 for g in grid]
        pool = 2 if min(grid) >= 2 else 1
        grid = [g // pool for g in grid]
        n = 2 if op == "dwsep" else 1
        wbits = [8] if i == 0 else [bits] * n
        blocks.append(Block(op, kernel, mult * width, s, pool, 1, wbits, [8] * n))
    return blocks


def member(
    name: Family | str, inputs: dict[str, tuple[int, ...]], classes: int, width: int, bits: int
) -> Arch:
    """One member of a family: every modality used, branches of `width` (stem) channels."""
    name = _family(name)
    branches = [
        Branch(m, list(shape), True, 8, _branch_blocks(name, tuple(shape), width, bits))
        for m, shape in inputs.items()
    ]
    return Arch(
        classes=classes,
        branches=branches,
        fusion=Fusion(point="late", op="concat"),
        head=Head(hidden=[max(8, width)], weight_bits=[bits, 8], act_bits=[8, 8]),
    ).validate(f"{name.value} family")


def family(name: Family | str, inputs: dict[str, tuple[int, ...]], classes: int) -> list[Arch]:
    """Every member of a named family, smallest first."""
    name = _family(name)
    return [member(name, inputs, classes, w, b) for w in WIDTHS for b in WEIGHT_BITS]


def _family(name: Family | str) -> Family:
    try:
        return Family(name)
    except ValueError:
        raise ValueError(f"unknown family {name!r} (known: {', '.join(FAMILIES)})") from None


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
