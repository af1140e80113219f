"""The device catalogue: memory hierarchies, compute throughput and runtime overheads, read from TOML.

Built-in devices live in `memory_models/devices/*.toml`; users add their own with `--devices FILE`
(one device per file, or a `[[devices]]` array). Every figure that is an estimate says so in the
file's `estimates` table, with where it comes from.
"""

from __future__ import annotations

import re
import tomllib
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import FieldError, InputError, read_user_text

BIT_CLASSES = ("2", "4", "8")
TARGET_KEYS = ("weights", "activations", "code")
# Runtime profiles a device (`[runtime] profile`) or a target (`runtime=tflm`) can select: how the
# arena is planned and what the runtime keeps besides it (memory_models.tflm for TFLite Micro).
RUNTIME_PROFILES = ("m2nas-c", "tflm")

PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MemoryLevel(_Strict):
    name: str
    kind: str = Field(description="sram, tcm, flash, cache, dram, hyperram, hyperflash, ...")
    capacity_bytes: PositiveInt
    bytes_per_cycle: PositiveFloat = Field(description="sustained bandwidth the compute units see")
    energy_pj_per_byte: NonNegativeFloat
    writable: bool = True
    note: str = ""


class MeasuredCost(_Strict):
    """Instructions of the runtime's kernels, fitted to counts measured on an emulated core, and
    the cycles-per-instruction assumption that makes them time (memory_models.latency)."""

    measured_on: str = Field(description="the emulated core the counts come from (nas.export.c.cortexm)")
    cycles_per_instruction: PositiveFloat = Field(
        description="assumed, not measured: QEMU counts instructions; the file's estimates say why this value"
    )
    instructions: dict[str, NonNegativeFloat] = Field(
        description="instructions per unit of each term of memory_models.latency.op_terms"
    )

    @field_validator("instructions")
    @classmethod
    def _prefixes(cls, v: dict[str, float]) -> dict[str, float]:
        from .latency import PREFIXES

        missing = [p for p in PREFIXES if p not in v]
        if missing:
            raise ValueError(f"missing the fallback term {missing[0]!r} (need {', '.join(PREFIXES)})")
        return v


class Runtime(_Strict):
    """The inference runtime's own cost: what the model does not pay for, but the device does."""

    name: str
    flash_bytes: NonNegativeInt = Field(description="runtime code, without operator kernels")
    ram_bytes: NonNegativeInt = Field(description="stack and runtime state outside the tensor arena")
    kernel_flash_bytes: dict[str, NonNegativeInt] = Field(
        default_factory=dict,
        description=(
            "code size of each kernel unit linked in (an op kind, or a unit named in kernel_units); "
            "`a+b`: code of unit a present only when b is linked too; key 'default' for the rest"
        ),
    )
    kernel_units: dict[str, list[str]] = Field(
        default_factory=dict,
        description=(
            "the code units (keys of kernel_flash_bytes) an op kind links, when kernels are shared or "
            "have bit-width variants: `kind` for any op of that kind, `kind@bits` also for a weighted op "
            "with weights of that width; a kind not listed links the unit of its own name"
        ),
    )
    op_table_bytes: NonNegativeInt = Field(
        32, description="per-op descriptor or call in flash (ops of kinds op_code_bytes does not list)"
    )
    op_code_bytes: dict[str, NonNegativeInt] = Field(
        default_factory=dict, description="per-op descriptor or call in flash, by op kind"
    )
    op_input_code_bytes: dict[str, NonNegativeInt] = Field(
        default_factory=dict, description="added per input of an op of that kind (joins: one call per input)"
    )
    sigmoid_lut_bytes: NonNegativeInt = Field(
        0, description="lookup table of a quantized sigmoid fused into a layer (gating), per layer"
    )
    requant_param_bytes: NonNegativeInt = Field(
        8, description="bytes per requantization pair (multiplier, shift)"
    )
    tensor_alignment: PositiveInt = 4
    op_overhead_cycles: NonNegativeInt = 0
    im2col_columns: NonNegativeInt = Field(
        0, description="output columns buffered by the conv kernel's im2col"
    )
    im2col_element_bytes: PositiveInt = 1
    profile: Literal["m2nas-c", "tflm"] = Field(
        "m2nas-c",
        description="m2nas-c: m2nas's C runtime and arena plan; tflm: TFLite Micro's planner and persistent part",
    )
    pointer_bytes: Literal[4, 8] = Field(4, description="pointer width of the build (TFLM's record sizes)")
    cost: MeasuredCost | None = Field(
        None,
        description=(
            "measured instruction costs of the kernels; when given, latency is instructions x cycles per "
            "instruction / clock instead of the MACs-per-cycle estimate"
        ),
    )

    @field_validator("tensor_alignment")
    @classmethod
    def _power_of_two(cls, v: int) -> int:
        if v & (v - 1):
            raise ValueError(f"must be a power of two, got {v}")
        return v

    def kernel_bytes(self, kind: str) -> int:
        k = self.kernel_flash_bytes
        return k.get(kind, k.get("default", 0))

    def kernels_bytes(self, kinds, weighted_bits=()) -> int:
        """Code of the kernels linked for ops of `kinds` (and `kind@bits` variants): each unit once,
        plus every `a+b` entry of kernel_flash_bytes whose parts are all linked (the code of unit a
        that only exists with unit b, e.g. a convolution's call sites of the 8-bit dot product)."""
        units = self.kernel_units
        linked: set[str] = set()
        for kind in kinds:
            linked.update(units.get(kind, (kind,)))
        for key in weighted_bits:
            linked.update(units.get(key, ()))
        total = sum(self.kernel_bytes(u) for u in linked)
        for key, size in self.kernel_flash_bytes.items():
            if "+" in key and all(p in linked for p in key.split("+")):
                total += size
        return total


