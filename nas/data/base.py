"""The dataset contract: named modalities, labels, and fixed splits.

A dataset gives one float32 array per modality per sample, shaped (N, C, L) for signals or
(N, C, H, W) for images and spectrograms; integer labels; and fixed train / validation / test splits
made from a seed. Where recordings come from people, splits are by subject (group), so no person is in
two splits. The test split is never used by the search; only `m2nas export` touches it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Split:
    x: dict[str, np.ndarray]  # modality -> float32 (N, C, L) or (N, C, H, W)
    y: np.ndarray  # int64 (N,)
    groups: np.ndarray | None = None  # subject / speaker / participant id per sample, if any

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx: np.ndarray) -> Split:
        return Split(
            {k: v[idx] for k, v in self.x.items()},
            self.y[idx],
            None if self.groups is None else self.groups[idx],
        )


@dataclass
class Dataset:
    name: str
    modalities: dict[str, tuple[int, ...]]  # per-sample shape of each modality, in a fixed order
    classes: list[str]
    train: Split
    val: Split
    test: Split
    info: dict[str, Any] = field(default_factory=dict)  # description, source, split rule, options

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def fingerprint(self) -> str:
        """Changes whenever the data, the labels or the split change (used to key caches)."""
        h = hashlib.sha256(self.name.encode())
        for split in (self.train, self.val, self.test):
            for k in sorted(split.x):
                h.update(k.encode())
                h.update(np.ascontiguousarray(split.x[k]).tobytes())
            h.update(np.ascontiguousarray(split.y).tobytes())
        return h.hexdigest()[:16]

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "modalities": {k: list(v) for k, v in self.modalities.items()},
            "classes": self.classes,
            "splits": {"train": len(self.train), "val": len(self.val), "test": len(self.test)},
            **{k: v for k, v in self.info.items() if isinstance(v, (str, int, float, bool, list, dict))},
        }
