"""Reading a study's trials back: statuses, counts, per-device Pareto fronts, hypervolume.

Shared by `m2nas status`, the report, the dashboard and the exporter, so they all agree on what
"trained", "rejected" and "the front on device X" mean.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from optuna.trial import FrozenTrial

from .record import STATUSES, Status, TrialRecord, status_of

__all__ = [
    "STATUSES",
    "Counts",
    "best_trial",
    "count",
    "device_figures",
    "failed_candidates",
    "failure_streak",
    "hypervolume_2d_plus",
    "pareto_front",
    "status_of",
]


@dataclass
class Counts:
    trained: int = 0
    rejected: int = 0
    stopped_early: int = 0
    no_signal: int = 0
    failed: int = 0
    running: int = 0
    waiting: int = 0

    @property
    def candidates(self) -> int:
        """Candidates that cost training time (the search budget counts these)."""
        return self.trained + self.stopped_early + self.no_signal

    @property
    def analysed(self) -> int:
        return self.candidates + self.rejected

    @property
    def feasible_fraction(self) -> float:
        return self.candidates / self.analysed if self.analysed else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"feasible_fraction": round(self.feasible_fraction, 4)}


def count(trials: list[FrozenTrial]) -> Counts:
    c = Counts()
    for t in trials:
        s = status_of(t)
        setattr(c, s, getattr(c, s) + 1)
    return c


def failed_candidates(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """Failed trials that cost a training attempt: their training failed (or Optuna refused its
    values). Interrupted or lost trials (stored status still `training`) are not among them: they
    are queued again with the same parameters, so counting them would count one candidate twice."""
    out = []
    for t in trials:
        if status_of(t) != Status.FAILED:
            continue
        if TrialRecord(t).stored_status in (None, Status.TRAINING):
            continue
        out.append(t)
    return out


def failure_streak(trials: list[FrozenTrial]) -> tuple[int, str]:
    """How many of the latest finished candidates failed in a row, and the last one's reason.

    Rejections cost no training and say nothing about whether training works, so they neither
    add to the streak nor break it; a trained or stopped-early candidate breaks it."""
    failed = {t.number for t in failed_candidates(trials)}
    streak, reason = 0, ""
    for t in sorted(trials, key=lambda t: t.number, reverse=True):
        s = status_of(t)
        if t.number in failed:
            if not streak:
                reason = TrialRecord(t).reason or "no reason stored"
            streak += 1
        elif s in (Status.TRAINED, Status.STOPPED_EARLY, Status.NO_SIGNAL):
            break
    return streak, reason


def device_figures(t: FrozenTrial, device: str) -> dict[str, Any] | None:
    return TrialRecord(t).figures(device)


def pareto_front(
    trials: list[FrozenTrial], device: str, metric: str, minimize: list[str]
) -> list[FrozenTrial]:
    """Trained trials that fit `device`, not dominated on (val metric up; each figure on `device` down).
    Sorted by the first minimized figure."""
    rows = []
    for t in trials:
        rec = TrialRecord(t)
        fig = rec.figures(device)
        if rec.status != Status.TRAINED or not fig or not fig["fits"]:
            continue
        rows.append((t, [-rec.val[metric]] + [fig[m] for m in minimize]))
    front = []
    for t, v in rows:
        dominated = any(
            all(o <= s for o, s in zip(w, v)) and any(o < s for o, s in zip(w, v)) for _, w in rows
        )
        if not dominated:
            front.append((t, v))
    front.sort(key=lambda tv: (tv[1][1:] or [0], tv[1][0]))
    return [t for t, _ in front]


def best_trial(trials: list[FrozenTrial], device: str, metric: str) -> FrozenTrial | None:
    """Highest validation metric among trained trials that fit `device`; ties go to less memory."""
    best = None
    for t in trials:
        rec = TrialRecord(t)
        fig = rec.figures(device)
        if rec.status != Status.TRAINED or not fig or not fig["fits"]:
            continue
        key = (rec.val[metric], -fig["flash"], -fig["sram"], -t.number)
        if best is None or key > best[0]:
            best = (key, t)
    return None if best is None else best[1]


def hypervolume_2d_plus(points: np.ndarray, reference: np.ndarray) -> float:
    """Hypervolume of points to be minimised in every column, exact (Optuna has no public API for
    it). Points not strictly better than the reference in every column add nothing."""
    points = np.asarray(points, dtype=float)
    reference = np.asarray(reference, dtype=float)
    if len(points) == 0:
        return 0.0
    keep = np.all(points < reference, axis=1)
    if not keep.any():
        return 0.0
    return float(_hypervolume(_nondominated(points[keep]), reference))


def _nondominated(p: np.ndarray) -> np.ndarray:
    p = np.unique(p, axis=0)
    le = np.all(p[:, None, :] <= p[None, :, :], axis=2)
    lt = np.any(p[:, None, :] < p[None, :, :], axis=2)
    dominated = (le & lt).any(axis=0)  # row j is dominated by some row i
    return p[~dominated]


def _hypervolume(p: np.ndarray, ref: np.ndarray) -> float:
    """Slicing along the last column (HSO): exact, fast for the few-dimensional, small fronts here."""
    if p.shape[1] == 1:
        return float(ref[0] - p[:, 0].min())
    if p.shape[1] == 2:
        order = np.argsort(p[:, 0], kind="stable")
        xs, ys = p[order, 0], np.minimum.accumulate(p[order, 1])
        widths = np.diff(np.append(xs, ref[0]))
        return float(np.sum(widths * (ref[1] - ys)))
    p = p[np.argsort(p[:, -1], kind="stable")]
    upper = np.append(p[1:, -1], ref[-1])
    total = 0.0
    for i in range(len(p)):
        depth = upper[i] - p[i, -1]
        if depth > 0:
            total += depth * _hypervolume(p[: i + 1, :-1], ref[:-1])
    return total