class Device(_Strict):
    name: str
    aliases: list[str] = Field(default_factory=list, description="other names people type for it")
    description: str
    core: str
    cores: PositiveInt = 1
    clock_mhz: PositiveFloat
    levels: list[MemoryLevel] = Field(min_length=1)
    code_level: str
    default_target: dict[str, str]
    macs_per_cycle: dict[str, PositiveFloat] = Field(
        description="whole-device MACs per cycle by bit-width class"
    )
    elementwise_per_cycle: PositiveFloat = 1.0
    core_pj_per_cycle: NonNegativeFloat
    runtime: Runtime
    estimates: dict[str, str] = Field(default_factory=dict)
    sources: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> Device:
        names = [lv.name for lv in self.levels]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"levels: duplicate level name {sorted(dup)[0]!r}")
        if self.code_level not in names:
            raise ValueError(f"code_level: {self.code_level!r} is not one of the levels {names}")
        missing = [b for b in BIT_CLASSES if b not in self.macs_per_cycle]
        if missing:
            raise ValueError(
                f"macs_per_cycle: missing bit-width {missing[0]!r} (need keys {list(BIT_CLASSES)})"
            )
        extra = [b for b in self.macs_per_cycle if b not in BIT_CLASSES + ("16",)]
        if extra:
            raise ValueError(f"macs_per_cycle: unknown bit-width {extra[0]!r}")
        parse_target(self.default_target, self, "default_target")
        return self

    def level(self, name: str) -> MemoryLevel:
        for lv in self.levels:
            if lv.name == name:
                return lv
        raise InputError(
            f"device {self.name}: no memory level {name!r} (levels: {', '.join(lv.name for lv in self.levels)})"
        )

    def macs_rate(self, bits: int) -> float:
        """MACs per cycle for operands of `bits`; wider than 8 runs at half the 8-bit rate unless listed."""
        if bits <= 2:
            return self.macs_per_cycle["2"]
        if bits <= 4:
            return self.macs_per_cycle["4"]
        if bits <= 8:
            return self.macs_per_cycle["8"]
        return self.macs_per_cycle.get("16", self.macs_per_cycle["8"] / 2)


