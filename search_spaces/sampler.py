"""Draw an Arch from a SearchSpace, through Optuna (`sample`) or a plain RNG (`sample_random`).

Both go through the same code, which only calls `suggest_categorical` and `suggest_int`, so an Optuna
trial and a seeded `random.Random` explore exactly the same space. Parameter names are stable and
conditional (a block's parameters exist only if the block does; the fusion point's choices depend on
the modality subset, so its name does too), which keeps Optuna's distributions fixed per name and
lets studies resume. Only valid archs come out: choices that would break shapes (max-pooling a grid
of 1) are repaired deterministically, so equal parameters always give equal archs.
"""

from __future__ import annotations

import random
from itertools import combinations
from typing import Any, Protocol

from memory_models.errors import InputError

from .arch import Arch, Block, Branch, Fusion, Head, layers_in_block
from .space import SearchSpace


class Suggest(Protocol):
    def suggest_categorical(self, name: str, choices: Any) -> Any: ...
    def suggest_int(self, name: str, low: int, high: int) -> int: ...


class RandomSuggest:
    """The Suggest protocol on a seeded RNG; records what it drew, like a trial's params."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.params: dict[str, Any] = {}

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        v = choices[self.rng.randrange(len(choices))]
        self.params[name] = v
        return v

    def suggest_int(self, name: str, low: int, high: int) -> int:
        v = self.rng.randint(low, high)
        self.params[name] = v
        return v


def modality_subsets(names: list[str], drop: bool) -> list[str]:
    """Non-empty subsets as 'a+b' strings, largest first; only the full set if dropping is off."""
    if not drop or len(names) == 1:
        return ["+".join(names)]
    out = []
    for k in range(len(names), 0, -1):
        out += ["+".join(c) for c in combinations(names, k)]
    return out


def valid_points(space: SearchSpace, shapes: list[tuple[int, ...]]) -> list[str]:
    out = []
    same_dims = len({len(s) for s in shapes}) == 1
    same_grid = len({tuple(s[1:]) for s in shapes}) == 1
    for p in space.fusion_points:
        if not space.fusion_ops_at(p):
            continue
        if p == "late" or (p == "intermediate" and same_dims) or (p == "early" and same_dims and same_grid):
            out.append(p)
    return out


def check_inputs(space: SearchSpace, inputs: dict[str, tuple[int, ...]], where: str = "inputs") -> None:
    """Fail early, with a clear line, if the data cannot be searched with this space."""
    if not inputs:
        raise InputError(f"{where}: no modalities")
    for name, shape in inputs.items():
        if len(shape) not in (2, 3):
            raise InputError(f"{where}.{name}: shape {list(shape)} is neither (C, L) nor (C, H, W)")
    if len(inputs) > 1 and not valid_points(space, list(inputs.values())):
        raise InputError(
            f"{where}: no fusion point in {space.fusion_points} with operators {space.fusion_ops} suits modalities "
            f"{ {k: list(v) for k, v in inputs.items()} }"
        )


def _sample_block(
    s: Suggest, space: SearchSpace, p: str, dims: int, grid: list[int], stem: bool
) -> tuple[Block, list[int]]:
    op = "conv" if stem else s.suggest_categorical(f"{p}.op", space.block_ops)
    kernel = s.suggest_categorical(f"{p}.kernel", space.kernels_1d if dims == 1 else space.kernels_2d)
    channels = s.suggest_categorical(f"{p}.channels", space.stem_channels if stem else space.channels)
    stride = s.suggest_categorical(f"{p}.stride", space.strides)
    pool = s.suggest_categorical(f"{p}.pool", space.pools)
    expand = s.suggest_categorical(f"{p}.expand", space.expand) if op == "mbconv" else 1
    n = layers_in_block(op, expand)
    if stem and space.first_layer_bits:
        wbits = [space.first_layer_bits] * n
        abits = [space.first_layer_bits] * n
    else:
        wbits = [s.suggest_categorical(f"{p}.w{j}", space.weight_bits) for j in range(n)]
        abits = [s.suggest_categorical(f"{p}.a{j}", space.act_bits) for j in range(n)]
    grid = [(g - 1) // stride + 1 for g in grid]
    if pool > 1 and min(grid) < pool:  # repair: nothing left to pool
        pool = 1
    grid = [g // pool for g in grid]
    return Block(op, kernel, channels, stride, pool, expand, wbits, abits), grid


def _sample_blocks(
    s: Suggest, space: SearchSpace, prefix: str, n: int, dims: int, grid: list[int], stem: bool
):
    blocks = []
    for i in range(n):
        blk, grid = _sample_block(s, space, f"{prefix}.b{i}", dims, grid, stem and i == 0)
        blocks.append(blk)
    return blocks, grid


def sample(s: Suggest, space: SearchSpace, inputs: dict[str, tuple[int, ...]], classes: int) -> Arch:
    """One arch for data with `inputs` (modality -> per-sample shape) and `classes` classes."""
    names = list(inputs)
    subset = s.suggest_categorical("modalities", modality_subsets(names, space.drop_modalities))
    chosen = subset.split("+")
    shapes = [tuple(inputs[m]) for m in chosen]

    fusion = Fusion()
    point = "late"
    if len(chosen) > 1:
        point = s.suggest_categorical(f"fusion.point[{subset}]", valid_points(space, shapes))
        op = s.suggest_categorical(f"fusion.op[{point}]", space.fusion_ops_at(point))
        fusion = Fusion(point=point, op=op)
        if op in ("add", "gate", "lowrank"):
            fusion.channels = s.suggest_categorical("fusion.channels", space.fusion_channels)
        if op == "lowrank":
            fusion.rank = s.suggest_categorical("fusion.rank", space.lowrank_rank)
        fusion.weight_bits = s.suggest_categorical("fusion.w", space.weight_bits)
        fusion.act_bits = s.suggest_categorical("fusion.a", space.act_bits)

    branches = []
    grids = []
    for m in names:
        shape = list(inputs[m])
        if m not in chosen:
            branches.append(Branch(m, shape, used=False, input_bits=space.input_bits))
            continue
        grid = shape[1:]
        blocks: list[Block] = []
        if point != "early":
            r = space.branch_blocks
            n = s.suggest_int(f"{m}.blocks", r.min, r.max)
            blocks, grid = _sample_blocks(s, space, m, n, len(shape) - 1, grid, stem=True)
        grids.append(grid)
        branches.append(Branch(m, shape, used=True, input_bits=space.input_bits, blocks=blocks))

    trunk: list[Block] = []
    if point in ("early", "intermediate"):
        dims = len(shapes[0]) - 1
        grid = [min(g[i] for g in grids) for i in range(dims)]
        r = space.trunk_blocks
        low = max(r.min, 1) if point == "early" else r.min
        n = s.suggest_int(f"trunk.blocks[{point}]", low, max(r.max, low))
        trunk, _ = _sample_blocks(s, space, f"trunk.{point}{dims}d", n, dims, grid, stem=point == "early")

    r = space.head_hidden
    n_hidden = s.suggest_int("head.hidden", r.min, r.max)
    hidden = [s.suggest_categorical(f"head.h{i}.units", space.head_units) for i in range(n_hidden)]
    wbits = [s.suggest_categorical(f"head.h{i}.w", space.weight_bits) for i in range(n_hidden)]
    abits = [s.suggest_categorical(f"head.h{i}.a", space.act_bits) for i in range(n_hidden)]
    last = space.last_layer_bits
    wbits.append(last or s.suggest_categorical("head.out.w", space.weight_bits))
    abits.append(last or s.suggest_categorical("head.out.a", space.act_bits))
    arch = Arch(classes, branches, fusion, trunk, Head(hidden, wbits, abits))
    return arch.validate("sampled arch")


def sample_random(
    rng: random.Random, space: SearchSpace, inputs: dict[str, tuple[int, ...]], classes: int
) -> Arch:
    return sample(RandomSuggest(rng), space, inputs, classes)


_STRUCTURAL = ("modalities", "fusion.point", "fusion.op")
_LARGEST_IS_CHEAPEST = (".stride", ".pool")  # more downsampling: smaller activations, same weights


class _CheapestSuggest:
    """Picks the cheapest value of every size parameter (fewest blocks, channels, bits, smallest
    kernels, most downsampling) and walks the structural choices (modality subset, fusion point and
    operator) in the order given by `path`, recording how many choices each one had."""

    def __init__(self, path: list[int]) -> None:
        self.path, self.depth, self.widths = path, 0, []

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        choices = list(choices)
        if name.startswith(_STRUCTURAL):
            i = self.path[self.depth] if self.depth < len(self.path) else 0
            self.widths.append(len(choices))
            self.depth += 1
            return choices[i]
        numeric = all(isinstance(c, int | float) and not isinstance(c, bool) for c in choices)
        if not numeric:
            return choices[0]
        return max(choices) if name.endswith(_LARGEST_IS_CHEAPEST) else min(choices)

    def suggest_int(self, name: str, low: int, high: int) -> int:
        return low


def smallest_archs(space: SearchSpace, inputs: dict[str, tuple[int, ...]], classes: int) -> list[Arch]:
    """For every modality subset, fusion point and operator, the arch with the cheapest choice of
    every other parameter. If none of these fits a device, no arch of the space does (up to the
    joins of the fusion operators, which are compared here as well), so a study can refuse to start."""
    out, path = [], [0]
    while True:
        s = _CheapestSuggest(path)
        out.append(sample(s, space, inputs, classes))
        widths = s.widths
        path = path[: len(widths)] + [0] * (len(widths) - len(path))
        i = len(widths) - 1
        while i >= 0 and path[i] + 1 >= widths[i]:
            i -= 1
        if i < 0:
            return out
        path = path[:i] + [path[i] + 1]
