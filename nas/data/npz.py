"""`npz`: bring your own data as one .npz file.

Arrays in the file (option `path`):

* one array per modality, shaped (N, C, L) for signals or (N, C, H, W) for images/spectrograms (any
  real dtype; converted to float32, used as given: normalize beforehand);
* `y`: (N,) labels, integers 0..K-1 or strings;
* `split` (optional): (N,) 0/1/2 or "train"/"val"/"test" - used as given;
* `group` (optional): (N,) subject ids (integers or strings). Without `split` the seeded split is by
  group (no group in two splits); with `split`, a group found in two splits is an error.

Options: `modalities` (default: every array except y/split/group, in file order), `classes` (names, in
label order; default: the label values), `val_fraction` / `test_fraction` for the seeded split.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
from pydantic import Field, model_validator

from memory_models.errors import InputError
from nas.limits import MAX_CLASSES

from ._common import Options, fraction_split
from .base import Dataset, Split

NAME = "npz"
RESERVED = ("y", "split", "group")
SPLIT_NAMES = {"train": 0, "val": 1, "valid": 1, "validation": 1, "test": 2}


class NpzOptions(Options):
    path: Path = Field(
        description="the .npz file: one (N,C,L) or (N,C,H,W) array per modality, y, [split], [group]"
    )
    modalities: tuple[str, ...] | None = Field(None, min_length=1)
    classes: tuple[str, ...] | None = Field(None, min_length=2)
    val_fraction: float = Field(0.2, gt=0, lt=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)

    @model_validator(mode="after")
    def _check(self) -> NpzOptions:
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must be below 1")
        return self


def _labels(y: np.ndarray, path: Path, classes: tuple[str, ...] | None) -> tuple[np.ndarray, list[str]]:
    if y.dtype.kind in "US":
        values = y.astype(str)
        names = list(classes) if classes is not None else sorted(set(values.tolist()))
        if len(names) > MAX_CLASSES:
            raise InputError(
                f"dataset '{NAME}': {path}: 'y' names {len(names)} classes; at most {MAX_CLASSES}"
            )
        unknown = sorted(set(values.tolist()) - set(names))
        if unknown:
            raise InputError(
                f"dataset '{NAME}': {path}: label '{unknown[0]}' in 'y' is not in option classes {names}"
            )
        lookup = {c: i for i, c in enumerate(names)}
        return np.array([lookup[v] for v in values.tolist()], np.int64), names
    if y.dtype.kind == "b" or y.dtype.kind not in "iuf":
        raise InputError(f"dataset '{NAME}': {path}: 'y' must hold integer or string labels, not {y.dtype}")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y) & (y == np.round(y))):
        raise InputError(f"dataset '{NAME}': {path}: 'y' holds non-integer values")
    if y.size and y.min() < 0:
        raise InputError(f"dataset '{NAME}': {path}: 'y' holds negative labels (min {y.min()})")
    # Bounded before anything is sized by it (the class names, the classifier): labels are 0..K-1.
    if y.size and y.max() >= MAX_CLASSES:
        raise InputError(
            f"dataset '{NAME}': {path}: 'y' holds label {y.max()}; labels are class indices 0..K-1 with "
            f"K at most {MAX_CLASSES}"
        )
    labels = y.astype(np.int64)
    k = int(labels.max()) + 1
    if classes is not None:
        if len(classes) < k:
            raise InputError(
                f"dataset '{NAME}': option 'classes' names {len(classes)} classes but 'y' in {path} goes up to {k - 1}"
            )
        return labels, list(classes)
    if k < 2:
        raise InputError(f"dataset '{NAME}': {path}: 'y' has a single class")
    return labels, [str(i) for i in range(k)]


def _given_split(split: np.ndarray, path: Path) -> np.ndarray:
    if split.dtype.kind in "US":
        values = np.char.lower(split.astype(str))
        bad = sorted(set(values.tolist()) - set(SPLIT_NAMES))
        if bad:
            raise InputError(f"dataset '{NAME}': {path}: 'split' value '{bad[0]}' is not train/val/test")
        return np.array([SPLIT_NAMES[v] for v in values.tolist()], np.int64)
    if split.dtype.kind not in "iu" or not np.isin(split, (0, 1, 2)).all():
        raise InputError(f"dataset '{NAME}': {path}: 'split' must hold 0/1/2 (train/val/test) or those names")
    return split.astype(np.int64)


def load(opts: NpzOptions, seed: int, cache_dir: Path | None) -> Dataset:
    path = opts.path
    if not path.is_file():
        raise InputError(f"dataset '{NAME}': file not found: {path}")
    arrays: dict[str, np.ndarray] = {}
    try:
        z = np.load(path, allow_pickle=False)
        if not hasattr(z, "files"):
            raise InputError(f"dataset '{NAME}': {path} is a single .npy array, not an .npz archive")
        with z:
            for k in z.files:
                try:
                    arrays[k] = z[k]
                except ValueError as e:
                    raise InputError(f"dataset '{NAME}': {path}: array '{k}' cannot be read ({e})") from None
    except InputError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise InputError(f"dataset '{NAME}': cannot read {path} as .npz: {e}") from None

    if "y" not in arrays:
        raise InputError(
            f"dataset '{NAME}': {path} has no array 'y' (the labels); arrays: {', '.join(arrays) or 'none'}"
        )
    y_raw = arrays["y"]
    if y_raw.ndim != 1 or len(y_raw) == 0:
        raise InputError(f"dataset '{NAME}': {path}: 'y' must be 1-D and non-empty, got shape {y_raw.shape}")
    n = len(y_raw)
    y, classes = _labels(y_raw, path, opts.classes)

    names = list(opts.modalities) if opts.modalities is not None else [k for k in arrays if k not in RESERVED]
    if not names:
        raise InputError(f"dataset '{NAME}': {path} has no modality array besides y/split/group")
    x: dict[str, np.ndarray] = {}
    for k in names:
        if k in RESERVED:
            raise InputError(f"dataset '{NAME}': option 'modalities': '{k}' is reserved (y/split/group)")
        if k not in arrays:
            raise InputError(
                f"dataset '{NAME}': option 'modalities': {path} has no array '{k}' (arrays: {', '.join(arrays)})"
            )
        a = arrays[k]
        if a.ndim not in (3, 4):
            raise InputError(
                f"dataset '{NAME}': {path}: modality '{k}' has shape {a.shape}; expected (N, C, L) or (N, C, H, W)"
            )
        if a.shape[0] != n:
            raise InputError(
                f"dataset '{NAME}': {path}: modality '{k}' has {a.shape[0]} samples but 'y' has {n}"
            )
        if a.dtype.kind not in "iuf" or a.dtype.kind == "b":
            raise InputError(f"dataset '{NAME}': {path}: modality '{k}' has non-numeric dtype {a.dtype}")
        a = a.astype(np.float32)
        if not np.all(np.isfinite(a)):
            raise InputError(f"dataset '{NAME}': {path}: modality '{k}' holds NaN or infinite values")
        x[k] = a

    groups = None
    if "group" in arrays:
        g = arrays["group"]
        if g.ndim != 1 or len(g) != n:
            raise InputError(f"dataset '{NAME}': {path}: 'group' must have shape ({n},), got {g.shape}")
        group_names, groups = np.unique(g.astype(str) if g.dtype.kind in "US" else g, return_inverse=True)
        groups = groups.astype(np.int64)

    if "split" in arrays:
        s = arrays["split"]
        if s.ndim != 1 or len(s) != n:
            raise InputError(f"dataset '{NAME}': {path}: 'split' must have shape ({n},), got {s.shape}")
        codes = _given_split(s, path)
        idx = {name: np.flatnonzero(codes == i) for i, name in enumerate(("train", "val", "test"))}
        for name, ix in idx.items():
            if len(ix) == 0:
                raise InputError(f"dataset '{NAME}': {path}: 'split' leaves the {name} split empty")
        if groups is not None:
            for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
                both = np.intersect1d(groups[idx[a]], groups[idx[b]])
                if len(both):
                    raise InputError(
                        f"dataset '{NAME}': {path}: group {group_names[both[0]].item()!r} is in both the {a} and {b} splits; "
                        "keep each subject in one split"
                    )
        rule = "given by the file's 'split' array"
    else:
        idx = fraction_split(y, groups, opts.val_fraction, opts.test_fraction, seed, NAME)
        rule = (
            f"{'by group' if groups is not None else 'stratified by class'} (seeded), "
            f"val_fraction={opts.val_fraction}, test_fraction={opts.test_fraction}"
        )
    whole = Split(x, y, groups)
    return Dataset(
        name=NAME,
        modalities={k: tuple(int(d) for d in v.shape[1:]) for k, v in x.items()},
        classes=classes,
        train=whole.subset(idx["train"]),
        val=whole.subset(idx["val"]),
        test=whole.subset(idx["test"]),
        info={
            "description": f"user data from {path.name}",
            "source": str(path),
            "split": rule,
            "options": opts.model_dump(mode="json"),
        },
    )
