"""`coswara`: your own cough / breathing / speech recordings per participant (a TinyM2Net-V3 case
study, after the Coswara COVID-19 sound corpus).

Layout under the folder given as option `root`:

* a metadata CSV at the root (option `metadata`; default: `metadata.csv`, or the only .csv file at the
  root) with one row per participant: columns `id` and `label` (names set by `id_column`,
  `label_column`), labels such as `positive` / `negative`;
* one folder per participant named by its id, either `<root>/<id>/` or one level deeper
  (`<root>/<date>/<id>/`, as in the Coswara release), holding one .wav file per modality. The file of
  each modality is the first match of its glob patterns (option `files`); the defaults accept both
  `cough.wav` / `breathing.wav` / `speech.wav` and Coswara's `cough-heavy.wav`,
  `breathing-deep.wav`, `counting-normal.wav`.

`label_map` maps raw labels to classes (e.g. Coswara's `healthy` -> `negative`, `positive_mild` ->
`positive`); participants whose label is not in the map are left out (counted in `info`). Every sound
goes through the shared log-mel front end (`nas/data/audio.py`): mono, resampled to 16 kHz, silence
trimmed, centre-cropped/padded, `n_mels` x `frames`, then standardized per modality with the train
split's statistics. Modalities (1, n_mels, frames) each. The split is by participant (one sample
each), stratified by class, from the seed. Features are cached, keyed by the files' names, sizes and
modification times and the front-end options.
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
from .audio import FrontEnd, read_wav
from .base import Dataset

NAME = "coswara"
ROOT_HINT = (
    "a folder with metadata.csv (columns id,label) and one folder per participant <root>/<id>/ holding "
    "cough.wav, breathing.wav and speech.wav (the Coswara release from github.com/iiscleap/Coswara-Data "
    "works with metadata='combined_data.csv', label_column='covid_status' and a label_map)"
)
DEFAULT_FILES = {
    "cough": ("cough.wav", "cough-heavy.wav", "cough*.wav"),
    "breathing": ("breathing.wav", "breathing-deep.wav", "breathing*.wav"),
    "speech": ("speech.wav", "counting-normal.wav", "counting*.wav", "speech*.wav"),
}


class CoswaraOptions(Options):
    root: Path = Field(description=ROOT_HINT)
    metadata: str | None = Field(
        None, description="metadata CSV relative to root (default: metadata.csv or the only CSV)"
    )
    id_column: str = "id"
    label_column: str = "label"
    label_map: dict[str, str] | None = Field(
        None, description="raw label -> class; other labels are left out"
    )
    classes: tuple[str, ...] | None = Field(None, description="class order (default: sorted)")
    files: dict[str, tuple[str, ...]] = Field(
        DEFAULT_FILES, description="modality -> glob patterns, first match wins"
    )
    on_missing: Literal["error", "skip"] = Field(
        "error", description="a participant without a folder or a sound"
    )
    sample_rate: int = Field(16000, ge=4000, le=48000)
    n_mels: int = Field(40, ge=8, le=128)
    frames: int = Field(128, ge=8, le=2000)
    win_ms: float = Field(40.0, gt=0, le=200)
    hop_ms: float = Field(20.0, gt=0, le=200)
    trim_silence: bool = True
    normalize: Literal["standardize", "none"] = "standardize"
    val_fraction: float = Field(0.2, gt=0, lt=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    cache: bool = True
    progress: bool | None = None

    @field_validator("files")
    @classmethod
    def _files(cls, v: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        if not v:
            raise ValueError("needs at least one modality")
        for modality, patterns in v.items():
            if not modality.isidentifier():
                raise ValueError(f"modality name '{modality}' must be an identifier")
            if not patterns:
                raise ValueError(f"modality '{modality}' has no file pattern")
        return v

    @model_validator(mode="after")
    def _check(self) -> CoswaraOptions:
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must be below 1")
        return self

    def front_end(self) -> FrontEnd:
        return FrontEnd(
            sample_rate=self.sample_rate,
            n_mels=self.n_mels,
            frames=self.frames,
            win_ms=self.win_ms,
            hop_ms=self.hop_ms,
            trim=self.trim_silence,
        )


def _metadata_path(opts: CoswaraOptions) -> Path:
    if opts.metadata is not None:
        p = Path(opts.metadata)
        return p if p.is_absolute() else opts.root / p
    default = opts.root / "metadata.csv"
    if default.is_file():
        return default
    csvs = sorted(opts.root.glob("*.csv"))
    if len(csvs) == 1:
        return csvs[0]
    if not csvs:
        raise InputError(
            f"dataset '{NAME}': file not found: {default} (the metadata CSV with columns id,label)"
        )
    raise InputError(
        f"dataset '{NAME}': several CSV files in {opts.root} ({', '.join(p.name for p in csvs)}); choose one with option metadata"
    )


def _participant_dirs(root: Path) -> dict[str, Path]:
    """Folder name -> folder, for <root>/<id>/ and <root>/<any>/<id>/ (the first level wins)."""
    found: dict[str, Path] = {}
    level1 = sorted(p for p in root.iterdir() if p.is_dir())
    for p in level1:
        found.setdefault(p.name, p)
    for parent in level1:
        for p in sorted(q for q in parent.iterdir() if q.is_dir()):
            found.setdefault(p.name, p)
    return found


def _find_sound(folder: Path, patterns: tuple[str, ...]) -> Path | None:
    for pattern in patterns:
        matches = sorted(folder.glob(pattern))
        if matches:
            return matches[0]
    return None


def load(opts: CoswaraOptions, seed: int, cache_dir: Path | None) -> Dataset:
    root = opts.root
    if not root.is_dir():
        raise InputError(f"dataset '{NAME}': root folder not found: {root} (put {ROOT_HINT} there)")
    meta_path = _metadata_path(opts)
    rows = read_csv(meta_path, NAME, [opts.id_column, opts.label_column])
    dirs = _participant_dirs(root)
    modalities = list(opts.files)

    participants: list[tuple[str, str, list[Path]]] = []
    dropped_label, skipped, seen = 0, [], set()
    for line, row in enumerate(rows, start=2):
        pid, raw = row[opts.id_column], row[opts.label_column]
        if not pid:
            raise InputError(f"dataset '{NAME}': {meta_path} line {line}: empty {opts.id_column}")
        if pid in seen:
            raise InputError(
                f"dataset '{NAME}': {meta_path} line {line}: participant '{pid}' is listed twice"
            )
        seen.add(pid)
        label = opts.label_map.get(raw) if opts.label_map is not None else raw
        if not label:
            dropped_label += 1
            continue
        folder = dirs.get(pid)
        if folder is None:
            if opts.on_missing == "skip":
                skipped.append(pid)
                continue
            raise InputError(
                f"dataset '{NAME}': participant '{pid}' ({meta_path.name} line {line}): folder not found: {root / pid}"
            )
        sounds = []
        for m in modalities:
            f = _find_sound(folder, opts.files[m])
            if f is None:
                if opts.on_missing == "skip":
                    break
                raise InputError(
                    f"dataset '{NAME}': participant '{pid}': no {m} recording in {folder} "
                    f"(file not found: {folder / opts.files[m][0]}; patterns {list(opts.files[m])})"
                )
            sounds.append(f)
        if len(sounds) < len(modalities):
            skipped.append(pid)
            continue
        participants.append((pid, label, sounds))

    if not participants:
        raise InputError(
            f"dataset '{NAME}': no usable participant in {meta_path} (labels kept by label_map: none?)"
        )
    classes, y = class_labels(NAME, [lab for _, lab, _ in participants], opts.classes, f"in {meta_path}")
    fe = opts.front_end()

    def build() -> dict[str, np.ndarray]:
        out = {m: np.empty((len(participants), 1, fe.n_mels, fe.frames), np.float32) for m in modalities}
        n = len(participants) * len(modalities)
        with progress_bar(f"reading {n} recordings", n, show_progress(opts.progress)) as advance:
            for i, (_, _, sounds) in enumerate(participants):
                for m, f in zip(modalities, sounds):
                    x, sr = read_wav(f, NAME)
                    out[m][i, 0] = fe(x, sr)
                    advance(1)
        return out

    key = {
        "version": 1,
        "front_end": [fe.sample_rate, fe.n_mels, fe.frames, fe.win_ms, fe.hop_ms, fe.trim],
        "modalities": modalities,
        "files": [file_stamp(f) for _, _, sounds in participants for f in sounds],
    }
    arrays, cache_state = cached_build(cache_dir, NAME, key, build, use_cache=opts.cache)

    groups = np.arange(len(participants), dtype=np.int64)  # one sample per participant
    idx = fraction_split(y, groups, opts.val_fraction, opts.test_fraction, seed, NAME)
    splits = make_splits({m: arrays[m] for m in modalities}, y, groups, idx)
    stats = {}
    if opts.normalize == "standardize":
        stats = {m: standardize(splits, m, per_channel=False) for m in modalities}
    return Dataset(
        name=NAME,
        modalities={m: (1, fe.n_mels, fe.frames) for m in modalities},
        classes=classes,
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        info={
            "description": "per-participant respiratory and speech sounds (user data, Coswara-style)",
            "source": str(root),
            "split": "by participant, stratified by class (seeded); "
            f"val_fraction={opts.val_fraction}, test_fraction={opts.test_fraction}; groups = participant index",
            "participants": {k: len(v) for k, v in idx.items()},
            "participant_ids": tuple(
                pid for pid, _, _ in participants
            ),  # indexed by groups; a tuple stays out of summary()
            "dropped_by_label_map": dropped_label,
            "skipped_missing": len(skipped),
            "audio_front_end": f"{fe.sample_rate} Hz, {fe.win_ms:g} ms Hann window, {fe.hop_ms:g} ms hop, "
            f"{fe.n_mels} mel bands, {fe.frames} frames, log, trim_silence={fe.trim}",
            "standardization": stats,
            "cache": cache_state,
            "options": opts.model_dump(mode="json", exclude={"progress"}),
        },
    )
