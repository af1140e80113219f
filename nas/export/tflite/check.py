"""`model.tflite` in TensorFlow Lite Micro's own interpreter (the `tflite-micro` package).

* logits on a split against the integer reference (`nas.export.c.reference.compare_logits`):
  identical samples, max LSB, top-1 agreement;
* the smallest arena at which the interpreter allocates and invokes, by bisection, against what
  m2nas predicts for the same file (`m2nas memory model.tflite`: the `tflm` profile's arena,
  host64 sizes, as TFLM's Python interpreter is a 64-bit build).

Every run is a process of its own (`nas.export.tflite.probe`): some TFLite Micro kernels crash on
an arena that is too small instead of reporting it. Nothing here prints. Raises TflmUnavailable
when the package is not installed.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from nas.export.c.reference import compare_logits

from .lower import from_tflite_logits, tflite_inputs

MAX_ARENA = 8 << 20


class TflmUnavailable(RuntimeError):
    """The tflite-micro package is not installed."""


def runtime():
    try:
        from tflite_micro.python.tflite_micro import runtime as rt
    except ImportError as e:
        raise TflmUnavailable(f"the tflite-micro package is not installed ({e})") from None
    return rt


def _probe(path: Path, arena: int, inputs: Path, logits: Path | None = None) -> int:
    """One isolated run (nas.export.tflite.probe): 0 ran, 3 refused, negative: it crashed."""
    cmd = [sys.executable, "-m", "nas.export.tflite.probe", str(path), str(arena), str(inputs)]
    proc = subprocess.run(
        cmd + ([str(logits)] if logits else []), capture_output=True, text=True, timeout=600
    )
    if proc.returncode not in (0, 3) and proc.returncode >= 0:
        raise RuntimeError(
            f"TFLite Micro probe failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}"
        )
    return proc.returncode


def min_arena(path: Path, inputs: Path, guess: int = 1 << 14) -> int:
    """The smallest arena (bytes, to 16) at which TFLM allocates and invokes the model, by bisection
    from a bracket around `guess` (widened until it holds); a size at which TFLM crashes counts as
    too small (some kernels crash rather than report it)."""
    hi = max(64, int(guess * 1.05))
    while _probe(path, hi, inputs) != 0:
        hi *= 2
        if hi > MAX_ARENA:
            raise RuntimeError(f"TFLite Micro does not run the model even with {MAX_ARENA} B of arena")
    lo = int(min(guess, hi) * 0.95)
    while lo > 0 and _probe(path, lo, inputs) == 0:
        hi, lo = lo, lo // 2
    while hi - lo > 16:
        mid = (lo + hi) // 2
        if _probe(path, mid, inputs) == 0:
            hi = mid
        else:
            lo = mid
    return hi


def check_tflite(path: Path, prog, q: dict[str, np.ndarray], ref: np.ndarray, y=None) -> dict[str, Any]:
    """TFLM against the reference on the quantized split `q`, and its arena against m2nas's figure."""
    from memory_models.tflite_import import graph_from_tflite
    from memory_models.tflm import TflmSizes, tflm_arena

    runtime()  # installed?
    xs = tflite_inputs(prog, q)
    with tempfile.TemporaryDirectory() as tmp:
        one, every = Path(tmp) / "one.npz", Path(tmp) / "all.npz"
        np.savez(one, **{f"x{i}": x[:1] for i, x in enumerate(xs)})
        np.savez(every, **{f"x{i}": x for i, x in enumerate(xs)})
        predicted = tflm_arena(graph_from_tflite(path), TflmSizes.host64()).arena_bytes
        measured = min_arena(Path(path), one, predicted)
        if _probe(Path(path), measured, every, Path(tmp) / "logits.npy") != 0:
            raise RuntimeError(f"TFLite Micro ran one sample in {measured} B but not the split")
        got = from_tflite_logits(prog, np.load(Path(tmp) / "logits.npy"))
    return {
        "runtime": "tflite-micro (Python interpreter, x86-64)",
        **compare_logits(got, ref, y),
        "arena_measured_bytes": measured,
        "arena_predicted_bytes": predicted,
        "arena_error": (predicted - measured) / measured,
    }
