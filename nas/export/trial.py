"""`m2nas export`: the best trial that fits a device, rebuilt, checked and written out for deployment.

    result = export_trial(study, "stm32f446re", Path("export/smoke/stm32f446re"))

Per device: the trained trial with the highest validation metric among those that fit the device's
target (ties to less memory: `nas.engine.results.best_trial`) is rebuilt from its Arch JSON and weights
(study artifacts), optionally fine-tuned (train + validation selection, never the test split), and
evaluated on the held-out test split -- the first time anything touches it. Then, into the output
folder:

* `model.onnx`: Brevitas QCDQ export, and `model.qonnx.onnx`: QONNX (for FINN) after
  `qonnx.util.cleanup`. Both are checked on the whole test split in output LSB (`nas.export.parity`): as
  written (onnxruntime without graph rewriting; qonnx's executor) they must equal PyTorch exactly;
  onnxruntime's integer kernels (its default level) are reported and must stay within a stated
  bound. A file that fails is renamed `*.failed` and `ExportCheckFailed` names the check;
* `arch.json`, `weights.pt` (state dict), `memory.json` (the memory report for the device and target,
  plus whether `m2nas memory model.onnx` gives the same figures), `MODEL_CARD.md`;
* with `c_code=True`, `nas.export.c.write_c_model(model, arch, report, dataset, out_dir)`.
"""

from __future__ import annotations

import copy
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

from .onnx import export_qcdq
from .parity import AS_WRITTEN, INTEGER_RUNTIME, ExportCheckFailed, compare, require
from .qonnx import export_qonnx_file

PROFILE_SAMPLES = 64  # test samples of the per-op profiling run on each emulated core

__all__ = ["ExportCheckFailed", "ExportResult", "export_trial"]


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
    final: dict[str, Any] | None = None  # the final stage's Choice (runs over seeds), if any
    files: list[str] = field(default_factory=list)
    measured: dict[str, Any] | None = None  # the C model on emulated Cortex-M cores (export --c)
    c_checks: dict[str, Any] | None = None  # every C build against the integer reference (export --c)
    tflite: dict[str, Any] | None = None  # model.tflite and its run in TFLite Micro (export --tflite)
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
            "final": self.final,
            "measured": _measured_summary(self.measured),
            "c_checks": self.c_checks,
            "tflite": self.tflite,
            "files": self.files,
            "seconds": round(self.seconds, 2),
        }


def _measured_summary(m: dict[str, Any] | None) -> dict[str, Any] | None:
    if not m or not m.get("available"):
        return m
    return {
        k: {
            f: c[f]
            for f in (
                "instructions_per_inference",
                "instructions_per_mac",
                "identical_logits",
                "samples",
                "stack_bytes",
            )
            if f in c
        }
        for k, c in m["cores"].items()
    }


# ---- trials and models --------------------------------------------------------------------------


def _trials(ostudy) -> list:
    return ostudy.get_trials(deepcopy=False)


def pick_trial(study, trials: list, device: str, ostudy=None):
    """The device's model: the final stage's choice when the study has one (best mean validation
    metric over several seeds), else the trained trial with the best validation metric that fits
    `device` (None when there is none)."""
    from nas.engine.results import best_trial

    if device not in study.devices:
        raise InputError(
            f"{study.path}: device {device!r} is not in the study (its devices: {', '.join(study.devices)})"
        )
    choice = final_choice(ostudy, device)
    if choice is not None:
        chosen = [t for t in trials if t.number == choice.trial]
        if chosen:
            return chosen[0]
    return best_trial(trials, device, study.cfg.objectives.metric)


def final_choice(ostudy, device: str):
    """The final stage's `Choice` for `device`, or None (no final stage ran, or no storage given)."""
    if ostudy is None:
        return None
    from nas.engine.final import choices

    return choices(ostudy).get(device)


def no_fit_message(study, trials: list, device: str) -> str:
    from nas.engine.results import count

    c = count(trials)
    target = ", ".join(f"{k}={v}" for k, v in study.targets[device].items())
    if c.trained == 0:
        why = (
            f"no candidate finished training with a usable model ({c.rejected} rejected before training as too big for every device, "
            f"{c.stopped_early} stopped early, {c.no_signal} without signal (not above chance), {c.failed} failed)"
        )
    else:
        why = f"none of the {c.trained} trained candidates fits it ({c.rejected} more were rejected before training)"
    return f"{study.path}: no trained trial fits {device} ({target}): {why}; nothing exported for {device}"


