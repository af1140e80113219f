"""`m2nas export`: the best trial that fits a device, rebuilt, checked and written out for deployment.

    result = export_trial(study, "stm32f446re", Path("export/smoke/stm32f446re"))

Per device: the trained trial with the highest validation metric among those that fit the device's
target (ties to less memory: `nas.engine.results.best_trial`) is rebuilt from its Arch JSON and weights
(study artifacts), optionally fine-tuned (train + validation selection, never the test split), and
evaluated on the held-out test split -- the first time anything touches it. Then, into the output
folder:

* `model.onnx`: Brevitas QCDQ export, run in onnxruntime against PyTorch on test samples (max abs
  difference <= 1e-4, else `ExportCheckFailed` and the file is renamed `model.onnx.failed`);
* `model.qonnx.onnx`: QONNX (for FINN), after `qonnx.util.cleanup`; executed with `qonnx`'s
  `execute_onnx` against PyTorch, same tolerance;
* `arch.json`, `weights.pt` (state dict), `memory.json` (the memory report for the device and target,
  plus whether `m2nas memory model.onnx` gives the same figures), `MODEL_CARD.md`;
* with `c_code=True`, `nas.export.c.write_c_model(model, arch, report, dataset, out_dir)`.
"""

from __future__ import annotations

import json
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from memory_models import MemoryReport, evaluate
from memory_models.errors import InputError

PARITY_TOL = 1e-4
ORT_SAMPLES = 512  # test samples run through onnxruntime (all of them when the split is smaller)
QONNX_SAMPLES = 16  # qonnx's executor runs node by node in Python, one sample at a time: a few
PROFILE_SAMPLES = 64  # test samples of the per-op profiling run on each emulated core


class ExportCheckFailed(RuntimeError):
    """An exported file does not compute what the PyTorch model computes (beyond the tolerance)."""


@dataclass
class ExportResult:
    device: str
    trial: int
    out_dir: Path
    arch: Any  # search_spaces.Arch
    model: Any  # search_spaces.builder.Model, trained, eval mode, CPU
    report: MemoryReport  # for the device and the study's target (report.graph is the OpGraph)
    dataset: Any  # nas.data.base.Dataset
    val_metrics: dict[str, float]
    test_metrics: dict[str, float]
    confusion: list[list[int]]
    parity: dict[str, Any]
    search_figures: dict[str, Any]  # what the search stored for this device
    onnx_report_matches: bool
    finetune: dict[str, Any] | None = None
    files: list[str] = field(default_factory=list)
    measured: dict[str, Any] | None = None  # the C model on emulated Cortex-M cores (export --c)
    seconds: float = 0.0

    @property
    def graph(self):
        return self.report.graph

    def summary(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "trial": self.trial,
            "out_dir": str(self.out_dir),
            "arch": self.arch.summary(),
            "val": self.val_metrics,
            "test": self.test_metrics,
            "fits": self.report.fits,
            "flash_bytes": self.report.flash_bytes,
            "sram_bytes": self.report.sram_bytes,
            "parity": self.parity,
            "onnx_report_matches": self.onnx_report_matches,
            "finetune": self.finetune,
            "measured": _measured_summary(self.measured),
            "files": self.files,
            "seconds": round(self.seconds, 2),
        }


def _measured_summary(m: dict[str, Any] | None) -> dict[str, Any] | None:
    if not m or not m.get("available"):
        return m
    return {
        k: {
            f: c[f]
            for f in ("instructions_per_inference", "instructions_per_mac", "identical_logits", "samples")
        }
        for k, c in m["cores"].items()
    }


# ---- trials and models --------------------------------------------------------------------------


def _trials(ostudy) -> list:
    return ostudy.get_trials(deepcopy=False)


def pick_trial(study, trials: list, device: str):
    """The best trained trial that fits `device` (None when there is none)."""
    from nas.engine.results import best_trial

    if device not in study.devices:
        raise InputError(
            f"{study.path}: device {device!r} is not in the study (its devices: {', '.join(study.devices)})"
        )
    return best_trial(trials, device, study.cfg.objectives.metric)


def no_fit_message(study, trials: list, device: str) -> str:
    from nas.engine.results import count

    c = count(trials)
    target = ", ".join(f"{k}={v}" for k, v in study.targets[device].items())
    if c.trained == 0:
        why = (
            f"no candidate was trained ({c.rejected} rejected before training as too big for every device, "
            f"{c.stopped_early} stopped early, {c.failed} failed)"
        )
    else:
        why = f"none of the {c.trained} trained candidates fits it ({c.rejected} more were rejected before training)"
    return f"{study.path}: no trained trial fits {device} ({target}): {why}; nothing exported for {device}"


