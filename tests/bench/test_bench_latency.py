"""Fit the C kernels' instruction costs to counts measured on the emulated Cortex-M4 and M7, and check
the fit on held-out archs (issue 15 part 4). Run: ``pytest -m bench -s tests/bench/test_bench_latency.py``.

Calibration: CAL_PER_PRESET archs of every preset (micro / tiny / small / wide; half 1D on watch, half
2D on avdigits; sampling seed 11), calibrated on real batches and run on two test samples in the
profiling build: each op's instructions is one row, the load + read-out one more. The coefficients of
memory_models.latency's terms are fitted by non-negative least squares on the relative error (a term
seen in fewer than 3 rows shares the column of the fitted term nearest to it, the one with the longest
common prefix: the closest code path). Every prefix of a fitted term gets the largest coefficient
under it, so a term no calibration arch had reads its nearest prefix (assumed as slow as its slowest
sibling). The result is printed as the ``instructions`` table of the
``[runtime.cost]`` of the device files of that core; with ``M2NAS_BENCH_JSON=path`` it is also
written there.

Held-out: the unit test's archs (tests/unit/nas/test_latency_model.py, seed 3), plain builds:
predicted instructions / measured - 1, per preset and core.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict

import numpy as np
import pytest

from nas.export.c import cortexm

pytestmark = [
    pytest.mark.bench,
    pytest.mark.skipif(cortexm.missing() is not None, reason=str(cortexm.missing())),
]

PRESETS = ("micro", "tiny", "small", "wide")
CAL_PER_PRESET = 16
CAL_SEED = 11
CORE_DEVICE = {"m4": "stm32f446re", "m7": "stm32f746zg"}
MIN_ROWS = 3


def _rows(report, info, run, samples):
    from memory_models.latency import graph_op_terms, inference_terms

    g = report.graph
    ops = {op.name: op for op in g.ops}
    per = run.profile / samples
    rows = [(inference_terms(sum(g.tensors[x].numel for x in g.inputs)), per[0] + per[-1])]
    for i, step in enumerate(info["steps"]):
        rows.append((graph_op_terms(ops[step["op"]], g.tensors), per[i + 1]))
    return rows


def fit(rows) -> dict[str, float]:
    from scipy.optimize import nnls

    from memory_models.latency import PREFIXES

    seen = defaultdict(int)
    for terms, _ in rows:
        for name, v in terms:
            if v:
                seen[name] += 1
    names = sorted(n for n, c in seen.items() if c >= MIN_ROWS)
    col = {n: j for j, n in enumerate(names)}

    def nearest(name: str) -> str | None:
        """The fitted term sharing the longest ':'-prefix with a rarely seen one (the closest code path)."""
        parts = name.split(":")
        best, depth = None, 1
        for n in names:
            q = n.split(":")
            d = next((i for i, (u, v) in enumerate(zip(parts, q)) if u != v), min(len(parts), len(q)))
            if d > depth or (d == depth and best is None and d > 1):
                best, depth = n, d
        return best

    # A rarely seen term is folded into its nearest fitted term's column (and reads its coefficient),
    # or, sharing no more than its prefix with any, into the prefix's column.
    folded = {n: nearest(n) for n in seen if n not in col}
    a = np.zeros((len(rows), len(names) + len(PREFIXES)))
    b = np.zeros(len(rows))
    for i, (terms, measured) in enumerate(rows):
        w = 1.0 / max(measured, 1.0)
        for name, v in terms:
            j = col.get(name, col.get(folded.get(name) or ""))
            if j is None:
                j = len(names) + PREFIXES.index(name.split(":")[0])
            a[i, j] += v * w
        b[i] = measured * w
    x, _ = nnls(a, b, maxiter=50 * a.shape[1])
    table = {n: round(float(x[col[n]]), 3) for n in names}
    table.update({n: table[f] for n, f in folded.items() if f is not None})
    # An unseen term falls back along its prefixes (memory_models.latency.coefficient): every proper
    # prefix of a fitted term gets the largest coefficient under it (an unseen path is assumed slow,
    # but no slower than its siblings), the bare prefixes also the pooled column's.
    for n, v in list(table.items()):
        parts = n.split(":")
        for k in range(2, len(parts)):
            pre = ":".join(parts[:k])
            if pre not in names:
                table[pre] = max(table.get(pre, 0.0), v)
    for k, p in enumerate(PREFIXES):
        under = [v for n, v in table.items() if n.split(":")[0] == p]
        pooled = float(x[len(names) + k])
        table[p] = round(max(under + [pooled]), 3)
    return table


def test_fit_latency(tmp_path):
    from memory_models.latency import instructions
    from nas.data import load_dataset
    from tests.fixtures.c_models import DIMS_DATASET, emulated_run, sampled_archs
    from tests.unit.nas.test_latency_model import held_out

    data = {d: load_dataset(n, seed=0) for d, n in DIMS_DATASET.items()}
    out = {}
    for core, device in CORE_DEVICE.items():
        rows = []
        for preset in PRESETS:
            for dims in ("1d", "2d"):
                for i, arch in enumerate(sampled_archs(preset, dims, CAL_PER_PRESET // 2, seed=CAL_SEED)):
                    d = tmp_path / f"{core}-{preset}-{dims}-{i}"
                    d.mkdir()
                    report, info, run = emulated_run(arch, data[dims], d, core, device, profile=True)
                    rows += _rows(report, info, run, len(run.logits))
        table = fit(rows)
        errs = [instructions(table, t) / m - 1 for t, m in rows if m > 200]
        print(
            f"\n{core} ({device}): {len(rows)} rows, per-op error {100 * np.percentile(np.abs(errs), 90):.0f}% "
            f"(90th percentile of |pred/meas - 1|, ops > 200 instructions)"
        )
        print("instructions = { " + ", ".join(f'"{k}" = {v}' for k, v in sorted(table.items())) + " }")
        out[core] = {"device": device, "instructions": table}
        print("\n| preset | archs | predicted / measured - 1 (min .. max) | within 25% |\n|---|---|---|---|")
        for preset in PRESETS:
            e = [
                instructions(table, terms) / measured - 1
                for _, terms, measured in held_out(core, device, preset, data, tmp_path)
            ]
            print(
                f"| {preset} | {len(e)} | {100 * min(e):+.1f}% .. {100 * max(e):+.1f}% | {sum(abs(x) <= 0.25 for x in e)}/{len(e)} |"
            )
    path = os.environ.get("M2NAS_BENCH_JSON")
    if path:
        with open(path, "w") as f:
            json.dump(out, f, indent=1)
