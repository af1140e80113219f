"""The final stage: retrain each device's best candidates with several seeds, choose, then test.

A search ranks candidates by one training run each, judged on a validation split that is often a
handful of subjects: the front's best member is partly the luckiest seed. So, after the search, the
`top_k` members of each device's front with the best validation metric are trained again at the
full budget (no early stopping) with `seeds` fresh seeds. A fresh seed does not make the
validation split any larger, so with `cross_validate` run i > 0 also holds out
another part of train + validation (`nas.data.folds`: other subjects where samples have them),
the same fold for every finalist. The device's model is the candidate with the best *mean*
validation metric over those runs (ties to less memory); only then is the test split read, for that
candidate alone: its test metric per run (mean and spread) and that of the search's own run (the
single-run figure). The exported weights are the run with the best validation metric.

Results live in the study's user attributes (`StudyAttr.FINAL`, `StudyAttr.CHOICE`); weights are
artifacts attached to the study. A rerun trains only runs that are missing, so resuming a search
adds finalists without retraining the old ones.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial

from nas.config.study import Study
from nas.data.folds import fold
from search_spaces import Arch

from .record import StudyAttr, TrialRecord
from .results import pareto_front


@dataclass(frozen=True)
class FinalRun:
    seed: int
    fold: int  # nas.data.folds: 0 is the dataset's own split
    val: dict[str, float]
    val_loss: float
    epochs_run: int
    seconds: float
    weights: str  # artifact id of weights.pt


@dataclass(frozen=True)
class Choice:
    """A device's final model: which trial, its runs' validation and test figures."""

    trial: int
    seeds: list[int]
    val: list[float]  # the metric per final run (on its own fold), in seed order
    test: list[float]
    single_run: dict[str, float]  # the search's own run: val and test metric
    export_run: int  # index into seeds/val/test of the exported weights
    weights: str  # artifact id of the exported weights
    candidates: list[dict[str, Any]]  # every finalist: trial, mean val
    folds: list[int] = field(default_factory=list)  # each run's validation fold (nas.data.folds)

    @property
    def val_mean(self) -> float:
        return statistics.fmean(self.val)

    @property
    def test_mean(self) -> float:
        return statistics.fmean(self.test)

    @property
    def test_std(self) -> float:
        return statistics.stdev(self.test) if len(self.test) > 1 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {
            "val_mean": round(self.val_mean, 6),
            "test_mean": round(self.test_mean, 6),
            "test_std": round(self.test_std, 6),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Choice:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def final_seed(study_seed: int, trial_number: int, index: int) -> int:
    """A training seed no search trial used (the search trains trial n with study seed + n)."""
    return study_seed + 1_000_003 * (index + 1) + trial_number


def run_fold(study: Study, index: int) -> int:
    return index if study.cfg.final.cross_validate else 0


def _stored(runs: dict, number: int, index: int, fold: int) -> dict[str, Any] | None:
    """A stored run, unless it was trained on another fold (the study's `cross_validate` changed)."""
    r = runs.get(str(number), {}).get(str(index))
    return r if r is not None and r.get("fold", 0) == fold else None


def finalists(study: Study, trials: list[FrozenTrial]) -> dict[str, list[FrozenTrial]]:
    """Per device: the `top_k` front members with the best validation metric."""
    metric, k = study.cfg.objectives.metric, study.cfg.final.top_k
    out = {}
    for dev in study.devices:
        front = pareto_front(trials, dev, metric, study.minimized_figures())
        front.sort(key=lambda t: (-TrialRecord(t).val[metric], t.number))
        out[dev] = front[:k]
    return out


def stored_runs(ostudy) -> dict[str, dict[str, dict[str, Any]]]:
    return ostudy.user_attrs.get(StudyAttr.FINAL) or {}


def choices(ostudy) -> dict[str, Choice]:
    return {dev: Choice.from_dict(c) for dev, c in (ostudy.user_attrs.get(StudyAttr.CHOICE) or {}).items()}


def run_final(
    study: Study,
    ostudy,
    store,
    on_run: Callable[[dict[str, Any]], None] | None = None,
    trainer_device: str | None = None,
) -> dict[str, Choice]:
    """Train the missing final runs, choose each device's model, test it; returns the choices.

    `on_run` receives a small dict after every final run (for the CLI's display)."""
    from nas.train import TrainingFailed, train_candidate

    from .teacher_logits import TeacherLogits

    cfg = study.cfg
    trials = ostudy.get_trials(deepcopy=False)
    per_device = finalists(study, trials)
    needed = {t.number: t for ts in per_device.values() for t in ts}
    if not needed:
        return {}
    runs = stored_runs(ostudy)
    data = study.dataset
    device = trainer_device or cfg.study.device
    teacher = TeacherLogits(study, device)
    metric = cfg.objectives.metric
    todo = [
        (n, i)
        for n in sorted(needed)
        for i in range(cfg.final.seeds)
        if _stored(runs, n, i, run_fold(study, i)) is None
    ]
    pool_logits = None
    for done, (number, index) in enumerate(todo, 1):
        t = needed[number]
        arch = Arch.from_dict(TrialRecord(t).arch, f"trial {number} arch")
        seed = final_seed(cfg.study.seed, number, index)
        fold_no = run_fold(study, index)
        fold_data, pool_idx = fold(data, fold_no, cfg.study.seed)
        logits = teacher()
        if logits is not None and fold_no:  # the teacher's val logits only where a fold needs them
            if pool_logits is None:
                pool_logits = teacher.pool_logits()
            logits = pool_logits[pool_idx]
        tc = cfg.training.train_config(
            epochs=cfg.budget.epochs, metric=metric, seed=seed, device=device, threads=cfg.study.threads
        )
        t0 = time.perf_counter()
        try:
            result = train_candidate(arch, fold_data, tc, logits)
        except TrainingFailed as e:  # that candidate cannot be chosen; the others still can
            runs.setdefault(str(number), {})[str(index)] = {"seed": seed, "fold": fold_no, "failed": str(e)}
            ostudy.set_user_attr(StudyAttr.FINAL, runs)
            continue
        weights = _upload_weights(store, ostudy, result.state_dict)
        run = FinalRun(
            seed,
            fold_no,
            result.metrics,
            float(result.val_loss),
            result.epochs_run,
            round(time.perf_counter() - t0, 2),
            weights,
        )
        runs.setdefault(str(number), {})[str(index)] = asdict(run)
        ostudy.set_user_attr(StudyAttr.FINAL, runs)
        if on_run:
            on_run(
                {
                    "trial": number,
                    "seed": index,
                    "of": cfg.final.seeds,
                    "fold": fold_no,
                    "done": done,
                    "total": len(todo),
                    f"val_{metric}": result.metrics[metric],
                    "seconds": run.seconds,
                }
            )

    out = {}
    for dev, ts in per_device.items():
        if not ts:
            continue
        scored = []
        for t in ts:
            rs = [_stored(runs, t.number, i, run_fold(study, i)) for i in range(cfg.final.seeds)]
            if any(r is None or "failed" in r for r in rs):
                continue
            mean = statistics.fmean(r["val"][metric] for r in rs)
            fig = TrialRecord(t).figures(dev)
            scored.append((-mean, fig["flash"], fig["sram"], t.number, t, rs, mean))
        if not scored:
            continue
        scored.sort(key=lambda s: s[:4])
        _, _, _, number, t, rs, _ = scored[0]
        arch = Arch.from_dict(TrialRecord(t).arch, f"trial {number} arch")
        # the test split is read here, after the choice, and only for the chosen candidate
        tests = [_test_metric(study, arch, store, r["weights"], metric) for r in rs]
        single = {"val": TrialRecord(t).val[metric]}
        ids = TrialRecord(t).artifacts
        if "weights.pt" in ids:
            single["test"] = _test_metric(study, arch, store, ids["weights.pt"], metric)
        vals = [r["val"][metric] for r in rs]
        best = max(range(len(rs)), key=lambda i: (vals[i], -i))
        out[dev] = Choice(
            trial=number,
            seeds=[r["seed"] for r in rs],
            val=vals,
            test=tests,
            single_run=single,
            export_run=best,
            weights=rs[best]["weights"],
            candidates=[{"trial": s[3], f"val_{metric}_mean": round(s[6], 6)} for s in scored],
            folds=[r.get("fold", 0) for r in rs],
        )
    ostudy.set_user_attr(StudyAttr.CHOICE, {d: c.to_dict() for d, c in out.items()})
    return out


def _upload_weights(store, ostudy, state_dict) -> str:
    import torch
    from optuna.artifacts import upload_artifact

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "weights.pt"
        torch.save(state_dict, path)
        return upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=ostudy)


def download_weights(study: Study, store, artifact_id: str, into: Path) -> Path:
    from optuna.artifacts import download_artifact

    from memory_models.errors import InputError

    path = into / f"{artifact_id}.pt"
    try:
        download_artifact(artifact_store=store, file_path=str(path), artifact_id=artifact_id)
    except Exception as e:  # noqa: BLE001 - a missing or unreadable artifacts folder
        raise InputError(
            f"{study.artifact_dir}: cannot read final-stage weights {artifact_id} ({e})"
        ) from None
    return path


def _test_metric(study: Study, arch, store, artifact_id: str, metric: str) -> float:
    from nas.train import evaluate_model, load_trained

    with tempfile.TemporaryDirectory() as tmp:
        model = load_trained(arch, download_weights(study, store, artifact_id, Path(tmp)))
        m, _ = evaluate_model(model, study.dataset.test, threads=study.cfg.study.threads)
    return float(m[metric])
