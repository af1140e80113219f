"""`m2nas train ARCH.json --dataset NAME [--epochs N] [--no-distill] [--json]`: train one arch as the search would.

The arch is checked against the dataset (modalities, input shapes, classes) before anything is built;
unless `--no-distill`, the dataset's teacher is loaded from the cache (or trained once and cached) and
the candidate is trained quantization-aware with distillation, with the search's default training
settings. Prints the validation metrics at the best epoch (a table, or JSON with `--json`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from memory_models.errors import DOCUMENT_ERRORS, InputError, read_user_text
from nas.config.study import Budget, Teacher, Training
from nas.outputs import check_writable_file

# The search's defaults: the study file's [training], [budget] and [teacher] sections as left empty.
DEFAULT_EPOCHS = Budget().epochs


def load_arch_file(path: Path):
    from search_spaces.arch import Arch

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such arch file")
    text = read_user_text(path, "an Arch JSON file")
    try:
        return Arch.from_json(text, str(path))
    except InputError:
        raise
    except DOCUMENT_ERRORS as e:
        raise InputError(f"{path}: not a valid Arch document ({type(e).__name__}: {e})") from None


def train_command(
    arch_path: Path,
    dataset: str,
    epochs: int | None,
    no_distill: bool,
    json_out: bool,
    seed: int,
    options: dict | None,
    device: str,
    threads: int,
    *,
    teacher_config=None,
    cache_dir: Path | None = None,
    weights_out: Path | None = None,
    max_train_samples: int | None = None,
    min_steps: int | None = None,
) -> None:
    """Train the arch in `arch_path` on `dataset` and print its validation metrics.

    `seed` makes the dataset split (as a study's seed does) and seeds the training and the teacher."""
    from nas.data import load_dataset
    from nas.train import TrainingFailed, check_arch_matches, resolve_device, train_candidate

    arch = load_arch_file(arch_path)
    if weights_out is not None:
        check_writable_file(weights_out, "--weights-out")
    if epochs is not None and epochs < 1:
        raise InputError(f"--epochs must be >= 1, got {epochs}")
    if threads is not None and threads < 1:
        raise InputError(f"--threads must be >= 1, got {threads}")
    resolve_device(device)  # an unknown or unavailable device is an InputError before any work
    ds = load_dataset(dataset, options, seed=seed)
    check_arch_matches(arch, ds)
    progress = None if json_out else _progress()

    teacher_info: dict[str, Any] | None = None
    teacher_logits = None
    if not no_distill:
        from nas.train.teacher import get_teacher

        tcfg = teacher_config or Teacher().teacher_config(Training().batch_size)
        if progress:
            progress(f"teacher ({tcfg.preset}) for {ds.name}: loading from the cache or training it once ...")
        teacher = get_teacher(ds, tcfg, seed=seed, device=device, threads=threads, cache_dir=cache_dir)
        teacher_logits = teacher.train_logits
        teacher_info = {
            "preset": tcfg.preset,
            "cached": teacher.cached,
            "path": str(teacher.path),
            "val_metrics": teacher.val_metrics,
        }

    floor = {} if min_steps is None else {"min_steps": min_steps}
    cfg = Training(distill=not no_distill, max_train_samples=max_train_samples, **floor).train_config(
        epochs=epochs or DEFAULT_EPOCHS, metric="accuracy", seed=seed, device=device, threads=threads
    )

    planned = cfg.planned_epochs(len(ds.train))

    def on_epoch(epoch: int, metrics: dict[str, float]) -> bool:
        if progress:
            progress(f"epoch {epoch}/{planned}: val " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        return False

    try:
        result = train_candidate(arch, ds, cfg, teacher_logits, on_epoch=on_epoch)
    except TrainingFailed as e:
        raise InputError(f"training failed: {e}") from None
    if weights_out is not None:
        import torch

        Path(weights_out).parent.mkdir(parents=True, exist_ok=True)
        torch.save(result.state_dict, weights_out)

    report = {
        "arch": str(arch_path),
        "arch_key": arch.key(),
        "summary": arch.summary(),
        "dataset": ds.name,
        "seed": seed,
        "distilled": result.distilled,
        "metrics": result.metrics,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "stopped_by": result.stopped_by,
        "seconds": round(result.seconds, 3),
        "n_train": result.n_train,
        "device": result.device,
        "teacher": teacher_info,
        "weights": str(weights_out) if weights_out is not None else None,
        "history": result.history,
    }
    if json_out:
        print(json.dumps(report, indent=1))
        return
    _print_table(report)


def _progress():
    from .console import err

    def say(msg: str) -> None:
        err().print(msg, markup=False, soft_wrap=True)

    return say


def _print_table(report: dict[str, Any]) -> None:
    from rich.table import Table

    from .console import out as stdout

    out = stdout()
    out.print(f"{report['arch']} ({report['arch_key']}): {report['summary']}", markup=False, soft_wrap=True)
    t = Table(
        title=f"validation on {report['dataset']}, best epoch {report['best_epoch']}", title_justify="left"
    )
    t.add_column("metric")
    t.add_column("value", justify="right")
    if report["teacher"]:
        t.add_column("teacher", justify="right")
    for k, v in report["metrics"].items():
        row = [k, f"{v:.4f}"]
        if report["teacher"]:
            tv = report["teacher"]["val_metrics"].get(k)
            row.append("-" if tv is None else f"{tv:.4f}")
        t.add_row(*row)
    out.print(t)
    how = "with distillation" if report["distilled"] else "without distillation"
    out.print(
        f"trained {how}: {report['epochs_run']} epochs ({report['stopped_by']}), {report['n_train']} training samples, "
        f"{report['seconds']:.1f} s on {report['device']}"
        + (f"; weights saved to {report['weights']}" if report["weights"] else ""),
        markup=False,
        soft_wrap=True,
    )