def parse_target(target: Any, device: Device, where: str = "target") -> dict[str, str]:
    """Normalise `{all = L}` / `{weights = .., activations = .., code = ..}` to a full placement.

    `all` places weights and activations (not code: code runs from wherever the device executes it,
    unless `code` is given explicitly).
    """
    if isinstance(target, str):
        target = parse_target_text(target, where)
    if not isinstance(target, dict) or not target:
        raise InputError(f'{where}: expected a table like {{ weights = "flash", activations = "sram" }}')
    unknown = [k for k in target if k not in TARGET_KEYS + ("all", "runtime")]
    if unknown:
        raise InputError(
            f"{where}: unknown key {unknown[0]!r} (use all, weights, activations, code, runtime)"
        )
    target = dict(target)
    runtime = target.pop("runtime", None)
    if runtime is not None and runtime not in RUNTIME_PROFILES:
        raise InputError(
            f"{where}.runtime: {runtime!r} is not a runtime profile (use {', '.join(RUNTIME_PROFILES)})"
        )
    names = [lv.name for lv in device.levels]
    for key, value in target.items():
        if value not in names:
            raise InputError(
                f"{where}.{key}: {value!r} is not a memory level of {device.name} (levels: {', '.join(names)})"
            )
    placement = {"code": device.code_level}
    if "all" in target:
        placement["weights"] = placement["activations"] = target["all"]
    placement.update({k: v for k, v in target.items() if k != "all"})
    for key in ("weights", "activations"):
        if key not in placement:
            raise InputError(f'{where}: says nothing about {key} (give {key} = "LEVEL" or all = "LEVEL")')
    act = placement["activations"]
    if not next(lv for lv in device.levels if lv.name == act).writable:
        raise InputError(f"{where}.activations: level {act!r} of {device.name} is read-only at run time")
    if runtime is not None:
        placement["runtime"] = runtime
    return placement


def parse_target_text(text: str, where: str = "target") -> dict[str, str]:
    """Accept `weights=flash,activations=sram`, `all=L1`, or a TOML inline table."""
    text = text.strip()
    if text.startswith("{"):
        try:
            return tomllib.loads(f"t = {text}")["t"]
        except tomllib.TOMLDecodeError as e:
            raise InputError(f"{where}: not a TOML inline table ({e})") from None
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise InputError(
                f"{where}: expected KEY=LEVEL pairs like weights=flash,activations=sram, got {part!r}"
            )
        out[key.strip()] = value.strip().strip('"')
    return out


def _parse_devices(text: str, source: str) -> list[Device]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{source}: not valid TOML ({e})") from None
    entries = data["devices"] if "devices" in data else [data]
    if not isinstance(entries, list) or not entries:
        raise InputError(f"{source}: devices: expected an array of device tables")
    out = []
    for i, entry in enumerate(entries):
        prefix = f"devices[{i}]." if "devices" in data else ""
        try:
            out.append(Device.model_validate(entry))
        except ValidationError as e:
            raise InputError(f"{source}: {prefix}{FieldError(e)}") from None
    return out


@cache
def builtin_devices() -> dict[str, Device]:
    out = {}
    for entry in sorted(resources.files(__package__).joinpath("devices").iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".toml"):
            for dev in _parse_devices(entry.read_text(), f"memory_models/devices/{entry.name}"):
                out[dev.name] = dev
    return out


def load_device_file(path: str | Path) -> list[Device]:
    path = Path(path)
    return _parse_devices(read_user_text(path, "a device TOML file"), str(path))


def catalogue(extra_files: list[str | Path] | tuple = ()) -> dict[str, Device]:
    """Built-in devices plus the user's files; a user device may replace a built-in one by name."""
    devices = dict(builtin_devices())
    for f in extra_files:
        for dev in load_device_file(f):
            devices[dev.name] = dev
    return devices


def _key(name: str) -> str:
    """Case, spaces, dashes and underscores do not tell boards apart: `Nano-33 BLE` is `nano33ble`."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


def resolve_device_name(name: str, devices: dict[str, Device], prefix: str = "") -> str:
    """The catalogue id for what a person typed: the id, one of its `aliases`, or a prefix of either
    that only one device has (`stm32f7` -> stm32f746zg; `stm32` names several and says which)."""
    if name in devices:
        return name
    key = _key(name)
    names = {d.name: {_key(d.name), *map(_key, d.aliases)} for d in devices.values()}
    for match in (lambda k: k == key, lambda k: k.startswith(key)):
        found = sorted(n for n, keys in names.items() if key and any(map(match, keys)))
        if len(found) == 1:
            return found[0]
        if found:
            raise InputError(f"{prefix}device {name!r} is ambiguous: it could be {', '.join(found)}")
    raise InputError(
        f"{prefix}unknown device {name!r} (known: {', '.join(sorted(devices))}; `m2nas devices` lists their aliases; "
        "add your own with --devices FILE)"
    )


def get_device(name: str, extra_files: list[str | Path] | tuple = ()) -> Device:
    devices = catalogue(extra_files)
    return devices[resolve_device_name(name, devices)]
