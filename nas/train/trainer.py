"""Quantization-aware training of one candidate, with knowledge distillation from cached teacher logits.

    from nas.train import TrainConfig, train_candidate
    result = train_candidate(arch, dataset, TrainConfig(epochs=10, seed=0), teacher_logits)
    result.metrics["accuracy"], result.best_epoch, result.state_dict

What one call does:
- builds `search_spaces.builder.build(arch)` (Brevitas layers at the arch's bit-widths; `quantized=False` gives
  the float network, which is how the teacher is trained);
- keeps the train and validation splits in memory as tensors on the target device and batches them by
  index (no DataLoader); the batch order comes from a seeded `torch.Generator`, the initial weights from
  the seeded global RNGs, so on CPU the same seed gives bit-identical results;
- optimises AdamW (weight decay on weight tensors only, not on biases or learned quantizer thresholds)
  with a per-step cosine learning-rate schedule over the epoch budget;
- loss: cross-entropy, or with teacher logits
  `alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE`;
  the teacher's log-probabilities are computed once from the precomputed logits and indexed by the
  batch's train indices: there is no teacher forward pass during training;
- evaluates the validation split every epoch (eval mode, no grad, batched), keeps the weights of the
  best epoch for `config.metric` and stops on the epoch budget, on `patience` epochs without
  improvement, or when `on_epoch(epoch, val_metrics)` returns True;
- a non-finite loss raises `TrainingFailed("NaN loss at epoch E step S ...")`.

`max_train_samples` takes a stratified subset of the train split that depends only on the labels and
the size (not on the training seed), so that candidates trained with different seeds see the same data.
"""

from __future__ import annotations

import math
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memory_models.errors import InputError
from nas import interrupt
from nas.train.augment import Augment, mix, perturb
from nas.train.metrics import classification_metrics, metric_names

__all__ = [
    "TrainConfig",
    "TrainResult",
    "TrainingFailed",
    "check_arch_matches",
    "distillation_loss",
    "evaluate_model",
    "load_trained",
    "predict_logits",
    "resolve_device",
    "stratified_subset",
    "train_candidate",
]

SCHEDULES = ("cosine", "constant")
PATIENCE_ON = ("loss", "metric")


