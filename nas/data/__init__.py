"""Datasets: a registry of loaders that all return the `Dataset` contract of `nas.data.base`.

    from nas.data import load_dataset
    ds = load_dataset("watch", {"window_s": 2.0}, seed=0)

Built in, no user data needed: `watch` (smartwatch exercises, acc + gyro) and `avdigits` (8x8
handwritten digits + locally synthesized spoken digits). Your own data: `coswara` (cough / breathing /
speech per participant), `depth_thermal` (paired depth + thermal PNGs) and `npz` (one .npz file).
Options are validated; anything wrong is an `InputError` with one line naming the dataset and option.
Generated data and decoded user data are cached under `$M2NAS_CACHE` (default `~/.cache/m2nas`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from memory_models.errors import InputError

from . import avdigits, coswara, depth_thermal, npz, watch
from ._common import (
    CacheWarning,
    default_cache_dir,
    format_validation_error,
    set_progress_display,
    stable_hash,
)
from .base import Dataset, Split

__all__ = [
    "DATASETS",
    "CacheWarning",
    "Dataset",
    "DatasetSpec",
    "Split",
    "dataset_names",
    "default_cache_dir",
    "describe",
    "load_dataset",
    "parse_options",
    "set_progress_display",
    "stable_hash",
]


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    summary: str
    options: type[BaseModel]
    loader: Callable[[Any, int, Path | None], Dataset]
    needs: str | None = None  # what the user must supply, e.g. "root=/path"; None for built-in data
    hints: dict[str, str] | None = None  # required option -> what to give


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "watch",
            "smartwatch physiotherapy exercises (seglearn): acc + gyro, 7 classes, split by subject",
            watch.WatchOptions,
            watch.load,
        ),
        DatasetSpec(
            "avdigits",
            "8x8 handwritten digits + eSpeak NG spoken digits (generated, cached), split by voice",
            avdigits.AVDigitsOptions,
            avdigits.load,
        ),
        DatasetSpec(
            "coswara",
            "your cough / breathing / speech .wav per participant + metadata CSV, split by participant",
            coswara.CoswaraOptions,
            coswara.load,
            needs="root=/path",
            hints={"root": coswara.ROOT_HINT},
        ),
        DatasetSpec(
            "depth_thermal",
            "your paired depth + thermal PNGs, labels from folders or labels.csv",
            depth_thermal.DepthThermalOptions,
            depth_thermal.load,
            needs="root=/path",
            hints={"root": depth_thermal.ROOT_HINT},
        ),
        DatasetSpec(
            "npz",
            "your arrays in one .npz: one per modality, y, optional split and group",
            npz.NpzOptions,
            npz.load,
            needs="path=/file.npz",
            hints={"path": "the .npz file with one (N, C, L) or (N, C, H, W) array per modality and y"},
        ),
    )
}


def dataset_names() -> list[str]:
    return list(DATASETS)


def _spec(name: str) -> DatasetSpec:
    spec = DATASETS.get(name)
    if spec is None:
        raise InputError(f"unknown dataset '{name}' (known: {', '.join(DATASETS)})")
    return spec


def parse_options(name: str, options: dict[str, Any] | None = None) -> BaseModel:
    """Validate a dataset's options; an InputError names the dataset and the bad option."""
    spec = _spec(name)
    if options is not None and not isinstance(options, dict):
        raise InputError(
            f"dataset '{name}': options must be a mapping of option names to values, not {type(options).__name__}"
        )
    try:
        return spec.options.model_validate(options or {})
    except ValidationError as e:
        raise InputError(format_validation_error(name, e, spec.options.model_fields, spec.hints)) from None


def load_dataset(
    name: str, options: dict[str, Any] | None = None, seed: int = 0, cache_dir: Path | None = None
) -> Dataset:
    """Build dataset `name` with `options` (validated) and the train/val/test split made from `seed`.

    Deterministic for a given (name, options, seed). `cache_dir` defaults to `$M2NAS_CACHE` or
    `~/.cache/m2nas`; it holds generated data (avdigits) and decoded user data (coswara, depth_thermal)."""
    spec = _spec(name)
    opts = parse_options(name, options)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InputError(f"dataset '{name}': seed must be an integer, not {seed!r}")
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return spec.loader(opts, seed, cache)


def describe(
    name: str, options: dict[str, Any] | None = None, seed: int = 0, cache_dir: Path | None = None
) -> dict[str, Any]:
    """The summary of a built dataset: modalities with per-sample shapes, classes, split sizes, info."""
    return load_dataset(name, options, seed=seed, cache_dir=cache_dir).summary()
