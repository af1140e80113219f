"""The trainer, the teacher cache and `m2nas train`, on the real built-in datasets (small subsets, few
epochs, one thread: the whole file runs in well under a minute on two cores)."""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing as mp
import time

import numpy as np
import pytest
import torch

from memory_models.errors import InputError
from nas.data import Split, load_dataset
from nas.train import (
    TrainConfig,
    TrainingFailed,
    distillation_loss,
    evaluate_model,
    load_trained,
    stratified_subset,
    train_candidate,
)
from nas.train.metrics import classification_metrics, metric_names
from nas.train.teacher import TeacherConfig, get_teacher, teacher_arch
from search_spaces.arch import Arch, Block, Branch, Fusion, Head
from search_spaces.graph import graph

QUICK_TEACHER = TeacherConfig(preset="teacher_small", epochs=2, max_train_samples=300)


def conv(k: int, ch: int, wbits: int, stride: int = 1, pool: int = 2) -> Block:
    return Block(
        op="conv", kernel=k, channels=ch, stride=stride, pool=pool, weight_bits=[wbits], act_bits=[8]
    )


def tiny_arch(modalities: dict, classes: int, only: str | None = None) -> Arch:
    """Late concat fusion, two conv blocks per branch (8-bit stem, 4-bit second block), 16-unit head."""
    branches = []
    for name, shape in modalities.items():
        k = 5 if len(shape) == 2 else 3
        stride = 2 if min(shape[1:]) >= 32 else 1
        branches.append(
            Branch(
                modality=name,
                input_shape=list(shape),
                used=only is None or name == only,
                blocks=[conv(k, 8, 8, stride), conv(k, 16, 4)],
            )
        )
    return Arch(
        classes=classes,
        branches=branches,
        fusion=Fusion(point="late", op="concat"),
        head=Head(hidden=[16], weight_bits=[4, 8], act_bits=[8, 8]),
    ).validate()


def quick(**kw) -> TrainConfig:
    base = dict(epochs=3, batch_size=32, lr=1e-2, seed=0, threads=1, max_train_samples=480, patience=10)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: small models gain nothing from two, and lose a lot when the cores are shared."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def watch():
    return load_dataset("watch")


@pytest.fixture(scope="module")
def avdigits():
    return load_dataset("avdigits")


@pytest.fixture(scope="module")
def watch_arch(watch):
    return tiny_arch(watch.modalities, watch.n_classes)


@pytest.fixture(scope="module")
def watch_run(watch, watch_arch):
    """One plain-CE run shared by several tests (determinism, round trip, result contract)."""
    return train_candidate(watch_arch, watch, quick(distill=False))


# ------------------------------------------------------------------------------------------ learning


def test_training_learns_on_watch_and_reports_the_contract(watch, watch_run):
    r = watch_run
    # 7 classes, chance ~0.14. Seeds 0-4 of this run (quick(), 3 epochs, 480 samples) on this project's
    # 2-core machine: 0.517 / 0.337 / 0.353 / 0.455 / 0.365; the tests run seed 0.
    assert r.metrics["accuracy"] > 0.25
    assert set(r.metrics) == set(metric_names(7)) == {"accuracy", "balanced_accuracy", "macro_f1"}
    assert r.epochs_run == 3 and r.stopped_by == "budget" and 1 <= r.best_epoch <= 3
    assert len(r.history) == 3 and [h["epoch"] for h in r.history] == [1, 2, 3]
    for h in r.history:
        assert {"epoch", "loss", "val_accuracy", "val_balanced_accuracy", "val_macro_f1"} <= set(h)
    # the loss fell by 0.79 / 0.55 / 0.63 / 0.73 / 0.68 over the three epochs for seeds 0-4
    assert r.history[-1]["loss"] < r.history[0]["loss"] - 0.2
    assert r.metrics["accuracy"] == max(h["val_accuracy"] for h in r.history)
    assert r.history[r.best_epoch - 1]["val_accuracy"] == r.metrics["accuracy"]
    assert r.n_train == 480 and not r.distilled and r.seconds > 0
    assert all(v.device.type == "cpu" for v in r.state_dict.values())


