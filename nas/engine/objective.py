"""One trial as Optuna sees it: sample an arch, screen it on every study device, reject it or train it.

The pieces live apart: memory screening in `screening`, the teacher's logits in `teacher_logits`,
what is stored with the trial in `record`, artifacts in `storage`; this module only sequences them.

A candidate that fits none of the study's device targets is recorded (PRUNED, status `rejected`,
with its figures, its reason and a positive constraint value so Optuna's samplers learn where the
feasible region is) and is never built or trained. The rest are trained quantization-aware with
distillation; multi-objective successive halving (or the older threshold rule) may stop them
(PRUNED, status `stopped_early`); one whose validation metric is not above chance is PRUNED with
status `no_signal` (never on a front); the rest are COMPLETE with their objective values and
artifacts.
"""

from __future__ import annotations

import time
import warnings

import optuna
from optuna.trial import TrialState

from memory_models import MemoryReport
from nas.config.study import Study
from search_spaces import Arch, sample

from .early_stop import Finished, should_stop
from .promotion import Seen, promote, rungs
from .record import Attr, Status, TrialRecord
from .screening import MemoryScreen, figures, overshoot
from .storage import save_trial_artifacts
from .teacher_logits import TeacherLogits

__all__ = ["CandidateEvaluator", "figures", "overshoot"]