def load_trial_model(study, trial):
    """(arch, model): a trial's Arch and its trained Brevitas model (eval mode, CPU), from the artifacts."""
    from optuna.artifacts import download_artifact

    from nas.engine.record import TrialRecord
    from nas.engine.storage import artifact_store
    from nas.train import load_trained
    from search_spaces import Arch

    ids = TrialRecord(trial).artifacts
    if "arch.json" not in ids or "weights.pt" not in ids:
        raise InputError(f"{study.path}: trial {trial.number} has no stored weights (was it trained?)")
    store = artifact_store(study.artifact_dir)
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for name in ("arch.json", "weights.pt"):
            paths[name] = Path(tmp) / name
            try:
                download_artifact(artifact_store=store, file_path=str(paths[name]), artifact_id=ids[name])
            except Exception as e:  # missing or unreadable artifact directory
                raise InputError(
                    f"{study.artifact_dir}: cannot read artifact {name} of trial {trial.number} ({e})"
                ) from None
        arch = Arch.from_json(paths["arch.json"].read_text(), f"trial {trial.number} arch.json")
        model = load_trained(arch, paths["weights.pt"])
    return arch, model


# ---- checks -------------------------------------------------------------------------------------


def _inputs(model, x: dict[str, np.ndarray], n: int | None = None) -> list[np.ndarray]:
    return [np.ascontiguousarray(x[m][:n], dtype=np.float32) for m in model.modalities]


def _torch_logits(model, xs: list[np.ndarray]) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(dict(zip(model.modalities, map(torch.from_numpy, xs)))).numpy()


def export_qcdq(model, path: Path, example: list[np.ndarray]) -> None:
    import torch
    from brevitas.export import export_onnx_qcdq

    from search_spaces.builder import Positional

    names = list(model.modalities)
    axes = {n: {0: "batch"} for n in [*names, "logits"]}
    export_onnx_qcdq(
        Positional(model).eval(),
        args=tuple(torch.from_numpy(a) for a in example),
        export_path=str(path),
        input_names=names,
        output_names=["logits"],
        dynamic_axes=axes,
        dynamo=False,
    )


def export_qonnx_file(model, path: Path, example: list[np.ndarray]) -> None:
    """QONNX export at batch size 1 (what FINN expects), cleaned up with qonnx; inputs keep the modality
    names and the output is `logits`."""
    import torch
    from brevitas.export import export_qonnx
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    from search_spaces.builder import Positional

    names = list(model.modalities)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        export_qonnx(
            Positional(model).eval(),
            args=tuple(torch.from_numpy(a[:1]) for a in example),
            export_path=str(raw),
            input_names=names,
            output_names=["logits"],
            dynamo=False,
        )
        mw = cleanup_model(ModelWrapper(str(raw)))
    for inp, name in zip(list(mw.graph.input), names):
        if inp.name != name:
            mw.rename_tensor(inp.name, name)
    if mw.graph.output[0].name != "logits":
        mw.rename_tensor(mw.graph.output[0].name, "logits")
    mw.save(str(path))


def onnxruntime_diff(path: Path, model, xs: list[np.ndarray], batch: int = 256) -> float:
    """Max |onnxruntime - PyTorch| over the samples, at onnxruntime's default optimisation level."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    worst = 0.0
    for s in range(0, len(xs[0]), batch):
        part = [a[s : s + batch] for a in xs]
        (out,) = sess.run(None, dict(zip(names, part)))
        worst = max(worst, float(np.abs(out - _torch_logits(model, part)).max()))
    return worst


def qonnx_diff(path: Path, model, xs: list[np.ndarray]) -> float:
    """Max |qonnx execute_onnx - PyTorch| over the samples (one at a time: the file has batch size 1)."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    mw = ModelWrapper(str(path))
    names = [i.name for i in mw.graph.input]
    out_name = mw.graph.output[0].name
    worst = 0.0
    for s in range(len(xs[0])):
        part = [a[s : s + 1] for a in xs]
        res = execute_onnx(mw, dict(zip(names, part)))
        worst = max(worst, float(np.abs(res[out_name] - _torch_logits(model, part)).max()))
    return worst


def report_figures(report: MemoryReport) -> dict[str, Any]:
    """The figures of a report that do not depend on op or tensor names."""
    d = report.to_dict(detail=False)
    d.pop("schedule")
    d["schedule_length"] = len(report.schedule)
    return d


# ---- fine-tuning --------------------------------------------------------------------------------


