"""Search-space configuration: choice lists and ranges, validated at load time, with named presets.

A space file is TOML with an optional `preset = "NAME"` to start from and a `[space]` table of
overrides (the same keys may also sit at the top level of a `[search_space]` table in a study file).
"""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from memory_models.errors import FieldError, InputError

from .arch import BITS, BLOCK_OPS, FUSION_POINTS, VALID_FUSION_OPS

Bits = Literal[2, 4, 8]  # memory_models.ops.BITS, spelled out for pydantic
assert get_args(Bits) == BITS


class IntRange(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    min: Annotated[int, Field(ge=0)]
    max: Annotated[int, Field(ge=0)]

    @model_validator(mode="after")
    def _order(self) -> IntRange:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


def _nonempty(v: list) -> list:
    if not v:
        raise ValueError("must list at least one choice")
    if len(set(v)) != len(v):
        raise ValueError("has duplicate choices")
    return v


class SearchSpace(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "custom"
    description: str = ""
    branch_blocks: IntRange = IntRange(min=1, max=3)
    trunk_blocks: IntRange = IntRange(min=1, max=2)
    block_ops: list[Literal["conv", "dwsep", "mbconv"]] = list(BLOCK_OPS)
    stem_channels: list[Annotated[int, Field(ge=1)]] = [8, 16]
    channels: list[Annotated[int, Field(ge=1)]] = [8, 16, 32]
    kernels_1d: list[Annotated[int, Field(ge=1)]] = [3, 5, 7]
    kernels_2d: list[Annotated[int, Field(ge=1)]] = [3, 5]
    strides: list[Literal[1, 2]] = [1, 2]
    pools: list[Literal[1, 2]] = [1, 2]
    expand: list[Annotated[int, Field(ge=1)]] = [2, 4]
    weight_bits: list[Bits] = list(BITS)
    act_bits: list[Bits] = [4, 8]
    first_layer_bits: Bits | None = Field(
        8, description="fixed weight/activation bits of every stem; null to search"
    )
    last_layer_bits: Bits | None = Field(8, description="fixed bits of the classifier; null to search")
    input_bits: Bits = 8
    drop_modalities: bool = True
    fusion_points: list[Literal["early", "intermediate", "late"]] = list(FUSION_POINTS)
    fusion_ops: list[Literal["concat", "add", "gate", "lowrank"]] = ["concat", "add", "gate", "lowrank"]
    fusion_channels: list[Annotated[int, Field(ge=1)]] = [16, 32]
    lowrank_rank: list[Annotated[int, Field(ge=1)]] = [2, 4]
    head_hidden: IntRange = IntRange(min=0, max=1)
    head_units: list[Annotated[int, Field(ge=1)]] = [16, 32]

    _check_nonempty = field_validator(
        "block_ops",
        "stem_channels",
        "channels",
        "kernels_1d",
        "kernels_2d",
        "strides",
        "pools",
        "expand",
        "weight_bits",
        "act_bits",
        "fusion_points",
        "fusion_ops",
        "fusion_channels",
        "lowrank_rank",
        "head_units",
    )(_nonempty)

    @field_validator("kernels_1d", "kernels_2d")
    @classmethod
    def _odd(cls, v: list[int]) -> list[int]:
        even = [k for k in v if k % 2 == 0]
        if even:
            raise ValueError(f"kernels must be odd (same padding), got {even[0]}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> SearchSpace:
        if self.branch_blocks.min < 1:
            raise ValueError("branch_blocks.min: every used branch needs a stem block (min >= 1)")
        if self.head_hidden.max > 2:
            raise ValueError("head_hidden.max: at most 2 hidden layers")
        if not any(op in VALID_FUSION_OPS[p] for p in self.fusion_points for op in self.fusion_ops):
            raise ValueError("fusion_ops: none of them is valid at any of fusion_points")
        return self

    def fusion_ops_at(self, point: str) -> list[str]:
        return [op for op in self.fusion_ops if op in VALID_FUSION_OPS[point]]


@cache
def presets() -> dict[str, dict[str, Any]]:
    out = {}
    for entry in resources.files(__package__).joinpath("presets").iterdir():
        if entry.name.endswith(".toml"):
            out[entry.name.removesuffix(".toml")] = tomllib.loads(entry.read_text())
    return out


def space_from_dict(d: dict[str, Any], source: str) -> SearchSpace:
    """`{preset = NAME, ...overrides}` or a plain table of options."""
    d = dict(d)
    preset = d.pop("preset", None)
    base: dict[str, Any] = {}
    if preset is not None:
        known = presets()
        if not isinstance(preset, str) or preset not in known:
            raise InputError(
                f"{source}: preset: unknown search-space preset {preset!r} (known: {', '.join(sorted(known))})"
            )
        base = dict(known[preset])
        base.setdefault("name", preset)
    try:
        return SearchSpace.model_validate({**base, **d})
    except ValidationError as e:
        raise InputError(
            f"{source}: {FieldError(e, dotted=True).describe(unknown='unknown option')}"
        ) from None


def load_space(spec: str | Path) -> SearchSpace:
    """A preset name, or a TOML file with an optional `preset` and a `[space]` table."""
    if isinstance(spec, str) and spec in presets():
        return space_from_dict({"preset": spec}, f"preset {spec}")
    path = Path(spec)
    if not path.exists():
        raise InputError(
            f"{spec}: neither a search-space preset ({', '.join(sorted(presets()))}) nor an existing file"
        )
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{path}: not valid TOML ({e})") from None
    table = dict(data.get("space", {}))
    if "preset" in data:
        table.setdefault("preset", data["preset"])
    unknown = set(data) - {"space", "preset", "inputs", "classes"}
    if unknown:
        raise InputError(
            f"{path}: unknown top-level key {sorted(unknown)[0]!r} (expected preset, [space], [inputs], classes)"
        )
    return space_from_dict(table, str(path))


def bits_ok(bits: int) -> bool:
    return bits in BITS
