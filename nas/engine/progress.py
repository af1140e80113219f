"""Snapshots of a running search for a display: counts, the candidates in flight, what finished in
this run and why, the teacher's epochs, and an ETA.

Everything about candidates is read back from the storage (the trials' records), not handed over
by the code that trains them: other worker processes, on this machine or another, train candidates
too, and the storage is what all of them write. Only the teacher, trained in this process before
the workers start, reports through a callback.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from optuna.trial import TrialState

from .record import Status, TrialRecord


@dataclass(frozen=True)
class Progress:
    """A snapshot of a running search, handed to the caller's `progress` callback about once a
    second (the CLI draws it; the engine never prints). Lists are whole histories of this run, so a
    display that samples them once a second misses no event."""

    study: str
    counts: dict[str, Any]
    best: dict[str, dict[str, Any] | None]  # per device, as in the result's `best`
    metric: str
    budget: int
    elapsed_s: float
    left_s: float | None  # None without a deadline
    used: int = 0  # candidates that cost training (what the budget counts), stored runs included
    eta_s: float | None = None  # None until one candidate's worth of training has been measured
    in_flight: list[dict[str, Any]] = field(default_factory=list)  # trials training now
    finished: list[dict[str, Any]] = field(default_factory=list)  # outcomes of this run, in order
    # None when the study does not distil; else {"epochs", "history": [{"epoch", "val", "seconds"}],
    # "done"}; an empty history once done means it came from the cache
    teacher: dict[str, Any] | None = None


def _outcome(t, devices: list[str], metric: str) -> dict[str, Any]:
    rec = TrialRecord(t)
    status = rec.status
    reason = rec.reason
    if status == Status.FAILED and rec.stored_status in (None, Status.TRAINING):
        reason = reason or "interrupted or its worker was lost; queued again"
    primary = rec.figures(devices[0]) or {}
    return {
        "trial": t.number,
        "status": status.value,
        "reason": reason,
        "val": rec.val.get(metric),
        "flash": primary.get("flash"),
        "sram": primary.get("sram"),
        "fits": {d: bool((rec.figures(d) or {}).get("fits")) for d in devices},
        "summary": rec.summary,
        "seconds": t.duration.total_seconds() if t.duration else None,
    }


def _in_flight(t, devices: list[str]) -> dict[str, Any]:
    rec = TrialRecord(t)
    primary = rec.figures(devices[0]) or {}
    epoch = rec.epoch or {}
    return {
        "trial": t.number,
        "summary": rec.summary,
        "flash": primary.get("flash"),
        "sram": primary.get("sram"),
        "fits": {d: bool((rec.figures(d) or {}).get("fits")) for d in devices},
        "epoch": epoch.get("epoch", 0),
        "epochs": epoch.get("epochs"),
        "val": epoch.get("val"),
        "best": epoch.get("best"),
        "next_rung": epoch.get("next_rung"),
    }


class SearchWatch:
    """What a display needs to know about one run of `run_search`, from its start to its end."""

    def __init__(self, study, ostudy, budget, started: float) -> None:
        from .search import trials_of

        self.study, self.ostudy, self.budget, self.started = study, ostudy, budget, started
        trials = trials_of(ostudy)
        self.before = {t.number for t in trials if t.state not in (TrialState.RUNNING, TrialState.WAITING)}
        self.used_before = budget.used(trials)
        self.search_started = started  # reset once the teacher is ready: its time is no candidate's
        self.teacher: dict[str, Any] | None = None

    # ---- the teacher (this process) ----------------------------------------------------------------
    def teacher_begin(self) -> None:
        """Before the teacher is loaded or trained: a display can say what the wait is for."""
        self.teacher = {"epochs": self.study.cfg.teacher.epochs, "history": [], "done": False}

    def teacher_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        if self.teacher is None:
            self.teacher_begin()
        self.teacher["history"].append(  # the teacher is trained and judged on accuracy
            {"epoch": epoch, "val": metrics.get("accuracy"), "seconds": round(time.time() - self.started, 1)}
        )

    def teacher_ready(self) -> None:
        """From here the time is the candidates': the ETA is measured from this moment."""
        if self.teacher is not None:
            self.teacher["done"] = True
        self.search_started = time.time()

    # ---- snapshots ---------------------------------------------------------------------------------
    def eta_s(self, used: int, in_flight: list[dict[str, Any]], now: float) -> float | None:
        """Candidates left times the wall time per candidate measured in this run (an epoch-
        fraction of each candidate in flight counts as done), or the time to the deadline if
        sooner. Wall time per candidate already reflects several workers training at once."""
        partial = sum(f["epoch"] / f["epochs"] for f in in_flight if f.get("epochs"))
        left = max(0.0, self.budget.candidates - used - partial)
        done = used - self.used_before + partial
        by_count = 0.0 if left == 0 else None if done <= 0 else left * (now - self.search_started) / done
        by_time = None if self.budget.deadline is None else max(0.0, self.budget.deadline - now)
        known = [e for e in (by_count, by_time) if e is not None]
        return min(known) if known else None

    def snapshot(self) -> Progress:
        from .search import summarize, trials_of

        study = self.study
        trials = trials_of(self.ostudy)
        devices = list(study.devices)
        metric = study.cfg.objectives.metric
        s = summarize(study, trials)
        in_flight = [
            _in_flight(t, devices)
            for t in trials
            if t.state == TrialState.RUNNING and TrialRecord(t).stored_status == Status.TRAINING
        ]
        done = [
            t
            for t in trials
            if t.number not in self.before and t.state not in (TrialState.RUNNING, TrialState.WAITING)
        ]
        done.sort(key=lambda t: (t.datetime_complete or t.datetime_start, t.number))
        now = time.time()
        used = self.budget.used(trials)
        deadline = self.budget.deadline
        return Progress(
            study.name,
            s["counts"],
            s["best"],
            metric,
            self.budget.candidates,
            now - self.started,
            None if deadline is None else max(0.0, deadline - now),
            used,
            self.eta_s(used, in_flight, now),
            in_flight,
            [_outcome(t, devices, metric) for t in done],
            None if self.teacher is None else {**self.teacher, "history": list(self.teacher["history"])},
        )