def finetune(study, arch, model, epochs: int, seed: int) -> tuple[Any, dict[str, Any]]:
    """Continue training from the trial's weights at a tenth of the study's learning rate; the weights
    of the best validation epoch are kept only if they beat the trial's own."""
    from dataclasses import replace

    from nas.engine.teacher_logits import teacher_logits
    from nas.train import evaluate_model, load_trained, train_candidate

    cfg, tr = study.cfg, study.cfg.training
    metric = cfg.objectives.metric
    before = evaluate_model(model, study.dataset.val, threads=cfg.study.threads)[0]
    teacher = teacher_logits(study, "cpu") if tr.distill else None
    tc = replace(
        tr.train_config(epochs=epochs, metric=metric, seed=seed, device="cpu", threads=cfg.study.threads),
        lr=tr.lr / 10,
        patience=max(tr.patience, epochs),
    )
    original = {k: v.clone() for k, v in model.state_dict().items()}
    result = train_candidate(arch, study.dataset, tc, teacher, model=model)
    kept = result.metrics[metric] > before[metric]
    model = load_trained(arch, result.state_dict if kept else original)
    info = {
        "epochs": epochs,
        "lr": tc.lr,
        "val_before": before,
        "val_after": result.metrics,
        "kept": kept,
        "seconds": round(result.seconds, 2),
    }
    return model, info


# ---- one device ---------------------------------------------------------------------------------


def export_trial(
    study,
    device: str,
    out_dir: Path,
    finetune_epochs: int = 0,
    trials: list | None = None,
    ostudy=None,
    c_code: bool = False,
) -> ExportResult:
    """Export the best trial that fits `device` into `out_dir` (see the module docstring).

    `trials`: the study's trials (read from its storage when not given)."""
    t0 = time.perf_counter()
    with warnings.catch_warnings():  # Brevitas' notes on optional packages and the default opset
        warnings.filterwarnings("ignore", category=UserWarning, module=r"brevitas\..*")
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx\..*")
        return _export_trial(study, device, out_dir, finetune_epochs, trials, ostudy, c_code, t0)


def _export_trial(study, device, out_dir, finetune_epochs, trials, ostudy, c_code, t0) -> ExportResult:
    import torch
    from sklearn.metrics import confusion_matrix

    from memory_models.onnx_import import graph_from_onnx
    from nas.engine.record import TrialRecord
    from nas.report.model_card import write_model_card
    from nas.train import evaluate_model
    from search_spaces import graph

    if trials is None:
        if ostudy is None:
            from nas.engine.status import open_existing

            _, ostudy = open_existing(study.path)
        trials = _trials(ostudy)
    trial = pick_trial(study, trials, device)
    if trial is None:
        raise InputError(no_fit_message(study, trials, device))
    torch.manual_seed(study.cfg.study.seed)
    torch.set_num_threads(study.cfg.study.threads)
    arch, model = load_trial_model(study, trial)
    dataset = study.dataset
    metric = study.cfg.objectives.metric

    tuned = None
    if finetune_epochs > 0:
        model, tuned = finetune(study, arch, model, finetune_epochs, study.cfg.study.seed + trial.number)
    model.eval()
    val_metrics = evaluate_model(model, dataset.val)[0]
    test_metrics, test_logits = evaluate_model(model, dataset.test)
    confusion = confusion_matrix(
        dataset.test.y, test_logits.argmax(1), labels=list(range(dataset.n_classes))
    ).tolist()

    dev, target = study.devices[device], study.targets[device]
    report = evaluate(graph(arch), dev, target)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files: list[str] = []

    # ONNX (QCDQ), checked in onnxruntime on test samples
    xs_all = _inputs(model, dataset.test.x, ORT_SAMPLES)
    onnx_path = out_dir / "model.onnx"
    export_qcdq(model, onnx_path, [a[:2] for a in xs_all])
    ort_diff = onnxruntime_diff(onnx_path, model, xs_all)
    _check_parity(
        onnx_path, ort_diff, "onnxruntime output", len(xs_all[0]), f"QCDQ export of trial {trial.number}"
    )
    files.append("model.onnx")

    # QONNX, checked by executing it with qonnx
    qonnx_path = out_dir / "model.qonnx.onnx"
    xs_q = [a[:QONNX_SAMPLES] for a in xs_all]
    export_qonnx_file(model, qonnx_path, [a[:2] for a in xs_all])
    q_diff = qonnx_diff(qonnx_path, model, xs_q)
    _check_parity(
        qonnx_path, q_diff, "qonnx execution", len(xs_q[0]), f"QONNX export of trial {trial.number}"
    )
    files.append("model.qonnx.onnx")
    parity = {
        "tolerance": PARITY_TOL,
        "onnxruntime_max_abs_diff": ort_diff,
        "onnxruntime_samples": len(xs_all[0]),
        "qonnx_max_abs_diff": q_diff,
        "qonnx_samples": len(xs_q[0]),
    }

    # The ONNX file read back into the memory model gives the search-time figures.
    onnx_figures = report_figures(evaluate(graph_from_onnx(onnx_path), dev, target))
    matches = onnx_figures == report_figures(report)

    (out_dir / "arch.json").write_text(arch.to_json(indent=1) + "\n")
    torch.save(model.state_dict(), out_dir / "weights.pt")
    mem = report.to_dict()
    mem["graph"] = {"name": report.graph.name, "ops": len(report.graph.ops), "params": report.graph.params}
    mem["onnx_import_matches"] = matches
    (out_dir / "memory.json").write_text(json.dumps(mem, indent=1) + "\n")
    files += ["arch.json", "weights.pt", "memory.json"]

    result = ExportResult(
        device=device,
        trial=trial.number,
        out_dir=out_dir,
        arch=arch,
        model=model,
        report=report,
        dataset=dataset,
        val_metrics=val_metrics,
        test_metrics=test_metrics,
        confusion=confusion,
        parity=parity,
        search_figures=dict(TrialRecord(trial).figures(device) or {}),
        onnx_report_matches=matches,
        finetune=tuned,
        files=files,
    )
    if c_code:
        write_c(result)
    result.seconds = time.perf_counter() - t0
    write_model_card(result, study, metric, trial)
    result.files.append("MODEL_CARD.md")
    (out_dir / "export.json").write_text(json.dumps(result.summary(), indent=1) + "\n")
    return result


