"""The engine against plain Optuna on the default `watch` study, side by side, at equal wall time.

Run: M2NAS_BENCH_SECONDS=300 pytest -m bench -s tests/bench/test_bench_search.py
(three arms of that many seconds each, one after the other, on the same machine; results as JSON on
stdout and in $M2NAS_BENCH_OUT if set).

Arms, all with the same space, sampler (TPE, same seed), trainer, epochs and teacher:
- m2nas: rejects what cannot fit before training, multi-objective early stopping on;
- m2nas, no early stopping: the same without the stopping rule (what the rule saves, what it costs);
- naive: plain Optuna that trains every candidate and applies the memory limit afterwards (as a
  constraint, so its sampler is told too, only after paying for the training).
Target (issue 5): feasible trained candidates per hour, m2nas / naive >= 3.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import optuna
import pytest

from nas.config.study import load_study
from nas.engine.objective import CandidateEvaluator, overshoot
from nas.engine.results import hypervolume_2d_plus
from nas.engine.search import open_study, run_search
from nas.engine.storage import artifact_store

STUDY = Path(__file__).resolve().parents[2] / "studies" / "watch.toml"
TARGET_RATIO = 3.0


class NaiveEvaluator(CandidateEvaluator):
    """Plain Optuna + Brevitas: train first, measure memory afterwards."""

    def __call__(self, trial: optuna.Trial) -> list[float]:
        arch, reports, per_device = self.sample_and_record(trial)
        values = self.train(trial, arch, reports, per_device)
        trial.set_constraint("fits_a_device", min(overshoot(r) for r in reports.values()))
        return values


def run_naive(study, seconds: float) -> None:
    ostudy = open_study(study)
    evaluator = NaiveEvaluator(study, artifact_store(study.artifact_dir))
    deadline = time.time() + seconds
    while time.time() < deadline:
        ostudy.optimize(evaluator, n_trials=1, gc_after_trial=False)


def summarize(study, started: float, seconds: float) -> dict:
    from nas.engine.status import open_existing

    _, ostudy = open_existing(study.path)
    dev = study.primary_device
    budget = {lv.name: lv.capacity_bytes for lv in study.devices[dev].levels}
    rows = []
    for t in ostudy.get_trials(deepcopy=False):
        if t.datetime_complete is None:
            continue
        done = t.datetime_complete.timestamp() - started
        status = t.user_attrs.get("status", "?")
        fig = t.user_attrs["memory"][dev]
        rows.append(
            {
                "number": t.number,
                "status": status,
                "fits": fig["fits"],
                "done_s": done,
                "train_s": t.user_attrs.get("train_seconds", 0.0),
                "acc": t.user_attrs.get("val", {}).get("accuracy"),
                "flash": fig["flash"],
                "sram": fig["sram"],
            }
        )
    within = [r for r in rows if r["done_s"] <= seconds]
    trained = [r for r in within if r["status"] == "trained"]
    feasible = [r for r in trained if r["fits"]]
    stopped = [r for r in within if r["status"] == "stopped_early"]
    analysed = [r for r in within if r["status"] in ("trained", "rejected", "stopped_early")]
    quarters = np.array_split(np.array([r["fits"] for r in analysed], dtype=float), 4) if analysed else []
    points = np.array(
        [[1 - r["acc"], r["flash"] / budget["flash"], r["sram"] / budget["sram"]] for r in feasible]
    ).reshape(-1, 3)
    return {
        "seconds": seconds,
        "analysed": len(analysed),
        "trained": len(trained),
        "trained_feasible": len(feasible),
        "trained_infeasible": len(trained) - len(feasible),
        "stopped_early": len(stopped),
        "rejected": sum(r["status"] == "rejected" for r in within),
        "feasible_trained_per_hour": len(feasible) / (seconds / 3600),
        "best_feasible_val_accuracy": max((r["acc"] for r in feasible), default=None),
        "training_seconds_feasible": round(sum(r["train_s"] for r in feasible), 1),
        "training_seconds_infeasible": round(sum(r["train_s"] for r in trained if not r["fits"]), 1),
        "training_seconds_stopped": round(sum(r["train_s"] for r in stopped), 1),
        "feasible_fraction_by_quarter": [round(float(q.mean()), 3) if len(q) else None for q in quarters],
        "hypervolume": round(hypervolume_2d_plus(points, np.ones(3)), 4),
    }


@pytest.mark.bench
@pytest.mark.timeout(0)
def test_m2nas_against_naive_optuna_on_watch(tmp_path):
    seconds = float(os.environ.get("M2NAS_BENCH_SECONDS", "360"))
    text = STUDY.read_text()
    results = {}
    arms = {
        "m2nas": {},
        "m2nas_no_early_stopping": {"early_stopping.enabled": False},
        "naive": {"early_stopping.enabled": False},
    }
    only = os.environ.get("M2NAS_BENCH_ARMS")  # e.g. "naive" to rerun one arm
    if only:
        arms = {k: v for k, v in arms.items() if k in only.split(",")}
    for arm, overrides in arms.items():
        folder = tmp_path / arm
        folder.mkdir()
        (folder / "watch.toml").write_text(text)
        study = load_study(folder / "watch.toml", overrides)
        CandidateEvaluator(
            study, artifact_store(study.artifact_dir)
        ).teacher_logits()  # cached: no arm pays it
        started = time.time()
        if arm == "naive":
            run_naive(study, seconds)
        else:
            run_search(study, trials=10_000, timeout=seconds, progress=False)
        results[arm] = summarize(study, started, seconds)
        print(arm, json.dumps(results[arm]), flush=True)
    if not {"m2nas", "naive"} <= set(results):
        return
    ratio = results["m2nas"]["feasible_trained_per_hour"] / max(
        results["naive"]["feasible_trained_per_hour"], 1e-9
    )
    results["ratio_feasible_per_hour_m2nas_over_naive"] = round(ratio, 2)
    print(json.dumps(results, indent=1))
    if os.environ.get("M2NAS_BENCH_OUT"):
        Path(os.environ["M2NAS_BENCH_OUT"]).write_text(json.dumps(results, indent=1))
    assert ratio >= TARGET_RATIO, f"m2nas trains {ratio:.2f}x as many feasible candidates per hour as naive"