def load_device_model(study, trials: list, device: str, ostudy=None):
    """(trial, arch, model, choice): what export ships for `device`: the final stage's chosen run
    when there is one (choice is then its `Choice`, else None), else the best trial's own weights."""
    trial = pick_trial(study, trials, device, ostudy)
    if trial is None:
        raise InputError(no_fit_message(study, trials, device))
    arch, model = load_trial_model(study, trial)
    choice = final_choice(ostudy, device)
    if choice is None or choice.trial != trial.number:
        return trial, arch, model, None
    return trial, arch, load_final_model(study, arch, choice), choice


def load_final_model(study, arch, choice):
    """The exported run of the final stage: the seed with the best validation metric."""
    from nas.engine.final import download_weights
    from nas.engine.storage import artifact_store
    from nas.train import load_trained

    with tempfile.TemporaryDirectory() as tmp:
        path = download_weights(study, artifact_store(study.artifact_dir), choice.weights, Path(tmp))
        return load_trained(arch, path)


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
        try:
            model = load_trained(arch, paths["weights.pt"])
        except InputError as e:  # the message names the temporary copy: name the artifact instead
            why = str(e).removeprefix(f"{paths['weights.pt']}: ")
            raise InputError(
                f"{study.artifact_dir}: weights.pt of trial {trial.number} (artifact {ids['weights.pt']}): {why}"
            ) from None
    return arch, model


# ---- checks -------------------------------------------------------------------------------------


def _inputs(model, x: dict[str, np.ndarray], n: int | None = None) -> list[np.ndarray]:
    return [np.ascontiguousarray(x[m][:n], dtype=np.float32) for m in model.modalities]


def _torch_logits(model, xs: list[np.ndarray]) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(dict(zip(model.modalities, map(torch.from_numpy, xs)))).numpy()


def output_lsb(model) -> float:
    """The scale of the model's output quantizer: one step of the logit grid every runtime lands on."""
    from search_spaces.quant import quant_params

    return float(quant_params(model.head.classifier_act)["scale"])


def check_parity(model, onnx_path: Path, qonnx_path: Path, xs: list[np.ndarray]) -> dict[str, Any]:
    """Both files against PyTorch on `xs` (see nas.export.parity); raises ExportCheckFailed on the first failure."""
    from .parity import onnxruntime_logits, qonnx_logits

    ref, lsb = _torch_logits(model, xs), output_lsb(model)

    def ref64(idx: np.ndarray) -> np.ndarray:
        return _torch_logits(copy.deepcopy(model).double(), [a[idx].astype(np.float64) for a in xs])

    checks = [
        (
            compare(
                AS_WRITTEN,
                onnx_path,
                "onnxruntime, no graph rewriting",
                onnxruntime_logits(onnx_path, xs, False),
                ref,
                lsb,
            ),
            onnx_path,
        ),
        (
            compare(
                AS_WRITTEN, qonnx_path, "qonnx execute_onnx", qonnx_logits(qonnx_path, xs), ref, lsb, ref64
            ),
            qonnx_path,
        ),
        (
            compare(
                INTEGER_RUNTIME,
                onnx_path,
                "onnxruntime, default optimisations",
                onnxruntime_logits(onnx_path, xs, True),
                ref,
                lsb,
            ),
            onnx_path,
        ),
    ]
    for c, path in checks:
        require(c, path)
    return {"output_lsb": lsb, "checks": [c.to_dict() for c, _ in checks]}


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
    tflite: bool = False,
) -> ExportResult:
    """Export the best trial that fits `device` into `out_dir` (see the module docstring).

    `trials`: the study's trials (read from its storage when not given)."""
    t0 = time.perf_counter()
    with warnings.catch_warnings():  # Brevitas' notes on optional packages and the default opset
        warnings.filterwarnings("ignore", category=UserWarning, module=r"brevitas\..*")
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx\..*")
        return _export_trial(study, device, out_dir, finetune_epochs, trials, ostudy, c_code, tflite, t0)


def _export_trial(
    study, device, out_dir, finetune_epochs, trials, ostudy, c_code, tflite, t0
) -> ExportResult:
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
    torch.manual_seed(study.cfg.study.seed)
    torch.set_num_threads(study.cfg.study.threads)
    trial, arch, model, choice = load_device_model(study, trials, device, ostudy)
    if tflite:
        check_tflite_arch(arch, study)
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

    # ONNX (QCDQ) and QONNX, both checked against PyTorch on the whole test split
    xs = _inputs(model, dataset.test.x)
    onnx_path, qonnx_path = out_dir / "model.onnx", out_dir / "model.qonnx.onnx"
    export_qcdq(model, onnx_path, [a[:2] for a in xs])
    export_qonnx_file(model, qonnx_path, [a[:2] for a in xs])
    parity = check_parity(model, onnx_path, qonnx_path, xs)
    files += ["model.onnx", "model.qonnx.onnx"]

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
        final=None if choice is None else choice.to_dict(),
    )
    if c_code:
        write_c(result)
    if tflite:
        write_tfl(result)
    result.seconds = time.perf_counter() - t0
    write_model_card(result, study, metric, trial)
    result.files.append("MODEL_CARD.md")
    (out_dir / "export.json").write_text(json.dumps(result.summary(), indent=1) + "\n")
    return result


