"""The full-precision teacher for knowledge distillation, trained once per dataset and cached on disk.

    teacher = get_teacher(dataset, TeacherConfig(), seed=0)
    teacher.train_logits   # (len(dataset.train), classes) float32, train-split order
    teacher.val_metrics    # its validation metrics (the test split is never touched here)

The teacher is a large point of the search space (`teacher_arch`): per modality a conv stem and two
wider conv blocks with max-pooling, late concatenation fusion and a 128-unit hidden layer, built in
float layers (`build(arch, quantized=False)`) and trained with cross-entropy by the same trainer as the
candidates (early stopping on validation accuracy, best-epoch weights).

Cache: `<cache>/teachers/<dataset fingerprint>/<key>/` where the key hashes the teacher config, the
arch and the seed (the fingerprint already covers the data and the split). It holds `arch.json`,
`weights.pt` (state dict), `train_logits.npy` and `meta.json` (val metrics, history, config), the
latter written last as the completion mark. An fcntl lock on `<key>.lock` makes concurrent workers
wait for the one that trains instead of training the same teacher twice.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from memory_models.errors import InputError
from nas.data import default_cache_dir, stable_hash
from search_spaces.arch import Arch, Block, Branch, Fusion, Head

__all__ = ["PRESETS", "Teacher", "TeacherConfig", "get_teacher", "teacher_arch"]

CACHE_FORMAT = 1

# preset -> (stem channels, block channels, hidden units)
PRESETS: dict[str, tuple[int, tuple[int, ...], int]] = {
    "teacher": (32, (64, 64), 128),
    "teacher_small": (16, (32,), 64),  # a quick teacher for tests and smoke runs
}


@dataclass(frozen=True)
class TeacherConfig:
    preset: str = "teacher"
    epochs: int = 30
    lr: float = 3e-3
    batch_size: int = 64
    weight_decay: float = 1e-4
    patience: int = 8
    max_train_samples: int | None = None  # train on a stratified subset (logits still cover all of train)


def _conv(kernel: int, channels: int, stride: int = 1, pool: int = 1) -> Block:
    return Block(
        op="conv", kernel=kernel, channels=channels, stride=stride, pool=pool, weight_bits=[8], act_bits=[8]
    )


def teacher_arch(modalities: dict[str, tuple[int, ...]], classes: int, preset: str = "teacher") -> Arch:
    """The teacher: per modality a conv stem + wider conv blocks (max-pool 2 while the grid allows),
    late concat fusion, one hidden dense layer. Large inputs (every side >= 32) get a stride-2 stem."""
    if preset not in PRESETS:
        raise InputError(f"unknown teacher preset {preset!r} (known: {', '.join(PRESETS)})")
    stem, widths, hidden = PRESETS[preset]
    branches = []
    for name, shape in modalities.items():
        shape = [int(s) for s in shape]
        if len(shape) not in (2, 3):
            raise InputError(f"modality {name!r}: expected a (C, L) or (C, H, W) shape, got {shape}")
        dims = len(shape) - 1
        grid = shape[1:]
        blocks = []
        for i, ch in enumerate((stem, *widths)):
            k = (7 if i == 0 else 5) if dims == 1 else 3
            stride = 2 if i == 0 and min(grid) >= 32 else 1
            grid = [(g - 1) // stride + 1 for g in grid]
            pool = 2 if min(grid) >= 4 else 1
            grid = [g // pool for g in grid]
            blocks.append(_conv(k, ch, stride, pool))
        branches.append(Branch(modality=name, input_shape=shape, blocks=blocks))
    arch = Arch(
        classes=int(classes),
        branches=branches,
        fusion=Fusion(point="late", op="concat"),
        head=Head(hidden=[hidden], weight_bits=[8, 8], act_bits=[8, 8]),
    )
    return arch.validate("teacher")


@dataclass
class Teacher:
    arch: Arch
    train_logits: np.ndarray  # (len(train), classes) float32, train-split order
    val_metrics: dict[str, float]
    path: Path  # the cache directory
    cached: bool  # True when loaded from the cache, False when trained by this call
    meta: dict[str, Any]

    def load_model(self, device: str = "cpu"):
        """The trained float teacher (eval mode)."""
        from nas.train import load_trained

        return load_trained(self.arch, self.path / "weights.pt", quantized=False, device=device)


@contextmanager
def _file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _load(path: Path, arch: Arch, n_train: int, n_classes: int) -> Teacher | None:
    meta_file = path / "meta.json"
    if not meta_file.is_file():
        return None
    try:
        meta = json.loads(meta_file.read_text())
        logits = np.load(path / "train_logits.npy")
    except (OSError, ValueError):
        return None
    if (
        meta.get("format") != CACHE_FORMAT
        or logits.shape != (n_train, n_classes)
        or not (path / "weights.pt").is_file()
    ):
        return None
    return Teacher(arch, logits.astype(np.float32, copy=False), meta["val_metrics"], path, True, meta)


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    os.replace(tmp, path)


def _save_npy(path: Path, a: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.save(fh, a)


def get_teacher(
    dataset,
    config: TeacherConfig | None = None,
    seed: int = 0,
    device: str = "cpu",
    threads: int | None = None,
    cache_dir: Path | str | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> Teacher:
    """The teacher of `dataset` for `config` and `seed`: from the cache, or trained now and cached.

    `on_epoch(epoch, val_metrics)` hears each epoch when it trains (a first run can take minutes);
    it cannot stop the training."""
    import torch

    from nas.train import TrainConfig, load_trained, predict_logits, train_candidate

    config = config or TeacherConfig()
    arch = teacher_arch(dataset.modalities, dataset.n_classes, config.preset)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    key = stable_hash(
        {"config": asdict(config), "arch": arch.to_dict(), "seed": seed, "format": CACHE_FORMAT}, 12
    )
    root = cache / "teachers" / dataset.fingerprint()
    path = root / key
    n_train, n_classes = len(dataset.train), dataset.n_classes

    hit = _load(path, arch, n_train, n_classes)  # fast path, no lock
    if hit is not None:
        return hit
    with _file_lock(root / f"{key}.lock"):
        hit = _load(path, arch, n_train, n_classes)  # another worker may have trained it meanwhile
        if hit is not None:
            return hit
        t0 = time.perf_counter()
        tc = TrainConfig(
            epochs=config.epochs,
            batch_size=config.batch_size,
            lr=config.lr,
            weight_decay=config.weight_decay,
            patience=config.patience,
            distill=False,
            metric="accuracy",
            seed=seed,
            device=device,
            threads=threads,
            max_train_samples=config.max_train_samples,
            quantized=False,
        )

        def heard(epoch: int, metrics: dict[str, float]) -> bool:
            if on_epoch is not None:
                on_epoch(epoch, metrics)
            return False  # never stops the teacher

        result = train_candidate(arch, dataset, tc, None, on_epoch=heard)
        model = load_trained(arch, result.state_dict, quantized=False, device=device)
        logits = predict_logits(model, dataset.train.x, device=device, threads=threads)
        path.mkdir(parents=True, exist_ok=True)
        (path / "arch.json").write_text(arch.to_json(indent=1))
        _atomic_write(path / "weights.pt", lambda p: torch.save(result.state_dict, p))
        _atomic_write(path / "train_logits.npy", lambda p: _save_npy(p, logits))
        meta = {
            "format": CACHE_FORMAT,
            "dataset": dataset.name,
            "fingerprint": dataset.fingerprint(),
            "seed": seed,
            "config": asdict(config),
            "val_metrics": result.metrics,
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
            "stopped_by": result.stopped_by,
            "history": result.history,
            "train_seconds": round(time.perf_counter() - t0, 3),
            "params": int(
                sum(v.numel() for k, v in result.state_dict.items() if k.endswith(("weight", "bias")))
            ),
        }
        _atomic_write(path / "meta.json", lambda p: p.write_text(json.dumps(meta, indent=1)))
        return Teacher(arch, logits, result.metrics, path, False, meta)