class CandidateEvaluator:
    """The Optuna objective of a study (callable on a trial); `store` is the artifact store."""

    def __init__(self, study: Study, store, trainer_device: str | None = None) -> None:
        self.study = study
        self.cfg = study.cfg
        shapes = study.dataset_shapes()
        self.inputs, self.classes = shapes["modalities"], shapes["classes"]
        self.store = store
        self.trainer_device = trainer_device or self.cfg.study.device
        self.screen = MemoryScreen(study)
        self.teacher_logits = TeacherLogits(study, self.trainer_device)
        self.current_trial: optuna.Trial | None = None

    def chance(self) -> float:
        from nas.train.metrics import chance_level

        data = self.study.dataset
        return chance_level(data.val.y, data.n_classes, self.cfg.objectives.metric)

    def analyse(self, arch: Arch) -> dict[str, MemoryReport]:
        return self.screen.analyse(arch)

    def objective_values(self, metric: float, per_device: dict[str, dict]) -> list[float]:
        values = [metric]
        for obj in self.study.objectives:
            values.append(float(per_device[obj.on(self.study.primary_device)][obj.figure]))
        return values

    # ---- the trial ------------------------------------------------------------------------------
    def sample_and_record(self, trial: optuna.Trial) -> tuple[Arch, dict[str, MemoryReport], dict]:
        """Sample the arch, analyse it on every device and store both with the trial."""
        self.current_trial = trial
        seeded = trial.user_attrs.get(Attr.SEED_ARCH)
        if seeded is not None:  # warm start: an architecture given by the study, not sampled
            arch = Arch.from_dict(seeded, f"seed arch of trial {trial.number}")
        else:
            arch = sample(trial, self.study.space, self.inputs, self.classes)
        reports = self.analyse(arch)
        per_device = {name: figures(r) for name, r in reports.items()}
        TrialRecord.write_sampled(trial, arch, per_device)
        return arch, reports, per_device

    def __call__(self, trial: optuna.Trial) -> list[float]:
        arch, reports, per_device = self.sample_and_record(trial)
        with warnings.catch_warnings():  # a retried trial inherits the (same) value: Optuna warns
            warnings.simplefilter("ignore")
            trial.set_constraint("fits_a_device", self.screen.constraint(reports))
        if not self.screen.fits_any(reports):
            TrialRecord.write_status(trial, Status.REJECTED, self.screen.rejection(reports))
            raise optuna.TrialPruned("fits no device target")
        if not self.cfg.study.repeats:
            same = self.already_trained(trial, arch.key())
            if same is not None:
                reason = f"duplicate of trial {same} (same arch; [study] repeats = true trains it again)"
                TrialRecord.write_status(trial, Status.REJECTED, reason)
                raise optuna.TrialPruned(reason)
        assert any(r.fits for r in reports.values()), "a candidate that fits no device must never be trained"
        return self.train(trial, arch, reports, per_device)

    def already_trained(self, trial: optuna.Trial, key: str) -> int | None:
        """The number of a trial that trained (or is training, or failed training) this arch.

        Interrupted or lost trials do not count: they are queued again and this may be that retry."""
        for t in trial.study.get_trials(deepcopy=False):
            if t.number == trial.number or TrialRecord(t).arch_key != key:
                continue
            stored = TrialRecord(t).stored_status
            if t.state == TrialState.RUNNING:
                if stored == Status.TRAINING:
                    return t.number
            elif t.state == TrialState.FAIL:
                if stored not in (None, Status.TRAINING):
                    return t.number
            elif (
                stored in (Status.TRAINED, Status.STOPPED_EARLY, Status.NO_SIGNAL)
                or t.state == TrialState.COMPLETE
            ):
                return t.number
        return None

    def finished_curves(self) -> list[Finished]:
        primary = self.study.primary_device
        out = []
        storage_study = self.current_trial.study
        for t in storage_study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            rec = TrialRecord(t)
            mem, curve = rec.figures(primary), rec.curve
            if mem and curve:
                out.append(Finished(mem["flash"], mem["sram"], curve))
        return out

    def fitting_figures(self, per_device: dict[str, dict]) -> dict[str, tuple[float, ...]]:
        """The minimized figures on each device the candidate fits (what successive halving ranks by)."""
        names = self.study.minimized_figures()
        return {
            dev: tuple(float(f[n]) for n in names) for dev, f in per_device.items() if f and f.get("fits")
        }

    def seen_curves(self) -> list[Seen]:
        """Every candidate trained so far, to the end or stopped, with its curve: a rung's peers."""
        out = []
        for t in self.current_trial.study.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)
        ):
            rec = TrialRecord(t)
            if rec.curve and t.number != self.current_trial.number:
                out.append(Seen(rec.curve, self.fitting_figures(rec.memory)))
        return out

    def train(
        self, trial: optuna.Trial, arch: Arch, reports: dict[str, MemoryReport], per_device: dict
    ) -> list[float]:
        from nas.train import TrainingFailed, train_candidate

        cfg, tr = self.cfg, self.cfg.training
        TrialRecord.write_status(trial, Status.TRAINING)
        es = cfg.early_stopping
        metric_key = cfg.objectives.metric
        tc = tr.train_config(
            epochs=cfg.budget.epochs,
            metric=metric_key,
            seed=cfg.study.seed + trial.number,
            device=self.trainer_device,
            threads=cfg.study.threads,
        )
        data = self.study.dataset
        # rungs sit at fractions of the epochs actually run (the step floor may raise the budget)
        planned = tc.planned_epochs(len(data.train))
        stops = set(rungs(planned, es.at)) if es.enabled else set()
        mem = per_device[self.study.primary_device]
        fitting = self.fitting_figures(per_device)
        stop_reason: list[str] = []
        finished = self.finished_curves() if es.enabled and es.rule == "threshold" else []
        seen: list[float] = []  # the validation curve so far, for the in-flight display
        shown = [0.0]

        def show_epoch() -> None:
            # at most twenty times a second: on a small split an epoch is one step of a few
            # milliseconds, and a storage write per epoch would cost more than the training
            now = time.monotonic()
            if seen and now - shown[0] < 0.05:
                return
            shown[0] = now
            rung = min((s for s in stops if s > len(seen)), default=None)
            TrialRecord.write_epoch(trial, planned, seen, rung)

        show_epoch()

        def on_epoch(epoch: int, metrics: dict[str, float]) -> bool:
            seen.append(metrics[metric_key])
            show_epoch()
            if epoch not in stops:
                return False
            if es.rule == "asha":
                go_on, why = promote(
                    epoch, metrics[metric_key], fitting, self.seen_curves(), es.eta, es.min_finished
                )
                stop = not go_on
            else:
                stop, why = should_stop(
                    epoch,
                    metrics[metric_key],
                    mem["flash"],
                    mem["sram"],
                    finished,
                    es.margin,
                    es.min_finished,
                )
            if stop:
                stop_reason.append(why)
            return stop

        t0 = time.perf_counter()
        try:
            result = train_candidate(arch, data, tc, self.teacher_logits(), on_epoch=on_epoch)
        except TrainingFailed as e:
            TrialRecord.write_status(trial, Status.FAILED, str(e))
            raise
        except Exception as e:  # whatever the candidate's own training raises is its failure, counted
            reason = failure_reason(e)  # toward max_failures; only a lost worker is queued again
            TrialRecord.write_status(trial, Status.FAILED, reason)
            raise TrainingFailed(reason) from e
        curve = [h[f"val_{metric_key}"] for h in result.history]
        TrialRecord.write_training(trial, curve, result, time.perf_counter() - t0)
        if result.stopped_by == "callback":
            reason = stop_reason[0] if stop_reason else "stopped by the early-stopping rule"
            TrialRecord.write_status(trial, Status.STOPPED_EARLY, reason)
            raise optuna.TrialPruned(reason)
        chance = self.chance()
        trial.set_user_attr(Attr.CHANCE, chance)
        if not result.metrics[metric_key] > chance + 1e-9:
            reason = (
                f"validation {metric_key} {result.metrics[metric_key]:.4f} is not above {chance:.4f}, what "
                "always answering the most frequent class scores: the model learned nothing usable"
            )
            TrialRecord.write_status(trial, Status.NO_SIGNAL, reason)
            raise optuna.TrialPruned(reason)
        TrialRecord.write_artifacts(
            trial, save_trial_artifacts(self.store, trial, arch, reports, result.state_dict)
        )
        TrialRecord.write_status(trial, Status.TRAINED)
        return self.objective_values(result.metrics[metric_key], per_device)


def failure_reason(e: BaseException) -> str:
    """One line for an unexpected exception from training: its type and the first line it says."""
    text = (str(e).strip().splitlines() or [""])[0][:300]
    return f"training raised {type(e).__name__}" + (f": {text}" if text else "")
