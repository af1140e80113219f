"""`watch`: smartwatch physiotherapy exercises (shipped inside the seglearn wheel).

140 recordings by 10 subjects of 7 shoulder exercises (PEN pendulum, ABD abduction, FEL forward
elevation, IR internal rotation, ER external rotation, TRAP trapezius extension, ROW upright row),
6-axis inertial data at 50 Hz from a wrist-worn smartwatch (Burns et al., "Shoulder physiotherapy
exercise recognition", Computers in Biology and Medicine, 2018). Each recording is cut into windows of
`window_s` seconds every `stride_s` seconds; every window carries its recording's label. Modalities:
`acc` (3, L) accelerometer x/y/z and `gyro` (3, L) gyroscope x/y/z, standardized per channel with the
TRAIN split's statistics. Splits are by subject: `test_subjects` and `val_subjects` whole subjects
chosen from the seed, the rest train; `groups` holds the subject id.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field, model_validator

from ._common import Options, group_count_split, make_splits, standardize
from .base import Dataset

NAME = "watch"
SAMPLE_RATE = 50.0
N_SUBJECTS = 10
EXERCISES = {
    "PEN": "pendulum",
    "ABD": "abduction",
    "FEL": "forward elevation",
    "IR": "internal rotation",
    "ER": "external rotation",
    "TRAP": "trapezius extension",
    "ROW": "upright row",
}


class WatchOptions(Options):
    window_s: float = Field(2.0, gt=0, le=20, description="window length in seconds (50 Hz)")
    stride_s: float = Field(1.0, gt=0, le=20, description="hop between windows in seconds")
    test_subjects: int = Field(2, ge=1, le=8, description="subjects held out for test")
    val_subjects: int = Field(2, ge=1, le=8, description="subjects held out for validation")

    @model_validator(mode="after")
    def _check(self) -> WatchOptions:
        if self.test_subjects + self.val_subjects >= N_SUBJECTS:
            raise ValueError(
                f"test_subjects ({self.test_subjects}) + val_subjects ({self.val_subjects}) must leave at "
                f"least one of the {N_SUBJECTS} subjects for training"
            )
        if round(self.window_s * SAMPLE_RATE) < 2:
            raise ValueError(f"window_s={self.window_s} is shorter than two samples at 50 Hz")
        if round(self.stride_s * SAMPLE_RATE) < 1:
            raise ValueError(f"stride_s={self.stride_s} is shorter than one sample at 50 Hz")
        return self


def load(opts: WatchOptions, seed: int, cache_dir: Path | None) -> Dataset:
    from seglearn.datasets import load_watch

    from memory_models.errors import InputError

    data = load_watch()
    win = int(round(opts.window_s * SAMPLE_RATE))
    hop = int(round(opts.stride_s * SAMPLE_RATE))
    windows, labels, subjects = [], [], []
    for rec, label, subject in zip(data["X"], data["y"], data["subject"]):
        rec = np.asarray(rec, dtype=np.float32)
        if len(rec) < win:
            continue
        starts = np.arange(0, len(rec) - win + 1, hop)
        w = np.lib.stride_tricks.sliding_window_view(rec, win, axis=0)[starts]  # (n, 6, win)
        windows.append(w)
        labels.append(np.full(len(w), label, np.int64))
        subjects.append(np.full(len(w), subject, np.int64))
    if not windows:
        raise InputError(
            f"dataset '{NAME}': option 'window_s': {opts.window_s} s is longer than every recording"
        )
    x = np.concatenate(windows).astype(np.float32)
    y, groups = np.concatenate(labels), np.concatenate(subjects)

    idx, subject_ids = group_count_split(groups, opts.test_subjects, opts.val_subjects, seed, NAME)
    splits = make_splits(
        {"acc": np.ascontiguousarray(x[:, 0:3]), "gyro": np.ascontiguousarray(x[:, 3:6])}, y, groups, idx
    )
    stats = {m: standardize(splits, m, per_channel=True) for m in ("acc", "gyro")}

    classes = [str(c) for c in data["y_labels"]]
    return Dataset(
        name=NAME,
        modalities={"acc": (3, win), "gyro": (3, win)},
        classes=classes,
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        info={
            "description": "smartwatch shoulder-physiotherapy exercises: "
            + ", ".join(f"{c} {EXERCISES.get(c, c)}" for c in classes),
            "source": "seglearn.datasets.load_watch (Burns et al. 2018, Computers in Biology and Medicine); "
            "6-axis IMU at 50 Hz, 140 recordings, 10 subjects",
            "split": f"by subject: {opts.test_subjects} test, {opts.val_subjects} val, the rest train (seeded); "
            "groups = subject id",
            "subjects": subject_ids,
            "sample_rate_hz": SAMPLE_RATE,
            "channels": {
                "acc": [str(c) for c in data["X_labels"][0:3]],
                "gyro": [str(c) for c in data["X_labels"][3:6]],
            },
            "standardization": stats,
            "options": opts.model_dump(mode="json"),
        },
    )