def test_training_learns_on_avdigits(avdigits):
    arch = tiny_arch(avdigits.modalities, avdigits.n_classes)
    # all 1200 training samples: on a few hundred this tiny net (no normalization layers, like every
    # point of the space) can sit on the chance plateau for several epochs
    r = train_candidate(arch, avdigits, quick(distill=False, epochs=4, max_train_samples=None))
    # 10 classes, chance 0.1; seeds 0-4: 0.839 / 0.528 / 0.458 / 0.267 / 0.506 (the plateau is real)
    assert r.metrics["accuracy"] > 0.2, r.history


def test_same_seed_same_result_other_seed_differs(watch, watch_arch, watch_run):
    again = train_candidate(watch_arch, watch, quick(distill=False))
    assert again.metrics == watch_run.metrics
    assert [h["loss"] for h in again.history] == [h["loss"] for h in watch_run.history]
    assert all(torch.equal(again.state_dict[k], v) for k, v in watch_run.state_dict.items())
    other = train_candidate(watch_arch, watch, quick(distill=False, seed=1, epochs=1))
    assert other.history[0]["loss"] != watch_run.history[0]["loss"]


def test_state_dict_round_trip_reproduces_the_val_metrics(watch, watch_arch, watch_run, tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(watch_run.state_dict, path)
    state = torch.load(path, weights_only=True)
    model = load_trained(watch_arch, state)
    metrics, logits = evaluate_model(model, watch.val, batch_size=512)
    assert logits.shape == (len(watch.val), 7)
    assert metrics == pytest.approx(watch_run.metrics, abs=1e-12)
    metrics2, _ = evaluate_model(load_trained(watch_arch, path), watch.val, batch_size=512)
    assert metrics2 == metrics


# -------------------------------------------------------------------------------------- distillation


def test_distillation_loss_formula():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    y = torch.randint(0, 5, (8,), generator=g)
    T, alpha = 3.0, 0.6
    loss, ce, kd = distillation_loss(s, y, torch.log_softmax(t / T, 1), T, alpha)
    p_t, logp_s = torch.softmax(t / T, 1), torch.log_softmax(s / T, 1)
    kl = (p_t * (p_t.log() - logp_s)).sum(1).mean()
    assert kd.item() == pytest.approx(T * T * kl.item(), rel=1e-5)
    assert ce.item() == pytest.approx(torch.nn.functional.cross_entropy(s, y).item(), rel=1e-6)
    assert loss.item() == pytest.approx(alpha * T * T * kl.item() + (1 - alpha) * ce.item(), rel=1e-5)
    plain, ce2, none = distillation_loss(s, y, None, T, alpha)
    assert none is None and plain.item() == ce2.item() == ce.item()


def test_distillation_uses_the_given_rows_and_never_runs_a_teacher(watch, watch_arch, watch_run, monkeypatch):
    """Teacher logits = the one-hot labels in train-split order: pure distillation (alpha = 1) on a
    stratified subset learns the task only if the subset's rows are matched to their teacher rows."""
    from search_spaces import builder as build_module

    calls = {"float": 0, "quantized": 0}
    forward = build_module.Model.forward

    def counting(self, inputs):
        calls["quantized" if self.quantized else "float"] += 1
        return forward(self, inputs)

    monkeypatch.setattr(build_module.Model, "forward", counting)
    onehot = np.eye(7, dtype=np.float32)[watch.train.y] * 8.0
    r = train_candidate(watch_arch, watch, quick(distill=True, alpha=1.0, temperature=1.0), onehot)
    assert calls["float"] == 0 and calls["quantized"] > 0  # no teacher (float model) forward pass, ever
    assert r.distilled and all("loss_kd" in h for h in r.history)
    assert r.history[0]["loss"] == pytest.approx(r.history[0]["loss_kd"], rel=1e-9)  # alpha = 1
    assert r.metrics["accuracy"] > 0.25  # seeds 0-4: 0.521 / 0.332 / 0.353 / 0.475 / 0.358; chance ~0.14
    # the distillation term changes the loss from the plain run with the same seed
    assert r.history[0]["loss"] != watch_run.history[0]["loss"]
    # distill=False ignores teacher logits
    plain = train_candidate(watch_arch, watch, quick(distill=False), onehot)
    assert not plain.distilled and _same_losses(plain, watch_run)
    with pytest.raises(ValueError, match="teacher logits must be"):
        train_candidate(watch_arch, watch, quick(epochs=1), onehot[:10])


def _same_losses(a, b) -> bool:
    return [h["loss"] for h in a.history] == [h["loss"] for h in b.history]


def test_stratified_subset():
    y = np.repeat(np.arange(4), [50, 30, 15, 5])
    idx = stratified_subset(y, 20)
    assert len(idx) == 20 and np.all(np.diff(idx) > 0)
    assert np.bincount(y[idx]).tolist() == [10, 6, 3, 1]
    assert np.array_equal(idx, stratified_subset(y, 20))
    assert len(stratified_subset(y, 3)) == 3
    assert np.array_equal(stratified_subset(y, None), np.arange(100))
    assert np.array_equal(stratified_subset(y, 1000), np.arange(100))


# ----------------------------------------------------------------------------------- stopping, errors


def test_callback_stops_training(watch, watch_arch):
    seen = []

    def on_epoch(epoch, metrics):
        seen.append((epoch, set(metrics)))
        return epoch == 2

    r = train_candidate(
        watch_arch, watch, quick(epochs=5, max_train_samples=160, distill=False), on_epoch=on_epoch
    )
    assert r.stopped_by == "callback" and r.epochs_run == 2 and len(r.history) == 2
    assert [e for e, _ in seen] == [1, 2] and all("accuracy" in m for _, m in seen)


def test_patience_stops_training(watch, watch_arch):
    r = train_candidate(
        watch_arch,
        watch,
        quick(
            epochs=5, patience=1, min_delta=1.0, max_train_samples=160, distill=False, patience_on="metric"
        ),
    )
    assert r.stopped_by == "patience" and r.epochs_run == 2 and r.best_epoch == 1


def test_patience_on_validation_loss_waits_for_min_epochs(watch, watch_arch):
    """Patience counts epochs since the lowest validation loss, and never stops before min_epochs."""

    def expected_stop(history, patience, min_epochs):
        best = 0
        for e, h in enumerate(history, 1):
            if h["val_loss"] < history[best - 1]["val_loss"] or best == 0:
                best = e
            if e - best >= patience and e >= min_epochs:
                return e
        return None

    cfg = dict(epochs=12, patience=1, lr=3e-2, max_train_samples=160, distill=False, schedule="constant")
    for min_epochs in (1, 6):
        r = train_candidate(watch_arch, watch, quick(**cfg, min_epochs=min_epochs))
        stop = expected_stop(r.history, 1, min_epochs)
        assert (r.stopped_by, r.epochs_run) == (("patience", stop) if stop else ("budget", 12))
        assert r.epochs_run >= min_epochs
    assert all("val_loss" in h for h in r.history)


def test_step_floor_raises_the_epochs_and_warmup_ramps_the_lr(watch, watch_arch):
    """160 windows at batch 32 are 5 steps an epoch: a floor of 40 steps makes 2 epochs 8, and
    patience and min_epochs stretch with them."""
    cfg = quick(
        epochs=2, max_train_samples=160, distill=False, min_steps=40, warmup=0.25, patience=1, min_epochs=2
    )
    assert cfg.planned_epochs(len(watch.train)) == 8 and cfg.stretch(len(watch.train)) == 4
    r = train_candidate(watch_arch, watch, cfg)
    assert r.epochs_planned == 8 and r.epochs_run >= 8 * 2 / 2  # min_epochs 2 x 4
    lrs = [h["lr"] for h in r.history]
    assert lrs[0] < lrs[1] < lrs[2]  # the first 10 of 40 steps ramp up
    assert max(lrs) <= cfg.lr and lrs[-1] < lrs[2]


def test_augmentation_and_mixup_train_and_are_seeded(watch, watch_arch):
    aug = {"jitter": 0.05, "scale": 0.1, "shift": 0.1, "mixup": 0.4}
    a = train_candidate(watch_arch, watch, quick(epochs=2, max_train_samples=160, augment=aug))
    b = train_candidate(watch_arch, watch, quick(epochs=2, max_train_samples=160, augment=aug))
    plain = train_candidate(watch_arch, watch, quick(epochs=2, max_train_samples=160))
    assert a.history[-1]["loss"] == b.history[-1]["loss"] != plain.history[-1]["loss"]
    assert a.config["augment"]["mixup"] == 0.4


def test_nan_loss_raises_training_failed(watch, watch_arch):
    with pytest.raises(TrainingFailed, match=r"NaN loss at epoch \d+ step \d+"):
        train_candidate(watch_arch, watch, quick(epochs=3, lr=1e30, max_train_samples=160, distill=False))
    x = dict(watch.train.x, acc=watch.train.x["acc"] * np.float32(np.inf))
    broken = dataclasses.replace(watch, train=Split(x, watch.train.y, watch.train.groups))
    with pytest.raises(TrainingFailed, match="NaN loss at epoch 1 step 1"):
        train_candidate(watch_arch, broken, quick(epochs=1, max_train_samples=160, distill=False))


def test_arch_dataset_mismatch_and_bad_config_are_input_errors(watch, avdigits, watch_arch):
    with pytest.raises(InputError, match="modality 'acc' is not in the dataset"):
        train_candidate(watch_arch, avdigits, quick(epochs=1))
    other = tiny_arch({"acc": (3, 50), "gyro": (3, 100)}, 5)
    with pytest.raises(InputError, match=r"input shape \[3, 50\] in the arch but \[3, 100\].*5 classes"):
        train_candidate(other, watch, quick(epochs=1))
    with pytest.raises(InputError, match="roc_auc"):
        train_candidate(watch_arch, watch, quick(metric="roc_auc"))
    with pytest.raises(InputError, match="device 'cuda'"):
        if torch.cuda.is_available():
            pytest.skip("CUDA is available here")
        train_candidate(watch_arch, watch, quick(device="cuda"))


def test_metrics_binary_roc_auc():
    y = np.array([0, 0, 1, 1])
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    m = classification_metrics(y, logits)
    assert m["accuracy"] == 0.5 and m["roc_auc"] == 0.75
    assert set(m) == set(metric_names(2))
    assert classification_metrics(np.array([1, 1]), logits[:2])["roc_auc"] == 0.5


# ----------------------------------------------------------------------------------------- teacher


def test_teacher_arch_is_a_valid_large_point():
    a = teacher_arch({"acc": (3, 100), "gyro": (3, 100)}, 7)
    b = teacher_arch({"image": (1, 8, 8), "audio": (1, 40, 64)}, 10)
    for arch in (a, b):
        assert arch.fusion.point == "late" and arch.fusion.op == "concat" and arch.head.hidden == [128]
        assert all(len(br.blocks) == 3 and br.blocks[-1].channels == 64 for br in arch.branches)
        graph(arch)  # shapes are consistent
    with pytest.raises(InputError, match="unknown teacher preset"):
        teacher_arch({"acc": (3, 100)}, 7, preset="huge")


def test_teacher_is_cached(watch, tmp_path):
    t0 = time.perf_counter()
    first = get_teacher(watch, QUICK_TEACHER, seed=0, threads=1, cache_dir=tmp_path)
    trained_s = time.perf_counter() - t0
    assert not first.cached
    assert first.train_logits.shape == (len(watch.train), 7) and first.train_logits.dtype == np.float32
    assert {"arch.json", "weights.pt", "train_logits.npy", "meta.json"} <= {
        p.name for p in first.path.iterdir()
    }
    assert first.path.parent.name == watch.fingerprint() and first.path.parent.parent.name == "teachers"
    assert 0 <= first.val_metrics["accuracy"] <= 1
    t0 = time.perf_counter()
    second = get_teacher(watch, QUICK_TEACHER, seed=0, threads=1, cache_dir=tmp_path)
    assert second.cached and time.perf_counter() - t0 < min(0.5, trained_s)
    assert np.array_equal(second.train_logits, first.train_logits)
    assert second.val_metrics == first.val_metrics and second.arch.to_dict() == first.arch.to_dict()
    # the cached weights reproduce the cached logits
    model = second.load_model()
    _, val_logits = evaluate_model(model, watch.val)
    assert classification_metrics(watch.val.y, val_logits)["accuracy"] == pytest.approx(
        first.val_metrics["accuracy"]
    )
    # another seed or config is another teacher
    third = get_teacher(
        watch,
        TeacherConfig(preset="teacher_small", epochs=1, max_train_samples=100),
        0,
        threads=1,
        cache_dir=tmp_path,
    )
    assert not third.cached and third.path != first.path


def _teacher_in_worker(cache_dir: str, queue) -> None:
    ds = load_dataset("watch")
    t = get_teacher(
        ds,
        TeacherConfig(preset="teacher_small", epochs=1, max_train_samples=200),
        seed=3,
        threads=1,
        cache_dir=cache_dir,
    )
    queue.put(t.cached)


def test_concurrent_workers_train_the_teacher_once(tmp_path):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_teacher_in_worker, args=(str(tmp_path), queue)) for _ in range(2)]
    for p in procs:
        p.start()
    results = sorted(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert results == [False, True]  # one trained it, the other waited on the lock and loaded it


# --------------------------------------------------------------------------------------------- CLI


def _write_arch(tmp_path, arch: Arch):
    path = tmp_path / "arch.json"
    path.write_text(arch.to_json(indent=1))
    return path


def test_train_command_json_with_distillation(watch, watch_arch, tmp_path, capsys):
    from nas.cli.train import train_command

    arch_path = _write_arch(tmp_path, watch_arch)
    train_command(
        arch_path, "watch", 1, False, True, 0, None, "cpu", 1,
        teacher_config=QUICK_TEACHER, cache_dir=tmp_path / "cache", max_train_samples=160, min_steps=0,
    )  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert report["distilled"] and report["teacher"]["preset"] == "teacher_small"
    assert report["epochs_run"] == 1 and set(report["metrics"]) == set(metric_names(7))
    assert report["arch_key"] == watch_arch.key()


def test_train_command_errors(watch_arch, tmp_path):
    from nas.cli.train import train_command

    args = ("watch", 1, True, True, 0, None, "cpu", 1)
    with pytest.raises(InputError, match="no such arch file"):
        train_command(tmp_path / "missing.json", *args)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        train_command(bad, *args)
    av = tiny_arch({"image": (1, 8, 8), "audio": (1, 40, 64)}, 10)
    with pytest.raises(
        InputError, match="arch does not match dataset 'watch'.*'image'.*10 classes, the dataset 7"
    ):
        train_command(_write_arch(tmp_path, av), *args)


def test_m2nas_train_subprocess(watch_arch, tmp_path, cli):
    arch_path = _write_arch(tmp_path, watch_arch)
    env = {"M2NAS_CACHE": str(tmp_path / "cache")}
    res = cli(
        "train",
        arch_path,
        "--dataset",
        "watch",
        "--epochs",
        "1",
        "--min-steps",
        "0",
        "--no-distill",
        "--json",
        env=env,
        timeout=120,
    )
    assert res.code == 0, res.stderr
    report = json.loads(res.stdout)
    assert (
        report["epochs_run"] == 1 and not report["distilled"] and math.isfinite(report["metrics"]["accuracy"])
    )
    res = cli("train", tmp_path / "nope.json", "--dataset", "watch", env=env)
    assert res.code == 2 and "no such arch file" in res.stderr and "Traceback" not in res.stderr
