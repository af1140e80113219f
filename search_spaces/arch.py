"""Arch: one candidate network, as plain data.

Everything downstream (the memory model via `graph()`, the trainer via `build()`, artifacts, export,
`m2nas memory`) reads the same JSON, so the description is complete: it carries the input shape of
each modality, the effective stride/pool choices after shape repair, and the bit-width of every
quantized layer.

Layout of a network:
- one `Branch` per dataset modality (unused ones kept, marked `used = false`, so that the JSON says
  the sensor was dropped); a branch is a list of `Block`s whose first block is the stem;
- a `Fusion` point and operator: `early` (inputs stacked on the channel axis, or projected and added,
  before any block), `intermediate` (after each branch's blocks, grids aligned by average pooling) or
  `late` (after each branch's global pooling; also gating and low-rank fusion);
- a shared `trunk` of blocks after early / intermediate fusion, then global pooling;
- a `Head` of 0 to 2 hidden dense layers and the classifier.
With a single used modality there is no fusion operator: the branch feeds the head.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from memory_models.errors import InputError, check_document, parse_json
from memory_models.ops import BITS

FORMAT = "m2nas.arch"
VERSION = 1

BLOCK_OPS = ("conv", "dwsep", "mbconv")
FUSION_POINTS = ("early", "intermediate", "late")
FUSION_OPS = ("concat", "add", "gate", "lowrank")
# Which operators make sense at which point: gating and low-rank products act on pooled vectors.
VALID_FUSION_OPS = {"early": ("concat", "add"), "intermediate": ("concat", "add"), "late": FUSION_OPS}


def layers_in_block(op: str, expand: int) -> int:
    """Quantized layers in a block: conv 1; depthwise-separable 2 (dw, pw); inverted residual 3
    (pw expand, dw, pw project), or 2 when the expansion ratio is 1 (no expand layer)."""
    if op == "conv":
        return 1
    if op == "dwsep":
        return 2
    return 3 if expand > 1 else 2


def align_window(size: int, target: int) -> tuple[int, int]:
    """(kernel, stride) of the average pool that maps `size` to exactly `target` positions.

    Adaptive pooling with a non-dividing grid has variable windows that ONNX and integer kernels do
    not have; a fixed window with stride floor(size/target) and kernel size-(target-1)*stride covers
    every position, equals adaptive pooling when target divides size, and exports as AveragePool."""
    stride = size // target
    return size - (target - 1) * stride, stride


@dataclass
class Block:
    op: str  # conv | dwsep | mbconv
    kernel: int
    channels: int  # output channels
    stride: int = 1  # applied by the block's spatial (or depthwise) convolution
    pool: int = 1  # max-pool window after the block (1 = none)
    expand: int = 1  # inverted-residual expansion ratio (mbconv only)
    weight_bits: list[int] = field(default_factory=lambda: [8])  # one per quantized layer
    act_bits: list[int] = field(default_factory=lambda: [8])  # output activation of each layer


@dataclass
class Branch:
    modality: str
    input_shape: list[int]  # (C, L) or (C, H, W)
    used: bool = True
    input_bits: int = 8
    blocks: list[Block] = field(default_factory=list)

    @property
    def dims(self) -> int:
        return len(self.input_shape) - 1


@dataclass
class Fusion:
    point: str = "late"  # early | intermediate | late (ignored with one used modality)
    op: str = "concat"  # concat | add | gate | lowrank
    channels: int = 0  # projection width for add / gate / lowrank
    rank: int = 0  # lowrank only
    weight_bits: int = 8  # of the fusion projections
    act_bits: int = 8  # of the fused tensor


@dataclass
class Head:
    hidden: list[int] = field(default_factory=list)  # 0 to 2 hidden dense layers
    weight_bits: list[int] = field(default_factory=lambda: [8])  # hidden layers then the classifier
    act_bits: list[int] = field(default_factory=lambda: [8])  # hidden layers' outputs, then the logits


@dataclass
class Arch:
    classes: int
    branches: list[Branch]
    fusion: Fusion = field(default_factory=Fusion)
    trunk: list[Block] = field(default_factory=list)
    head: Head = field(default_factory=Head)

    @property
    def used(self) -> list[Branch]:
        return [b for b in self.branches if b.used]

    @property
    def fused(self) -> bool:
        return len(self.used) > 1

    # ---- identity and JSON -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        # Written out rather than dataclasses.asdict, which deep-copies and is ~20x slower; the search
        # keys every candidate by its JSON.
        def block(b: Block) -> dict[str, Any]:
            return {
                "op": b.op,
                "kernel": b.kernel,
                "channels": b.channels,
                "stride": b.stride,
                "pool": b.pool,
                "expand": b.expand,
                "weight_bits": list(b.weight_bits),
                "act_bits": list(b.act_bits),
            }

        f, h = self.fusion, self.head
        return {
            "format": FORMAT,
            "version": VERSION,
            "classes": self.classes,
            "branches": [
                {
                    "modality": b.modality,
                    "input_shape": list(b.input_shape),
                    "used": b.used,
                    "input_bits": b.input_bits,
                    "blocks": [block(x) for x in b.blocks],
                }
                for b in self.branches
            ],
            "fusion": {
                "point": f.point,
                "op": f.op,
                "channels": f.channels,
                "rank": f.rank,
                "weight_bits": f.weight_bits,
                "act_bits": f.act_bits,
            },
            "trunk": [block(x) for x in self.trunk],
            "head": {
                "hidden": list(h.hidden),
                "weight_bits": list(h.weight_bits),
                "act_bits": list(h.act_bits),
            },
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, separators=None if indent else (",", ":"))

    def key(self) -> str:
        """A short stable id: equal archs have equal keys."""
        return hashlib.sha1(self.to_json().encode()).hexdigest()[:12]

    def summary(self) -> str:
        """One line a person reads: the used branches, then the modalities the search left out, named as
        such ("acc + gyro: dropped" read as if both were dropped)."""
        parts = []
        for b in self.used:
            blocks = " ".join(f"{blk.op}{blk.kernel}x{blk.channels}/{blk.stride}" for blk in b.blocks) or "-"
            parts.append(f"{b.modality}[{blocks}]")
        unused = [b.modality for b in self.branches if not b.used]
        left_out = f" ({' and '.join(unused)} not used)" if unused else ""
        fusion = f"{self.fusion.point}-{self.fusion.op}" if self.fused else "single"
        trunk = " ".join(f"{blk.op}{blk.kernel}x{blk.channels}/{blk.stride}" for blk in self.trunk)
        head = "-".join(str(h) for h in self.head.hidden)
        return (
            f"{' + '.join(parts)}{left_out} | {fusion}{' trunk[' + trunk + ']' if trunk else ''} "
            f"| head[{head or 'linear'}]"
        )

    @classmethod
    def from_dict(cls, d: Any, source: str = "arch") -> Arch:
        check_document(d, source, FORMAT, VERSION, "Arch")
        _check_fields(d, ARCH_FIELDS, source, "")
        try:
            arch = cls(
                classes=d["classes"],
                branches=[
                    Branch(
                        modality=b["modality"],
                        input_shape=list(b["input_shape"]),
                        used=b.get("used", True),
                        input_bits=b.get("input_bits", 8),
                        blocks=[_block(x) for x in b.get("blocks", [])],
                    )
                    for b in d["branches"]
                ],
                fusion=Fusion(**d.get("fusion", {})),
                trunk=[_block(x) for x in d.get("trunk", [])],
                head=Head(**d.get("head", {})),
            )
        except KeyError as e:
            raise InputError(f"{source}: missing field {e.args[0]!r}") from None
        except TypeError as e:
            raise InputError(f"{source}: {e}") from None
        return arch.validate(source)

    @classmethod
    def from_json(cls, text: str, source: str = "arch") -> Arch:
        return cls.from_dict(parse_json(text, source), source)

    # ---- validity ----------------------------------------------------------------------------
    def validate(self, source: str = "arch") -> Arch:
        """Structural rules every sampled or hand-written arch must satisfy (shapes are checked by
        `graph()`, which knows the arithmetic)."""

        def fail(where: str, msg: str):
            raise InputError(f"{source}: {where}: {msg}")

        if not _is_int(self.classes) or not 2 <= self.classes <= MAX_WIDTH:
            fail("classes", f"must be an integer in 2..{MAX_WIDTH}, got {self.classes!r}")
        if not self.branches:
            fail("branches", "at least one modality is needed")
        if not self.used:
            fail("branches", "every modality is marked unused; at least one must be used")
        names = [b.modality for b in self.branches]
        if any(not n.strip() for n in names):
            fail("branches", "every modality needs a name")
        if len(set(names)) != len(names):
            fail("branches", "duplicate modality names")
        for i, b in enumerate(self.branches):
            where = f"branches[{i}] ({b.modality})"
            if len(b.input_shape) not in (2, 3) or any(
                not _is_int(n) or not 1 <= n <= MAX_INPUT for n in b.input_shape
            ):
                fail(
                    f"{where}.input_shape",
                    f"must be (C, L) or (C, H, W) with sizes in 1..{MAX_INPUT}, got {b.input_shape}",
                )
            if b.input_bits not in BITS:
                fail(f"{where}.input_bits", f"must be one of {BITS}")
            for j, blk in enumerate(b.blocks):
                _check_block(blk, f"{where}.blocks[{j}]", fail)
        for j, blk in enumerate(self.trunk):
            _check_block(blk, f"trunk[{j}]", fail)
        f = self.fusion
        # Read even with one used modality (where the fusion is not built), so that a stored arch never
        # carries a value no code path would accept once a second sensor is switched on.
        if f.point not in FUSION_POINTS:
            fail("fusion.point", f"must be one of {FUSION_POINTS}, got {f.point!r}")
        if f.op not in FUSION_OPS:
            fail("fusion.op", f"must be one of {FUSION_OPS}, got {f.op!r}")
        if not 0 <= f.channels <= MAX_WIDTH or not 0 <= f.rank <= MAX_WIDTH:
            fail("fusion", f"channels and rank must be in 0..{MAX_WIDTH}, got {f.channels} and {f.rank}")
        if f.weight_bits not in BITS or f.act_bits not in BITS:
            fail("fusion", f"weight_bits and act_bits must be in {BITS}")
        if self.fused:
            if f.point not in FUSION_POINTS:
                fail("fusion.point", f"must be one of {FUSION_POINTS}, got {f.point!r}")
            if f.op not in VALID_FUSION_OPS[f.point]:
                fail(
                    "fusion.op",
                    f"{f.op!r} is not valid at the {f.point} point (valid: {VALID_FUSION_OPS[f.point]})",
                )
            dims = {b.dims for b in self.used}
            if f.point != "late" and len(dims) > 1:
                fail(
                    "fusion.point", f"{f.point} fusion needs modalities of the same dimensionality (1D or 2D)"
                )
            if f.point == "early":
                grids = {tuple(b.input_shape[1:]) for b in self.used}
                if len(grids) > 1:
                    fail(
                        "fusion.point",
                        "early fusion stacks inputs, so they must share a time or spatial grid",
                    )
                if any(b.blocks for b in self.used):
                    fail(
                        "branches", "with early fusion the branches have no blocks (the trunk does the work)"
                    )
                if not self.trunk:
                    fail("trunk", "early fusion needs at least one trunk block")
            elif f.point == "intermediate":
                if any(not b.blocks for b in self.used):
                    fail("branches", "intermediate fusion needs at least one block in every used branch")
            else:
                if self.trunk:
                    fail("trunk", "late fusion has no trunk (blocks after fusion act on feature maps)")
                if any(not b.blocks for b in self.used):
                    fail("branches", "late fusion needs at least one block in every used branch")
            if f.op in ("add", "gate", "lowrank") and not 1 <= f.channels <= MAX_WIDTH:
                fail("fusion.channels", f"{f.op} fusion projects to a width: must be in 1..{MAX_WIDTH}")
            if f.op == "lowrank" and not 1 <= f.rank <= MAX_WIDTH:
                fail("fusion.rank", f"low-rank fusion needs a rank in 1..{MAX_WIDTH}")
            if f.weight_bits not in BITS or f.act_bits not in BITS:
                fail("fusion", f"weight_bits and act_bits must be in {BITS}")
        else:
            only = self.used[0]
            if not only.blocks and not self.trunk:
                fail("branches", f"modality {only.modality!r} has no blocks")
        h = self.head
        if len(h.hidden) > 2 or any(not _is_int(u) or not 1 <= u <= MAX_WIDTH for u in h.hidden):
            fail("head.hidden", f"0 to 2 hidden layers of width 1..{MAX_WIDTH}")
        n = len(h.hidden) + 1
        if len(h.weight_bits) != n or len(h.act_bits) != n:
            fail("head", f"weight_bits and act_bits need {n} entries (hidden layers, then the classifier)")
        if any(b not in BITS for b in h.weight_bits + h.act_bits):
            fail("head", f"bit-widths must be in {BITS}")
        return self


# The JSON shape of an Arch: every field's type, and which fields must be there. Checked before any
# dataclass is built so that a hand-edited file with `"kernel": "3"`, `"used": 0`, `"channels": 8.0`
# or a stray key is answered with the field's path, instead of being coerced by Python's duck typing
# into a graph that means something else (a float channel count, a truthy string) or a crash deep in
# the builder. Ranges are `validate`'s job; types are this table's.
_INT, _STR, _BOOL, _INTS = "an integer", "a string", "true or false", "a list of integers"
BLOCK_FIELDS: dict[str, Any] = {
    "op": _STR,
    "kernel": _INT,
    "channels": _INT,
    "stride": _INT,
    "pool": _INT,
    "expand": _INT,
    "weight_bits": _INTS,
    "act_bits": _INTS,
}
BRANCH_FIELDS: dict[str, Any] = {
    "modality": _STR,
    "input_shape": _INTS,
    "used": _BOOL,
    "input_bits": _INT,
    "blocks": [BLOCK_FIELDS],
}
FUSION_FIELDS: dict[str, Any] = {
    "point": _STR,
    "op": _STR,
    "channels": _INT,
    "rank": _INT,
    "weight_bits": _INT,
    "act_bits": _INT,
}
HEAD_FIELDS: dict[str, Any] = {"hidden": _INTS, "weight_bits": _INTS, "act_bits": _INTS}
ARCH_FIELDS: dict[str, Any] = {
    "format": _STR,
    "version": _INT,
    "classes": _INT,
    "branches": [BRANCH_FIELDS],
    "fusion": FUSION_FIELDS,
    "trunk": [BLOCK_FIELDS],
    "head": HEAD_FIELDS,
}
REQUIRED = {
    id(ARCH_FIELDS): ("classes", "branches"),
    id(BRANCH_FIELDS): ("modality", "input_shape"),
    id(BLOCK_FIELDS): ("op", "kernel", "channels"),
}
# Sizes past these are typing slips (2**40 channels), not networks for a microcontroller; the
# limits are far above every preset (256 channels, kernels up to 9) and keep arithmetic and the
# builder's allocations finite.
MAX_WIDTH = 1 << 16
MAX_INPUT = 1 << 24
MAX_KERNEL = 255
MAX_EXPAND = 64


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_fields(d: Any, schema: dict[str, Any], source: str, where: str) -> None:
    """`d` has the fields of `schema` and no others, each of its type; raises naming the path."""
    at = where or "arch"
    if not isinstance(d, dict):
        raise InputError(f"{source}: {at}: expected a JSON object, got {json.dumps(d)[:40]}")
    for key in d:
        if key not in schema:
            raise InputError(f"{source}: {where + '.' if where else ''}{key}: unknown field")
    for key in REQUIRED.get(id(schema), ()):
        if key not in d:
            raise InputError(f"{source}: {where + '.' if where else ''}{key}: required field is missing")
    for key, kind in schema.items():
        if key not in d:
            continue
        v, path = d[key], f"{where + '.' if where else ''}{key}"
        if isinstance(kind, dict):
            _check_fields(v, kind, source, path)
        elif isinstance(kind, list):
            if not isinstance(v, list):
                raise InputError(f"{source}: {path}: expected a list, got {json.dumps(v)[:40]}")
            for i, item in enumerate(v):
                _check_fields(item, kind[0], source, f"{path}[{i}]")
        else:
            ok = {
                _INT: _is_int(v),
                _STR: isinstance(v, str),
                _BOOL: isinstance(v, bool),
                _INTS: isinstance(v, list) and all(_is_int(x) for x in v),
            }[kind]
            if not ok:
                raise InputError(f"{source}: {path}: expected {kind}, got {json.dumps(v)[:40]}")


def _block(d: dict) -> Block:
    return Block(**d)


def _check_block(blk: Block, where: str, fail) -> None:
    if blk.op not in BLOCK_OPS:
        fail(f"{where}.op", f"must be one of {BLOCK_OPS}, got {blk.op!r}")
    if not 1 <= blk.kernel <= MAX_KERNEL or blk.kernel % 2 == 0:
        fail(f"{where}.kernel", f"must be a positive odd number up to {MAX_KERNEL}, got {blk.kernel}")
    if not 1 <= blk.channels <= MAX_WIDTH:
        fail(f"{where}.channels", f"must be in 1..{MAX_WIDTH}, got {blk.channels}")
    if blk.stride not in (1, 2) or blk.pool not in (1, 2):
        fail(where, f"stride and pool must be 1 or 2, got {blk.stride} and {blk.pool}")
    if not 1 <= blk.expand <= MAX_EXPAND:
        fail(f"{where}.expand", f"must be in 1..{MAX_EXPAND}, got {blk.expand}")
    n = layers_in_block(blk.op, blk.expand)
    if len(blk.weight_bits) != n or len(blk.act_bits) != n:
        fail(
            where,
            f"a {blk.op} block (expand {blk.expand}) has {n} quantized layers: give {n} weight_bits and act_bits",
        )
    if any(b not in BITS for b in blk.weight_bits + blk.act_bits):
        fail(where, f"bit-widths must be in {BITS}")
