"""Host harness for the generated C model: compile it, feed it a split, read back the logits.

The harness (``harness.c``) reads ``N * M2NAS_INPUT_TOTAL_SIZE`` int8 values (per sample, each
modality's tensor in turn), runs ``m2nas_infer_all`` on every sample and writes ``N *
M2NAS_NUM_CLASSES`` int8 logits. With a third argument R it runs the whole input R times and prints
``ns_per_inference <t>`` (CPU time, ``clock()``) to stdout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import numpy as np
import torch

HARNESS_C = resources.files(__package__).joinpath("csrc", "harness.c").read_text()

STRICT_FLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-fsanitize=address,undefined"]
SANITIZER_ENV = {
    "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0:exitcode=23",
    "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1:exitcode=24",
}


def compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")


def write_harness(out_dir: str | Path) -> Path:
    path = Path(out_dir) / "harness.c"
    path.write_text(HARNESS_C)
    return path


def compile_harness(
    c_dir: str | Path,
    exe: str | Path,
    flags: list[str] | None = None,
    defines: dict[str, object] | None = None,
) -> subprocess.CompletedProcess:
    """Compile model.c + harness.c of `c_dir` into `exe`; returns the completed process (check rc)."""
    c_dir = Path(c_dir)
    harness = c_dir / "harness.c"
    if not harness.exists():
        write_harness(c_dir)
    cmd = [compiler() or "gcc", *(STRICT_FLAGS if flags is None else flags)]
    cmd += [f"-D{k}={v}" for k, v in (defines or {}).items()]
    cmd += ["-I", str(c_dir), str(c_dir / "model.c"), str(harness), "-o", str(exe)]
    return subprocess.run(cmd, capture_output=True, text=True)


def quantize_inputs(model, x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The int8 values the model's input quantizers produce (what the C entry point takes)."""
    from .emit import act_quantizer, qinfo

    out = {}
    for m in model.modalities:
        _, tq = act_quantizer(model.branches[m].input_q)
        qi = qinfo(tq)
        t = torch.from_numpy(np.ascontiguousarray(x[m], dtype=np.float32))
        q = torch.div(t, qi.scale_t).round_().clamp_(qi.lo, qi.hi)
        out[m] = q.to(torch.int8).numpy()
    return out


def write_inputs(model, x: dict[str, np.ndarray], path: str | Path) -> int:
    """Write a split's inputs as the harness reads them; returns the number of samples."""
    q = quantize_inputs(model, x)
    n = len(next(iter(q.values())))
    parts = [q[m].reshape(n, -1) for m in model.modalities]
    np.concatenate(parts, axis=1).astype(np.int8).tofile(str(path))
    return n


def run_harness(
    exe: str | Path,
    inputs: str | Path,
    logits: str | Path,
    classes: int,
    repeats: int | None = None,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.CompletedProcess, np.ndarray | None]:
    """Run the harness; the logits, or None when it failed (non-zero exit or a sanitizer report)."""
    args = [str(exe), str(inputs), str(logits)] + ([str(repeats)] if repeats else [])
    proc = subprocess.run(
        args, capture_output=True, text=True, env={**os.environ, **SANITIZER_ENV, **(env or {})}
    )
    out = None
    if proc.returncode == 0 and "runtime error:" not in proc.stderr:
        out = np.fromfile(str(logits), dtype=np.int8).reshape(-1, classes).astype(np.int64)
    return proc, out


def torch_int_logits(model, x: dict[str, np.ndarray], batch: int = 512) -> np.ndarray:
    """The Brevitas model's logits on the output quantizer's integer grid."""
    from .emit import act_quantizer, qinfo

    _, tq = act_quantizer(model.head.classifier_act)
    s = qinfo(tq).scale_t
    outs = []
    n = len(next(iter(x.values())))
    was = model.training
    model.eval()
    with torch.no_grad():
        for i in range(0, n, batch):
            xb = {m: torch.from_numpy(np.ascontiguousarray(x[m][i : i + batch])) for m in model.modalities}
            outs.append(torch.round(model(xb) / s).to(torch.int64).numpy())
    model.train(was)
    return np.concatenate(outs)


def write_golden(model, prog, x: dict[str, np.ndarray], out_dir: str | Path) -> dict[str, object]:
    """Golden vectors for checking a port on a board: ``test_inputs.bin`` (the split quantized, in the
    harness's input format) and ``test_logits.bin`` (the int8 logits of the integer reference,
    :mod:`nas.export.c.reference`, for them: what every correct build of ``model.c`` gives)."""
    from .reference import logits

    out = Path(out_dir)
    n = write_inputs(model, x, out / "test_inputs.bin")
    ref = logits(prog.calls, quantize_inputs(model, x), prog.output_tensor)
    ref.astype(np.int8).tofile(str(out / "test_logits.bin"))
    return {"inputs": str(out / "test_inputs.bin"), "logits": str(out / "test_logits.bin"), "samples": n}
