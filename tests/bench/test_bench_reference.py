"""The generated C against its integer reference on many archs: the table of docs/c_reference.md.

Run: pytest -m bench -s tests/bench/test_bench_reference.py

For the arch whose C GCC 12.2 miscompiled and ARCHS_PER_PRESET archs drawn from each preset's whole
space (half on watch, half on avdigits), each calibrated on real batches: ``model.c`` built as a
user builds it (``gcc -std=c99 -O2`` and ``-Os``, no sanitizer) on the whole test split, its logits
against ``test_logits.bin`` (the integer reference), the arena trace, and PyTorch against the
reference (samples identical, top-1 agreement).

Target: every build reproduces the reference on every sample of every arch (0 differing) and every
trace is clean. PyTorch's figures are reported (float requantization ties).
"""

from __future__ import annotations

import random
import shutil

import numpy as np
import pytest

from nas.export.c import reference, verify, write_c_model
from nas.export.c.harness import quantize_inputs, torch_int_logits
from search_spaces import Arch, load_space, sample_random
from tests.fixtures.c_models import MISCOMPILED_ARCH, c_report, calibrated

pytestmark = [pytest.mark.bench, pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")]

ARCHS_PER_PRESET = 20
PRESETS = ["micro", "tiny", "small", "wide"]


def _row(name, arch, ds, seed, tmp):
    model = calibrated(arch, ds, seed)
    info = write_c_model(model, arch, c_report(arch), ds, tmp, golden=ds.test.x)
    prog = info["program"]
    gold = np.fromfile(tmp / "test_logits.bin", dtype=np.int8).reshape(-1, arch.classes).astype(np.int64)
    builds = verify.host_builds(tmp, prog, tmp / "test_inputs.bin", gold, tmp / "builds")
    trace = verify.trace_check(tmp, prog, quantize_inputs(model, ds.test.x), tmp / "trace")
    vs_torch = reference.compare_logits(torch_int_logits(model, ds.test.x), gold)
    return {
        "name": name,
        "summary": arch.summary(),
        "samples": len(gold),
        "builds": {b.build: b.comparison["differing"] for b in builds},
        "trace": trace,
        "torch_identical": 1 - vs_torch["differing"] / len(gold),
        "torch_top1": vs_torch["top1_agreement"],
        "torch_max_lsb": vs_torch["max_lsb"],
    }


def test_bench_c_against_the_reference(tmp_path):
    from nas.data import load_dataset

    watch, avdigits = load_dataset("watch", seed=0), load_dataset("avdigits", seed=0)
    rows = [_row("issue arch (seed 0)", Arch.from_json(MISCOMPILED_ARCH), watch, 0, tmp_path / "issue")]
    for space in PRESETS:
        for i in range(ARCHS_PER_PRESET):
            ds = watch if i % 2 == 0 else avdigits
            arch = sample_random(
                random.Random(f"bench-{space}-{i}"), load_space(space), ds.modalities, ds.n_classes
            )
            rows.append(_row(f"{space} #{i} ({ds.name})", arch, ds, i, tmp_path / f"{space}{i}"))
    print(
        "\n| arch | samples | C -O2 differing | C -Os differing | trace | PyTorch identical | PyTorch top-1 | "
        "PyTorch max LSB |\n|---|---|---|---|---|---|---|---|"
    )
    for r in rows:
        b = r["builds"]
        print(
            f"| {r['name']}: {r['summary']} | {r['samples']:,} | {b['host gcc -O2']} | {b['host gcc -Os']} | "
            f"{'clean' if r['trace'] is None else r['trace']} | {100 * r['torch_identical']:.2f}% | "
            f"{100 * r['torch_top1']:.2f}% | {r['torch_max_lsb']} |"
        )
    ident = np.array([r["torch_identical"] for r in rows])
    top1 = np.array([r["torch_top1"] for r in rows])
    print(
        f"\n{len(rows)} archs: PyTorch identical to the reference on {100 * ident.mean():.2f}% of samples "
        f"(min {100 * ident.min():.2f}%), top-1 {100 * top1.mean():.3f}% (min {100 * top1.min():.2f}%)"
    )
    assert all(all(v == 0 for v in r["builds"].values()) for r in rows)
    assert all(r["trace"] is None for r in rows)