class TrainingFailed(RuntimeError):
    """Training could not produce a usable model (non-finite loss or outputs); the message says why."""


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    patience: int = 4  # epochs without improvement of `metric` before stopping
    distill: bool = True  # use the teacher logits when given
    temperature: float = 4.0
    alpha: float = 0.7  # weight of the distillation term
    metric: str = "accuracy"  # validation metric for model selection and early stopping
    seed: int = 0
    device: str = "cpu"  # cpu | cuda | cuda:N | auto
    threads: int | None = None  # torch.set_num_threads for the duration of the call
    max_train_samples: int | None = None  # stratified subset of the train split
    quantized: bool = True  # False: the same topology in float layers (the teacher)
    schedule: str = "cosine"  # cosine | constant
    min_lr_ratio: float = 0.02  # the cosine schedule's floor, as a fraction of lr
    eval_batch_size: int = 512
    min_delta: float = 0.0  # an epoch improves only if metric > best + min_delta
    # Ranking candidates needs each of them trained long enough to tell them apart: on a small
    # train split an epoch is one or two optimizer steps, so the epoch budget alone says little.
    min_steps: int = 0  # floor on optimizer steps; raises the epochs (and patience with them)
    min_epochs: int = 1  # patience never stops a run before this epoch
    patience_on: str = "loss"  # loss (validation cross-entropy: smooth on small splits) | metric
    warmup: float = 0.0  # fraction of the steps over which the learning rate ramps up linearly
    augment: Augment = field(default_factory=Augment)

    def validate(self, n_classes: int) -> TrainConfig:
        def bad(msg: str):
            raise InputError(f"training config: {msg}")

        if self.epochs < 1:
            bad(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1 or self.eval_batch_size < 1:
            bad("batch sizes must be >= 1")
        if not self.lr > 0 or self.weight_decay < 0:
            bad(f"lr must be > 0 and weight_decay >= 0, got {self.lr} and {self.weight_decay}")
        if self.patience < 1:
            bad(f"patience must be >= 1, got {self.patience}")
        if not self.temperature > 0 or not 0 <= self.alpha <= 1:
            bad(f"temperature must be > 0 and alpha in [0, 1], got {self.temperature} and {self.alpha}")
        names = metric_names(n_classes)
        if self.metric not in names:
            bad(
                f"metric {self.metric!r} is not available for {n_classes} classes (available: {', '.join(names)})"
            )
        if self.schedule not in SCHEDULES:
            bad(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.max_train_samples is not None and self.max_train_samples < 1:
            bad(f"max_train_samples must be >= 1, got {self.max_train_samples}")
        if self.threads is not None and self.threads < 1:
            bad(f"threads must be >= 1, got {self.threads}")
        if self.min_steps < 0 or self.min_epochs < 1:
            bad(f"min_steps must be >= 0 and min_epochs >= 1, got {self.min_steps} and {self.min_epochs}")
        if self.patience_on not in PATIENCE_ON:
            bad(f"patience_on must be one of {PATIENCE_ON}, got {self.patience_on!r}")
        if not 0 <= self.warmup < 1:
            bad(f"warmup must be in [0, 1), got {self.warmup}")
        if isinstance(self.augment, dict):
            self.augment = Augment(**self.augment)
        self.augment.validate()
        return self

    def planned_epochs(self, n_train: int) -> int:
        """Epochs actually run at most: the budget, raised so that the run makes `min_steps` steps."""
        n = min(n_train, self.max_train_samples or n_train)
        steps_per_epoch = max(1, math.ceil(n / self.batch_size))
        return max(self.epochs, math.ceil(self.min_steps / steps_per_epoch))

    def stretch(self, n_train: int) -> float:
        """How much the step floor stretched the epoch budget (1.0 when it did not)."""
        return self.planned_epochs(n_train) / self.epochs


@dataclass
class TrainResult:
    metrics: dict[str, float]  # validation metrics at the best epoch
    history: list[dict[str, float]]  # per epoch: epoch, loss, loss_ce, loss_kd, lr, seconds, val_<metric>...
    epochs_run: int
    best_epoch: int  # 1-based
    stopped_by: str  # budget | patience | callback
    seconds: float
    state_dict: dict[str, Tensor]  # best-epoch weights, CPU tensors
    distilled: bool = False
    n_train: int = 0
    device: str = "cpu"
    config: dict[str, Any] = field(default_factory=dict)
    val_loss: float = math.nan  # validation cross-entropy at the best epoch
    epochs_planned: int = 0  # the epoch budget after the step floor


# ---------------------------------------------------------------------------------------------- helpers


def resolve_device(device: str | torch.device | None) -> torch.device:
    """'auto' is CUDA when available, else CPU; asking for CUDA where there is none is an InputError."""
    name = str(device or "cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r} (use cpu, cuda, cuda:N or auto)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name!r}: CUDA is not available on this machine (use cpu or auto)")
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"device {name!r}: only cpu, cuda and auto are supported")
    return dev


def stratified_subset(y: np.ndarray, n: int | None) -> np.ndarray:
    """Sorted indices of a class-stratified subset of `n` samples (all of them when n is None or >= len(y)).

    Each class gets its share by largest remainder (at least one sample while n allows); the samples
    within a class are drawn with a fixed seed, so the subset depends only on (y, n)."""
    y = np.asarray(y)
    if n is None or n >= len(y):
        return np.arange(len(y))
    classes, counts = np.unique(y, return_counts=True)
    quota = counts * (n / len(y))
    take = np.floor(quota).astype(int)
    if n >= len(classes):
        take = np.maximum(take, 1)
    rest = n - take.sum()
    order = np.argsort(-(quota - np.floor(quota)), kind="stable")
    i = 0
    while rest > 0:
        c = order[i % len(order)]
        if take[c] < counts[c]:
            take[c] += 1
            rest -= 1
        i += 1
    while rest < 0:  # the minimum of one per class overshot: trim the largest classes
        c = int(np.argmax(take))
        take[c] -= 1
        rest += 1
    rng = np.random.default_rng(0)
    chosen = [rng.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, take)]
    return np.sort(np.concatenate(chosen))


