"""Evidence for the training defaults (issue 14): which settings let a candidate be ranked.

Run by hand: pytest -m bench -s tests/bench/test_bench_training.py
(about 15 min on 2 cores for parts 1 and 2; part 3 about 10 min per dataset on one thread)

(1) The fixed late-fusion student of test_bench_distillation.py (W4A8, distilled from the cached
    teacher), 12 epochs as in the shipped studies, seeds 0-2, on watch and avdigits, under four
    settings: the old ones (patience 4 on validation accuracy, no step floor, no warm-up), the new
    patience / floor / warm-up, plus augmentation of every input, plus mixup. Test accuracy of the
    validation-selected weights: mean +- std.
(2) A small study: 80 watch windows (4 classes; 32 train / 8 val / 40 test drawn per class from the
    subject-held-out splits), the `tiny` preset, 10 candidates, the settings before issue 14 (lr
    3e-3, patience 4 on validation accuracy, no floor, no warm-up or augmentation) vs the study
    defaults with the final stage on (as a user's study has it; top_k 3, seeds 3): how many
    candidates end above chance, the best validation accuracy, the test accuracy of the
    validation-best single run and, for the defaults, of the final stage's choice (mean +- std over
    its seeds); next to it, the test accuracy of a logistic regression on per-channel mean and std.
(3) The learning rate and the step floor, on three hand-designed members (search_spaces/families.py:
    `lateconv` at widths 8 and 16, `tinym2net` at 16, all W4), the shipped studies' epochs (watch
    12, avdigits 15), seeds 0-2: validation and test accuracy and seconds per run. Parametrized by
    dataset (`-k watch`, `-k avdigits`), so the two can run side by side on one thread each.

M2NAS_BENCH_SEEDS sets the seeds of every part (default 3).
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.bench

SEEDS = tuple(range(int(os.environ.get("M2NAS_BENCH_SEEDS", "3"))))
EPOCHS = 12
NEW = dict(patience=4, patience_on="loss", min_epochs=4, warmup=0.05, min_steps=300)
SETTINGS = {
    "old: patience on val. accuracy, no floor, no warm-up": dict(patience=4, patience_on="metric"),
    "new: patience on val. loss after 4 epochs, 300-step floor, 5% warm-up": NEW,
    "new + jitter 0.03, scale 0.1, shift 0.1 on every input": dict(
        NEW, augment=dict(jitter=0.03, scale=0.1, shift=0.1, apply_to=("signals", "images"))
    ),
    "new + that + mixup 0.2": dict(
        NEW, augment=dict(jitter=0.03, scale=0.1, shift=0.1, mixup=0.2, apply_to=("signals", "images"))
    ),
}
OLD_TRAINING = """lr = 0.003
patience = 4
patience_on = "metric"
min_steps = 0
min_epochs = 1
warmup = 0.0
augment = { jitter = 0.0, scale = 0.0, shift = 0.0 }
"""
SMALL_STUDY = """[study]
name = "small"
seed = {seed}
sampler = "tpe"
threads = 1

[dataset]
name = "npz"
options = {{ path = "small.npz" }}

[search_space]
preset = "tiny"

[[devices]]
name = "stm32f446re"
target = {{ weights = "flash", activations = "sram" }}
limits = {{ flash = "32K", sram = "16K" }}

[budget]
trials = 10
epochs = 12

