"""Shared pieces of the dataset modules: option models, seeded splits, standardization, progress
bars, CSV reading and a checksummed .npz cache."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import sys
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from memory_models.errors import FieldError, InputError

from .base import Split

CACHE_FORMAT = 1


class Options(BaseModel):
    """Base of every dataset's options: unknown keys are rejected, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def default_cache_dir() -> Path:
    env = os.environ.get("M2NAS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "m2nas"


def stable_hash(obj: Any, n: int = 16) -> str:
    """A short sha256 of a JSON-able object (keys sorted): used to key caches."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


# ----------------------------------------------------------------------------------------------- splits


def class_labels(
    name: str, labels: list[str], classes: list[str] | None, where: str
) -> tuple[list[str], np.ndarray]:
    """(class names, int64 labels) for folder datasets: the user's `classes` option fixes the order
    (every label must be in it), otherwise the sorted label set; at least two classes."""
    if classes is not None:
        unknown = sorted(set(labels) - set(classes))
        if unknown:
            raise InputError(
                f"dataset '{name}': label '{unknown[0]}' is not in option classes {list(classes)}"
            )
        classes = list(classes)
    else:
        classes = sorted(set(labels))
    if len(classes) < 2:
        raise InputError(f"dataset '{name}': need at least 2 classes, found {classes} {where}")
    return classes, np.array([classes.index(lab) for lab in labels], np.int64)


def _check_nonempty(name: str, parts: dict[str, np.ndarray], what: str) -> None:
    for split, idx in parts.items():
        if len(idx) == 0:
            raise InputError(
                f"dataset '{name}': the {split} split is empty ({what}); use more data or change the split options"
            )


def group_count_split(
    groups: np.ndarray, n_test: int, n_val: int, seed: int, name: str
) -> tuple[dict[str, np.ndarray], dict[str, list]]:
    """Hold out `n_test` and `n_val` whole groups chosen from the seed; the rest is train.

    Returns the sample indices per split and the group ids per split (sorted)."""
    uniq = np.unique(groups)
    if n_test + n_val >= len(uniq):
        raise InputError(
            f"dataset '{name}': {n_test} test + {n_val} val groups leave no training group (there are {len(uniq)})"
        )
    perm = np.random.default_rng(seed).permutation(uniq)
    chosen = {"test": perm[:n_test], "val": perm[n_test : n_test + n_val], "train": perm[n_test + n_val :]}
    idx = {k: np.flatnonzero(np.isin(groups, v)) for k, v in chosen.items()}
    ids = {k: sorted(v.tolist()) for k, v in chosen.items()}
    return {k: idx[k] for k in ("train", "val", "test")}, {k: ids[k] for k in ("train", "val", "test")}


def fraction_split(
    y: np.ndarray,
    groups: np.ndarray | None,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    name: str,
) -> dict[str, np.ndarray]:
    """A seeded split by fractions of the samples.

    Without groups (or with one sample per group) the split is stratified by class. With groups, whole
    groups are assigned (shuffled, then greedily to test and val until each has its share of samples),
    so no group is in two splits."""
    rng = np.random.default_rng(seed)
    n = len(y)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    if groups is None or len(np.unique(groups)) == n:
        for c in np.unique(y):
            idx = rng.permutation(np.flatnonzero(y == c))
            k_test = int(round(len(idx) * test_fraction))
            k_val = int(round(len(idx) * val_fraction))
            if len(idx) >= 3:  # keep every class in every split when it has enough samples
                k_test = max(k_test, 1 if test_fraction > 0 else 0)
                k_val = max(k_val, 1 if val_fraction > 0 else 0)
            while k_test + k_val > len(idx) - 1 and k_test + k_val > 0:  # keep one for training
                if k_test >= k_val:
                    k_test -= 1
                else:
                    k_val -= 1
            parts["test"].append(idx[:k_test])
            parts["val"].append(idx[k_test : k_test + k_val])
            parts["train"].append(idx[k_test + k_val :])
        out = {k: np.sort(np.concatenate(v)).astype(np.int64) for k, v in parts.items()}
        _check_nonempty(name, out, f"{n} samples, val_fraction={val_fraction}, test_fraction={test_fraction}")
        return out
    uniq, counts = np.unique(groups, return_counts=True)
    order = rng.permutation(len(uniq))
    want = {"test": test_fraction * n, "val": val_fraction * n}
    got = {"test": 0, "val": 0}
    assign: dict[str, list] = {"train": [], "val": [], "test": []}
    for i in order:
        for split in ("test", "val"):
            if got[split] < want[split] and (got[split] == 0 or got[split] + counts[i] / 2 <= want[split]):
                assign[split].append(uniq[i])
                got[split] += counts[i]
                break
        else:
            assign["train"].append(uniq[i])
    out = {k: np.flatnonzero(np.isin(groups, v)).astype(np.int64) for k, v in assign.items()}
    _check_nonempty(
        name, out, f"{len(uniq)} groups, val_fraction={val_fraction}, test_fraction={test_fraction}"
    )
    return out


def standardize(splits: dict[str, Split], modality: str, per_channel: bool) -> dict[str, list[float]]:
    """Standardize one modality in place with the mean/std of the TRAIN split only."""
    tr = splits["train"].x[modality]
    axes = (0, *range(2, tr.ndim)) if per_channel else None
    mean = tr.mean(axis=axes, dtype=np.float64, keepdims=per_channel)
    std = tr.std(axis=axes, dtype=np.float64, keepdims=per_channel)
    std = np.where(std > 1e-12, std, 1.0)
    for s in splits.values():
        s.x[modality] = ((s.x[modality] - mean) / std).astype(np.float32)
    return {"mean": np.ravel(mean).round(6).tolist(), "std": np.ravel(std).round(6).tolist()}


def make_splits(
    x: dict[str, np.ndarray], y: np.ndarray, groups: np.ndarray | None, idx: dict[str, np.ndarray]
) -> dict[str, Split]:
    whole = Split({k: v for k, v in x.items()}, y.astype(np.int64), None if groups is None else groups)
    return {k: whole.subset(idx[k]) for k in ("train", "val", "test")}


# --------------------------------------------------------------------------------------------- progress


class CacheWarning(UserWarning):
    """The dataset cache could not be written (the data were built and are used anyway)."""


def show_progress(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else bool(progress)


# How long builds are shown: a context manager factory (description, total) -> advance(n), or None.
# The library never draws; the CLI installs a progress bar (nas.cli.progress) at startup.
_progress_factory: Callable[[str, int], Any] | None = None


def set_progress_display(factory: Callable[[str, int], Any] | None) -> None:
    global _progress_factory
    _progress_factory = factory


@contextmanager
def progress_bar(description: str, total: int, enabled: bool) -> Iterator[Callable[[int], None]]:
    """Yields `advance(n)` for a long build; shown through the installed display, if any."""
    if not enabled or _progress_factory is None:
        yield lambda n=1: None
        return
    with _progress_factory(description, total) as advance:
        yield advance


# -------------------------------------------------------------------------------------------------- CSV


def read_csv(path: Path, name: str, required: Iterable[str]) -> list[dict[str, str]]:
    """Rows of a CSV file with a header; every column in `required` must be present."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            rows = [
                {k.strip(): (v or "").strip() for k, v in row.items() if isinstance(k, str)} for row in reader
            ]
    except FileNotFoundError:
        raise InputError(f"dataset '{name}': file not found: {path}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"dataset '{name}': cannot read {path}: {e}") from None
    for col in required:
        if col not in header:
            raise InputError(
                f"dataset '{name}': {path} has no column '{col}' (columns: {', '.join(header) or 'none'})"
            )
    if not rows:
        raise InputError(f"dataset '{name}': {path} has no rows")
    return rows


def file_stamp(path: Path) -> list:
    st = path.stat()
    return [str(path), st.st_size, st.st_mtime_ns]


# ------------------------------------------------------------------------------------------------ cache


def arrays_sha256(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def load_cached(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays in `path` if it exists and matches the sha256 in its sidecar `<path>.json`, else None."""
    meta_path = path.with_suffix(".json")
    try:
        meta = json.loads(meta_path.read_text())
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception:  # missing, truncated or corrupt: rebuild
        return None
    if meta.get("format") != CACHE_FORMAT or meta.get("sha256") != arrays_sha256(arrays):
        return None
    return arrays


def save_cached(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write the arrays and a sidecar JSON with their sha256, each atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for target, writer in (
        (path, lambda f: np.savez(f, **arrays)),
        (
            path.with_suffix(".json"),
            lambda f: f.write(
                json.dumps(
                    {**meta, "format": CACHE_FORMAT, "sha256": arrays_sha256(arrays)}, indent=1, default=str
                ).encode()
            ),
        ),
    ):
        tmp = target.with_name(f"{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            with open(tmp, "xb") as f:  # honours the umask, unlike mkstemp
                writer(f)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def cached_build(
    cache_dir: Path | None,
    stem: str,
    key: Any,
    build: Callable[[], dict[str, np.ndarray]],
    use_cache: bool = True,
) -> tuple[dict[str, np.ndarray], str]:
    """Load `<cache_dir>/<stem>-<hash(key)>.npz` if valid, else build and save it.

    Returns the arrays and what happened: "loaded", "generated", "regenerated" (a file was there but
    failed its checksum) or "uncached"."""
    if not use_cache or cache_dir is None:
        return build(), "uncached"
    path = Path(cache_dir) / f"{stem}-{stable_hash(key)}.npz"
    arrays = load_cached(path)
    if arrays is not None:
        return arrays, "loaded"
    existed = path.exists()
    arrays = build()
    try:
        save_cached(path, arrays, {"key": key})
    except OSError as e:  # a read-only cache is not fatal
        warnings.warn(f"cannot write cache {path}: {e}", CacheWarning, stacklevel=2)
    return arrays, "regenerated" if existed else "generated"


def format_validation_error(
    name: str, err: Any, known: Iterable[str], hints: dict[str, str] | None = None
) -> str:
    """One line from a pydantic ValidationError: which option, what is wrong (in TOML's words:
    lists, not tuples)."""
    fe = FieldError(err, keys=False)  # ("rates", 0) -> rates[0]
    loc = fe.loc
    if fe.kind == "unknown":
        return f"dataset '{name}': unknown option '{loc}' (known options: {', '.join(known)})"
    msg = fe.msg.replace("Tuple should", "List should").replace("a valid tuple", "a list")
    if fe.kind == "missing":
        hint = (hints or {}).get(loc)
        return f"dataset '{name}': option '{loc}' is required" + (f": {hint}" if hint else "")
    if not loc:
        return f"dataset '{name}': {msg}"
    got = fe.input
    got_s = "" if isinstance(got, dict) else f" (got {got!r})"
    return f"dataset '{name}': option '{loc}': {msg}{got_s}"