def write_c(result: ExportResult) -> None:
    """model.h / model.c through nas.export.c, the test split's golden vectors (the integer
    reference's logits), every build checked against them (`check_c`), and -- where the Arm
    toolchain and QEMU are installed -- the measured cost on emulated Cortex-M cores, into
    memory.json."""
    from nas.export.c import write_c_model

    before = set(p.name for p in result.out_dir.iterdir())
    info = write_c_model(
        result.model, result.arch, result.report, result.dataset, result.out_dir, golden=result.dataset.test.x
    )
    result.measured = measure_c(result, info)
    result.c_checks = check_c(result, info)
    mem_path = result.out_dir / "memory.json"
    mem = json.loads(mem_path.read_text())
    mem["measured"] = result.measured
    mem_path.write_text(json.dumps(mem, indent=1) + "\n")
    result.files += sorted(p.name for p in result.out_dir.iterdir() if p.name not in before)


# TFLite Micro requantizes with two roundings (a doubling high multiply, then a rounding shift; half
# away from zero), the reference with one exact round half to even: a logit step apart on a share of
# outputs, and on a barely trained model's near-tied logits a top-1 flip on about 1% of samples.
# The target is TFLITE_TARGET_TOP1 (reported, with a warning when missed); below TFLITE_MIN_TOP1 the
# file is not the model (a wrong layout or constant gives chance-level agreement) and fails.
TFLITE_TARGET_TOP1 = 0.999
TFLITE_MIN_TOP1 = 0.97


def check_tflite_arch(arch, study) -> None:
    """Before any work: TFLite Micro's kernels take int8 activations, so a sub-byte one is refused,
    naming its layer and the study option that keeps activations at 8 bits."""
    from search_spaces import graph

    g = graph(arch)
    for op in g.ops:
        for t in op.outputs:
            if g.tensors[t].bits != 8:
                raise InputError(
                    f"{study.path}: --tflite: {op.name} has {g.tensors[t].bits}-bit activations and TFLite Micro's "
                    "kernels take int8; set [search_space] act_bits = [8] for a runtime=tflm target"
                )


def write_tfl(result: ExportResult) -> None:
    """model.tflite from the same integer program as model.c, run in TFLite Micro on the whole test
    split against the integer reference; its arena found by bisection against m2nas's prediction."""
    from nas.export.c import lower, reference
    from nas.export.c.harness import quantize_inputs
    from nas.export.tflite import write_tflite
    from nas.export.tflite.check import TflmUnavailable, check_tflite

    prog = lower(result.model, result.arch, result.report, result.dataset)
    path = result.out_dir / "model.tflite"
    info = write_tflite(prog, path)
    test = result.dataset.test
    q = quantize_inputs(result.model, test.x)
    ref = reference.logits(prog.calls, q, prog.output_tensor)
    try:
        info["check"] = check_tflite(path, prog, q, ref, test.y)
    except TflmUnavailable as e:
        info["check"] = {"available": False, "reason": str(e)}
    except RuntimeError as e:  # TFLite Micro cannot run the file at all
        path.replace(path.with_name("model.tflite.failed"))
        raise ExportCheckFailed(f"{path}.failed: {' '.join(str(e).split())[:400]}") from None
    info["search_arena_bytes"] = result.report.tflm.arena_bytes  # the arch's graph, as screened
    result.files.append("model.tflite")
    c = info["check"]
    if c.get("available", True) and c["top1_agreement"] < TFLITE_MIN_TOP1:
        path.replace(path.with_name("model.tflite.failed"))
        raise ExportCheckFailed(
            f"{path}.failed: TFLite Micro agrees with the integer reference on top-1 for "
            f"{100 * c['top1_agreement']:.2f}% of the test split ({100 * TFLITE_MIN_TOP1:g}% required)"
        )
    if c.get("available", True):
        c["target_top1"] = TFLITE_TARGET_TOP1
        c["meets_target"] = c["top1_agreement"] >= TFLITE_TARGET_TOP1
    result.tflite = info


