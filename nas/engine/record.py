"""What m2nas stores with each Optuna trial, and the one place that writes and reads it.

Optuna keeps its own fields on `FrozenTrial` (state, params, values); everything m2nas adds (the
arch, the per-device memory figures, the status, the training curve, the artifact ids) lives in the
trial's user attributes. Writers and readers go through `TrialRecord` so an attribute's name and
meaning are defined once: the worker, `m2nas status`, the report, the dashboard and the exporter
read the same record.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from optuna.trial import FrozenTrial, TrialState


class Status(StrEnum):
    """Where a candidate stands. Stored as the `status` attribute; `TrialRecord.status` also derives
    it from Optuna's state (a COMPLETE trial is trained, a FAIL one failed)."""

    TRAINED = "trained"
    REJECTED = "rejected"
    STOPPED_EARLY = "stopped_early"
    # trained, but its validation metric is not above what always answering one class scores: the
    # smallest such models would otherwise sit on every front as "the cheapest model"
    NO_SIGNAL = "no_signal"
    FAILED = "failed"
    RUNNING = "running"
    WAITING = "waiting"
    TRAINING = "training"  # stored while a worker trains it; read back as `running` (or requeued)


# The statuses `m2nas status` counts, in its order.
STATUSES = tuple(s.value for s in Status if s is not Status.TRAINING)


class Attr(StrEnum):
    """User-attribute keys."""

    ARCH = "arch"
    ARCH_KEY = "arch_key"
    SUMMARY = "summary"
    MEMORY = "memory"  # {device: figures}
    WORKER = "worker"
    STATUS = "status"
    REASON = "reason"
    CURVE = "curve"  # validation metric per epoch
    VAL = "val"  # validation metrics at the best epoch
    TRAIN_SECONDS = "train_seconds"
    EPOCHS_RUN = "epochs_run"
    BEST_EPOCH = "best_epoch"
    ARTIFACTS = "artifacts"  # {file name: artifact id}
    RETRY_OF = "retry_of"
    VAL_LOSS = "val_loss"  # validation cross-entropy at the best epoch
    CHANCE = "chance"  # the metric of the best constant answer on the validation split
    SEED_ARCH = "seed_arch"  # on an enqueued trial: the Arch to evaluate instead of sampling one
    EPOCH = "epoch"  # while training: {epoch, epochs, val, best, next_rung}, for live displays


class StudyAttr(StrEnum):
    """Study user-attribute keys (a finished trial's attributes can no longer be written, so what
    the final stage learns about a trial is kept on the study)."""

    META = "m2nas"  # study file, dataset, metric, devices, artifacts folder
    FINAL = "m2nas_final"  # {trial number: {seed index: FinalRun as a dict}}
    CHOICE = "m2nas_choice"  # {device: Choice as a dict}


@dataclass(frozen=True, slots=True)
class TrialRecord:
    """A read-only, typed view of one trial's m2nas attributes."""

    trial: FrozenTrial

    @property
    def attrs(self) -> dict[str, Any]:
        return self.trial.user_attrs

    @property
    def stored_status(self) -> str | None:
        return self.attrs.get(Attr.STATUS)

    @property
    def status(self) -> Status:
        state = self.trial.state
        if state == TrialState.RUNNING:
            return Status.RUNNING
        if state == TrialState.WAITING:
            return Status.WAITING
        if state == TrialState.FAIL:
            return Status.FAILED
        if state == TrialState.COMPLETE:
            return Status.TRAINED
        s = self.stored_status
        if s in (Status.REJECTED, Status.STOPPED_EARLY, Status.NO_SIGNAL):
            return Status(s)
        return Status.FAILED

    @property
    def arch(self) -> dict[str, Any] | None:
        return self.attrs.get(Attr.ARCH)

    @property
    def arch_key(self) -> str | None:
        return self.attrs.get(Attr.ARCH_KEY)

    @property
    def summary(self) -> str | None:
        return self.attrs.get(Attr.SUMMARY)

    @property
    def memory(self) -> dict[str, dict[str, Any]]:
        return self.attrs.get(Attr.MEMORY, {})

    def figures(self, device: str) -> dict[str, Any] | None:
        """The memory figures on `device` stored at sampling time."""
        return self.memory.get(device)

    @property
    def val(self) -> dict[str, float]:
        return self.attrs.get(Attr.VAL, {})

    @property
    def curve(self) -> list[float] | None:
        return self.attrs.get(Attr.CURVE)

    @property
    def reason(self) -> str:
        return self.attrs.get(Attr.REASON, "")

    @property
    def artifacts(self) -> dict[str, str]:
        return self.attrs.get(Attr.ARTIFACTS) or {}

    @property
    def epoch(self) -> dict[str, Any] | None:
        """Where its training stands (the last epoch written); None before training starts."""
        return self.attrs.get(Attr.EPOCH)

    # ---- writing (on a live optuna.Trial) ---------------------------------------------------------
    @staticmethod
    def write_sampled(trial, arch, per_device: dict[str, dict[str, Any]]) -> None:
        trial.set_user_attr(Attr.ARCH, arch.to_dict())
        trial.set_user_attr(Attr.ARCH_KEY, arch.key())
        trial.set_user_attr(Attr.SUMMARY, arch.summary())
        trial.set_user_attr(Attr.MEMORY, per_device)
        trial.set_user_attr(Attr.WORKER, f"{socket.gethostname()}:{os.getpid()}")

    @staticmethod
    def write_status(trial, status: Status, reason: str | None = None) -> None:
        trial.set_user_attr(Attr.STATUS, status.value)
        if reason is not None:
            trial.set_user_attr(Attr.REASON, reason)

    @staticmethod
    def write_epoch(trial, epochs: int, curve: list[float], next_rung: int | None) -> None:
        """After each epoch (and once at epoch 0): a display in another process reads it from the
        storage, so a candidate in flight is visible wherever it trains."""
        trial.set_user_attr(
            Attr.EPOCH,
            {
                "epoch": len(curve),
                "epochs": epochs,
                "val": curve[-1] if curve else None,
                "best": max(curve) if curve else None,
                "next_rung": next_rung,
            },
        )

    @staticmethod
    def write_training(trial, curve: list[float], result, seconds: float) -> None:
        trial.set_user_attr(Attr.CURVE, curve)
        trial.set_user_attr(Attr.VAL, result.metrics)
        trial.set_user_attr(Attr.TRAIN_SECONDS, round(seconds, 3))
        trial.set_user_attr(Attr.EPOCHS_RUN, result.epochs_run)
        trial.set_user_attr(Attr.BEST_EPOCH, result.best_epoch)
        trial.set_user_attr(Attr.VAL_LOSS, round(float(result.val_loss), 6))

    @staticmethod
    def write_artifacts(trial, ids: dict[str, str]) -> None:
        trial.set_user_attr(Attr.ARTIFACTS, ids)


def status_of(t: FrozenTrial) -> Status:
    return TrialRecord(t).status
