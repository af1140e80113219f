"""`depth_thermal`: your own paired depth + thermal images (a TinyM2Net-V3 case study).

Two layouts under the folder given as option `root`:

* folders (no labels CSV at the root): `<root>/<label>/<sample>_depth.png` and
  `<root>/<label>/<sample>_thermal.png`. Samples may sit one level deeper, in
  `<root>/<label>/<group>/<sample>_depth.png`; the `<group>` folder (e.g. a subject) is then the group.
* csv: `<root>/labels.csv` with columns `sample,label` and optionally `group` (a subject id). Each
  sample's images are `<root>/<sample>_depth.png` and `<root>/<sample>_thermal.png`; `sample` may hold
  subfolders (`p01/0003`). PNGs not listed in the CSV are ignored.

`layout="auto"` (the default) uses the CSV when it exists. Images may be 8- or 16-bit, greyscale, RGB(A)
or palette (colour is turned into luma), are scaled to [0, 1] by their bit depth, resized (bilinear,
antialiased) to `size`, and then standardized per modality with the train split's mean and std
(`normalize="none"` keeps [0, 1]). Modalities `depth` and `thermal`, each (1, H, W). With groups the
split is by group (no group in two splits); otherwise it is stratified by class, from the seed.
Decoded images are cached (keyed by the files' names, sizes and modification times).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from memory_models.errors import InputError

from ._common import (
    Options,
    cached_build,
    class_labels,
    file_stamp,
    fraction_split,
    make_splits,
    progress_bar,
    read_csv,
    show_progress,
    standardize,
)
from .base import Dataset
from .png import read_png, resize, to_gray

NAME = "depth_thermal"
ROOT_HINT = (
    "the folder with your paired images, laid out as <root>/<label>/<sample>_depth.png + "
    "<sample>_thermal.png, or <root>/labels.csv (columns sample,label[,group]) next to "
    "<root>/<sample>_depth.png + <sample>_thermal.png"
)


class DepthThermalOptions(Options):
    root: Path = Field(description=ROOT_HINT)
    layout: Literal["auto", "folders", "csv"] = "auto"
    labels_csv: str = Field("labels.csv", description="CSV with the labels, relative to root (csv layout)")
    sample_column: str = "sample"
    label_column: str = "label"
    group_column: str | None = Field(
        "group", description="subject column for subject-wise splits (if present)"
    )
    depth_suffix: str = "_depth.png"
    thermal_suffix: str = "_thermal.png"
    size: int | tuple[int, int] = Field(32, description="output size: H=W or (H, W)")
    classes: tuple[str, ...] | None = Field(None, description="class order (default: sorted labels)")
    normalize: Literal["standardize", "none"] = "standardize"
    val_fraction: float = Field(0.2, gt=0, lt=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    cache: bool = True
    progress: bool | None = None

    @field_validator("size")
    @classmethod
    def _size(cls, v: int | tuple[int, int]) -> int | tuple[int, int]:
        hw = (v, v) if isinstance(v, int) else v
        if not all(1 <= s <= 1024 for s in hw):
            raise ValueError("must be between 1 and 1024 pixels")
        return v

    @model_validator(mode="after")
    def _check(self) -> DepthThermalOptions:
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must be below 1")
        if self.depth_suffix == self.thermal_suffix:
            raise ValueError("depth_suffix and thermal_suffix must differ")
        return self

    @property
    def hw(self) -> tuple[int, int]:
        return (self.size, self.size) if isinstance(self.size, int) else tuple(self.size)


def _missing_root(root: Path) -> InputError:
    return InputError(f"dataset '{NAME}': root folder not found: {root} (put {ROOT_HINT})")


def _scan_folders(opts: DepthThermalOptions) -> list[tuple[str, str, str | None]]:
    """(sample key relative to root without suffix, label, group or None) from the folder layout."""
    root = opts.root
    found: list[tuple[str, str, str | None]] = []
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        depth = {
            str(p.relative_to(root))[: -len(opts.depth_suffix)]
            for p in label_dir.rglob(f"*{opts.depth_suffix}")
        }
        thermal = {
            str(p.relative_to(root))[: -len(opts.thermal_suffix)]
            for p in label_dir.rglob(f"*{opts.thermal_suffix}")
        }
        for key in sorted(depth ^ thermal):
            have, lack = (
                (opts.depth_suffix, opts.thermal_suffix)
                if key in depth
                else (opts.thermal_suffix, opts.depth_suffix)
            )
            raise InputError(
                f"dataset '{NAME}': sample '{key}' is unpaired: {root / (key + have)} exists but "
                f"{root / (key + lack)} is missing"
            )
        for key in sorted(depth):
            parts = Path(key).parts
            if len(parts) > 3:
                raise InputError(
                    f"dataset '{NAME}': {root / (key + opts.depth_suffix)} is nested too deep (use <label>/<group>/<sample>)"
                )
            found.append((key, label_dir.name, parts[1] if len(parts) == 3 else None))
    if not found:
        raise InputError(
            f"dataset '{NAME}': no '*{opts.depth_suffix}' images in label folders under {root} and no {opts.labels_csv} "
            f"(expected {ROOT_HINT})"
        )
    if any(g is None for _, _, g in found) and any(g is not None for _, _, g in found):
        raise InputError(
            f"dataset '{NAME}': under {root} some samples sit in <label>/<group>/ subfolders and some directly in "
            "<label>/; use one layout"
        )
    return found


def _scan_csv(opts: DepthThermalOptions, csv_path: Path) -> list[tuple[str, str, str | None]]:
    group_col = opts.group_column
    rows = read_csv(csv_path, NAME, [opts.sample_column, opts.label_column])
    explicit_group = "group_column" in opts.model_fields_set and group_col is not None
    if group_col is not None and group_col not in rows[0]:
        if explicit_group:
            raise InputError(
                f"dataset '{NAME}': {csv_path} has no column '{group_col}' (option group_column)"
            )
        group_col = None
    found, seen = [], set()
    for line, row in enumerate(rows, start=2):
        key, label = row[opts.sample_column], row[opts.label_column]
        if not key or not label:
            raise InputError(
                f"dataset '{NAME}': {csv_path} line {line}: empty {opts.sample_column} or {opts.label_column}"
            )
        if key in seen:
            raise InputError(f"dataset '{NAME}': {csv_path} line {line}: sample '{key}' is listed twice")
        seen.add(key)
        for suffix in (opts.depth_suffix, opts.thermal_suffix):
            f = opts.root / (key + suffix)
            if not f.is_file():
                raise InputError(
                    f"dataset '{NAME}': sample '{key}' ({csv_path.name} line {line}): file not found: {f}"
                )
        found.append((key, label, row[group_col] if group_col else None))
    return found


def load(opts: DepthThermalOptions, seed: int, cache_dir: Path | None) -> Dataset:
    root = opts.root
    if not root.is_dir():
        raise _missing_root(root)
    csv_path = Path(opts.labels_csv) if Path(opts.labels_csv).is_absolute() else root / opts.labels_csv
    layout = opts.layout if opts.layout != "auto" else ("csv" if csv_path.is_file() else "folders")
    samples = _scan_csv(opts, csv_path) if layout == "csv" else _scan_folders(opts)

    classes, y = class_labels(NAME, [lab for _, lab, _ in samples], opts.classes, f"under {root}")
    group_names = [g for _, _, g in samples]
    groups = None
    if all(g is not None for g in group_names):
        names = sorted(set(group_names))
        groups = np.array([names.index(g) for g in group_names], np.int64)

    files = [(root / (k + opts.depth_suffix), root / (k + opts.thermal_suffix)) for k, _, _ in samples]
    hw = opts.hw

    def build() -> dict[str, np.ndarray]:
        depth = np.empty((len(files), 1, *hw), np.float32)
        thermal = np.empty((len(files), 1, *hw), np.float32)
        with progress_bar(
            f"reading {len(files)} depth/thermal pairs", len(files), show_progress(opts.progress)
        ) as advance:
            for i, (fd, ft) in enumerate(files):
                for out, f in ((depth, fd), (thermal, ft)):
                    try:
                        out[i, 0] = resize(to_gray(read_png(f)), hw)
                    except InputError as e:
                        raise InputError(f"dataset '{NAME}': {e}") from None
                advance(1)
        return {"depth": depth, "thermal": thermal}

    key = {
        "version": 1,
        "size": list(hw),
        "files": [file_stamp(f) for pair in files for f in pair],
    }
    arrays, cache_state = cached_build(cache_dir, NAME, key, build, use_cache=opts.cache)

    idx = fraction_split(y, groups, opts.val_fraction, opts.test_fraction, seed, NAME)
    splits = make_splits({"depth": arrays["depth"], "thermal": arrays["thermal"]}, y, groups, idx)
    stats = {}
    if opts.normalize == "standardize":
        stats = {m: standardize(splits, m, per_channel=False) for m in ("depth", "thermal")}
    split_rule = (
        f"by group ({'folder <label>/<group>/' if layout == 'folders' else 'column ' + str(opts.group_column)}): whole "
        f"groups to test/val by fraction (seeded)"
        if groups is not None
        else "stratified by class (seeded); no group information"
    )
    return Dataset(
        name=NAME,
        modalities={"depth": (1, *hw), "thermal": (1, *hw)},
        classes=classes,
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        info={
            "description": "paired depth and thermal images (user data)",
            "source": str(root),
            "layout": layout,
            "split": f"{split_rule}; val_fraction={opts.val_fraction}, test_fraction={opts.test_fraction}",
            "standardization": stats,
            "cache": cache_state,
            "options": opts.model_dump(mode="json", exclude={"progress"}),
        },
    )
