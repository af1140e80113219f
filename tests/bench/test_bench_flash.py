"""The memory model's flash figure against the compiler's, on 20 sampled archs per preset (issue 15
part 5). Run: ``pytest -m bench -s tests/bench/test_bench_flash.py``.

Per preset (tiny / small / wide; half 1D watch-like inputs, half 2D avdigits-like), each arch is
exported to C with random weights and built with arm-none-eabi-gcc -Os for the Cortex-M4; the row is
the range of (memory model `flash_bytes` / text + data of model.o - 1). Target: within 5% on every
arch. With ``M2NAS_BENCH_JSON=path`` the per-arch figures are written there too.
"""

from __future__ import annotations

import json
import os

import pytest

from nas.export.c import cortexm
from tests.fixtures.c_models import random_init_c_model, sampled_archs

pytestmark = [
    pytest.mark.bench,
    pytest.mark.skipif(cortexm.missing() is not None, reason=str(cortexm.missing())),
]

PER_PRESET = 20


def test_bench_flash_against_the_compiler(tmp_path):
    rows, worst = [], 0.0
    print("\n| preset | archs | model.o text+data (B) | memory model error | within 5% |")
    print("|---|---|---|---|---|")
    for preset in ("tiny", "small", "wide"):
        errs, sizes = [], []
        for dims in ("1d", "2d"):
            for i, arch in enumerate(sampled_archs(preset, dims, PER_PRESET // 2)):
                out = tmp_path / f"{preset}-{dims}-{i}"
                report, _ = random_init_c_model(arch, out)
                size = cortexm.object_size(out, "m4", "-Os")
                measured = size["text"] + size["data"]
                err = report.flash_bytes / measured - 1
                errs.append(err)
                sizes.append(measured)
                rows.append(
                    {
                        "preset": preset,
                        "dims": dims,
                        "arch": arch.summary(),
                        "model_o": measured,
                        "memory_model": report.flash_bytes,
                        "breakdown": report.flash.to_dict(),
                    }
                )
        ok = sum(abs(e) <= 0.05 for e in errs)
        worst = max(worst, max(abs(e) for e in errs))
        print(
            f"| {preset} | {len(errs)} | {min(sizes):,}-{max(sizes):,} | "
            f"{100 * min(errs):+.2f}% .. {100 * max(errs):+.2f}% | {ok}/{len(errs)} |"
        )
    if os.environ.get("M2NAS_BENCH_JSON"):
        with open(os.environ["M2NAS_BENCH_JSON"], "w") as f:
            json.dump(rows, f, indent=1)
    assert worst <= 0.05