def check_arch_matches(arch, dataset) -> None:
    """InputError naming what differs when `arch` was not made for `dataset` (modalities, shapes, classes)."""
    problems = []
    for b in arch.branches:
        if b.modality not in dataset.modalities:
            problems.append(
                f"modality {b.modality!r} is not in the dataset (it has {', '.join(dataset.modalities)})"
            )
        elif b.used and tuple(b.input_shape) != tuple(dataset.modalities[b.modality]):
            problems.append(
                f"modality {b.modality!r} has input shape {list(b.input_shape)} in the arch but "
                f"{list(dataset.modalities[b.modality])} in the dataset"
            )
    if arch.classes != dataset.n_classes:
        problems.append(f"the arch has {arch.classes} classes, the dataset {dataset.n_classes}")
    if problems:
        raise InputError(f"arch does not match dataset '{dataset.name}': {'; '.join(problems)}")


def distillation_loss(
    logits: Tensor, y: Tensor, teacher_logp: Tensor | None, temperature: float, alpha: float
) -> tuple[Tensor, Tensor, Tensor | None]:
    """(loss, ce, kd): CE, or alpha * T^2 * KL(p_teacher^T || p_student^T) + (1 - alpha) * CE.

    `teacher_logp` are the teacher's log-softmax(logits / T), precomputed."""
    ce = F.cross_entropy(logits, y)
    if teacher_logp is None:
        return ce, ce, None
    student_logp = F.log_softmax(logits / temperature, dim=1)
    kd = F.kl_div(student_logp, teacher_logp, reduction="batchmean", log_target=True) * (temperature**2)
    return alpha * kd + (1.0 - alpha) * ce, ce, kd


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _to_tensors(
    x: dict[str, np.ndarray], names: list[str], device: torch.device, idx=None
) -> dict[str, Tensor]:
    out = {}
    for m in names:
        a = x[m] if idx is None else x[m][idx]
        out[m] = torch.as_tensor(np.ascontiguousarray(a, dtype=np.float32)).to(device)
    return out


def _forward(model: nn.Module, inputs: dict[str, Tensor]) -> Tensor:
    """The model's logits as a plain tensor (a Brevitas QuantTensor output is unwrapped)."""
    out = model(inputs)
    return out if isinstance(out, Tensor) else out.value


def _model_modalities(model: nn.Module, fallback: list[str]) -> list[str]:
    return list(getattr(model, "modalities", fallback))


@torch.no_grad()
def _predict(model: nn.Module, xs: dict[str, Tensor], batch_size: int) -> Tensor:
    """Logits (N, classes) as a float32 CPU tensor, in eval mode."""
    model.eval()
    n = len(next(iter(xs.values())))
    outs = []
    for s in range(0, n, batch_size):
        outs.append(_forward(model, {m: v[s : s + batch_size] for m, v in xs.items()}).float())
    return torch.cat(outs).cpu()


def predict_logits(
    model: nn.Module,
    x: dict[str, np.ndarray],
    batch_size: int = 512,
    device: str = "cpu",
    threads: int | None = None,
) -> np.ndarray:
    """Logits (N, classes) float32 of `model` on the modality arrays `x` (eval mode, no grad, batched)."""
    dev = resolve_device(device)
    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        model.to(dev)
        names = _model_modalities(model, list(x))
        return _predict(model, _to_tensors(x, names, dev), batch_size).numpy().astype(np.float32, copy=False)
    finally:
        torch.set_num_threads(old)


def evaluate_model(
    model: nn.Module, split, batch_size: int = 256, device: str = "cpu", threads: int | None = None
) -> tuple[dict[str, float], np.ndarray]:
    """(metrics, logits) of `model` on a dataset `Split` (eval mode, no grad, batched)."""
    logits = predict_logits(model, split.x, batch_size, device, threads)
    n_classes = logits.shape[1]
    return classification_metrics(split.y, logits, n_classes), logits


