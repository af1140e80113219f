"""The `tflm` runtime profile against TFLite Micro's own interpreter (issue 16).

Five small Keras nets (a conv chain, a depthwise-separable CNN, a two-branch concat + add, a dense
net, a keyword-spotter-like 1-D conv) are converted to full-int8 TFLite and run in TFLM's Python
interpreter by `tflm_probe.py`, which finds the smallest arena at which `invoke()` runs by
bisection. This test reads the same files with m2nas's TFLite reader and compares
`tflm_arena(..., TflmSizes.host64())` with that minimum: target within +-5% on every model.

It needs the `bench-tflm` extra (tensorflow-cpu, tflite-micro) in the interpreter named by
M2NAS_TFLM_PYTHON (default: this one; a separate venv works), and is skipped without it.
Run: `M2NAS_TFLM_PYTHON=/path/to/venv/bin/python pytest tests/bench/test_bench_tflm.py -m bench -s`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from memory_models.tflite_import import graph_from_tflite
from memory_models.tflm import TflmSizes, tflm_arena

pytestmark = pytest.mark.bench

PROBE = Path(__file__).with_name("tflm_probe.py")


def _python() -> str:
    py = os.environ.get("M2NAS_TFLM_PYTHON", sys.executable)
    ok = subprocess.run(
        [py, "-c", "import tensorflow, tflite_micro"], capture_output=True, timeout=300
    ).returncode
    if ok != 0:
        pytest.skip(f"{py} lacks tensorflow / tflite-micro (pip install -e '.[bench-tflm]')")
    return py


def test_tflm_profile_within_5_percent_of_tflm_minimum_arena(tmp_path):
    py = _python()
    subprocess.run([py, str(PROBE), str(tmp_path)], check=True, capture_output=True, timeout=1800)
    measured = json.loads((tmp_path / "measured.json").read_text())
    rows = []
    for name, m in measured.items():
        a = tflm_arena(graph_from_tflite(tmp_path / f"{name}.tflite"), TflmSizes.host64())
        real = m["min_arena_bytes"]
        rows.append((name, a.arena_bytes, real, 100 * (a.arena_bytes - real) / real, a))
    print("\nmodel        predicted  TFLM minimum   diff   (predicted head + tail)")
    for name, pred, real, diff, a in rows:
        print(f"{name:12s} {pred:9,d} {real:13,d} {diff:+6.2f}%   ({a.head_bytes:,} + {a.tail_bytes:,})")
    assert all(abs(d) <= 5 for _, _, _, d, _ in rows), rows
