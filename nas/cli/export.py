"""`m2nas export`: which devices, where to, and what to say about each exported model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from memory_models.errors import InputError
from nas.export.parity import AS_WRITTEN
from nas.outputs import check_writable_dir

from .console import err, out


def parity_line(parity: dict[str, Any]) -> str:
    """One line of the checks for the terminal: as-written LSB, then the integer runtime's agreement."""
    parts = []
    for c in parity["checks"]:
        if c["check"] == AS_WRITTEN:
            parts.append(f"{c['file']} as written ({c['runtime'].split(',')[0]}): {c['max_lsb']} LSB")
        else:
            parts.append(
                f"int8 kernels: top-1 {100 * c['top1_agreement']:.1f}%, identical {100 * c['identical']:.1f}%, "
                f"max {c['max_lsb']} LSB"
            )
    return "; ".join(parts)


def c_checks_line(checks: dict[str, Any]) -> str:
    """The C builds against the integer reference (test_logits.bin), and how far PyTorch is from it."""
    builds = checks["builds"]
    n = builds[0]["samples"] if builds else 0
    names = ", ".join(b["build"] for b in builds)
    t, p = checks["trace"], checks["pytorch"]
    done = (
        f"C reproduces test_logits.bin (the integer reference) exactly on all {n:,} test samples: {names}"
        if builds
        else "C not built"
    )
    trace = f"arena trace clean on {t['samples']} samples" if t else f"NOT CHECKED: {checks['host_skipped']}"
    return (
        f"  {done}; {trace}. PyTorch differs from it on {p['differing']:,} samples "
        f"(max {p['max_lsb']} LSB, top-1 agreement {100 * p['top1_agreement']:.2f}%, test accuracy "
        f"{p['accuracy']:.4f} vs {p['reference_accuracy']:.4f})"
    )


def tflite_line(t: dict[str, Any]) -> str:
    """model.tflite in TFLite Micro: against the integer reference, and its arena measured vs predicted."""
    c = t["check"]
    if not c.get("available", True):
        return f"  model.tflite ({t['bytes']:,} B) not run in TFLite Micro: {c['reason']}"
    return (
        f"  model.tflite ({t['bytes']:,} B) in TFLite Micro: top-1 agreement with the integer reference "
        f"{100 * c['top1_agreement']:.2f}%, identical logits on {c['samples'] - c['differing']:,} / {c['samples']:,} "
        f"samples (max {c['max_lsb']} LSB); arena {c['arena_measured_bytes']:,} B measured, "
        f"{c['arena_predicted_bytes']:,} B predicted ({100 * c['arena_error']:+.1f}%)"
    )


def export_command(
    study_file: Path,
    device: str | None,
    all_devices: bool,
    out_dir: Path | None,
    finetune_epochs: int,
    c_code: bool,
    storage: str | None,
    tflite: bool = False,
) -> list:
    from nas.engine.status import open_existing
    from nas.export.trial import (
        ExportCheckFailed,
        default_out_dir,
        export_trial,
        no_fit_message,
        pick_trial,
    )

    if finetune_epochs < 0:
        raise InputError(f"--finetune-epochs must be >= 0, got {finetune_epochs}")
    if (device is None) == (not all_devices):
        raise InputError("give --device NAME or --all-devices (one of the two)")
    study, ostudy = open_existing(study_file, storage)
    if device is not None and device not in study.devices:
        raise InputError(
            f"{study_file}: device {device!r} is not in the study (its devices: {', '.join(study.devices)})"
        )
    trials = ostudy.get_trials(deepcopy=False)
    devices = list(study.devices) if all_devices else [device]
    missing = [d for d in devices if pick_trial(study, trials, d, ostudy) is None]
    if len(missing) == len(devices):
        if len(devices) == 1:
            raise InputError(no_fit_message(study, trials, devices[0]))
        raise InputError(f"{study_file}: no trained trial fits any of the study's devices; nothing exported")
    targets = {d: default_out_dir(study, d, out_dir, all_devices) for d in devices if d not in missing}
    for target in targets.values():  # before the first device's minutes of work
        check_writable_dir(target, "--out" if out_dir is not None else "export folder")
    results = []
    for d in devices:
        if d in missing:
            out().print(
                no_fit_message(study, trials, d).removeprefix(f"{study.path}: "), markup=False, soft_wrap=True
            )
            continue
        target = targets[d]
        try:
            as_tflite = tflite or study.targets[d].get("runtime") == "tflm"
            r = export_trial(
                study,
                d,
                target,
                finetune_epochs,
                trials=trials,
                ostudy=ostudy,
                c_code=c_code,
                tflite=as_tflite,
            )
        except ExportCheckFailed as e:
            err().print(f"m2nas: error: export check failed: {e}", markup=False, soft_wrap=True)
            raise typer.Exit(1) from None
        results.append(r)
        rep, tm = r.report, r.test_metrics
        metric = study.cfg.objectives.metric
        out().print(
            f"{d}: trial {r.trial} ({r.arch.summary()}) -> {r.out_dir}\n"
            f"  test {metric} {tm[metric]:.4f} (val {r.val_metrics[metric]:.4f}); "
            f"flash {rep.flash_bytes:,} B, SRAM {rep.sram_bytes:,} B ({'fits' if rep.fits else 'DOES NOT FIT'}); "
            f"{parity_line(r.parity)}; files: {', '.join(r.files)}",
            markup=False,
            soft_wrap=True,
        )
        if r.final:
            f = r.final
            out().print(
                f"  final stage: test {metric} {f['test_mean']:.4f} ± {f['test_std']:.4f} over "
                f"{len(f['seeds'])} seeds (the search's single run: {f['single_run'].get('test', float('nan')):.4f}); "
                f"exported the run with the best validation {metric}",
                markup=False,
                soft_wrap=True,
            )
        m = r.measured
        if m and m.get("available"):
            for c in m["cores"].values():
                out().print(
                    f"  C on emulated {c['cpu']} ({c['board']}): {c['instructions_per_inference']:,} instructions "
                    f"per inference ({c['instructions_per_mac']:.2f} per MAC; instructions, not cycles), identical "
                    f"int8 logits on {c['identical_logits']:,} / {c['samples']:,} test samples, stack "
                    f"{c.get('stack_bytes', 0):,} B",
                    markup=False,
                    soft_wrap=True,
                )
        elif m:
            out().print(
                f"  C not run on emulated Cortex-M cores: {m['reason']}", markup=False, soft_wrap=True
            )
        if r.c_checks:
            out().print(c_checks_line(r.c_checks), markup=False, soft_wrap=True)
        if r.tflite:
            out().print(tflite_line(r.tflite), markup=False, soft_wrap=True)
            c = r.tflite["check"]
            if c.get("available", True) and not c["meets_target"]:
                err().print(
                    f"m2nas: warning: {d}: TFLite Micro's top-1 agrees with the integer reference on "
                    f"{100 * c['top1_agreement']:.2f}% of the test split, below the {100 * c['target_top1']:g}% target "
                    "(its own rounding; model.c reproduces the reference exactly)",
                    markup=False,
                    soft_wrap=True,
                )
        if not r.onnx_report_matches:
            err().print(
                f"m2nas: warning: {d}: `m2nas memory model.onnx` figures differ from the search-time report",
                markup=False,
            )
    return results
