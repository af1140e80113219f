"""The `tflm` runtime profile against TFLite Micro's own interpreter (issue 16).

Five small Keras nets (a conv chain, a depthwise-separable CNN, a two-branch concat + add, a dense
net, a keyword-spotter-like 1-D conv) are converted to full-int8 TFLite and run in TFLM's Python
interpreter by `tflm_probe.py`, which finds the smallest arena at which `invoke()` runs by
bisection. This test reads the same files with m2nas's TFLite reader and compares
`tflm_arena(..., TflmSizes.host64())` with that minimum: target within +-5% on every model.
Those five are the calibration set (the struct sizes were checked on their `print_allocations()`);
four more nets, never used to fit anything, are held out and held to the same +-5%: a 2-D CNN with
explicit padding, average pooling, a strided valid conv and two dense layers; two residual blocks
(ADD) with a squeeze-excite gate (LOGISTIC, broadcast MUL); a MEAN over one spatial axis feeding a
1-D conv; a wider, deeper 1-D conv stack (padding 'same', dilation, global max pool, softmax).

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
    rows = {"calibration": [], "held_out": []}
    for name, m in measured.items():
        a = tflm_arena(graph_from_tflite(tmp_path / f"{name}.tflite"), TflmSizes.host64())
        real = m["min_arena_bytes"]
        rows[m["set"]].append((name, a.arena_bytes, real, 100 * (a.arena_bytes - real) / real, a))
    titles = {
        "calibration": "calibration models (TflmSizes.host64() was fitted on these)",
        "held_out": "held-out models (not used for calibration)",
    }
    for group, title in titles.items():
        print(f"\n{title}")
        print("model            predicted  TFLM minimum   diff   (predicted head + tail)")
        for name, pred, real, diff, a in rows[group]:
            print(f"{name:16s} {pred:9,d} {real:13,d} {diff:+6.2f}%   ({a.head_bytes:,} + {a.tail_bytes:,})")
    assert len(rows["calibration"]) == 5 and len(rows["held_out"]) == 4, rows
    for group in titles:
        assert all(abs(d) <= 5 for _, _, _, d, _ in rows[group]), (group, rows[group])
