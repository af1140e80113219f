"""Evidence: the teacher, distillation into a W4A8 student, and each modality alone vs fused.

Run by hand: pytest -m bench -s tests/bench/test_bench_distillation.py

On `watch` (smartwatch exercises, acc + gyro; test = subjects never seen in training) and `avdigits`
(8x8 digit images + spoken digits; test = voices never heard in training):

(a) the full-precision teacher (`nas.train.teacher`, default preset and config, cached): val and test accuracy;
(b) one fixed hand-written late-fusion student at W4A8 (weights 4-bit except the first layer of each
    branch and the classifier, which are 8-bit; all activations 8-bit), trained QAT with and without
    distillation from the teacher, for several seeds: mean and std of the test metrics, the model being
    selected on validation (best epoch);
(c) the same student design with a single branch (each modality alone), with and without distillation
    (the teacher is the fused one: cross-modal distillation, which is what a search that drops a
    sensor does).

Everything runs on one CPU thread (robust when other processes share the cores). Set
M2NAS_BENCH_EPOCHS / M2NAS_BENCH_SEEDS to change the budget.
"""

from __future__ import annotations

import math
import os
import statistics
import time

import pytest

from nas.data import load_dataset
from nas.train import TrainConfig, evaluate_model, load_trained, train_candidate
from nas.train.teacher import TeacherConfig, get_teacher
from search_spaces.arch import Arch
from search_spaces.families import member
from search_spaces.graph import graph

pytestmark = pytest.mark.bench

# Epoch budgets: enough for the student to converge on each dataset (avdigits' audio branch learns slowly).
EPOCHS = {"watch": 30, "avdigits": 60}
if os.environ.get("M2NAS_BENCH_EPOCHS"):
    EPOCHS = dict.fromkeys(EPOCHS, int(os.environ["M2NAS_BENCH_EPOCHS"]))
SEEDS = tuple(range(int(os.environ.get("M2NAS_BENCH_SEEDS", "3"))))
PATIENCE = 10


def student_arch(modalities: dict[str, tuple[int, ...]], classes: int, only: str | None = None) -> Arch:
    """The `lateconv` family at width 16, W4 (search_spaces/families.py): per branch an 8-bit conv stem
    (16 ch, stride 2 for inputs with every side >= 32) and a 4-bit conv block (32 ch), each followed by
    2x max-pooling, then global average pooling; late concat fusion; a 4-bit 16-unit hidden layer and
    an 8-bit classifier. Activations 8-bit throughout. `only`: that modality's branch alone."""
    arch = member("lateconv", modalities, classes, 16, 4)
    for b in arch.branches:
        b.used = only is None or b.modality == only
    return arch.validate("student")


def weight_bytes(arch: Arch) -> tuple[int, int]:
    """(parameters, packed weight bytes) of the arch, from the analytic graph."""
    g = graph(arch)
    params = sum(op.weights + op.bias for op in g.ops)
    packed = sum(math.ceil(op.weights * op.weight_bits / 8) + 4 * op.bias for op in g.ops)
    return params, packed


def _ms(xs: list[float]) -> str:
    if len(xs) == 1:
        return f"{xs[0]:.3f}"
    return f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs):.3f}"


def run_dataset(name: str) -> list[dict]:
    ds = load_dataset(name)
    t0 = time.perf_counter()
    teacher = get_teacher(ds, TeacherConfig(), seed=0, threads=1)
    teacher_s = time.perf_counter() - t0
    t_test, _ = evaluate_model(teacher.load_model(), ds.test, threads=1)
    rows = [
        {
            "dataset": name,
            "model": f"teacher (float, {teacher.meta['params']:,} params)",
            "kd": "-",
            "val": [teacher.val_metrics["accuracy"]],
            "test": [t_test["accuracy"]],
            "test_f1": [t_test["macro_f1"]],
            "best": [teacher.meta["best_epoch"]],
            "seconds": teacher.meta["train_seconds"],  # of its one training run, cached or not
            "note": f"loaded from the cache in {teacher_s:.1f} s" if teacher.cached else "trained now",
        }
    ]
    variants = [("fused", None)] + [(f"{m} only", m) for m in ds.modalities]
    for label, only in variants:
        arch = student_arch(ds.modalities, ds.n_classes, only)
        params, packed = weight_bytes(arch)
        for distill in (True, False):
            val, test, f1, best, secs = [], [], [], [], []
            for seed in SEEDS:
                cfg = TrainConfig(
                    epochs=EPOCHS[name], patience=PATIENCE, distill=distill, seed=seed, threads=1
                )
                r = train_candidate(arch, ds, cfg, teacher.train_logits if distill else None)
                m, _ = evaluate_model(load_trained(arch, r.state_dict), ds.test, threads=1)
                val.append(r.metrics["accuracy"])
                test.append(m["accuracy"])
                f1.append(m["macro_f1"])
                best.append(r.best_epoch)
                secs.append(r.seconds)
                print(
                    f"  {name} {label} kd={distill} seed={seed}: val {r.metrics['accuracy']:.3f} "
                    f"test {m['accuracy']:.3f} (best epoch {r.best_epoch}/{r.epochs_run}, {r.seconds:.1f} s)",
                    flush=True,
                )
            rows.append(
                {
                    "dataset": name,
                    "model": f"W4A8 student {label} ({params:,} params, {packed:,} B)",
                    "kd": "yes" if distill else "no",
                    "val": val,
                    "test": test,
                    "test_f1": f1,
                    "best": best,
                    "seconds": sum(secs) / len(secs),
                    "note": "",
                }
            )
    return rows


def print_table(rows: list[dict]) -> None:
    head = (
        f"{'dataset':<9} {'model':<50} {'KD':<3} {'val acc':<15} {'test acc':<15} {'test macro-F1':<15} "
        f"{'best ep':<8} {'s/run':>6}"
    )
    print()
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['dataset']:<9} {r['model']:<50} {r['kd']:<3} {_ms(r['val']):<15} {_ms(r['test']):<15} "
            f"{_ms(r['test_f1']):<15} {statistics.mean(r['best']):<8.1f} {r['seconds']:>6.1f}"
            + (f"  ({r['note']})" if r["note"] else "")
        )


@pytest.mark.timeout(3600)
def test_bench_distillation():
    t0 = time.perf_counter()
    print(
        f"\nepochs {EPOCHS} (patience {PATIENCE}, best epoch on val), seeds {list(SEEDS)}, batch 64, lr 3e-3, T 4, alpha 0.7"
    )
    rows = []
    for name in ("watch", "avdigits"):
        rows += run_dataset(name)
    print_table(rows)
    print(f"total {time.perf_counter() - t0:.0f} s")
    chance = {"watch": 1 / 7, "avdigits": 1 / 10}
    for r in rows:  # sanity only: everything learns well above chance on the held-out test split
        assert statistics.mean(r["test"]) > 2 * chance[r["dataset"]], r