def check_c(result: ExportResult, info: dict[str, Any]) -> dict[str, Any]:
    """The C against the integer reference on the whole test split, exactly: the host builds a user
    makes (-O2, -Os), the emulated cores (when measured) and the step-by-step arena trace. A build
    that differs renames model.c / model.h to *.failed and raises ExportCheckFailed naming the first
    differing sample. PyTorch and the ONNX file as written are compared with the reference and
    reported (their float requantization may round a tie the other way)."""
    from nas.export.c import reference, verify
    from nas.export.c.harness import compiler, quantize_inputs, torch_int_logits

    from .parity import onnxruntime_logits

    out, prog, test = result.out_dir, info["program"], result.dataset.test
    classes = len(prog.output["classes"])
    ref = np.fromfile(out / "test_logits.bin", dtype=np.int8).reshape(-1, classes).astype(np.int64)
    builds, trace, host = [], None, None
    if compiler() is None:
        host = "no C compiler on PATH (gcc, cc or $CC): the host builds and the arena trace were not run"
    else:
        try:
            with tempfile.TemporaryDirectory() as tmp:
                builds = verify.host_builds(out, prog, out / "test_inputs.bin", ref, Path(tmp))
                trace = verify.trace_check(
                    out, prog, quantize_inputs(result.model, test.x), Path(tmp) / "trace"
                )
        except verify.BuildError as e:
            _fail_c(out, f"a host build failed: {' '.join(str(e).split())[:400]}")
    m = result.measured or {}
    for c in (m.get("cores") or {}).values():
        builds.append(verify.BuildCheck(f"emulated {c['cpu']}", c.pop("_reference")))
    checks = {
        "builds": [b.to_dict() for b in builds],
        "trace": {"samples": min(verify.TRACE_SAMPLES, len(test)), "problem": trace}
        if host is None
        else None,
        "host_skipped": host,
        "pytorch": reference.compare_logits(torch_int_logits(result.model, test.x), ref, test.y),
    }
    if (out / "model.onnx").is_file():  # written by the export before the C
        onnx = onnxruntime_logits(out / "model.onnx", _inputs(result.model, test.x), False)
        grid = np.rint(onnx / output_lsb(result.model)).astype(np.int64)
        checks["onnx_as_written"] = reference.compare_logits(grid, ref, test.y)
    failed = [b for b in builds if not b.passed]
    if failed or trace is not None:
        _fail_c(out, failed[0].describe() if failed else f"arena trace: {trace}")
    return checks


def _fail_c(out: Path, why: str) -> None:
    """Rename model.c / model.h to *.failed, so nobody builds them, and say why."""
    for name in ("model.c", "model.h"):
        if (out / name).exists():
            (out / name).replace(out / f"{name}.failed")
    raise ExportCheckFailed(f"{out / 'model.c.failed'}: the C does not reproduce test_logits.bin: {why}")


def measure_c(result: ExportResult, info: dict[str, Any]) -> dict[str, Any]:
    """Instructions per inference and per op of the generated C on the emulated Cortex-M4 and M7 over
    the test split, whether their int8 logits are PyTorch's, and the compiler's size of model.o.

    The plain build runs every test sample on each core (the logits check); the profiling build, whose
    per-step timer reads are only there to split the count, the first PROFILE_SAMPLES."""
    from nas.export.c import cortexm
    from nas.export.c.reference import compare_logits

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
        c["_reference"] = compare_logits(logits, expected)
        c["identical_logits"] = int((logits == expected).all(1).sum())
        c["instructions_per_mac"] = round(c["instructions_per_inference"] / max(macs, 1), 3)
    size = cortexm.object_size(out, "m4", "-Os")
    measured["model_o_m4_Os"] = {**size, "flash": size["text"] + size["data"]}
    measured["available"] = True
    measured["macs"] = macs
    return measured


# ---- the command --------------------------------------------------------------------------------


def default_out_dir(study, device: str, out_dir: Path | None, all_devices: bool) -> Path:
    """Where a device's export goes: `export/<study>/<device>`, or under `--out`. The names that
    are joined (study, device: a device file may name one) must not lead out of that folder."""
    if out_dir is not None and not all_devices:
        return out_dir
    base = Path("export") if out_dir is None else out_dir
    target = base / study.name / device if out_dir is None else base / device
    root, resolved = base.resolve(), target.resolve()
    plain = all(Path(n).name == n and n not in ("", ".", "..") for n in (study.name, device))
    if not plain or resolved == root or not resolved.is_relative_to(root):
        raise InputError(
            f"{study.path}: export folder {target} leads outside {base} (study {study.name!r}, device {device!r})"
        )
    return target