def _check_parity(path: Path, diff: float, what: str, n: int, export: str) -> None:
    """Fail loudly, and rename the file to *.failed so nobody deploys it, when it disagrees with PyTorch."""
    if not diff <= PARITY_TOL:
        failed = path.with_name(path.name + ".failed")
        path.replace(failed)
        raise ExportCheckFailed(
            f"{failed}: {what} differs from PyTorch by {diff:.3g} (> {PARITY_TOL:g}) on {n} test samples; "
            f"the {export} is wrong"
        )


def write_c(result: ExportResult) -> None:
    """model.h / model.c through nas.export.c (issue 8), the test split's golden vectors, and --
    where the Arm toolchain and QEMU are installed -- the measured cost on emulated Cortex-M cores,
    into memory.json (issue 15)."""
    from nas.export.c import write_c_model

    before = set(p.name for p in result.out_dir.iterdir())
    info = write_c_model(
        result.model, result.arch, result.report, result.dataset, result.out_dir, golden=result.dataset.test.x
    )
    result.measured = measure_c(result, info)
    mem_path = result.out_dir / "memory.json"
    mem = json.loads(mem_path.read_text())
    mem["measured"] = result.measured
    mem_path.write_text(json.dumps(mem, indent=1) + "\n")
    result.files += sorted(p.name for p in result.out_dir.iterdir() if p.name not in before)


def measure_c(result: ExportResult, info: dict[str, Any]) -> dict[str, Any]:
    """Instructions per inference and per op of the generated C on the emulated Cortex-M4 and M7 over
    the test split, whether their int8 logits are PyTorch's, and the compiler's size of model.o.

    The plain build runs every test sample on each core (the logits check); the profiling build, whose
    per-step timer reads are only there to split the count, the first PROFILE_SAMPLES."""
    from nas.export.c import cortexm

    why = cortexm.missing()
    if why is not None:
        return {"available": False, "reason": why}
    out = result.out_dir
    n_classes = len(info["output"]["classes"])
    with tempfile.TemporaryDirectory() as tmp:
        measured = cortexm.measure(
            out,
            out / "test_inputs.bin",
            n_classes,
            info["steps"],
            profile_samples=PROFILE_SAMPLES,
            work_dir=tmp,
        )
    expected = np.fromfile(out / "test_logits.bin", dtype=np.int8).reshape(-1, n_classes).astype(np.int64)
    macs = result.report.macs
    for c in measured["cores"].values():
        logits = c.pop("_logits")
        c["identical_logits"] = int((logits == expected).all(1).sum())
        c["instructions_per_mac"] = round(c["instructions_per_inference"] / max(macs, 1), 3)
    size = cortexm.object_size(out, "m4", "-Os")
    measured["model_o_m4_Os"] = {**size, "flash": size["text"] + size["data"]}
    measured["available"] = True
    measured["macs"] = macs
    return measured


# ---- the command --------------------------------------------------------------------------------


def default_out_dir(study, device: str, out_dir: Path | None, all_devices: bool) -> Path:
    if out_dir is None:
        return Path("export") / study.name / device
    return out_dir / device if all_devices else out_dir