def load_trained(
    arch, state: str | Path | dict[str, Tensor], quantized: bool = True, device: str = "cpu"
) -> nn.Module:
    """`build(arch)` with trained weights (a state dict or the path of one saved by torch.save), in eval mode."""
    from search_spaces.builder import build

    source = None
    if isinstance(state, (str, Path)):
        source = state
        try:
            with warnings.catch_warnings():  # torch's notes on a foreign pickle: the error below says it
                warnings.simplefilter("ignore")
                state = torch.load(state, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - torch's message suggests weights_only=False: never that
            raise InputError(
                f"{source}: not a weights file m2nas can load (corrupt, truncated or not a state_dict)"
            ) from None
    model = build(arch, quantized=quantized)
    try:
        model.load_state_dict(state)
    except Exception as e:  # noqa: BLE001 - wrong keys or shapes: the weights of another arch
        if source is None:
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{source}: the weights do not match the trial's arch ({first[:200]})") from None
    model.to(resolve_device(device))
    return model.eval()


def _cpu_state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() > 1 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


# ---------------------------------------------------------------------------------------------- training


def train_candidate(
    arch,
    dataset,
    config: TrainConfig | None = None,
    teacher_logits: np.ndarray | Tensor | None = None,
    on_epoch: Callable[[int, dict[str, float]], bool] | None = None,
    *,
    model: nn.Module | None = None,
) -> TrainResult:
    """Train `arch` (or an already built `model` of it) on `dataset`; see the module docstring.

    `teacher_logits`: (len(dataset.train), classes) in train-split order, used when `config.distill`.
    `on_epoch(epoch, val_metrics)` is called after every epoch's validation (1-based epoch); returning
    True stops training (`stopped_by="callback"`)."""
    cfg = (config or TrainConfig()).validate(dataset.n_classes)
    check_arch_matches(arch, dataset)
    device = resolve_device(cfg.device)
    old_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _train(arch, dataset, cfg, teacher_logits, on_epoch, model, device)
    finally:
        if cfg.threads:
            torch.set_num_threads(old_threads)


def _train(
    arch, dataset, cfg: TrainConfig, teacher_logits, on_epoch, model, device: torch.device
) -> TrainResult:
    t_start = time.perf_counter()
    _seed_everything(cfg.seed)
    n_classes = dataset.n_classes

    train_idx = stratified_subset(dataset.train.y, cfg.max_train_samples)
    if model is None:
        from search_spaces.builder import build

        model = build(arch, quantized=cfg.quantized)
    model.to(device)
    names = _model_modalities(model, [b.modality for b in arch.used])

    xs = _to_tensors(
        dataset.train.x, names, device, None if len(train_idx) == len(dataset.train) else train_idx
    )
    ys = torch.as_tensor(dataset.train.y[train_idx], dtype=torch.long).to(device)
    val_x = _to_tensors(dataset.val.x, names, device)
    val_y = np.asarray(dataset.val.y)
    n = len(train_idx)

    teacher_logp = None
    if cfg.distill and teacher_logits is not None:
        t = torch.as_tensor(np.asarray(teacher_logits), dtype=torch.float32)
        if t.shape != (len(dataset.train), n_classes):
            raise ValueError(
                f"teacher logits must be (len(train), classes) = ({len(dataset.train)}, {n_classes}), got {tuple(t.shape)}"
            )
        if not torch.isfinite(t).all():
            raise ValueError("teacher logits contain NaN or inf")
        teacher_logp = F.log_softmax(t[torch.as_tensor(train_idx)] / cfg.temperature, dim=1).to(device)

    optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    epochs = cfg.planned_epochs(len(dataset.train))
    stretch = epochs / cfg.epochs
    patience = math.ceil(cfg.patience * stretch)
    min_epochs = math.ceil(cfg.min_epochs * stretch)
    total_steps = epochs * steps_per_epoch
    warm = int(cfg.warmup * total_steps)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if cfg.schedule != "cosine":
            return 1.0
        t = min(step - warm, total_steps - warm) / max(1, total_steps - warm)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    gen = torch.Generator().manual_seed(cfg.seed)

    aug = cfg.augment
    val_y_t = torch.as_tensor(val_y, dtype=torch.long)
    history: list[dict[str, float]] = []
    best_value, best_epoch, best_state, best_metrics = -math.inf, 0, None, None
    best_val_loss, best_val_loss_epoch, best_loss = math.inf, 0, math.inf
    stopped_by = "budget"
    epoch = 0
    for epoch in range(1, epochs + 1):
        t_epoch = time.perf_counter()
        model.train()
        perm = torch.randperm(n, generator=gen).to(device)
        sums = [0.0, 0.0, 0.0]
        lr_now = optimizer.param_groups[0]["lr"]
        for step in range(steps_per_epoch):
            interrupt.check()
            idx = perm[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            batch = {m: perturb(v[idx], aug, gen) for m, v in xs.items()}
            t_logp = None if teacher_logp is None else teacher_logp[idx]
            if aug.mixup > 0 and len(idx) > 1:
                pair, lam = mix(len(idx), aug.mixup, gen)
                pair = pair.to(device)
                batch = {m: lam * v + (1 - lam) * v[pair] for m, v in batch.items()}
                logits = _forward(model, batch)
                loss_a, ce_a, kd_a = distillation_loss(logits, ys[idx], t_logp, cfg.temperature, cfg.alpha)
                loss_b, ce_b, kd_b = distillation_loss(
                    logits,
                    ys[idx][pair],
                    None if t_logp is None else t_logp[pair],
                    cfg.temperature,
                    cfg.alpha,
                )
                loss, ce = lam * loss_a + (1 - lam) * loss_b, lam * ce_a + (1 - lam) * ce_b
                kd = None if kd_a is None else lam * kd_a + (1 - lam) * kd_b
            else:
                logits = _forward(model, batch)
                loss, ce, kd = distillation_loss(logits, ys[idx], t_logp, cfg.temperature, cfg.alpha)
            # one host sync per step: the three loss terms together
            parts = [loss.detach(), ce.detach()] + ([kd.detach()] if kd is not None else [])
            vals = torch.stack(parts).tolist()
            value = vals[0]
            if not math.isfinite(value):
                raise TrainingFailed(
                    f"NaN loss at epoch {epoch} step {step + 1}"
                    + ("" if math.isnan(value) else f" (the loss is {value})")
                    + f": diverged or non-finite inputs (lr {cfg.lr:g})"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            k = len(idx)
            for i, v in enumerate(vals):
                sums[i] += v * k
        val_logits = _predict(model, val_x, cfg.eval_batch_size)
        if not torch.isfinite(val_logits).all():
            raise TrainingFailed(
                f"non-finite validation outputs at epoch {epoch}: diverged or non-finite inputs"
            )
        metrics = classification_metrics(val_y, val_logits.numpy(), n_classes)
        val_loss = float(F.cross_entropy(val_logits, val_y_t))
        row = {
            "epoch": epoch,
            "loss": float(sums[0] / n),
            "loss_ce": float(sums[1] / n),
            "lr": lr_now,
            "seconds": round(time.perf_counter() - t_epoch, 4),
        }
        if teacher_logp is not None:
            row["loss_kd"] = float(sums[2] / n)
        row["val_loss"] = val_loss
        row.update({f"val_{k}": v for k, v in metrics.items()})
        history.append(row)
        value = metrics[cfg.metric]
        # ties on the metric (frequent on small validation splits) go to the lower validation loss
        if (
            best_state is None
            or value > best_value + cfg.min_delta
            or (value == best_value and val_loss < best_loss)
        ):
            best_value, best_epoch, best_loss = value, epoch, val_loss
            best_metrics = dict(metrics)
            best_state = _cpu_state(model)
        if val_loss < best_val_loss:
            best_val_loss, best_val_loss_epoch = val_loss, epoch
        if on_epoch is not None and on_epoch(epoch, dict(metrics) | {"loss": val_loss}):
            stopped_by = "callback"
            break
        since = epoch - (best_val_loss_epoch if cfg.patience_on == "loss" else best_epoch)
        if since >= patience and epoch >= min_epochs and epoch < epochs:
            stopped_by = "patience"
            break

    return TrainResult(
        metrics=best_metrics,
        val_loss=best_loss,
        epochs_planned=epochs,
        history=history,
        epochs_run=epoch,
        best_epoch=best_epoch,
        stopped_by=stopped_by,
        seconds=time.perf_counter() - t_start,
        state_dict=best_state,
        distilled=teacher_logp is not None,
        n_train=n,
        device=str(device),
        config=asdict(cfg),
    )