[training]
{training}
[final]
enabled = {final}
"""


STUDY_EPOCHS = {"watch": 12, "avdigits": 15}
RATE_SETTINGS = {
    "lr 3e-3, 300-step floor (the defaults before)": dict(NEW, lr=3e-3),
    "lr 1e-2, 300-step floor": dict(NEW, lr=1e-2),
    "lr 1e-2, 600-step floor (the defaults now)": dict(NEW, lr=1e-2, min_steps=600),
    "lr 2e-2, 600-step floor": dict(NEW, lr=2e-2, min_steps=600),
}
MEMBERS = (("lateconv", 8, 4), ("lateconv", 16, 4), ("tinym2net", 16, 4))


def _fmt(v: list[float]) -> str:
    return f"{statistics.fmean(v):.3f} ± {statistics.stdev(v):.3f}" if len(v) > 1 else f"{v[0]:.3f}"


@pytest.mark.timeout(0)
def test_fixed_student_under_each_setting():
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from test_bench_distillation import student_arch

    from nas.data import load_dataset
    from nas.train import TrainConfig, evaluate_model, load_trained, train_candidate
    from nas.train.teacher import TeacherConfig, get_teacher

    rows = {}
    for name in ("watch", "avdigits"):
        ds = load_dataset(name)
        teacher = get_teacher(ds, TeacherConfig(), seed=0, threads=1)
        arch = student_arch(ds.modalities, ds.n_classes)
        for label, kw in SETTINGS.items():
            tests = []
            for seed in SEEDS:
                cfg = TrainConfig(epochs=EPOCHS, seed=seed, threads=1, **kw)
                t0 = time.perf_counter()
                r = train_candidate(arch, ds, cfg, teacher.train_logits)
                test = evaluate_model(load_trained(arch, r.state_dict), ds.test, threads=1)[0]["accuracy"]
                tests.append(test)
                print(
                    f"{name} | {label} | seed {seed}: val {r.metrics['accuracy']:.3f} test {test:.3f}, "
                    f"{r.epochs_run}/{r.epochs_planned} epochs ({r.stopped_by}), {time.perf_counter() - t0:.0f} s",
                    flush=True,
                )
            rows.setdefault(label, {})[name] = _fmt(tests)
    print("\n| training settings | watch | avdigits |\n|---|---|---|")
    for label, r in rows.items():
        print(f"| {label} | {r['watch']} | {r['avdigits']} |")


@pytest.mark.timeout(0)
@pytest.mark.parametrize("name", ["watch", "avdigits"])
def test_learning_rate_and_step_floor(name):
    from nas.config.study import load_study
    from nas.train import TrainConfig, evaluate_model, load_trained, train_candidate
    from nas.train.teacher import get_teacher
    from search_spaces.families import member

    study = load_study(Path(__file__).resolve().parents[2] / "studies" / f"{name}.toml")
    ds = study.dataset
    cfg = study.cfg  # the shipped study's teacher, so the quality bench's cached one is reused
    teacher = get_teacher(ds, cfg.teacher.teacher_config(cfg.training.batch_size), seed=0, threads=1)
    shapes = study.dataset_shapes()
    rows = []
    for family, width, bits in MEMBERS:
        arch = member(family, shapes["modalities"], shapes["classes"], width, bits)
        for label, kw in RATE_SETTINGS.items():
            vals, tests, secs = [], [], []
            for seed in SEEDS:
                tc = TrainConfig(epochs=STUDY_EPOCHS[name], seed=seed, threads=1, **kw)
                t0 = time.perf_counter()
                r = train_candidate(arch, ds, tc, teacher.train_logits)
                secs.append(time.perf_counter() - t0)
                vals.append(r.metrics["accuracy"])
                tests.append(
                    evaluate_model(load_trained(arch, r.state_dict), ds.test, threads=1)[0]["accuracy"]
                )
                print(
                    f"{name} | {family} w{width} W{bits} | {label} | seed {seed}: val {vals[-1]:.3f} "
                    f"test {tests[-1]:.3f}, {r.epochs_run}/{r.epochs_planned} epochs, {secs[-1]:.1f} s",
                    flush=True,
                )
            rows.append(
                (f"{family} w{width} W{bits}", label, _fmt(vals), _fmt(tests), statistics.fmean(secs))
            )
    print(f"\n{name}\n| member | settings | val | test | s per run |\n|---|---|---|---|---|")
    for m, label, v, t, sec in rows:
        print(f"| {m} | {label} | {v} | {t} | {sec:.1f} |")


def small_npz(path: Path, seed: int) -> None:
    from nas.data import load_dataset

    ds = load_dataset("watch")
    rng = np.random.default_rng(seed)
    acc, gyro, ys, split = [], [], [], []
    for code, sp, per in ((0, ds.train, 8), (1, ds.val, 2), (2, ds.test, 10)):
        for c in range(4):
            idx = rng.choice(np.flatnonzero(sp.y == c), per, replace=False)
            acc.append(sp.x["acc"][idx])
            gyro.append(sp.x["gyro"][idx])
            ys += [c] * per
            split += [code] * per
    np.savez(path, acc=np.concatenate(acc), gyro=np.concatenate(gyro), y=np.array(ys), split=np.array(split))


def mean_std_baseline(path: Path) -> float:
    """Test accuracy of the baseline issue 14 names: a logistic regression on each channel's mean and
    standard deviation over the window, fit on the training split."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    d = np.load(path)
    feats = np.concatenate([f(d[m], axis=-1) for m in ("acc", "gyro") for f in (np.mean, np.std)], axis=1)
    train, test = d["split"] == 0, d["split"] == 2
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    clf.fit(feats[train], d["y"][train])
    return float(clf.score(feats[test], d["y"][test]))


@pytest.mark.timeout(0)
def test_small_study_old_and_new_settings(tmp_path):
    from nas.config.study import load_study
    from nas.engine.results import count
    from nas.engine.search import open_study, run_search
    from nas.export.trial import final_choice, load_trial_model, pick_trial
    from nas.train import evaluate_model

    print()
    for seed in SEEDS:
        # The final stage runs after the search and leaves its trials as they are, so the "new" line
        # gives both the validation-best single run and the final stage's choice of one search.
        for tag, training, final in (("old", OLD_TRAINING, "false"), ("new", "", "true")):
            folder = tmp_path / f"{tag}-{seed}"
            folder.mkdir()
            small_npz(folder / "small.npz", seed)
            if tag == "old":
                print(
                    f"small seed {seed} baseline: {mean_std_baseline(folder / 'small.npz'):.3f}", flush=True
                )
            (folder / "small.toml").write_text(SMALL_STUDY.format(seed=seed, training=training, final=final))
            study = load_study(folder / "small.toml")
            t0 = time.perf_counter()
            run_search(study)
            ostudy = open_study(study)
            trials = ostudy.get_trials(deepcopy=False)
            c = count(trials)
            vals = sorted(
                (t.user_attrs["val"]["accuracy"] for t in trials if "val" in t.user_attrs), reverse=True
            )
            best = pick_trial(study, trials, "stm32f446re")
            test = None
            if best is not None:
                test = evaluate_model(load_trial_model(study, best)[1], study.dataset.test)[0]["accuracy"]
            print(
                f"small seed {seed} {tag}: {time.perf_counter() - t0:.0f} s; {c.trained} trained, "
                f"{c.no_signal} no signal, {c.stopped_early} stopped early; best val {vals[0]:.3f}; "
                f"test of the best {'-' if test is None else f'{test:.3f}'}"
                + _final_line(final_choice(ostudy, "stm32f446re")),
                flush=True,
            )


def _final_line(choice) -> str:
    if choice is None:
        return ""
    return (
        f"; final stage's choice: trial {choice.trial}, validation {_fmt(choice.val)}, "
        f"test {_fmt(choice.test)} over its {len(choice.test)} seeds"
    )
